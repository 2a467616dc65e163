// Loads the consumer module, calls its export and its main, unloads it; exits 0 only if all worked.
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include "consumer_api.hpp"

#include <cstdio>

RELIB_HOST_EXPORTS(consumer_exports, CONSUMER_EXPORTS);

int main() {
  auto loaded = relib::load_module<consumer_exports>(CONSUMER_MODULE_PATH);
  if (!loaded) {
    std::fprintf(stderr, "load: %s\n", loaded.error().message.c_str());
    return 1;
  }
  relib::module<consumer_exports> module = std::move(*loaded);

  relib::call_result<int> sum = module.exports().add(2, 3);
  if (!sum || *sum != 5) {
    std::fprintf(stderr, "add(2, 3): %s\n", sum ? "wrong result" : sum.error().message.c_str());
    return 1;
  }
  relib::call_result<int> returned = module.call_main<int>();
  if (!returned || *returned != 42) {
    std::fprintf(stderr, "main: %s\n", returned ? "wrong result" : returned.error().message.c_str());
    return 1;
  }
  auto unloaded = module.unload();
  if (!unloaded) {
    std::fprintf(stderr, "unload: %s\n", unloaded.error().message.c_str());
    return 1;
  }
  std::printf("consumer: loaded, add(2, 3) = %d, main() = %d, unloaded\n", *sum, *returned);
  return 0;
}
