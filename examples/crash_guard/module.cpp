// A module with a bug waiting to happen: the demo edits `frame % 3` into `frame % 4`, and
// find_name() then returns null for 3, which strlen() does not survive. The crash guard turns
// the crash into an error, and the host's next update() brings this version back.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "names_api.hpp"

#include <cstdio>
#include <cstring>

RELIB_MODULE_EXPORTS(NAMES_EXPORTS);
RELIB_MODULE_STATE(greeting_count, 1);

namespace {
struct named {
  int id;
  const char* name;
};
const named people[] = {{0, "Ada"}, {1, "Grace"}, {2, "Barbara"}};

const char* find_name(int id) {
  for (const named& person : people) {
    if (person.id == id) return person.name;
  }
  return nullptr;
}

char text[128];
}  // namespace

const char* greeting(int frame) {
  const char* name = find_name(frame % 3);
  const long count = ++relib::module_state<greeting_count>().greetings;
  std::snprintf(text, sizeof text, "hello %s (%zu letters), greetings %ld", name, std::strlen(name), count);
  return text;
}
