// RELIB_NO_UNLOADING: imports, exports, exceptions and checks work; modules stay loaded.
#include "support.hpp"

TEST_CASE("without unloading, calls, imports and exceptions work and the module stays") {
  {
    auto game = test::load_or_fail<game_exports>(TEST_GAME_NO_UNLOADING_PATH, game_imports{});
    CHECK(game.exports().add(2, 2).value() == 4);
    CHECK(game.exports().add_through_host(1, 1).value() == 1002);
    CHECK(game.exports().throw_runtime_error("kept").error().what == "kept");
    CHECK(game.call_main<int>().value() == 42);
  }
  CHECK(test::is_mapped(TEST_GAME_NO_UNLOADING_PATH));  // destroyed object, module kept for good
  auto again = relib::load_module<game_exports>(TEST_GAME_NO_UNLOADING_PATH, game_imports{});
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error().code == relib::load_errc::already_loaded);
}

TEST_CASE("without unloading, the load checks still run") {
  auto wrong = relib::load_module<game_exports>(TEST_GAME_WRONG_PATH, game_imports{});
  REQUIRE_FALSE(wrong.has_value());
  CHECK(wrong.error().code == relib::load_errc::unloading_mismatch);
  auto unloading_module = relib::load_module(TEST_MINIMAL_PATH);
  REQUIRE_FALSE(unloading_module.has_value());
  CHECK(unloading_module.error().code == relib::load_errc::unloading_mismatch);
  auto plain = relib::load_module(TEST_PLAIN_C_PATH);
  REQUIRE_FALSE(plain.has_value());
  CHECK(plain.error().code == relib::load_errc::not_a_relib_module);
}

#define GHOST_EXPORTS(X) X(ghost, int(int value))
RELIB_HOST_EXPORTS(ghost_exports, GHOST_EXPORTS);

TEST_CASE("without unloading, a module refused after dlopen stays, and says so") {
  auto ghost = relib::load_module<ghost_exports>(TEST_GHOST_EXPORT_NO_UNLOADING_PATH);
  REQUIRE_FALSE(ghost.has_value());
  CHECK(ghost.error().code == relib::load_errc::not_a_relib_module);
  CHECK(test::contains(ghost.error().message, "relib_export_ghost"));
  CHECK(test::contains(ghost.error().message, "stays in the process (RELIB_NO_UNLOADING)"));
  CHECK(test::is_mapped(TEST_GHOST_EXPORT_NO_UNLOADING_PATH));
  auto again = relib::load_module<ghost_exports>(TEST_GHOST_EXPORT_NO_UNLOADING_PATH);
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error().code == relib::load_errc::already_loaded);
}
