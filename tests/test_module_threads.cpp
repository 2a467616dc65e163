// Threads started by module code and thread_local objects of a module: unload waits for the
// first and runs the destructors of the second, so neither keeps the library mapped.
#include "support.hpp"

#include "threads_api.hpp"

#include <condition_variable>
#include <mutex>
#include <thread>

RELIB_HOST_EXPORTS(threads_exports, THREADS_EXPORTS);
RELIB_HOST_IMPORTS(threads_imports, THREADS_IMPORTS);

namespace {
std::mutex destroyed_lock;
std::vector<std::string> destroyed;  // texts of module thread_locals whose destructor ran

std::vector<std::string> destroyed_so_far() {
  std::lock_guard<std::mutex> guard(destroyed_lock);
  return destroyed;
}
}  // namespace

void threads_imports::thread_local_destroyed(const char* text) {
  std::lock_guard<std::mutex> guard(destroyed_lock);
  destroyed.push_back(text);
}

namespace {

relib::module<threads_exports> load_threads_module() {
  {
    std::lock_guard<std::mutex> guard(destroyed_lock);
    destroyed.clear();
  }
  return test::load_or_fail<threads_exports>(TEST_THREADS_PATH, threads_imports{});
}

void expect_unload_error(relib::module<threads_exports>& module, relib::unload_errc code) {
  auto unloaded = module.unload();
  REQUIRE_FALSE(unloaded.has_value());
  INFO(unloaded.error().message);
  CHECK(unloaded.error().code == code);
  CHECK(module.is_loaded());
  CHECK(test::is_mapped(TEST_THREADS_PATH));
}

}  // namespace

TEST_CASE("unload with a running std::thread is threads_still_running, and succeeds once before_unload joins it") {
  auto module = load_threads_module();
  module.exports().start_std_thread().value();
  expect_unload_error(module, relib::unload_errc::threads_still_running);

  CHECK(module.exports().touch_thread_local("still usable").value() == 12);  // the module still works
  module.exports().join_in_before_unload(true).value();
  auto report = module.unload();
  REQUIRE(report.has_value());
  CHECK(report->threads_started == 1);
  CHECK_FALSE(test::is_mapped(TEST_THREADS_PATH));
}

TEST_CASE("a thread from pthread_create in module code is counted too") {
  auto module = load_threads_module();
  module.exports().start_pthread().value();
  expect_unload_error(module, relib::unload_errc::threads_still_running);
  module.exports().stop_and_join().value();
  test::unload_or_fail(module);
  CHECK_FALSE(test::is_mapped(TEST_THREADS_PATH));
}

TEST_CASE("a detached module thread is counted until it has left module code") {
  auto module = load_threads_module();
  module.exports().start_detached_thread().value();
  expect_unload_error(module, relib::unload_errc::threads_still_running);
  module.exports().stop_and_join().value();  // the detached thread ends on its own now
  auto unloaded = module.unload();
  while (!unloaded && unloaded.error().code == relib::unload_errc::threads_still_running) {
    std::this_thread::yield();
    unloaded = module.unload();
  }
  INFO((unloaded ? std::string() : unloaded.error().message));
  REQUIRE(unloaded.has_value());
  CHECK_FALSE(test::is_mapped(TEST_THREADS_PATH));
}

TEST_CASE("a module thread's thread_locals are destroyed as the thread ends") {
  auto module = load_threads_module();
  module.exports().start_std_thread().value();
  module.exports().stop_and_join().value();
  CHECK(destroyed_so_far() == std::vector<std::string>{"worker"});
  test::unload_or_fail(module);
  CHECK_FALSE(test::is_mapped(TEST_THREADS_PATH));
}

TEST_CASE("thread_locals of the unloading thread are destroyed at unload and do not keep the module mapped") {
  auto module = load_threads_module();
  CHECK(module.exports().touch_thread_local("main").value() == 4);
  auto report = module.unload();
  REQUIRE(report.has_value());
  CHECK(report->thread_local_destructors_run == 1);
  CHECK(destroyed_so_far() == std::vector<std::string>{"main"});
  CHECK_FALSE(test::is_mapped(TEST_THREADS_PATH));
}

TEST_CASE("thread_locals held by another live host thread are thread_locals_pending until it exits") {
  auto module = load_threads_module();
  test::parked_thread other([&] { module.exports().touch_thread_local("other").value(); });
  expect_unload_error(module, relib::unload_errc::thread_locals_pending);
  CHECK(module.exports().threads_running().value() == 0);  // still usable

  other.release();  // its exit ran the destructor
  CHECK(destroyed_so_far() == std::vector<std::string>{"other"});
  test::unload_or_fail(module);
  CHECK_FALSE(test::is_mapped(TEST_THREADS_PATH));
}

TEST_CASE("100 cycles with a thread and thread_locals leave nothing mapped") {
  for (int cycle = 0; cycle < 100; ++cycle) {
    auto module = load_threads_module();
    module.exports().start_std_thread().value();
    module.exports().touch_thread_local("cycle").value();
    module.exports().join_in_before_unload(true).value();
    auto report = module.unload();
    REQUIRE(report.has_value());
    REQUIRE_FALSE(test::is_mapped(TEST_THREADS_PATH));
  }
}
