// The module measured by relib_bench. relib_bench_raw_add and relib_bench_raw_version are plain
// exported C functions, the dlsym baselines (relib_add_module exports only names starting with
// relib_). Built twice, as version 1 and 2 (BENCH_MODULE_VERSION), for the reload benchmarks, and
// once as a plain shared library with the shared C++ runtime (BENCH_PLAIN_LIBRARY), the baseline
// of the load cycle: the same functions, without relib.
#ifdef BENCH_PLAIN_LIBRARY
#define RELIB_DETAIL_VISIBLE __attribute__((visibility("default")))
namespace host {
int host_add(int a, int b) { return a + b; }
}  // namespace host
#else
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "bench_api.hpp"

RELIB_MODULE_EXPORTS(BENCH_EXPORTS);
RELIB_MODULE_IMPORTS(host, BENCH_IMPORTS);
#endif

#include <mimalloc.h>

#include <cstdlib>
#include <stdexcept>
#include <vector>

extern "C" RELIB_DETAIL_VISIBLE __attribute__((noinline)) int relib_bench_raw_add(int a, int b) { return a + b; }

int add(int a, int b) { return a + b; }

// A std::runtime_error thrown three calls deep: through relib (throw_three_deep, whose error
// names the frames) and through a raw pointer (relib_bench_raw_throw, caught by the host).
namespace {
[[gnu::noinline]] int thrower3(int value) {
  if (value >= 0) throw std::runtime_error("thrown three calls deep");
  return value;
}
[[gnu::noinline]] int thrower2(int value) { return thrower3(value) + 1; }
[[gnu::noinline]] int thrower1(int value) { return thrower2(value) * 2; }
}  // namespace

int throw_three_deep(int value) { return thrower1(value) - 1; }
extern "C" RELIB_DETAIL_VISIBLE __attribute__((noinline)) int relib_bench_raw_throw(int value) { return thrower1(value) - 1; }

#ifndef BENCH_MODULE_VERSION
#define BENCH_MODULE_VERSION 1
#endif
int version() { return BENCH_MODULE_VERSION; }
extern "C" RELIB_DETAIL_VISIBLE int relib_bench_raw_version() { return BENCH_MODULE_VERSION; }

// The loops below compare an import call with a raw function-pointer call, both from module code.
int call_import(int times) {
  int sum = 0;
  for (int i = 0; i < times; ++i) sum += host::host_add(i, 1);
  return sum;
}

// Kept in a global like an import slot, so both loops reload the pointer before each call.
static int (*raw_function)(int, int) = nullptr;

int call_pointer(int (*function)(int, int), int times) {
  raw_function = function;
  int sum = 0;
  for (int i = 0; i < times; ++i) sum += raw_function(i, 1);
  return sum;
}

// malloc/free pairs in module code, all three in the same loop so that only the allocator
// differs: 0 is malloc and free as module code calls them (routed to the module's mimalloc heap
// by relib), 1 is mimalloc called directly, 2 is the C library's called directly: glibc's, or on
// Windows the C runtime DLL's (relib_module.hpp defines malloc and free in a module, so the
// runtime's are found by name; a plain library calls them as malloc and free).
#if defined(_WIN32) && defined(BENCH_PLAIN_LIBRARY)
#define BENCH_LIBC_MALLOC std::malloc
#define BENCH_LIBC_FREE std::free
#elif defined(_WIN32)
using malloc_function = void* (*)(std::size_t);
using free_function = void (*)(void*);
const auto runtime_malloc = reinterpret_cast<malloc_function>(relib::detail::module_platform::process_function("malloc"));
const auto runtime_free = reinterpret_cast<free_function>(relib::detail::module_platform::process_function("free"));
void* libc_malloc(std::size_t size) { return runtime_malloc(size); }
void libc_free(void* block) { runtime_free(block); }
#define BENCH_LIBC_MALLOC libc_malloc
#define BENCH_LIBC_FREE libc_free
#else
extern "C" void* __libc_malloc(std::size_t) noexcept;
extern "C" void __libc_free(void*) noexcept;
#define BENCH_LIBC_MALLOC __libc_malloc
#define BENCH_LIBC_FREE __libc_free
#endif

template <void* (*Allocate)(std::size_t), void (*Free)(void*)>
int allocate_and_free(int times) {
  int sum = 0;
  for (int i = 0; i < times; ++i) {
    void* block = Allocate(32);
    asm volatile("" : : "r"(block) : "memory");  // keeps the pair from being optimized away
    sum += block != nullptr;
    Free(block);
  }
  return sum;
}

// A pattern closer to real code: 64 blocks of mixed sizes (16 to 1 KB) allocated, then freed.
template <void* (*Allocate)(std::size_t), void (*Free)(void*)>
int allocate_and_free_batches(int batches) {
  void* blocks[64];
  int sum = 0;
  for (int batch = 0; batch < batches; ++batch) {
    for (int i = 0; i < 64; ++i) {
      blocks[i] = Allocate(16u << (i % 7));
      asm volatile("" : : "r"(blocks[i]) : "memory");
    }
    for (int i = 0; i < 64; ++i) {
      sum += blocks[i] != nullptr;
      Free(blocks[i]);
    }
  }
  return sum;
}

int malloc_free_batches(int allocator, int batches) {
  switch (allocator) {
    case 0: return allocate_and_free_batches<std::malloc, std::free>(batches);
    case 1: return allocate_and_free_batches<mi_malloc, mi_free>(batches);
    default: return allocate_and_free_batches<BENCH_LIBC_MALLOC, BENCH_LIBC_FREE>(batches);
  }
}

int malloc_free(int allocator, int times) {
  switch (allocator) {
    case 0: return allocate_and_free<std::malloc, std::free>(times);
    case 1: return allocate_and_free<mi_malloc, mi_free>(times);
    default: return allocate_and_free<BENCH_LIBC_MALLOC, BENCH_LIBC_FREE>(times);
  }
}

// Blocks kept in a module vector: freed one by one, or left for unload to reclaim.
static std::vector<void*> blocks;

void allocate_blocks(int count) {
  blocks.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) blocks.push_back(std::malloc(16));
}

void free_blocks() {
  for (void* block : blocks) std::free(block);
  blocks.clear();
}
