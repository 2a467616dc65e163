#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "threads_api.hpp"

#include <pthread.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

RELIB_MODULE_EXPORTS(THREADS_EXPORTS);
RELIB_MODULE_IMPORTS(host, THREADS_IMPORTS);

namespace {

std::atomic<bool> stopping{false};
std::atomic<int> running{0};
std::vector<std::thread> std_threads;
std::vector<pthread_t> raw_threads;
bool join_on_unload = false;

// Tells the host when it is destroyed, so tests can see that its destructor ran.
struct tracked {
  std::string text;
  ~tracked() {
    if (!text.empty()) host::thread_local_destroyed(text.c_str());
  }
};
thread_local tracked local;

void work() {
  running.fetch_add(1);
  touch_thread_local("worker");
  while (!stopping.load()) std::this_thread::yield();
  running.fetch_sub(1);
}

void* raw_work(void*) {
  work();
  return nullptr;
}

}  // namespace

void start_std_thread() { std_threads.emplace_back(work); }
void start_detached_thread() { std::thread(work).detach(); }
void start_pthread() {
  pthread_t thread;
  if (pthread_create(&thread, nullptr, raw_work, nullptr) == 0) raw_threads.push_back(thread);
}
void stop_and_join() {
  stopping.store(true);
  for (std::thread& thread : std_threads) thread.join();
  for (pthread_t thread : raw_threads) pthread_join(thread, nullptr);
  std_threads.clear();
  raw_threads.clear();
}
void join_in_before_unload(bool enabled) { join_on_unload = enabled; }
int threads_running() { return running.load(); }
std::size_t touch_thread_local(const char* text) {
  local.text += text;
  return local.text.size();
}

RELIB_MODULE_BEFORE_UNLOAD() {
  if (join_on_unload) stop_and_join();
}
