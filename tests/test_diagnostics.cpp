// Diagnostics: the stack where a module threw, named from the version of the module that ran.
// On Windows the names come from the DLL's COFF symbol table and DWARF line table, the log's
// steps from the Windows calls (the log tests here are Linux's).
#if !defined(_WIN32)
#include "elf_image.hpp"
#endif
#include "live_support.hpp"
#include "support.hpp"

#include "diagnostics_api.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>

RELIB_HOST_EXPORTS(diagnostics_exports, DIAGNOSTICS_EXPORTS);

namespace {

// The line of tests/modules/diagnostics.cpp that carries "// marker: <name>".
unsigned line_of(const std::string& marker) {
  std::ifstream source(TEST_DIAGNOSTICS_SOURCE);
  std::string text;
  for (unsigned line = 1; std::getline(source, text); ++line) {
    if (test::contains(text, "// marker: " + marker)) return line;
  }
  FAIL("no marker " << marker << " in " << TEST_DIAGNOSTICS_SOURCE);
  return 0;
}

// What version 2 adds to each line number (its #line directive).
unsigned version2_shift() { return 1000 - (line_of("version 2 numbers the next line 1000") + 1); }

void check_frame(const relib::stack_frame& frame, const std::string& function, const std::string& marker,
                 const std::string& module, bool second) {
  INFO(relib::to_string(frame));
  CHECK(frame.function == function);
  CHECK(test::contains(frame.source_file, "diagnostics.cpp"));
  CHECK(frame.line == line_of(marker) + (second ? version2_shift() : 0));
  CHECK(frame.object == module);
  CHECK(frame.offset != 0);
}

template <class Result>
const relib::call_error& error_of(const Result& result) {
  REQUIRE_FALSE(result.has_value());
  return result.error();
}

// A throw three calls deep, checked frame by frame.
void check_three_deep(const diagnostics_exports& exports, const std::string& module, bool second = false) {
  const std::string prefix = second ? "(anonymous namespace)::second_" : "(anonymous namespace)::";
  const auto thrown = exports.throw_three_deep(1);
  const relib::call_error& error = error_of(thrown);
  INFO(error.message);
  CHECK(error.code == relib::call_errc::exception);
  REQUIRE(error.stack.size() >= 4);
  check_frame(error.stack[0], prefix + "level3(int)", "level3", module, second);
  check_frame(error.stack[1], prefix + "level2(int)", "level2", module, second);
  check_frame(error.stack[2], prefix + "level1(int)", "level1", module, second);
  check_frame(error.stack[3], "throw_three_deep(int)", "export", module, second);
  for (const relib::stack_frame& frame : error.stack) CHECK(frame.object == module);  // nothing of the host
  CHECK(test::contains(error.message, "\n  thrown at\n    #0 " + relib::to_string(error.stack[0])));
}

}  // namespace

TEST_CASE("a call_error names the frames where the module threw, with files and lines") {
  auto module = test::load_or_fail<diagnostics_exports>(TEST_DIAGNOSTICS_PATH);
  check_three_deep(module.exports(), TEST_DIAGNOSTICS_PATH);
  test::unload_or_fail(module);
}

TEST_CASE("the stack of an exception thrown by the module's C++ runtime starts in the runtime") {
  auto module = test::load_or_fail<diagnostics_exports>(TEST_DIAGNOSTICS_PATH);
  const auto failed = module.exports().out_of_range_in_runtime(7);
  const relib::call_error& error = error_of(failed);
  INFO(error.message);
  CHECK(error.exception_type == "std::out_of_range");
  REQUIRE(error.stack.size() >= 2);
  // The standard library's own function that throws.
#if defined(_LIBCPP_VERSION)
  CHECK(test::contains(error.stack[0].function, "std::__1::__throw_out_of_range"));
#else
  CHECK(test::contains(error.stack[0].function, "std::__throw_out_of_range_fmt"));
#endif
  bool reached_the_export = false;
  for (const relib::stack_frame& frame : error.stack) {
    if (frame.function == "out_of_range_in_runtime(int)") {
      reached_the_export = true;
      CHECK(frame.line == line_of("at"));
    }
  }
  CHECK(reached_the_export);
}

TEST_CASE("an exception of any type carries its stack, and a rethrow keeps the first throw's") {
  auto module = test::load_or_fail<diagnostics_exports>(TEST_DIAGNOSTICS_PATH);
  {
    const auto failed = module.exports().throw_an_int();
    const relib::call_error& error = error_of(failed);
    INFO(error.message);
    CHECK(error.exception_type == "int");
    REQUIRE_FALSE(error.stack.empty());
    CHECK(error.stack[0].function == "throw_an_int()");
    CHECK(error.stack[0].line == line_of("int"));
  }
  {
    // Another exception thrown and caught while the first is handled leaves the first's record.
    const auto failed = module.exports().rethrow_after_another();
    const relib::call_error& error = error_of(failed);
    INFO(error.message);
    CHECK(error.what == "the first");
    REQUIRE_FALSE(error.stack.empty());
    CHECK(error.stack[0].line == line_of("first"));
  }
}

