/* relib_module.hpp -- the module side of relib, and the interface vocabulary shared with the host.

   relib loads, calls, unloads and reloads native modules (shared libraries) from a host program.
   This header is what a module includes. The host includes relib.hpp, which includes this one for
   the pieces both sides share (signature strings, the C ABI of exports and imports).

   DO THIS in exactly one source file of the module:

       #define RELIB_IMPLEMENTATION
       #include "relib_module.hpp"

   and build the module with the CMake function relib_add_module(), which sets the flags a module
   needs (position independent code, hidden visibility, -fno-gnu-unique).

   DECLARING AN INTERFACE (once, in a header shared by host and module)

       #define GAME_EXPORTS(X)            \
         X(add,  int(int a, int b))       \
         X(tick, void(float dt))
       #define GAME_IMPORTS(X)            \
         X(log,  void(const char* msg))

   Each entry is X(name, signature): a name and a function type, written once. Exports are
   implemented by the module and called by the host; imports the reverse.

   IN THE MODULE

       #include "game_api.hpp"
       RELIB_MODULE_EXPORTS(GAME_EXPORTS)       // declares int add(int, int); void tick(float);
       RELIB_MODULE_IMPORTS(host, GAME_IMPORTS) // declares host::log(const char*)

       int add(int a, int b) { host::log("adding"); return a + b; }
       void tick(float) {}

       RELIB_MODULE_MAIN(int) { return 42; }            // optional: host calls it with call_main<int>()
       RELIB_MODULE_BEFORE_UNLOAD() { join_threads(); } // optional: runs when the host unloads

   The two interface macros may be expanded in every source file of the module (put them in a
   header of the module); only the file that defines RELIB_IMPLEMENTATION emits the symbols the
   host looks up. Exports are ordinary functions declared where the macro is expanded; imports are
   callable objects in the namespace you name, called like ordinary functions. Calling an import
   from a static constructor, before the host has linked the imports, ends the process with a
   message naming the import.

   STATE THAT SURVIVES RELOADS (hot reload, see docs/live-reload.md)

       struct world { float x, y; int ticks; };       // trivially copyable, in a module header
       RELIB_MODULE_STATE(world, 2);                  // its type and layout version
       RELIB_MODULE_MIGRATE_STATE(world& now, const relib::old_state& old) {  // implementation file
         if (old.version == 1) now.ticks = old.as<world_v1>().ticks;        // optional
       }
       void tick(float dt) { relib::module_state<world>().x += dt; }        // from main and exports

   The host allocates the block and keeps it across reloads of a relib::live_module; load_module()
   gives each module object its own. A new version of the layout must raise the version; the
   host refuses a build whose state type changed under the same version, or whose version
   changed without RELIB_MODULE_MIGRATE_STATE.

   An exception escaping an export (any type) is caught at the boundary: the host receives an
   empty result carrying the exception's type and what(), and the module stays usable.

   CONFIGURATION (define before including, identically in host and module)

       RELIB_NO_UNLOADING   modules are never unloaded: unload() and its costs are compiled out.
                            Host and module must agree; a mismatch is a load error.
       RELIB_HOST           (host only; relib::host defines it) this file belongs to a host: a host
                            file that defines RELIB_IMPLEMENTATION may then include this header
                            before relib.hpp and still gets the host side.
       RELIB_CUSTOM_ALLOCATOR  (module only) keep your own allocator: no mimalloc heaps, so no
                            reclamation of leaks at unload; everything else works.
       RELIB_MODULE_OWN_DLLMAIN  (module only, Windows) the module defines DllMain itself, which
                            should call mi_thread_done() at DLL_THREAD_DETACH as relib's does
                            (see its comment, after >>memory).

   UNLOADING (see docs/unloading.md)
   With unloading on, the implementation file also defines, local to the module: malloc, free and
   the rest of the C allocation functions and every operator new/delete (the module's memory comes
   from per-thread mimalloc heaps that the host destroys at unload), pthread_create (the host
   counts the module's threads) and __cxa_thread_atexit_impl (the host runs thread_local
   destructors). relib_add_module() makes them local with a version script and a static C++
   runtime; a module built otherwise works but gets none of this.

   THE MODULE'S C++ RUNTIME (see docs/footprint.md and docs/compilers.md)
   With libstdc++ or libc++, the implementation file gives the module's own copy a terminate
   handler: an exception nothing catches, or std::terminate(), prints "relib: terminate called in
   module <file>" with the exception's type and what(), then aborts. The host's handler is not replaced.
   relib_add_module() also links the module with --wrap=__cxa_throw and --wrap=__cxa_free_exception:
   every throw in module code records the return addresses where it was thrown, and a call_error
   shows them as named frames (docs/diagnostics.md). Nothing runs until something is thrown.

   WHAT CROSSES THE BOUNDARY
   Host and module are checked to be built by the same compiler family and C++ standard-library ABI,
   so any type with the same definition on both sides may cross. Types are compared by name and
   size at load. Memory allocated by one side and freed by the other is safe only while both use
   the same allocator; see README.md ("Caveats").

   LICENSE: MIT, in full at the end of this file and in LICENSE.
*/
#ifndef RELIB_MODULE_HPP_INCLUDED
#define RELIB_MODULE_HPP_INCLUDED

#include <cstddef>
#include <cstdint>
#include <atomic>
#include <cstring>
#include <cxxabi.h>
#include <pthread.h>
#include <exception>
#include <new>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

/* >>configuration ---- version, the side this file is on, and what both sides record --------- */

#define RELIB_VERSION_MAJOR 0
#define RELIB_VERSION_MINOR 2
#define RELIB_VERSION_PATCH 0
#define RELIB_VERSION_STRING "0.2.0"

#if defined(RELIB_NO_UNLOADING)
#define RELIB_DETAIL_UNLOADING 0
#else
#define RELIB_DETAIL_UNLOADING 1
#endif

// Whether the module's memory goes to relib's mimalloc heaps (recorded, so the host can prepare).
#if RELIB_DETAIL_UNLOADING && !defined(RELIB_CUSTOM_ALLOCATOR)
#define RELIB_DETAIL_HEAPS "mimalloc"
#else
#define RELIB_DETAIL_HEAPS "none"
#endif

/* Test hooks: build a module that claims another relib version or compiler, so the host's
   refusal can be tested without keeping old releases around. Never define them in real code. */
#if defined(RELIB_TEST_FAKE_VERSION)
#define RELIB_DETAIL_RECORDED_VERSION RELIB_TEST_FAKE_VERSION
#else
#define RELIB_DETAIL_RECORDED_VERSION RELIB_VERSION_STRING
#endif

#define RELIB_DETAIL_STR2(x) #x
#define RELIB_DETAIL_STR(x) RELIB_DETAIL_STR2(x)

#if defined(RELIB_TEST_FAKE_COMPILER)
#define RELIB_DETAIL_COMPILER RELIB_TEST_FAKE_COMPILER
#elif defined(__clang__)
#define RELIB_DETAIL_COMPILER "clang " RELIB_DETAIL_STR(__clang_major__)
#elif defined(__GNUC__)
#define RELIB_DETAIL_COMPILER "gcc " RELIB_DETAIL_STR(__GNUC__)
#else
#define RELIB_DETAIL_COMPILER "unknown"
#endif

#if defined(_LIBCPP_VERSION)
#define RELIB_DETAIL_STDLIB "libc++ abi=" RELIB_DETAIL_STR(_LIBCPP_ABI_VERSION)
#elif defined(__GLIBCXX__)
#define RELIB_DETAIL_STDLIB                                     \
  "libstdc++ cxx11-abi=" RELIB_DETAIL_STR(_GLIBCXX_USE_CXX11_ABI) \
  " gxx-abi=" RELIB_DETAIL_STR(__GXX_ABI_VERSION)
#else
#define RELIB_DETAIL_STDLIB "unknown"
#endif

#if defined(__GNUC__)
/* What the host looks up is exported (dllexport on Windows, where nothing else is); the module's
   private copies of shared variables stay local (ELF visibility; every symbol of a DLL is local
   unless exported). */
#if defined(_WIN32)
#define RELIB_DETAIL_VISIBLE __attribute__((dllexport))
#define RELIB_DETAIL_HIDDEN
#else
#define RELIB_DETAIL_VISIBLE __attribute__((visibility("default")))
#define RELIB_DETAIL_HIDDEN __attribute__((visibility("hidden")))
#endif
#define RELIB_DETAIL_LIKELY(x) __builtin_expect(!!(x), 1)
#define RELIB_DETAIL_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* Records describing the module are ELF notes, which linkers place in the first page of the file
   (PT_NOTE): the host reads them with one read before dlopen() runs any module code. On Windows
   the same notes fill the PE section .relib (a name of up to 8 bytes survives stripping). aligned(4)
   keeps the compiler from padding notes apart, and so does leaving them out of clang's
   AddressSanitizer, which gives each global it checks a red zone and 32-byte alignment (GCC's
   leaves variables in named sections alone). */
