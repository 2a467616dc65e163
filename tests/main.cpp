// The host side every test executable shares: relib's implementation and the test imports.
#include <catch2/catch.hpp>

#define RELIB_IMPLEMENTATION
#include "support.hpp"

#if defined(_WIN32)
#include <tlhelp32.h>
#include <cstdlib>
#include <random>
#else
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#endif

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

// The host's implementations of the test imports: ordinary functions.
void game_imports::log(const char* message) { test::logged().push_back(message); }
int game_imports::host_add(int a, int b) { return a + b + 1000; }
point game_imports::host_point() {
  point p{};
  p.x = 3;
  p.y = 4;
  return p;
}
void game_imports::host_throws() { throw std::runtime_error("the host import failed"); }
long other_imports::scale_factor() { return 10; }

namespace test {

std::vector<std::string>& logged() {
  static std::vector<std::string> lines;
  return lines;
}

#if defined(_WIN32)
std::size_t resident_bytes() {
  std::size_t committed = 0;
  MEMORY_BASIC_INFORMATION region{};
  for (const char* at = nullptr; VirtualQuery(at, &region, sizeof region) == sizeof region;
       at = static_cast<const char*>(region.BaseAddress) + region.RegionSize) {
    if (region.State == MEM_COMMIT && region.Type == MEM_PRIVATE) committed += region.RegionSize;
  }
  return committed;
}

namespace {
// The volume serial number and file index of a file, or {0, 0}.
std::pair<std::uint64_t, std::uint64_t> file_identity(const std::wstring& path) {
  HANDLE file = CreateFileW(path.c_str(), 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                            OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, nullptr);
  BY_HANDLE_FILE_INFORMATION info{};
  const bool known = file != INVALID_HANDLE_VALUE && GetFileInformationByHandle(file, &info) != 0;
  if (file != INVALID_HANDLE_VALUE) CloseHandle(file);
  if (!known) return {0, 0};
  return {info.dwVolumeSerialNumber, (std::uint64_t{info.nFileIndexHigh} << 32) | info.nFileIndexLow};
}
}  // namespace

bool is_mapped(const std::string& path) {
  const auto wanted = file_identity(std::filesystem::path(path).wstring());
  if (wanted.second == 0) return false;
  HANDLE snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPMODULE, 0);
  if (snapshot == INVALID_HANDLE_VALUE) return false;
  MODULEENTRY32W entry{};
  entry.dwSize = sizeof entry;
  bool found = false;
  for (BOOL more = Module32FirstW(snapshot, &entry); more && !found; more = Module32NextW(snapshot, &entry)) {
    found = file_identity(entry.szExePath) == wanted;
  }
  CloseHandle(snapshot);
  return found;
}

temp_dir::temp_dir() {
  std::random_device random;
  for (int attempt = 0; attempt < 100 && path_.empty(); ++attempt) {
    const auto candidate = std::filesystem::temp_directory_path() / ("relib-test-" + std::to_string(random()));
    if (std::filesystem::create_directory(candidate)) path_ = candidate.string();
  }
  if (path_.empty()) throw std::runtime_error("cannot make a temporary directory");
}

