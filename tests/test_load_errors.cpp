// Every load error, provoked for real. After each, the host keeps running and nothing stays loaded.
#include "support.hpp"

#include <pthread.h>
#if !defined(_WIN32)
#include <dlfcn.h>
#include <unistd.h>
#endif

#include <filesystem>

namespace {

template <class Exports = relib::no_exports, class Imports = relib::no_imports>
relib::load_error expect_load_error(const std::string& path, relib::load_errc code, Imports imports = {}) {
  auto loaded = relib::load_module<Exports>(path, imports);
  REQUIRE_FALSE(loaded.has_value());
  const relib::load_error& error = loaded.error();
  INFO(error.message);
  CHECK(error.code == code);
  CHECK(error.module == path);
  CHECK(error.message.find(path) != std::string::npos);
  if (code != relib::load_errc::already_loaded) CHECK_FALSE(test::is_mapped(path));
  return error;
}


}  // namespace

TEST_CASE("a missing file is file_not_found") {
  test::temp_dir dir;
  expect_load_error(dir.path() + "/nothing-here.so", relib::load_errc::file_not_found);
}

TEST_CASE("a directory is not_a_file") {
  test::temp_dir dir;
  const auto error = expect_load_error(dir.path(), relib::load_errc::not_a_file);
  CHECK(test::contains(error.message, "directory"));
}

TEST_CASE("an empty file is not_elf") {
  test::temp_dir dir;
  const auto error = expect_load_error(dir.write_file("empty.so", ""), relib::load_errc::not_elf);
  CHECK(test::contains(error.message, "empty"));
}

TEST_CASE("a text file is not_elf") {
  test::temp_dir dir;
  expect_load_error(dir.write_file("notes.so", "these are not the bytes you are looking for\n"),
                    relib::load_errc::not_elf);
}

TEST_CASE("truncated copies of a real module are refused without crashing") {
  test::temp_dir dir;
  const std::string original = TEST_GAME_PATH;
  const auto size = std::filesystem::file_size(original);
  std::string bytes(size, '\0');
  FILE* file = std::fopen(original.c_str(), "rb");
  REQUIRE(std::fread(bytes.data(), 1, size, file) == size);
  std::fclose(file);
  for (std::size_t cut : {std::size_t{4}, std::size_t{20}, std::size_t{64}, size / 3, size / 2, size - 100}) {
    const std::string path = dir.write_file("cut" + std::to_string(cut) + ".so", bytes.substr(0, cut));
    auto loaded = relib::load_module<game_exports>(path, game_imports{});
    INFO(cut);
    REQUIRE_FALSE(loaded.has_value());
    INFO(loaded.error().message);
    CHECK(loaded.error().code == relib::load_errc::damaged_file);
    CHECK(test::contains(loaded.error().message, "truncated"));
  }
}

#if defined(_WIN32)
TEST_CASE("a PE file for another machine is wrong_architecture") {
  test::temp_dir dir;
  std::string image(512, '\0');
  image[0] = 'M', image[1] = 'Z';
  image[0x3c] = static_cast<char>(0x80);  // e_lfanew
  image.replace(0x80, 4, std::string("PE\0\0", 4));
  image[0x84] = static_cast<char>(0x64), image[0x85] = static_cast<char>(0xAA);  // IMAGE_FILE_MACHINE_ARM64
  const auto error = expect_load_error(dir.write_file("arm.dll", image), relib::load_errc::wrong_architecture);
  CHECK(test::contains(error.message, "0xaa64"));
}
#else
TEST_CASE("an ELF file for another machine is wrong_architecture") {
  test::temp_dir dir;
  std::string header(64, '\0');
  header.replace(0, 4, "\x7f" "ELF");
  header[4] = 2;     // 64-bit
  header[5] = 1;     // little endian
  header[16] = 3;    // ET_DYN
  header[18] = static_cast<char>(183);  // EM_AARCH64 (on an aarch64 host, EM_X86_64)
#if defined(__aarch64__)
  header[18] = 62;
#endif
  expect_load_error(dir.write_file("arm.so", header), relib::load_errc::wrong_architecture);
}
#endif

