// relib_bench: the cost of relib's calls, of a load/unload cycle and of a live reload, each next
// to its baseline measured in the same run, so the table at the end reads as ratios.
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include "bench_api.hpp"

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#if defined(_WIN32)
#include <windows.h>  // as relib.hpp included it (lean, without min and max)
#else
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

RELIB_HOST_EXPORTS(bench_exports, BENCH_EXPORTS);
RELIB_HOST_IMPORTS(bench_imports, BENCH_IMPORTS);

int bench_imports::host_add(int a, int b) { return a + b; }

namespace {

/* ---- The baselines' system calls -------------------------------------------------------------
   The raw baselines load, copy and watch files with the system's own calls, as a host without
   relib would: dlopen, copy_file_range and inotify on Linux; LoadLibraryW, CopyFileW and
   ReadDirectoryChangesW on Windows. Under Wine these calls are emulated, so the rows that time
   them describe Wine (wine_version() says when the program runs there). */
namespace raw {
#if defined(_WIN32)
constexpr const char* library_suffix = ".dll";

using library = HMODULE;
library open_library(const std::string& path) { return LoadLibraryW(std::filesystem::path(path).c_str()); }
void* find_symbol(library handle, const char* name) {
  return handle == nullptr ? nullptr : reinterpret_cast<void*>(GetProcAddress(handle, name));
}
void close_library(library handle) { FreeLibrary(handle); }

// relib holds libmimalloc.dll from its first load on; one more reference that is never dropped.
void pin_mimalloc() { LoadLibraryW(L"libmimalloc.dll"); }

bool copy_file(const std::string& from, const std::string& to) {
  return CopyFileW(std::filesystem::path(from).c_str(), std::filesystem::path(to).c_str(), TRUE) != 0;
}
bool hard_link(const std::string& existing, const std::string& link) {
  return CreateHardLinkW(std::filesystem::path(link).c_str(), std::filesystem::path(existing).c_str(), nullptr) != 0;
}
bool rename_over(const std::string& from, const std::string& to) {
  return MoveFileExW(std::filesystem::path(from).c_str(), std::filesystem::path(to).c_str(), MOVEFILE_REPLACE_EXISTING) != 0;
}

// The Wine version running this program, or nullptr on Windows itself.
const char* wine_version() {
  using version_function = const char* (*)();
  const HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  const auto version = ntdll == nullptr ? nullptr : reinterpret_cast<version_function>(
                                                        reinterpret_cast<void*>(GetProcAddress(ntdll, "wine_get_version")));
  return version == nullptr ? nullptr : version();
}

// Reports the files created, renamed into or written in one directory, until stop().
class directory_watcher {
 public:
  directory_watcher() = default;
  directory_watcher(const directory_watcher&) = delete;
  directory_watcher& operator=(const directory_watcher&) = delete;
  ~directory_watcher() {
    if (directory_ != INVALID_HANDLE_VALUE) CloseHandle(directory_);
    if (arrived_ != nullptr) CloseHandle(arrived_);
    if (stop_ != nullptr) CloseHandle(stop_);
  }

  bool open(const std::string& directory) {
    directory_ = CreateFileW(std::filesystem::path(directory).c_str(), FILE_LIST_DIRECTORY,
                             FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr, OPEN_EXISTING,
                             FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OVERLAPPED, nullptr);
    arrived_ = CreateEventW(nullptr, TRUE, FALSE, nullptr);
    stop_ = CreateEventW(nullptr, TRUE, FALSE, nullptr);
    return directory_ != INVALID_HANDLE_VALUE && arrived_ != nullptr && stop_ != nullptr;
  }

  // Calls changed(name) for each file event until stop(); on the watching thread.
  template <class Changed>
  void run(Changed changed) {
    alignas(DWORD) char buffer[4096];
    for (;;) {
      OVERLAPPED pending{};
      pending.hEvent = arrived_;
      const DWORD wanted = FILE_NOTIFY_CHANGE_FILE_NAME | FILE_NOTIFY_CHANGE_LAST_WRITE;
      if (!ReadDirectoryChangesW(directory_, buffer, sizeof buffer, FALSE, wanted, nullptr, &pending, nullptr)) return;
      const HANDLE events[2] = {arrived_, stop_};
      DWORD length = 0;
      if (WaitForMultipleObjects(2, events, FALSE, INFINITE) != WAIT_OBJECT_0) {
        CancelIo(directory_);
        GetOverlappedResult(directory_, &pending, &length, TRUE);
        return;
      }
      if (!GetOverlappedResult(directory_, &pending, &length, FALSE)) return;
      for (DWORD offset = 0; length != 0;) {
        const auto* event = reinterpret_cast<const FILE_NOTIFY_INFORMATION*>(buffer + offset);
        if (event->Action != FILE_ACTION_REMOVED && event->Action != FILE_ACTION_RENAMED_OLD_NAME) {
          changed(std::filesystem::path(std::wstring(event->FileName, event->FileNameLength / sizeof(WCHAR))).string());
        }
        if (event->NextEntryOffset == 0) break;
        offset += event->NextEntryOffset;
      }
    }
  }

