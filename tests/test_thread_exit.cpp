// Memory that module code allocated on threads that have since exited: it stays valid while the
// module is loaded, whoever frees it and whenever, and unload reclaims what is left of it.
#include "support.hpp"

#include "blocks_api.hpp"

#include <condition_variable>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

RELIB_HOST_EXPORTS(blocks_exports, BLOCKS_EXPORTS);

namespace {

constexpr std::size_t mebibyte = std::size_t{1} << 20;

using blocks_module = relib::module<blocks_exports>;

relib::unload_report unload_with_report(blocks_module& module) {
  auto report = module.unload();
  INFO((report ? std::string() : report.error().message));
  REQUIRE(report.has_value());
  return *report;
}

// Runs one job on a thread that exits before this returns.
void on_new_thread(const std::function<void()>& job) { std::thread(job).join(); }

// Long-lived threads that each run the jobs given to them, one at a time.
class thread_pool {
 public:
  explicit thread_pool(std::size_t size) {
    for (std::size_t i = 0; i < size; ++i) threads_.emplace_back([this] { serve(); });
  }
  ~thread_pool() {
    {
      std::lock_guard<std::mutex> guard(lock_);
      stopping_ = true;
    }
    changed_.notify_all();
    for (std::thread& thread : threads_) thread.join();
  }
  std::size_t size() const { return threads_.size(); }
  // Runs `job` on the pool thread `index` and waits for it.
  void run_on(std::size_t index, std::function<void()> job) {
    std::unique_lock<std::mutex> guard(lock_);
    jobs_.push_back({index, std::move(job)});
    changed_.notify_all();
    changed_.wait(guard, [&] { return jobs_.empty() && running_ == 0; });
  }