TEST_CASE("an executable is not_shared_library") {
  // This test binary, copied so the path is a plain file.
  test::temp_dir dir;
  const std::string copy = dir.copy_file(test::this_program(), "program");
  auto loaded = relib::load_module(copy);
  REQUIRE_FALSE(loaded.has_value());
  // A PIE executable is ET_DYN like a library; it is then refused for lacking relib's records.
  const auto code = loaded.error().code;
  CHECK((code == relib::load_errc::not_shared_library || code == relib::load_errc::not_a_relib_module));
}

TEST_CASE("a plain C shared library is not_a_relib_module") {
  const auto error = expect_load_error(TEST_PLAIN_C_PATH, relib::load_errc::not_a_relib_module);
  CHECK(test::contains(error.message, "relib_add_module"));
}

TEST_CASE("a module from another relib version is version_mismatch") {
  const auto error = expect_load_error(TEST_FAKE_VERSION_PATH, relib::load_errc::version_mismatch);
  CHECK(test::contains(error.message, "9.9.9"));
  CHECK(test::contains(error.message, RELIB_VERSION_STRING));
}

TEST_CASE("a module from another compiler is compiler_mismatch") {
  const auto error = expect_load_error(TEST_FAKE_COMPILER_PATH, relib::load_errc::compiler_mismatch);
  CHECK(test::contains(error.message, "othercc 99"));
}

#if defined(_LIBCPP_VERSION)
TEST_CASE("libc++: a module built with another _LIBCPP_ABI_VERSION is stdlib_mismatch") {
  const auto error = expect_load_error(TEST_OLD_ABI_PATH, relib::load_errc::stdlib_mismatch);
  CHECK(test::contains(error.message, "'libc++ abi=2'"));
  CHECK(test::contains(error.message, "'libc++ abi=1'"));
  CHECK(test::contains(error.message, "_LIBCPP_ABI_VERSION"));
}
#else
TEST_CASE("libstdc++: a module built with the old std::string ABI is stdlib_mismatch") {
  const auto error = expect_load_error(TEST_OLD_ABI_PATH, relib::load_errc::stdlib_mismatch);
  CHECK(test::contains(error.message, "cxx11-abi=0"));
  CHECK(test::contains(error.message, "_GLIBCXX_USE_CXX11_ABI"));
}
#endif

#if defined(TEST_OTHER_STDLIB_PATH)
TEST_CASE("clang: a module built with the other standard library is stdlib_mismatch naming both") {
  // Refused from its records, so never mapped (expect_load_error checks that).
  const auto error = expect_load_error(TEST_OTHER_STDLIB_PATH, relib::load_errc::stdlib_mismatch);
  CHECK(test::contains(error.message, "'libc++ abi="));
  CHECK(test::contains(error.message, "'libstdc++ cxx11-abi="));
  CHECK(test::contains(error.message, "-stdlib=libc++"));
}

TEST_CASE("clang: the standard library is compared before the compiler") {
  const auto error = expect_load_error(TEST_OTHER_STDLIB_AND_COMPILER_PATH, relib::load_errc::stdlib_mismatch);
  CHECK(test::contains(error.message, "'libc++ abi="));
  CHECK(test::contains(error.message, "'libstdc++ cxx11-abi="));
}
#endif

TEST_CASE("a module built with RELIB_NO_UNLOADING is unloading_mismatch in an unloading host") {
  const auto error = expect_load_error(TEST_NO_UNLOADING_PATH, relib::load_errc::unloading_mismatch);
  CHECK(test::contains(error.message, "RELIB_NO_UNLOADING"));
}

TEST_CASE("wrong export and import signatures are signature_mismatch naming both sides") {
  const auto error = expect_load_error<game_exports>(TEST_GAME_WRONG_PATH, relib::load_errc::signature_mismatch,
                                                     game_imports{});
  // Every problem is listed in the one message: both mismatches and the exports it lacks.
  CHECK(test::contains(error.message, TEST_SPELLED("export 'scale' (double(double, float))",
                                                   "export 'scale' (double (double, float))")));
  CHECK(test::contains(error.message,
                       TEST_SPELLED("'add' is int(int, int) in the host but long int(long int, long int) in the module",
                                    "'add' is int (int, int) in the host but long (long, long) in the module")));
  CHECK(test::contains(error.message,
                       TEST_SPELLED("'log' is void(const char*) in the host but void(const char*, int) in the module",
                                    "'log' is void (const char *) in the host but void (const char *, int) in the module")));
}

