// relib_footprint: what one loaded module costs the process, for a relib module and for the
// same source built as a plain shared library, measured in the same run. It loads N distinct
// copies of each (copies, so that no two modules share a file's pages) and reports per module:
// resident and private dirty memory, mappings, the time of a load and of an unload, and what
// stays resident after all are unloaded. Usage: relib_footprint [copies] (100 by default).
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include "footprint_api.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

RELIB_HOST_EXPORTS(footprint_exports, FOOTPRINT_EXPORTS);
RELIB_HOST_EXPORTS(footprint_iostream_exports, FOOTPRINT_IOSTREAM_EXPORTS);

namespace {

struct process_memory {
  long resident_kb = 0;
  long private_dirty_kb = 0;
  long maps = 0;
};

long field_kb(const std::string& line, const char* name) {
  const std::size_t length = std::strlen(name);
  return line.compare(0, length, name) == 0 ? std::atol(line.c_str() + length) : 0;
}

process_memory read_process_memory() {
  process_memory memory;
  std::ifstream rollup("/proc/self/smaps_rollup");
  for (std::string line; std::getline(rollup, line);) {
    memory.resident_kb += field_kb(line, "Rss:");
    memory.private_dirty_kb += field_kb(line, "Private_Dirty:");
  }
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) ++memory.maps;
  return memory;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One kind of module: how to load a copy, call it once, and unload everything loaded.
struct module_kind {
  const char* name;
  const char* file;
  std::function<bool(const std::string& path)> load;  // loads and calls one copy, keeps it
  std::function<bool()> unload_all;
};

struct footprint {
  double resident_kb, private_dirty_kb, maps, load_us, unload_us, kept_kb;
  long file_bytes;
};

bool copy_file(const std::string& from, const std::string& to) {
  std::error_code error;
  return std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, error);
}

bool measure(const module_kind& kind, const std::string& directory, int copies, footprint& out) {
  std::vector<std::string> paths;
  for (int i = 0; i <= copies; ++i) {
    paths.push_back(directory + "/" + kind.name + "-" + std::to_string(i) + ".so");
    if (!copy_file(kind.file, paths.back())) return false;
  }
  // Written back to disk first: pages of a file not yet written show as dirty in every mapping.
  sync();
  // A first copy loaded and unloaded alone: what the first load of a kind brings into the
  // process once (relib's arena, libstdc++'s pages) is not a per-module cost.
  if (!kind.load(paths.back()) || !kind.unload_all()) return false;
  const process_memory before = read_process_memory();
  const auto loading = std::chrono::steady_clock::now();
  for (int i = 0; i < copies; ++i)
    if (!kind.load(paths[static_cast<std::size_t>(i)])) return false;
  const double load_seconds = seconds_since(loading);
  const process_memory loaded = read_process_memory();
  const auto unloading = std::chrono::steady_clock::now();
  if (!kind.unload_all()) return false;
  const double unload_seconds = seconds_since(unloading);
  const process_memory after = read_process_memory();
  struct stat status {};
  stat(kind.file, &status);
  out = {double(loaded.resident_kb - before.resident_kb) / copies,
         double(loaded.private_dirty_kb - before.private_dirty_kb) / copies,
         double(loaded.maps - before.maps) / copies,
         load_seconds * 1e6 / copies,
         unload_seconds * 1e6 / copies,
         double(after.resident_kb - before.resident_kb) / copies,
         static_cast<long>(status.st_size)};
  return true;
}

// Runs print_sum with the standard output sent to /dev/null, so that each module writes once.
template <typename Call>
void with_quiet_stdout(Call call) {
  std::fflush(stdout);
  const int saved = dup(STDOUT_FILENO);
  const int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  dup2(null, STDOUT_FILENO);
  call();
  std::fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(null);
  close(saved);
}