  void stop() { SetEvent(stop_); }

 private:
  HANDLE directory_ = INVALID_HANDLE_VALUE, arrived_ = nullptr, stop_ = nullptr;
};
#else
constexpr const char* library_suffix = ".so";

using library = void*;
library open_library(const std::string& path) { return dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL); }
void* find_symbol(library handle, const char* name) { return handle == nullptr ? nullptr : dlsym(handle, name); }
void close_library(library handle) { dlclose(handle); }

// relib pins libmimalloc at its first load; the raw cycles then do not load and unload it each time.
void pin_mimalloc() { dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE); }

// Copies a file to a new one in the kernel (copy_file_range), as relib copies a new build.
bool copy_file(const std::string& from, const std::string& to) {
  const int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
  const int out = open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
  struct stat status {};
  bool copied = in >= 0 && out >= 0 && fstat(in, &status) == 0;
  for (off_t done = 0; copied && done < status.st_size;) {
    const auto left = static_cast<std::size_t>(status.st_size - done);
    const ssize_t n = copy_file_range(in, nullptr, out, nullptr, left, 0);
    copied = n > 0;
    done += n;
  }
  if (in >= 0) close(in);
  if (out >= 0) close(out);
  return copied;
}
bool hard_link(const std::string& existing, const std::string& link) { return ::link(existing.c_str(), link.c_str()) == 0; }
bool rename_over(const std::string& from, const std::string& to) { return std::rename(from.c_str(), to.c_str()) == 0; }

const char* wine_version() { return nullptr; }

// Reports the files closed after writing or moved into one directory, until stop().
class directory_watcher {
 public:
  directory_watcher() = default;
  directory_watcher(const directory_watcher&) = delete;
  directory_watcher& operator=(const directory_watcher&) = delete;
  ~directory_watcher() {
    if (inotify_fd_ >= 0) close(inotify_fd_);
    if (stop_fd_ >= 0) close(stop_fd_);
  }

  bool open(const std::string& directory) {
    inotify_fd_ = inotify_init1(IN_CLOEXEC);
    stop_fd_ = eventfd(0, EFD_CLOEXEC);
    return inotify_fd_ >= 0 && stop_fd_ >= 0 &&
           inotify_add_watch(inotify_fd_, directory.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) >= 0;
  }

  // Calls changed(name) for each file event until stop(); on the watching thread.
  template <class Changed>
  void run(Changed changed) {
    alignas(inotify_event) char buffer[4096];
    for (;;) {
      pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 || fds[1].revents != 0) return;
      const ssize_t length = read(inotify_fd_, buffer, sizeof buffer);
      for (ssize_t offset = 0; offset < length;) {
        const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
        offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
        if (event->len != 0) changed(std::string(event->name));
      }
    }
  }

  void stop() {
    const std::uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof one);
  }

 private:
  int inotify_fd_ = -1, stop_fd_ = -1;
};
#endif
}  // namespace raw

constexpr int import_batch = 1000;  // imports are measured as loops inside the module

__attribute__((noinline)) int direct_add(int a, int b) {
  benchmark::ClobberMemory();
  return a + b;
}

relib::module<bench_exports>& bench_module() {
  static relib::module<bench_exports> module = [] {
    auto loaded = relib::load_module<bench_exports>(BENCH_MODULE_PATH, bench_imports{});
    if (!loaded) {
      std::fprintf(stderr, "%s\n", loaded.error().message.c_str());
      std::exit(1);
    }
    return std::move(*loaded);
  }();
  return module;
}

// The three call benchmarks consume results the same way: summed in a register, published once.
void BM_DirectCall(benchmark::State& state) {
  int i = 0, total = 0;
  for (auto _ : state) total += direct_add(++i, 1);
  benchmark::DoNotOptimize(total);
}

// The pointer from dlsym is kept in a table in memory, as hosts keep them and as relib keeps its
// exports.
struct raw_table {
  int (*add)(int, int);
};

void BM_RawPointerCall(benchmark::State& state) {
  const raw::library handle = raw::open_library(BENCH_MODULE_PATH);
  static raw_table table;
  table.add = reinterpret_cast<int (*)(int, int)>(raw::find_symbol(handle, "relib_bench_raw_add"));
  if (table.add == nullptr) return state.SkipWithError("relib_bench_raw_add is not exported");
  int i = 0, total = 0;
  for (auto _ : state) total += table.add(++i, 1);
  benchmark::DoNotOptimize(total);
  raw::close_library(handle);
}

void BM_ExportCall(benchmark::State& state) {
  const bench_exports& exports = bench_module().exports();
  int i = 0, total = 0;
  for (auto _ : state) total += exports.add(++i, 1).value();  // checked: throws if the export threw
  benchmark::DoNotOptimize(total);
}

/* The same call into a module loaded with load_options::crash_guard: a setjmp per call. Skipped
   where the guard is not available (Windows: load_errc::not_on_this_platform). */
