// No exports, imports or main. Built several ways by CMake (another relib version, another
// compiler, the old std::string ABI, RELIB_NO_UNLOADING) to provoke the load checks.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#if defined(TEST_WITH_MAIN)
RELIB_MODULE_MAIN(int) { return 7; }
#endif
