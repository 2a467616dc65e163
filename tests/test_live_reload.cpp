// Live reload: the watcher, the private copies, and failed reloads that keep the old version.
#include "live_support.hpp"

#if defined(_WIN32)
#include <tlhelp32.h>
#else
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

namespace test {

// Windows: while relib reads and copies the watched file it holds it without sharing write or
// delete access, so a build's rename or rewrite may have to try again (docs/windows.md).
template <class Attempt>
void until_it_works(Attempt attempt) {
  for (int tries = 1; !attempt(); ++tries) {
    REQUIRE(tries < 5000);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void install_by_rename(const std::string& build, const std::string& target) {
  const std::string temporary = target + ".partial";
  std::filesystem::copy_file(build, temporary, std::filesystem::copy_options::overwrite_existing);
  until_it_works([&] {
    std::error_code failed;
    std::filesystem::rename(temporary, target, failed);
    return !failed;
  });
}

void install_in_place(const std::string& build, const std::string& target) {
  std::ifstream in(build, std::ios::binary);
  until_it_works([&] {
    std::ofstream out(target, std::ios::binary | std::ios::trunc);
    return out && (out << in.rdbuf());
  });
}

live load_live(const std::string& build, const std::string& target, const std::string& shadow_parent) {
  install_by_rename(build, target);
  relib::live_options options = quick_options();
  options.shadow_parent = shadow_parent;
  auto loaded = relib::load_live_module<live_exports>(target, relib::no_imports{}, options);
  if (!loaded) FAIL(loaded.error().message);
  return std::move(*loaded);
}

relib::result<bool, relib::reload_error> next_update(live& module) {
  REQUIRE(module.wait_for_change(std::chrono::seconds(30)));
  return module.update();
}

int version_of(const live& module) {
  auto version = module.exports().version();
  if (!version) FAIL(version.error().message);
  return *version;
}

}  // namespace test

namespace {

using test::read_file;

#if defined(_WIN32)
constexpr char separator = '\\';

// The distinct files of the live module's private directory loaded in the process.
std::set<std::string> mapped_copies(const std::string& base_name) {
  std::set<std::string> files;
  HANDLE snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPMODULE, 0);
  if (snapshot == INVALID_HANDLE_VALUE) return files;
  MODULEENTRY32W entry{};
  entry.dwSize = sizeof entry;
  for (BOOL more = Module32FirstW(snapshot, &entry); more; more = Module32NextW(snapshot, &entry)) {
    const std::string path = std::filesystem::path(entry.szExePath).string();
    if (path.find("\\.relib-" + base_name + "-") != std::string::npos) files.insert(path);
  }
  CloseHandle(snapshot);
  return files;
}

// A writer holding the file open, as a build writes it. While relib reads and copies the file it
// holds it without sharing write access, so an open for writing may have to try again.
struct open_for_writing {
  explicit open_for_writing(const std::string& path) {
    for (int attempt = 0; attempt < 5000 && file == nullptr; ++attempt) {
      file = std::fopen(path.c_str(), "wb");
      if (file == nullptr) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(file != nullptr);
  }
  ~open_for_writing() { close(); }
  bool write(const char* bytes, std::size_t size) { return std::fwrite(bytes, 1, size, file) == size && std::fflush(file) == 0; }
  void close() {
    if (file != nullptr) std::fclose(std::exchange(file, nullptr));
  }
  std::FILE* file = nullptr;
};
#else
constexpr char separator = '/';

// A writer holding the file open, as a build writes it.
struct open_for_writing {
  explicit open_for_writing(const std::string& path) : fd(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC)) {}
  ~open_for_writing() { close(); }
  bool write(const char* bytes, std::size_t size) { return ::write(fd, bytes, size) == static_cast<ssize_t>(size); }
  void close() {
    if (fd >= 0) ::close(std::exchange(fd, -1));
  }
  int fd;
};

// The distinct files of the live module's private directory mapped into the process.
std::set<std::string> mapped_copies(const std::string& base_name) {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> files;
  std::string line;
  while (std::getline(maps, line)) {
    const std::size_t at = line.find("/.relib-" + base_name + "-");
    if (at != std::string::npos) files.insert(line.substr(line.find('/')));
  }
  return files;
}
#endif

// The files a private directory holds, but for Windows's marker of a live owner (".alive").
std::ptrdiff_t copies_in(const std::string& directory) {
  std::ptrdiff_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) count += entry.path().filename() != ".alive";
  return count;
}

}  // namespace

