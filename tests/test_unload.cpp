// Unload: before_unload, verification that the library is gone, explanations when it is not,
// and a module object that cannot be misused afterwards.
#include "support.hpp"

#if !defined(_WIN32)
#include "elf_image.hpp"

#include <dlfcn.h>
#endif

#include <cstdlib>
#include <exception>

TEST_CASE("unload removes the library from the process") {
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  CHECK(test::is_mapped(TEST_GAME_PATH));
  auto report = game.unload();
  REQUIRE(report.has_value());
  CHECK(report->module == TEST_GAME_PATH);
  CHECK(report->duration.count() > 0);
  CHECK_FALSE(game.is_loaded());
  CHECK_FALSE(test::is_mapped(TEST_GAME_PATH));
}

TEST_CASE("exports and main of an unloaded module fail cleanly") {
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  const game_exports& exports = game.exports();
  test::unload_or_fail(game);

  auto sum = exports.add(1, 2);
  REQUIRE_FALSE(sum.has_value());
  CHECK(sum.error().code == relib::call_errc::not_loaded);
  CHECK(test::contains(sum.error().message, "'add'"));
  CHECK(test::contains(sum.error().message, TEST_GAME_PATH));

  auto main_result = game.call_main<int>();
  REQUIRE_FALSE(main_result.has_value());
  CHECK(main_result.error().code == relib::call_errc::not_loaded);

  auto again = game.unload();
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error().code == relib::unload_errc::not_loaded);
}

TEST_CASE("a moved-from module object fails cleanly") {
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  relib::module<game_exports> moved = std::move(game);
  CHECK(moved.exports().add(1, 2).value() == 3);
  CHECK(game.exports().add(1, 2).error().code == relib::call_errc::not_loaded);  // NOLINT(bugprone-use-after-move)
  CHECK(game.unload().error().code == relib::unload_errc::not_loaded);
  test::unload_or_fail(moved);
}

TEST_CASE("destroying a module object unloads it") {
  {
    auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
    CHECK(test::is_mapped(TEST_GAME_PATH));
  }
  CHECK_FALSE(test::is_mapped(TEST_GAME_PATH));
}

TEST_CASE("an exception in before_unload is before_unload_failed and the module stays usable") {
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  game.exports().make_before_unload_throw(true);
  auto failed = game.unload();
  REQUIRE_FALSE(failed.has_value());
  CHECK(failed.error().code == relib::unload_errc::before_unload_failed);
  CHECK(test::contains(failed.error().message, "before_unload was told to throw"));
  CHECK(game.is_loaded());
  CHECK(game.exports().add(1, 2).value() == 3);

  game.exports().make_before_unload_throw(false);
  test::unload_or_fail(game);
  CHECK_FALSE(test::is_mapped(TEST_GAME_PATH));
}

/* STB_GNU_UNIQUE symbols and DT_NEEDED are ELF's: these three are not applicable on Windows. */
#if !defined(_WIN32)
/* libtest_unique is built without relib_add_module(): default visibility, and an inline function
   with a static. GCC marks that static STB_GNU_UNIQUE (unless -fno-gnu-unique), and glibc then
   never unloads the library; clang never emits such symbols. */
#if !defined(__clang__)
TEST_CASE("gcc: a module with STB_GNU_UNIQUE symbols is still_loaded, and the message says why") {
  CHECK(test::elf_image(TEST_UNIQUE_PATH).unique_symbol_count() > 0);
  auto module = test::load_or_fail(TEST_UNIQUE_PATH);
  CHECK(module.call_main<int>().value() == 1);
  auto unloaded = module.unload();
  REQUIRE_FALSE(unloaded.has_value());
  CHECK(unloaded.error().code == relib::unload_errc::still_loaded);
  CHECK(test::contains(unloaded.error().message, "STB_GNU_UNIQUE"));
  CHECK(test::contains(unloaded.error().message, "-fno-gnu-unique"));
  CHECK_FALSE(module.is_loaded());
}
#else
namespace {
void host_terminate_handler() { std::abort(); }
}  // namespace

TEST_CASE("clang: the same module has no STB_GNU_UNIQUE symbols and unloads") {
  CHECK(test::elf_image(TEST_UNIQUE_PATH).unique_symbol_count() == 0);
  // It links the process's C++ runtime, whose terminate handler relib's module side leaves alone.
  const std::terminate_handler previous = std::set_terminate(host_terminate_handler);
  auto module = test::load_or_fail(TEST_UNIQUE_PATH);
  CHECK(module.call_main<int>().value() == 1);
  CHECK(std::get_terminate() == host_terminate_handler);
  test::unload_or_fail(module);
  std::set_terminate(previous);
  CHECK_FALSE(test::is_mapped(TEST_UNIQUE_PATH));
  // Loaded again, its static starts over: nothing of the first load was kept.
  auto again = test::load_or_fail(TEST_UNIQUE_PATH);
  CHECK(again.call_main<int>().value() == 1);
  test::unload_or_fail(again);
}
#endif

TEST_CASE("a module another library depends on is still_loaded, naming that library") {
  auto other = test::load_or_fail<other_exports>(TEST_OTHER_PATH, other_imports{});
  void* dependent = dlopen(TEST_DEPENDENT_PATH, RTLD_NOW | RTLD_LOCAL);
  REQUIRE(dependent != nullptr);
  auto unloaded = other.unload();
  REQUIRE_FALSE(unloaded.has_value());
  CHECK(unloaded.error().code == relib::unload_errc::still_loaded);
  CHECK(test::contains(unloaded.error().message, "libtest_dependent.so"));
  dlclose(dependent);
  CHECK_FALSE(test::is_mapped(TEST_OTHER_PATH));
}
#endif

TEST_CASE("a module opened again outside relib is still_loaded, naming the open handle") {
  auto module = test::load_or_fail(TEST_MINIMAL_PATH);
#if defined(_WIN32)
  HMODULE handle = LoadLibraryA(TEST_MINIMAL_PATH);
#else
  void* handle = dlopen(TEST_MINIMAL_PATH, RTLD_NOW | RTLD_LOCAL);
#endif
  REQUIRE(handle != nullptr);
  auto unloaded = module.unload();
  REQUIRE_FALSE(unloaded.has_value());
  CHECK(unloaded.error().code == relib::unload_errc::still_loaded);
  CHECK(test::contains(unloaded.error().message, "another handle"));
#if defined(_WIN32)
  FreeLibrary(handle);
#else
  dlclose(handle);
#endif
  CHECK_FALSE(test::is_mapped(TEST_MINIMAL_PATH));
}