template <typename Exports>
module_kind relib_kind(const char* name, const char* file, std::vector<relib::module<Exports>>& loaded) {
  auto load = [&loaded](const std::string& path) {
    auto module = relib::load_module<Exports>(path);
    if (!module) {
      std::fprintf(stderr, "%s\n", module.error().message.c_str());
      return false;
    }
    const auto sum = module->exports().add(1, 2);
    if (!sum || *sum != 3) return false;
    if constexpr (std::is_same_v<Exports, footprint_iostream_exports>)
      with_quiet_stdout([&] { (void)module->exports().print_sum(1, 2); });
    loaded.push_back(std::move(*module));
    return true;
  };
  auto unload_all = [&loaded] {
    bool unloaded = true;
    for (auto& module : loaded) unloaded = module.unload().has_value() && unloaded;
    loaded.clear();
    return unloaded;
  };
  return {name, file, load, unload_all};
}

module_kind plain_kind(const char* name, const char* file, bool prints, std::vector<void*>& handles) {
  auto load = [&handles, prints](const std::string& path) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      std::fprintf(stderr, "%s\n", dlerror());
      return false;
    }
    handles.push_back(handle);
    auto add = reinterpret_cast<int (*)(int, int)>(dlsym(handle, "add"));
    if (add == nullptr || add(1, 2) != 3) return false;
    if (prints) {
      auto print_sum = reinterpret_cast<void (*)(int, int)>(dlsym(handle, "print_sum"));
      if (print_sum == nullptr) return false;
      with_quiet_stdout([&] { print_sum(1, 2); });
    }
    return true;
  };
  auto unload_all = [&handles] {
    bool unloaded = true;
    for (void* handle : handles) unloaded = dlclose(handle) == 0 && unloaded;
    handles.clear();
    return unloaded;
  };
  return {name, file, load, unload_all};
}

}  // namespace

int main(int argc, char** argv) {
  const int copies = argc > 1 ? std::atoi(argv[1]) : 100;
  if (copies <= 0) return std::fprintf(stderr, "usage: relib_footprint [copies]\n"), 2;
  std::string directory = (std::filesystem::temp_directory_path() / "relib_footprint-XXXXXX").string();
  if (mkdtemp(directory.data()) == nullptr) return std::perror("mkdtemp"), 1;

  std::vector<relib::module<footprint_exports>> tiny;
  std::vector<relib::module<footprint_iostream_exports>> printing;
  std::vector<void*> handles;
  const module_kind kinds[] = {
      relib_kind("relib module", FOOTPRINT_MODULE_PATH, tiny),
      plain_kind("plain library", FOOTPRINT_PLAIN_PATH, false, handles),
      relib_kind("relib module, iostream", FOOTPRINT_IOSTREAM_MODULE_PATH, printing),
      plain_kind("plain library, iostream", FOOTPRINT_IOSTREAM_PLAIN_PATH, true, handles),
  };
  std::printf("Per module, %d distinct copies of each loaded at once (stripped files)\n", copies);
  std::printf("%-24s %10s %10s %6s %9s %9s %10s %9s\n", "", "resident", "private", "maps", "load", "unload",
              "kept after", "file");
  std::printf("%-24s %10s %10s %6s %9s %9s %10s %9s\n", "", "", "dirty", "", "", "", "unload", "");
  footprint results[4] = {};
  int status = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    footprint& f = results[i];
    if (!measure(kinds[i], directory, copies, f)) {
      std::fprintf(stderr, "%s: cannot load, call or unload a copy\n", kinds[i].name);
      status = 1;
      break;
    }
    std::printf("%-24s %7.1f KB %7.1f KB %6.1f %6.1f us %6.1f us %7.1f KB %6ld KB\n", kinds[i].name, f.resident_kb,
                f.private_dirty_kb, f.maps, f.load_us, f.unload_us, f.kept_kb, (f.file_bytes + 512) / 1024);
  }
  if (status == 0) {
    const footprint& relib_tiny = results[0];
    const footprint& plain_tiny = results[1];
    std::printf("\nrelib module against plain library: resident %.2fx (target 3x), private dirty %.2fx (target 2x)\n",
                relib_tiny.resident_kb / plain_tiny.resident_kb, relib_tiny.private_dirty_kb / plain_tiny.private_dirty_kb);
    std::printf("relib module with iostream: %.0f KB resident (target 550 KB)\n", results[2].resident_kb);
  }
  std::error_code ignored;
  std::filesystem::remove_all(directory, ignored);
  return status;
}
