// The module's own copy of the C++ runtime: std::terminate, exceptions thrown and caught inside
// module code, and a large block malloc'ed by a static constructor.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "runtime_api.hpp"

#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>

RELIB_MODULE_EXPORTS(RUNTIME_EXPORTS);

namespace {
struct runtime_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throw_failure(const char* what) { throw runtime_failure(what); }
void nothing_may_escape() noexcept { throw_failure("thrown where nothing catches it"); }

int throw_from(int depth) {
  if (depth < 0) return 0;
  if (depth == 0) throw_failure("deep");
  return throw_from(depth - 1) + 1;
}

constexpr std::size_t load_time_size = 100000;
void* load_time_block = std::malloc(load_time_size);
}  // namespace

void terminate_after_throw() { nothing_may_escape(); }
void terminate_without_exception() { std::terminate(); }

int throw_and_catch(int depth) {
  try {
    return throw_from(depth);
  } catch (const runtime_failure& failure) {
    return std::strcmp(failure.what(), "deep") == 0 ? depth : -1;
  }
}

bool load_time_block_works() {
#if defined(_WIN32)
  if (load_time_block == nullptr) return false;  // no malloc_usable_size there
#else
  if (load_time_block == nullptr || malloc_usable_size(load_time_block) < load_time_size) return false;
#endif
  std::memset(load_time_block, 7, load_time_size);
  auto* grown = static_cast<unsigned char*>(std::realloc(load_time_block, 3 * load_time_size));
  load_time_block = nullptr;
  if (grown == nullptr) return false;
  const bool kept = grown[0] == 7 && grown[load_time_size - 1] == 7;
  std::free(grown);
  return kept;
}
