// Prints what the module says, twice a second, and swaps in every new build of the module.
//
// By hand, after `cmake --workflow --preset demo`: run the host in one terminal,
//   cd build/demo/examples/live_reload && ./live_reload
// then edit examples/live_reload/module.cpp and, in another terminal, run
//   cmake --build build/demo --target live_reload_module
// The host prints the new text without a restart. A build that cannot be loaded is reported and
// the running version stays. Ctrl-C quits.
//
// Unattended (the demo and the tests, see ../run_live_example.cmake):
//   live_reload <module.so> --edit "<command>" --reloads 1
// runs the command, which edits and rebuilds the module, in the background after a second, and
// stops after the first reload (exit code 1 if none comes within two minutes).
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include "../live_driver.hpp"
#include "message_api.hpp"

#include <cstdio>

RELIB_HOST_EXPORTS(message_exports, MESSAGE_EXPORTS);

int main(int argc, char** argv) {
  example::live_driver driver(argc, argv, "liblive_reload_module.so");
  auto loaded = relib::load_live_module<message_exports>(driver.module());
  if (!loaded) return std::fprintf(stderr, "%s\n", loaded.error().message.c_str()), 1;
  relib::live_module<message_exports> live = std::move(*loaded);
  std::printf("[host] running %s; rebuild it and watch the text change\n", live.path().c_str());
  live.on_reload([] { std::printf("[host] reloading: a new build is complete\n"); }, nullptr);

  while (driver.running()) {
    // One atomic load while nothing changed; a complete new build is swapped in here. On an
    // error the running version stays, and the next build is tried.
    relib::result<bool, relib::reload_error> reloaded = live.update();
    if (!reloaded) std::printf("[host] reload failed: %s\n", reloaded.error().message.c_str());
    const bool swapped = reloaded && *reloaded;
    if (swapped) std::printf("[host] version %llu runs now\n", static_cast<unsigned long long>(live.generation()));
    if (driver.frame() % 10 == 0 || swapped) {
      relib::call_result<const char*> text = live.exports().message();
      std::printf("[host] frame %3ld: %s\n", driver.frame(), text ? *text : text.error().message.c_str());
    }
    driver.end_frame(swapped);
  }
  return driver.exit_code();
}
