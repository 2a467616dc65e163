// Loads the calc module with the host's imports, calls its exports (one of which throws), unloads.
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include "calc_api.hpp"

#include <cstdio>

RELIB_HOST_EXPORTS(calc_exports, CALC_EXPORTS);  // struct calc_exports { add, scale, word_count }
RELIB_HOST_IMPORTS(calc_imports, CALC_IMPORTS);  // struct calc_imports { static log, limit }

// The imports are ordinary functions; the module calls them as host::log and host::limit.
void calc_imports::log(const char* message) { std::printf("  [module] %s\n", message); }
int calc_imports::limit() { return 1000; }

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "libimports_exports_module.so";

  // Every signature is compared with the module's records before any module code runs.
  auto loaded = relib::load_module<calc_exports>(path, calc_imports{});
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error().message.c_str());
    return 1;
  }
  relib::module<calc_exports> calc = std::move(*loaded);
  const calc_exports& exports = calc.exports();
  std::printf("[host] loaded %s\n", calc.path().c_str());

  // Each call returns a call_result; value() throws bad_result_access if the export failed.
  std::printf("[host] add(2, 3) = %d\n", exports.add(2, 3).value());
  const vec2 v = exports.scale(vec2{1.5, -2.0}, 2.0).value();
  std::printf("[host] scale({1.5, -2}, 2) = {%g, %g}\n", v.x, v.y);
  std::printf("[host] word_count(\"structs and strings cross too\") = %d\n",
              exports.word_count("structs and strings cross too").value());

  // An exception escaping an export stops at the boundary: the result is empty and says why.
  relib::call_result<int> too_big = exports.add(900, 200);
  if (!too_big) {
    const relib::call_error& error = too_big.error();
    std::printf("[host] add(900, 200) failed: %s\n", error.message.c_str());
    std::printf("[host]   exception_type: %s, what: %s\n", error.exception_type.c_str(), error.what.c_str());
  }
  std::printf("[host] the module is still usable: add(40, 2) = %d\n", exports.add(40, 2).value());

  auto unloaded = calc.unload();
  if (!unloaded) {
    std::fprintf(stderr, "%s\n", unloaded.error().message.c_str());
    return 1;
  }
  // The exports object outlives the library: calls now fail cleanly instead of crashing.
  std::printf("[host] unloaded; add(1, 1) now reports: %s\n", exports.add(1, 1).error().message.c_str());
  return 0;
}
