// A module whose memory outlives the threads that allocated it.
#pragma once
#include <cstddef>

#define BLOCKS_EXPORTS(X)                             \
  X(leak_block, void(std::size_t bytes))              \
  X(keep_block, void(std::size_t bytes, char fill))   \
  X(kept_blocks_intact, bool())                       \
  X(hand_block, char*(std::size_t bytes, char fill))  \
  X(churn, void(int rounds))                          \
  X(leak_on_module_thread, void(std::size_t bytes))
