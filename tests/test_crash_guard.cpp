// The crash guard: a crash in module code during a guarded call returns call_errc::crashed and
// poisons the module; without the guard the crash is reported with its stack and the process
// ends as it would have; crashes outside module code go to the host's own handler.
#include "live_support.hpp"
#include "support.hpp"

#include "crashes_api.hpp"

#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <functional>

RELIB_HOST_EXPORTS(crashes_exports, CRASHES_EXPORTS);
RELIB_HOST_IMPORTS(crashes_imports, CRASHES_IMPORTS);

namespace {
std::atomic<bool> host_function_crashes{false};
volatile int* volatile host_nowhere = nullptr;

// The host's own bug, in host code (a crash, not UndefinedBehaviorSanitizer's report).
__attribute__((noinline, no_sanitize("undefined"))) void crash_in_host(int value) { *host_nowhere = value; }
}  // namespace

int crashes_imports::host_function(int value) {
  if (host_function_crashes) crash_in_host(value);
  return value * 2;
}

namespace {

relib::load_options guarded() {
  relib::load_options options;
  options.crash_guard = true;
  return options;
}

relib::module<crashes_exports> load_crashes(const relib::load_options& options) {
  auto loaded = relib::load_module<crashes_exports>(TEST_CRASHES_PATH, crashes_imports{}, options);
  INFO((loaded ? std::string() : loaded.error().message));
  REQUIRE(loaded.has_value());
  return std::move(*loaded);
}

// One way to crash: the export, the signal, and a function the stack must name.
struct crash_case {
  const char* name;
  int signal;
  std::function<relib::call_error(const crashes_exports&)> call;
  const char* function;
  bool reported_without_guard = true;  // a stack overflow needs the alternate stack a guarded call sets up
};

template <class Result>
relib::call_error error_of(const Result& result) {
  REQUIRE_FALSE(result.has_value());
  return result.error();
}

std::vector<crash_case> crash_cases() {
  return {
      {"a write to address 16", SIGSEGV, [](const crashes_exports& e) { return error_of(e.write_at(16)); },
       "(anonymous namespace)::store_at(int)"},
      {"a read past the end of a mapped file", SIGBUS, [](const crashes_exports& e) { return error_of(e.read_past_end_of_file()); },
       "read_past_end_of_file()"},
      {"an integer division by zero", SIGFPE, [](const crashes_exports& e) { return error_of(e.divide(1, 0)); },
       "divide(int, int)"},
      {"__builtin_trap()", SIGILL, [](const crashes_exports& e) { return error_of(e.trap()); }, "trap()"},
      {"abort()", SIGABRT, [](const crashes_exports& e) { return error_of(e.call_abort()); }, "call_abort()"},
      {"a failed assert()", SIGABRT, [](const crashes_exports& e) { return error_of(e.fail_assertion()); },
       "fail_assertion()"},
      {"an exception through noexcept (std::terminate)", SIGABRT,
       [](const crashes_exports& e) { return error_of(e.throw_through_noexcept()); }, "throw_through_noexcept()"},
      {"a stack overflow", SIGSEGV, [](const crashes_exports& e) { return error_of(e.overflow_stack(0)); },
       "(anonymous namespace)::recurse(int)", false},
      {"strlen(nullptr) in the C library, called by the module", SIGSEGV,
       [](const crashes_exports& e) { return error_of(e.length_of_null_string()); }, "length_of_null_string()"},
      {"a call through a null function pointer", SIGSEGV,
       [](const crashes_exports& e) { return error_of(e.call_null_function()); }, "call_null_function()"},
  };
}

void default_crash_actions() {
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(signal, SIG_DFL);
}

bool names(const std::vector<relib::stack_frame>& stack, const std::string& function) {
  for (const relib::stack_frame& frame : stack) {
    if (frame.function == function) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("crash guard: each kind of crash returns call_errc::crashed with the signal, the address and the stack") {
  for (const crash_case& crash : crash_cases()) {
    SECTION(crash.name) {
      auto module = load_crashes(guarded());
      REQUIRE(*module.exports().add(1, 2) == 3);
      const relib::call_error error = crash.call(module.exports());
      INFO(error.message);
      CHECK(error.code == relib::call_errc::crashed);
      CHECK(error.signal == crash.signal);
      CHECK(error.module == TEST_CRASHES_PATH);
      CHECK(names(error.stack, crash.function));
      CHECK(test::contains(error.message, "crashed: "));
      if (crash.signal == SIGSEGV && std::string(crash.name) == "a write to address 16") {
        CHECK(error.fault_address == 16);
        REQUIRE_FALSE(error.stack.empty());
        CHECK(error.stack[0].function == crash.function);
        CHECK(error.stack[0].line > 0);
      }
      // Poisoned: every later call fails without entering the module, naming the crash.
      const auto later = module.exports().add(1, 2);
      REQUIRE_FALSE(later);
      CHECK(later.error().code == relib::call_errc::poisoned);
      CHECK(later.error().signal == crash.signal);
      CHECK(test::contains(later.error().message, "crashed before"));
      test::unload_or_fail(module);
      CHECK_FALSE(test::is_mapped(TEST_CRASHES_PATH));
    }
  }
}

TEST_CASE("crash guard: exceptions are still exceptions, and an unguarded module is not affected") {
  auto module = load_crashes(guarded());
  CHECK(*module.exports().add(2, 2) == 4);
  CHECK(*module.exports().call_host(3) == 7);
  test::unload_or_fail(module);
}

TEST_CASE("without the guard, a crash in module code prints the stack naming the module, and the process dies by its signal") {
  for (const crash_case& crash : crash_cases()) {
    SECTION(crash.name) {
      const test::child_outcome outcome = test::run_in_child([&] {
        default_crash_actions();  // as in a host without handlers of its own (not the test framework's)
        auto module = load_crashes(relib::load_options{});
        (void)crash.call(module.exports());
        std::_Exit(0);  // not reached
      });
      INFO(outcome.stderr_text);
      CHECK(outcome.signal == crash.signal);
      if (crash.reported_without_guard) {
        CHECK(test::contains(outcome.stderr_text, std::string("relib: module '") + TEST_CRASHES_PATH + "' crashed: "));
        CHECK(test::contains(outcome.stderr_text, crash.function));
      }
    }
  }
}

namespace {
extern "C" void host_segv_handler(int) {
  static const char text[] = "host handler\n";
  (void)!::write(STDERR_FILENO, text, sizeof text - 1);
  std::_Exit(42);
}
void install_host_handler() {
  struct sigaction action {};
  action.sa_handler = &host_segv_handler;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGSEGV, &action, nullptr);
}

// A child that sets up its handlers with `prepare`, then has a guarded module call a host import
// that crashes in host code.
test::child_outcome crash_in_host_import(void (*prepare)()) {
  return test::run_in_child([prepare] {
    prepare();
    auto module = load_crashes(guarded());
    host_function_crashes = true;
    (void)module.exports().call_host(1);
  });
}
}  // namespace

TEST_CASE("crash guard: the host's own handler still gets the crashes in host code") {
  SECTION("a fault in host code, after a guarded module crashed and was caught") {
    const test::child_outcome outcome = test::run_in_child([] {
      install_host_handler();
      auto module = load_crashes(guarded());
      if (module.exports().write_at(16).error().code == relib::call_errc::crashed) std::fputs("caught\n", stderr);
      crash_in_host(1);
    });
    INFO(outcome.stderr_text);
    CHECK(outcome.exit_code == 42);
    CHECK(test::contains(outcome.stderr_text, "caught\nhost handler\n"));
  }
  SECTION("a fault in a host import called by a guarded module") {
    const test::child_outcome outcome = crash_in_host_import(&install_host_handler);
    INFO(outcome.stderr_text);
    CHECK(outcome.exit_code == 42);
    CHECK_FALSE(test::contains(outcome.stderr_text, "relib: module"));
  }
  SECTION("without a handler of the host's, a fault in host code ends the process as before") {
    const test::child_outcome outcome = crash_in_host_import(&default_crash_actions);
    CHECK(outcome.signal == SIGSEGV);
    CHECK_FALSE(test::contains(outcome.stderr_text, "relib: module"));
  }
}

namespace {
// A live module under the crash guard, on `target`, with `build` installed there first.
test::live load_guarded_live(const char* build, const std::string& target) {
  test::install_by_rename(build, target);
  relib::live_options options = test::quick_options();
  options.crash_guard = true;
  auto loaded = relib::load_live_module<live_exports>(target, {}, options);
  INFO((loaded ? std::string() : loaded.error().message));
  REQUIRE(loaded);
  return std::move(*loaded);
}
}  // namespace

TEST_CASE("crash guard: a live module brings back the version before the one that crashed") {
  test::temp_dir dir;
  const std::string target = dir.path() + "/libmod.so";
  test::live module = load_guarded_live(TEST_LIVE_V1_PATH, target);
  CHECK(*module.exports().bump() == 1);

  test::install_by_rename(TEST_LIVE_BUMP_CRASHES_PATH, target);
  REQUIRE(test::next_update(module));
  CHECK(test::version_of(module) == 15);
  const auto crashed = module.exports().bump();
  REQUIRE_FALSE(crashed);
  CHECK(crashed.error().code == relib::call_errc::crashed);
  CHECK(crashed.error().signal == SIGSEGV);
  CHECK(test::contains(crashed.error().message, "the next update() brings back the version before"));
  CHECK(module.exports().version().error().code == relib::call_errc::poisoned);

  auto rolled_back = module.update();
  INFO((rolled_back ? std::string() : rolled_back.error().message));
  REQUIRE(rolled_back);
  CHECK(*rolled_back);
  CHECK(test::version_of(module) == 1);
  CHECK(*module.exports().bump() == 2);  // the state survived the crash
  CHECK(module.generation() == 3);

  // The next build (the fix) loads as usual.
  test::install_by_rename(TEST_LIVE_V2_PATH, target);
  REQUIRE(test::next_update(module));
  CHECK(test::version_of(module) == 2);
  CHECK(*module.exports().bump() == 3);
}

TEST_CASE("crash guard: a live module whose first version crashes has nothing to go back to until a new build") {
  test::temp_dir dir;
  const std::string target = dir.path() + "/libmod.so";
  test::live module = load_guarded_live(TEST_LIVE_BUMP_CRASHES_PATH, target);
  CHECK(module.exports().bump().error().code == relib::call_errc::crashed);

  const auto update = module.update();
  REQUIRE_FALSE(update);
  CHECK(update.error().code == relib::reload_errc::rollback_failed);
  CHECK(test::contains(update.error().message, "no version ran before it"));
  CHECK(module.exports().bump().error().code == relib::call_errc::poisoned);

  test::install_by_rename(TEST_LIVE_V1_PATH, target);  // the fix
  REQUIRE(test::next_update(module));
  CHECK(test::version_of(module) == 1);
  CHECK(*module.exports().bump() == 1);
}