void BM_GuardedExportCall(benchmark::State& state) {
  static auto guarded = [] {
    relib::load_options options;
    options.crash_guard = true;
    return relib::load_module<bench_exports>(BENCH_MODULE_V2_PATH, bench_imports{}, options);
  }();
  if (!guarded) return state.SkipWithError(guarded.error().message.c_str());
  const bench_exports& exports = guarded->exports();
  int i = 0, total = 0;
  for (auto _ : state) total += exports.add(++i, 1).value();
  benchmark::DoNotOptimize(total);
}

void BM_RawPointerCallFromModule(benchmark::State& state) {
  const bench_exports& exports = bench_module().exports();
  for (auto _ : state) benchmark::DoNotOptimize(exports.call_pointer(&bench_imports::host_add, import_batch));
  state.SetItemsProcessed(state.iterations() * import_batch);
}

void BM_ImportCall(benchmark::State& state) {
  const bench_exports& exports = bench_module().exports();
  for (auto _ : state) benchmark::DoNotOptimize(exports.call_import(import_batch));
  state.SetItemsProcessed(state.iterations() * import_batch);
}

/* A std::runtime_error thrown three calls deep and caught: in the host itself, from the plain
   library through a raw pointer, from the relib module through a raw pointer (its throw records
   the stack, nobody names it), and through relib, whose call_error names every frame. */
__attribute__((noinline)) int host_thrower3(int value) {
  if (value >= 0) throw std::runtime_error("thrown three calls deep");
  return value;
}
__attribute__((noinline)) int host_thrower2(int value) { return host_thrower3(value) + 1; }
__attribute__((noinline)) int host_thrower1(int value) { return host_thrower2(value) * 2; }

template <class Throw>
void throw_and_catch(benchmark::State& state, Throw thrower) {
  for (auto _ : state) {
    try {
      benchmark::DoNotOptimize(thrower(1));
    } catch (const std::exception& error) {
      benchmark::DoNotOptimize(error.what());
    }
  }
}

void BM_PlainThrowCatch(benchmark::State& state) { throw_and_catch(state, &host_thrower1); }

void raw_throwing_calls(benchmark::State& state, const char* path) {
  const raw::library handle = raw::open_library(path);
  auto raw_throw = reinterpret_cast<int (*)(int)>(raw::find_symbol(handle, "relib_bench_raw_throw"));
  if (raw_throw == nullptr) return state.SkipWithError("relib_bench_raw_throw is not exported");
  throw_and_catch(state, raw_throw);
  raw::close_library(handle);
}
void BM_PlainLibraryThrowingCall(benchmark::State& state) { raw_throwing_calls(state, BENCH_PLAIN_PATH); }
void BM_RawThrowingCall(benchmark::State& state) { raw_throwing_calls(state, BENCH_MODULE_PATH); }

void BM_ThrowingExportCall(benchmark::State& state) {
  const bench_exports& exports = bench_module().exports();
  for (auto _ : state) {
    auto failed = exports.throw_three_deep(1);
    benchmark::DoNotOptimize(failed.error().stack.size());
  }
}

constexpr int malloc_batch = 1000;  // malloc/free pairs per iteration, in each of the three

/* The allocator benchmarks load a module object of their own and run first: the raw load cycles
   below load the module outside relib, whose heaps are then never destroyed, and enough of
   them fill relib's arena, after which mimalloc takes segments from the OS (see
   docs/unloading.md). */
template <class Run>
void with_own_module(benchmark::State& state, Run run) {
  auto loaded = relib::load_module<bench_exports>(BENCH_MODULE_PATH, bench_imports{});
  if (!loaded) return state.SkipWithError("load failed");
  run(loaded->exports());
  if (!loaded->unload()) state.SkipWithError("unload failed");
}

void malloc_pairs(benchmark::State& state, int allocator) {
  with_own_module(state, [&](const bench_exports& exports) {
    for (auto _ : state) benchmark::DoNotOptimize(exports.malloc_free(allocator, malloc_batch).value());
  });
  state.SetItemsProcessed(state.iterations() * malloc_batch);
}
void BM_ModuleMalloc(benchmark::State& state) { malloc_pairs(state, 0); }
void BM_MimallocMalloc(benchmark::State& state) { malloc_pairs(state, 1); }
void BM_LibcMalloc(benchmark::State& state) { malloc_pairs(state, 2); }

// The same three allocators on batches of 64 mixed-size blocks (per malloc/free pair).
constexpr int batch_blocks = 64, batches_per_iteration = 16;

void mixed_batches(benchmark::State& state, int allocator) {
  with_own_module(state, [&](const bench_exports& exports) {
    for (auto _ : state) {
      benchmark::DoNotOptimize(exports.malloc_free_batches(allocator, batches_per_iteration).value());
    }
  });
  state.SetItemsProcessed(state.iterations() * batch_blocks * batches_per_iteration);
}
void BM_ModuleMallocMixed(benchmark::State& state) { mixed_batches(state, 0); }
void BM_MimallocMallocMixed(benchmark::State& state) { mixed_batches(state, 1); }
void BM_LibcMallocMixed(benchmark::State& state) { mixed_batches(state, 2); }