#if defined(__clang__)
#define RELIB_DETAIL_PACKED_NOTE __attribute__((aligned(4), no_sanitize("address")))
#else
#define RELIB_DETAIL_PACKED_NOTE __attribute__((aligned(4)))
#endif
#if defined(_WIN32)
#define RELIB_DETAIL_META __attribute__((section(".relib"), used)) RELIB_DETAIL_PACKED_NOTE
#else
#define RELIB_DETAIL_META __attribute__((section(".note.relib"), used)) RELIB_DETAIL_PACKED_NOTE
#endif
#else
#error "relib: only GCC and Clang (on Linux, and mingw-w64 on Windows) are supported so far"
#endif

/* Which side this file is on. relib.hpp defines RELIB_DETAIL_HOST_SIDE before it includes this
   header; RELIB_HOST (defined by the CMake target relib::host) says so even when this header comes
   first, through an interface header. */
#if defined(RELIB_DETAIL_HOST_SIDE) || defined(RELIB_HOST)
#define RELIB_DETAIL_MODULE_SIDE 0
#else
#define RELIB_DETAIL_MODULE_SIDE 1
#endif

/* The interface macros emit their records and symbols once the module implementation below has
   been included (it redefines this), whichever header came first. */
#define RELIB_DETAIL_IF_MODULE_IMPL(...)

/* >>signatures ---- shared: compile-time signature strings and records ---------------------- */

namespace relib {

/* A range of addresses [begin, begin + size). The host's arena for module heaps is one; both
   sides ask it whether it holds a block (see host_link::module_heap_arena). */
struct address_range {
  std::uintptr_t begin = 0;
  std::size_t size = 0;
  bool contains(const void* address) const noexcept {
    return reinterpret_cast<std::uintptr_t>(address) - begin < size;
  }
};

namespace detail {

template <std::size_t N>
struct fixed_string {
  char data[N + 1] = {};
  constexpr fixed_string() = default;
  constexpr fixed_string(const char (&text)[N + 1]) {
    for (std::size_t i = 0; i < N; ++i) data[i] = text[i];
  }
  static constexpr std::size_t size() { return N; }
  constexpr std::string_view view() const { return std::string_view(data, N); }
};
template <std::size_t N>
fixed_string(const char (&)[N]) -> fixed_string<N - 1>;

template <std::size_t A, std::size_t B>
constexpr fixed_string<A + B> operator+(const fixed_string<A>& a, const fixed_string<B>& b) {
  fixed_string<A + B> out;
  for (std::size_t i = 0; i < A; ++i) out.data[i] = a.data[i];
  for (std::size_t i = 0; i < B; ++i) out.data[A + i] = b.data[i];
  return out;
}

template <std::size_t N>
constexpr fixed_string<N> to_fixed(std::string_view text) {
  fixed_string<N> out;
  for (std::size_t i = 0; i < N; ++i) out.data[i] = text[i];
  return out;
}

template <class T>
constexpr const char* pretty_name() {
  return __PRETTY_FUNCTION__;
}

/* The compiler spells the type inside __PRETTY_FUNCTION__ ("... [with T = int(int, int)]"):
   parameter names are dropped and aliases resolved, so both sides get the same text. */
constexpr std::string_view extract_type_name(std::string_view pretty) {
  const std::size_t start = pretty.find("T = ") + 4;
  const std::size_t end = pretty.rfind(']');
  return pretty.substr(start, end - start);
}

template <class T>
struct type_name {
  static constexpr std::string_view view = extract_type_name(pretty_name<T>());
  static constexpr auto value = to_fixed<view.size()>(view);
};

constexpr std::size_t digit_count(std::size_t value) {
  std::size_t digits = 1;
  while (value >= 10) {
    value /= 10;
    ++digits;
  }
  return digits;
}

template <std::size_t Value>
constexpr auto number_string() {
  fixed_string<digit_count(Value)> out;
  std::size_t rest = Value;
  for (std::size_t i = digit_count(Value); i > 0; --i) {
    out.data[i - 1] = static_cast<char>('0' + rest % 10);
    rest /= 10;
  }
  return out;
}

template <std::size_t N>
constexpr fixed_string<N - 1> drop_first(const fixed_string<N>& text) {
  fixed_string<N - 1> out;
  for (std::size_t i = 1; i < N; ++i) out.data[i - 1] = text.data[i];
  return out;
}

template <class T>
constexpr std::size_t size_of_or_zero() {
  if constexpr (std::is_void_v<T>) {
    return 0;
  } else {
    return sizeof(T);
  }
}

/* Sizes of the return type and of each parameter ("8:4,4"): two types with the same name but a
   different definition on each side show up here. */
template <class F>
struct layout;
template <class R, class... A>
struct layout<R(A...)> {
  static constexpr auto params() {
    if constexpr (sizeof...(A) == 0) {
      return fixed_string<0>();
    } else {
      return drop_first(((fixed_string(",") + number_string<size_of_or_zero<A>()>()) + ...));
    }
  }
  static constexpr auto value = number_string<size_of_or_zero<R>()>() + fixed_string(":") + params();
};

/* An ELF note named "relib" whose description is a NUL-terminated record. */
constexpr std::uint32_t note_type = 0x52454c42;  // "RELB"
template <std::size_t N>
struct note {
  std::uint32_t name_size = 6;
  std::uint32_t description_size = N + 1;
  std::uint32_t type = note_type;
  char name[8] = {'r', 'e', 'l', 'i', 'b', '\0', '\0', '\0'};
  char description[(N + 4) / 4 * 4] = {};
};

template <std::size_t N>
constexpr note<N> make_note(const fixed_string<N>& text) {
  note<N> out;
  for (std::size_t i = 0; i < N; ++i) out.description[i] = text.data[i];
  return out;
}

/* One metadata record: "<kind>\t<name>\t<signature>\t<layout>". */
template <class F, std::size_t N>
constexpr auto entry_text(const fixed_string<N>& kind_and_name) {
  return kind_and_name + fixed_string("\t") + type_name<F>::value + fixed_string("\t") + layout<F>::value;
}
template <class F, std::size_t N>
constexpr auto entry_record(const fixed_string<N>& kind_and_name) {
  return make_note(entry_text<F>(kind_and_name));
}

template <class T>
using identity_t = T;

/* >>abi ---- shared: the C ABI between host and module ---------------------------------------- */

/* What the host offers the module, set right after dlopen() through the visible pointer
   relib_host_link (so it is null while static constructors run):
   - report_failure receives the description of an exception caught at the boundary, with the
     return addresses recorded where it was thrown (>>runtime), and copies them, so nothing the
     module allocated outlives the call;
   - create_thread and register_thread_local let the host count the module's threads and run its
     thread_local destructors, so neither keeps the library mapped (null with RELIB_NO_UNLOADING). */
using failure_reporter = void (*)(const char* mangled_type, const char* what, void* const* thrown_at,
                                  std::size_t thrown_at_count);

/* The stack where an exception was thrown: the return addresses, innermost first, recorded by the
   module's __cxa_throw (>>runtime) for the exception object `object`. */
struct thrown_stack {
  static constexpr std::size_t max_frames = 32;
  const void* object;
  std::size_t count;
  void* frames[max_frames];
};
/* The record of the exception being handled on this thread, if it was thrown in module code. */
const thrown_stack* stack_of_current_exception() noexcept;

/* Blocks that module code allocated on a thread that has exited since, still in use: mimalloc
   gives an exiting thread's heaps away, so the host lists these blocks and frees what is left of
   them at unload (see docs/unloading.md). Freeing one must take it off the list. This filter, one
   bit per 64 KiB of addresses, lets every other free() pass with one load before and one after. */
struct exited_block_filter {
  std::atomic<std::uint64_t> words[64] = {};
  static std::size_t bit_of(const void* address) noexcept {  // 4,096 bits: 256 MiB of arena before they repeat
    return static_cast<std::size_t>((reinterpret_cast<std::uintptr_t>(address) >> 16) & 4095);
  }
  const std::atomic<std::uint64_t>& word_of(const void* address) const noexcept { return words[bit_of(address) >> 6]; }
  static std::uint64_t mask_of(const void* address) noexcept { return std::uint64_t{1} << (bit_of(address) & 63); }
  bool might_hold(const void* address) const noexcept {
    return (word_of(address).load(std::memory_order_relaxed) & mask_of(address)) != 0;
  }
};

/* Frees a mimalloc block (Side::free_now), unless it may be listed: then Side::free_listed takes
   it off the list and frees it. The host marks the filter before it looks for live blocks, and
   makes every thread pass a barrier in between (platform::fence_other_threads): a free() that
   read the filter before the mark and freed after the look finds the word changed, and calls
   Side::forget, which takes the block off the list if it was added meanwhile. */
template <class Side>
inline void free_watching_exits(const exited_block_filter& filter, void* block) noexcept {
  const std::uint64_t seen = filter.word_of(block).load(std::memory_order_relaxed);
  if (RELIB_DETAIL_UNLIKELY((seen & exited_block_filter::mask_of(block)) != 0)) return Side::free_listed(block);
  Side::free_now(block);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (RELIB_DETAIL_UNLIKELY(filter.word_of(block).load(std::memory_order_relaxed) != seen)) Side::forget(block);
}

/* realloc() by the same rule: a block that may be listed is moved by hand, so that the old one
   leaves the list as it is freed. */
template <class Side>
inline void* realloc_watching_exits(const exited_block_filter& filter, void* block, std::size_t size) noexcept {
  const std::uint64_t seen = filter.word_of(block).load(std::memory_order_relaxed);
  if (RELIB_DETAIL_UNLIKELY((seen & exited_block_filter::mask_of(block)) != 0)) {
    void* moved = Side::allocate(size);
    if (moved == nullptr) return nullptr;  // as realloc() fails: the block stays as it was
    const std::size_t old_size = Side::usable_size(block);
    std::memcpy(moved, block, old_size < size ? old_size : size);
    Side::free_listed(block);
    return moved;
  }
  void* moved = Side::realloc_now(block, size);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (RELIB_DETAIL_UNLIKELY(filter.word_of(block).load(std::memory_order_relaxed) != seen) && moved != nullptr &&
      moved != block) {
    Side::forget(block);
  }
  return moved;
}

struct host_link {
  failure_reporter report_failure;
  int (*create_thread)(void* context, pthread_t* thread, const pthread_attr_t* attributes, void* (*start)(void*),
                       void* argument);
  int (*register_thread_local)(void* context, void (*destructor)(void*), void* object);
  void (*register_heap)(void* context, void* heap);  // a mimalloc heap the module made for this thread
  // The module's fast-lookup slot for this thread's heap, which the host clears when the thread
  // exits (before another thread can get the same thread pointer).
  void (*register_heap_slot)(void* context, std::atomic<std::uintptr_t>* slot);
  // pthread keys and memory mappings made by module code, released at unload.
  int (*create_key)(void* context, pthread_key_t* key, void (*destructor)(void*));
  int (*delete_key)(void* context, pthread_key_t key);
  void (*mapped)(void* context, void* address, std::size_t length);
  void (*unmapped)(void* context, void* address, std::size_t length);
  pthread_key_t heap_key;  // each thread's module heap; created and deleted by the host
  void* context;
  // Address space the host reserved for mimalloc and keeps mapped for good: a block inside it is
  // a mimalloc block, known without asking mimalloc (empty when there is none).
  address_range module_heap_arena;
  // Blocks left by exited threads (above): the filter, and the host's way to free or forget one.
  const exited_block_filter* exited_blocks;
  void (*free_listed_block)(void* block);
  void (*forget_listed_block)(void* block);
  // The module's abort() (std::terminate's and assert's too), given an address in the module's
  // code: a guarded call returns from here to the host; otherwise the host reports it, returns,
  // and the process aborts.
  void (*aborted)(const void* module_code);
};
RELIB_DETAIL_HIDDEN inline const host_link* module_host = nullptr;

inline void report_current_exception() noexcept {
  const char* type = "";
  const char* what = nullptr;
  try {
    throw;
  } catch (const std::exception& error) {
    type = typeid(error).name();
    what = error.what();
  } catch (...) {
#if defined(__GLIBCXX__) || defined(_LIBCPP_VERSION)
    const std::type_info* current = __cxxabiv1::__cxa_current_exception_type();
    if (current != nullptr) type = current->name();
#endif
  }
  if (module_host == nullptr) return;
  const thrown_stack* thrown = stack_of_current_exception();
  module_host->report_failure(type, what, thrown != nullptr ? thrown->frames : nullptr,
                              thrown != nullptr ? thrown->count : 0);
}

/* Trivially copyable results of up to 8 bytes come back in registers, the value in one and the
   "it returned" flag in the other (so the caller tests the flag without shifting it out);
   other results go through a slot. */
template <class R>
struct returned {
  alignas(8) unsigned char bytes[8];
  bool ok;
};
template <class R>
constexpr bool returns_in_registers() {
  if constexpr (std::is_void_v<R>) {
    return false;
  } else {
    return std::is_trivially_copyable_v<R> && sizeof(R) <= 8 && alignof(R) <= 8;
  }
}

/* How an export crosses, by return type (false or ok == false: it threw, and the host's failure
   reporter has been told why):
     void                               bool thunk(args...)
     trivially copyable, up to 8 bytes  returned<R> thunk(args...)
     anything else                      bool thunk(void* slot, args...), the value constructed in
                                        the caller's slot */
template <class F>
struct export_thunk;
template <class R, class... A>
struct export_thunk<R(A...)> {
  static constexpr bool in_registers = returns_in_registers<R>();
  using pointer = std::conditional_t<in_registers || std::is_void_v<R>,
                                     std::conditional_t<in_registers, returned<R>, bool> (*)(A...),
                                     bool (*)(void*, A...)>;

