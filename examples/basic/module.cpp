// The smallest module: no imports, no exports, just a main the host can call.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include <cstdio>

RELIB_MODULE_MAIN(void) {
  std::puts("  [module] hello world");
}

RELIB_MODULE_BEFORE_UNLOAD() {
  std::puts("  [module] before_unload: the host is unloading me");
}