TEST_CASE("live: loads the module and calls its main", "[live]") {
  test::temp_dir dir;
  test::live module = test::load_live(TEST_LIVE_V1_PATH, dir.path() + "/libmod.so");
  CHECK(module.is_loaded());
  CHECK(module.generation() == 1);
  CHECK(module.path() == dir.path() + "/libmod.so");
  CHECK(test::version_of(module) == 1);
  REQUIRE(module.state<live_state>() != nullptr);
  CHECK(module.state<live_state>()->loads == 1);  // main ran once
  CHECK_FALSE(module.changed());
  auto nothing = module.update();
  REQUIRE(nothing);
  CHECK_FALSE(*nothing);
}

TEST_CASE_METHOD(test::live_v1, "live: a build renamed into place is picked up", "[live]") {
  auto reloaded = swap_in(TEST_LIVE_V2_PATH);
  REQUIRE(reloaded);
  CHECK(*reloaded);
  CHECK(test::version_of(module) == 2);
  CHECK(module.generation() == 2);
}

TEST_CASE_METHOD(test::live_v1, "live: a build rewritten in place is picked up, again and again", "[live]") {
  const char* builds[] = {TEST_LIVE_V2_PATH, TEST_LIVE_V3_PATH, TEST_LIVE_V1_PATH};
  int expected[] = {2, 3, 1};
  for (int i = 0; i < 3; ++i) {
    test::install_in_place(builds[i], target);
    auto reloaded = test::next_update(module);
    if (!reloaded) FAIL(reloaded.error().message);
    CHECK(*reloaded);
    CHECK(test::version_of(module) == expected[i]);
  }
  CHECK(module.generation() == 4);
}

