// Implements the shape interface; it prints for itself, since it has no imports.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "shape_api.hpp"

#include <cstdio>

RELIB_MODULE_EXPORTS(SHAPE_EXPORTS);

const char* name() { return "shape"; }

double area(rect r) {
  std::printf("  [module] shape: area of %g x %g\n", r.width, r.height);
  return r.width * r.height;
}

double perimeter(rect r) { return 2 * (r.width + r.height); }

RELIB_MODULE_BEFORE_UNLOAD() { std::puts("  [module] shape: before_unload"); }