// Loads the bench module (untimed) with state.range(0) blocks allocated by module code.
std::optional<relib::module<bench_exports>> load_with_blocks(benchmark::State& state) {
  state.PauseTiming();
  auto loaded = relib::load_module<bench_exports>(BENCH_MODULE_PATH, bench_imports{});
  if (!loaded) return state.SkipWithError("load failed"), std::nullopt;
  loaded->exports().allocate_blocks(static_cast<int>(state.range(0))).value();
  state.ResumeTiming();
  return std::move(*loaded);
}

// A module holding state.range(0) leaked blocks: unload reclaims them at once...
void BM_UnloadWithLeakedBlocks(benchmark::State& state) {
  for (auto _ : state) {
    auto module = load_with_blocks(state);
    if (!module || !module->unload()) return state.SkipWithError("unload failed");
  }
}

// ...against freeing them one by one (then unloading, untimed).
void BM_FreeBlocksOneByOne(benchmark::State& state) {
  for (auto _ : state) {
    auto module = load_with_blocks(state);
    if (!module) return;
    module->exports().free_blocks().value();
    state.PauseTiming();
    if (!module->unload()) state.SkipWithError("unload failed");
    state.ResumeTiming();
  }
}

// dlopen, dlsym and dlclose of a file (LoadLibraryW, GetProcAddress, FreeLibrary), in a loop,
// with mimalloc kept in the process as relib keeps it.
void raw_dlopen_cycles(benchmark::State& state, const char* path) {
  raw::pin_mimalloc();
  for (auto _ : state) {
    const raw::library handle = raw::open_library(path);
    benchmark::DoNotOptimize(raw::find_symbol(handle, "relib_bench_raw_add"));
    raw::close_library(handle);
  }
}

void BM_RawDlopenCycle(benchmark::State& state) { raw_dlopen_cycles(state, BENCH_MODULE_PATH); }

// The same source built as a plain shared library (shared C++ runtime), loaded and unloaded raw:
// the baseline of a relib load cycle.
void BM_PlainDlopenCycle(benchmark::State& state) { raw_dlopen_cycles(state, BENCH_PLAIN_PATH); }

void BM_ModuleLoadUnloadCycle(benchmark::State& state) {
  for (auto _ : state) {
    auto loaded = relib::load_module<bench_exports>(BENCH_MODULE_PATH, bench_imports{});
    if (!loaded || !loaded->unload()) state.SkipWithError("load or unload failed");
  }
}

// What a load spends before dlopen reading the file: the header, the file gate (ELF or PE) and
// the records (relib's internals, measured alone; the load cycle rows include it).
void BM_FileGate(benchmark::State& state) {
  relib::detail::platform::readable_file file;
  if (file.open(BENCH_MODULE_PATH) != relib::detail::platform::readable_file::status::opened) {
    state.SkipWithError("cannot open the bench module");
    return;
  }
  for (auto _ : state) {
    relib::detail::image_contents contents;
    std::string detail;
    if (relib::detail::read_image(file, contents, detail) != relib::detail::image_status::ok) state.SkipWithError(detail.c_str());
    benchmark::DoNotOptimize(contents.meta.data());
  }
}

// The same without the trust policy: what its readlink() and stat() of each directory cost (on
// Windows the policy checks nothing yet: docs/windows.md).
void BM_ModuleLoadUnloadCycleNoTrustCheck(benchmark::State& state) {
  relib::load_options options;
  options.require_trusted_file = false;
  for (auto _ : state) {
    auto loaded = relib::load_module<bench_exports>(BENCH_MODULE_PATH, bench_imports{}, options);
    if (!loaded || !loaded->unload()) state.SkipWithError("load or unload failed");
  }
}