TEST_CASE("live: the loaded code is a private copy, removed afterwards", "[live]") {
  test::temp_dir dir;
  const std::string target = dir.path() + "/libmod.so";
  std::string private_dir;
  {
    test::live module = test::load_live(TEST_LIVE_V1_PATH, target);
    const std::set<std::string> copies = mapped_copies("libmod.so");
    REQUIRE(copies.size() == 1);
    const std::string copy = *copies.begin();
    private_dir = copy.substr(0, copy.rfind(separator));
    CHECK(private_dir.rfind(dir.path() + separator + ".relib-libmod.so-", 0) == 0);  // next to the module by default
    CHECK(std::filesystem::is_directory(private_dir));
#if !defined(_WIN32)  // Windows: the directory inherits its parent's ACL (docs/windows.md)
    struct stat info {};
    REQUIRE(::lstat(private_dir.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0700);
#endif
    CHECK_FALSE(test::is_mapped(target));  // the watched file itself is never mapped

    test::install_by_rename(TEST_LIVE_V2_PATH, target);
    REQUIRE(test::next_update(module));
    CHECK(mapped_copies("libmod.so").size() == 1);
    // The old copy is removed by the watcher's thread, after the reload: wait for it.
    const auto copies_on_disk = [&] { return copies_in(private_dir); };
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (copies_on_disk() > 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    CHECK(copies_on_disk() == 1);
  }
  CHECK_FALSE(std::filesystem::exists(private_dir));
  CHECK(mapped_copies("libmod.so").empty());
}

TEST_CASE("live: shadow_parent chooses where the private directory goes", "[live]") {
  test::temp_dir dir, shadows;
  const std::string target = dir.path() + "/libmod.so";
  test::live module = test::load_live(TEST_LIVE_V1_PATH, target, shadows.path());
  const std::set<std::string> copies = mapped_copies("libmod.so");
  REQUIRE(copies.size() == 1);
  CHECK(copies.begin()->rfind(shadows.path() + separator + ".relib-libmod.so-", 0) == 0);
}

TEST_CASE_METHOD(test::live_v1, "live: a file still being written is never loaded", "[live]") {
  const std::string image = read_file(TEST_LIVE_V2_PATH);

  // One writer, in pieces, through one descriptor: neither the per-frame update() nor a forced
  // reload() may load or report anything while the file is open for writing.
  open_for_writing writer(target);
  for (std::size_t offset = 0; offset < image.size(); offset += 16384) {
    const std::size_t piece = std::min<std::size_t>(16384, image.size() - offset);
    REQUIRE(writer.write(image.data() + offset, piece));
    auto frame = module.update();
    REQUIRE(frame);
    CHECK_FALSE(*frame);
    auto forced = module.reload();
    if (!forced) FAIL(forced.error().message);
    CHECK_FALSE(*forced);
    CHECK(test::version_of(module) == 1);
  }
  writer.close();
  auto reloaded = test::next_update(module);
  if (!reloaded) FAIL(reloaded.error().message);
  CHECK(*reloaded);
  CHECK(test::version_of(module) == 2);
}

TEST_CASE_METHOD(test::live_v1, "live: rapid successive rewrites never load a half-written file", "[live]") {
  const std::string images[] = {read_file(TEST_LIVE_V2_PATH), read_file(TEST_LIVE_V3_PATH)};
  constexpr int rewrites = 200;
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    for (int i = 0; i < rewrites; ++i) {
      const std::string& image = images[i % 2];
      open_for_writing writing_it(target);
      for (std::size_t offset = 0; offset < image.size(); offset += 8192) {
        const std::size_t piece = std::min<std::size_t>(8192, image.size() - offset);
        if (!writing_it.write(image.data() + offset, piece)) break;
      }
    }
    writing = false;
  });
  std::size_t reloads = 0;
  while (writing) {
    auto frame = module.update();
    if (!frame) {
      writing = false;
      writer.join();
      FAIL(frame.error().message);
    }
    if (*frame) {
      ++reloads;
      const int version = test::version_of(module);
      CHECK((version == 2 || version == 3));
    }
  }
  writer.join();
  const int last = (rewrites - 1) % 2 == 0 ? 2 : 3;
  while (test::version_of(module) != last) {
    auto reloaded = test::next_update(module);
    if (!reloaded) FAIL(reloaded.error().message);
  }
  CHECK(test::version_of(module) == last);
  INFO("reloads during the writes: " << reloads);
}

TEST_CASE_METHOD(test::live_v1, "live: a deleted file, then garbage, then a good build", "[live]") {
  REQUIRE(module.exports().bump());

  REQUIRE(std::filesystem::remove(target));
  auto frame = module.update();
  REQUIRE(frame);
  CHECK_FALSE(*frame);
  CHECK(test::version_of(module) == 1);

  dir.write_file("libmod.so", "this is not a shared library\n");
  auto garbage = test::next_update(module);
  REQUIRE_FALSE(garbage);
  CHECK(garbage.error().code == relib::reload_errc::load_failed);
  REQUIRE(garbage.error().load);
  CHECK(garbage.error().load->code == relib::load_errc::not_elf);
  CHECK(test::contains(garbage.error().message, target));
  CHECK(test::contains(garbage.error().message, "version 1 keeps running"));
  CHECK(test::version_of(module) == 1);

  // Half a build, closed: a truncated ELF file.
  const std::string image = read_file(TEST_LIVE_V2_PATH);
  dir.write_file("libmod.so", image.substr(0, image.size() / 2));
  auto half = test::next_update(module);
  REQUIRE_FALSE(half);
  REQUIRE(half.error().load);
  CHECK(half.error().load->code == relib::load_errc::damaged_file);
  CHECK(test::version_of(module) == 1);

  test::install_in_place(TEST_LIVE_V2_PATH, target);
  auto restored = test::next_update(module);
  if (!restored) FAIL(restored.error().message);
  CHECK(test::version_of(module) == 2);
  CHECK(*module.exports().bump() == 2);  // the state came through the failures
}

