// A static constructor calls an import before the host has linked it.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "game_api.hpp"

RELIB_MODULE_IMPORTS(host, GAME_IMPORTS);

static const int too_early = host::host_add(1, 2);

RELIB_MODULE_MAIN(int) { return too_early; }
