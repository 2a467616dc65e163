// Memory: what a module allocates comes from its own heaps and is reclaimed at unload, while
// libc's state (stdout, the environment, time zones) stays the host's.
#include "support.hpp"

#include "leak_api.hpp"

#if !defined(_WIN32)
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <thread>

RELIB_HOST_EXPORTS(leak_exports, LEAK_EXPORTS);

namespace {

relib::unload_report leak_and_unload(std::size_t kilobytes) {
  auto module = test::load_or_fail<leak_exports>(TEST_LEAK_PATH);
  REQUIRE(module.exports().leak_everything(kilobytes).has_value());
  auto report = module.unload();
  INFO((report ? std::string() : report.error().message));
  REQUIRE(report.has_value());
  return *report;
}

}  // namespace

TEST_CASE("what a module leaked is reclaimed at unload and reported") {
  const relib::unload_report report = leak_and_unload(100);
  INFO(report.unreclaimed_reason);
  CHECK(report.reclaimed_bytes >= 100 * 1024 / 8 * 5);  // the five shares it never frees (statics free theirs)
  CHECK(report.reclaimed_blocks >= 8);
  CHECK(report.threads_started == 1);
  CHECK(report.thread_local_destructors_run == 1);
  CHECK_FALSE(test::is_mapped(TEST_LEAK_PATH));

  const std::string printed = relib::to_string(report);
  CHECK(test::contains(printed, "memory reclaimed: " + std::to_string(report.reclaimed_blocks) + " blocks"));
  CHECK(test::contains(printed, "threads started by the module: 1"));
}

TEST_CASE("10000 cycles (1000 under a sanitizer) of a module leaking 100 KB each keep resident memory flat") {
  // A sanitizer keeps sanitizer_bytes_per_load of its own per load, which the bound allows for:
  // 1000 cycles already tell a leak of 100 KB per cycle from that, in a tenth of the time. Under
  // Wine a cycle takes ten times as long, so it runs 1000 too. Each cycle ends one module thread.
  const bool slow = test::sanitizer_bytes_per_load != 0 || test::under_wine();
  const int cycles = slow ? 1000 : 10000;
  for (int warm_up = 0; warm_up < 200; ++warm_up) leak_and_unload(100);
  const std::size_t before = test::resident_bytes();
  for (int cycle = 0; cycle < cycles; ++cycle) {
    leak_and_unload(100);
    REQUIRE_FALSE(test::is_mapped(TEST_LEAK_PATH));
  }
  const std::size_t after = test::resident_bytes();
  INFO("resident before " << before / 1024 << " KB, after " << after / 1024 << " KB");
  CHECK(after < before + 8 * 1024 * 1024 + cycles * (test::sanitizer_bytes_per_load + test::bytes_kept_per_ended_thread));
}

TEST_CASE("module code freeing memory that libc allocated does not crash") {
  auto module = test::load_or_fail<leak_exports>(TEST_LEAK_PATH);
  CHECK(module.exports().free_libc_memory().value());
  test::unload_or_fail(module);
}

TEST_CASE("libc state touched by module code stays usable by the host after 1000 unloads") {
  for (int round = 0; round < 1000; ++round) {
    auto module = test::load_or_fail<leak_exports>(TEST_LEAK_PATH);
    REQUIRE(module.exports().use_libc_state(round).value() > 100);
    test::unload_or_fail(module);
    // The host keeps using what the module touched: stdout's buffer, the environment, time zones.
    REQUIRE(std::printf("[host] round %d\n", round) > 0);
    REQUIRE(std::string(std::getenv("RELIB_TEST_ROUND")) == std::to_string(round));
    const std::time_t now = std::time(nullptr);
    REQUIRE(std::localtime(&now) != nullptr);
  }
}

TEST_CASE("a module built with RELIB_CUSTOM_ALLOCATOR keeps its own allocator and still unloads") {
  auto module = test::load_or_fail(TEST_CUSTOM_ALLOCATOR_PATH);
  CHECK(module.call_main<int>().value() == 7);
  auto report = module.unload();
  REQUIRE(report.has_value());
  CHECK(report->reclaimed_blocks == 0);  // nothing went to a relib heap
  CHECK_FALSE(test::is_mapped(TEST_CUSTOM_ALLOCATOR_PATH));
}

