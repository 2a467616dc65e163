// The host side every test executable shares: relib's implementation and the test imports.
#include <catch2/catch.hpp>

#define RELIB_IMPLEMENTATION
#include "support.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

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