TEST_CASE_METHOD(test::live_v1, "live: an interface change is refused and named, the old version keeps serving", "[live]") {
  int before_calls = 0;
  module.on_reload([&] { ++before_calls; }, [](const relib::reload_error*) {});
  auto reloaded = swap_in(TEST_LIVE_INTERFACE_CHANGED_PATH);
  REQUIRE_FALSE(reloaded);
  const relib::reload_error& error = reloaded.error();
  CHECK(error.code == relib::reload_errc::load_failed);
  REQUIRE(error.load);
  CHECK(error.load->code == relib::load_errc::signature_mismatch);
  CHECK(test::contains(error.message, TEST_SPELLED("export 'version' is int() in the host but long int() in the module",
                                                   "export 'version' is int () in the host but long () in the module")));
  CHECK(test::contains(error.message, "version 1 keeps running"));
  CHECK(before_calls == 0);  // refused before anything was unloaded
  CHECK(test::version_of(module) == 1);
  CHECK(module.generation() == 1);
}

TEST_CASE_METHOD(test::live_v1, "live: a main that does not return void is refused", "[live]") {
  const relib::reload_error error = swap_in_refused(TEST_LIVE_MAIN_INT_PATH, relib::load_errc::signature_mismatch);
  CHECK(test::contains(error.message, "RELIB_MODULE_MAIN(void)"));
  CHECK(test::version_of(module) == 1);
}

TEST_CASE_METHOD(test::live_v1, "live: an exception in the new main brings the previous version back", "[live]") {
  REQUIRE(module.exports().bump());
  std::vector<std::string> events;
  module.on_reload([&] { events.push_back("before"); },
                   [&](const relib::reload_error* error) { events.push_back(error ? "after: failed" : "after: ok"); });
  auto reloaded = swap_in(TEST_LIVE_MAIN_THROWS_PATH);
  REQUIRE_FALSE(reloaded);
  const relib::reload_error& error = reloaded.error();
  CHECK(error.code == relib::reload_errc::main_failed);
  REQUIRE(error.call);
  CHECK(error.call->what == "main of the broken version");
  CHECK(test::contains(error.message, "version 1 was loaded again"));
  CHECK(test::contains(error.message, target));
  CHECK(events == std::vector<std::string>{"before", "after: failed"});
  CHECK(test::version_of(module) == 1);
  CHECK(module.generation() == 1);
  CHECK(*module.exports().bump() == 2);  // the state was kept
  CHECK(module.state<live_state>()->loads == 2);  // main of version 1 ran again
  CHECK(mapped_copies("libmod.so").size() == 1);

  auto next = swap_in(TEST_LIVE_V2_PATH);
  REQUIRE(next);
  CHECK(test::version_of(module) == 2);
}

TEST_CASE_METHOD(test::live_v1, "live: a build the dynamic loader refuses brings the previous version back", "[live]") {
  const relib::reload_error error = swap_in_refused(TEST_LIVE_UNDEFINED_PATH, relib::load_errc::dlopen_failed);
#if defined(_WIN32)
  CHECK(test::contains(error.message, "Windows error 126"));  // ERROR_MOD_NOT_FOUND: its DLL is not beside the copy
#else
  CHECK(test::contains(error.message, "relib_test_symbol_nobody_defines"));
#endif
  CHECK(test::contains(error.message, "was loaded again"));
  CHECK(test::version_of(module) == 1);
}

