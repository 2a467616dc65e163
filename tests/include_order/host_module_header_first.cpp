// A host file that defines RELIB_IMPLEMENTATION and includes an interface header (and so
// relib_module.hpp) before relib.hpp. Built with relib::host, which defines RELIB_HOST, it gets the
// host side; without RELIB_HOST it must stop at a compile-time #error that says what to do.
#define RELIB_IMPLEMENTATION
#include "order_api.hpp"
#include "relib.hpp"

#include <cstdio>

RELIB_HOST_EXPORTS(order_exports, ORDER_EXPORTS);

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    auto loaded = relib::load_module<order_exports>(argv[i]);
    if (!loaded) return std::fprintf(stderr, "%s\n", loaded.error().message.c_str()), 1;
    auto answer = loaded->exports().answer();
    if (!answer || *answer != 42) return std::fprintf(stderr, "%s: wrong answer\n", argv[i]), 1;
    auto unloaded = loaded->unload();
    if (!unloaded) return std::fprintf(stderr, "%s\n", unloaded.error().message.c_str()), 1;
  }
  std::puts("include order: host and modules each got their own side");
  return 0;
}
