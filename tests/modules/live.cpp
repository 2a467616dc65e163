// A module for the live-reload tests. TEST_LIVE_VERSION is what version() returns; the other
// TEST_LIVE_* definitions build the faulty variants the tests swap in.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "live_api.hpp"

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

RELIB_MODULE_EXPORTS(LIVE_EXPORTS);

#if defined(TEST_LIVE_STATE_V2) || defined(TEST_LIVE_STATE_V2_NO_MIGRATE) || defined(TEST_LIVE_MIGRATE_THROWS)
using state_type = live_state_v2;
RELIB_MODULE_STATE(live_state_v2, 2);
#elif defined(TEST_LIVE_STATE_RESIZED)
using state_type = live_state_resized;
RELIB_MODULE_STATE(live_state_resized, 1);
#else
using state_type = live_state;
RELIB_MODULE_STATE(live_state, 1);
#endif

#if defined(TEST_LIVE_STATE_V2) || defined(TEST_LIVE_MIGRATE_THROWS)
RELIB_MODULE_MIGRATE_STATE(live_state_v2& state, const relib::old_state& old) {
#if defined(TEST_LIVE_MIGRATE_THROWS)
  (void)state;
  (void)old;
  throw std::runtime_error("cannot convert this state");
#else
  if (old.version != 1) throw std::runtime_error("unknown old state version " + std::to_string(old.version));
  const live_state& previous = old.as<live_state>();
  state.counter = previous.counter;
  state.loads = previous.loads;
  state.migrations = 1;
#endif
}
#endif

#if defined(TEST_LIVE_UNDEFINED) && defined(_WIN32)
// A DLL cannot be linked with an undefined symbol: this one imports a DLL that is never next to it.
extern "C" int origin_dep_value();
#define relib_test_symbol_nobody_defines origin_dep_value
#elif defined(TEST_LIVE_UNDEFINED)
extern "C" int relib_test_symbol_nobody_defines();
#endif

#if defined(TEST_LIVE_EARLY_STATE)
// Too early: static constructors run inside dlopen(), before the host attaches the state.
static const int early_counter = relib::module_state<state_type>().counter;
#endif

// Static data starts over at every load: the state block is what survives.
static std::string static_text = "static data of version " + std::to_string(TEST_LIVE_VERSION);

#if defined(TEST_LIVE_MAIN_INT)
RELIB_MODULE_MAIN(int) { return 0; }
#else
RELIB_MODULE_MAIN(void) {
#if defined(TEST_LIVE_MAIN_THROWS)
  throw std::runtime_error("main of the broken version");
#elif defined(TEST_LIVE_MAIN_ONCE)
  // Refuses to start a second time with the same state: bringing it back after a failed reload fails.
  if (relib::module_state<state_type>().loads > 0) throw std::runtime_error("main refuses a second start");
#elif defined(TEST_LIVE_MAIN_THREAD_THROWS)
  start_thread();  // still running when main throws: this version cannot be unloaded
  throw std::runtime_error("main threw after starting a thread");
#endif
  ++relib::module_state<state_type>().loads;
}
#endif

live_version version() {
#if defined(TEST_LIVE_UNDEFINED)
  return relib_test_symbol_nobody_defines();
#else
  return static_text.empty() ? -1 : TEST_LIVE_VERSION;
#endif
}

#if defined(TEST_LIVE_BUMP_CRASHES)
volatile int* volatile nowhere = nullptr;
int bump() { return *nowhere = 1; }  // a bug the crash guard catches
#else
int bump() { return static_cast<int>(++relib::module_state<state_type>().counter); }
#endif

static std::thread worker;
static std::mutex worker_lock;
static std::condition_variable worker_wakeup;
static bool stop_requested = false;

void start_thread() {
  stop_requested = false;
  worker = std::thread([] {
    std::unique_lock<std::mutex> guard(worker_lock);
    worker_wakeup.wait(guard, [] { return stop_requested; });
  });
}

void stop_thread() {
  {
    std::lock_guard<std::mutex> guard(worker_lock);
    stop_requested = true;
  }
  worker_wakeup.notify_all();
  if (worker.joinable()) worker.join();
}
