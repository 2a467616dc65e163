// A host built with RELIB_NO_UNLOADING: loading, calls, imports and exceptions work as usual,
// but there is no unload(); modules stay loaded until the process exits.
#ifndef RELIB_NO_UNLOADING
#error "build this example with RELIB_NO_UNLOADING defined, as its CMakeLists.txt does"
#endif
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include "counter_api.hpp"

#include <cstdio>

RELIB_HOST_EXPORTS(counter_exports, COUNTER_EXPORTS);
RELIB_HOST_IMPORTS(counter_imports, COUNTER_IMPORTS);

void counter_imports::log(const char* message) { std::printf("  [module] %s\n", message); }

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "libno_unloading_module.so";
  {
    auto loaded = relib::load_module<counter_exports>(path, counter_imports{});
    if (!loaded) {
      std::fprintf(stderr, "%s\n", loaded.error().message.c_str());
      return 1;
    }
    relib::module<counter_exports> counter = std::move(*loaded);
    std::printf("[host] loaded %s\n", counter.path().c_str());

    counter.exports().next().value();
    std::printf("[host] next() = %d\n", counter.exports().next().value());
    counter.exports().check("hello").value();
    relib::call_result<void> failed = counter.exports().check("");
    if (!failed) std::printf("[host] check(\"\") failed: %s\n", failed.error().message.c_str());
    std::printf("[host] main() = %d\n", counter.call_main<int>().value());

    // counter.unload() does not exist in this configuration: it would not compile.
    std::printf("[host] leaving the scope: the module object goes, the library stays\n");
  }
  // The library is still in the process, so loading the same file again is refused.
  auto again = relib::load_module<counter_exports>(path, counter_imports{});
  if (again) {
    std::fprintf(stderr, "[host] expected already_loaded, but it loaded a second time\n");
    return 1;
  }
  std::printf("[host] loading it again: %s\n", relib::to_string(again.error().code));
  std::printf("[host] exiting; the module goes away with the process\n");
  return 0;
}
