// Built without -fno-gnu-unique and with default visibility: GCC marks the static inside the
// inline function STB_GNU_UNIQUE, so glibc keeps the library mapped forever. clang never does.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

inline int& shared_counter() {
  static int value = 0;
  return value;
}

RELIB_MODULE_MAIN(int) { return ++shared_counter(); }