TEST_CASE("memory the module allocated and the host frees does not crash") {
  auto module = test::load_or_fail<leak_exports>(TEST_LEAK_PATH);
  char* text = module.exports().copy_text("from the module").value();
  CHECK(std::string(text) == "from the module");
  char* grown = static_cast<char*>(std::realloc(text, 4096));  // the host's realloc of a module block
  REQUIRE(grown != nullptr);
  CHECK(std::string(grown) == "from the module");
  std::free(grown);
  {
    std::string big = module.exports().make_string(10000).value();  // destroyed by host code
    CHECK(big.size() == 10000);
  }
  CHECK(module.exports().getline_length(5000).value() == 5000);  // libc reallocates a module block
  test::unload_or_fail(module);
}

TEST_CASE("module heaps take their memory from relib's arena, below where mimalloc tracks segments") {
  auto module = test::load_or_fail<leak_exports>(TEST_LEAK_PATH);
  const relib::address_range arena = relib::module_heap_arena();
#if defined(_WIN32)
  const bool limited = false;  // no address-space limit there
#else
  rlimit address_space{};
  REQUIRE(getrlimit(RLIMIT_AS, &address_space) == 0);
  const bool limited = address_space.rlim_cur != RLIM_INFINITY;
#endif
  if (limited || RELIB_MODULE_ARENA_SIZE == 0) {
    CHECK(arena.size == 0);  // no reservation under an address-space limit: module free asks mimalloc
  } else if (test::under_thread_sanitizer) {
    // Below 20 TiB all is ThreadSanitizer's shadow: no arena, and module free asks the sanitizer.
    CHECK(arena.size == 0);
    char* text = nullptr;
    std::thread([&] { text = module.exports().copy_text("outside any arena").value(); }).join();
    CHECK(std::string(text) == "outside any arena");
    std::free(text);
  } else {
    CHECK(arena.size == RELIB_MODULE_ARENA_SIZE);
    CHECK(arena.begin + arena.size <= (std::uintptr_t{20} << 40));
    // A new thread's heap gets a new segment, so this holds whatever the host allocated before.
    char* text = nullptr;
    std::thread([&] { text = module.exports().copy_text("in the arena").value(); }).join();
    CHECK(arena.contains(text));
    CHECK(std::string(text) == "in the arena");
    std::free(text);  // the host's free knows it by its address too
  }
  test::unload_or_fail(module);
}

// An address-space limit (RLIMIT_AS) is Linux's: the two cases below are not applicable on Windows.
#if !defined(_WIN32)
// Run only by the case below, in a fresh process started under an address-space limit.
TEST_CASE("module memory under an address-space limit", "[.]") {
  auto module = test::load_or_fail<leak_exports>(TEST_LEAK_PATH);
  CHECK(relib::module_heap_arena().size == 0);  // 16 GiB of reservation would starve this process
  char* text = module.exports().copy_text("asked of mimalloc").value();
  CHECK(std::string(text) == "asked of mimalloc");
  std::free(text);
  CHECK(module.exports().getline_length(5000).value() == 5000);
  test::unload_or_fail(module);
}

TEST_CASE("under an address-space limit no arena is reserved, and module memory still works") {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
#if defined(TEST_ADDRESS_SANITIZER)
    const rlimit limit{rlim_t{100} << 40, rlim_t{100} << 40};  // AddressSanitizer reserves 20 TiB of shadow
#else
    const rlimit limit{rlim_t{4} << 30, rlim_t{4} << 30};
#endif
    char self[] = "/proc/self/exe", name[] = "module memory under an address-space limit";
    char* arguments[] = {self, name, nullptr};
    if (::setrlimit(RLIMIT_AS, &limit) == 0) ::execv(self, arguments);
    ::_exit(127);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
#endif

TEST_CASE("memory a live host thread allocated in module code is reported, then reclaimed when it exits") {
  auto module = test::load_or_fail<leak_exports>(TEST_LEAK_PATH);
  module.exports().leak_everything(0).value();  // the module's worker thread, joined in before_unload
  test::parked_thread other(
      [&] { module.exports().copy_text("kept by this thread's module heap").value(); });  // leaked in its heap
  auto report = module.unload();
  REQUIRE(report.has_value());
  CHECK(report->unreclaimed_blocks >= 1);
  CHECK(test::contains(report->unreclaimed_reason, "other live thread"));
  CHECK(relib::memory_awaiting_reclamation().heaps == 1);
  CHECK(relib::memory_awaiting_reclamation().blocks >= 1);

  other.release();  // its exit destroyed the heap
  CHECK(relib::memory_awaiting_reclamation().heaps == 0);
}
