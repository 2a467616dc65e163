// A module that starts threads and keeps thread_local objects, for the unloading checks.
#pragma once
#include <cstddef>

#define THREADS_EXPORTS(X)                              \
  X(start_std_thread, void())                           \
  X(start_detached_thread, void())                      \
  X(start_pthread, void())                              \
  X(stop_and_join, void())                              \
  X(join_in_before_unload, void(bool enabled))          \
  X(threads_running, int())                             \
  X(touch_thread_local, std::size_t(const char* text))

#define THREADS_IMPORTS(X) X(thread_local_destroyed, void(const char* text))