// A fresh directory of a random name in the temporary directory, removed with its files at the end.
class temp_directory {
 public:
  temp_directory() {
    std::error_code error;
    const std::filesystem::path parent = std::filesystem::temp_directory_path(error);
    std::random_device random;
    for (int attempt = 0; !error && attempt < 100 && path_.empty(); ++attempt) {
      const std::filesystem::path candidate = parent / ("relib_bench-" + std::to_string(random()));
      if (std::filesystem::create_directory(candidate, error)) path_ = candidate.string();
    }
  }
  temp_directory(const temp_directory&) = delete;
  temp_directory& operator=(const temp_directory&) = delete;
  ~temp_directory() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  bool made() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string file(const char* name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The module's file name in the watched directories.
const std::string module_file_name = std::string("libbench_module") + raw::library_suffix;

void remove_file(const std::string& path) {
  std::error_code ignored;
  std::filesystem::remove(path, ignored);
}

// The reload baseline: the raw cycle above on a fresh copy of the module file, made in a
// temporary directory as relib makes its copies (same size, same file system), then removed.
void BM_RawCopyDlopenCycle(benchmark::State& state) {
  raw::pin_mimalloc();
  const temp_directory directory;
  const std::string source = directory.file(module_file_name.c_str());
  const std::string copy = directory.file(("copy" + std::string(raw::library_suffix)).c_str());
  if (!directory.made() || !raw::copy_file(BENCH_MODULE_PATH, source)) return state.SkipWithError("cannot copy the module");
  for (auto _ : state) {
    if (!raw::copy_file(source, copy)) return state.SkipWithError("cannot copy the module");
    const raw::library handle = raw::open_library(copy);
    void* add = raw::find_symbol(handle, "relib_bench_raw_add");
    if (add == nullptr) return state.SkipWithError("loading the copy or finding its function failed");
    benchmark::DoNotOptimize(reinterpret_cast<int (*)(int, int)>(add)(1, 2));
    raw::close_library(handle);
    remove_file(copy);
  }
}

// A live bench module (version 1) watched in a temporary directory; the builds that replace it
// are prepared in a second one on the same file system, so that only their rename into place
// is an event in the watched directory.
struct live_bench_module {
  temp_directory watched, staging;
  const std::string path = watched.file(module_file_name.c_str());
  std::optional<relib::live_module<bench_exports>> live;

  explicit live_bench_module(benchmark::State& state) {
    if (!watched.made() || !staging.made() || !raw::copy_file(BENCH_MODULE_PATH, path)) {
      state.SkipWithError("cannot copy the module into a temporary directory");
      return;
    }
    relib::live_options options;
    options.settle_time = std::chrono::milliseconds(0);
    auto loaded = relib::load_live_module<bench_exports>(path, bench_imports{}, options);
    if (loaded) {
      live.emplace(std::move(*loaded));
    } else {
      state.SkipWithError(loaded.error().message.c_str());
    }
  }
};

// A frame loop's view of a change: the host thread stays busy and sees the flag at its next
// frame, instead of sleeping until it is woken.
template <class Changed>
bool spin_until(Changed changed, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (std::uint64_t spins = 1; !changed(); ++spins) {
    if (spins % 4096 == 0 && std::chrono::steady_clock::now() > deadline) return false;
  }
  return true;
}

// Puts new builds in place and times each until the first call into it returned, for relib and
// for the hand-written reloader below: Reloader::wait_for_change() blocks until its watcher saw
// the new file, Reloader::reload() swaps it in, calls it and returns the version it runs (0 on
// failure). The two builds alternate, so the version tells which one runs. Each build is copied
// (untimed) into a directory next to the watched one, then renamed over the watched file. Timed
// by hand from the rename's return, when the new build is in place: the rename itself is the
// build's cost (ext4 writes the new file out when it replaces another, 50 to 1500 us here),
// shown apart as rename_us. The replaced build keeps a link in the staging directory, so that
// the rename does not free it after the watcher was told (which would hide part of the
// watcher's latency, wake_us).
template <class Reloader>
void time_reloads(benchmark::State& state, const temp_directory& staging, const std::string& path, Reloader& reloader) {
  const std::string builds[2] = {BENCH_MODULE_PATH, BENCH_MODULE_V2_PATH};
  const std::string next = staging.file("next"), replaced = staging.file("replaced");
  int expected = 1;
  using clock = std::chrono::steady_clock;
  clock::duration renaming{}, waking{};  // the rename (untimed) and the watcher's wake-up (timed), as counters
  for (auto _ : state) {
    expected = 3 - expected;
    remove_file(replaced);
    if (!raw::copy_file(builds[expected - 1], next) || !raw::hard_link(path, replaced)) {
      return state.SkipWithError("cannot copy the next build");
    }
    const auto start = clock::now();
    if (!raw::rename_over(next, path)) return state.SkipWithError("rename failed");
    const auto in_place = clock::now();
    if (!reloader.wait_for_change(std::chrono::seconds(5))) return state.SkipWithError("no change seen within 5 s");
    const auto woken = clock::now();
    const int version = reloader.reload();
    const auto end = clock::now();
    if (version != expected) return state.SkipWithError("the reload failed or the call did not reach the new build");
    state.SetIterationTime(std::chrono::duration<double>(end - in_place).count());
    renaming += in_place - start;
    waking += woken - in_place;
  }
  const auto average_us = [](clock::duration total) {
    const double us = std::chrono::duration<double, std::micro>(total).count();
    return benchmark::Counter(us, benchmark::Counter::kAvgIterations);
  };
  state.counters["rename_us"] = average_us(renaming);
  state.counters["wake_us"] = average_us(waking);
}

// relib: the watcher's inotify wake-up, update() (copy, checks, unload of the old version, load
// of the new) and the call.
struct relib_reloader {
  relib::live_module<bench_exports>& live;
  bool frame_loop;        // the host thread polls changed() as a frame loop calls update(); else it blocks
  std::int64_t busy = 0;  // update() found the file busy and the watcher had to look again

  bool wait_for_change(std::chrono::milliseconds timeout) {
    if (!frame_loop) return live.wait_for_change(timeout);
    return spin_until([&] { return live.changed(); }, timeout);
  }
  int reload() {
    for (;;) {
      auto updated = live.update();
      if (!updated) return 0;
      if (*updated) return live.exports().version().value();
      ++busy;
      if (!live.wait_for_change(std::chrono::seconds(5))) return 0;
    }
  }
};

void reload_latency(benchmark::State& state, bool frame_loop) {
  live_bench_module module(state);
  if (!module.live) return;
  relib_reloader reloader{*module.live, frame_loop};
  time_reloads(state, module.staging, module.path, reloader);
  state.counters["busy_retries"] = static_cast<double>(reloader.busy);
}
// The host calls update() every frame, so its thread is running when the change comes.
void BM_ReloadLatency(benchmark::State& state) { reload_latency(state, true); }
// The host sleeps in wait_for_change() and is woken: one more thread wake-up, colder caches.
void BM_ReloadLatencyBlocking(benchmark::State& state) { reload_latency(state, false); }

// The same reload written by hand, with nothing checked: a thread blocked on the system's watcher
// (inotify, ReadDirectoryChangesW) raises a flag; the main thread copies the file into a private
// directory, loads the copy, unloads the previous version, removes its copy and calls the new one.
class raw_reloader {
 public:
  raw_reloader(std::string directory, std::string name, bool frame_loop)
      : directory_(std::move(directory)), name_(std::move(name)), frame_loop_(frame_loop) {}
  raw_reloader(const raw_reloader&) = delete;
  raw_reloader& operator=(const raw_reloader&) = delete;
  ~raw_reloader() {
    if (thread_.joinable()) {
      watcher_.stop();
      thread_.join();
    }
    if (handle_ != nullptr) raw::close_library(handle_);
    if (!copy_.empty()) remove_file(copy_);
  }

  bool start() {
    std::error_code error;
    if (!watcher_.open(directory_) || !std::filesystem::create_directory(directory_ + "/copies", error)) return false;
    thread_ = std::thread([this] {
      watcher_.run([this](const std::string& name) {
        if (name != name_) return;
        {
          std::lock_guard<std::mutex> guard(lock_);
          changed_ = true;
        }
        ready_.notify_all();
      });
    });
    return reload() != 0;
  }

  bool wait_for_change(std::chrono::milliseconds timeout) {
    if (frame_loop_) return spin_until([&] { return changed_.load(std::memory_order_acquire); }, timeout);
    std::unique_lock<std::mutex> guard(lock_);
    return ready_.wait_for(guard, timeout, [&] { return changed_.load(); });
  }

  int reload() {
    {
      std::lock_guard<std::mutex> guard(lock_);
      changed_ = false;
    }
    const std::string copy = directory_ + "/copies/" + std::to_string(++copies_) + "-" + name_;
    if (!raw::copy_file(directory_ + "/" + name_, copy)) return 0;
    const raw::library handle = raw::open_library(copy);
    void* version = raw::find_symbol(handle, "relib_bench_raw_version");
    if (version == nullptr) {
      if (handle != nullptr) raw::close_library(handle);
      return 0;
    }
    if (handle_ != nullptr) raw::close_library(handle_);
    if (!copy_.empty()) remove_file(copy_);
    handle_ = handle;
    copy_ = copy;
    return reinterpret_cast<int (*)()>(version)();
  }

 private:
  std::string directory_, name_, copy_;
  raw::directory_watcher watcher_;
  std::uint64_t copies_ = 0;
  raw::library handle_ = nullptr;
  std::thread thread_;
  std::mutex lock_;
  std::condition_variable ready_;
  std::atomic<bool> changed_{false};
  bool frame_loop_;
};

void raw_reload_latency(benchmark::State& state, bool frame_loop) {
  raw::pin_mimalloc();
  const temp_directory watched, staging;
  const std::string path = watched.file(module_file_name.c_str());
  if (!watched.made() || !staging.made() || !raw::copy_file(BENCH_MODULE_PATH, path)) {
    return state.SkipWithError("cannot copy the module into a temporary directory");
  }
  raw_reloader reloader(watched.path(), module_file_name, frame_loop);
  if (!reloader.start()) return state.SkipWithError("cannot watch or load the module");
  time_reloads(state, staging, path, reloader);
}
void BM_RawReloadLatency(benchmark::State& state) { raw_reload_latency(state, true); }
void BM_RawReloadLatencyBlocking(benchmark::State& state) { raw_reload_latency(state, false); }

// reload() and the first call alone: the same work without the file replacement and the
// watcher's wake-up.
void BM_ReloadForced(benchmark::State& state) {
  live_bench_module module(state);
  if (!module.live) return;
  relib::live_module<bench_exports>& live = *module.live;
  for (auto _ : state) {
    auto reloaded = live.reload();
    if (!reloaded || !*reloaded) return state.SkipWithError("reload failed");
    if (live.exports().version().value() != 1) return state.SkipWithError("the call did not reach the module");
  }
  state.counters["reloads"] = static_cast<double>(live.generation() - 1);
}

// The per-frame update() while nothing changed.
void BM_ReloadCheckNoChange(benchmark::State& state) {
  live_bench_module module(state);
  if (!module.live) return;
  relib::live_module<bench_exports>& live = *module.live;
  bool reloaded_or_failed = false;
  for (auto _ : state) {
    auto updated = live.update();
    reloaded_or_failed |= !updated || *updated;
  }
  if (reloaded_or_failed) state.SkipWithError("update() reloaded or failed while nothing changed");
}

}  // namespace

// Each benchmark runs in several repetitions; the table keeps the fastest, which is the least
// disturbed by the other processes of a noisy machine. The allocators run first (see
// with_own_module); calls run in the shared bench module, and cycles need it unloaded, so they
// run before the calls.
constexpr int repetitions = 7;
BENCHMARK(BM_ModuleMalloc)->Repetitions(repetitions);
BENCHMARK(BM_MimallocMalloc)->Repetitions(repetitions);
BENCHMARK(BM_LibcMalloc)->Repetitions(repetitions);
BENCHMARK(BM_ModuleMallocMixed)->Repetitions(repetitions);
BENCHMARK(BM_MimallocMallocMixed)->Repetitions(repetitions);
BENCHMARK(BM_LibcMallocMixed)->Repetitions(repetitions);
BENCHMARK(BM_PlainDlopenCycle)->Repetitions(repetitions);
BENCHMARK(BM_RawDlopenCycle)->Repetitions(repetitions);
BENCHMARK(BM_ModuleLoadUnloadCycle)->Repetitions(repetitions);
BENCHMARK(BM_ModuleLoadUnloadCycleNoTrustCheck)->Repetitions(repetitions);
BENCHMARK(BM_FileGate)->Repetitions(repetitions);
BENCHMARK(BM_RawCopyDlopenCycle)->Repetitions(repetitions);
BENCHMARK(BM_RawReloadLatency)->Repetitions(repetitions)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReloadLatency)->Repetitions(repetitions)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RawReloadLatencyBlocking)->Repetitions(repetitions)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReloadLatencyBlocking)->Repetitions(repetitions)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReloadForced)->Repetitions(repetitions)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReloadCheckNoChange)->Repetitions(repetitions);
BENCHMARK(BM_UnloadWithLeakedBlocks)->Arg(1000000)->Repetitions(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FreeBlocksOneByOne)->Arg(1000000)->Repetitions(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DirectCall)->Repetitions(repetitions);
BENCHMARK(BM_RawPointerCall)->Repetitions(repetitions);
BENCHMARK(BM_ExportCall)->Repetitions(repetitions);
BENCHMARK(BM_GuardedExportCall)->Repetitions(repetitions);
BENCHMARK(BM_RawPointerCallFromModule)->Repetitions(repetitions);
BENCHMARK(BM_ImportCall)->Repetitions(repetitions);
BENCHMARK(BM_PlainThrowCatch)->Repetitions(repetitions);
BENCHMARK(BM_PlainLibraryThrowingCall)->Repetitions(repetitions);
BENCHMARK(BM_RawThrowingCall)->Repetitions(repetitions);
BENCHMARK(BM_ThrowingExportCall)->Repetitions(repetitions);

