// Blocks leaked, kept in module state or handed to the host by whichever thread calls in.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "blocks_api.hpp"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

RELIB_MODULE_EXPORTS(BLOCKS_EXPORTS);

namespace {
std::mutex kept_lock;
std::vector<std::string> kept;  // module state, freed by its static destructor at unload
}  // namespace

void leak_block(std::size_t bytes) { std::memset(std::malloc(bytes), 'l', bytes); }

void keep_block(std::size_t bytes, char fill) {
  std::string block(bytes, fill);
  std::lock_guard<std::mutex> guard(kept_lock);
  kept.push_back(std::move(block));
}

bool kept_blocks_intact() {
  std::lock_guard<std::mutex> guard(kept_lock);
  for (const std::string& block : kept) {
    for (char c : block) {
      if (c != block.front()) return false;
    }
  }
  return true;
}

char* hand_block(std::size_t bytes, char fill) {
  char* block = static_cast<char*>(std::malloc(bytes));
  std::memset(block, fill, bytes);
  return block;
}

// Allocates and frees blocks of many sizes, so that this thread's heap takes whatever pages
// mimalloc offers it, including pages other threads left behind.
void churn(int rounds) {
  std::vector<void*> blocks;
  for (int round = 0; round < rounds; ++round) {
    for (std::size_t size = 16; size <= (std::size_t{1} << 20); size *= 2) blocks.push_back(std::malloc(size));
    if (blocks.size() > 512) {
      for (void* block : blocks) std::free(block);
      blocks.clear();
    }
  }
  for (void* block : blocks) std::free(block);
}

// A thread of the module's own, joined before this returns.
void leak_on_module_thread(std::size_t bytes) {
  std::thread([bytes] { leak_block(bytes); }).join();
}
