// Module code that crashes, one way per export; add() works until one of them has crashed.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "crashes_api.hpp"

#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

#include <cassert>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

RELIB_MODULE_EXPORTS(CRASHES_EXPORTS);
RELIB_MODULE_IMPORTS(host, CRASHES_IMPORTS);

namespace {
volatile int zero = 0;
void (*volatile null_function)() = nullptr;
const char* volatile null_string = nullptr;

[[gnu::noinline]] int store_at(int address) {
  *reinterpret_cast<volatile int*>(static_cast<std::uintptr_t>(address)) = 1;  // marker: write
  return 0;
}

[[gnu::noinline]] void throw_failure() { throw std::runtime_error("nothing may escape"); }
[[gnu::noinline]] void may_not_throw() noexcept { throw_failure(); }

[[gnu::noinline]] int recurse(int depth) {
  volatile char frame[1024];
  frame[0] = static_cast<char>(depth);
  if (zero == 0) return recurse(depth + 1) + frame[0];  // always: zero is 0, unknown to the compiler
  return frame[0];
}
}  // namespace

int add(int a, int b) { return a + b; }

int write_at(int address) { return store_at(address) + 1; }

#if defined(_WIN32)
int read_past_end_of_file() { return -1; }  // a mapping cannot outgrow its file there: no SIGBUS
#else
int read_past_end_of_file() {
  char name[] = "/tmp/relib-crashes-XXXXXX";
  const int fd = ::mkstemp(name);
  if (fd < 0) return -1;
  ::unlink(name);
  const void* mapped = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);  // an empty file: no page behind it
  ::close(fd);
  if (mapped == MAP_FAILED) return -1;
  return *static_cast<const volatile char*>(mapped);
}
#endif

int divide(int numerator, int denominator) { return numerator / (denominator + zero); }

void trap() { __builtin_trap(); }

void call_abort() { std::abort(); }

void fail_assertion() {
  assert(zero == 1 && "the crashes module asserts");
}

void throw_through_noexcept() { may_not_throw(); }

int overflow_stack(int depth) { return recurse(depth); }

std::size_t length_of_null_string() { return std::strlen(null_string); }

void call_null_function() { null_function(); }

int call_host(int value) { return host::host_function(value) + 1; }
