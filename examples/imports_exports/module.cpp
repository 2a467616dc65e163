// Implements the calc exports as ordinary functions and calls back into the host through imports.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "calc_api.hpp"

#include <cstdio>
#include <stdexcept>
#include <string>

RELIB_MODULE_EXPORTS(CALC_EXPORTS);        // declares add, scale and word_count below
RELIB_MODULE_IMPORTS(host, CALC_IMPORTS);  // declares host::log and host::limit

int add(int a, int b) {
  // An import with a result: the host decides how large a sum may get.
  if (a + b > host::limit()) {
    // Throwing is fine: relib catches it at the boundary and the host gets an empty result.
    throw std::overflow_error(std::to_string(a) + " + " + std::to_string(b) +
                              " is over the host's limit of " + std::to_string(host::limit()));
  }
  char line[64];
  std::snprintf(line, sizeof line, "add(%d, %d), logged through host::log", a, b);
  host::log(line);
  return a + b;
}

vec2 scale(vec2 v, double factor) { return vec2{v.x * factor, v.y * factor}; }

// A C string comes in as a pointer into the host's memory, valid for the duration of the call.
int word_count(const char* text) {
  int words = 0;
  for (bool in_word = false; *text != '\0'; ++text) {
    const bool letter = *text != ' ';
    if (letter && !in_word) ++words;
    in_word = letter;
  }
  return words;
}

// Imports are still linked here, so the module can say goodbye through the host.
RELIB_MODULE_BEFORE_UNLOAD() { host::log("before_unload: the host is unloading me"); }
