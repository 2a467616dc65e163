// The interface of the hot_reload module, and the state that outlives each build of it.
#pragma once
#include <cstdint>

// The simulation's state, in a block the host owns (RELIB_MODULE_STATE in the module): it
// outlives each version's code and heap, so it holds plain values only, no pointers or
// std::string. A fresh block starts from these initializers; the host reads the block too.
struct sim_state {
  std::uint64_t tick = 0;
  float position[3] = {10.0f, 50.0f, 90.0f};  // three particles between walls at 0 and 100
  float velocity[3] = {1.0f, -2.0f, 3.0f};
};

// step() advances the simulation by one tick and says how it moves.
#define SIM_EXPORTS(X) X(step, const char*())
