// Shared by the test files: the host side of the test interfaces and a few helpers.
#pragma once

#include "relib.hpp"

#include "game_api.hpp"
#include "other_api.hpp"

#include <catch2/catch.hpp>
#if defined(_WIN32)
#if !defined(WIN32_LEAN_AND_MEAN)
#define WIN32_LEAN_AND_MEAN
#endif
#if !defined(NOMINMAX)
#define NOMINMAX
#endif
#include <windows.h>
#else
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

RELIB_HOST_EXPORTS(game_exports, GAME_EXPORTS);
RELIB_HOST_IMPORTS(game_imports, GAME_IMPORTS);
RELIB_HOST_EXPORTS(other_exports, OTHER_EXPORTS);
RELIB_HOST_IMPORTS(other_imports, OTHER_IMPORTS);

/* A signature as this compiler spells it in relib's messages: GCC writes "int(int, int)" and
   "long int", clang "int (int, int)" and "long". Host and module always agree, being checked to
   come from the same compiler. */
#if defined(__clang__)
#define TEST_SPELLED(gcc, clang) clang
#else
#define TEST_SPELLED(gcc, clang) gcc
#endif

namespace test {

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

struct child_outcome {
  int signal = 0;      // the signal that ended the child, 0 if it exited
  int exit_code = -1;  // its exit status, when it exited
  std::string stderr_text;
};

#if defined(_WIN32)
// Runs `body` in a child process and reports how it ended and what it wrote to stderr. Windows
// has no fork(): the child is this test program again, running the current test case with
// TEST_CHILD set to the number of this call in it; there the call runs `body` and exits, and
// the calls before it return at once.
child_outcome run_in_child(const std::function<void()>& body);
#else
// Runs `body` in a child process and reports how it ended and what it wrote to stderr.
inline child_outcome run_in_child(const std::function<void()>& body) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::dup2(pipe_fds[1], STDERR_FILENO);
    ::close(pipe_fds[0]);
    body();
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  child_outcome outcome;
  char buffer[512];
  ssize_t got = 0;
  while ((got = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0) outcome.stderr_text.append(buffer, static_cast<std::size_t>(got));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (WIFSIGNALED(status)) outcome.signal = WTERMSIG(status);
  if (WIFEXITED(status)) outcome.exit_code = WEXITSTATUS(status);
  return outcome;
}
#endif

// What a module's file name ends with here.
#if defined(_WIN32)
constexpr const char* library_suffix = ".dll";
#else
constexpr const char* library_suffix = ".so";
#endif

// Whether this Windows program runs under Wine.
inline bool under_wine() {
#if defined(_WIN32)
  const HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  return ntdll != nullptr && GetProcAddress(ntdll, "wine_get_version") != nullptr;
#else
  return false;
#endif
}

// A symbolic link at `link` to `target` (mingw-w64's std::filesystem has none: the system's
// call). False under Wine 8, whose CreateSymbolicLinkW reports success and makes no link: the
// caller then says what it leaves untested.
inline bool create_symlink(const std::string& target, const std::string& link) {
#if defined(_WIN32)
  if (under_wine()) return false;
  const DWORD unprivileged = 0x2;  // SYMBOLIC_LINK_FLAG_ALLOW_UNPRIVILEGED_CREATE
  REQUIRE(CreateSymbolicLinkW(std::filesystem::path(link).wstring().c_str(),
                              std::filesystem::path(target).wstring().c_str(), unprivileged) != 0);
#else
  std::filesystem::create_symlink(target, link);
#endif
  return true;
}

// This test program's file.
inline std::string this_program() {
#if defined(_WIN32)
  char path[MAX_PATH];
  const DWORD length = GetModuleFileNameA(nullptr, path, MAX_PATH);
  return std::string(path, length);
#else
  return "/proc/self/exe";
#endif
}

// The whole file, as bytes (empty if it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Messages the game module sent through its `log` import, in order.
std::vector<std::string>& logged();

// True while a file with the same device and inode as `path` is mapped into this process,
// read independently of relib from /proc/self/maps (Windows: the process's module list, by
// volume and file index).
bool is_mapped(const std::string& path);

// The process's resident memory, exact: from /proc/self/smaps_rollup. On Windows, its committed
// private memory (VirtualQuery; Wine reports no working set).
std::size_t resident_bytes();

// What a sanitizer keeps of its own for each load of a module (allocation stacks and global
// redzones, shadow for the new addresses), never given back: about 20 KB measured under
// AddressSanitizer. Tests that compare resident memory across load cycles allow this much per
// load on top of their own margin; a module leak they look for is larger.
// GCC says which sanitizer is on with macros, clang with __has_feature.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ADDRESS_SANITIZER 1
#endif
#if __has_feature(thread_sanitizer)
#define TEST_THREAD_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ADDRESS_SANITIZER 1
#endif
#if defined(__SANITIZE_THREAD__)
#define TEST_THREAD_SANITIZER 1
#endif
#if defined(TEST_THREAD_SANITIZER)
constexpr bool under_thread_sanitizer = true;
#else
constexpr bool under_thread_sanitizer = false;
#endif
#if defined(TEST_ADDRESS_SANITIZER)
constexpr bool under_address_sanitizer = true;
#else
constexpr bool under_address_sanitizer = false;
#endif
#if defined(TEST_ADDRESS_SANITIZER) || defined(TEST_THREAD_SANITIZER)
constexpr std::size_t sanitizer_bytes_per_load = 48 * 1024;
#else
constexpr std::size_t sanitizer_bytes_per_load = 0;
#endif
#if defined(_WIN32)
// libmimalloc.dll built by mingw-w64 keeps about 1 KB of the C runtime's heap for every thread that
// ends in the process, relib's or not (docs/windows.md). Tests that end a thread per cycle allow it.
constexpr std::size_t bytes_kept_per_ended_thread = 2048;
#else
constexpr std::size_t bytes_kept_per_ended_thread = 0;
#endif

// A private directory removed with its contents at the end of the scope.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }
  std::string write_file(const std::string& name, const std::string& contents) const;
  std::string copy_file(const std::string& from, const std::string& name) const;

 private:
  std::string path_;
};

// A host thread that runs `work`, then stays alive until release() (or destruction), so tests can
// unload while it lives and watch what happens when it exits.
class parked_thread {
 public:
  explicit parked_thread(std::function<void()> work);
  ~parked_thread() { release(); }
  parked_thread(const parked_thread&) = delete;
  parked_thread& operator=(const parked_thread&) = delete;
  void release();  // lets the thread exit and joins it

 private:
  std::mutex lock_;
  std::condition_variable changed_;
  bool worked_ = false;
  bool may_exit_ = false;
  std::thread thread_;
};

// Loads or fails the test with the loader's message.
template <class Exports = relib::no_exports, class Imports = relib::no_imports>
relib::module<Exports> load_or_fail(const std::string& path, Imports imports = {}) {
  auto loaded = relib::load_module<Exports>(path, imports);
  INFO((loaded ? std::string() : loaded.error().message));
  REQUIRE(loaded.has_value());
  return std::move(*loaded);
}

template <class Exports>
void unload_or_fail(relib::module<Exports>& module) {
  auto unloaded = module.unload();
  INFO((unloaded ? std::string() : unloaded.error().message));
  REQUIRE(unloaded.has_value());
}

}  // namespace test