TEST_CASE_METHOD(test::live_v1, "live: threads still running in the old version refuse the reload until joined", "[live]") {
  const relib::reload_error* seen = nullptr;
  bool before_called = false;
  module.on_reload([&] { before_called = true; }, [&](const relib::reload_error* error) { seen = error; });
  REQUIRE(module.exports().start_thread());
  auto refused = swap_in(TEST_LIVE_V2_PATH);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == relib::reload_errc::unload_failed);
  REQUIRE(refused.error().unload);
  CHECK(refused.error().unload->code == relib::unload_errc::threads_still_running);
  CHECK(test::contains(refused.error().message, "version 1 keeps running"));
  CHECK(before_called);
  CHECK(seen != nullptr);
  CHECK(test::version_of(module) == 1);

  REQUIRE(module.exports().stop_thread());
  auto reloaded = module.reload();  // the file is unchanged since: reload by hand
  if (!reloaded) FAIL(reloaded.error().message);
  CHECK(*reloaded);
  CHECK(test::version_of(module) == 2);
}

TEST_CASE("live: errors when the module cannot be watched or read", "[live]") {
  test::temp_dir dir;
  auto no_directory = relib::load_live_module<live_exports>(dir.path() + "/missing/libmod.so");
  REQUIRE_FALSE(no_directory);
  CHECK(no_directory.error().code == relib::reload_errc::watch_failed);
  CHECK(test::contains(no_directory.error().message, dir.path() + "/missing"));

  auto no_file = relib::load_live_module<live_exports>(dir.path() + "/libmod.so");
  REQUIRE_FALSE(no_file);
  CHECK(no_file.error().code == relib::reload_errc::copy_failed);
#if defined(_WIN32)
  CHECK(test::contains(no_file.error().message, "Windows error 2"));  // ERROR_FILE_NOT_FOUND
#else
  CHECK(test::contains(no_file.error().message, "No such file"));
#endif

  auto directory = relib::load_live_module<live_exports>(dir.path() + "/");
  REQUIRE_FALSE(directory);
  CHECK(directory.error().code == relib::reload_errc::watch_failed);

  relib::live_options options;
  options.shadow_parent = dir.path() + "/not-there";
  test::install_by_rename(TEST_LIVE_V1_PATH, dir.path() + "/libmod.so");
  auto no_parent = relib::load_live_module<live_exports>(dir.path() + "/libmod.so", relib::no_imports{}, options);
  REQUIRE_FALSE(no_parent);
  CHECK(no_parent.error().code == relib::reload_errc::copy_failed);
  CHECK(test::contains(no_parent.error().message, "private directory"));
  // Nothing was left behind by the failed attempts.
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    CHECK(entry.path().filename() == "libmod.so");
  }
}

TEST_CASE_METHOD(test::live_v1, "live: unload() ends it; the exports then report not_loaded", "[live]") {
  auto report = module.unload();
  if (!report) FAIL(report.error().message);
  CHECK(report->module == target);
  CHECK_FALSE(module.is_loaded());
  auto call = module.exports().version();
  REQUIRE_FALSE(call);
  CHECK(call.error().code == relib::call_errc::not_loaded);
  CHECK(mapped_copies("libmod.so").empty());
  auto again = module.unload();
  REQUIRE_FALSE(again);
  CHECK(again.error().code == relib::unload_errc::not_loaded);
}

TEST_CASE_METHOD(test::live_v1, "live: 1,000 reloads leave memory and mappings flat", "[live][cycles]") {
  for (int i = 0; i < 50; ++i) REQUIRE(module.reload());  // allocator and loader caches warm up
  const std::size_t before = test::resident_bytes() / 1024;
  for (int i = 0; i < 1000; ++i) {
    auto reloaded = module.reload();
    if (!reloaded) FAIL(reloaded.error().message);
    REQUIRE(module.exports().bump());
  }
  const std::size_t after = test::resident_bytes() / 1024;
  INFO("resident memory before " << before << " KB, after " << after << " KB");
  CHECK(after < before + 4096 + 1000 * test::sanitizer_bytes_per_load / 1024);
  CHECK(module.generation() == 1051);
  CHECK(mapped_copies("libmod.so").size() == 1);
  CHECK(*module.exports().bump() == 1001);
  CHECK(module.state<live_state>()->loads == 1051);
}

