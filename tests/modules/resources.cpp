#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#include "resources_api.hpp"

#include <pthread.h>
#if defined(_WIN32)
#include <windows.h>
#else
#include <sys/mman.h>
#endif

#include <cstdlib>

RELIB_MODULE_EXPORTS(RESOURCES_EXPORTS);
RELIB_MODULE_IMPORTS(host, RESOURCES_IMPORTS);

// A key whose destructor lives in this module, never deleted by the module.
bool create_key_with_value() {
  static pthread_key_t key;
  if (pthread_key_create(&key, [](void*) { host::notify("key destructor"); }) != 0) return false;
  return pthread_setspecific(key, &key) == 0;
}

// A mapping never unmapped by the module.
void* map_memory(std::size_t bytes) {
#if defined(_WIN32)
  return VirtualAlloc(nullptr, bytes, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
#else
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return memory == MAP_FAILED ? nullptr : memory;
#endif
}

// atexit in a shared library runs when the library is closed, not at process exit.
bool register_atexit() {
  return std::atexit([] { host::notify("atexit handler"); }) == 0;
}
