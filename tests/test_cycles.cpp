// Many load, call, unload cycles of one module, each checked against /proc/self/maps.
#include "support.hpp"

TEST_CASE("1000 load, call, unload cycles leave nothing mapped") {
  for (int cycle = 0; cycle < 1000; ++cycle) {
    auto game = relib::load_module<game_exports>(TEST_GAME_PATH, game_imports{});
    REQUIRE(game.has_value());
    REQUIRE(game->exports().add(cycle, 1).value() == cycle + 1);
    REQUIRE(game->call_main<int>().value() == 42);
    REQUIRE(game->unload().has_value());
    REQUIRE_FALSE(test::is_mapped(TEST_GAME_PATH));
  }
}
