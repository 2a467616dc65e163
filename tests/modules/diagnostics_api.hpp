// The diagnostics module: exceptions whose throw site a call_error must name.
#pragma once

#define DIAGNOSTICS_EXPORTS(X)                 \
  X(throw_three_deep, int(int value))          \
  X(out_of_range_in_runtime, int(int index))   \
  X(throw_an_int, void())                      \
  X(rethrow_after_another, void())             \
  X(rethrow_from_pointer, void())              \
  X(version, int())