namespace {

// Keeps the fastest repetition of every benchmark, in nanoseconds per operation, and prints
// only the aggregates (mean, median, deviation) to keep the output short.
class best_of_collector : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> ns;

  void ReportRuns(const std::vector<Run>& runs) override {
    std::vector<Run> aggregates;
    for (const Run& run : runs) {
      if (run.run_type == Run::RT_Aggregate) {
        aggregates.push_back(run);
        continue;
      }
      if (run.error_occurred) continue;  // skipped (SkipWithError): no time to keep
      double value = run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit) * 1e9;
      const std::string name = run.run_name.function_name;
      if (name == "BM_ImportCall" || name == "BM_RawPointerCallFromModule") value /= import_batch;
      if (name == "BM_ModuleMalloc" || name == "BM_MimallocMalloc" || name == "BM_LibcMalloc") value /= malloc_batch;
      if (name.size() > 5 && name.compare(name.size() - 5, 5, "Mixed") == 0) value /= batch_blocks * batches_per_iteration;
      const auto known = ns.find(name);
      if (known == ns.end() || value < known->second) ns[name] = value;
    }
    if (!aggregates.empty()) ConsoleReporter::ReportRuns(aggregates);
  }
};

// Under Wine, the rows that time the system (loading, files, the watcher, unwinding, the C
// runtime's malloc, returning memory) time Wine's emulation of it, not Windows: they say so in
// place of their target. Calls, imports and mimalloc's own work run as they would on Windows.
enum class measures { code, system };
const char* const wine = raw::wine_version();

