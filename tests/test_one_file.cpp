// The file relib checks is the file it loads: a rename onto the path between the check and the
// load changes nothing, a bare name is a file in the working directory, and the loader's list
// names the real path.
#include "support.hpp"

#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

namespace {

std::vector<std::string> loaded_names() {
  std::vector<std::string> names;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        if (info->dlpi_name != nullptr) static_cast<std::vector<std::string>*>(out)->push_back(info->dlpi_name);
        return 0;
      },
      &names);
  return names;
}

std::size_t open_descriptors() {
  std::size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) count += entry.exists() ? 1 : 0;
  return count;
}

bool any_named_by_descriptor() {
  for (const std::string& name : loaded_names()) {
    if (name.rfind("/proc/", 0) == 0 && name.find("/fd/") != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("one file: a build renamed onto the path while it loads is never the one loaded", "[one file]") {
  test::temp_dir dir;
  const std::string good = dir.copy_file(TEST_WITH_MAIN_PATH, "good.so");   // main returns 7
  const std::string bad = dir.copy_file(TEST_FAKE_VERSION_PATH, "bad.so");  // refused: relib 9.9.9
  const std::string target = dir.path() + "/libmodule.so";
  REQUIRE(::link(good.c_str(), target.c_str()) == 0);

  std::atomic<bool> stop{false};
  std::thread renamer([&] {
    const std::string staged = dir.path() + "/staged.so";
    for (std::size_t round = 0; !stop.load(); ++round) {
      const std::string& build = round % 2 == 0 ? bad : good;
      if (::link(build.c_str(), staged.c_str()) == 0) std::rename(staged.c_str(), target.c_str());
    }
  });
  std::size_t loaded = 0, refused = 0, wrong = 0;
  for (int attempt = 0; attempt < 1500; ++attempt) {
    auto module = relib::load_module(target);
    if (!module) {
      ++(module.error().code == relib::load_errc::version_mismatch ? refused : wrong);
      continue;
    }
    auto main = module->call_main<int>();  // the refused build has no main
    ++(main && *main == 7 ? loaded : wrong);
    if (!module->unload()) ++wrong;
  }
  stop = true;
  renamer.join();
  INFO("loaded " << loaded << ", refused " << refused);
  CHECK(wrong == 0);
  CHECK(loaded + refused == 1500);
}

TEST_CASE("one file: the loader's list and dladdr name the module's real path", "[one file]") {
  auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
  const std::vector<std::string> names = loaded_names();
  CHECK(std::find(names.begin(), names.end(), std::string(TEST_GAME_PATH)) != names.end());
  CHECK_FALSE(any_named_by_descriptor());
  struct found_base {
    std::uintptr_t address = 0;
  } found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        if (info->dlpi_name == nullptr || std::string(info->dlpi_name) != TEST_GAME_PATH) return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          if (info->dlpi_phdr[i].p_type == PT_LOAD) {
            static_cast<found_base*>(out)->address = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            return 1;
          }
        }
        return 0;
      },
      &found);
  REQUIRE(found.address != 0);
  Dl_info info{};
  REQUIRE(dladdr(reinterpret_cast<void*>(found.address), &info) != 0);
  CHECK(std::string(info.dli_fname) == TEST_GAME_PATH);
  test::unload_or_fail(game);
}

TEST_CASE("one file: a bare name is the file in the working directory, never a search", "[one file]") {
  test::temp_dir dir;
  dir.copy_file(TEST_GAME_PATH, "libbare_game.so");
  const std::filesystem::path previous = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  auto loaded = relib::load_module<game_exports>("libbare_game.so", game_imports{});
  std::filesystem::current_path(previous);
  INFO((loaded ? std::string() : loaded.error().message));
  REQUIRE(loaded);
  CHECK(loaded->path() == "libbare_game.so");
  CHECK(*loaded->exports().add(2, 3) == 5);
  const std::string real = std::filesystem::canonical(dir.path()).string() + "/libbare_game.so";
  const std::vector<std::string> names = loaded_names();
  CHECK(std::find(names.begin(), names.end(), real) != names.end());
  REQUIRE(loaded->unload());
}

TEST_CASE("one file: the descriptor kept for a module is closed when it unloads", "[one file]") {
  { // warm up: the first load opens what relib keeps for good (mimalloc, the arena)
    auto first = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
    test::unload_or_fail(first);
  }
  const std::size_t before = open_descriptors();
  for (int cycle = 0; cycle < 20; ++cycle) {
    auto game = test::load_or_fail<game_exports>(TEST_GAME_PATH, game_imports{});
    CHECK(open_descriptors() == before + 1);
    test::unload_or_fail(game);
  }
  CHECK(open_descriptors() == before);
}

#include "origin_api.hpp"
RELIB_HOST_EXPORTS(origin_exports, ORIGIN_EXPORTS);

TEST_CASE("one file: a module that finds its dependencies through $ORIGIN loads by its path", "[one file]") {
  auto module = test::load_or_fail<origin_exports>(TEST_ORIGIN_PATH);
  CHECK(*module.exports().dependency_value() == 42);
  test::unload_or_fail(module);
}
