// Implements the greeter interface; it hands its output to the host through the print import.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "greeter_api.hpp"

#include <cstdio>

RELIB_MODULE_EXPORTS(GREETER_EXPORTS);
RELIB_MODULE_IMPORTS(host, GREETER_IMPORTS);

namespace {
int greetings = 0;  // module state: lives as long as the module is loaded
}

const char* name() { return "greeter"; }

int greet(const char* who) {
  char line[80];
  std::snprintf(line, sizeof line, "greeter: hello, %s", who);
  host::print(line);
  return ++greetings;
}

RELIB_MODULE_BEFORE_UNLOAD() { host::print("greeter: before_unload"); }
