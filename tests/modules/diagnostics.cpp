// Exceptions thrown at known lines: tests/test_diagnostics.cpp finds each line by the marker
// comment on it. TEST_DIAGNOSTICS_VERSION 2 renames the functions and numbers the lines from 1000,
// so a stack named from the wrong version shows.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "diagnostics_api.hpp"

#include <exception>
#include <stdexcept>
#include <vector>

RELIB_MODULE_EXPORTS(DIAGNOSTICS_EXPORTS);

#if TEST_DIAGNOSTICS_VERSION == 2
#define LEVEL(name) second_##name
#line 1000  // marker: version 2 numbers the next line 1000
#else
#define LEVEL(name) name
#endif

namespace {
[[gnu::noinline]] int LEVEL(level3)(int value) {
  if (value >= 0) throw std::runtime_error("three calls deep");  // marker: level3
  return value;
}
[[gnu::noinline]] int LEVEL(level2)(int value) {
  return LEVEL(level3)(value) + 1;  // marker: level2
}
[[gnu::noinline]] int LEVEL(level1)(int value) {
  return LEVEL(level2)(value) * 2;  // marker: level1
}
}  // namespace

int throw_three_deep(int value) {
  return LEVEL(level1)(value) - 1;  // marker: export
}

int out_of_range_in_runtime(int index) {
  std::vector<int> values(3);
  return values.at(static_cast<std::size_t>(index));  // marker: at
}

void throw_an_int() {
  throw 42;  // marker: int
}

void rethrow_after_another() {
  try {
    throw std::logic_error("the first");  // marker: first
  } catch (...) {
    try {
      throw std::runtime_error("the second, caught inside");
    } catch (const std::exception&) {
    }
    throw;
  }
}

void rethrow_from_pointer() {
  std::exception_ptr kept = std::make_exception_ptr(std::runtime_error("kept in an exception_ptr"));  // marker: made
  std::rethrow_exception(kept);
}

int version() { return TEST_DIAGNOSTICS_VERSION; }
