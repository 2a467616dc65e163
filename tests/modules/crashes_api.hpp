// The crashes module: one export per way module code can crash, for the crash guard.
#pragma once

#include <cstddef>

#define CRASHES_EXPORTS(X)                       \
  X(add, int(int a, int b))                      \
  X(write_at, int(int address))                  \
  X(read_past_end_of_file, int())                \
  X(divide, int(int numerator, int denominator)) \
  X(trap, void())                                \
  X(call_abort, void())                          \
  X(fail_assertion, void())                      \
  X(throw_through_noexcept, void())              \
  X(overflow_stack, int(int depth))              \
  X(length_of_null_string, std::size_t())        \
  X(call_null_function, void())                  \
  X(call_host, int(int value))

#define CRASHES_IMPORTS(X) X(host_function, int(int value))
