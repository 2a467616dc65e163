// Leaks about `kilobytes` per call, the way real code does by mistake: a static container that
// only grows, a `new` never deleted, a malloc never freed.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "leaky_api.hpp"

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

RELIB_MODULE_EXPORTS(LEAKY_EXPORTS);

static std::vector<std::string> history;

std::size_t leak(std::size_t kilobytes) {
  const std::size_t third = kilobytes * 1024 / 3;
  history.emplace_back(third, 'h');                   // freed by the static destructor at unload
  new std::string(third, 'n');                        // never deleted
  std::memset(std::malloc(third), 'm', third);        // never freed
  return history.size();
}
