// The interface of the live-reload test module, built in several variants (see live.cpp).
#pragma once

#if defined(TEST_LIVE_INTERFACE_CHANGED)
using live_version = long;  // another signature for version(), for the interface check
#else
using live_version = int;
#endif

#define LIVE_EXPORTS(X)             \
  X(version, live_version())        \
  X(bump, int())                    \
  X(start_thread, void())           \
  X(stop_thread, void())

// The state the module keeps across reloads: version 1, and version 2 with a wider counter.
struct live_state {
  int counter;
  int loads;  // how many times main ran with this state
};
struct live_state_v2 {
  long long counter;
  int loads;
  int migrations;
};
// The same name as version 1 with another size, for the "type changed, version not" check.
struct live_state_resized {
  int counter;
  int loads;
  int extra;
};