const char* verdict(double value, double target, measures what) {
  if (wine != nullptr && what == measures::system) return "Wine's emulation: not meaningful";
  if (target <= 0) return "";
  return value <= target ? "meets target" : "OVER TARGET";
}

void print_ratio(const best_of_collector& best, const char* measured, const char* baseline, double target,
                 measures what) {
  const auto m = best.ns.find(measured);
  const auto b = best.ns.find(baseline);
  if (m == best.ns.end() || b == best.ns.end()) return;
  const double ratio = m->second / b->second;
  std::printf("%-26s %12.2f ns   %-28s %12.2f ns   %6.2fx   %s\n", measured, m->second, baseline, b->second, ratio,
              verdict(ratio, target, what));
}

// A row without a baseline, against an absolute target.
void print_time(const best_of_collector& best, const char* measured, double target_ns, measures what) {
  const auto m = best.ns.find(measured);
  if (m == best.ns.end()) return;
  std::printf("%-26s %12.2f ns   %-28s %12.2f ns   %7s   %s\n", measured, m->second, "(absolute target)", target_ns, "",
              verdict(m->second, target_ns, what));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // One relib load and unload first, as in any relib host: the raw baselines dlopen the module
  // themselves, and mimalloc segments they made before relib reserved its arena would go on
  // serving this thread's module heaps outside the arena (see docs/unloading.md).
  auto first = relib::load_module<bench_exports>(BENCH_MODULE_PATH, bench_imports{});
  if (!first || !first->unload()) return std::fprintf(stderr, "relib cannot load the bench module\n"), 1;
  if (wine != nullptr) {
    std::printf("Under Wine %s: the load, unload and reload rows time Wine's emulation, not Windows.\n", wine);
  }
  best_of_collector reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::printf("\nFastest of the repetitions (per call; import rows per call inside a loop of %d, malloc rows per\n"
              "malloc/free pair inside a loop of %d; the unload rows per module of 1,000,000 blocks; reload rows\n"
              "per reload, latency rows from the new build in place to the first call into it returned)\n",
              import_batch, malloc_batch);
  std::printf("%-26s %15s   %-28s %15s   %7s\n", "measured", "", "baseline", "", "ratio");
  constexpr measures code = measures::code, system = measures::system;
  print_ratio(reporter, "BM_ExportCall", "BM_RawPointerCall", 1.2, code);
  print_ratio(reporter, "BM_ExportCall", "BM_DirectCall", 0, code);
  print_ratio(reporter, "BM_GuardedExportCall", "BM_ExportCall", 0, code);
  print_ratio(reporter, "BM_ImportCall", "BM_RawPointerCallFromModule", 1.2, code);
  print_ratio(reporter, "BM_ThrowingExportCall", "BM_PlainThrowCatch", 0, system);
  print_ratio(reporter, "BM_ThrowingExportCall", "BM_PlainLibraryThrowingCall", 0, system);
  print_ratio(reporter, "BM_RawThrowingCall", "BM_PlainLibraryThrowingCall", 0, system);
  print_ratio(reporter, "BM_ModuleLoadUnloadCycle", "BM_PlainDlopenCycle", 1.1, system);
  print_ratio(reporter, "BM_ModuleLoadUnloadCycle", "BM_RawDlopenCycle", 0, system);
  print_ratio(reporter, "BM_RawDlopenCycle", "BM_PlainDlopenCycle", 0, system);
  print_ratio(reporter, "BM_FileGate", "BM_RawDlopenCycle", 0, system);
  print_ratio(reporter, "BM_ModuleLoadUnloadCycle", "BM_ModuleLoadUnloadCycleNoTrustCheck", 0, system);
  print_ratio(reporter, "BM_ReloadLatency", "BM_RawCopyDlopenCycle", 1.5, system);
  print_ratio(reporter, "BM_ReloadLatency", "BM_RawReloadLatency", 0, system);
  print_ratio(reporter, "BM_ReloadLatencyBlocking", "BM_RawCopyDlopenCycle", 0, system);
  print_ratio(reporter, "BM_ReloadLatencyBlocking", "BM_RawReloadLatencyBlocking", 0, system);
  print_ratio(reporter, "BM_ReloadForced", "BM_RawCopyDlopenCycle", 0, system);
  print_ratio(reporter, "BM_RawCopyDlopenCycle", "BM_RawDlopenCycle", 0, system);
  print_time(reporter, "BM_ReloadCheckNoChange", 20, code);
  print_ratio(reporter, "BM_ModuleMalloc", "BM_MimallocMalloc", 1.3, code);
  print_ratio(reporter, "BM_ModuleMalloc", "BM_LibcMalloc", 1.0, system);
  print_ratio(reporter, "BM_ModuleMallocMixed", "BM_MimallocMallocMixed", 1.3, code);
  print_ratio(reporter, "BM_ModuleMallocMixed", "BM_LibcMallocMixed", 1.0, system);
  print_ratio(reporter, "BM_UnloadWithLeakedBlocks", "BM_FreeBlocksOneByOne", 0.1, system);
  if (wine != nullptr) {
    std::printf("\nRun under Wine %s: the rows marked \"Wine's emulation\" time Wine's loader, file system,\n"
                "watcher, unwinder and C runtime, not Windows; the call, import and mimalloc rows are meaningful.\n"
                "On Windows the dlopen rows are LoadLibraryW, GetProcAddress and FreeLibrary, the Libc rows the C\n"
                "runtime DLL's malloc, and the watcher ReadDirectoryChangesW.\n",
                wine);
  }
  return 0;
}
