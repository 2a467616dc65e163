// The interface of the main test module: scalars, pointers, structs and C strings both ways.
#pragma once
#include <cstddef>

struct point {
  int x;
  int y;
#if defined(TEST_POINT_3D)  // the same name with another definition, for the layout check
  int z;
#endif
};

#define GAME_EXPORTS(X)                                  \
  X(add, int(int a, int b))                              \
  X(scale, double(double value, float factor))           \
  X(mirror, point(point p))                              \
  X(fill, void(int* out, std::size_t count, int value))  \
  X(greeting, const char*())                             \
  X(length, std::size_t(const char* text))               \
  X(log_through_host, void(const char* message))         \
  X(add_through_host, int(int a, int b))                 \
  X(point_from_host, point())                            \
  X(call_throwing_import, void())                        \
  X(counter, int())                                      \
  X(throw_runtime_error, int(const char* message))       \
  X(throw_custom, int())                                 \
  X(throw_int, void())                                   \
  X(throw_c_string, void())                              \
  X(make_before_unload_throw, void(bool enabled))

#define GAME_IMPORTS(X)                   \
  X(log, void(const char* message))       \
  X(host_add, int(int a, int b))          \
  X(host_point, point())                  \
  X(host_throws, void())
