#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "other_api.hpp"

RELIB_MODULE_EXPORTS(OTHER_EXPORTS);
RELIB_MODULE_IMPORTS(host, OTHER_IMPORTS);

const char* name() { return "other"; }
long multiply(long a, long b) { return a * b * host::scale_factor(); }
