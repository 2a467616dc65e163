// The runtime module: its own copy of the C++ runtime at work (terminate, exceptions, memory
// allocated while static constructors ran).
#pragma once

#define RUNTIME_EXPORTS(X)                    \
  X(terminate_after_throw, void())            \
  X(terminate_without_exception, void())      \
  X(throw_and_catch, int(int depth))          \
  X(load_time_block_works, bool())
