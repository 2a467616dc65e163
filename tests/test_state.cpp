// State that survives reloads: RELIB_MODULE_STATE, its version and the migrate hook.
#include "live_support.hpp"

TEST_CASE("state: load_module gives the module a block of its own", "[state]") {
  auto loaded = relib::load_module<live_exports>(TEST_LIVE_V1_PATH);
  if (!loaded) FAIL(loaded.error().message);
  CHECK(*loaded->exports().bump() == 1);
  CHECK(*loaded->exports().bump() == 2);
  REQUIRE(loaded->unload());
  auto again = relib::load_module<live_exports>(TEST_LIVE_V1_PATH);
  REQUIRE(again);
  CHECK(*again->exports().bump() == 1);  // a new module object starts a new state
}

TEST_CASE_METHOD(test::live_v1, "state: kept across reloads of the same version", "[state]") {
  for (int i = 0; i < 3; ++i) REQUIRE(module.exports().bump());
  live_state* host_view = module.state<live_state>();
  REQUIRE(host_view != nullptr);
  CHECK(host_view->counter == 3);
  host_view->counter = 10;  // the host may write it too

  test::install_by_rename(TEST_LIVE_V2_PATH, target);
  REQUIRE(test::next_update(module));
  CHECK(test::version_of(module) == 2);
  CHECK(*module.exports().bump() == 11);
  CHECK(module.state<live_state>() == host_view);  // the same block
  CHECK(module.state<live_state>()->loads == 2);
  CHECK(module.state<live_state_v2>() == nullptr);  // another type: no access
}

TEST_CASE_METHOD(test::live_v1, "state: a new version is converted by the migrate hook", "[state]") {
  for (int i = 0; i < 5; ++i) REQUIRE(module.exports().bump());
  auto reloaded = swap_in(TEST_LIVE_STATE_V2_PATH);
  if (!reloaded) FAIL(reloaded.error().message);
  CHECK(test::version_of(module) == 4);
  CHECK(module.state<live_state>() == nullptr);
  live_state_v2* state = module.state<live_state_v2>();
  REQUIRE(state != nullptr);
  CHECK(state->counter == 5);
  CHECK(state->migrations == 1);
  CHECK(state->loads == 2);
  CHECK(*module.exports().bump() == 6);
}

TEST_CASE_METHOD(test::live_v1, "state: a version change without a migrate hook is refused", "[state]") {
  const relib::reload_error error = swap_in_refused(TEST_LIVE_STATE_V2_NO_MIGRATE_PATH, relib::load_errc::state_mismatch);
  CHECK(test::contains(error.message, "'live_state_v2' (16 bytes, version 2)"));
  CHECK(test::contains(error.message, "'live_state' (8 bytes, version 1)"));
  CHECK(test::contains(error.message, "no RELIB_MODULE_MIGRATE_STATE"));
  CHECK(test::version_of(module) == 1);
}

TEST_CASE_METHOD(test::live_v1, "state: a changed type under the same version is refused", "[state]") {
  const relib::reload_error error = swap_in_refused(TEST_LIVE_STATE_RESIZED_PATH, relib::load_errc::state_mismatch);
  CHECK(test::contains(error.message, "the state type changed and its version did not"));
  CHECK(test::version_of(module) == 1);
}

TEST_CASE_METHOD(test::live_v1, "state: a migrate hook that throws leaves the state and the old version", "[state]") {
  for (int i = 0; i < 4; ++i) REQUIRE(module.exports().bump());
  const relib::reload_error error = swap_in_refused(TEST_LIVE_MIGRATE_THROWS_PATH, relib::load_errc::state_migration_failed);
  CHECK(test::contains(error.message, "cannot convert this state"));
  CHECK(test::contains(error.message, "from version 1 to 2"));
  CHECK(test::version_of(module) == 1);
  REQUIRE(module.state<live_state>() != nullptr);
  CHECK(*module.exports().bump() == 5);
}