  template <R (*Function)(A...)>
  static auto call(A... args) {
    try {
      if constexpr (in_registers) {
        // All eight bytes at once: where the result goes through memory (the Windows x64 ABI
        // returns this struct through a hidden pointer), the host's 8-byte load of a 4-byte
        // store would wait for it to retire instead of taking it from the store buffer.
        std::uint64_t word = 0;
        const R value = Function(static_cast<A&&>(args)...);
        std::memcpy(&word, &value, sizeof(R));
        returned<R> out;
        std::memcpy(out.bytes, &word, sizeof word);
        out.ok = true;
        return out;
      } else {
        Function(static_cast<A&&>(args)...);
        return true;
      }
    } catch (...) {
      report_current_exception();
      if constexpr (in_registers) {
        returned<R> out{};
        out.ok = false;
        return out;
      } else {
        return false;
      }
    }
  }

  template <R (*Function)(A...)>
  static bool call_into(void* return_slot, A... args) {
    try {
      ::new (return_slot) R(Function(static_cast<A&&>(args)...));
      return true;
    } catch (...) {
      report_current_exception();
      return false;
    }
  }

  template <R (*Function)(A...)>
  static constexpr pointer thunk() {
    if constexpr (in_registers || std::is_void_v<R>) {
      return &call<Function>;
    } else {
      return &call_into<Function>;
    }
  }
};

[[noreturn]] void report_unlinked_import(const char* name, const char* signature) noexcept;

/* An import crosses as a plain function pointer to a host thunk; the module keeps it in a slot
   that starts out pointing at a stub which explains the mistake of calling it too early. */
template <class F>
struct import_slot;
template <class R, class... A>
struct import_slot<R(A...)> {
  using pointer = R (*)(A...);

  template <class Tag>
  static R unlinked(A...) {
    report_unlinked_import(Tag::name(), Tag::signature());
  }
};

template <class F>
class import_function;
template <class R, class... A>
class import_function<R(A...)> {
 public:
  using pointer = R (*)(A...);
  constexpr explicit import_function(pointer* slot) : slot_(slot) {}
  R operator()(A... args) const { return (*slot_)(static_cast<A&&>(args)...); }

 private:
  pointer* slot_;
};

}  // namespace detail

/* The previous version's state, handed to RELIB_MODULE_MIGRATE_STATE when the version changes. */
struct old_state {
  std::uint32_t version;  // as declared by the previous RELIB_MODULE_STATE
  const char* type;       // the previous state type's name, as the compiler spells it
  const void* data;
  std::size_t size;

  /* The old block as the type it had: keep the old definition under another name. Old must be
     trivially copyable and of the old size, else std::length_error, which refuses the reload. */
  template <class Old>
  const Old& as() const {
    static_assert(std::is_trivially_copyable_v<Old>, "relib::old_state::as<Old>: Old must be trivially copyable");
    if (size != sizeof(Old)) {
      throw std::length_error("relib::old_state::as: the old state's size differs from the type asked for");
    }
    return *static_cast<const Old*>(data);
  }
};

namespace detail {

/* >>state ---- state that survives reloads (see docs/live-reload.md) --------------------------
   The host owns the block; the module declares its type and version with RELIB_MODULE_STATE.
   Only trivially copyable types qualify: the block outlives the module's heap and code, so it
   must hold no pointer into either. The record "state" carries the type's name and
   "version:size,alignment". */
template <class T>
struct declared_state {
  static constexpr bool declared = false;
};

RELIB_DETAIL_HIDDEN inline void* state_block = nullptr;
[[noreturn]] void report_missing_state() noexcept;

enum state_attach : int { state_fresh = 0, state_existing = 1 };

template <class T, std::uint32_t Version>
constexpr auto state_record() {
  return make_note(fixed_string("state\tstate\t") + type_name<T>::value + fixed_string("\t") +
                   number_string<Version>() + fixed_string(":") + number_string<sizeof(T)>() + fixed_string(",") +
                   number_string<alignof(T)>());
}

/* A fresh block gets a value-initialized T (default member initializers apply); an existing one
   is the previous version's block, kept as it was. */
template <class T>
void attach_state(void* block, int mode) {
  if (mode == state_fresh) ::new (block) T();
  state_block = block;
}

template <class F>
struct migrate_traits;
template <class T>
struct migrate_traits<void (*)(T&, const old_state&)> {
  using state_type = T;
};

template <auto Migrate>
void migrate_state(const old_state* old) {
  using T = typename migrate_traits<decltype(Migrate)>::state_type;
  static_assert(declared_state<T>::declared,
                "RELIB_MODULE_MIGRATE_STATE: the first parameter must be a reference to the type declared "
                "with RELIB_MODULE_STATE");
  Migrate(*static_cast<T*>(state_block), *old);
}

}  // namespace detail
}  // namespace relib