TEST_CASE("live: a moved-from live_module fails cleanly", "[live]") {
  test::temp_dir dir;
  test::live module = test::load_live(TEST_LIVE_V1_PATH, dir.path() + "/libmod.so");
  test::live moved = std::move(module);
  CHECK(test::version_of(moved) == 1);
  CHECK_FALSE(module.is_loaded());
  CHECK_FALSE(module.changed());
  CHECK(module.generation() == 0);
  CHECK(module.path().empty());
  CHECK(module.state<live_state>() == nullptr);
  auto frame = module.update();
  REQUIRE(frame);
  CHECK_FALSE(*frame);
  auto forced = module.reload();
  REQUIRE_FALSE(forced);
  CHECK(test::contains(forced.error().message, "moved from"));
  auto call = module.exports().version();
  REQUIRE_FALSE(call);
  CHECK(call.error().code == relib::call_errc::not_loaded);
  auto unloaded = module.unload();
  REQUIRE_FALSE(unloaded);
  CHECK(unloaded.error().code == relib::unload_errc::not_loaded);
}

TEST_CASE("live: the module's directory removed and made again", "[live]") {
  test::temp_dir dir, shadows;
  const std::string build_dir = dir.path() + "/build";
  std::filesystem::create_directory(build_dir);
  const std::string target = build_dir + "/libmod.so";
  test::live module = test::load_live(TEST_LIVE_V1_PATH, target, shadows.path());

  std::filesystem::remove_all(build_dir);  // rm -rf build
  auto frame = module.update();
  REQUIRE(frame);
  CHECK_FALSE(*frame);
  CHECK(test::version_of(module) == 1);

  std::filesystem::create_directory(build_dir);
  test::install_in_place(TEST_LIVE_V2_PATH, target);
  auto reloaded = test::next_update(module);
  if (!reloaded) FAIL(reloaded.error().message);
  CHECK(*reloaded);
  CHECK(test::version_of(module) == 2);
}

TEST_CASE_METHOD(test::live_v1, "live: a new main that throws while its thread runs cannot be undone, and says so", "[live]") {
  auto reloaded = swap_in(TEST_LIVE_MAIN_THREAD_THROWS_PATH);
  REQUIRE_FALSE(reloaded);
  CHECK(reloaded.error().code == relib::reload_errc::main_failed);
  CHECK(test::contains(reloaded.error().message, "main threw after starting a thread"));
  CHECK(test::contains(reloaded.error().message, "cannot be unloaded"));
  CHECK(test::contains(reloaded.error().message, "runs now as version 2"));
  CHECK(test::version_of(module) == 13);  // the new version serves: it cannot go while its thread runs
  CHECK(module.generation() == 2);

  REQUIRE(module.exports().stop_thread());
  auto next = swap_in(TEST_LIVE_V2_PATH);
  if (!next) FAIL(next.error().message);
  CHECK(test::version_of(module) == 2);
}

TEST_CASE_METHOD(test::live_v1, "live: an old version that stays mapped after dlclose is reported; the new one runs", "[live]") {
  const std::set<std::string> copies = mapped_copies("libmod.so");
  REQUIRE(copies.size() == 1);
#if defined(_WIN32)
  HMODULE extra_handle = LoadLibraryA(copies.begin()->c_str());  // keeps version 1 loaded
#else
  void* extra_handle = ::dlopen(copies.begin()->c_str(), RTLD_NOW | RTLD_NOLOAD);  // keeps version 1 mapped
#endif
  REQUIRE(extra_handle != nullptr);

  auto reloaded = swap_in(TEST_LIVE_V2_PATH);
  REQUIRE_FALSE(reloaded);
  CHECK(reloaded.error().code == relib::reload_errc::unload_failed);
  REQUIRE(reloaded.error().unload);
  CHECK(reloaded.error().unload->code == relib::unload_errc::still_loaded);
  CHECK(test::contains(reloaded.error().message, "stayed in the process"));
  CHECK(test::contains(reloaded.error().message, "version 2 runs now"));
  CHECK(test::version_of(module) == 2);
#if defined(_WIN32)
  FreeLibrary(extra_handle);
#else
  ::dlclose(extra_handle);
#endif
}

