// The modules measured by relib_footprint, each built twice from this one source: as a relib
// module (relib_add_module) and as a plain shared library with the shared C++ runtime
// (FOOTPRINT_PLAIN), whose add() is a plain exported C function. FOOTPRINT_IOSTREAM adds an
// export that writes to std::cout, called once after each load.
#ifdef FOOTPRINT_PLAIN
#define FOOTPRINT_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"
#include "footprint_api.hpp"
#define FOOTPRINT_EXPORT
#ifdef FOOTPRINT_IOSTREAM
RELIB_MODULE_EXPORTS(FOOTPRINT_IOSTREAM_EXPORTS);
#else
RELIB_MODULE_EXPORTS(FOOTPRINT_EXPORTS);
#endif
#endif

FOOTPRINT_EXPORT int add(int a, int b) { return a + b; }

#ifdef FOOTPRINT_IOSTREAM
#include <iostream>

FOOTPRINT_EXPORT void print_sum(int a, int b) { std::cout << a << " + " << b << " = " << a + b << '\n'; }
#endif
