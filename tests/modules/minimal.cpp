// No exports, imports or main. Built several ways by CMake (another relib version, another
// compiler, the old std::string ABI, RELIB_NO_UNLOADING) to provoke the load checks.
#define RELIB_IMPLEMENTATION
#include "relib_module.hpp"

#if defined(TEST_WITH_MAIN)
RELIB_MODULE_MAIN(int) { return 7; }
#endif

#if defined(TEST_THREAD_LOCAL_DESTRUCTOR)
// With RELIB_NO_UNLOADING the module registers thread_local destructors with the C library
// (__cxa_thread_atexit_impl), which relib-inspect reports.
#include <string>
thread_local std::string per_thread_text;
RELIB_MODULE_MAIN(int) {
  per_thread_text = "a thread_local with a destructor";
  return static_cast<int>(per_thread_text.size());
}
#endif

#if defined(TEST_OWN_DLLMAIN)
// Windows, with RELIB_MODULE_OWN_DLLMAIN: the module's DllMain is the one that runs.
#include <mimalloc.h>
#include <windows.h>
static int process_attaches = 0;
extern "C" BOOL WINAPI DllMain(HINSTANCE, DWORD reason, LPVOID) {
  if (reason == DLL_PROCESS_ATTACH) ++process_attaches;
  if (reason == DLL_THREAD_DETACH) mi_thread_done();  // as relib's own DllMain does
  return TRUE;
}
RELIB_MODULE_MAIN(int) { return process_attaches; }
#endif

#if defined(TEST_MISSING_DEPENDENCY)
// Windows: imports a DLL that the loader never finds.
extern "C" int origin_dep_value();
RELIB_MODULE_MAIN(int) { return origin_dep_value(); }
#endif

#if defined(TEST_CUSTOM_ALLOCATOR)
// RELIB_CUSTOM_ALLOCATOR: the module keeps the process allocator (here glibc's, through these
// definitions of its own) and still loads, runs and unloads.
#include <cstdlib>
#include <new>
#include <string>

#if defined(_WIN32)
#include <windows.h>
// The process heap stands in for the C library's allocator.
inline void* __libc_malloc(std::size_t size) noexcept { return HeapAlloc(GetProcessHeap(), 0, size); }
inline void __libc_free(void* block) noexcept {
  if (block != nullptr) HeapFree(GetProcessHeap(), 0, block);
}
#else
extern "C" void* __libc_malloc(std::size_t) noexcept;
extern "C" void __libc_free(void*) noexcept;
#endif

namespace {
int custom_allocations = 0;
}
void* operator new(std::size_t size) {
  ++custom_allocations;
  if (void* block = __libc_malloc(size)) return block;
  throw std::bad_alloc();
}
void operator delete(void* block) noexcept { __libc_free(block); }
void operator delete(void* block, std::size_t) noexcept { __libc_free(block); }

RELIB_MODULE_MAIN(int) {
  std::string text(1000, 'x');  // allocates through the operator new above
  return custom_allocations > 0 && text.size() == 1000 ? 7 : 0;
}
#endif

#if defined(TEST_GHOST_EXPORT)
// Records an export 'ghost' but defines no symbol for it, as a hand-edited build might. Its
// static constructor leaves a megabyte behind, which relib must take back when it refuses it.
#include <cstring>

RELIB_DETAIL_RECORD(relib_meta_export_ghost, "export\tghost", int(int));

namespace {
constexpr std::size_t leaked_at_start_size = std::size_t{1} << 20;
char* const leaked_at_start = [] {
  char* block = new char[leaked_at_start_size];
  std::memset(block, 1, leaked_at_start_size);
  return block;
}();
}  // namespace
#endif