TEST_CASE("live: a symlink as the module path follows builds of the file it names", "[live]") {
  test::temp_dir link_dir, build_dir;
  const std::string target = build_dir.path() + "/libmod.so.1";
  const std::string link = link_dir.path() + "/libmod.so";
  test::install_by_rename(TEST_LIVE_V1_PATH, target);
  if (!test::create_symlink(target, link)) {
    WARN("not tested under Wine, which makes no symbolic links");
    return;
  }
  auto loaded = relib::load_live_module<live_exports>(link, relib::no_imports{}, test::quick_options());
  if (!loaded) FAIL(loaded.error().message);
  test::live module = std::move(*loaded);
  CHECK(test::version_of(module) == 1);

  test::install_by_rename(TEST_LIVE_V2_PATH, target);  // the build writes the file the link names
  auto renamed = test::next_update(module);
  if (!renamed) FAIL(renamed.error().message);
  CHECK(test::version_of(module) == 2);

  test::install_in_place(TEST_LIVE_V3_PATH, target);
  auto rewritten = test::next_update(module);
  if (!rewritten) FAIL(rewritten.error().message);
  CHECK(test::version_of(module) == 3);
}

TEST_CASE("live: when the previous version cannot be brought back, nothing runs until the next good build",
          "[live]") {
  test::temp_dir dir;
  const std::string target = dir.path() + "/libmod.so";
  test::live module = test::load_live(TEST_LIVE_MAIN_ONCE_PATH, target);  // its main starts only once
  CHECK(test::version_of(module) == 14);
  test::install_by_rename(TEST_LIVE_MAIN_THROWS_PATH, target);
  auto failed = test::next_update(module);
  REQUIRE_FALSE(failed);
  CHECK(failed.error().code == relib::reload_errc::rollback_failed);
  REQUIRE(failed.error().call);
  CHECK(failed.error().call->what == "main of the broken version");
  CHECK(test::contains(failed.error().message, "back failed too: its main threw"));
  CHECK(test::contains(failed.error().message, "main refuses a second start"));
  CHECK(test::contains(failed.error().message, "No version is loaded until the next good build"));
  CHECK_FALSE(module.is_loaded());
  auto call = module.exports().version();
  REQUIRE_FALSE(call);
  CHECK(call.error().code == relib::call_errc::not_loaded);
  CHECK(test::contains(call.error().message, target));  // named, though the failed versions are gone
  CHECK(mapped_copies("libmod.so").empty());

  test::install_by_rename(TEST_LIVE_V2_PATH, target);
  auto restored = test::next_update(module);
  if (!restored) FAIL(restored.error().message);
  CHECK(test::version_of(module) == 2);
  CHECK(module.state<live_state>()->loads == 2);  // the state survived it all
}

namespace {
std::vector<std::string> copy_directories(const std::string& directory) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    if (entry.path().filename().string().rfind(".relib-", 0) == 0) found.push_back(entry.path().string());
  }
  return found;
}
}  // namespace

