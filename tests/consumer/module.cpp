// One export and a main, enough to show the module was built with relib_add_module().
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "consumer_api.hpp"

RELIB_MODULE_EXPORTS(CONSUMER_EXPORTS);

int add(int a, int b) { return a + b; }

RELIB_MODULE_MAIN(int) { return 42; }
