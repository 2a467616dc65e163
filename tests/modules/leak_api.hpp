// A module that leaks memory in every way C++ code allocates, and uses libc's shared state.
#pragma once
#include <cstddef>
#include <string>

#define LEAK_EXPORTS(X)                                   \
  X(leak_everything, std::size_t(std::size_t kilobytes))  \
  X(free_libc_memory, bool())                             \
  X(use_libc_state, int(int round))                       \
  X(copy_text, char*(const char* text))                   \
  X(make_string, std::string(std::size_t length))         \
  X(getline_length, std::size_t(std::size_t length))
