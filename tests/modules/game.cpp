#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "game_api.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

RELIB_MODULE_EXPORTS(GAME_EXPORTS);
RELIB_MODULE_IMPORTS(host, GAME_IMPORTS);

namespace {
int calls = 0;
bool before_unload_throws = false;
struct custom_error {  // not derived from std::exception
  int code;
};
}  // namespace

int add(int a, int b) { return ++calls, a + b; }
double scale(double value, float factor) { return value * factor; }
point mirror(point p) {
  point out = p;
  out.x = -p.x;
  out.y = -p.y;
  return out;
}
void fill(int* out, std::size_t count, int value) {
  for (std::size_t i = 0; i < count; ++i) out[i] = value;
}
const char* greeting() { return "hello from the game module"; }
std::size_t length(const char* text) { return std::strlen(text); }
void log_through_host(const char* message) { host::log(message); }
int add_through_host(int a, int b) { return host::host_add(a, b); }
point point_from_host() { return host::host_point(); }
void call_throwing_import() { host::host_throws(); }
int counter() { return calls; }
int throw_runtime_error(const char* message) { throw std::runtime_error(message); }
int throw_custom() { throw custom_error{7}; }
void throw_int() { throw 42; }
void throw_c_string() { throw "a C string"; }
void make_before_unload_throw(bool enabled) { before_unload_throws = enabled; }

RELIB_MODULE_MAIN(int) { return 42; }

RELIB_MODULE_BEFORE_UNLOAD() {
  if (before_unload_throws) throw std::logic_error("before_unload was told to throw");
}
