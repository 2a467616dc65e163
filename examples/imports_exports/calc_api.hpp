// The interface of the calc module, written once and included by both the host and the module.
#pragma once

// A plain struct crosses by value. Both sides compile this one definition; relib also compares
// its size at load, so a struct redefined differently on one side is refused, not misread.
struct vec2 {
  double x;
  double y;
};

// Exports: implemented by the module, called by the host. X(name, function type).
#define CALC_EXPORTS(X)                   \
  X(add, int(int a, int b))               \
  X(scale, vec2(vec2 v, double factor))   \
  X(word_count, int(const char* text))

// Imports: implemented by the host, called by the module.
#define CALC_IMPORTS(X)                   \
  X(log, void(const char* message))       \
  X(limit, int())
