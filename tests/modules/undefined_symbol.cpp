// References a function nobody defines: the dynamic loader refuses it at dlopen().
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

extern "C" int relib_test_function_that_does_not_exist(int);

RELIB_MODULE_MAIN(int) { return relib_test_function_that_does_not_exist(1); }