#define ADD_ONLY_EXPORTS(X) X(add, int(int a, int b))
RELIB_HOST_EXPORTS(add_only_exports, ADD_ONLY_EXPORTS);

TEST_CASE("a single wrong signature is signature_mismatch") {
  const auto error = expect_load_error<add_only_exports>(TEST_GAME_WRONG_PATH, relib::load_errc::signature_mismatch,
                                                          game_imports{});
  CHECK(test::contains(error.message, "export 'add'"));
}

TEST_CASE("a struct defined differently on each side is signature_mismatch about sizes") {
  const auto error = expect_load_error<game_exports>(TEST_GAME_LAYOUT_PATH, relib::load_errc::signature_mismatch,
                                                     game_imports{});
  CHECK(test::contains(error.message, "'mirror'"));
  CHECK(test::contains(error.message, "sizes of its types differ"));
}

#define GAME_PLUS_EXPORTS(X) GAME_EXPORTS(X) X(multiply, int(int a, int b))
RELIB_HOST_EXPORTS(game_plus_exports, GAME_PLUS_EXPORTS);

TEST_CASE("an export the module lacks is missing_export") {
  const auto error = expect_load_error<game_plus_exports>(TEST_GAME_PATH, relib::load_errc::missing_export,
                                                          game_imports{});
  CHECK(test::contains(error.message, TEST_SPELLED("export 'multiply' (int(int, int))", "export 'multiply' (int (int, int))")));
}

TEST_CASE("an import the host does not provide is missing_import") {
  const auto error = expect_load_error<game_exports>(TEST_GAME_PATH, relib::load_errc::missing_import);
  CHECK(test::contains(error.message, TEST_SPELLED("import 'log' (void(const char*))", "import 'log' (void (const char *))")));
}

#if defined(_WIN32)
// A DLL cannot be linked with an undefined symbol: the loader's refusal comes from a missing DLL.
TEST_CASE("a module whose DLL dependency is missing is dlopen_failed") {
  const auto error = expect_load_error(TEST_MISSING_DEPENDENCY_PATH, relib::load_errc::dlopen_failed);
  CHECK(test::contains(error.message, "libtest_missing_dependency.dll"));
  CHECK(test::contains(error.message, "Windows error 126"));  // ERROR_MOD_NOT_FOUND
}

TEST_CASE("the crash guard is refused on Windows as not_on_this_platform, for a plain and a live module") {
  relib::load_options options;
  options.crash_guard = true;
  auto loaded = relib::load_module(TEST_MINIMAL_PATH, {}, options);
  REQUIRE_FALSE(loaded.has_value());
  CHECK(loaded.error().code == relib::load_errc::not_on_this_platform);
  CHECK(test::contains(loaded.error().message, "crash_guard is not available on Windows"));
  CHECK_FALSE(test::is_mapped(TEST_MINIMAL_PATH));

  relib::live_options live;
  live.crash_guard = true;
  auto opened = relib::load_live_module(TEST_MINIMAL_PATH, {}, live);
  REQUIRE_FALSE(opened.has_value());
  REQUIRE(opened.error().code == relib::reload_errc::load_failed);
  REQUIRE(opened.error().load.has_value());
  CHECK(opened.error().load->code == relib::load_errc::not_on_this_platform);
}

TEST_CASE("a module may define its own DllMain with RELIB_MODULE_OWN_DLLMAIN") {
  for (int load = 0; load < 3; ++load) {
    auto module = test::load_or_fail(TEST_OWN_DLLMAIN_PATH);
    CHECK(module.call_main<int>().value() == 1);  // attached once per load, its statics new each time
    test::unload_or_fail(module);
  }
}
#else
TEST_CASE("a module needing a symbol nobody defines is dlopen_failed") {
  const auto error = expect_load_error(TEST_UNDEFINED_SYMBOL_PATH, relib::load_errc::dlopen_failed);
  CHECK(test::contains(error.message, "relib_test_function_that_does_not_exist"));
}
#endif

#define GHOST_EXPORTS(X) X(ghost, int(int value))
RELIB_HOST_EXPORTS(ghost_exports, GHOST_EXPORTS);

