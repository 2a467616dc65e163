// Runs a small simulation, one step per frame, and swaps in every new build of its module: the
// state (tick count, particles) lives in a block the host keeps, so the run goes on with the new
// code instead of starting over.
//
// By hand, after `cmake --workflow --preset demo`: run the host in one terminal,
//   cd build/demo/examples/hot_reload && ./hot_reload
// then change `speed` in examples/hot_reload/module.cpp and, in another terminal, run
//   cmake --build build/demo --target hot_reload_module
// The particles speed up where they are. Ctrl-C quits.
//
// Unattended (the demo and the tests, see ../run_live_example.cmake):
//   hot_reload <module.so> --edit "<command>" --reloads 1
// runs the command, which edits and rebuilds the module, in the background after a second, and
// stops after the first reload (exit code 1 if none comes within two minutes).
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include "../live_driver.hpp"
#include "sim_api.hpp"

#include <cstdio>

RELIB_HOST_EXPORTS(sim_exports, SIM_EXPORTS);

int main(int argc, char** argv) {
  example::live_driver driver(argc, argv, "libhot_reload_module.so");
  auto loaded = relib::load_live_module<sim_exports>(driver.module());
  if (!loaded) return std::fprintf(stderr, "%s\n", loaded.error().message.c_str()), 1;
  relib::live_module<sim_exports> live = std::move(*loaded);
  std::printf("[host] running %s; rebuild it and the simulation carries on\n", live.path().c_str());
  live.on_reload([] { std::printf("[host] reloading: a new build is complete\n"); }, nullptr);

  while (driver.running()) {
    // One atomic load while nothing changed; a complete new build is swapped in here. On an
    // error the running version stays, and the next build is tried.
    relib::result<bool, relib::reload_error> reloaded = live.update();
    if (!reloaded) std::printf("[host] reload failed: %s\n", reloaded.error().message.c_str());
    const bool swapped = reloaded && *reloaded;
    if (swapped) std::printf("[host] version %llu runs now\n", static_cast<unsigned long long>(live.generation()));
    relib::call_result<const char*> text = live.exports().step();
    if (driver.frame() % 10 == 0 || swapped) {
      // The host's view of the block, looked up again since a reload that migrates it moves it;
      // nullptr when the module declares another state type than this host's sim_state.
      const sim_state* state = live.state<sim_state>();
      if (state == nullptr) {
        std::printf("[host] this build declares a state this host does not know\n");
      } else {
        std::printf("[host] tick %3llu | particles at %5.1f %5.1f %5.1f | %s\n",
                    static_cast<unsigned long long>(state->tick), state->position[0], state->position[1],
                    state->position[2], text ? *text : text.error().message.c_str());
      }
    }
    driver.end_frame(swapped);
  }
  return driver.exit_code();
}