#if !defined(_LIBCPP_VERSION)
TEST_CASE("libstdc++: an exception made by make_exception_ptr and rethrown has no stack, and the message says nothing of one") {
  // libstdc++ builds the exception_ptr's object without throwing it: nothing was recorded.
  auto module = test::load_or_fail<diagnostics_exports>(TEST_DIAGNOSTICS_PATH);
  const auto failed = module.exports().rethrow_from_pointer();
  const relib::call_error& error = error_of(failed);
  CHECK(error.what == "kept in an exception_ptr");
  CHECK(error.stack.empty());
  CHECK_FALSE(test::contains(error.message, "thrown at"));
}
#else
TEST_CASE("libc++: an exception made by make_exception_ptr and rethrown has the stack where it was made") {
  // libc++'s make_exception_ptr throws the object and catches it: that throw is recorded.
  auto module = test::load_or_fail<diagnostics_exports>(TEST_DIAGNOSTICS_PATH);
  const auto failed = module.exports().rethrow_from_pointer();
  const relib::call_error& error = error_of(failed);
  INFO(error.message);
  CHECK(error.what == "kept in an exception_ptr");
  const auto made = std::find_if(error.stack.begin(), error.stack.end(), [](const relib::stack_frame& frame) {
    return frame.function == "rethrow_from_pointer()";
  });
  REQUIRE(made != error.stack.end());
  CHECK(made->line == line_of("made"));
}
#endif

TEST_CASE("reloaded at the same path, a module's stacks name the version that threw") {
  test::temp_dir dir;
  for (int round = 0; round < 20; ++round) {
    const bool second = round % 2 == 1;
    // As a build replaces a library: the new file renamed over the old one.
    const std::string next = dir.copy_file(second ? TEST_DIAGNOSTICS_V2_PATH : TEST_DIAGNOSTICS_PATH, "next");
    const std::string path = dir.path() + "/libdiagnostics" + test::library_suffix;
    std::filesystem::rename(next, path);
    auto module = test::load_or_fail<diagnostics_exports>(path);
    REQUIRE(*module.exports().version() == (second ? 2 : 1));
    check_three_deep(module.exports(), path, second);
    test::unload_or_fail(module);
  }
}

#if !defined(_WIN32)  // Windows: a loaded DLL's file cannot be replaced
TEST_CASE("a module whose file was replaced while it ran names its frames from the file it was loaded from") {
  test::temp_dir dir;
  const std::string path = dir.copy_file(TEST_DIAGNOSTICS_PATH, "libdiagnostics.so");
  auto first = test::load_or_fail<diagnostics_exports>(path);
  const std::string next = dir.copy_file(TEST_DIAGNOSTICS_V2_PATH, "next.so");
  REQUIRE(std::rename(next.c_str(), path.c_str()) == 0);
  auto second = test::load_or_fail<diagnostics_exports>(path);  // another file now, at the same path
  check_three_deep(first.exports(), path, false);
  check_three_deep(second.exports(), path, true);
  test::unload_or_fail(first);
  test::unload_or_fail(second);
}
#endif