TEST_CASE("records naming a symbol the module lacks are not_a_relib_module, and nothing stays behind") {
  const auto error = expect_load_error<ghost_exports>(TEST_GHOST_EXPORT_PATH, relib::load_errc::not_a_relib_module);
  CHECK(test::contains(error.message, "relib_export_ghost"));

  // Its static constructors ran before the symbols were looked up: each refusal must give back
  // the megabyte they leaked and the pthread key relib made, of which a process has only 1024.
  const std::size_t resident_before = test::resident_bytes();
  for (int attempt = 0; attempt < 1100; ++attempt) {
    auto loaded = relib::load_module<ghost_exports>(TEST_GHOST_EXPORT_PATH);
    REQUIRE_FALSE(loaded.has_value());
    REQUIRE(loaded.error().code == relib::load_errc::not_a_relib_module);
  }
  CHECK_FALSE(test::is_mapped(TEST_GHOST_EXPORT_PATH));
  CHECK(test::resident_bytes() <  // 1100 MB if nothing came back
        resident_before + 64 * 1024 * 1024 + 1100 * test::sanitizer_bytes_per_load);
  pthread_key_t key;
  REQUIRE(pthread_key_create(&key, nullptr) == 0);
  pthread_key_delete(key);
}

TEST_CASE("loading the same file twice is already_loaded, by path, symlink or hard link") {
  auto first = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  expect_load_error<game_exports>(TEST_GAME_PATH, relib::load_errc::already_loaded, game_imports{});

  test::temp_dir dir;
  const std::string link = dir.path() + "/link.so";
  if (test::create_symlink(TEST_GAME_PATH, link)) {
    auto by_link = relib::load_module<game_exports>(link, game_imports{});
    REQUIRE_FALSE(by_link.has_value());
    CHECK(by_link.error().code == relib::load_errc::already_loaded);
  } else {
    WARN("by symlink: not tested under Wine, which makes no symbolic links");
  }

  std::error_code no_hard_links;
  const std::string hard = dir.path() + "/hard.so";
  std::filesystem::create_hard_link(TEST_GAME_PATH, hard, no_hard_links);
  if (!no_hard_links) {  // only when the temporary directory shares the file system
    auto by_hard_link = relib::load_module<game_exports>(hard, game_imports{});
    REQUIRE_FALSE(by_hard_link.has_value());
    CHECK(by_hard_link.error().code == relib::load_errc::already_loaded);
  }

  CHECK(first.exports().add(2, 3).value() == 5);  // the loaded one is untouched
  test::unload_or_fail(first);
}

TEST_CASE("a copy of a loaded file loads beside it") {
  test::temp_dir dir;
  auto first = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  auto second = test::load_or_fail<game_exports>(dir.copy_file(TEST_GAME_PATH, "copy.so"), game_imports{});
  first.exports().add(1, 1);
  CHECK(first.exports().counter().value() == 1);
  CHECK(second.exports().counter().value() == 0);  // separate statics
  test::unload_or_fail(second);
  test::unload_or_fail(first);
}

TEST_CASE("a file opened by dlopen outside relib is already_loaded") {
#if defined(_WIN32)
  HMODULE handle = LoadLibraryA(TEST_MINIMAL_PATH);
#else
  void* handle = dlopen(TEST_MINIMAL_PATH, RTLD_NOW | RTLD_LOCAL);
#endif
  REQUIRE(handle != nullptr);
  auto loaded = relib::load_module(TEST_MINIMAL_PATH);
  REQUIRE_FALSE(loaded.has_value());
  CHECK(loaded.error().code == relib::load_errc::already_loaded);
  CHECK(test::contains(loaded.error().message, "outside relib"));
#if defined(_WIN32)
  FreeLibrary(handle);
#else
  dlclose(handle);
#endif
  CHECK_FALSE(test::is_mapped(TEST_MINIMAL_PATH));
}

TEST_CASE("a failed load leaves the host able to load the module afterwards") {
  expect_load_error<game_exports>(TEST_GAME_PATH, relib::load_errc::missing_import);
  auto module = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  CHECK(module.exports().add(40, 2).value() == 42);
  test::unload_or_fail(module);
}
