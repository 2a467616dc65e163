// Loads a module, calls its main, unloads it and checks it is really gone.
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include <cstdio>

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "libbasic_module.so";

  auto loaded = relib::load_module(path);  // no exports, no imports
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error().message.c_str());
    return 1;
  }
  relib::module<relib::no_exports> module = std::move(*loaded);
  std::printf("[host] loaded %s\n", module.path().c_str());

  relib::call_result<void> returned = module.call_main<void>();
  if (!returned) std::printf("[host] main failed: %s\n", returned.error().message.c_str());

  auto unloaded = module.unload();
  if (!unloaded) {
    std::fprintf(stderr, "%s\n", unloaded.error().message.c_str());
    return 1;
  }
  std::printf("[host] unloaded in %lld us, and the library is gone from the process\n",
              static_cast<long long>(unloaded->duration.count() / 1000));
  return 0;
}
