// A module built with RELIB_NO_UNLOADING: once loaded, it stays in the process until exit.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "counter_api.hpp"

#include <stdexcept>
#include <string>

RELIB_MODULE_EXPORTS(COUNTER_EXPORTS);
RELIB_MODULE_IMPORTS(host, COUNTER_IMPORTS);

namespace {
int count = 0;
}

int next() {
  host::log("next: counting, and logging through host::log");
  return ++count;
}

void check(const char* input) {
  if (*input == '\0') throw std::invalid_argument("check: the input is empty");
  host::log((std::string("check: '") + input + "' is fine").c_str());
}

RELIB_MODULE_MAIN(int) { return count; }

// No RELIB_MODULE_BEFORE_UNLOAD: nothing ever unloads this module, so it would never run.
// Clean up in an export the host calls, or let process exit do it.