// The names come from sections that neither the dynamic loader nor the ELF gate reads, so relib
// reads them with every bound checked: bytes flipped there (the same mutants on every run) may
// lose names, never crash or read out of bounds (the asan preset checks the last).
namespace {
using file_regions = std::vector<std::pair<std::uint64_t, std::uint64_t>>;  // offset, size

#if defined(_WIN32)
std::uint32_t u32_at(const std::string& bytes, std::uint64_t at) {
  std::uint32_t value = 0;
  REQUIRE(at + 4 <= bytes.size());
  std::memcpy(&value, bytes.data() + at, 4);
  return value;
}
std::uint16_t u16_at(const std::string& bytes, std::uint64_t at) { return static_cast<std::uint16_t>(u32_at(bytes, at)); }

// The DLL's COFF symbol and string tables and its line table. Not its section headers, which
// (unlike ELF's) are the loader's map of the image: a file offset flipped there loads other
// bytes as code or unwind tables, as flipped code would.
file_regions name_regions(const std::string& bytes) {
  const std::uint32_t coff = u32_at(bytes, 0x3c) + 4;
  const std::uint16_t section_count = u16_at(bytes, coff + 2);
  const std::uint32_t symbols = u32_at(bytes, coff + 8), symbol_count = u32_at(bytes, coff + 12);
  const std::uint64_t strings = std::uint64_t{symbols} + std::uint64_t{symbol_count} * 18;
  const std::uint64_t section_table = coff + 20 + u16_at(bytes, coff + 16);
  file_regions regions{{symbols, symbol_count * 18}, {strings, u32_at(bytes, strings)}};
  for (std::uint16_t i = 0; i < section_count; ++i) {
    const std::uint64_t header = section_table + i * 40;
    std::string name(bytes.data() + header, strnlen(bytes.data() + header, 8));
    if (name[0] == '/') name = bytes.data() + strings + std::stoul(name.substr(1));  // a long name
    if (name == ".debug_line" || name == ".debug_line_str") regions.emplace_back(u32_at(bytes, header + 20), u32_at(bytes, header + 16));
  }
  REQUIRE(regions.size() == 4);
  return regions;
}
#else
// The module's symbol and string tables, its line table and its section headers.
file_regions name_regions(const std::string& bytes) {
  const test::elf_image original(TEST_DIAGNOSTICS_PATH);
  REQUIRE(original.bytes == bytes);
  file_regions regions;
  for (const char* name : {".debug_line", ".debug_line_str", ".symtab", ".strtab", ".shstrtab"}) {
    const auto section = original.section(name);
    regions.emplace_back(section.sh_offset, section.sh_size);
  }
  regions.emplace_back(original.header.e_shoff, original.header.e_shnum * sizeof(ElfW(Shdr)));
  return regions;
}
#endif
}  // namespace

TEST_CASE("flipped bytes in a module's symbols and line table cost names, never a crash") {
  const std::string original = test::read_file(TEST_DIAGNOSTICS_PATH);
  const file_regions regions = name_regions(original);
  test::temp_dir dir;
  std::uint64_t seed = 0x5eed;
  auto next = [&] { return seed = seed * 6364136223846793005ull + 1442695040888963407ull, seed >> 33; };
  int loaded = 0, named = 0;
  for (int mutant = 0; mutant < 300; ++mutant) {
    std::string bytes = original;
    const auto& [offset, size] = regions[next() % regions.size()];
    for (int flip = 0, flips = 1 + static_cast<int>(next() % 4); flip < flips; ++flip) {
      bytes[offset + next() % size] ^= static_cast<char>(1u << (next() % 8));
    }
    const std::string path = dir.write_file("mutant" + std::to_string(mutant) + test::library_suffix, bytes);
    auto module = relib::load_module<diagnostics_exports>(path);
    if (!module) continue;  // a flipped section header may be refused by the gate
    ++loaded;
    const auto thrown = module->exports().throw_three_deep(1);
    REQUIRE_FALSE(thrown.has_value());
    CHECK(thrown.error().code == relib::call_errc::exception);
    if (!thrown.error().stack.empty() && thrown.error().stack[0].line == line_of("level3")) ++named;
    REQUIRE(module->unload().has_value());
    std::remove(path.c_str());
  }
  CHECK(loaded > 250);
  CHECK(named > 0);
}

#if !defined(_WIN32)  // the steps' names are Linux's (ELF gate, dlclose, inotify events, /proc)
namespace {

// Collects relib's log lines for the scope; the default (RELIB_LOG) comes back after it.
class captured_log {
 public:
  captured_log() {
    relib::set_log_function([this](std::string_view line) {
      std::lock_guard<std::mutex> hold(lock_);
      lines_.emplace_back(line);
    });
  }
  ~captured_log() { relib::set_log_function({}); }
  captured_log(const captured_log&) = delete;
  captured_log& operator=(const captured_log&) = delete;

  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> hold(lock_);
    return lines_;
  }
  // Checks that lines starting with each prefix came in this order, and returns them.
  std::vector<std::string> expect(const std::vector<std::string>& prefixes) {
    const std::vector<std::string> all = lines();
    std::string text;
    for (const std::string& line : all) text += line + "\n";
    INFO(text);
    std::vector<std::string> found;
    std::size_t next = 0;
    for (const std::string& prefix : prefixes) {
      while (next < all.size() && all[next].rfind(prefix, 0) != 0) ++next;
      CHECK(next < all.size());
      if (next == all.size()) return found;
      found.push_back(all[next++]);
    }
    return found;
  }

 private:
  std::mutex lock_;
  std::vector<std::string> lines_;
};

}  // namespace