TEST_CASE("live: the copy directory of a host killed with SIGKILL is removed by the next live module", "[live]") {
  test::temp_dir dir;
  const std::string target = dir.path() + "/libmod.so";
#if defined(_WIN32)  // TerminateProcess stands for SIGKILL
  SetEnvironmentVariableA("RELIB_TEST_KILLED_HOST_TARGET", target.c_str());
  const std::string self = test::this_program();
  std::string command = "\"" + self + "\" \"live host killed while it runs\"";
  STARTUPINFOA startup{};
  startup.cb = sizeof startup;
  PROCESS_INFORMATION child{};
  REQUIRE(CreateProcessA(self.c_str(), command.data(), nullptr, nullptr, FALSE, 0, nullptr, nullptr, &startup, &child) != 0);
  SetEnvironmentVariableA("RELIB_TEST_KILLED_HOST_TARGET", nullptr);
  WaitForSingleObject(child.hProcess, INFINITE);
  DWORD code = 0;
  GetExitCodeProcess(child.hProcess, &code);
  CloseHandle(child.hProcess);
  CloseHandle(child.hThread);
  CHECK(code == 9);
#else
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // a fresh process: this one has threads
    ::setenv("RELIB_TEST_KILLED_HOST_TARGET", target.c_str(), 1);
    char self[] = "/proc/self/exe", name[] = "live host killed while it runs";
    char* arguments[] = {self, name, nullptr};
    ::execv(self, arguments);
    ::_exit(127);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
#endif
  const std::vector<std::string> left = copy_directories(dir.path());
  REQUIRE(left.size() == 1);
  {
    test::live first = test::load_live(TEST_LIVE_V1_PATH, target);
    const std::vector<std::string> now = copy_directories(dir.path());
    REQUIRE(now.size() == 1);
    CHECK(now[0] != left[0]);  // the dead host's is gone; this one is the new module's
    test::live second = test::load_live(TEST_LIVE_V1_PATH, target);
    CHECK(copy_directories(dir.path()).size() == 2);  // a living owner's directory stays
  }
  CHECK(copy_directories(dir.path()).empty());
}

TEST_CASE("live host killed while it runs", "[.]") {
  const char* target = std::getenv("RELIB_TEST_KILLED_HOST_TARGET");
  REQUIRE(target != nullptr);
  test::live module = test::load_live(TEST_LIVE_V1_PATH, target);
  REQUIRE(module.is_loaded());
#if defined(_WIN32)
  TerminateProcess(GetCurrentProcess(), 9);
#else
  ::kill(::getpid(), SIGKILL);
#endif
}

// Bytes in the files of every private copy directory under `parent`.
static std::uintmax_t bytes_copied_under(const std::string& parent) {
  std::uintmax_t total = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(parent)) {
    if (entry.is_regular_file()) total += entry.file_size();
  }
  return total;
}

TEST_CASE("live: a build refused by its header or records is never copied", "[live]") {
  test::temp_dir dir, shadows;
  const std::string target = dir.path() + "/libmod.so";
  test::live module = test::load_live(TEST_LIVE_V1_PATH, target, shadows.path());
  const std::uintmax_t running_copy = bytes_copied_under(shadows.path());

  // A 2 GiB file, all holes after a real module's first page: its program headers point at zeros.
  const std::string staged = dir.path() + "/staged.so";
  {
    std::ofstream out(staged, std::ios::binary);
    out << read_file(TEST_LIVE_V2_PATH).substr(0, 4096);
  }
  std::filesystem::resize_file(staged, std::uintmax_t{2} << 30);
  std::filesystem::rename(staged, target);
  auto huge = test::next_update(module);
  REQUIRE_FALSE(huge);
  REQUIRE(huge.error().load);
  CHECK(huge.error().load->code == relib::load_errc::damaged_file);
  CHECK(bytes_copied_under(shadows.path()) == running_copy);

  // A build for another interface: its records are read from the watched file, not a copy.
  test::install_by_rename(TEST_LIVE_INTERFACE_CHANGED_PATH, target);
  auto other = test::next_update(module);
  REQUIRE_FALSE(other);
  REQUIRE(other.error().load);
  CHECK(other.error().load->code == relib::load_errc::signature_mismatch);
  CHECK(bytes_copied_under(shadows.path()) == running_copy);
  CHECK(test::version_of(module) == 1);

  // Copies are numbered: the next good build is the second copy ever made, not the fourth.
  test::install_by_rename(TEST_LIVE_V2_PATH, target);
  auto good = test::next_update(module);
  if (!good) FAIL(good.error().message);
  std::vector<std::string> copies;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(shadows.path())) {
    if (entry.is_regular_file()) copies.push_back(entry.path().filename().string());
  }
  // (the first copy may still be there: the watcher's thread removes it after a reload)
  std::sort(copies.begin(), copies.end());
  CHECK(copies.back() == "2-libmod.so");
}
