// A toy simulation: three particles bouncing between two walls. Edit `speed` (or the text),
// rebuild while the host runs, and the simulation goes on from where it was with the new code.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "sim_api.hpp"

#include <cstdio>

RELIB_MODULE_EXPORTS(SIM_EXPORTS);

// Kept across reloads. Changing sim_state's layout: raise the version, and fill the new block
// from the old one in RELIB_MODULE_MIGRATE_STATE(sim_state& state, const relib::old_state& old).
RELIB_MODULE_STATE(sim_state, 1);

static const float speed = 1.0f;

// Static data starts over at every load, unlike the state block.
static int steps_by_this_build = 0;

// A live module's main runs at every load, the first and each reload.
RELIB_MODULE_MAIN(void) {
  std::printf("  [module] loaded: speed %.1f, the simulation is at tick %llu\n", speed,
              static_cast<unsigned long long>(relib::module_state<sim_state>().tick));
}

const char* step() {
  sim_state& state = relib::module_state<sim_state>();
  ++state.tick;
  ++steps_by_this_build;
  for (int i = 0; i < 3; ++i) {
    float& x = state.position[i];
    float& v = state.velocity[i];
    x += v * speed;
    if (x < 0.0f || x > 100.0f) {  // bounce off the wall
      x = x < 0.0f ? -x : 200.0f - x;
      v = -v;
    }
  }
  static char text[64];  // the host prints it before its next call
  std::snprintf(text, sizeof text, "speed %.1f, this build's step %d", speed, steps_by_this_build);
  return text;
}
