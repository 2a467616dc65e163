// The interface measured by relib_bench.
#pragma once

#define BENCH_EXPORTS(X)                              \
  X(add, int(int a, int b))                           \
  X(call_import, int(int times))                      \
  X(call_pointer, int(int (*function)(int, int), int times))      \
  X(malloc_free, int(int allocator, int times))                  \
  X(malloc_free_batches, int(int allocator, int batches))        \
  X(allocate_blocks, void(int count))                            \
  X(free_blocks, void())                                         \
  X(throw_three_deep, int(int value))                            \
  X(version, int())

#define BENCH_IMPORTS(X) X(host_add, int(int a, int b))