/* >>module macros ---- RELIB_MODULE_EXPORTS, _IMPORTS, _MAIN, _BEFORE_UNLOAD, _STATE ------------ */

#define RELIB_DETAIL_RECORD(variable, kind_and_name, ...) \
  RELIB_DETAIL_META static constexpr auto variable =      \
      relib::detail::entry_record<__VA_ARGS__>(relib::detail::fixed_string(kind_and_name));

/* Exports: declare the functions, and in the implementation file emit their thunks and records. */
#define RELIB_DETAIL_MODULE_EXPORT_DECL(id, ...) relib::detail::identity_t<__VA_ARGS__> id;
#define RELIB_DETAIL_MODULE_EXPORT_DEF(id, ...)                                                        \
  RELIB_DETAIL_RECORD(relib_meta_export_##id, "export\t" #id, __VA_ARGS__)                           \
  extern "C" RELIB_DETAIL_VISIBLE const relib::detail::export_thunk<__VA_ARGS__>::pointer relib_export_##id = \
      relib::detail::export_thunk<__VA_ARGS__>::thunk<&id>();

#define RELIB_MODULE_EXPORTS(LIST)          \
  LIST(RELIB_DETAIL_MODULE_EXPORT_DECL)     \
  RELIB_DETAIL_IF_MODULE_IMPL(LIST(RELIB_DETAIL_MODULE_EXPORT_DEF)) \
  static_assert(true, "")

/* Imports: a slot per import (an inline variable, so every file of the module shares it), a
   callable object named after the import, and in the implementation file the record plus a
   visible pointer to the slot, which the host fills in after dlopen(). */
#define RELIB_DETAIL_MODULE_IMPORT_DECL(id, ...)                                                    \
  namespace relib_import_detail {                                                                     \
  struct id##_tag {                                                                                  \
    static constexpr const char* name() { return #id; }                                             \
    static constexpr const char* signature() { return relib::detail::type_name<__VA_ARGS__>::value.data; } \
  };                                                                                                  \
  inline relib::detail::import_slot<__VA_ARGS__>::pointer id##_slot =                               \
      &relib::detail::import_slot<__VA_ARGS__>::unlinked<id##_tag>;                                 \
  }                                                                                                   \
  inline constexpr relib::detail::import_function<__VA_ARGS__> id{&relib_import_detail::id##_slot};
#define RELIB_DETAIL_MODULE_IMPORT_DEF(id, ...)                                            \
  RELIB_DETAIL_RECORD(relib_meta_import_##id, "import\t" #id, __VA_ARGS__)               \
  extern "C" RELIB_DETAIL_VISIBLE relib::detail::import_slot<__VA_ARGS__>::pointer* const    \
      relib_import_##id = &relib_import_detail::id##_slot;

#define RELIB_MODULE_IMPORTS(namespace_name, LIST)                     \
  namespace namespace_name {                                           \
  LIST(RELIB_DETAIL_MODULE_IMPORT_DECL)                                \
  RELIB_DETAIL_IF_MODULE_IMPL(LIST(RELIB_DETAIL_MODULE_IMPORT_DEF))    \
  }                                                                    \
  static_assert(true, "")

/* main and before_unload: write the macro, then the function body. Use them in the
   implementation file only. */
#define RELIB_MODULE_MAIN(...)                                                                            \
  static __VA_ARGS__ relib_module_main_body();                                                            \
  RELIB_DETAIL_RECORD(relib_meta_main, "main\tmain", __VA_ARGS__())                                        \
  extern "C" RELIB_DETAIL_VISIBLE const relib::detail::export_thunk<__VA_ARGS__()>::pointer relib_main =   \
      relib::detail::export_thunk<__VA_ARGS__()>::thunk<&relib_module_main_body>();                          \
  static __VA_ARGS__ relib_module_main_body()

#define RELIB_MODULE_BEFORE_UNLOAD()                                                                      \
  static void relib_module_before_unload_body();                                                          \
  RELIB_DETAIL_RECORD(relib_meta_before_unload, "before_unload\tbefore_unload", void())                    \
  extern "C" RELIB_DETAIL_VISIBLE const relib::detail::export_thunk<void()>::pointer relib_before_unload = \
      relib::detail::export_thunk<void()>::thunk<&relib_module_before_unload_body>();                       \
  static void relib_module_before_unload_body()

/* State that survives reloads: RELIB_MODULE_STATE(type, version), outside any namespace, in a
   header of the module (every file that calls relib::module_state<type>() needs it), and optionally, in the implementation
   file, RELIB_MODULE_MIGRATE_STATE(type& state, const relib::old_state& old) { ... } with a body
   that fills the fresh `state` from `old` when the version changed. */
#define RELIB_DETAIL_MODULE_STATE_DEF(type, version)                                                     \
  RELIB_DETAIL_META static constexpr auto relib_meta_state = relib::detail::state_record<type, version>(); \
  extern "C" RELIB_DETAIL_VISIBLE const relib::detail::export_thunk<void(void*, int)>::pointer           \
      relib_state_attach = relib::detail::export_thunk<void(void*, int)>::thunk<&relib::detail::attach_state<type>>();

#define RELIB_MODULE_STATE(type, version)                                                                     \
  template <>                                                                                                 \
  struct relib::detail::declared_state<type> {                                                                \
    static constexpr bool declared = true;                                                                    \
  };                                                                                                          \
  static_assert(std::is_trivially_copyable_v<type>,                                                           \
                "RELIB_MODULE_STATE: the state must be trivially copyable (no std::string, std::vector or "    \
                "pointers into the module): it outlives the module's heap and code");                          \
  RELIB_DETAIL_IF_MODULE_IMPL(RELIB_DETAIL_MODULE_STATE_DEF(type, version))                                 \
  static_assert(true, "")

#define RELIB_MODULE_MIGRATE_STATE(...)                                                                          \
  static void relib_module_migrate_body(__VA_ARGS__);                                                            \
  RELIB_DETAIL_RECORD(relib_meta_migrate_state, "migrate_state\tmigrate_state", void(__VA_ARGS__))               \
  extern "C" RELIB_DETAIL_VISIBLE const relib::detail::export_thunk<void(const relib::old_state*)>::pointer       \
      relib_migrate_state = relib::detail::export_thunk<void(const relib::old_state*)>::thunk<                    \
          &relib::detail::migrate_state<&relib_module_migrate_body>>();                                             \
  static void relib_module_migrate_body(__VA_ARGS__)

namespace relib {
/* The state block the host attached at load, as the type declared with RELIB_MODULE_STATE. Valid
   from main and exports on (not in static constructors, which run before the host attaches it). */
template <class T>
T& module_state() noexcept {
  static_assert(detail::declared_state<T>::declared,
                "relib::module_state<T>: declare the state with RELIB_MODULE_STATE(T, version) first");
  if (detail::state_block == nullptr) detail::report_missing_state();
  return *static_cast<T*>(detail::state_block);
}
}  // namespace relib

#endif /* RELIB_MODULE_HPP_INCLUDED */

/* >>implementation ------------------------------------------------------------------------------
   The module side, in the one module file that defines RELIB_IMPLEMENTATION. Section map:
     >>records             the module record the host reads before any module code runs
     >>platform            how a replacement reaches the function it replaces; the module's file
     >>threads             pthread_create and __cxa_thread_atexit_impl, sent to the host
     >>keys and mappings   pthread keys and mmap/munmap, recorded so unload releases them
     >>runtime             the module's copy of the C++ runtime: its terminate handler, its exception pool
     >>memory              malloc, free and operator new on per-thread mimalloc heaps
     >>fatal mistakes      an import called too early, the state used too early
   The definitions in >>threads, >>keys and mappings and >>memory replace the C library's own for
   module code only (relib_add_module's version script): they are this side's platform section. */

#if defined(RELIB_IMPLEMENTATION) && RELIB_DETAIL_MODULE_SIDE && !defined(RELIB_DETAIL_MODULE_IMPLEMENTED)
#define RELIB_DETAIL_MODULE_IMPLEMENTED
#undef RELIB_DETAIL_IF_MODULE_IMPL
#define RELIB_DETAIL_IF_MODULE_IMPL(...) __VA_ARGS__

#include <cstdio>
#include <cstdlib>

/* >>records ---- the module record: what the host compares before it lets any module code run. */
RELIB_DETAIL_META static constexpr auto relib_meta_module = relib::detail::make_note(relib::detail::fixed_string(
    "module\trelib\tversion=" RELIB_DETAIL_RECORDED_VERSION "\tcompiler=" RELIB_DETAIL_COMPILER
    "\tstdlib=" RELIB_DETAIL_STDLIB "\tunloading=" RELIB_DETAIL_STR(RELIB_DETAIL_UNLOADING)
    "\theaps=" RELIB_DETAIL_HEAPS));

/* Where the host puts its link. */
extern "C" RELIB_DETAIL_VISIBLE const relib::detail::host_link** const relib_host_link = &relib::detail::module_host;

/* >>platform ---- how a replacement reaches the function it replaces, and the module's file -----
   The sections below replace C library functions for module code, and call the original before
   the host link is set. On Linux the module defines the function itself (relib_add_module's
   version script keeps it local, so it serves module code only) and the original is the next
   definition (dlsym RTLD_NEXT). A DLL binds each import when it is linked: relib_add_module
   links with --wrap=NAME, so module code calls __wrap_NAME and __real_NAME is the original. */
#if defined(_WIN32)
#if !defined(WIN32_LEAN_AND_MEAN)
#define WIN32_LEAN_AND_MEAN
#endif
#if !defined(NOMINMAX)
#define NOMINMAX
#endif
#include <windows.h>
#include <csignal>
/* A module linked without these options does not link: __real_NAME is undefined (docs/windows.md). */
#define RELIB_DETAIL_PASTE(a, b) a##b
#define RELIB_DETAIL_REPLACEMENT(name) RELIB_DETAIL_PASTE(__wrap_, name)
#define RELIB_DETAIL_ORIGINAL(type, name) static_cast<type>(&RELIB_DETAIL_PASTE(__real_, name))
#define RELIB_DETAIL_DECLARE_ORIGINAL(declaration) extern "C" declaration;
#else
#include <dlfcn.h>
#define RELIB_DETAIL_REPLACEMENT(name) name
#define RELIB_DETAIL_ORIGINAL(type, name) reinterpret_cast<type>(dlsym(RTLD_NEXT, RELIB_DETAIL_STR(name)))
#define RELIB_DETAIL_DECLARE_ORIGINAL(declaration)
#endif

namespace relib {
namespace detail {
namespace module_platform {
/* The module's file, for messages ("(unknown)" when the system cannot tell). */
inline const char* file_name() noexcept {
#if defined(_WIN32)
  static char name[MAX_PATH * 3];
  HMODULE self = nullptr;
  if (GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                         reinterpret_cast<LPCSTR>(&file_name), &self) == 0 ||
      GetModuleFileNameA(self, name, sizeof name) == 0) {
    return "(unknown)";
  }
  return name;
#else
  Dl_info self{};
  return dladdr(reinterpret_cast<void*>(&file_name), &self) != 0 && self.dli_fname != nullptr ? self.dli_fname
                                                                                               : "(unknown)";
#endif
}

/* Whether an address lies in this module's image. */
inline bool in_this_module(const void* address) noexcept {
#if defined(_WIN32)
  HMODULE self = nullptr, owner = nullptr;
  const DWORD flags = GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT;
  return GetModuleHandleExA(flags, reinterpret_cast<LPCSTR>(&in_this_module), &self) != 0 &&
         GetModuleHandleExA(flags, static_cast<LPCSTR>(address), &owner) != 0 && self == owner;
#else
  Dl_info self{}, owner{};
  return dladdr(reinterpret_cast<void*>(&in_this_module), &self) != 0 && dladdr(address, &owner) != 0 &&
         self.dli_fbase == owner.dli_fbase;
#endif
}

/* A function of the process's C library and allocator, for blocks that are not the module's:
   on Linux the one the dynamic loader gives everyone else (glibc's, or jemalloc's or tcmalloc's
   when the process has them); on Windows the C runtime DLL's that the module was built for. */
inline void* process_function(const char* name) noexcept {
#if defined(_WIN32)
#if defined(_UCRT)
  HMODULE runtime = GetModuleHandleA("ucrtbase.dll");
#else
  HMODULE runtime = GetModuleHandleA("msvcrt.dll");
#endif
  return runtime != nullptr ? reinterpret_cast<void*>(GetProcAddress(runtime, name)) : nullptr;
#else
  return dlsym(RTLD_DEFAULT, name);
#endif
}

/* A value unique to each running thread, read without a call. */
inline std::uintptr_t thread_pointer() noexcept {
#if defined(_WIN32) && defined(__x86_64__)
  // The TEB's own address, at gs:0x30. Not NtCurrentTeb(): GCC 12 takes its read at gs:0x30 for
  // one through a null pointer and warns (-Warray-bounds) in optimized builds.
  std::uintptr_t teb;
  __asm__("movq %%gs:0x30, %0" : "=r"(teb));
  return teb;
#elif defined(_WIN32)
  return reinterpret_cast<std::uintptr_t>(NtCurrentTeb());
#else
  return reinterpret_cast<std::uintptr_t>(__builtin_thread_pointer());
#endif
}
}  // namespace module_platform
}  // namespace detail
}  // namespace relib

/* On Windows the wrappers are defined in every build: relib_add_module links with the --wrap
   options whatever the configuration, and without unloading they pass every call on. */
#if RELIB_DETAIL_UNLOADING || defined(_WIN32)
/* >>threads ---- threads and thread_local destructors -----------------------------------------
   relib_add_module() links the C++ runtime statically and keeps these two definitions local to
   the module, so std::thread and thread_local objects in module code come here. Threads are
   started by the host, which counts them (unload refuses while any runs) and runs their
   thread_local destructors as they end, in host code, after the module's code has returned.
   thread_local destructors go to the host too: glibc would otherwise keep the library mapped
   until each thread exits. Before the host link is set (static constructors), both fall back to
   glibc. See docs/unloading.md. */
RELIB_DETAIL_DECLARE_ORIGINAL(int __real_pthread_create(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*))
extern "C" int RELIB_DETAIL_REPLACEMENT(pthread_create)(pthread_t* thread, const pthread_attr_t* attributes,
                                                         void* (*start)(void*), void* argument) noexcept {
  const relib::detail::host_link* host = relib::detail::module_host;
  if (host != nullptr && host->create_thread != nullptr) {
    return host->create_thread(host->context, thread, attributes, start, argument);
  }
  using create_function = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static const auto original_create = RELIB_DETAIL_ORIGINAL(create_function, pthread_create);
  return original_create(thread, attributes, start, argument);
}

/* glibc's C++ runtime hands thread_local destructors to __cxa_thread_atexit_impl; mingw-w64's
   keeps them itself, in __cxa_thread_atexit. */
#if defined(_WIN32)
#define RELIB_DETAIL_THREAD_ATEXIT __cxa_thread_atexit
#else
#define RELIB_DETAIL_THREAD_ATEXIT __cxa_thread_atexit_impl
#endif
RELIB_DETAIL_DECLARE_ORIGINAL(int __real___cxa_thread_atexit(void (*)(void*), void*, void*))
extern "C" int RELIB_DETAIL_REPLACEMENT(RELIB_DETAIL_THREAD_ATEXIT)(void (*destructor)(void*), void* object,
                                                                     void* dso_handle) noexcept {
  const relib::detail::host_link* host = relib::detail::module_host;
  if (host != nullptr && host->register_thread_local != nullptr) {
    return host->register_thread_local(host->context, destructor, object);
  }
  using register_function = int (*)(void (*)(void*), void*, void*);
  static const auto original_register = RELIB_DETAIL_ORIGINAL(register_function, RELIB_DETAIL_THREAD_ATEXIT);
  return original_register(destructor, object, dso_handle);
}

/* >>keys and mappings ------------------------------------------------------------------------
   pthread keys: one left behind keeps a destructor pointing into the unmapped module, which glibc
   would call when a thread with a value for it exits. */
RELIB_DETAIL_DECLARE_ORIGINAL(int __real_pthread_key_create(pthread_key_t*, void (*)(void*)))
RELIB_DETAIL_DECLARE_ORIGINAL(int __real_pthread_key_delete(pthread_key_t))
extern "C" int RELIB_DETAIL_REPLACEMENT(pthread_key_create)(pthread_key_t* key, void (*destructor)(void*)) noexcept {
  const relib::detail::host_link* host = relib::detail::module_host;
  if (host != nullptr && host->create_key != nullptr) return host->create_key(host->context, key, destructor);
  using create_function = int (*)(pthread_key_t*, void (*)(void*));
  static const auto original_create = RELIB_DETAIL_ORIGINAL(create_function, pthread_key_create);
  return original_create(key, destructor);
}

extern "C" int RELIB_DETAIL_REPLACEMENT(pthread_key_delete)(pthread_key_t key) noexcept {
  const relib::detail::host_link* host = relib::detail::module_host;
  if (host != nullptr && host->delete_key != nullptr) return host->delete_key(host->context, key);
  using delete_function = int (*)(pthread_key_t);
  static const auto original_delete = RELIB_DETAIL_ORIGINAL(delete_function, pthread_key_delete);
  return original_delete(key);
}

#if !defined(_WIN32)
/* Memory mappings made by module code and never unmapped are unmapped at unload. (Windows:
   VirtualAlloc is not followed; see docs/windows.md.) */
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

extern "C" void* mmap(void* address, std::size_t length, int protection, int flags, int fd, off_t offset) noexcept {
  void* mapped = reinterpret_cast<void*>(::syscall(SYS_mmap, address, length, protection, flags, fd, offset));
  const relib::detail::host_link* host = relib::detail::module_host;
  if (mapped != MAP_FAILED && host != nullptr && host->mapped != nullptr) host->mapped(host->context, mapped, length);
  return mapped;
}
extern "C" void* mmap64(void* address, std::size_t length, int protection, int flags, int fd, off_t offset) noexcept
    __attribute__((alias("mmap")));

extern "C" int munmap(void* address, std::size_t length) noexcept {
  const int result = static_cast<int>(::syscall(SYS_munmap, address, length));
  const relib::detail::host_link* host = relib::detail::module_host;
  if (result == 0 && host != nullptr && host->unmapped != nullptr) host->unmapped(host->context, address, length);
  return result;
}

/* atexit() as glibc's own does it in a library: tied to this module, so that dlclose() runs the
   handler. Defined here because a sanitizer's atexit (ThreadSanitizer's), bound first, would keep
   the handler for process exit, after the module is gone. */
extern "C" void* __dso_handle;
extern "C" int __cxa_atexit(void (*handler)(void*), void* argument, void* dso) noexcept;
extern "C" int atexit(void (*handler)(void)) noexcept {
  return __cxa_atexit(reinterpret_cast<void (*)(void*)>(reinterpret_cast<void*>(handler)), nullptr, &__dso_handle);
}
#endif /* !_WIN32: a DLL's atexit() handlers already run when it is unloaded */

#endif /* RELIB_DETAIL_UNLOADING || _WIN32 */

/* >>runtime ---- the module's own copy of the C++ runtime (relib_add_module links it statically) */
#if defined(__GLIBCXX__) || defined(_LIBCPP_VERSION)
/* The module's copy of the C++ runtime has its own terminate handler. libstdc++'s default one
   prints the exception's type with its demangler, 40 KB of code that every module would map;
   libc++'s says nothing of the module. This one prints the type, what() and the module's file,
   and borrows the process's demangler. Only the module's copy is set: the process's own handler
   is never replaced. */
namespace relib {
namespace detail {
[[noreturn]] void module_terminate() noexcept {
  static std::atomic<bool> terminating{false};
  if (terminating.exchange(true)) {
    std::fputs("relib: terminate called recursively in a module\n", stderr);
    std::abort();
  }
  const char* module = module_platform::file_name();
  const std::type_info* type = abi::__cxa_current_exception_type();
  if (type == nullptr) {
    std::fprintf(stderr, "relib: terminate called in module %s without an active exception\n", module);
    std::abort();
  }
  const char* name = type->name();
  if (*name == '*') ++name;  // libstdc++ marks some local types' names so
  using demangle_function = char* (*)(const char*, char*, std::size_t*, int*);
#if defined(_WIN32)
  const demangle_function demangle = nullptr;  // a DLL reaches only what it imports: the name stays mangled
#else
  const auto demangle = reinterpret_cast<demangle_function>(dlsym(RTLD_DEFAULT, "__cxa_demangle"));
#endif
  int status = -1;
  const char* readable = demangle != nullptr ? demangle(name, nullptr, nullptr, &status) : nullptr;
  std::fprintf(stderr, "relib: terminate called in module %s after throwing an instance of '%s'\n", module,
               status == 0 && readable != nullptr ? readable : name);
  std::free(const_cast<char*>(readable));  // abort() may return to a guarded call's host
  try {
    throw;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "  what():  %s\n", error.what());
  } catch (...) {
  }
  std::abort();
}
}  // namespace detail
}  // namespace relib

#if defined(__GLIBCXX__)
namespace __cxxabiv1 {  // libstdc++'s handler variable: defining it keeps its default handler out
RELIB_DETAIL_HIDDEN std::terminate_handler __terminate_handler = relib::detail::module_terminate;
}
#else
/* libc++abi keeps its handler variables and their setters in one object file with its default
   terminate handler, which brings libc++abi's demangler (about 120 KB). Defining all of them here
   keeps that file out of the module (relib_add_module's version script keeps the setters local).
   The variables are hidden: a module on the shared libc++ leaves the process's alone. */
extern "C" {
RELIB_DETAIL_HIDDEN void (*__cxa_terminate_handler)() = relib::detail::module_terminate;
RELIB_DETAIL_HIDDEN void (*__cxa_unexpected_handler)() = std::terminate;
RELIB_DETAIL_HIDDEN void (*__cxa_new_handler)() = nullptr;
}
namespace std {
terminate_handler set_terminate(terminate_handler handler) noexcept {
  return __atomic_exchange_n(&__cxa_terminate_handler, handler != nullptr ? handler : relib::detail::module_terminate,
                             __ATOMIC_ACQ_REL);
}
new_handler set_new_handler(new_handler handler) noexcept {
  return __atomic_exchange_n(&__cxa_new_handler, handler, __ATOMIC_ACQ_REL);
}
}  // namespace std
#endif
#endif

/* Where each exception was thrown. relib_add_module links the module with --wrap=__cxa_throw and
   --wrap=__cxa_free_exception, so every throw in module code and in its copy of the C++ runtime
   comes here first and records the return addresses on the stack, keyed by the exception object;
   the boundary (report_current_exception) hands the host the record of the exception it caught,
   and the host names the frames. Two records per thread cover an exception thrown and caught
   while another is handled; one whose object is freed is forgotten. Nothing runs until a throw.
   A module linked without the flags still works: its errors just carry no stack. */
#include <unwind.h>

namespace relib {
namespace detail {
struct thrown_stacks {
  thrown_stack records[2];
  unsigned next;
};
RELIB_DETAIL_HIDDEN inline thread_local thrown_stacks recent_throws{};

/* The module's code lies between its image's start and the end of its text, both placed by the
   linker; the walk stops at the first frame outside it, the caller of the module's entry point. */
#if defined(_WIN32)
extern "C" const char __ImageBase[];
extern "C" const char etext[];
#define RELIB_DETAIL_IMAGE_START __ImageBase
#define RELIB_DETAIL_TEXT_END etext
#define RELIB_DETAIL_TEXT_END_KNOWN true
#else
extern "C" const char __ehdr_start[] RELIB_DETAIL_HIDDEN;
extern "C" const char __etext[] __attribute__((visibility("hidden"), weak));
#define RELIB_DETAIL_IMAGE_START __ehdr_start
#define RELIB_DETAIL_TEXT_END __etext
#define RELIB_DETAIL_TEXT_END_KNOWN (__etext != nullptr)
#endif

struct stack_walk {
  void* first;  // the thrower's return address: the frames above it are relib's own
  thrown_stack* out;
};

inline _Unwind_Reason_Code record_frame(_Unwind_Context* context, void* argument) {
  auto* walk = static_cast<stack_walk*>(argument);
  void* address = reinterpret_cast<void*>(_Unwind_GetIP(context));
  if (walk->first != nullptr) {
    if (address != walk->first) return _URC_NO_REASON;
    walk->first = nullptr;
  }
  thrown_stack& out = *walk->out;
  const char* code = static_cast<const char*>(address);
  if (out.count > 0 && RELIB_DETAIL_TEXT_END_KNOWN &&
      (code < RELIB_DETAIL_IMAGE_START || code >= RELIB_DETAIL_TEXT_END)) {
    return _URC_END_OF_STACK;
  }
  if (out.count == thrown_stack::max_frames) return _URC_END_OF_STACK;
  out.frames[out.count++] = address;
  return _URC_NO_REASON;
}

__attribute__((noinline)) inline void record_throw(void* object, void* thrower) noexcept {
  thrown_stacks& recent = recent_throws;
  thrown_stack& record = recent.records[recent.next++ % 2];
  record.object = object;
  record.count = 0;
  stack_walk walk{thrower, &record};
  _Unwind_Backtrace(&record_frame, &walk);
}

const thrown_stack* stack_of_current_exception() noexcept {
  // libstdc++'s and libc++'s exception_ptr are the thrown object's address, and the one for a
  // rethrown exception_ptr is that of the object first thrown.
  const std::exception_ptr current = std::current_exception();
  static_assert(sizeof current == sizeof(void*), "an exception_ptr is expected to hold the object's address");
  const void* object = nullptr;
  std::memcpy(&object, static_cast<const void*>(&current), sizeof object);
  if (object == nullptr) return nullptr;
  thrown_stacks& recent = recent_throws;
  for (unsigned age = 1; age <= 2; ++age) {  // the newest first: an address may be used again
    const thrown_stack& record = recent.records[(recent.next - age) % 2];
    if (record.object == object && record.count > 0) return &record;
  }
  return nullptr;
}
}  // namespace detail
}  // namespace relib

extern "C" {
[[noreturn]] void __real___cxa_throw(void* object, std::type_info* type, void (*destroy)(void*)) __attribute__((weak));
void __real___cxa_free_exception(void* object) noexcept __attribute__((weak));

[[noreturn]] __attribute__((noinline)) void __wrap___cxa_throw(void* object, std::type_info* type,
                                                                void (*destroy)(void*)) {
  relib::detail::record_throw(object, __builtin_return_address(0));
  __real___cxa_throw(object, type, destroy);
}

void __wrap___cxa_free_exception(void* object) noexcept {
  for (relib::detail::thrown_stack& record : relib::detail::recent_throws.records) {
    if (record.object == object) record.object = nullptr;
  }
  __real___cxa_free_exception(object);
}
}

/* abort() in module code, the C++ runtime's (std::terminate) and assert()'s included, tells the
   host first: under the crash guard (load_options::crash_guard) the call returns
   call_errc::crashed from there; otherwise the host prints where, and the C library's abort()
   ends the process. Defined here, not caught as SIGABRT, so that no lock of the C library's is
   held when a guarded call jumps back. */
extern "C" __attribute__((noreturn)) void abort() noexcept {
  const relib::detail::host_link* host = relib::detail::module_host;
  if (host != nullptr && host->aborted != nullptr) host->aborted(reinterpret_cast<const void*>(&abort));
  using abort_function = void (*)();
#if defined(_WIN32)
  const auto process_abort = reinterpret_cast<abort_function>(relib::detail::module_platform::process_function("abort"));
#else
  const auto process_abort = reinterpret_cast<abort_function>(dlsym(RTLD_NEXT, "abort"));
#endif
  if (process_abort != nullptr) process_abort();
  __builtin_trap();
}

#if !defined(_WIN32)  // mingw-w64's assert() calls the C runtime DLL's _assert, which aborts there
extern "C" __attribute__((noreturn)) void __assert_fail(const char* assertion, const char* file, unsigned int line,
                                                         const char* function) noexcept {
  std::fprintf(stderr, "%s:%u: %s: Assertion `%s' failed.\n", file, line, function, assertion);
  abort();
}
#endif

#if RELIB_DETAIL_UNLOADING
/* The module's copy of libstdc++ keeps a block for exceptions thrown when memory runs out (about
   70 KB) and frees it only when asked, as valgrind does at exit: asked here, as the module's
   static objects are destroyed inside dlclose(). A module with its own allocator would otherwise
   leak it at every unload. Only the module's own copy is asked, never the host's. libc++abi's
   pool is a static buffer: nothing to free. */
namespace __gnu_cxx {
void __freeres() __attribute__((weak));
}
namespace relib {
namespace detail {
struct runtime_pool_release {
  ~runtime_pool_release() {
    if (&__gnu_cxx::__freeres != nullptr &&
        module_platform::in_this_module(reinterpret_cast<const void*>(&__gnu_cxx::__freeres))) {
      __gnu_cxx::__freeres();
    }
  }
} release_runtime_pool;
}  // namespace detail
}  // namespace relib

#if !defined(RELIB_CUSTOM_ALLOCATOR)
/* >>memory ---- the module's allocations go to its own mimalloc heaps --------------------------
   These definitions are local to the module (relib_add_module's version script), so they serve
   exactly the code in the module's image, its static C++ runtime included, and never libc
   or the dynamic loader. mimalloc heaps are bound to a thread, so each thread that allocates in
   module code gets a heap of its own, which the host learns about and destroys at unload (all
   blocks at once) when it safely can; see docs/unloading.md. Memory from elsewhere (libc's
   strdup, the host) goes back to the process's allocator. Define RELIB_CUSTOM_ALLOCATOR to keep
   your own. */
#include <mimalloc.h>

#include <cerrno>
#include <new>

namespace relib {
namespace detail {

/* Each thread's module heap is found through a pthread key (host_link::heap_key) rather than a
   thread_local: after many loads, glibc runs out of static TLS space for new libraries and their
   thread_locals take a slower path, while pthread_getspecific costs the same every time. Until
   the host link is set, while static constructors run on the loading thread, allocations use a
   heap of their own that the host adopts. */
mi_heap_t* module_static_init_heap = nullptr;
pthread_t module_static_init_thread;

__attribute__((noinline)) mi_heap_t* new_module_heap() {
  const host_link* host = module_host;
  if (host == nullptr || host->register_heap == nullptr) {  // static constructors, on the loading thread
    if (module_static_init_heap == nullptr) {
      module_static_init_heap = mi_heap_new();
      module_static_init_thread = pthread_self();
    }
    return module_static_init_heap;
  }
  mi_heap_t* heap = nullptr;
  if (module_static_init_heap != nullptr && pthread_equal(module_static_init_thread, pthread_self())) {
    heap = module_static_init_heap;  // already registered by the host at load
  } else {
    heap = mi_heap_new();
    host->register_heap(host->context, heap);
  }
  pthread_setspecific(host->heap_key, heap);
  return heap;
}

/* In front of the key, a small table from thread pointer to heap answers without a call. A slot
   belongs to one live thread; the host empties it as that thread exits. */
struct heap_slot {
  std::atomic<std::uintptr_t> thread{0};  // the owner's thread pointer; 0 free, 1 being claimed
  mi_heap_t* heap = nullptr;
};
heap_slot module_heap_slots[64];

inline std::uintptr_t this_thread_pointer() { return module_platform::thread_pointer(); }
inline heap_slot& heap_slot_of(std::uintptr_t thread) {
  return module_heap_slots[(thread * 0x9E3779B97F4A7C15ull) >> 58];  // top 6 bits: 64 slots
}

__attribute__((noinline)) mi_heap_t* module_heap_slow(std::uintptr_t thread) {
  const host_link* host = module_host;
  mi_heap_t* heap = host != nullptr ? static_cast<mi_heap_t*>(pthread_getspecific(host->heap_key)) : nullptr;
  if (heap == nullptr) heap = new_module_heap();
  if (host != nullptr && host->register_heap_slot != nullptr && host->register_heap != nullptr) {
    heap_slot& slot = heap_slot_of(thread);
    std::uintptr_t free_slot = 0;
    if (slot.thread.compare_exchange_strong(free_slot, 1, std::memory_order_acquire)) {
      slot.heap = heap;
      slot.thread.store(thread, std::memory_order_release);
      host->register_heap_slot(host->context, &slot.thread);
    }
  }
  return heap;
}

inline mi_heap_t* module_heap() {
  const std::uintptr_t thread = this_thread_pointer();
  heap_slot& slot = heap_slot_of(thread);
  if (RELIB_DETAIL_LIKELY(slot.thread.load(std::memory_order_acquire) == thread)) return slot.heap;
  return module_heap_slow(thread);
}

/* AddressSanitizer and ThreadSanitizer say whether their allocator made a block (null without). */
extern "C" int __sanitizer_get_ownership(const volatile void* block) __attribute__((weak));

/* Whether mimalloc (rather than libc or the host's allocator) made a block. Blocks in the host's
   arena are answered with two compares; mimalloc is asked about the others. mimalloc 2.0 knows
   its segments only below 20 TiB, where a sanitizer's shadow memory may leave no room for the
   arena: there a block that the sanitizer's allocator did not make is mimalloc's. */
inline bool is_mimalloc_block(const void* block) noexcept {
  const host_link* host = module_host;  // null while static constructors run: mimalloc is asked
  if (RELIB_DETAIL_LIKELY(host != nullptr) && host->module_heap_arena.contains(block)) return true;
  if (mi_is_in_heap_region(block)) return true;
  return block != nullptr && &__sanitizer_get_ownership != nullptr && __sanitizer_get_ownership(block) == 0;
}

/* The process's allocator, for blocks that are not mimalloc's (libc's strdup, the host's): the
   `free` and `realloc` the dynamic loader gives everyone else, whichever allocator that is (glibc,
   jemalloc or tcmalloc preloaded or linked, the host's own). The global scope is searched before
   the module's own, whose definitions are local anyway. Looked up at first use. */
template <class Function>
Function process_function(std::atomic<Function>& cache, const char* name, Function fallback) noexcept {
  Function found = cache.load(std::memory_order_acquire);
  if (RELIB_DETAIL_LIKELY(found != nullptr)) return found;
  found = reinterpret_cast<Function>(module_platform::process_function(name));
  if (found == nullptr) found = fallback;
  cache.store(found, std::memory_order_release);
  return found;
}
using free_function = void (*)(void*);
using realloc_function = void* (*)(void*, std::size_t);
using usable_size_function = std::size_t (*)(void*);
inline std::atomic<free_function> process_free_cache{nullptr};
inline std::atomic<realloc_function> process_realloc_cache{nullptr};
inline std::atomic<usable_size_function> process_usable_size_cache{nullptr};
inline std::size_t no_usable_size(void*) noexcept { return 0; }
/* Used only if the lookup fails: glibc's own functions; on Windows nothing better than a leak. */
#if defined(_WIN32)
inline void process_free_fallback(void*) noexcept {}
inline void* process_realloc_fallback(void*, std::size_t) noexcept { return nullptr; }
#else
extern "C" void __libc_free(void*) noexcept;
extern "C" void* __libc_realloc(void*, std::size_t) noexcept;
inline void process_free_fallback(void* block) noexcept { __libc_free(block); }
inline void* process_realloc_fallback(void* block, std::size_t size) noexcept { return __libc_realloc(block, size); }
#endif

/* What free_watching_exits needs on the module's side: mimalloc, and the host's list. */
struct module_side {
  static void free_now(void* block) noexcept { mi_free(block); }
  static void* realloc_now(void* block, std::size_t size) noexcept { return mi_heap_realloc(module_heap(), block, size); }
  static void* allocate(std::size_t size) noexcept { return mi_heap_malloc(module_heap(), size); }
  static std::size_t usable_size(const void* block) noexcept { return mi_usable_size(block); }
  static void free_listed(void* block) noexcept { module_host->free_listed_block(block); }
  static void forget(void* block) noexcept { module_host->forget_listed_block(block); }
};

inline void module_free(void* block) noexcept {
  if (RELIB_DETAIL_LIKELY(is_mimalloc_block(block))) {
    const host_link* host = module_host;
    if (RELIB_DETAIL_LIKELY(host != nullptr && host->exited_blocks != nullptr)) {
      free_watching_exits<module_side>(*host->exited_blocks, block);
    } else {
      mi_free(block);
    }
  } else if (block != nullptr) {
    process_function(process_free_cache, "free", static_cast<free_function>(&process_free_fallback))(block);
  }
}

inline void* module_realloc(void* block, std::size_t size) noexcept {
  const host_link* host = module_host;
  if (block == nullptr || host == nullptr || host->exited_blocks == nullptr) return module_side::realloc_now(block, size);
  return realloc_watching_exits<module_side>(*host->exited_blocks, block, size);
}

inline void* module_new(std::size_t size, std::size_t alignment) {
  for (;;) {
    void* block = alignment <= alignof(std::max_align_t) ? mi_heap_malloc(module_heap(), size)
                                                         : mi_heap_malloc_aligned(module_heap(), size, alignment);
    if (RELIB_DETAIL_LIKELY(block != nullptr)) return block;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

inline void* module_new_nothrow(std::size_t size, std::size_t alignment) noexcept {
  try {
    return module_new(size, alignment);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace detail
}  // namespace relib

extern "C" RELIB_DETAIL_VISIBLE mi_heap_t** const relib_static_init_heap = &relib::detail::module_static_init_heap;

namespace relib {
namespace detail {
/* While static constructors run, a block larger than a page gets pages of its own: mimalloc 2.0
   prepares the free list of four blocks of a size class at its first use, writing a page of each,
   and above 128 KiB it gives a block a span of its own instead. The emergency exception pool of
   the module's libstdc++ (about 73 KB, allocated at every load) then makes one page resident
   instead of five. Later allocations are left alone: there the prepared blocks get used. */
constexpr std::size_t page_size_bound = 4096, mimalloc_medium_size_max = 128 * 1024;
inline std::size_t load_time_block_size(std::size_t size) noexcept {
  if (RELIB_DETAIL_LIKELY(size <= page_size_bound) || size > mimalloc_medium_size_max || module_host != nullptr) {
    return size;
  }
  return mimalloc_medium_size_max + 1;
}
}  // namespace detail
}  // namespace relib

extern "C" {
void* malloc(std::size_t size) noexcept {
  return mi_heap_malloc(relib::detail::module_heap(), relib::detail::load_time_block_size(size));
}
void* calloc(std::size_t count, std::size_t size) noexcept {
  return mi_heap_calloc(relib::detail::module_heap(), count, size);
}
void* realloc(void* block, std::size_t size) noexcept {
  if (block != nullptr && !relib::detail::is_mimalloc_block(block)) {  // stays the process allocator's
    using relib::detail::realloc_function;
    return relib::detail::process_function(relib::detail::process_realloc_cache, "realloc",
                                           static_cast<realloc_function>(&relib::detail::process_realloc_fallback))(block, size);
  }
  return relib::detail::module_realloc(block, size);
}
void free(void* block) noexcept { relib::detail::module_free(block); }
/* The C runtime's other allocation functions (_aligned_malloc, _msize) are declared dllimport by
   mingw-w64's headers, so module code always calls the DLL's: blocks from _aligned_malloc stay the
   C runtime's, and _msize must not be given a block from malloc. */
#if !defined(_WIN32)
void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept {
  return mi_heap_malloc_aligned(relib::detail::module_heap(), size, alignment);
}
void* memalign(std::size_t alignment, std::size_t size) noexcept {
  return mi_heap_malloc_aligned(relib::detail::module_heap(), size, alignment);
}
int posix_memalign(void** out, std::size_t alignment, std::size_t size) noexcept {
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* block = mi_heap_malloc_aligned(relib::detail::module_heap(), size, alignment);
  if (block == nullptr) return ENOMEM;
  *out = block;
  return 0;
}
std::size_t malloc_usable_size(void* block) noexcept {
  if (block == nullptr) return 0;
  if (relib::detail::is_mimalloc_block(block)) return mi_usable_size(block);
  using relib::detail::usable_size_function;
  return relib::detail::process_function(relib::detail::process_usable_size_cache, "malloc_usable_size",
                                         static_cast<usable_size_function>(&relib::detail::no_usable_size))(block);
}
#endif
}

void* operator new(std::size_t size) { return relib::detail::module_new(size, 0); }
void* operator new[](std::size_t size) { return relib::detail::module_new(size, 0); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return relib::detail::module_new_nothrow(size, 0); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return relib::detail::module_new_nothrow(size, 0); }
void* operator new(std::size_t size, std::align_val_t alignment) {
  return relib::detail::module_new(size, static_cast<std::size_t>(alignment));
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return relib::detail::module_new(size, static_cast<std::size_t>(alignment));
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return relib::detail::module_new_nothrow(size, static_cast<std::size_t>(alignment));
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return relib::detail::module_new_nothrow(size, static_cast<std::size_t>(alignment));
}
void operator delete(void* block) noexcept { relib::detail::module_free(block); }
void operator delete[](void* block) noexcept { relib::detail::module_free(block); }
void operator delete(void* block, std::size_t) noexcept { relib::detail::module_free(block); }
void operator delete[](void* block, std::size_t) noexcept { relib::detail::module_free(block); }
void operator delete(void* block, const std::nothrow_t&) noexcept { relib::detail::module_free(block); }
void operator delete[](void* block, const std::nothrow_t&) noexcept { relib::detail::module_free(block); }
void operator delete(void* block, std::align_val_t) noexcept { relib::detail::module_free(block); }
void operator delete[](void* block, std::align_val_t) noexcept { relib::detail::module_free(block); }
void operator delete(void* block, std::size_t, std::align_val_t) noexcept { relib::detail::module_free(block); }
void operator delete[](void* block, std::size_t, std::align_val_t) noexcept { relib::detail::module_free(block); }
void operator delete(void* block, std::align_val_t, const std::nothrow_t&) noexcept { relib::detail::module_free(block); }
void operator delete[](void* block, std::align_val_t, const std::nothrow_t&) noexcept { relib::detail::module_free(block); }
#endif /* RELIB_CUSTOM_ALLOCATOR */
#endif

#if defined(_WIN32) && !defined(RELIB_MODULE_OWN_DLLMAIN)
/* The module's DllMain. libmimalloc.dll exports its own, which a DLL without one imports: every
   load and unload of the module would then run mimalloc's process start-up and shut-down again (a
   weak definition here would lose to that import). Start-up code belongs in RELIB_MODULE_MAIN,
   which runs outside the loader lock. */
extern "C" BOOL WINAPI DllMain(HINSTANCE, DWORD reason, LPVOID) {
#if RELIB_DETAIL_UNLOADING && !defined(RELIB_CUSTOM_ALLOCATOR)
  // mimalloc built by mingw-w64 keeps a thread's state in emulated TLS, which is freed before
  // libmimalloc.dll hears that the thread ends: it would keep the thread's pages for good. This
  // DLL, loaded after it, hears first, while that state is still there.
  if (reason == DLL_THREAD_DETACH) mi_thread_done();
#endif
  (void)reason;
  return TRUE;
}
#endif

/* >>fatal mistakes ---- reported, then the process ends: they happen inside module code ---- */
namespace relib {
namespace detail {
void report_unlinked_import(const char* name, const char* signature) noexcept {
  std::fprintf(stderr,
               "relib: the module called import '%s' (%s) before the host linked its imports, which "
               "happens when a static constructor calls an import. Move that call into main or an "
               "export. Aborting.\n",
               name, signature);
  std::abort();
}
void report_missing_state() noexcept {
  std::fprintf(stderr,
               "relib: relib::module_state() was called before the host attached the state block, which "
               "happens in a static constructor. Use the state from main or an export. Aborting.\n");
  std::abort();
}
}  // namespace detail
}  // namespace relib

#endif /* RELIB_IMPLEMENTATION */

/*
relib is released under the MIT License (also in the file LICENSE).

Copyright (c) 2026 the relib authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
*/
