// Errors are built from fields: each names its module and reason, the message is formatted from
// them, a reload error composes its inner error, and docs/errors.md names every code.
#include "live_support.hpp"

#include <vector>

namespace {

struct code_text {
  std::string name, expected_name, explanation;
};

#define TEST_CODE_TEXT(errc_type)                                                                       \
  [](const char* expected, errc_type code) {                                                           \
    return code_text{relib::to_string(code), expected, relib::explain(code)};                          \
  }
#define TEST_LOAD_CODE(code, explanation) texts.push_back(TEST_CODE_TEXT(relib::load_errc)(#code, relib::load_errc::code));
#define TEST_UNLOAD_CODE(code, explanation) texts.push_back(TEST_CODE_TEXT(relib::unload_errc)(#code, relib::unload_errc::code));
#define TEST_CALL_CODE(code, explanation) texts.push_back(TEST_CODE_TEXT(relib::call_errc)(#code, relib::call_errc::code));
#define TEST_RELOAD_CODE(code, explanation) texts.push_back(TEST_CODE_TEXT(relib::reload_errc)(#code, relib::reload_errc::code));

std::vector<code_text> every_code() {
  std::vector<code_text> texts;
  RELIB_LOAD_ERRORS(TEST_LOAD_CODE)
  RELIB_UNLOAD_ERRORS(TEST_UNLOAD_CODE)
  RELIB_CALL_ERRORS(TEST_CALL_CODE)
  RELIB_RELOAD_ERRORS(TEST_RELOAD_CODE)
  return texts;
}

}  // namespace

TEST_CASE("errors: every code has its name and an explanation, and docs/errors.md names it", "[errors]") {
  const std::string manual = test::read_file(RELIB_ERRORS_DOC);
  REQUIRE_FALSE(manual.empty());
  const std::vector<code_text> codes = every_code();
  CHECK(codes.size() == 20 + 5 + 6 + 6);
  for (const code_text& code : codes) {
    INFO(code.expected_name);
    CHECK(code.name == code.expected_name);
    CHECK(code.explanation.size() > 10);
    CHECK(test::contains(manual, "| `" + code.name + "` |"));
  }
  CHECK(std::string(relib::to_string(static_cast<relib::load_errc>(999))) == "unknown");
}

TEST_CASE("errors: a load error carries module and reason, and the message is made from them", "[errors]") {
  test::temp_dir dir;
  const std::string path = dir.path() + "/missing.so";
  auto loaded = relib::load_module(path);
  REQUIRE_FALSE(loaded);
  const relib::load_error& error = loaded.error();
  CHECK(error.code == relib::load_errc::file_not_found);
  CHECK(error.module == path);
  CHECK(test::contains(error.reason, "no such file"));
  CHECK(error.message == "relib: cannot load module '" + path + "': " + error.reason);
}

TEST_CASE("errors: a call error carries module and function", "[errors]") {
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  REQUIRE(game.unload());
  auto sum = game.exports().add(1, 2);
  REQUIRE_FALSE(sum);
  CHECK(sum.error().code == relib::call_errc::not_loaded);
  CHECK(sum.error().module == TEST_GAME_PATH);
  CHECK(sum.error().function == "add");
}

TEST_CASE_METHOD(test::live_v1, "errors: a reload error names the watched file and composes its inner error", "[errors][live]") {
  const relib::reload_error error =
      swap_in_refused(TEST_LIVE_INTERFACE_CHANGED_PATH, relib::load_errc::signature_mismatch);
  CHECK(error.code == relib::reload_errc::load_failed);
  CHECK(error.module == target);
  CHECK(error.running_version == 1);
  // The inner error names the watched file, not the private copy that was checked.
  CHECK(error.load->module == target);
  CHECK_FALSE(test::contains(error.load->message, ".relib-"));
  CHECK(error.reason == std::string(relib::explain(error.code)) + ": " + error.load->reason + "; version 1 keeps running");
  CHECK(error.message == "relib: cannot reload module '" + target + "': " + error.reason);
}

TEST_CASE_METHOD(test::live_v1, "errors: a failed start names the running version and the inner call error", "[errors][live]") {
  auto reloaded = swap_in(TEST_LIVE_MAIN_THROWS_PATH);
  REQUIRE_FALSE(reloaded);
  const relib::reload_error& error = reloaded.error();
  CHECK(error.code == relib::reload_errc::main_failed);
  REQUIRE(error.call);
  CHECK(error.call->module == target);
  CHECK(error.call->function == "main");
  CHECK(error.running_version == 1);
  CHECK(test::contains(error.reason, error.call->what));
}
