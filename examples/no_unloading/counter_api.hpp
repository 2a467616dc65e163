// The counter interface. Host and module are both built with RELIB_NO_UNLOADING (see
// CMakeLists.txt); the interface itself is declared exactly as in the other examples.
#pragma once

#define COUNTER_EXPORTS(X)              \
  X(next, int())                        \
  X(check, void(const char* input))

#define COUNTER_IMPORTS(X)              \
  X(log, void(const char* message))