TEST_CASE("the log has a line for each step of a load and an unload, and one for a refusal") {
  captured_log log;
  const std::string module = TEST_GAME_PATH;
  auto game = test::load_or_fail<game_exports>(module, game_imports{});
  test::unload_or_fail(game);
  const std::string load = "relib: load '" + module + "': ", unload = "relib: unload '" + module + "': ";
  const auto lines = log.expect({load + "checked before any of its code runs: trusted", load + "mapped at 0x",
                                 load + "linked: ", load + "loaded (", unload + "before_unload returned",
                                 unload + "dlclose() returned and the library is gone", unload + "reclaimed "});
  if (!lines.empty()) CHECK(test::contains(lines[0], "ELF gate passed, relib " RELIB_VERSION_STRING " records"));

  auto missing = relib::load_module("no-such-module.so");
  REQUIRE_FALSE(missing);
  log.expect({"relib: load 'no-such-module.so': refused (file_not_found): no such file"});
}

TEST_CASE_METHOD(test::live_v1, "the log names the file event behind a reload, and its steps") {
  captured_log log;
  REQUIRE(swap_in(TEST_LIVE_V2_PATH));
  const std::string reload = "relib: reload '" + target + "': ", load = "relib: load '" + target + "': ";
  log.expect({reload + "triggered: libmod.so renamed into place (IN_MOVED_TO), then untouched for 0 ms",
              reload + "copied to '", load + "mapped at", load + "main returned", reload + "version 2 serves calls now"});
  swap_in_refused(TEST_LIVE_INTERFACE_CHANGED_PATH, relib::load_errc::signature_mismatch);
  log.expect({reload + "failed (load_failed): the new build was refused"});
}

TEST_CASE("the log tells a live module's first load from a reload") {
  test::temp_dir dir;
  const std::string target = dir.path() + "/libmod.so";
  captured_log log;
  test::live module = test::load_live(TEST_LIVE_V1_PATH, target);
  REQUIRE(module.reload());
  const std::string reload = "relib: reload '" + target + "': ";
  log.expect({reload + "the first load of the watched file", reload + "version 1 serves calls now",
              reload + "asked for by reload()", reload + "version 2 serves calls now"});
}

TEST_CASE("the log is silent by default, and RELIB_LOG=1 sends it to standard error") {
  auto load_and_unload = [](const char* setting) {
    return test::run_in_child([setting] {
      if (setting == nullptr) {
        ::unsetenv("RELIB_LOG");
      } else {
        ::setenv("RELIB_LOG", setting, 1);
      }
      relib::set_log_function({});  // reads RELIB_LOG again
      auto module = relib::load_module(TEST_MINIMAL_PATH);
      if (!module || !module->unload()) std::_Exit(3);
    });
  };
  const test::child_outcome quiet = load_and_unload(nullptr);
  CHECK(quiet.signal == 0);
  CHECK(quiet.stderr_text.empty());
  const test::child_outcome zero = load_and_unload("0");
  CHECK(zero.stderr_text.empty());
  const test::child_outcome logged = load_and_unload("1");
  CHECK(logged.signal == 0);
  CHECK(test::contains(logged.stderr_text, std::string("relib: load '") + TEST_MINIMAL_PATH + "': loaded ("));
  CHECK(test::contains(logged.stderr_text, std::string("relib: unload '") + TEST_MINIMAL_PATH + "': reclaimed "));
}

namespace {
std::size_t mapping_count() {
  std::ifstream maps("/proc/self/maps");
  std::size_t lines = 0;
  for (std::string line; std::getline(maps, line);) ++lines;
  return lines;
}
}  // namespace

TEST_CASE("1,000 reloads of a throwing module leave memory and mappings flat") {
  auto cycle = [] {
    auto module = test::load_or_fail<diagnostics_exports>(TEST_DIAGNOSTICS_PATH);
    const auto thrown = module.exports().throw_three_deep(1);  // the index of names is built, then dropped at unload
    REQUIRE_FALSE(thrown.has_value());
    REQUIRE(thrown.error().stack.size() >= 4);
    test::unload_or_fail(module);
  };
  for (int i = 0; i < 50; ++i) cycle();  // allocator and loader caches warm up
  const std::size_t resident_before = test::resident_bytes() / 1024, maps_before = mapping_count();
  for (int i = 0; i < 1000; ++i) cycle();
  const std::size_t resident_after = test::resident_bytes() / 1024, maps_after = mapping_count();
  INFO("resident memory before " << resident_before << " KB, after " << resident_after << " KB; mappings "
                                 << maps_before << ", then " << maps_after);
  // AddressSanitizer keeps freed memory in quarantine (up to 256 MB), where each index of names
  // goes: there only the mappings tell.
  if (!test::under_address_sanitizer) CHECK(resident_after < resident_before + 2048 + 1000 * test::sanitizer_bytes_per_load / 1024);
  CHECK(maps_after <= maps_before + 2);
}
#endif
