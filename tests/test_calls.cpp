// Exports and imports with scalars, pointers, structs and C strings; exceptions at the boundary;
// main; calls into a module that is gone.
#include "support.hpp"

#include <csignal>
#include <functional>

TEST_CASE("exports pass and return scalars, pointers, structs and C strings") {
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  const game_exports& exports = game.exports();

  CHECK(exports.add(2, 3).value() == 5);
  CHECK(exports.scale(1.5, 4.0f).value() == Approx(6.0));

  point p{};
  p.x = 7;
  p.y = -2;
  const point mirrored = exports.mirror(p).value();
  CHECK(mirrored.x == -7);
  CHECK(mirrored.y == 2);

  int buffer[5] = {};
  CHECK(exports.fill(buffer, 5, 9).has_value());
  for (int value : buffer) CHECK(value == 9);

  CHECK(std::string(exports.greeting().value()) == "hello from the game module");
  CHECK(exports.length("twelve chars").value() == 12);
  test::unload_or_fail(game);
}

TEST_CASE("imports are called by the module like ordinary functions") {
  test::logged().clear();
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  game.exports().log_through_host("hello host");
  REQUIRE(test::logged().size() == 1);
  CHECK(test::logged()[0] == "hello host");
  CHECK(game.exports().add_through_host(1, 2).value() == 1003);
  const point p = game.exports().point_from_host().value();
  CHECK(p.x == 3);
  CHECK(p.y == 4);
  test::unload_or_fail(game);
}

TEST_CASE("an exception of any type in an export is an empty result, and the module stays usable") {
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  const game_exports& exports = game.exports();

  auto runtime = exports.throw_runtime_error("boom");
  REQUIRE_FALSE(runtime.has_value());
  CHECK(runtime.error().code == relib::call_errc::exception);
  CHECK(runtime.error().exception_type == "std::runtime_error");
  CHECK(runtime.error().what == "boom");
  CHECK(runtime.error().function == "throw_runtime_error");
  CHECK(test::contains(runtime.error().message, "'throw_runtime_error'"));
  CHECK(test::contains(runtime.error().message, TEST_GAME_PATH));
  CHECK_THROWS_AS(runtime.value(), relib::bad_result_access);

  auto custom = exports.throw_custom();
  REQUIRE_FALSE(custom.has_value());
  CHECK(test::contains(custom.error().exception_type, "custom_error"));
  CHECK(custom.error().what.empty());

  auto integer = exports.throw_int();
  REQUIRE_FALSE(integer.has_value());
  CHECK(integer.error().exception_type == "int");

  auto c_string = exports.throw_c_string();
  REQUIRE_FALSE(c_string.has_value());
  CHECK(c_string.error().exception_type == "char const*");

  CHECK(exports.add(1, 1).value() == 2);  // still usable
  test::unload_or_fail(game);
}

TEST_CASE("call_main checks the return type the host asks for") {
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  CHECK(game.call_main<int>().value() == 42);

  auto wrong = game.call_main<float>();
  REQUIRE_FALSE(wrong.has_value());
  CHECK(wrong.error().code == relib::call_errc::main_signature_mismatch);
  CHECK(test::contains(wrong.error().message, TEST_SPELLED("int()", "int ()")));
  CHECK(test::contains(wrong.error().message, TEST_SPELLED("float()", "float ()")));
  test::unload_or_fail(game);

  auto minimal = test::load_or_fail(TEST_MINIMAL_PATH);
  auto missing = minimal.call_main<int>();
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().code == relib::call_errc::no_main);
  CHECK(test::contains(missing.error().message, "RELIB_MODULE_MAIN"));
  test::unload_or_fail(minimal);
}

TEST_CASE("modules with different interfaces are loaded at once") {
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  auto other = test::load_or_fail<other_exports>(TEST_OTHER_PATH, other_imports{});
  auto minimal = test::load_or_fail(TEST_MINIMAL_PATH);
  CHECK(game.exports().add(1, 2).value() == 3);
  CHECK(std::string(other.exports().name().value()) == "other");
  CHECK(other.exports().multiply(6, 7).value() == 420);
  test::unload_or_fail(other);
  CHECK(game.exports().add(2, 2).value() == 4);
  test::unload_or_fail(game);
  test::unload_or_fail(minimal);
}

TEST_CASE("an import that throws ends the process with a message naming the import") {
  const test::child_outcome outcome = test::run_in_child([] {
    auto game = relib::load_module<game_exports>(TEST_GAME_PATH, game_imports{});
    if (game) game->exports().call_throwing_import();
  });
  CHECK(outcome.signal == SIGABRT);
  CHECK(test::contains(outcome.stderr_text, TEST_SPELLED("import 'host_throws' (void())", "import 'host_throws' (void ())")));
  CHECK(test::contains(outcome.stderr_text, "std::runtime_error: the host import failed"));
}

TEST_CASE("an import called from a static constructor ends the process with a clear message") {
  const test::child_outcome outcome = test::run_in_child([] { (void)relib::load_module(TEST_EARLY_IMPORT_PATH, game_imports{}); });
  CHECK(outcome.signal == SIGABRT);
  CHECK(test::contains(outcome.stderr_text, "import 'host_add'"));
  CHECK(test::contains(outcome.stderr_text, "static constructor"));
}

TEST_CASE("the state used from a static constructor ends the process with a clear message") {
  const test::child_outcome outcome = test::run_in_child([] { (void)relib::load_module(TEST_LIVE_EARLY_STATE_PATH); });
  CHECK(outcome.signal == SIGABRT);
  CHECK(test::contains(outcome.stderr_text, "relib::module_state()"));
  CHECK(test::contains(outcome.stderr_text, "static constructor"));
}

#if __cplusplus >= 202002L
TEST_CASE("a module built as C++20 loads in a C++20 host") {
  auto module = test::load_or_fail(TEST_MINIMAL_CXX20_PATH);
  CHECK(module.call_main<int>().value() == 7);
  test::unload_or_fail(module);
}
#endif
