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

TEST_CASE("what stays after unloading many modules at once is used again by the next loads") {
  // Each module leaves about 10 KB of free memory with mimalloc and glibc (docs/footprint.md);
  // later loads must take it back rather than add to it.
  constexpr int copies = 40, rounds = 5;  // rounds after the warm-up
  test::temp_dir dir;
  std::vector<std::string> paths;
  for (int i = 0; i < copies; ++i) paths.push_back(dir.copy_file(TEST_GAME_PATH, "copy" + std::to_string(i) + ".so"));
  auto load_all_then_unload = [&] {
    std::vector<relib::module<game_exports>> loaded;
    for (const std::string& path : paths) {
      loaded.push_back(test::load_or_fail<game_exports>(path, game_imports{}));
      REQUIRE(loaded.back().exports().add(1, 2).value() == 3);
    }
    for (auto& module : loaded) test::unload_or_fail(module);
  };
  for (int round = 0; round < 2; ++round) load_all_then_unload();  // the allocators' own first growth
  const std::size_t after_warm_up = test::resident_bytes();
  for (int round = 0; round < rounds; ++round) load_all_then_unload();
  // 40 modules leave about 400 KB each round: that much growth per round would be 2 MB.
  const std::size_t allowance = 128 * 1024 + rounds * copies * test::sanitizer_bytes_per_load;
  CHECK(test::resident_bytes() <= after_warm_up + allowance);
  for (const std::string& path : paths) CHECK_FALSE(test::is_mapped(path));
}
