// Loads a shape module and a greeter module side by side, calls both, unloads both.
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include "greeter_api.hpp"
#include "shape_api.hpp"

#include <cstdio>

// One exports struct per interface; only the greeter has imports.
RELIB_HOST_EXPORTS(shape_exports, SHAPE_EXPORTS);
RELIB_HOST_EXPORTS(greeter_exports, GREETER_EXPORTS);
RELIB_HOST_IMPORTS(greeter_imports, GREETER_IMPORTS);

void greeter_imports::print(const char* line) { std::printf("  [module] %s\n", line); }

// Prints the error and returns false, so main can stop at the first failure.
template <class Result>
bool check(const Result& result) {
  if (!result) std::fprintf(stderr, "%s\n", result.error().message.c_str());
  return static_cast<bool>(result);
}

int main(int argc, char** argv) {
  const char* shape_path = argc > 1 ? argv[1] : "libshape_module.so";
  const char* greeter_path = argc > 2 ? argv[2] : "libgreeter_module.so";

  // The interface is part of the type: module<shape_exports> vs module<greeter_exports>.
  auto shape_loaded = relib::load_module<shape_exports>(shape_path);  // no imports
  auto greeter_loaded = relib::load_module<greeter_exports>(greeter_path, greeter_imports{});
  if (!check(shape_loaded) || !check(greeter_loaded)) return 1;
  relib::module<shape_exports> shape = std::move(*shape_loaded);
  relib::module<greeter_exports> greeter = std::move(*greeter_loaded);
  std::printf("[host] loaded '%s' and '%s' at the same time\n", shape.exports().name().value(),
              greeter.exports().name().value());

  const rect r{3, 4};
  std::printf("[host] area = %g, perimeter = %g\n", shape.exports().area(r).value(),
              shape.exports().perimeter(r).value());
  greeter.exports().greet("Ada").value();
  std::printf("[host] greetings so far: %d\n", greeter.exports().greet("Linus").value());

  // Each module unloads on its own; the order does not matter, they do not depend on each other.
  auto greeter_unloaded = greeter.unload();
  if (!check(greeter_unloaded)) return 1;
  const double area = shape.exports().area(rect{1, 2}).value();
  std::printf("[host] greeter unloaded; shape still works: area = %g\n", area);
  auto shape_unloaded = shape.unload();
  if (!check(shape_unloaded)) return 1;
  std::printf("[host] both unloaded and gone from the process\n");
  return 0;
}
