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

#include "sim_api.hpp"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>

RELIB_HOST_EXPORTS(sim_exports, SIM_EXPORTS);

// Ctrl-C ends the loop rather than the process: the live module then removes its private copies.
static volatile std::sig_atomic_t stop = 0;

int main(int argc, char** argv) {
  std::string path = "libhot_reload_module.so", edit;
  long reloads_wanted = 0;  // 0: run until Ctrl-C
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--edit" && i + 1 < argc) {
      edit = argv[++i];
    } else if (arg == "--reloads" && i + 1 < argc) {
      reloads_wanted = std::atol(argv[++i]);
    } else {
      path = arg;
    }
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // line by line, also into the demo script's pipe
  std::signal(SIGINT, [](int) { stop = 1; });

  auto loaded = relib::load_live_module<sim_exports>(path);
  if (!loaded) return std::fprintf(stderr, "%s\n", loaded.error().message.c_str()), 1;
  relib::live_module<sim_exports> live = std::move(*loaded);
  std::printf("[host] running %s; rebuild it and the simulation carries on\n", live.path().c_str());
  live.on_reload([] { std::printf("[host] reloading: a new build is complete\n"); }, nullptr);

  std::future<int> editing;  // the edit command's exit status, once it is done
  long reloads = 0, reloaded_at = 0;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  for (long frame = 1; !stop; ++frame) {
    // One atomic load while nothing changed; a complete new build is swapped in here. On an
    // error the running version stays, and the next build is tried.
    relib::result<bool, relib::reload_error> reloaded = live.update();
    if (!reloaded) std::printf("[host] reload failed: %s\n", reloaded.error().message.c_str());
    if (reloaded && *reloaded) {
      std::printf("[host] version %llu runs now\n", static_cast<unsigned long long>(live.generation()));
      ++reloads;
      reloaded_at = frame;
    }
    relib::call_result<const char*> text = live.exports().step();
    if (frame % 10 == 0 || reloaded_at == frame) {
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

    if (frame == 20 && !edit.empty()) {
      std::printf("[host] editing and rebuilding the module in the background\n");
      editing = std::async(std::launch::async, [&edit] { return std::system(edit.c_str()); });
    }
    if (editing.valid() && editing.wait_for(std::chrono::seconds(0)) == std::future_status::ready &&
        editing.get() != 0) {
      return std::fprintf(stderr, "[host] the edit command failed: %s\n", edit.c_str()), 1;
    }
    if (reloads_wanted > 0 && reloads >= reloads_wanted && frame >= reloaded_at + 20) break;
    if (reloads_wanted > 0 && std::chrono::steady_clock::now() > give_up) {
      return std::fprintf(stderr, "[host] no reload within two minutes\n"), 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a frame
  }
  return 0;
}
