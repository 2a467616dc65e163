// Same export and import names as game.cpp, different signatures: the host must refuse it.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#define WRONG_EXPORTS(X) X(add, long(long a, long b))
#define WRONG_IMPORTS(X) X(log, void(const char* message, int level))

RELIB_MODULE_EXPORTS(WRONG_EXPORTS);
RELIB_MODULE_IMPORTS(host, WRONG_IMPORTS);

long add(long a, long b) { return a + b; }