 private:
  struct assigned_job {
    std::size_t thread;
    std::function<void()> job;
  };
  void serve() {
    std::size_t me = 0;
    {
      std::lock_guard<std::mutex> guard(lock_);
      me = next_index_++;
    }
    std::unique_lock<std::mutex> guard(lock_);
    for (;;) {
      changed_.wait(guard, [&] { return stopping_ || (!jobs_.empty() && jobs_.front().thread == me); });
      if (stopping_) return;
      std::function<void()> job = std::move(jobs_.front().job);
      jobs_.clear();
      ++running_;
      guard.unlock();
      job();
      guard.lock();
      --running_;
      changed_.notify_all();
    }
  }
  std::mutex lock_;
  std::condition_variable changed_;
  std::vector<assigned_job> jobs_;
  std::size_t next_index_ = 0;
  std::size_t running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

TEST_CASE("240 cycles of a new thread leaking 1 MiB each: unload reclaims it, and the reports add up") {
  for (int warm_up = 0; warm_up < 8; ++warm_up) {
    auto module = test::load_or_fail<blocks_exports>(TEST_BLOCKS_PATH);
    on_new_thread([&] { module.exports().leak_block(mebibyte).value(); });
    unload_with_report(module);
  }
  const std::size_t before = test::resident_bytes();
  std::size_t reported = 0, unreclaimed = 0;
  for (int cycle = 0; cycle < 240; ++cycle) {
    auto module = test::load_or_fail<blocks_exports>(TEST_BLOCKS_PATH);
    on_new_thread([&] { module.exports().leak_block(mebibyte).value(); });
    const relib::unload_report report = unload_with_report(module);
    INFO("cycle " << cycle << ": " << relib::to_string(report));
    REQUIRE(report.reclaimed_bytes >= mebibyte);
    REQUIRE(report.reclaimed_bytes < mebibyte * 5 / 4);  // this module's memory only (mimalloc rounds sizes up)
    CHECK(report.unreclaimed_bytes == 0);
    reported += report.reclaimed_bytes;
    unreclaimed += report.unreclaimed_bytes;
  }
  const std::size_t after = test::resident_bytes();
  INFO("resident before " << before / 1024 << " KB, after " << after / 1024 << " KB");
  CHECK(after < before + 16 * mebibyte + 240 * test::sanitizer_bytes_per_load);
  CHECK(reported >= 240 * mebibyte);
  CHECK(reported < 240 * (mebibyte * 5 / 4));
  CHECK(unreclaimed == 0);
}

TEST_CASE("what a module thread leaked before it was joined is reclaimed at unload") {
  auto module = test::load_or_fail<blocks_exports>(TEST_BLOCKS_PATH);
  for (int i = 0; i < 4; ++i) module.exports().leak_on_module_thread(mebibyte).value();
  const relib::unload_report report = unload_with_report(module);
  INFO(relib::to_string(report));
  CHECK(report.threads_started == 4);
  CHECK(report.reclaimed_bytes >= 4 * mebibyte);
  CHECK(report.unreclaimed_bytes == 0);
}

TEST_CASE("a pool of 8 long-lived threads leaking 1 MiB per cycle over 1000 cycles keeps resident memory flat") {
  thread_pool pool(8);
  auto cycle = [&](std::size_t index) {
    auto module = test::load_or_fail<blocks_exports>(TEST_BLOCKS_PATH);
    pool.run_on(index % pool.size(), [&] { module.exports().leak_block(mebibyte).value(); });
    unload_with_report(module);
  };
  for (std::size_t warm_up = 0; warm_up < 16; ++warm_up) cycle(warm_up);
  const std::size_t before = test::resident_bytes();
  for (std::size_t index = 0; index < 1000; ++index) cycle(index);
  const std::size_t after = test::resident_bytes();
  INFO("resident before " << before / 1024 << " KB, after " << after / 1024 << " KB");
  CHECK(after < before + 16 * mebibyte + 1000 * test::sanitizer_bytes_per_load);
}

TEST_CASE("blocks a thread allocated in module code stay valid after it exits, until unload") {
  auto module = test::load_or_fail<blocks_exports>(TEST_BLOCKS_PATH);
  // Module state filled by threads that exit, and blocks handed to this (live) thread.
  std::vector<char*> handed;
  for (int i = 0; i < 16; ++i) {
    on_new_thread([&, i] {
      module.exports().keep_block(100 + 1000 * i, static_cast<char>('a' + i)).value();
      handed.push_back(module.exports().hand_block(64 << i, static_cast<char>('A' + i)).value());
    });
  }
  // Other threads take whatever pages mimalloc offers, the ones left by the exited threads included.
  for (int i = 0; i < 8; ++i) on_new_thread([&] { module.exports().churn(64).value(); });
  CHECK(module.exports().kept_blocks_intact().value());
  for (int i = 0; i < 16; ++i) {
    const std::string expected(std::size_t{64} << i, static_cast<char>('A' + i));
    CHECK(std::memcmp(handed[i], expected.data(), expected.size()) == 0);
  }
  for (std::size_t i = 0; i < handed.size(); i += 2) std::free(handed[i]);  // half freed by the host
  CHECK(module.exports().kept_blocks_intact().value());

  const relib::unload_report report = unload_with_report(module);
  INFO(relib::to_string(report));
  CHECK(report.unreclaimed_bytes == 0);
  std::size_t still_handed = 0;
  for (std::size_t i = 1; i < handed.size(); i += 2) still_handed += std::size_t{64} << i;
  CHECK(report.reclaimed_bytes >= still_handed);
}

TEST_CASE("another module's heap that takes pages left by an exited thread does not free their blocks") {
  auto keeper = test::load_or_fail<blocks_exports>(TEST_BLOCKS_PATH);
  for (int i = 0; i < 8; ++i) {
    on_new_thread([&, i] { keeper.exports().keep_block(16 + 4000 * i, static_cast<char>('k' + i)).value(); });
  }
  test::temp_dir dir;
  for (int round = 0; round < 20; ++round) {
    const std::string copy = dir.copy_file(TEST_BLOCKS_PATH, "blocks_other_" + std::to_string(round) + ".so");
    auto other = test::load_or_fail<blocks_exports>(copy);
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) threads.emplace_back([&] { other.exports().churn(16).value(); });
    for (std::thread& thread : threads) thread.join();
    other.exports().churn(16).value();  // on the unloading thread: its heap is destroyed at unload
    unload_with_report(other);
    REQUIRE(keeper.exports().kept_blocks_intact().value());
  }
  unload_with_report(keeper);
}

TEST_CASE("a block the host frees while the thread that allocated it exits is freed once") {
  auto module = test::load_or_fail<blocks_exports>(TEST_BLOCKS_PATH);
  std::size_t freed_here = 0;
  for (int round = 0; round < 2000; ++round) {
    std::promise<char*> handed;
    std::future<char*> block = handed.get_future();
    std::thread allocating([&] { handed.set_value(module.exports().hand_block(48, 'h').value()); });
    std::free(block.get());  // as the allocating thread runs its exit
    ++freed_here;
    allocating.join();
  }
  const relib::unload_report report = unload_with_report(module);
  INFO(relib::to_string(report));
  CHECK(freed_here == 2000);
  CHECK(report.reclaimed_blocks < 2000);  // none of the freed blocks counted (or freed) twice
  CHECK(report.unreclaimed_bytes == 0);
}
