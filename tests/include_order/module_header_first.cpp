// A module file that includes its interface header (and so relib_module.hpp) before it defines
// RELIB_IMPLEMENTATION: the records and symbols must still be emitted.
#include "order_api.hpp"
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include <string>

RELIB_MODULE_EXPORTS(ORDER_EXPORTS);

int answer() {
  std::string grown(1000, 'x');  // through the module's own allocator
  return static_cast<int>(grown.size()) / 1000 + 41;
}
