// Loading, calling and unloading from several threads.
#include "support.hpp"

#include <atomic>
#include <thread>

TEST_CASE("two threads loading the same file get one module and one already_loaded") {
  for (int round = 0; round < 50; ++round) {
    std::atomic<int> ready{0};
    std::optional<relib::result<relib::module<game_exports>, relib::load_error>> results[2];
    auto load = [&](int index) {
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      results[index].emplace(relib::load_module<game_exports>(TEST_GAME_PATH, game_imports{}));
    };
    std::thread first(load, 0), second(load, 1);
    first.join();
    second.join();
    const int successes = int(results[0]->has_value()) + int(results[1]->has_value());
    REQUIRE(successes == 1);
    auto& failed = results[0]->has_value() ? *results[1] : *results[0];
    CHECK(failed.error().code == relib::load_errc::already_loaded);
    auto& loaded = results[0]->has_value() ? *results[0] : *results[1];
    test::unload_or_fail(loaded.value());
  }
  CHECK_FALSE(test::is_mapped(TEST_GAME_PATH));
}

TEST_CASE("threads load, call and unload different modules at the same time") {
  std::atomic<int> failures{0};
  auto game_worker = [&] {
    for (int i = 0; i < 100; ++i) {
      auto game = relib::load_module<game_exports>(TEST_GAME_PATH, game_imports{});
      if (!game || game->exports().add(i, 1).value() != i + 1 || !game->unload()) failures.fetch_add(1);
    }
  };
  auto other_worker = [&] {
    for (int i = 0; i < 100; ++i) {
      auto other = relib::load_module<other_exports>(TEST_OTHER_PATH, other_imports{});
      if (!other || other->exports().multiply(i, 2).value() != i * 20 || !other->unload()) failures.fetch_add(1);
    }
  };
  std::thread a(game_worker), b(other_worker);
  a.join();
  b.join();
  CHECK(failures.load() == 0);
}

TEST_CASE("one module's exports are called from several threads in parallel") {
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        if (game.exports().scale(i, 2.0f).value() != 2.0 * i) wrong.fetch_add(1);
        if (game.exports().throw_runtime_error("x").error().what != "x") wrong.fetch_add(1);
        (void)t;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(wrong.load() == 0);
  test::unload_or_fail(game);
}
