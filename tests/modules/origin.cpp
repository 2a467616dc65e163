#define RELIB_IMPLEMENTATION
#include "origin_api.hpp"

extern "C" int origin_dep_value(void);

RELIB_MODULE_EXPORTS(ORIGIN_EXPORTS);

int dependency_value() { return origin_dep_value(); }
