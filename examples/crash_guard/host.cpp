// A live module loaded with the crash guard: when a new build crashes, the call returns an
// error instead of ending the process, and the next update() brings back the build before.
//
// By hand, after `cmake --workflow --preset demo`: run the host in one terminal,
//   cd build/demo/examples/crash_guard && ./crash_guard
// then change `frame % 3` into `frame % 4` in examples/crash_guard/module.cpp and run
//   cmake --build build/demo --target crash_guard_module
// The host reports the crash with its stack and goes on with the previous build. Fix the module,
// rebuild, and the fixed build takes over. Ctrl-C quits.
// Unattended (the demo and the tests): see ../live_reload/host.cpp.
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include "../live_driver.hpp"
#include "names_api.hpp"

#include <cstdio>

RELIB_HOST_EXPORTS(names_exports, NAMES_EXPORTS);

int main(int argc, char** argv) {
  example::live_driver driver(argc, argv, "libcrash_guard_module.so");
  relib::live_options options;
  options.crash_guard = true;  // a crash in module code becomes a call_error
  auto loaded = relib::load_live_module<names_exports>(driver.module(), {}, options);
  if (!loaded) return std::fprintf(stderr, "%s\n", loaded.error().message.c_str()), 1;
  relib::live_module<names_exports> live = std::move(*loaded);
  std::printf("[host] running %s with the crash guard\n", live.path().c_str());
  live.on_reload([] { std::printf("[host] reloading\n"); }, nullptr);

  while (driver.running()) {
    relib::result<bool, relib::reload_error> reloaded = live.update();  // after a crash: the build before
    if (!reloaded) std::printf("[host] reload failed: %s\n", reloaded.error().message.c_str());
    const bool swapped = reloaded && *reloaded;
    if (swapped) std::printf("[host] version %llu runs now\n", static_cast<unsigned long long>(live.generation()));
    relib::call_result<const char*> text = live.exports().greeting(static_cast<int>(driver.frame()));
    if (!text) {
      std::printf("[host] frame %3ld: %s\n", driver.frame(), text.error().message.c_str());
    } else if (driver.frame() % 10 == 0 || swapped) {
      std::printf("[host] frame %3ld: %s\n", driver.frame(), *text);
    }
    driver.end_frame(swapped);
  }
  return driver.exit_code();
}