child_outcome run_in_child(const std::function<void()>& body) {
  static thread_local int calls_in_this_test = 0;
  static std::string last_test;
  const std::string test_name = Catch::getResultCapture().getCurrentTestName();
  if (test_name != last_test) last_test = test_name, calls_in_this_test = 0;
  const int call = ++calls_in_this_test;
  if (const char* child = std::getenv("TEST_CHILD")) {  // in the child: run the one asked for
    if (std::atoi(child) == call) {
      body();
      std::fflush(stderr);
      std::_Exit(0);
    }
    return {};
  }
  SECURITY_ATTRIBUTES inherit{sizeof(SECURITY_ATTRIBUTES), nullptr, TRUE};
  HANDLE read_end = nullptr, write_end = nullptr;
  REQUIRE(CreatePipe(&read_end, &write_end, &inherit, 0) != 0);
  SetHandleInformation(read_end, HANDLE_FLAG_INHERIT, 0);
  wchar_t program[MAX_PATH];
  GetModuleFileNameW(nullptr, program, MAX_PATH);
  std::string spec;  // the test's name as a Catch test spec: its special characters escaped
  for (const char c : test_name) {
    if (c == ',' || c == '[' || c == ']' || c == '\\' || c == '*') spec += '\\';
    spec += c == '"' ? '?' : c;
  }
  std::wstring command = L"\"" + std::wstring(program) + L"\" \"" + std::filesystem::path(spec).wstring() + L"\"";
  HANDLE nowhere = CreateFileW(L"NUL", GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, &inherit, OPEN_EXISTING, 0, nullptr);
  STARTUPINFOW startup{};
  startup.cb = sizeof startup;
  startup.dwFlags = STARTF_USESTDHANDLES;
  startup.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
  startup.hStdOutput = nowhere;  // Catch's report of the child's run is not wanted
  startup.hStdError = write_end;
  SetEnvironmentVariableW(L"TEST_CHILD", std::to_wstring(call).c_str());
  PROCESS_INFORMATION child{};
  const BOOL started = CreateProcessW(program, command.data(), nullptr, nullptr, TRUE, 0, nullptr, nullptr, &startup, &child);
  SetEnvironmentVariableW(L"TEST_CHILD", nullptr);
  CloseHandle(write_end);
  if (nowhere != INVALID_HANDLE_VALUE) CloseHandle(nowhere);
  REQUIRE(started != 0);
  child_outcome outcome;
  std::string output;
  char buffer[512];
  DWORD got = 0;
  while (ReadFile(read_end, buffer, sizeof buffer, &got, nullptr) != 0 && got > 0) output.append(buffer, got);
  CloseHandle(read_end);
  WaitForSingleObject(child.hProcess, INFINITE);
  DWORD code = 0;
  GetExitCodeProcess(child.hProcess, &code);
  CloseHandle(child.hProcess);
  CloseHandle(child.hThread);
  // abort() ends a process with 3 and a crash with its exception code: reported as the signals
  // they stand for on Linux.
  if (code == 3) {
    outcome.signal = SIGABRT;
  } else if (code >= 0xC0000000u) {
    outcome.signal = code == EXCEPTION_INT_DIVIDE_BY_ZERO ? SIGFPE : code == EXCEPTION_ILLEGAL_INSTRUCTION ? SIGILL : SIGSEGV;
  } else {
    outcome.exit_code = static_cast<int>(code);
  }
  outcome.stderr_text = output;
  return outcome;
}
#else
extern "C" void __sanitizer_purge_allocator() __attribute__((weak));  // AddressSanitizer's

std::size_t resident_bytes() {
  // AddressSanitizer keeps freed blocks resident on purpose (its quarantine): let them go first.
  if (&__sanitizer_purge_allocator != nullptr) __sanitizer_purge_allocator();
  // smaps_rollup counts the pages in the page tables. statm is not exact: since Linux 6.2 it reads
  // per-CPU counters that can each hold back up to 31 pages, so two reads of an unchanged process
  // differed by 64 and 128 KB depending on which CPU ran it.
  std::ifstream rollup("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(rollup, line))
    if (line.rfind("Rss:", 0) == 0) return std::stoul(line.substr(4)) * 1024;  // "Rss:  4580 kB"
  std::ifstream statm("/proc/self/statm");  // kernels before 4.14 have no smaps_rollup
  std::size_t pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

bool is_mapped(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return false;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream fields(line);
    std::string range, perms, offset, device;
    unsigned long long inode = 0;
    fields >> range >> perms >> offset >> device >> inode;
    if (inode != static_cast<unsigned long long>(info.st_ino)) continue;
    const auto colon = device.find(':');
    const unsigned major_id = static_cast<unsigned>(std::stoul(device.substr(0, colon), nullptr, 16));
    const unsigned minor_id = static_cast<unsigned>(std::stoul(device.substr(colon + 1), nullptr, 16));
    if (major_id == major(info.st_dev) && minor_id == minor(info.st_dev)) return true;
  }
  return false;
}

temp_dir::temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "relib-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}
#endif

temp_dir::~temp_dir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string temp_dir::write_file(const std::string& name, const std::string& contents) const {
  const std::string file = path_ + "/" + name;
  std::ofstream(file, std::ios::binary) << contents;
  return file;
}

std::string temp_dir::copy_file(const std::string& from, const std::string& name) const {
  const std::string file = path_ + "/" + name;
  std::filesystem::copy_file(from, file);
  return file;
}

parked_thread::parked_thread(std::function<void()> work) {
  thread_ = std::thread([this, work = std::move(work)] {
    work();
    std::unique_lock<std::mutex> guard(lock_);
    worked_ = true;
    changed_.notify_all();
    changed_.wait(guard, [this] { return may_exit_; });
  });
  std::unique_lock<std::mutex> guard(lock_);
  changed_.wait(guard, [this] { return worked_; });
}

void parked_thread::release() {
  {
    std::lock_guard<std::mutex> guard(lock_);
    may_exit_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace test
