// A module file that defines RELIB_IMPLEMENTATION and includes only its interface header.
#define RELIB_IMPLEMENTATION
#include "order_api.hpp"

#include <string>

RELIB_MODULE_EXPORTS(ORDER_EXPORTS);

int answer() {
  std::string grown(1000, 'x');
  return static_cast<int>(grown.size()) / 1000 + 41;
}
