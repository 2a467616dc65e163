// Shared by the live-reload and state tests: the host side of the live test module and helpers
// that put a build in place the way build tools do.
#pragma once

#include "support.hpp"

#include "live_api.hpp"

#include <chrono>
#include <string>

RELIB_HOST_EXPORTS(live_exports, LIVE_EXPORTS);

namespace test {

using live = relib::live_module<live_exports>;

// A new file renamed over the old one (what lld, gold and most install steps do).
void install_by_rename(const std::string& build, const std::string& target);
// The same file truncated and rewritten (what GNU ld and cp do).
void install_in_place(const std::string& build, const std::string& target);

// No settle time: the tests wait for the change itself, never for a fixed time.
inline relib::live_options quick_options() {
  relib::live_options options;
  options.settle_time = std::chrono::milliseconds(0);
  return options;
}

// A live module on `target`, with `build` installed there first.
live load_live(const std::string& build, const std::string& target, const std::string& shadow_parent = "");

// Waits until the watcher reports the new build (a generous bound, reached only if it never
// comes), then runs the per-frame update().
relib::result<bool, relib::reload_error> next_update(live& module);

int version_of(const live& module);

// Version 1 of the live test module, watched in a directory of its own (a Catch2 fixture).
struct live_v1 {
  temp_dir dir;
  const std::string target = dir.path() + "/libmod.so";
  live module = load_live(TEST_LIVE_V1_PATH, target);

  // Renames `build` over the watched file and runs update() once the watcher saw it.
  relib::result<bool, relib::reload_error> swap_in(const char* build) {
    install_by_rename(build, target);
    return next_update(module);
  }

  // The same for a build that must be refused with a load error of `code`; returns that error.
  relib::reload_error swap_in_refused(const char* build, relib::load_errc code) {
    auto reloaded = swap_in(build);
    REQUIRE_FALSE(reloaded);
    REQUIRE(reloaded.error().load);
    CHECK(reloaded.error().load->code == code);
    return reloaded.error();
  }
};

}  // namespace test
