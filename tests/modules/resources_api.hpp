// A module that leaves process resources behind: a pthread key, a memory mapping, an atexit handler.
#pragma once
#include <cstddef>

#define RESOURCES_EXPORTS(X)                     \
  X(create_key_with_value, bool())               \
  X(map_memory, void*(std::size_t bytes))        \
  X(register_atexit, bool())

#define RESOURCES_IMPORTS(X) X(notify, void(const char* what))
