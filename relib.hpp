/* relib.hpp -- load, call and unload native modules (shared libraries) from a host program.

   relib turns a shared library into a typed module: the interface is declared once as X-macro
   lists in a header shared by host and module, every export and import signature is checked
   against the file before any module code runs, exceptions stop at the boundary, and unload()
   checks that the library is really gone from the process.

   DO THIS in exactly one source file of the host:

       #define RELIB_IMPLEMENTATION
       #include "relib.hpp"

   and link the target with relib::host (CMake), which adds -ldl and threads and defines RELIB_HOST.
   Without CMake, include relib.hpp before any interface header in that file, or define RELIB_HOST
   for the whole host; the other order is a compile-time error that says so.

   USAGE (game_api.hpp declares GAME_EXPORTS and GAME_IMPORTS, see relib_module.hpp)

       RELIB_HOST_EXPORTS(game_exports, GAME_EXPORTS);  // struct game_exports { add, tick }
       RELIB_HOST_IMPORTS(game_imports, GAME_IMPORTS);  // struct game_imports { static log }

       void game_imports::log(const char* msg) { std::puts(msg); }  // imports: ordinary functions

       auto loaded = relib::load_module<game_exports>("libgame.so", game_imports{});
       if (!loaded) { std::cerr << loaded.error().message << '\n'; return 1; }
       relib::module<game_exports> game = std::move(*loaded);

       relib::call_result<int> sum = game.exports().add(1, 2);  // empty if the export threw
       if (sum) use(*sum); else std::cerr << sum.error().message << '\n';
       game.call_main<int>();                                    // the module's RELIB_MODULE_MAIN
       auto unloaded = game.unload();                            // reports errors, never throws

   PUBLIC API (namespace relib)
       load_module<Exports, Imports>(path, Imports{}, load_options{}) -> result<module<Exports>, load_error>
           Refuses a file that users other than this process's and root could have written, the
           file itself or a directory above it (load_errc::untrusted_file; see docs/safety.md),
           unless load_options::require_trusted_file is false. Reads the file first: the ELF gate
           (everything the dynamic loader would trust: segments, dynamic tables, relocations;
           damaged_file names the field), relib version, compiler, standard-library ABI, every
           signature, already-loaded check by file identity. Then loads that very file through
           the descriptor it checked (kept open while the module is loaded) and links imports
           ($ORIGIN modules: by path, see README). A path without a slash is a file in the
           working directory, never a library search. Omit Exports/Imports for a module without
           them (no_exports, no_imports).
       module<Exports>::exports()       the typed exports; each call returns call_result<R>
       module<Exports>::call_main<R>()  calls RELIB_MODULE_MAIN; R is checked against the module
       module<Exports>::unload()        before_unload; refuses while module threads run or other
                                        threads hold module thread_locals; runs this thread's
                                        module thread_local destructors; dlclose; verifies the
                                        library is gone; destroys the module's heap on this thread
                                        and returns an unload_report (time, threads, memory
                                        reclaimed and not). Not with RELIB_NO_UNLOADING. The
                                        destructor unloads too, printing any error.
       module<Exports>::is_loaded(), path()
       load_live_module<Exports, Imports>(path, Imports{}, live_options{})
                                        -> result<live_module<Exports>, reload_error>
           Loads a private copy of the file, calls its main (RELIB_MODULE_MAIN(void)) and watches
           the file with inotify; the trust policy checks the file before each copy
           (live_options::require_trusted_file). docs/live-reload.md tells the whole story.
       live_module<Exports>::update()   the per-frame check: one atomic load while nothing changed;
                                        when a new build is complete (closed, settled, nobody
                                        writing it) unloads the running version and loads the
                                        new one -> result<bool, reload_error>, true if it did. On
                                        an error a version keeps running (the previous one, loaded
                                        again if need be) and the next build is tried.
       live_module<Exports>::exports()  one object for the module's life, calling the version
                                        running now; also reload(), changed(), wait_for_change(),
                                        generation(), state<T>(), on_reload(before, after), unload()
       to_string(unload_report)         the report as lines to print
       module_heap_arena()              the address range reserved for module heaps
       memory_awaiting_reclamation()    module heaps of unloaded modules that other live threads
                                        still own; each thread destroys its own at exit
       result<T, E>                     value or error: has_value(), operator bool, value(), *, ->,
                                        error(); value() on an error throws bad_result_access
       load_error, unload_error, call_error, reload_error: a code (load_errc...), the fields it is
                                        about (module, reason; function and exception for calls;
                                        the inner error for reloads) and a message made from them
                                        that names the module, the function and the fix
       to_string(code), explain(code)   a code's name, and one line on its cause
       call_error::stack                where the export threw: stack_frame{address, object, offset,
                                        function, source_file, line}, named from the loaded file
                                        (docs/diagnostics.md); to_string(frame) prints one
       load_options::crash_guard        (and live_options::) a crash in module code during a call
                                        returns call_errc::crashed (signal, fault_address, stack)
                                        and poisons the module; a live module's next update()
                                        brings back the version before. Without it, a crash in
                                        module code is reported with its stack, then ends the
                                        process as it would have. docs/diagnostics.md says what
                                        is unsafe about going on after a crash
       set_log_function(f)              one line per step of load, unload and reload to f; by
                                        default to stderr when RELIB_LOG=1 is in the environment
   The tool relib-inspect (tools/, installed with the headers) reads a module without running it;
   RELIB_HOST_EXPORTS and RELIB_HOST_IMPORTS record the host's side for its --host option.

   After unload (or a move), the module's exports stay callable and return call_errc::not_loaded
   instead of crashing. Loading, calling and unloading are safe from several threads; two threads
   loading the same file get one module and one load_errc::already_loaded. Do not unload a module
   while another thread is inside one of its exports.

   HOT RELOAD: a module declares RELIB_MODULE_STATE(type, version) (see relib_module.hpp); the
   live module owns that block and hands it to every version, and a version change runs the new
   version's RELIB_MODULE_MIGRATE_STATE or refuses the build (load_errc::state_mismatch).

   CONFIGURATION (define before including relib.hpp)
       RELIB_NO_UNLOADING   (and the same in the module) modules stay loaded until the process
                            exits; unload() is compiled out, as are its checks and live modules;
                            a module built otherwise is refused at load.
       RELIB_MODULE_ARENA_SIZE  bytes of address space reserved (not committed) for the module
                            heaps, once, at the first load of a module that uses them (default
                            16 GiB; 0: none). Module free() then knows a heap block by its address
                            instead of asking mimalloc. Skipped when RLIMIT_AS is set.
       RELIB_NO_FREE_INTERPOSITION  the implementation does not define free, realloc,
                            malloc_usable_size and operator delete, which otherwise recognize
                            blocks that module code allocated and the host frees (a std::string
                            returned by value); with it, such blocks must be freed by module code.

   READING THE IMPLEMENTATION: search for ">>implementation"; its section map names each part
   (>>platform holds every OS call, >>load, >>unload and >>live reload the three main paths).

   LICENSE: MIT, in full at the end of this file and in LICENSE.
*/
#if defined(RELIB_IMPLEMENTATION) && defined(RELIB_DETAIL_MODULE_IMPLEMENTED)
#error "relib: this file defines RELIB_IMPLEMENTATION and included relib_module.hpp (directly or through an interface header) before relib.hpp, so it received the module side (malloc, free, pthread_create...). In a host, include relib.hpp first, or define RELIB_HOST before every include (the CMake target relib::host does) so that the order does not matter."
#endif

#ifndef RELIB_HPP_INCLUDED
#define RELIB_HPP_INCLUDED

/* >>configuration ---- every macro a host may define, with its default --------------------------
     RELIB_IMPLEMENTATION         in one file of the host: the implementation goes there
     RELIB_HOST                   this is a host (relib::host defines it): include order is free
     RELIB_NO_UNLOADING           modules stay loaded (read by relib_module.hpp; host and module agree)
     RELIB_MODULE_ARENA_SIZE      address space reserved for module heaps (below; 0: none)
     RELIB_NO_FREE_INTERPOSITION  no free/realloc/malloc_usable_size/operator delete in the host (>>free interposition)
   The manual above says what each does. */
#if !defined(RELIB_MODULE_ARENA_SIZE)
#define RELIB_MODULE_ARENA_SIZE (std::size_t{16} << 30)
#endif

#define RELIB_DETAIL_HOST_SIDE
#include "relib_module.hpp"

#include <atomic>
#include <chrono>
#include <csetjmp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

/* >>results ---- result<T, E>: a value or an error ------------------------------------------- */

/* A failure path kept out of line, so that what calls it stays small enough to inline: clang does
   not inline result::value() when the throw is in it, which costs a call on every export call. */
#if defined(__GNUC__)
#define RELIB_DETAIL_COLD __attribute__((noinline, cold))
#else
#define RELIB_DETAIL_COLD
#endif

namespace relib {

class bad_result_access : public std::logic_error {
 public:
  explicit bad_result_access(const std::string& message) : std::logic_error(message) {}
};

/* A value or an error, like C++23's std::expected. Errors carry a `message` member. */
template <class T, class E>
class result {
 public:
  result(T value) : ok_(true) { ::new (static_cast<void*>(&value_)) T(std::move(value)); }
  result(E error) : ok_(false) { ::new (static_cast<void*>(&error_)) E(std::move(error)); }
  result(const result& other) : ok_(other.ok_) { construct_from(other); }
  result(result&& other) noexcept(std::is_nothrow_move_constructible_v<T>) : ok_(other.ok_) {
    construct_from(std::move(other));
  }
  result& operator=(const result& other) { return assign(other); }
  result& operator=(result&& other) noexcept(std::is_nothrow_move_constructible_v<T>) {
    return assign(std::move(other));
  }
  ~result() { destroy(); }

  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }

  T& value() & { return check(), value_; }
  const T& value() const& { return check(), value_; }
  T value() && { return check(), std::move(value_); }  // by value: a temporary result can be read in registers
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const {
    if (ok_) throw bad_result_access("relib: error() called on a result that holds a value");
    return error_;
  }

 private:
  void check() const {
    if (!ok_) throw_failed();
  }
  [[noreturn]] RELIB_DETAIL_COLD void throw_failed() const {
    throw bad_result_access("relib: value() called on a failed result: " + error_.message);
  }
  template <class Other>
  void construct_from(Other&& other) {
    if (ok_) {
      ::new (static_cast<void*>(&value_)) T(std::forward<Other>(other).value_);
    } else {
      ::new (static_cast<void*>(&error_)) E(std::forward<Other>(other).error_);
    }
  }
  template <class Other>
  result& assign(Other&& other) {
    if (this != &other) {
      destroy();
      ok_ = other.ok_;
      construct_from(std::forward<Other>(other));
    }
    return *this;
  }
  void destroy() noexcept {
    if (ok_) {
      value_.~T();
    } else {
      error_.~E();
    }
  }

  union {
    T value_;
    E error_;
  };
  bool ok_;
};

template <class E>
class result<void, E> {
 public:
  result() = default;
  result(E error) : error_(std::move(error)) {}
  bool has_value() const noexcept { return !error_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const {
    if (error_) throw bad_result_access("relib: value() called on a failed result: " + error_->message);
  }
  const E& error() const {
    if (!error_) throw bad_result_access("relib: error() called on a result that holds a value");
    return *error_;
  }

 private:
  std::optional<E> error_;
};

/* >>errors ---- every error code and the one line that explains it, in one list per operation. Each
   list expands into the enum, to_string(code) (the code's name) and explain(code) (the line);
   docs/errors.md tells each at length, and a test checks that it names every code. */
#define RELIB_LOAD_ERRORS(X)                                                                              \
  X(file_not_found, "nothing can be opened at that path")                                                 \
  X(not_a_file, "the path names a directory or another file that is not a regular file")                  \
  X(untrusted_file, "users other than this process's and root can write it or a directory above it")      \
  X(not_elf, "the file is empty, text, or of another format")                                             \
  X(damaged_file, "an ELF file that is truncated (still being written?) or malformed")                    \
  X(wrong_architecture, "an ELF file for another machine or word size")                                   \
  X(not_shared_library, "an executable or object file, not a shared library")                             \
  X(not_a_relib_module, "a shared library without relib's records, or whose records name missing symbols") \
  X(version_mismatch, "built with another relib version")                                                 \
  X(compiler_mismatch, "built by another compiler family or major version")                               \
  X(stdlib_mismatch, "built against another C++ standard-library ABI")                                    \
  X(unloading_mismatch, "RELIB_NO_UNLOADING differs between host and module")                             \
  X(missing_export, "the host declares an export the module lacks")                                       \
  X(missing_import, "the module needs an import the host does not provide")                               \
  X(signature_mismatch, "an export, import or main differs between host and module")                      \
  X(already_loaded, "the same file (by device and inode) is already loaded")                              \
  X(dlopen_failed, "the dynamic loader refused it (an unresolved symbol, a missing dependency...)")       \
  X(state_mismatch, "its RELIB_MODULE_STATE cannot take over the kept state (type or version changed)")   \
  X(state_migration_failed, "its RELIB_MODULE_MIGRATE_STATE, or the state's constructor, threw")    \
  X(not_on_this_platform, "an option this platform does not offer (load_options::crash_guard on Windows)")

#define RELIB_UNLOAD_ERRORS(X)                                                                     \
  X(not_loaded, "already unloaded, or the module object was moved from")                          \
  X(before_unload_failed, "before_unload threw: the module stays loaded and usable")               \
  X(threads_still_running, "threads started by module code still run: the module stays loaded")   \
  X(thread_locals_pending, "other live threads hold module thread_locals: the module stays loaded") \
  X(still_loaded, "dlclose() ran but the library is still in the process")

#define RELIB_CALL_ERRORS(X)                                                                             \
  X(exception, "the function threw; exception_type and what describe it")                              \
  X(not_loaded, "the module was unloaded, or the module object moved from")                             \
  X(no_main, "call_main() on a module without RELIB_MODULE_MAIN")                                       \
  X(main_signature_mismatch, "call_main<R>() with an R other than the module's")                        \
  X(crashed, "the call crashed (a signal, or abort()) under the crash guard: the module is now poisoned") \
  X(poisoned, "an earlier call crashed under the crash guard: the module can only be unloaded")

#define RELIB_RELOAD_ERRORS(X)                                                                                \
  X(watch_failed, "the module's directory cannot be watched")                                                 \
  X(copy_failed, "the module file cannot be copied")                                                          \
  X(load_failed, "the new build was refused")                                                                 \
  X(unload_failed, "the running version did not unload")                                                      \
  X(main_failed, "the new version's main threw")                                                              \
  X(rollback_failed, "the new version failed, and bringing the previous one back failed too")

#define RELIB_DETAIL_ENUMERATOR(code, explanation) code,
enum class load_errc { RELIB_LOAD_ERRORS(RELIB_DETAIL_ENUMERATOR) };
enum class unload_errc { RELIB_UNLOAD_ERRORS(RELIB_DETAIL_ENUMERATOR) };
enum class call_errc { RELIB_CALL_ERRORS(RELIB_DETAIL_ENUMERATOR) };
#if RELIB_DETAIL_UNLOADING
enum class reload_errc { RELIB_RELOAD_ERRORS(RELIB_DETAIL_ENUMERATOR) };
#endif

/* Each error carries what it is about as fields; `message` is formatted once from them:
   "relib: cannot <operation> module '<module>': <reason>". */
struct load_error {
  load_errc code;
  std::string module;   // the path given to load_module (a live module's watched path)
  std::string reason;   // what went wrong and how to fix it
  std::string message;  // the whole sentence, to print
};

struct unload_error {
  unload_errc code;
  std::string module;
  std::string reason;
  std::string message;
};

/* One frame of a stack recorded in module code, named while the module was loaded. */
struct stack_frame {
  std::uintptr_t address = 0;  // the instruction: for a caller, the call (its return address - 1)
  std::string object;          // the file: the module (as the host named it) or another library
  std::uintptr_t offset = 0;   // `address` in that file, as `addr2line -e <object> <offset>` takes it
  std::string function;        // demangled; empty when the file has no symbol for it (stripped)
  std::string source_file;     // with debug information (-g); empty without
  unsigned line = 0;           // 0 without debug information
};

struct call_error {
  call_errc code;
  std::string module;
  std::string function;        // export name, "main", "before_unload", "state" or "migrate_state"
  std::string exception_type;  // demangled, for call_errc::exception
  std::string what;            // what() of a std::exception, empty for other types
  // Where it was thrown (or crashed), innermost frame first, down to the module's entry point;
  // empty when the module was built without relib_add_module() or the exception was rethrown
  // from an exception_ptr. The message lists it too.
  std::vector<stack_frame> stack;
  // call_errc::crashed (and poisoned, about the crash that poisoned the module): the signal
  // (SIGSEGV, SIGBUS, SIGFPE, SIGILL; SIGABRT for abort()) and the address it names (the bad
  // access for SIGSEGV and SIGBUS, the instruction for SIGFPE and SIGILL, 0 for abort()).
  int signal = 0;
  std::uintptr_t fault_address = 0;
  std::string message;
};

template <class R>
using call_result = result<R, call_error>;

#if RELIB_DETAIL_UNLOADING
struct reload_error {
  reload_errc code;
  std::string module;  // the watched path
  std::string reason;  // what failed (the inner error's reason) and which version runs now
  std::string message;
  std::optional<load_error> load;      // load_failed, rollback_failed: why the new version was refused
  std::optional<unload_error> unload;  // unload_failed
  std::optional<call_error> call;      // main_failed
  std::uint64_t running_version = 0;   // the generation() serving calls now; 0: none
};

#endif

/* A code's name ("file_not_found"), and the line that explains it. */
const char* to_string(load_errc code) noexcept;
const char* to_string(unload_errc code) noexcept;
const char* to_string(call_errc code) noexcept;
const char* explain(load_errc code) noexcept;
const char* explain(unload_errc code) noexcept;
const char* explain(call_errc code) noexcept;
#if RELIB_DETAIL_UNLOADING
const char* to_string(reload_errc code) noexcept;
const char* explain(reload_errc code) noexcept;
#endif

/* >>reports ---- what unload() measured, and module memory still to reclaim ------------------- */

struct unload_report {
  std::string module;
  std::chrono::nanoseconds duration{};          // from the unload() call to the verified absence
  std::size_t threads_started = 0;              // by module code while it was loaded (all ended)
  std::size_t thread_local_destructors_run = 0;  // at unload, for the unloading thread's thread_locals
  // Memory the module allocated and never freed: this thread's heap, destroyed at once, and the
  // blocks left by threads that exited while the module was loaded.
  std::size_t reclaimed_blocks = 0;
  std::size_t reclaimed_bytes = 0;
  // Memory that could not be reclaimed yet (mimalloc heaps are bound to their thread): the blocks
  // in heaps of other live threads, which those threads destroy later.
  std::size_t unreclaimed_blocks = 0;
  std::size_t unreclaimed_bytes = 0;
  std::string unreclaimed_reason;  // empty when everything was reclaimed
  std::size_t pthread_keys_deleted = 0;   // created by module code and left behind
  std::size_t mapped_bytes_unmapped = 0;  // mmap()ed by module code and left behind
};

/* The report as a few lines a host can print. */
std::string to_string(const unload_report& report);

/* A frame as one line: "level3(int) at src/level.cpp:12 (libgame.so+0x1a2b)". */
std::string to_string(const stack_frame& frame);

/* Module memory that an unload could not reclaim yet because another live thread owns the heap;
   each such thread destroys it when it exits, next allocates in module code, or calls
   load_module() or unload(). */
struct pending_memory {
  std::size_t heaps = 0;
  std::size_t blocks = 0;
  std::size_t bytes = 0;
};
pending_memory memory_awaiting_reclamation();

/* The address space reserved for module heaps (RELIB_MODULE_ARENA_SIZE) at the first load of a
   module that uses them; empty before that, when it is 0, or under an address-space limit. */
address_range module_heap_arena() noexcept;

/* >>log (its public part) ---- what relib does, step by step, when asked -------------------------
   Receives relib's log: one line per step of each load, unload and reload ("relib: load
   'libgame.so': checked ..."), one call at a time, from the thread doing the step. The function
   must not call relib. An empty function restores the default: standard error when the process
   started with RELIB_LOG=1 in its environment, else nothing. Costs one load per step when off. */
using log_function = std::function<void(std::string_view line)>;
void set_log_function(log_function function);

/* For modules without exports or imports. */
struct no_exports {
  template <class Visitor>
  void relib_visit(Visitor&&) {}
};
struct no_imports {
  template <class Visitor>
  static void relib_visit(Visitor&&) {}
};

}  // namespace relib

/* >>template plumbing ---- private: what the public templates need from the implementation ---- */

namespace relib {
namespace detail {

struct module_core;  // a loaded module's private record (see the implementation)

struct interface_entry {
  std::string_view name;
  std::string_view signature;
  std::string_view layout;
};

struct export_binding {
  interface_entry entry;
  void* object;
  void (*bind)(void* object, const void* symbol, const module_core* owner);
  // Back to failing with not_loaded; `owner` names the module in that error and must outlive the
  // binding's next bind (null: no module to name).
  void (*unbind)(void* object, const module_core* owner);
};

struct import_binding {
  interface_entry entry;
  void (*link)(const void* symbol);
};

struct kept_state;      // a state block owned by the host (see the implementation)
struct inspected_file;  // a file already read and checked (see the implementation)

struct load_request {
  std::string path;  // the file to open
  std::string name;  // what errors call the module: the path given by the host (a live module's
                     // watched path while a private copy is opened); empty: `path`
  std::vector<export_binding> exports;
  std::vector<import_binding> imports;
  std::shared_ptr<kept_state> state;  // a live module's block; null: the module gets its own
  std::shared_ptr<inspected_file> inspected;  // a live module's private copy, checked already
  bool require_trusted_file = true;  // load_options::require_trusted_file
  bool crash_guard = false;          // load_options::crash_guard
};

struct module_core_deleter {
  void operator()(module_core* core) const noexcept;
};
using module_core_pointer = std::unique_ptr<module_core, module_core_deleter>;

result<module_core_pointer, load_error> load_core(load_request request);
enum class before_unload_step { run, skip };  // skip: main and the state never reached the module
result<unload_report, unload_error> unload_core(module_core& core, before_unload_step step = before_unload_step::run);
void abandon_core(module_core& core) noexcept;  // RELIB_NO_UNLOADING: keep it loaded for good
/* What a module object does as it goes: unloads the module (printing an error it cannot return)
   or, with RELIB_NO_UNLOADING, leaves it loaded for good. */
void release_core(module_core_pointer& core) noexcept;
/* For module<Exports>'s accessors; `core` is null for a moved-from object. */
bool core_is_loaded(const module_core* core) noexcept;
const std::string& core_path(const module_core* core) noexcept;
/* The module's main thunk when it is loaded, has a main, and that main is `signature`. */
result<const void*, call_error> find_main(const module_core* core, std::string_view signature, std::string_view layout);

void record_call_failure(const char* mangled_type, const char* what, void* const* thrown_at, std::size_t thrown_at_count);
unload_error make_unload_error(unload_errc code, const std::string& module, std::string reason);
call_error make_main_error(const module_core* owner, call_errc code, std::string_view asked_signature);
[[noreturn]] void import_threw(const char* name, const char* signature) noexcept;

class non_copyable {
 public:
  non_copyable() = default;
  non_copyable(const non_copyable&) = delete;
  non_copyable& operator=(const non_copyable&) = delete;
};

/* Where an export's result is rebuilt on the host side. */
template <class R>
class return_slot {
 public:
  void* address() { return storage_; }
  R take() {
    R* value = std::launder(reinterpret_cast<R*>(storage_));
    R out(std::move(*value));
    value->~R();
    return out;
  }

 private:
  alignas(R) unsigned char storage_[sizeof(R)];
};

/* Who is called, for error messages; read only when a call fails. */
struct call_site {
  const module_core* owner;
  const char* function;
  bool guarded = false;  // load_options::crash_guard: the call goes through guarded_invoke
};

/* The call site of `function` in the module `owner`, guarded as the module was loaded. */
call_site site_of(const module_core* owner, const char* function) noexcept;

call_error take_call_error(const call_site& site);

template <class R>
[[gnu::noinline, gnu::cold]] call_result<R> failed_call(const call_site& site) {
  return take_call_error(site);
}

/* A guarded call's way back (>>crash guard): a crash in the module's code during the call jumps
   here from the signal handler (or from the module's abort()). */
struct crash_guard_point {
  std::jmp_buf jump;
  const module_core* owner;
  crash_guard_point* outer;  // the guarded call this one is nested in, on this thread
};
bool enter_guard(crash_guard_point& point, const call_site& site);  // false: the module is poisoned
void leave_guard(crash_guard_point& point) noexcept;
call_error take_crash_error(crash_guard_point& point, const call_site& site);  // after the jump
call_error poisoned_error(const call_site& site);

template <class R, class... A>
call_result<R> invoke_unguarded(typename export_thunk<R(A...)>::pointer thunk, const call_site& site, A... args);

/* Only the module's frames are skipped by the jump: the arguments here live in this frame and
   are destroyed as usual; objects the module had made on its stack are not. */
template <class R, class... A>
[[gnu::noinline]] call_result<R> guarded_invoke(typename export_thunk<R(A...)>::pointer thunk, const call_site& site,
                                                A... args) {
  crash_guard_point point;
  if (!enter_guard(point, site)) return poisoned_error(site);
  if (setjmp(point.jump) != 0) return take_crash_error(point, site);
  call_result<R> out = invoke_unguarded<R, A...>(thunk, site, static_cast<A&&>(args)...);
  leave_guard(point);
  return out;
}

template <class R, class... A>
call_result<R> invoke_export(typename export_thunk<R(A...)>::pointer thunk, const call_site& site, A... args) {
  if (RELIB_DETAIL_UNLIKELY(site.guarded)) return guarded_invoke<R, A...>(thunk, site, static_cast<A&&>(args)...);
  return invoke_unguarded<R, A...>(thunk, site, static_cast<A&&>(args)...);
}

template <class R, class... A>
call_result<R> invoke_unguarded(typename export_thunk<R(A...)>::pointer thunk, const call_site& site, A... args) {
  if constexpr (std::is_void_v<R>) {
    if (RELIB_DETAIL_LIKELY(thunk(static_cast<A&&>(args)...))) return {};
  } else if constexpr (export_thunk<R(A...)>::in_registers) {
    const returned<R> out = thunk(static_cast<A&&>(args)...);
    if (RELIB_DETAIL_LIKELY(out.ok)) {
      return_slot<R> slot;
      std::memcpy(slot.address(), out.bytes, sizeof(R));
      return slot.take();
    }
  } else {
    return_slot<R> slot;
    if (RELIB_DETAIL_LIKELY(thunk(slot.address(), static_cast<A&&>(args)...))) {
      return slot.take();
    }
  }
  return failed_call<R>(site);
}

/* Stands in for every export of a module that is not loaded: calls fail cleanly. */
template <class R, class... A>
auto not_loaded_thunk(A...) {
  record_call_failure(nullptr, nullptr, nullptr, 0);
  if constexpr (export_thunk<R(A...)>::in_registers) {
    return returned<R>{};  // ok == false
  } else {
    return false;
  }
}
template <class R, class... A>
bool not_loaded_slot_thunk(void*, A...) {
  record_call_failure(nullptr, nullptr, nullptr, 0);
  return false;
}
template <class R, class... A>
constexpr typename export_thunk<R(A...)>::pointer not_loaded_export() {
  if constexpr (export_thunk<R(A...)>::in_registers || std::is_void_v<R>) {
    return &not_loaded_thunk<R, A...>;
  } else {
    return &not_loaded_slot_thunk<R, A...>;
  }
}

template <class F>
class export_function;
template <class R, class... A>
class export_function<R(A...)> : non_copyable {
 public:
  using signature = R(A...);
  using thunk_type = typename export_thunk<R(A...)>::pointer;

  // constexpr: a static Exports (what a moved-from module offers) needs no guard on each call.
  constexpr explicit export_function(const char* name) : site_{nullptr, name} {}

  call_result<R> operator()(A... args) const {
    return invoke_export<R, A...>(thunk_, site_, static_cast<A&&>(args)...);
  }

  const char* name() const noexcept { return site_.function; }

  static void bind(void* object, const void* symbol, const module_core* owner) {
    auto* self = static_cast<export_function*>(object);
    self->thunk_ = *static_cast<const thunk_type*>(symbol);
    self->site_ = site_of(owner, self->site_.function);
  }
  static void unbind(void* object, const module_core* owner) {
    auto* self = static_cast<export_function*>(object);
    self->thunk_ = not_loaded_export<R, A...>();
    self->site_ = call_site{owner, self->site_.function};
  }

 private:
  thunk_type thunk_ = not_loaded_export<R, A...>();
  call_site site_;
};

template <class F>
constexpr interface_entry entry_of(std::string_view name) {
  return interface_entry{name, type_name<F>::view, layout<F>::value.view()};
}

struct export_collector {
  load_request& request;
  template <class F>
  void operator()(export_function<F>& function) const {
    request.exports.push_back(export_binding{entry_of<F>(function.name()), &function,
                                             &export_function<F>::bind, &export_function<F>::unbind});
  }
};

/* The host side of an import: calls the host's function and ends the process if it throws,
   since the exception would otherwise unwind through module frames that expect none. */
template <class F>
struct import_thunk;
template <class R, class... A>
struct import_thunk<R(A...)> {
  using pointer = R (*)(A...);

  template <pointer Function, class Tag>
  static R call(A... args) {
    try {
      return Function(static_cast<A&&>(args)...);
#if defined(__GLIBCXX__)
    } catch (abi::__forced_unwind&) {
      throw;  // thread cancellation must keep unwinding
#endif
    } catch (...) {
#if defined(_LIBCPP_VERSION)
      // libc++ sees thread cancellation as a foreign exception, one without a C++ type; it must
      // keep unwinding too.
      if (abi::__cxa_current_exception_type() == nullptr) throw;
#endif
      import_threw(Tag::name(), type_name<R(A...)>::value.data);
    }
  }

  template <pointer Function, class Tag>
  static void link(const void* symbol) {
    pointer* slot = *static_cast<pointer* const*>(symbol);
    *slot = &call<Function, Tag>;
  }
};

struct import_collector {
  load_request& request;
  template <class F, class Tag, typename import_thunk<F>::pointer Function>
  void add() const {
    request.imports.push_back(
        import_binding{entry_of<F>(Tag::name()), &import_thunk<F>::template link<Function, Tag>});
  }
};

}  // namespace detail

/* >>module ---- module<Exports> and load_module ----------------------------------------------- */

struct load_options {
  // Refuse a file that users other than this process's user and root could have written: the
  // file, and every directory above it, must be owned by this user or root and not writable by
  // others (a sticky directory such as /tmp is fine for the user's own files) nor by a group other
  // than its owner's private group. The rules sshd applies to authorized_keys; see docs/safety.md.
  bool require_trusted_file = true;
  // Catch a crash in the module's code during a call (an export, main, before_unload): SIGSEGV,
  // SIGBUS, SIGFPE, SIGILL or abort() then return call_errc::crashed with the signal, the
  // address and the stack, instead of ending the process, and the module is poisoned (every
  // later call returns call_errc::poisoned; unload it). Each guarded call costs a setjmp. Read
  // docs/diagnostics.md for what is unsafe about going on after a crash. Linux only for now: on
  // Windows the load fails with load_errc::not_on_this_platform.
  bool crash_guard = false;
};

template <class Exports>
class module {
 public:
  module(module&&) noexcept = default;
  module& operator=(module&& other) noexcept {
    if (this != &other) {
      release();
      core_ = std::move(other.core_);
      exports_ = std::move(other.exports_);
    }
    return *this;
  }
  ~module() { release(); }

  /* The typed exports. Still safe after unload(): every call then returns call_errc::not_loaded. */
  const Exports& exports() const noexcept {
    static const Exports detached;  // what a moved-from module offers: exports that fail cleanly
    return exports_ ? *exports_ : detached;
  }

  template <class R>
  call_result<R> call_main() const {
    auto main = detail::find_main(core_.get(), detail::type_name<R()>::view, detail::layout<R()>::value.view());
    if (!main) return main.error();
    auto thunk = *static_cast<const typename detail::export_thunk<R()>::pointer*>(*main);
    return detail::invoke_export<R>(thunk, detail::site_of(core_.get(), "main"));
  }

  bool is_loaded() const noexcept { return detail::core_is_loaded(core_.get()); }

  const std::string& path() const noexcept { return detail::core_path(core_.get()); }

#if RELIB_DETAIL_UNLOADING
  /* Runs before_unload, closes the library and checks it is gone. On before_unload_failed the
     module stays loaded; on any other outcome its exports no longer call into it. */
  result<unload_report, unload_error> unload() {
    if (!core_) {
      return detail::make_unload_error(unload_errc::not_loaded, "",
                                       "unload() on a module object that was moved from; unload the object it was moved to");
    }
    return detail::unload_core(*core_);
  }
#endif

 private:
  template <class E, class I>
  friend result<module<E>, load_error> load_module(const std::string& path, I imports, load_options options);

  module(detail::module_core_pointer core, std::unique_ptr<Exports> exports)
      : core_(std::move(core)), exports_(std::move(exports)) {}

  void release() noexcept;

  detail::module_core_pointer core_;
  std::unique_ptr<Exports> exports_;
};

template <class Exports>
void module<Exports>::release() noexcept {
  detail::release_core(core_);
}

template <class Exports = no_exports, class Imports = no_imports>
result<module<Exports>, load_error> load_module(const std::string& path, Imports imports = {},
                                                load_options options = {}) {
  (void)imports;  // only its type matters: the import implementations are its static functions
  auto exports = std::make_unique<Exports>();
  detail::load_request request;
  request.path = path;
  request.require_trusted_file = options.require_trusted_file;
  request.crash_guard = options.crash_guard;
  exports->relib_visit(detail::export_collector{request});
  Imports::relib_visit(detail::import_collector{request});
  auto core = detail::load_core(std::move(request));
  if (!core) return core.error();
  return module<Exports>(std::move(*core), std::move(exports));
}

/* >>live module ---- live_module<Exports> and load_live_module (docs/live-reload.md) ---------- */

#if RELIB_DETAIL_UNLOADING
struct live_options {
  // How long the file must stay untouched after a writer closed it (or renamed it into place)
  // before it counts as a new build. A file still open for writing never counts.
  std::chrono::milliseconds settle_time{50};
  // Where the private directory for the loaded copies is made; empty: next to the module file,
  // then $TMPDIR, then /tmp.
  std::string shadow_parent;
  // As load_options::require_trusted_file, for the watched file at every load; the private copy
  // relib makes of it is its own.
  bool require_trusted_file = true;
  // As load_options::crash_guard, for every version; after a crash, the next update() brings
  // back the version that ran before the one that crashed.
  bool crash_guard = false;
};
namespace detail {
class live_core;
struct live_core_deleter {
  void operator()(live_core* core) const noexcept;
};
using live_core_pointer = std::unique_ptr<live_core, live_core_deleter>;
result<live_core_pointer, reload_error> open_live_core(load_request prototype, const live_options& options);
// Each takes the core of a live_module, null when the object was moved from.
const std::atomic<bool>& live_changed_flag(const live_core* core) noexcept;
result<bool, reload_error> reload_live_module(live_core* core, bool only_if_changed);
bool live_wait_for_change(const live_core* core, std::chrono::milliseconds timeout);
std::uint64_t live_generation(const live_core* core) noexcept;
bool live_is_loaded(const live_core* core) noexcept;
const std::string& live_path(const live_core* core) noexcept;
void* live_state(live_core* core, std::string_view type, std::size_t size, std::size_t alignment) noexcept;
void live_set_callbacks(live_core* core, std::function<void()> before, std::function<void(const reload_error*)> after);
result<unload_report, unload_error> live_unload(live_core* core);
}  // namespace detail

/* A module that follows its file: when a new build is written, update() swaps it in. See
   docs/live-reload.md. Use it from one thread: update(), reload() and unload() on the thread
   that calls the exports. */
template <class Exports = no_exports>
class live_module {
 public:
  live_module(live_module&& other) noexcept { *this = std::move(other); }
  live_module& operator=(live_module&& other) noexcept {
    if (this != &other) {
      core_ = std::move(other.core_);  // first: the running version unloads while its exports exist
      exports_ = std::move(other.exports_);
      changed_ = std::exchange(other.changed_, &detail::live_changed_flag(nullptr));
    }
    return *this;
  }
  ~live_module() = default;  // unloads the running version, stops watching, removes the copies

  /* The typed exports, one object for the module's whole life: each call goes to the version
     running now (call_errc::not_loaded if none is, or the object was moved from). */
  const Exports& exports() const noexcept {
    static const Exports detached;
    return exports_ ? *exports_ : detached;
  }

  /* The per-frame check: one atomic load while nothing changed. When a new build is complete,
     unloads the running version and loads the new one; true when a new version now runs. On an
     error the previous version keeps running (see reload_error) and the next build is tried. */
  result<bool, reload_error> update() {
    if (RELIB_DETAIL_LIKELY(!changed_->load(std::memory_order_acquire))) return false;
    return detail::reload_live_module(core_.get(), true);
  }
  /* Reloads now, changed or not. */
  result<bool, reload_error> reload() { return detail::reload_live_module(core_.get(), false); }

  /* A new build is complete and waits for update(). */
  bool changed() const noexcept { return changed_->load(std::memory_order_acquire); }
  /* Blocks until changed() or the timeout; for hosts without a frame loop. */
  bool wait_for_change(std::chrono::milliseconds timeout) const { return detail::live_wait_for_change(core_.get(), timeout); }

  /* How many versions were loaded so far (1 after the first load). */
  std::uint64_t generation() const noexcept { return detail::live_generation(core_.get()); }
  bool is_loaded() const noexcept { return detail::live_is_loaded(core_.get()); }
  const std::string& path() const noexcept { return detail::live_path(core_.get()); }

  /* The state block (RELIB_MODULE_STATE) as T, or nullptr when the module declared no state or
     another type (compared by name and size). It survives reloads; see docs/live-reload.md. */
  template <class T>
  T* state() noexcept {
    static_assert(std::is_trivially_copyable_v<T>, "relib: module state types are trivially copyable");
    return static_cast<T*>(detail::live_state(core_.get(), detail::type_name<T>::view, sizeof(T), alignof(T)));
  }

  /* before runs when a checked build is about to replace the running version, which still runs:
     drop pointers into it. after runs when that attempt ended, with nullptr or the error:
     refresh them. A build refused by the checks calls neither. */
  void on_reload(std::function<void()> before, std::function<void(const reload_error*)> after) {
    detail::live_set_callbacks(core_.get(), std::move(before), std::move(after));
  }

  /* Unloads the running version and stops watching; the exports then return not_loaded. */
  result<unload_report, unload_error> unload() { return detail::live_unload(core_.get()); }

 private:
  template <class E, class I>
  friend result<live_module<E>, reload_error> load_live_module(const std::string& path, I imports,
                                                                live_options options);
  live_module(detail::live_core_pointer core, std::unique_ptr<Exports> exports)
      : exports_(std::move(exports)), core_(std::move(core)), changed_(&detail::live_changed_flag(core_.get())) {}

  std::unique_ptr<Exports> exports_;  // declared first: destroyed after the core has unloaded
  detail::live_core_pointer core_;
  const std::atomic<bool>* changed_ = &detail::live_changed_flag(nullptr);
};

/* Loads the module (like load_module, and calls its main if it has one, which must return void)
   and starts watching its file. */
template <class Exports = no_exports, class Imports = no_imports>
result<live_module<Exports>, reload_error> load_live_module(const std::string& path, Imports imports = {},
                                                             live_options options = {}) {
  (void)imports;
  auto exports = std::make_unique<Exports>();
  detail::load_request prototype;
  prototype.path = path;
  prototype.require_trusted_file = options.require_trusted_file;
  prototype.crash_guard = options.crash_guard;
  exports->relib_visit(detail::export_collector{prototype});
  Imports::relib_visit(detail::import_collector{prototype});
  auto core = detail::open_live_core(std::move(prototype), options);
  if (!core) return core.error();
  return live_module<Exports>(std::move(*core), std::move(exports));
}
#endif

}  // namespace relib

/* >>interface macros ---- RELIB_HOST_EXPORTS and RELIB_HOST_IMPORTS ---------------------------- */

#define RELIB_DETAIL_HOST_EXPORT_MEMBER(id, ...) relib::detail::export_function<__VA_ARGS__> id{#id};
#define RELIB_DETAIL_HOST_EXPORT_VISIT(id, ...) visitor(id);

/* What a host expects of its modules, recorded in its executable (section .relib_host) for
   relib-inspect --host: one note per interface type, its entries one per line. */
#if defined(_WIN32)
#define RELIB_DETAIL_HOST_SECTION ".relibh"  // PE: a name of up to 8 bytes survives stripping
#else
#define RELIB_DETAIL_HOST_SECTION ".relib_host"
#endif
#define RELIB_DETAIL_HOST_META __attribute__((section(RELIB_DETAIL_HOST_SECTION), used)) RELIB_DETAIL_PACKED_NOTE
#define RELIB_DETAIL_HOST_EXPORT_TEXT(id, ...) \
  +relib::detail::entry_text<__VA_ARGS__>(relib::detail::fixed_string("\nexport\t" #id))
#define RELIB_DETAIL_HOST_IMPORT_TEXT(id, ...) \
  +relib::detail::entry_text<__VA_ARGS__>(relib::detail::fixed_string("\nimport\t" #id))

/* struct type_name { export_function<sig> name...; }: one callable member per export. Use it at
   namespace scope. */
#define RELIB_HOST_EXPORTS(type_name, LIST)                                                        \
  RELIB_DETAIL_HOST_META static constexpr auto relib_host_interface_##type_name =                  \
      relib::detail::make_note(relib::detail::fixed_string("host-interface\t" #type_name)          \
                                   LIST(RELIB_DETAIL_HOST_EXPORT_TEXT));                           \
  struct type_name : relib::detail::non_copyable {        \
    LIST(RELIB_DETAIL_HOST_EXPORT_MEMBER)                 \
    template <class Visitor>                              \
    void relib_visit(Visitor&& visitor) {                 \
      LIST(RELIB_DETAIL_HOST_EXPORT_VISIT)                \
    }                                                     \
  }

#define RELIB_DETAIL_HOST_IMPORT_DECL(id, ...) static relib::detail::identity_t<__VA_ARGS__> id;
#define RELIB_DETAIL_HOST_IMPORT_VISIT(id, ...)                           \
  {                                                                         \
    struct tag {                                                            \
      static constexpr const char* name() { return #id; }                 \
    };                                                                      \
    visitor.template add<__VA_ARGS__, tag, &id>();                          \
  }

/* struct type_name { static R name(args...); ... }: define each as an ordinary function. Use it
   at namespace scope. */
#define RELIB_HOST_IMPORTS(type_name, LIST)                                                        \
  RELIB_DETAIL_HOST_META static constexpr auto relib_host_interface_##type_name =                  \
      relib::detail::make_note(relib::detail::fixed_string("host-interface\t" #type_name)          \
                                   LIST(RELIB_DETAIL_HOST_IMPORT_TEXT));                           \
  struct type_name {                                 \
    LIST(RELIB_DETAIL_HOST_IMPORT_DECL)              \
    template <class Visitor>                         \
    static void relib_visit(Visitor&& visitor) {     \
      LIST(RELIB_DETAIL_HOST_IMPORT_VISIT)           \
    }                                                \
  }

#endif /* RELIB_HPP_INCLUDED */

/* >>implementation ------------------------------------------------------------------------------
   Section map, in file order; search for a marker to jump to it. A load reads down from >>load to
   >>host link, an unload is >>unload, a reload is >>live reload (copy_and_check, swap_in, roll_back).
     >>platform            the OS seam: libraries, files, threads, address space, watching, copies
     >>errors              code names and explanations; messages formatted from the fields
     >>log                 one line per step of load, unload and reload, when RELIB_LOG or a host asks
     >>elf reader          the header and relib's notes, read before any module code runs
     >>elf gate            what would crash the dynamic loader, refused before dlopen
     >>pe reader           Windows: the PE header, relib's records and the checks before LoadLibrary
     >>module records      relib's records, parsed
     >>state blocks        the block a live module keeps across versions, owned by the host
     >>module core         one loaded module (private), and the registry of all
     >>calls               errors from calls, main, what a module object does as it goes
     >>stack traces        where a module threw: function names and lines from the module's file
     >>crash guard         a crash in module code: caught in a guarded call, or reported
     >>load                inspect (read and check the file), open, bind, hand over the state
     >>heaps               a mimalloc heap per (module, thread), the arena, blocks of exited threads,
                           heaps left to others
     >>host link           what module code calls back: threads, thread_locals, keys, mappings
     >>unload              before_unload, the checks, dlclose, the proof it is gone, reclaiming
     >>reports             the unload report as text, the arena, memory awaiting reclamation
     >>live reload         the watched module: copy and check, swap in, roll back
     >>free interposition  the host's free, realloc and malloc_usable_size for module blocks */

#if defined(RELIB_IMPLEMENTATION) && !defined(RELIB_DETAIL_HOST_IMPLEMENTED)
#define RELIB_DETAIL_HOST_IMPLEMENTED
#include <cxxabi.h>
#include <unwind.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <cstring>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

/* >>platform ---- the OS seam -----------------------------------------------------------------
   Every call into the dynamic loader, the file system, threads, inotify, leases and the address
   space is made here, and nowhere else: a port to another system (Windows: LoadLibrary,
   ReadDirectoryChangesW, VirtualAlloc) writes this section again with the same names.
   docs/porting.md lists each function and what it must guarantee. Linux/glibc follows, then
   Windows (mingw-w64). */
#if RELIB_DETAIL_UNLOADING
namespace relib {
namespace detail {
namespace platform {
/* Raised by the watcher (file_watch, in each system's section), read by the frame thread. */
struct change_signal {
  std::atomic<bool> changed{false};
  std::mutex lock;
  std::condition_variable ready;
  std::string cause;  // the file event behind the last raise, for the log (under `lock`)

  void raise(std::string why) {
    {
      std::lock_guard<std::mutex> guard(lock);
      cause = std::move(why);
      changed.store(true, std::memory_order_release);
    }
    ready.notify_all();
  }
  std::string last_cause() {
    std::lock_guard<std::mutex> guard(lock);
    return cause;
  }
};
}  // the shared part of namespace platform
}  // namespace detail
}  // namespace relib
#endif

#if !defined(_WIN32)
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <grp.h>
#include <link.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <ucontext.h>
#include <dirent.h>
#include <sys/auxv.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

namespace relib {
namespace detail {
/* The host's free() and realloc() run where a sanitizer has not set up the process or the
   calling thread yet (its start, and each thread's: pthread_getattr_np allocates): on that path
   nothing may be instrumented, so it reads plain variables with builtins, in functions built
   without instrumentation. */
#define RELIB_DETAIL_UNINSTRUMENTED __attribute__((no_sanitize("address", "thread", "undefined")))
template <class T>
RELIB_DETAIL_UNINSTRUMENTED T acquire_load(const T& variable) noexcept {
  return __atomic_load_n(&variable, __ATOMIC_ACQUIRE);
}
template <class T>
void release_store(T& variable, T value) noexcept {
  __atomic_store_n(&variable, value, __ATOMIC_RELEASE);
}

namespace platform {

/* ---- The machine: what an ELF file built for this process says in its header ---- */
#if defined(__x86_64__)
constexpr int host_machine = EM_X86_64;
#elif defined(__aarch64__)
constexpr int host_machine = EM_AARCH64;
#elif defined(__i386__)
constexpr int host_machine = EM_386;
#elif defined(__arm__)
constexpr int host_machine = EM_ARM;
#elif defined(__riscv)
constexpr int host_machine = EM_RISCV;
#else
#error "relib: add this machine's ELF e_machine value"
#endif
constexpr unsigned char host_class = sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32;
constexpr unsigned char host_byte_order = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB;
using elf_header = ElfW(Ehdr);
using elf_segment = ElfW(Phdr);
using elf_section = ElfW(Shdr);
using elf_symbol = ElfW(Sym);
using elf_dynamic = ElfW(Dyn);
using elf_version_need = ElfW(Verneed);
using elf_version_need_entry = ElfW(Vernaux);
using elf_version_definition = ElfW(Verdef);
using elf_version_definition_name = ElfW(Verdaux);
using elf_word = ElfW(Addr);

/* ---- The machine's relocations, as glibc's dynamic loader applies them (for the ELF gate) ----
   What one relocation type does: how many bytes it writes at r_offset, and whether the loader
   calls, copies or reads something through it. Types glibc does not apply are `unknown`. */
enum class relocation_kind { none, relative, symbol_word, other_data, thread_local_data, resolver_call, copy, unknown, unchecked };
struct relocation_effect {
  relocation_kind kind;
  unsigned bytes_written;
};
#if defined(__x86_64__)
constexpr bool relocations_have_addends = true;  // DT_RELA; glibc ignores DT_REL here
using elf_relocation = ElfW(Rela);
inline std::uint64_t relocation_addend(const elf_relocation& relocation) { return static_cast<std::uint64_t>(relocation.r_addend); }
inline relocation_effect relocation_effect_of(std::uint32_t type) {
  switch (type) {
    case R_X86_64_NONE: return {relocation_kind::none, 0};
    case R_X86_64_RELATIVE: return {relocation_kind::relative, 8};
    case R_X86_64_64: case R_X86_64_GLOB_DAT: case R_X86_64_JUMP_SLOT: return {relocation_kind::symbol_word, 8};
    case R_X86_64_SIZE64: return {relocation_kind::other_data, 8};
    case R_X86_64_PC32: case R_X86_64_32: case R_X86_64_32S: case R_X86_64_SIZE32: return {relocation_kind::other_data, 4};
    case R_X86_64_DTPMOD64: case R_X86_64_DTPOFF64: case R_X86_64_TPOFF64: return {relocation_kind::thread_local_data, 8};
    case R_X86_64_TLSDESC: return {relocation_kind::thread_local_data, 16};
    case R_X86_64_IRELATIVE: return {relocation_kind::resolver_call, 8};
    case R_X86_64_COPY: return {relocation_kind::copy, 0};
    default: return {relocation_kind::unknown, 0};
  }
}
#else
/* Another machine: only where each relocation writes is checked, a word each. */
#if defined(__i386__) || defined(__arm__)
constexpr bool relocations_have_addends = false;  // the addend is the word at r_offset
using elf_relocation = ElfW(Rel);
inline std::uint64_t relocation_addend(const elf_relocation&) { return 0; }
#else
constexpr bool relocations_have_addends = true;
using elf_relocation = ElfW(Rela);
inline std::uint64_t relocation_addend(const elf_relocation& relocation) { return static_cast<std::uint64_t>(relocation.r_addend); }
#endif
inline relocation_effect relocation_effect_of(std::uint32_t type) {
  return {type == 0 ? relocation_kind::none : relocation_kind::unchecked, sizeof(elf_word)};
}
#endif
/* RELR packed relative relocations (glibc 2.36); elf.h of older systems lacks the tags. */
constexpr std::int64_t tag_relr_size = 35, tag_relr = 36, tag_relr_entry_size = 37;
#if __ELF_NATIVE_CLASS == 64
inline std::uint32_t relocation_type(elf_word info) { return static_cast<std::uint32_t>(ELF64_R_TYPE(info)); }
inline std::uint64_t relocation_symbol(elf_word info) { return ELF64_R_SYM(info); }
#else
inline std::uint32_t relocation_type(elf_word info) { return ELF32_R_TYPE(info); }
inline std::uint64_t relocation_symbol(elf_word info) { return ELF32_R_SYM(info); }
#endif

/* The file the modules' mimalloc comes from, as the dynamic loader names it. */
constexpr const char* mimalloc_library_names[] = {"libmimalloc.so.2", "libmimalloc.so"};
/* The crash guard (load_options::crash_guard) is built on signals here. */
constexpr bool has_crash_guard = true;
constexpr const char* system_name = "Linux";
/* The unwinder that modules built by relib_add_module() link (-shared-libgcc). */
constexpr const char* unwinder_library_name = "libgcc_s.so.1";
/* Names for messages: the file format, a library's suffix, the loader's open and close. */
constexpr const char* image_format = "ELF";
constexpr const char* library_suffix = ".so";
constexpr const char* open_call = "dlopen()";
constexpr const char* close_call = "dlclose()";

/* ---- Files: open for reading, read a range, identity ---- */
class file_descriptor {
 public:
  explicit file_descriptor(int fd = -1) : fd_(fd) {}
  file_descriptor(const file_descriptor&) = delete;
  file_descriptor& operator=(const file_descriptor&) = delete;
  ~file_descriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  void release() { fd_ = -1; }

 private:
  int fd_;
};

/* Who owns a file or directory, and who else may write it (read by the trust policy, >>load). */
struct file_ownership {
  std::uint32_t owner = 0, group = 0;  // user and group ids
  bool directory = false;
  bool group_writable = false, others_writable = false;
  bool sticky = false;  // a directory whose entries only their owner (or root) may rename or remove
};

file_ownership ownership_from(const struct stat& info) {
  file_ownership out;
  out.owner = static_cast<std::uint32_t>(info.st_uid);
  out.group = static_cast<std::uint32_t>(info.st_gid);
  out.directory = S_ISDIR(info.st_mode);
  out.group_writable = (info.st_mode & S_IWGRP) != 0;
  out.others_writable = (info.st_mode & S_IWOTH) != 0;
  out.sticky = (info.st_mode & S_ISVTX) != 0;
  return out;
}

/* A file opened for reading, with what relib needs to know of it. */
class readable_file {
 public:
  enum class status { opened, not_found, failed };
  enum class kind { regular, directory, other };

  /* Never blocks: a FIFO opens at once (and is then not a regular file). On failure, error() says why. */
  status open(const std::string& path) {
    fd_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    struct stat info {};
    if (fd_.get() < 0 || ::fstat(fd_.get(), &info) != 0) {
      const int failure = errno;
      error_ = std::strerror(failure);
      return failure == ENOENT || failure == ENOTDIR ? status::not_found : status::failed;
    }
    kind_ = S_ISREG(info.st_mode) ? kind::regular : S_ISDIR(info.st_mode) ? kind::directory : kind::other;
    size_ = static_cast<std::uint64_t>(info.st_size);
    device_ = static_cast<std::uint64_t>(info.st_dev);
    inode_ = static_cast<std::uint64_t>(info.st_ino);
    modified_ = modified_of(info);
    ownership_ = ownership_from(info);
    return status::opened;
  }

  /* Whether its size or modification time changed since open(): what was read of it may be a
     mix of two versions. */
  bool changed_since_open() const {
    struct stat info {};
    return ::fstat(fd_.get(), &info) != 0 || static_cast<std::uint64_t>(info.st_size) != size_ || modified_of(info) != modified_;
  }

  /* Reads exactly `length` bytes at `offset`; false if the file ends first or reading fails. */
  bool read_range(std::uint64_t offset, void* out, std::uint64_t length) const {
    auto* bytes = static_cast<char*>(out);
    while (length > 0) {
      const ssize_t got = ::pread(fd_.get(), bytes, length, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      bytes += got;
      offset += static_cast<std::uint64_t>(got);
      length -= static_cast<std::uint64_t>(got);
    }
    return true;
  }

  /* The file's absolute path now, as the kernel names it (it follows renames). */
  std::string current_path() const {
    char buffer[4096];
    const std::string link = "/proc/self/fd/" + std::to_string(fd_.get());
    const ssize_t length = ::readlink(link.c_str(), buffer, sizeof buffer);
    return length > 0 && static_cast<std::size_t>(length) < sizeof buffer ? std::string(buffer, static_cast<std::size_t>(length))
                                                                           : std::string();
  }
  /* What the dynamic loader can open to get exactly this file. By process id rather than
     "self": a debugger reads the libraries the loader reports in its own process, where "self"
     would name the debugger's descriptor. */
  std::string loader_path() const {
    return "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fd_.get());
  }
  /* Leaves the descriptor open until the process exits (see open_library). */
  void keep_open_for_good() { fd_.release(); }
  void close() { fd_.reset(-1); }

  kind type() const { return kind_; }
  std::uint64_t size() const { return size_; }
  // Device and inode: the same file whatever the path (symlinks, hard links).
  std::uint64_t device() const { return device_; }
  std::uint64_t inode() const { return inode_; }
  /* Which file, at which size and modification time: equal for the same build of a file. */
  std::string identity() const {
    return std::to_string(device_) + ":" + std::to_string(inode_) + ":" + std::to_string(size_) + ":" + std::to_string(modified_);
  }
  // Of the open file itself: a rename onto its path cannot change what the policy reads.
  const file_ownership& ownership() const { return ownership_; }
  const std::string& error() const { return error_; }
  /* Whether open() failed because a writer holds the file: never here, where a writer does not
     keep others out (leases tell, shadow_directory::being_written). */
  bool held_by_writer() const { return false; }

 private:
  friend class shadow_directory;  // copies the open file, through its descriptor

  static std::uint64_t modified_of(const struct stat& info) {
    return static_cast<std::uint64_t>(info.st_mtim.tv_sec) * 1000000000u + static_cast<std::uint64_t>(info.st_mtim.tv_nsec);
  }

  file_descriptor fd_;
  file_ownership ownership_;
  kind kind_ = kind::other;
  std::uint64_t size_ = 0, device_ = 0, inode_ = 0, modified_ = 0;
  std::string error_;
};

/* ---- Libraries: open, look up, close, and whether one is still mapped ---- */
using library = void*;  // an open handle; null: none

#if RELIB_DETAIL_UNLOADING
constexpr int open_flags = RTLD_NOW | RTLD_LOCAL;
#else
constexpr int open_flags = RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE;
#endif

/* dlopen() with this build's flags; on failure, null and the loader's reason in `error`. */
library dlopen_or_say_why(const std::string& name, std::string& error) {
  dlerror();
  library opened = dlopen(name.c_str(), open_flags);
  if (opened == nullptr) {
    const char* text = dlerror();
    error = text != nullptr ? text : "unknown dynamic loader error";
  }
  return opened;
}

/* Opens the library in `file`: the very file that was checked, whatever has been renamed onto its
   path since, and never one found in the library search path. Runs its constructors. On failure:
   null, and `error` says why in the loader's words, naming the file by its path.
   The loader remembers the library under "/proc/<pid>/fd/N" as well, and would hand it out for any
   other file opened later under that number: `file` stays open while the library is in the
   process (keep_open_for_good() when it may never leave). */
library open_library(const readable_file& file, std::string& error) {
  const std::string loader_path = file.loader_path();
  library opened = dlopen_or_say_why(loader_path, error);
  if (opened == nullptr && error.compare(0, loader_path.size() + 1, loader_path + ":") == 0) {
    error.replace(0, loader_path.size(), file.current_path());
  }
  return opened;
}

/* Opens the library at `path` itself: what is there now, which may no longer be the file that was
   checked. Only for modules that find their dependencies through $ORIGIN (see open_core). A path
   without a slash is taken from the working directory, never searched for. */
library open_library_at(const std::string& path, std::string& error) {
  return dlopen_or_say_why(path.find('/') == std::string::npos ? "./" + path : path, error);
}

/* Names a library just opened by open_library() after its file's real path in the loader's list,
   which dladdr(), dl_iterate_phdr() and debuggers read. Returns the name it replaces, for
   forget_library_name() once the library is gone: a thread reading the list may hold it until
   then. The loader frees the new name when it unloads the library. */
char* name_library(library opened, const std::string& name) {
  struct link_map* map = nullptr;
  if (name.empty() || dlinfo(opened, RTLD_DI_LINKMAP, &map) != 0 || map == nullptr) return nullptr;
  auto* copy = static_cast<char*>(std::malloc(name.size() + 1));
  if (copy == nullptr) return nullptr;
  std::memcpy(copy, name.c_str(), name.size() + 1);
  return std::exchange(map->l_name, copy);
}

void forget_library_name(char* replaced) { std::free(replaced); }

/* Opens a library by name for the rest of the process's life (never closed, never unloaded);
   with `only_if_loaded`, only when something in the process loaded it already. */
library pin_library(const char* name, bool only_if_loaded) {
  return dlopen(name, RTLD_NOW | RTLD_NODELETE | (only_if_loaded ? RTLD_NOLOAD : RTLD_LOCAL));
}

/* The address of a symbol the library itself defines (or one of its dependencies); null if none. */
void* find_symbol(library opened, const char* name) { return dlsym(opened, name); }

void close_library(library opened) { dlclose(opened); }

/* An open library is identified by its base address and link-map name, both read before
   close_library() so that afterwards we can ask whether that very object is still in the process. */
struct loaded_object {
  std::uintptr_t base = 0;
  std::string name;
};

loaded_object describe_library(library opened) {
  loaded_object object;
  struct link_map* map = nullptr;
  if (dlinfo(opened, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr) {
    object.base = static_cast<std::uintptr_t>(map->l_addr);
    object.name = map->l_name != nullptr ? map->l_name : "";
  }
  return object;
}

/* Calls visit(info) for every object in the process until it returns true. */
template <class Visit>
bool any_loaded_object(Visit visit) {
  return dl_iterate_phdr(
             [](struct dl_phdr_info* info, size_t, void* data) { return (*static_cast<Visit*>(data))(*info) ? 1 : 0; },
             &visit) != 0;
}

std::vector<std::uintptr_t> loaded_library_bases() {
  std::vector<std::uintptr_t> bases;
  bases.reserve(32);
  any_loaded_object([&](const dl_phdr_info& info) { return bases.push_back(info.dlpi_addr), false; });
  return bases;
}

bool still_mapped(const loaded_object& object) {
  return any_loaded_object([&](const dl_phdr_info& info) {
    return info.dlpi_addr == object.base && info.dlpi_name != nullptr && object.name == info.dlpi_name;
  });
}

std::vector<std::string> loaded_library_names() {
  std::vector<std::string> names;
  any_loaded_object([&](const dl_phdr_info& info) {
    if (info.dlpi_name != nullptr && info.dlpi_name[0] != '\0') names.emplace_back(info.dlpi_name);
    return false;
  });
  return names;
}

/* The function that `name` would resolve to if this executable did not define it (the process
   allocator's free, for the host's own free); null if there is none. */
void* next_definition(const char* name) { return dlsym(RTLD_NEXT, name); }
std::string base_name(const std::string& path);  // ---- Paths, below

/* Whether `function` belongs to the C++ runtime (libstdc++ or libc++), whose operator delete only
   calls free. */
bool in_cxx_runtime(void* function) {
  Dl_info info{};
  if (function == nullptr || dladdr(function, &info) == 0 || info.dli_fname == nullptr) return false;
  const std::string file = base_name(info.dli_fname);
  return file.rfind("libstdc++.so", 0) == 0 || file.rfind("libc++.so", 0) == 0;
}

/* The file an address lies in, where that file was loaded, and the nearest dynamic symbol below
   it (empty when there is none): how a stack frame outside a module is named. */
struct address_owner {
  std::string file;
  std::uintptr_t base = 0;
  std::string symbol;
};
bool owner_of_address(std::uintptr_t address, address_owner& out) {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(address), &info) == 0 || info.dli_fname == nullptr) return false;
  out.file = info.dli_fname;
  out.base = reinterpret_cast<std::uintptr_t>(info.dli_fbase);
  out.symbol = info.dli_sname != nullptr ? info.dli_sname : "";
  return true;
}

/* A variable of the process's environment; null when it is not set. */
const char* environment_variable(const char* name) { return std::getenv(name); }

/* glibc's own allocator functions, which answer while next_definition() itself is running. */
extern "C" void __libc_free(void*) noexcept;
extern "C" void* __libc_realloc(void*, std::size_t) noexcept;
void process_free(void* block) noexcept { __libc_free(block); }
void* process_realloc(void* block, std::size_t size) noexcept { return __libc_realloc(block, size); }

/* ---- Paths: names, symbolic links, temporary directories ---- */
std::string base_name(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string directory_of(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

bool is_absolute_path(const std::string& path) { return path.rfind('/', 0) == 0; }
/* Why a file's path may be unknown: it is read from /proc/self/fd. */
constexpr const char* path_unknown_hint = "is /proc mounted?";

/* The file a symbolic link at `path` names, resolved; empty when `path` is not a symbolic link. */
std::string symlink_target(const std::string& path) {
  struct stat link_info {};
  if (::lstat(path.c_str(), &link_info) != 0 || !S_ISLNK(link_info.st_mode)) return "";
  char* target = ::realpath(path.c_str(), nullptr);
  if (target == nullptr) return "";
  std::string resolved = target;
  std::free(target);
  return resolved;
}

/* Where a private directory may go when the module's own directory refuses one. */
std::vector<std::string> temporary_directories() {
  const char* temporary = std::getenv("TMPDIR");
  return {temporary != nullptr ? temporary : "", "/tmp"};
}

/* ---- Trust: owners of directories, users and groups ---- */
/* The ownership of the directory (or file) at `path` now, symbolic links followed; false, with
   `error` saying why, when it cannot be read. */
bool ownership_of(const std::string& path, file_ownership& out, std::string& error) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    error = std::strerror(errno);
    return false;
  }
  out = ownership_from(info);
  return true;
}

constexpr std::uint32_t superuser = 0;
/* The user whose rights the process has: who it opens files as. */
std::uint32_t effective_user() { return static_cast<std::uint32_t>(::geteuid()); }

/* A user and a group as the user and group databases (NSS: /etc/passwd and /etc/group, LDAP...)
   know them. A lookup may read files or ask a server: only for errors and for entries that
   their group may write, never on the usual path. */
struct user_record {
  bool found = false;
  std::string name;
  std::uint32_t primary_group = 0;
};
struct group_record {
  bool found = false;
  std::string name;
  std::vector<std::string> members;  // listed members; not the users whose primary group it is
};

/* Runs a getpwuid_r-like lookup, growing `buffer` (where the record's strings go) until they fit. */
template <class Record, class Lookup>
bool lookup_record(Record& record, std::vector<char>& buffer, Lookup lookup) {
  buffer.resize(1024);
  for (;;) {
    Record* found = nullptr;
    const int failure = lookup(&record, buffer.data(), buffer.size(), &found);
    if (failure == ERANGE && buffer.size() < (std::size_t{1} << 20)) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    return failure == 0 && found != nullptr;
  }
}

user_record find_user(std::uint32_t id) {
  user_record user;
  struct passwd entry {};
  std::vector<char> strings;
  user.found = lookup_record(entry, strings, [&](struct passwd* out, char* buffer, std::size_t size, struct passwd** found) {
    return ::getpwuid_r(static_cast<uid_t>(id), out, buffer, size, found);
  });
  if (user.found) {
    user.name = entry.pw_name != nullptr ? entry.pw_name : "";
    user.primary_group = static_cast<std::uint32_t>(entry.pw_gid);
  }
  return user;
}

group_record find_group(std::uint32_t id) {
  group_record group;
  struct group entry {};
  std::vector<char> strings;
  group.found = lookup_record(entry, strings, [&](struct group* out, char* buffer, std::size_t size, struct group** found) {
    return ::getgrgid_r(static_cast<gid_t>(id), out, buffer, size, found);
  });
  if (group.found) {
    group.name = entry.gr_name != nullptr ? entry.gr_name : "";
    for (char** member = entry.gr_mem; member != nullptr && *member != nullptr; ++member) group.members.emplace_back(*member);
  }
  return group;
}

/* ---- Threads and thread keys ---- */
using thread_id = pthread_t;
thread_id this_thread() { return pthread_self(); }
bool same_thread(thread_id a, thread_id b) { return pthread_equal(a, b) != 0; }

/* Starts a thread, as the module asked (its attributes and start function); 0 or an errno value. */
int start_thread(thread_id* thread, const pthread_attr_t* attributes, void* (*start)(void*), void* argument) {
  return pthread_create(thread, attributes, start, argument);
}

using thread_key = pthread_key_t;
int create_thread_key(thread_key* key, void (*destructor)(void*)) { return pthread_key_create(key, destructor); }
int delete_thread_key(thread_key key) { return pthread_key_delete(key); }
/* Nothing to do: glibc gives a key made again at the same index a new sequence number, so a value
   set after the delete is never seen through it. */
void drop_value_of_deleted_key(thread_key) {}

/* A module thread, held from its start until it has ended; nothing to hold here: glibc's key
   deletion does not wait on threads that are ending. */
struct thread_hold {};
thread_hold hold_this_thread() { return {}; }
bool has_ended(const thread_hold&) { return true; }
void wait_until_ended(thread_hold&) {}

/* This thread's T, made at its first use and destroyed when the thread exits. */
template <class T>
T& per_thread() {
  static thread_local T object;
  return object;
}

/* Makes every other running thread of the process pass a full memory barrier before this
   returns: membarrier(2), or where the kernel lacks it, the TLB shootdown of an mprotect(). A
   thread can then skip the barrier of its own on its side of a race (see free_watching_exits). */
void fence_other_threads() {
  static const bool registered = ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  if (registered && ::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
  static std::mutex lock;
  static void* page = ::mmap(nullptr, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)), PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  std::lock_guard<std::mutex> guard(lock);
  if (page == MAP_FAILED) return;
  static_cast<volatile char*>(page)[0] = 1;  // mapped on this CPU, so that taking write access away flushes
  ::mprotect(page, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)), PROT_READ);
  ::mprotect(page, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)), PROT_READ | PROT_WRITE);
}

/* ---- Sanitizers ----
   AddressSanitizer and ThreadSanitizer call free() and realloc() (from dlsym()) while they start,
   before their own state, or any static initializer of this process, is ready. The host's free()
   passes those calls straight to the sanitizer's functions, which it exports under these names
   (null without a sanitizer). */
extern "C" void __interceptor_free(void*) __attribute__((weak));
extern "C" void* __interceptor_realloc(void*, std::size_t) __attribute__((weak));
extern "C" std::size_t __interceptor_malloc_usable_size(void*) __attribute__((weak));
extern "C" int __sanitizer_get_ownership(const volatile void*) __attribute__((weak));  // did it make a block
inline void (*const sanitizer_free)(void*) = &__interceptor_free;
inline void* (*const sanitizer_realloc)(void*, std::size_t) = &__interceptor_realloc;
inline std::size_t (*const sanitizer_usable_size)(void*) = &__interceptor_malloc_usable_size;
inline int (*const sanitizer_owns)(const volatile void*) = &__sanitizer_get_ownership;

/* mimalloc is not built for ThreadSanitizer: it hands memory from thread to thread through
   atomics the sanitizer cannot see, while the sanitizer does see the memset and memcpy calls
   mimalloc makes, and would report races on them. Ignoring calls made from an uninstrumented
   library is the sanitizer's own remedy; a host that defines __tsan_default_suppressions itself
   keeps its own (weak here) and should add this line. */
#if defined(__SANITIZE_THREAD__)
#define RELIB_DETAIL_THREAD_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RELIB_DETAIL_THREAD_SANITIZER 1
#endif
#endif
#if defined(RELIB_DETAIL_THREAD_SANITIZER)
extern "C" __attribute__((weak)) const char* __tsan_default_suppressions() {
  return "called_from_lib:libmimalloc.so\n";
}
#undef RELIB_DETAIL_THREAD_SANITIZER
#endif

/* ---- Address space ---- */
inline std::uint64_t page_size() {
  static const std::uint64_t size = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

/* Reserves `size` bytes of address space aligned to `alignment`, all of it below `limit`,
   inaccessible and uncommitted until someone mprotect()s parts of it; 0 when it cannot, or should
   not: under an address-space limit (RLIMIT_AS) a large reservation would starve the rest of the
   process. The kernel places mappings near the top of the address space unless given a hint, so
   a few hinted places in the upper half below `limit` are tried, from a random start (AT_RANDOM). */
std::uintptr_t reserve_address_space(std::size_t size, std::size_t alignment, std::uintptr_t limit) {
  rlimit address_space{};
  if (size == 0 || limit < 2 * size ||
      (::getrlimit(RLIMIT_AS, &address_space) == 0 && address_space.rlim_cur != RLIM_INFINITY)) {
    return 0;
  }
  std::uint64_t random = 0;
  if (const auto* bytes = reinterpret_cast<const unsigned char*>(::getauxval(AT_RANDOM))) {
    std::memcpy(&random, bytes, sizeof random);
  }
  const std::uintptr_t slots = (limit / 2 - size) / alignment;  // aligned starts in [limit/2, limit - size]
  for (std::uintptr_t attempt = 0; attempt < 8 && slots > 0; ++attempt) {
    const std::uintptr_t hint = limit / 2 + ((random + attempt * 0x9E3779B97F4A7C15ull) % slots) * alignment;
    void* mapped = ::mmap(reinterpret_cast<void*>(hint), size, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapped == reinterpret_cast<void*>(hint)) return hint;
    if (mapped != MAP_FAILED) ::munmap(mapped, size);  // the kernel put it elsewhere: taken
  }
  return 0;
}

bool release_address_space(std::uintptr_t begin, std::size_t size) {
  return ::munmap(reinterpret_cast<void*>(begin), size) == 0;
}

#if RELIB_DETAIL_UNLOADING
/* ---- Watching a directory ---- */


/* Watches one name in a directory: builds replace a file by rename as often as they rewrite it in
   place, and a watch on the file itself would follow the old inode away. A file counts as new
   once a writer closed it (or renamed it into place) and it then stayed untouched for the settle
   time; a write in progress cancels a pending change. A reload that finds the file still open
   for writing (the close event comes a moment before the kernel drops the writer's access) asks
   for another look a little later. The thread also runs chores the reload leaves behind
   (removing the old copy), so that they are not part of the reload's latency. */
class file_watch {
 public:
  struct place {  // a name in a directory: the module's path, and the file a symlink there names
    std::string directory, name;
    int watch = -1;
  };

  file_watch(std::vector<place> places, std::chrono::milliseconds settle, change_signal& signal,
             std::function<void()> chores)
      : places_(std::move(places)), settle_(settle), signal_(signal), chores_(std::move(chores)) {}
  file_watch(const file_watch&) = delete;
  file_watch& operator=(const file_watch&) = delete;
  ~file_watch() {
    if (thread_.joinable()) {
      poke(stop_request);
      thread_.join();
    }
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
    if (poke_fd_ >= 0) ::close(poke_fd_);
  }

  void retry_later() { poke(retry_request); }
  void run_chores() { poke(chores_request); }

  /* Empty on success, else why the directory cannot be watched. */
  std::string start() {
    inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    poke_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (inotify_fd_ < 0 || poke_fd_ < 0) return std::string("inotify_init1/eventfd failed: ") + std::strerror(errno);
    for (place& where : places_) {
      if (!add_watch(where)) return "cannot watch directory '" + where.directory + "': " + std::strerror(errno);
    }
    thread_ = std::thread([this] { run(); });
    return "";
  }

 private:
  static constexpr std::uint32_t watched_events = IN_CREATE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO |
                                                  IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF |
                                                  IN_ONLYDIR;
  using clock = std::chrono::steady_clock;
  static constexpr unsigned stop_request = 1, retry_request = 2, chores_request = 4;

  void poke(unsigned request) {
    requests_.fetch_or(request, std::memory_order_release);
    const std::uint64_t one = 1;
    while (::write(poke_fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }

  bool add_watch(place& where) {
    where.watch = ::inotify_add_watch(inotify_fd_, where.directory.c_str(), watched_events);
    return where.watch >= 0;
  }
  bool any_directory_gone() const {
    return std::any_of(places_.begin(), places_.end(), [](const place& where) { return where.watch < 0; });
  }
  bool watched(int watch, const char* name) const {  // two places in one directory share its watch
    return std::any_of(places_.begin(), places_.end(),
                       [&](const place& where) { return where.watch == watch && where.name == name; });
  }

  int poll_timeout(bool settling, clock::time_point due) const {
    int timeout = any_directory_gone() ? 200 : -1;  // a directory went away: look for it again now and then
    if (settling) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(due - clock::now()).count();
      const int settle_left = left <= 0 ? 0 : static_cast<int>(left);
      timeout = timeout < 0 ? settle_left : std::min(timeout, settle_left);
    }
    return timeout;
  }

  static std::string event_name(std::uint32_t mask) {
    return (mask & IN_CLOSE_WRITE) ? "closed after writing (IN_CLOSE_WRITE)" : "renamed into place (IN_MOVED_TO)";
  }

  void run() {
    bool settling = false;  // closed or renamed into place: waiting for the settle time to pass
    std::string cause;      // what started the settling, for the log
    clock::time_point due{};
    alignas(inotify_event) char buffer[8192];
    for (;;) {
      pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {poke_fd_, POLLIN, 0}};
      if (::poll(fds, 2, poll_timeout(settling, due)) < 0 && errno != EINTR) return;
      if (fds[1].revents != 0) {
        std::uint64_t count = 0;
        (void)!::read(poke_fd_, &count, sizeof count);
        const unsigned requests = requests_.exchange(0, std::memory_order_acquire);
        if (requests & stop_request) return;
        if (requests & chores_request) chores_();
        if (requests & retry_request) {
          settling = true;
          cause = "a build found still being written was looked at again";
          due = clock::now() + std::max(settle_, std::chrono::milliseconds(10));
        }
      }
      for (place& where : places_) {
        if (where.watch < 0 && add_watch(where)) {  // the directory is back, maybe with a new build in it
          settling = true;
          cause = "directory '" + where.directory + "' came back";
          due = clock::now() + settle_;
        }
      }
      const ssize_t length = (fds[0].revents & POLLIN) ? ::read(inotify_fd_, buffer, sizeof buffer) : 0;
      for (ssize_t offset = 0; offset + static_cast<ssize_t>(sizeof(inotify_event)) <= length;) {
        inotify_event event;
        std::memcpy(&event, buffer + offset, sizeof event);
        const char* name = buffer + offset + sizeof event;
        offset += static_cast<ssize_t>(sizeof event + event.len);
        if (event.mask & IN_Q_OVERFLOW) {  // events were lost: look at the file again
          settling = true;
          cause = "inotify lost events (IN_Q_OVERFLOW)";
          due = clock::now() + settle_;
          continue;
        }
        if (event.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
          if (event.mask & IN_MOVE_SELF) ::inotify_rm_watch(inotify_fd_, event.wd);
          for (place& where : places_) {
            if (where.watch == event.wd) where.watch = -1;
          }
          continue;
        }
        if (event.len == 0 || !watched(event.wd, name)) continue;
        due = clock::now() + settle_;
        if (event.mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) {
          settling = true;
          cause = std::string(name) + " " + event_name(event.mask);
        } else if (event.mask & (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM)) {
          settling = false;  // being written, or gone: wait for the next close or rename
          signal_.changed.store(false, std::memory_order_release);
        }  // IN_ATTRIB (chmod, touch) only moves the end of the settle time
      }
      if (settling && clock::now() >= due) {
        settling = false;
        signal_.raise(cause + ", then untouched for " + std::to_string(settle_.count()) + " ms");
      }
    }
  }

  std::vector<place> places_;
  std::chrono::milliseconds settle_;
  change_signal& signal_;
  std::function<void()> chores_;
  std::atomic<unsigned> requests_{0};
  int inotify_fd_ = -1, poke_fd_ = -1;
  std::thread thread_;
};

/* The copies that are loaded live in a private directory (mkdtemp: a fresh name, mode 0700), so
   a build rewriting the module file in place never touches pages the process has mapped, and
   nobody else can swap a copy between its check and its dlopen(). */
class shadow_directory {
 public:
  enum class copy_status { copied, busy, failed };

  shadow_directory() = default;
  shadow_directory(const shadow_directory&) = delete;
  shadow_directory& operator=(const shadow_directory&) = delete;
  ~shadow_directory() {
    remove_doomed();
    for (const std::string& name : names_) ::unlinkat(fd_, name.c_str(), 0);
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::rmdir(path_.c_str());
  }

  /* Empty on success, else why no directory could be made in any of the parents. Directories
     left in the chosen parent by processes that died are removed first. */
  std::string create(const std::vector<std::string>& parents, const std::string& base_name) {
    base_ = base_name;
    std::string failures;
    for (const std::string& parent : parents) {
      if (parent.empty()) continue;
      const std::string prefix = ".relib-" + base_name + "-";
      std::string pattern = parent + "/" + prefix + "XXXXXX";
      if (::mkdtemp(pattern.data()) == nullptr) {
        failures += (failures.empty() ? "" : ", ") + parent + " (" + std::strerror(errno) + ")";
        continue;
      }
      fd_ = ::open(pattern.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      // A lock on the directory says "its process is alive": the kernel drops it when the
      // process dies, however it dies.
      if (fd_ >= 0 && ::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
        path_ = pattern;
        remove_abandoned(parent, prefix, pattern.substr(parent.size() + 1));
        return "";
      }
      failures += (failures.empty() ? "" : ", ") + parent + " (" + std::strerror(errno) + ")";
      if (fd_ >= 0) ::close(std::exchange(fd_, -1));
      ::rmdir(pattern.c_str());
    }
    return "cannot make a private directory for its copies in " + failures;
  }

  /* Copies `source`, a regular file the caller opened (and checked: the copy is of that file).
     busy: a writer still has the file open (or changed it while it was copied). */
  copy_status copy(const readable_file& source, std::string& copy_path, std::string& error) {
    const file_descriptor& in = source.fd_;
    struct stat before {};
    if (::fstat(in.get(), &before) != 0) {
      error = std::string("cannot read it: ") + std::strerror(errno);
      return copy_status::failed;
    }
    // Where leases are refused for another reason than a writer (file of another owner, file
    // system without them), the size and time comparison below is what remains.
    const lease_status lease = take_read_lease(in.get());
    if (lease == lease_status::busy) return copy_status::busy;
    const bool leased = lease == lease_status::taken;
    const std::string name = std::to_string(++copies_made_) + "-" + base_;
    file_descriptor out(::openat(fd_, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700));
    bool copied = out.get() >= 0;
    if (copied) names_.push_back(name);
    copied = copied && copy_bytes(in.get(), out.get(), before.st_size);
    const int copy_errno = errno;
    struct stat after {};
    const bool unchanged = ::fstat(in.get(), &after) == 0 && after.st_size == before.st_size &&
                           after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
                           after.st_mtim.tv_nsec == before.st_mtim.tv_nsec;
    if (leased) ::fcntl(in.get(), F_SETLEASE, F_UNLCK);
    copy_path = path_ + "/" + name;
    if (copied && unchanged) return copy_status::copied;
    remove(copy_path);
    if (copied) return copy_status::busy;
    error = "cannot copy it into '" + path_ + "': " + std::strerror(copy_errno);
    return copy_status::failed;
  }

  /* Whether a writer has `source` open now: then a refusal of its contents may be of half a
     build, and the watcher looks again once it is closed. */
  static bool being_written(const readable_file& source) {
    const lease_status lease = take_read_lease(source.fd_.get());
    if (lease == lease_status::taken) ::fcntl(source.fd_.get(), F_SETLEASE, F_UNLCK);
    return lease == lease_status::busy;
  }

  void remove(const std::string& copy_path) {
    if (forget(copy_path)) ::unlinkat(fd_, base_name(copy_path).c_str(), 0);
  }

  /* Removing a file of a few hundred KB takes tens of microseconds: after a reload, the watcher's
     thread does it (remove_doomed), not the thread waiting for the new code. */
  void remove_later(const std::string& copy_path) {
    if (!forget(copy_path)) return;
    std::lock_guard<std::mutex> guard(doomed_lock_);
    doomed_.push_back(base_name(copy_path));
  }
  void remove_doomed() {
    std::vector<std::string> names;
    {
      std::lock_guard<std::mutex> guard(doomed_lock_);
      names.swap(doomed_);
    }
    for (const std::string& name : names) ::unlinkat(fd_, name.c_str(), 0);
  }

 private:
  static bool copy_bytes(int in, int out, off_t size) {
    off_t done = 0;
    while (done < size) {  // in the kernel, and shared extents where the file system can
      const ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, static_cast<std::size_t>(size - done), 0);
      if (n > 0) {
        done += n;
      } else if (n == 0) {
        errno = EIO;  // the file shrank under us
        return false;
      } else if (errno != EINTR) {
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP) return false;
        break;
      }
    }
    char buffer[1 << 16];
    while (done < size) {
      const ssize_t got = ::read(in, buffer, sizeof buffer);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        if (got == 0) errno = EIO;
        return false;
      }
      for (ssize_t written = 0; written < got;) {
        const ssize_t n = ::write(out, buffer + written, static_cast<std::size_t>(got - written));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        written += n;
      }
      done += got;
    }
    return true;
  }

  bool forget(const std::string& copy_path) {
    const auto found = std::find(names_.begin(), names_.end(), base_name(copy_path));
    if (found == names_.end()) return false;
    names_.erase(found);
    return true;
  }

  /* A read lease is refused while anyone has the file open for writing, and while it is held a
     writer opening the file waits until the lease is released. A writer breaking the lease
     signals its owner, which the kernel sets to this process: the owner is cleared at once, and
     for that instant the signal is SIGWINCH, ignored unless the host handles terminal resizes
     (SIGIO would end the process). The caller releases a lease taken (F_SETLEASE, F_UNLCK). */
  enum class lease_status { taken, busy, unavailable };
  static lease_status take_read_lease(int fd) {
    ::fcntl(fd, F_SETSIG, SIGWINCH);
    if (::fcntl(fd, F_SETLEASE, F_RDLCK) != 0) {
      return errno == EAGAIN || errno == EWOULDBLOCK ? lease_status::busy : lease_status::unavailable;
    }
    ::fcntl(fd, F_SETOWN, 0);
    return lease_status::taken;
  }

  /* Removes this user's directories named `prefix`XXXXXX in `parent` whose lock nobody holds: their
     process died (SIGKILL, a crash) before it could remove them. Only regular files in them are
     removed; anything else leaves the directory in place. */
  static void remove_abandoned(const std::string& parent, const std::string& prefix, const std::string& mine) {
    file_descriptor parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DIR* listing = parent_fd.get() >= 0 ? ::fdopendir(::dup(parent_fd.get())) : nullptr;
    if (listing == nullptr) return;
    std::vector<std::string> candidates;
    while (const dirent* entry = ::readdir(listing)) {
      const std::string name = entry->d_name;
      if (name.size() == prefix.size() + 6 && name.compare(0, prefix.size(), prefix) == 0 && name != mine) {
        candidates.push_back(name);
      }
    }
    ::closedir(listing);
    for (const std::string& name : candidates) {
      file_descriptor directory(::openat(parent_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      struct stat info {};
      if (directory.get() < 0 || ::fstat(directory.get(), &info) != 0 || info.st_uid != ::geteuid() ||
          ::flock(directory.get(), LOCK_EX | LOCK_NB) != 0) {
        continue;  // not ours, or its process is alive
      }
      DIR* contents = ::fdopendir(::dup(directory.get()));
      if (contents == nullptr) continue;
      while (const dirent* entry = ::readdir(contents)) {
        struct stat file {};
        if (::fstatat(directory.get(), entry->d_name, &file, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(file.st_mode)) {
          ::unlinkat(directory.get(), entry->d_name, 0);
        }
      }
      ::closedir(contents);
      ::unlinkat(parent_fd.get(), name.c_str(), AT_REMOVEDIR);
    }
  }

  std::string path_, base_;
  int fd_ = -1;
  std::uint64_t copies_made_ = 0;
  std::vector<std::string> names_;  // copies still on disk, for the reloading thread
  std::mutex doomed_lock_;
  std::vector<std::string> doomed_;  // copies the watcher's thread is to remove
};

#endif  // RELIB_DETAIL_UNLOADING

/* ---- Crashes: the signals a fault raises, caught for >>crash guard ---- */

/* What the handler learned of a fault, in portable terms. */
struct crash_event {
  int signal = 0;
  std::uintptr_t address = 0;      // si_addr: the bad access (SIGSEGV, SIGBUS) or the instruction
  std::uintptr_t pc = 0;           // the faulting instruction
  std::uintptr_t return_hint = 0;  // the caller's return address if pc is at a function's first
                                   // instruction (a call through a bad pointer): top of the stack
};

constexpr int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
constexpr int abort_signal = SIGABRT;

const char* signal_name(int signal) {
  switch (signal) {
    case SIGSEGV: return "SIGSEGV (invalid memory access)";
    case SIGBUS: return "SIGBUS (access past the end of a mapped file, or misaligned)";
    case SIGFPE: return "SIGFPE (arithmetic error: division by zero)";
    case SIGILL: return "SIGILL (illegal instruction: __builtin_trap, or corrupt code)";
    case SIGABRT: return "SIGABRT (abort() called)";
    default: return "a signal";
  }
}

/* Each signal's action before relib's, to pass on what is not a module's. */
inline struct sigaction previous_crash_actions[NSIG];
inline void (*crash_callback)(const crash_event&) = nullptr;

/* The thread's signal mask when it crashed, which a jump out of the handler must put back: the
   handler runs with more signals blocked (all of them, under ThreadSanitizer). */
inline thread_local sigset_t mask_before_crash;

inline void on_crash_signal(int signal, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  mask_before_crash = static_cast<const ucontext_t*>(context)->uc_sigmask;
  crash_event event;
  event.signal = signal;
  event.address = reinterpret_cast<std::uintptr_t>(info->si_addr);
  const auto* machine = &static_cast<const ucontext_t*>(context)->uc_mcontext;
#if defined(__x86_64__)
  event.pc = static_cast<std::uintptr_t>(machine->gregs[REG_RIP]);
  // Read without touching it: after a stack overflow the stack pointer is in the guard page.
  std::uintptr_t top = 0;
  iovec local{&top, sizeof top}, remote{reinterpret_cast<void*>(machine->gregs[REG_RSP]), sizeof top};
  if (::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(sizeof top)) event.return_hint = top;
#elif defined(__aarch64__)
  event.pc = static_cast<std::uintptr_t>(machine->pc);
  event.return_hint = static_cast<std::uintptr_t>(machine->regs[30]);
#else
  (void)machine;
#endif
  if (crash_callback != nullptr) crash_callback(event);  // returns only when the crash is not a guarded call's
  // Not a module's, or a module's without the guard: what the process had before relib.
  const struct sigaction& previous = previous_crash_actions[signal];
  errno = saved_errno;
  if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
    previous.sa_sigaction(signal, info, context);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(signal);
  } else {
    // The default action: returning runs the faulting instruction again, which now ends the
    // process with this signal (and a core dump where enabled).
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    sigaction(signal, &fallback, nullptr);
  }
}

inline bool is_crash_handler(const struct sigaction& action) {
  return (action.sa_flags & SA_SIGINFO) != 0 && action.sa_sigaction == &on_crash_signal;
}

/* Installs the handler for the crash signals, on the alternate stack when a thread has one, and
   keeps the actions it replaces. Called at every load: a handler the host (or a test framework)
   installed since replaced relib's, and now comes after it. One system call when nothing changed. */
inline void install_crash_handler(void (*callback)(const crash_event&)) {
  crash_callback = callback;
  struct sigaction current {};
  if (sigaction(SIGSEGV, nullptr, &current) == 0 && is_crash_handler(current)) return;
  for (const int signal : crash_signals) {
    struct sigaction action {}, replaced{};
    action.sa_sigaction = &on_crash_signal;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(signal, &action, &replaced) != 0) continue;
    if (!is_crash_handler(replaced)) previous_crash_actions[signal] = replaced;  // never relib's own, which would call itself
  }
}

/* After a jump out of the handler: the signals it blocked are delivered again on this thread. */
inline void restore_signal_mask_after_crash() { pthread_sigmask(SIG_SETMASK, &mask_before_crash, nullptr); }

/* A stack for the handler on this thread, so that a module's stack overflow can be caught: made
   at the thread's first guarded call (unless it has one), freed when the thread exits. */
class signal_stack {
 public:
  static constexpr std::size_t size = 64 * 1024;
  void ensure() {
    if (memory_ != nullptr) return;
    stack_t current{};
    if (sigaltstack(nullptr, &current) != 0 || (current.ss_flags & SS_DISABLE) == 0) return;  // the host's own
    void* memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return;
    stack_t stack{};
    stack.ss_sp = memory;
    stack.ss_size = size;
    if (sigaltstack(&stack, nullptr) != 0) {
      ::munmap(memory, size);
      return;
    }
    memory_ = memory;
  }
  ~signal_stack() {
    if (memory_ == nullptr) return;
    stack_t off{};
    off.ss_flags = SS_DISABLE;
    sigaltstack(&off, nullptr);
    ::munmap(memory_, size);
  }

 private:
  void* memory_ = nullptr;
};

/* The code of the object that holds `address` (the executable, relib's own library): where a
   crash is the host's. */
inline std::vector<std::pair<std::uintptr_t, std::uintptr_t>> code_of_object_holding(std::uintptr_t address) {
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> ranges, found;
  any_loaded_object([&](const dl_phdr_info& info) {
    ranges.clear();
    bool holds = false;
    for (unsigned i = 0; i < info.dlpi_phnum; ++i) {
      const ElfW(Phdr)& segment = info.dlpi_phdr[i];
      if (segment.p_type != PT_LOAD || (segment.p_flags & PF_X) == 0) continue;
      const std::uintptr_t begin = info.dlpi_addr + segment.p_vaddr, end = begin + segment.p_memsz;
      ranges.emplace_back(begin, end);
      holds = holds || (address >= begin && address < end);
    }
    if (holds) found = ranges;
    return holds;
  });
  return found;
}
/* The executable's file, opened for reading, and the address it was loaded at. */
inline bool open_main_program(readable_file& file, std::uintptr_t& base) {
  any_loaded_object([&](const dl_phdr_info& info) { return base = info.dlpi_addr, true; });  // listed first
  return file.open("/proc/self/exe") == readable_file::status::opened;
}
inline std::uintptr_t main_program_code() {  // an address in the executable's code
  std::uintptr_t address = 0;
  any_loaded_object([&](const dl_phdr_info& info) {
    for (unsigned i = 0; i < info.dlpi_phnum; ++i) {
      if (info.dlpi_phdr[i].p_type == PT_LOAD && (info.dlpi_phdr[i].p_flags & PF_X) != 0) {
        address = info.dlpi_addr + info.dlpi_phdr[i].p_vaddr;
        break;
      }
    }
    return true;  // the first object listed is the executable
  });
  return address;
}

}  // namespace platform
}  // namespace detail
}  // namespace relib
#endif  // !_WIN32

/* >>platform ---- Windows (mingw-w64): the same names, on the Win32 API ------------------------
   Paths are UTF-8 in relib and UTF-16 for the system. What Windows does differently, and what a
   host gets instead, is in docs/windows.md: a checked file is held open without sharing write or
   delete access, so the path names that very file until relib closes it; the host's free() cannot
   be interposed; the trust policy has no owners to compare. */
#if defined(_WIN32)
#if !defined(WIN32_LEAN_AND_MEAN)
#define WIN32_LEAN_AND_MEAN
#endif
#if !defined(NOMINMAX)
#define NOMINMAX
#endif
#include <windows.h>
#include <psapi.h>
#include <pthread.h>
#include <csignal>
#include <deque>

namespace relib {
namespace detail {
#define RELIB_DETAIL_UNINSTRUMENTED
template <class T>
T acquire_load(const T& variable) noexcept {
  return __atomic_load_n(&variable, __ATOMIC_ACQUIRE);
}
template <class T>
void release_store(T& variable, T value) noexcept {
  __atomic_store_n(&variable, value, __ATOMIC_RELEASE);
}

namespace platform {

/* ---- The machine: what a PE file built for this process says in its COFF header ---- */
#if defined(__x86_64__)
constexpr std::uint16_t host_machine = IMAGE_FILE_MACHINE_AMD64;
constexpr std::uint16_t host_optional_magic = IMAGE_NT_OPTIONAL_HDR64_MAGIC;
#elif defined(__aarch64__)
constexpr std::uint16_t host_machine = 0xAA64;  // IMAGE_FILE_MACHINE_ARM64
constexpr std::uint16_t host_optional_magic = IMAGE_NT_OPTIONAL_HDR64_MAGIC;
#elif defined(__i386__)
constexpr std::uint16_t host_machine = IMAGE_FILE_MACHINE_I386;
constexpr std::uint16_t host_optional_magic = IMAGE_NT_OPTIONAL_HDR32_MAGIC;
#else
#error "relib: add this machine's PE machine value"
#endif

/* The file the modules' mimalloc comes from (tools/mingw-w64-deps.sh builds it). */
constexpr const char* mimalloc_library_names[] = {"libmimalloc.dll", "mimalloc.dll"};
/* No crash guard yet: it would take a vectored exception handler (docs/windows.md). */
constexpr bool has_crash_guard = false;
constexpr const char* system_name = "Windows";
/* Modules built by relib_add_module() link the unwinder statically: nothing to pin. */
constexpr const char* unwinder_library_name = "libgcc_s_seh-1.dll";
/* Names for messages: the file format, a library's suffix, the loader's open and close. */
constexpr const char* image_format = "PE";
constexpr const char* library_suffix = ".dll";
constexpr const char* open_call = "LoadLibrary()";
constexpr const char* close_call = "FreeLibrary()";

/* ---- Text: UTF-8 in relib, UTF-16 for the system ---- */
inline std::wstring wide(const std::string& text) {
  if (text.empty()) return std::wstring();
  const int length = MultiByteToWideChar(CP_UTF8, 0, text.data(), static_cast<int>(text.size()), nullptr, 0);
  std::wstring out(static_cast<std::size_t>(length > 0 ? length : 0), L'\0');
  if (length > 0) MultiByteToWideChar(CP_UTF8, 0, text.data(), static_cast<int>(text.size()), out.data(), length);
  return out;
}
inline std::string narrow(const wchar_t* text, std::size_t size) {
  if (size == 0) return std::string();
  const int length = WideCharToMultiByte(CP_UTF8, 0, text, static_cast<int>(size), nullptr, 0, nullptr, nullptr);
  std::string out(static_cast<std::size_t>(length > 0 ? length : 0), '\0');
  if (length > 0) WideCharToMultiByte(CP_UTF8, 0, text, static_cast<int>(size), out.data(), length, nullptr, nullptr);
  return out;
}
inline std::string narrow(const std::wstring& text) { return narrow(text.data(), text.size()); }

/* The system's message for an error code, without its line break. */
inline std::string error_text(DWORD code) {
  wchar_t* buffer = nullptr;
  const DWORD length = FormatMessageW(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM |
                                          FORMAT_MESSAGE_IGNORE_INSERTS,
                                      nullptr, code, 0, reinterpret_cast<LPWSTR>(&buffer), 0, nullptr);
  std::string text = length > 0 ? narrow(buffer, length) : std::string();
  if (buffer != nullptr) LocalFree(buffer);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' || text.back() == '.')) {
    text.pop_back();
  }
  return (text.empty() ? std::string("error") : text) + " (Windows error " + std::to_string(code) + ")";
}

/* A module's file name as the system knows it (GetModuleFileNameW), empty when it is not loaded. */
inline std::string module_file_name(HMODULE module) {
  std::wstring name(MAX_PATH, L'\0');
  for (;;) {
    const DWORD length = GetModuleFileNameW(module, name.data(), static_cast<DWORD>(name.size()));
    if (length == 0) return std::string();
    if (length < name.size()) return narrow(name.data(), length);
    if (name.size() >= 32768) return std::string();
    name.resize(name.size() * 2);
  }
}

/* ---- Files: open for reading, read a range, identity ---- */
class file_descriptor {  // a file HANDLE, closed with the object
 public:
  explicit file_descriptor(HANDLE handle = INVALID_HANDLE_VALUE) : handle_(handle) {}
  file_descriptor(const file_descriptor&) = delete;
  file_descriptor& operator=(const file_descriptor&) = delete;
  ~file_descriptor() { reset(INVALID_HANDLE_VALUE); }
  HANDLE get() const { return handle_; }
  void reset(HANDLE handle) {
    if (handle_ != INVALID_HANDLE_VALUE) CloseHandle(handle_);
    handle_ = handle;
  }
  void release() { handle_ = INVALID_HANDLE_VALUE; }

 private:
  HANDLE handle_;
};

/* Who owns a file or directory, and who else may write it (read by the trust policy, >>load).
   Windows has ACLs rather than an owner and mode bits: see effective_user() below. */
struct file_ownership {
  std::uint32_t owner = 0, group = 0;
  bool directory = false;
  bool group_writable = false, others_writable = false;
  bool sticky = false;
};

/* A file opened for reading, with what relib needs to know of it. It is opened sharing read
   access only: while relib holds it, nobody can write, rename or delete it, so the path names
   this very file when LoadLibrary opens it. */
class readable_file {
 public:
  enum class status { opened, not_found, failed };
  enum class kind { regular, directory, other };

  status open(const std::string& path) {
    fd_.reset(CreateFileW(wide(path).c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING,
                          FILE_FLAG_BACKUP_SEMANTICS, nullptr));  // backup semantics: directories open too
    BY_HANDLE_FILE_INFORMATION info{};
    if (fd_.get() == INVALID_HANDLE_VALUE || GetFileInformationByHandle(fd_.get(), &info) == 0) {
      const DWORD failure = GetLastError();
      error_ = error_text(failure);
      held_by_writer_ = failure == ERROR_SHARING_VIOLATION;
      if (held_by_writer_) error_ += ": another process has it open for writing";
      fd_.reset(INVALID_HANDLE_VALUE);
      return failure == ERROR_FILE_NOT_FOUND || failure == ERROR_PATH_NOT_FOUND ? status::not_found : status::failed;
    }
    const DWORD type = GetFileType(fd_.get());
    kind_ = (info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0 ? kind::directory
            : type == FILE_TYPE_DISK                                ? kind::regular
                                                                    : kind::other;
    size_ = (std::uint64_t{info.nFileSizeHigh} << 32) | info.nFileSizeLow;
    device_ = info.dwVolumeSerialNumber;
    inode_ = (std::uint64_t{info.nFileIndexHigh} << 32) | info.nFileIndexLow;
    modified_ = (std::uint64_t{info.ftLastWriteTime.dwHighDateTime} << 32) | info.ftLastWriteTime.dwLowDateTime;
    ownership_.directory = kind_ == kind::directory;
    return status::opened;
  }

  bool changed_since_open() const {
    BY_HANDLE_FILE_INFORMATION info{};
    return GetFileInformationByHandle(fd_.get(), &info) == 0 ||
           ((std::uint64_t{info.nFileSizeHigh} << 32) | info.nFileSizeLow) != size_ ||
           ((std::uint64_t{info.ftLastWriteTime.dwHighDateTime} << 32) | info.ftLastWriteTime.dwLowDateTime) != modified_;
  }

  bool read_range(std::uint64_t offset, void* out, std::uint64_t length) const {
    auto* bytes = static_cast<char*>(out);
    while (length > 0) {
      OVERLAPPED at{};
      at.Offset = static_cast<DWORD>(offset);
      at.OffsetHigh = static_cast<DWORD>(offset >> 32);
      DWORD got = 0;
      const DWORD asked = static_cast<DWORD>(std::min<std::uint64_t>(length, 1u << 30));
      if (ReadFile(fd_.get(), bytes, asked, &got, &at) == 0 || got == 0) return false;
      bytes += got;
      offset += got;
      length -= got;
    }
    return true;
  }

  /* The file's absolute path now, as the system names it. */
  std::string current_path() const {
    std::wstring path(MAX_PATH, L'\0');
    DWORD length = GetFinalPathNameByHandleW(fd_.get(), path.data(), static_cast<DWORD>(path.size()), FILE_NAME_NORMALIZED);
    if (length >= path.size()) {
      path.resize(length + 1);
      length = GetFinalPathNameByHandleW(fd_.get(), path.data(), static_cast<DWORD>(path.size()), FILE_NAME_NORMALIZED);
    }
    if (length == 0 || length >= path.size()) return std::string();
    path.resize(length);
    if (path.compare(0, 8, L"\\\\?\\UNC\\") == 0) return narrow(L"\\\\" + path.substr(8));
    if (path.compare(0, 4, L"\\\\?\\") == 0) return narrow(path.substr(4));
    return narrow(path);
  }
  /* What LoadLibrary opens to get exactly this file: its path, which nobody can change while the
     file is held open here. */
  std::string loader_path() const { return current_path(); }
  void keep_open_for_good() { fd_.release(); }
  void close() { fd_.reset(INVALID_HANDLE_VALUE); }

  kind type() const { return kind_; }
  std::uint64_t size() const { return size_; }
  // The volume's serial number and the file's index: the same file whatever the path.
  std::uint64_t device() const { return device_; }
  std::uint64_t inode() const { return inode_; }
  std::string identity() const {
    return std::to_string(device_) + ":" + std::to_string(inode_) + ":" + std::to_string(size_) + ":" + std::to_string(modified_);
  }
  const file_ownership& ownership() const { return ownership_; }
  const std::string& error() const { return error_; }
  /* Whether open() failed because another process has the file open for writing (a build). */
  bool held_by_writer() const { return held_by_writer_; }

 private:
  friend class shadow_directory;

  file_descriptor fd_;
  file_ownership ownership_;
  kind kind_ = kind::other;
  std::uint64_t size_ = 0, device_ = 0, inode_ = 0, modified_ = 0;
  std::string error_;
  bool held_by_writer_ = false;
};

/* ---- Libraries: open, look up, close, and whether one is still loaded ---- */
using library = void*;  // an HMODULE; null: none

/* LoadLibraryExW by full path, its dependencies looked for in its own directory first (as
   $ORIGIN on Linux). With RELIB_NO_UNLOADING the library is pinned: FreeLibrary never unloads it. */
inline library load_by_path(const std::string& path, std::string& error) {
  std::wstring full(MAX_PATH, L'\0');
  const std::wstring given = wide(path);
  DWORD length = GetFullPathNameW(given.c_str(), static_cast<DWORD>(full.size()), full.data(), nullptr);
  if (length >= full.size()) {
    full.resize(length + 1);
    length = GetFullPathNameW(given.c_str(), static_cast<DWORD>(full.size()), full.data(), nullptr);
  }
  full.resize(length < full.size() ? length : 0);
  const UINT previous_mode = GetErrorMode();
  SetErrorMode(previous_mode | SEM_FAILCRITICALERRORS | SEM_NOOPENFILEERRORBOX);  // no dialog box
  HMODULE opened = LoadLibraryExW(full.empty() ? given.c_str() : full.c_str(), nullptr, LOAD_WITH_ALTERED_SEARCH_PATH);
  const DWORD failure = GetLastError();
  SetErrorMode(previous_mode);
  if (opened == nullptr) {
    error = path + ": " + error_text(failure);
    return nullptr;
  }
#if !RELIB_DETAIL_UNLOADING
  HMODULE pinned = nullptr;
  GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_PIN | GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
                     reinterpret_cast<LPCWSTR>(opened), &pinned);
#endif
  return reinterpret_cast<library>(opened);
}

library open_library(const readable_file& file, std::string& error) { return load_by_path(file.loader_path(), error); }
library open_library_at(const std::string& path, std::string& error) { return load_by_path(path, error); }

/* The loader's list already names a library by its full path: nothing to rename. */
char* name_library(library, const std::string&) { return nullptr; }
void forget_library_name(char*) {}

library pin_library(const char* name, bool only_if_loaded) {
  HMODULE pinned = nullptr;
  const std::wstring wide_name = wide(name);
  if (!only_if_loaded && LoadLibraryW(wide_name.c_str()) == nullptr) return nullptr;
  if (GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_PIN, wide_name.c_str(), &pinned) == 0) return nullptr;
  return reinterpret_cast<library>(pinned);
}

void* find_symbol(library opened, const char* name) {
  return reinterpret_cast<void*>(GetProcAddress(static_cast<HMODULE>(opened), name));
}

void close_library(library opened) { FreeLibrary(static_cast<HMODULE>(opened)); }

struct loaded_object {
  std::uintptr_t base = 0;
  std::string name;
};

loaded_object describe_library(library opened) {
  loaded_object object;
  object.base = reinterpret_cast<std::uintptr_t>(opened);
  object.name = module_file_name(static_cast<HMODULE>(opened));
  return object;
}

/* Calls visit(base, name) for every module of the process until it returns true. The loader's
   list, read in the process (EnumProcessModules, in kernel32): a toolhelp snapshot gives the same
   list through the system and cost each load about 3 ms under Wine. */
template <class Visit>
bool any_loaded_object(Visit visit) {
  std::vector<HMODULE> modules(64);
  bool listed = false;
  for (int attempt = 0; attempt < 8 && !listed; ++attempt) {
    const DWORD bytes = static_cast<DWORD>(modules.size() * sizeof(HMODULE));
    DWORD needed = 0;
    if (EnumProcessModules(GetCurrentProcess(), modules.data(), bytes, &needed) == 0) continue;  // changed meanwhile
    listed = needed <= bytes;
    modules.resize(listed ? needed / sizeof(HMODULE) : needed / sizeof(HMODULE) + 16);
  }
  if (!listed) return false;
  for (HMODULE module : modules) {
    if (visit(reinterpret_cast<std::uintptr_t>(module), module_file_name(module))) return true;
  }
  return false;
}

std::vector<std::uintptr_t> loaded_library_bases() {
  std::vector<std::uintptr_t> bases;
  any_loaded_object([&](std::uintptr_t base, const std::string&) { return bases.push_back(base), false; });
  return bases;
}

/* Whether that very module (same base, same file) is still in the process: the loader's own
   answer for the address, without taking a reference. */
bool still_mapped(const loaded_object& object) {
  HMODULE holder = nullptr;
  if (GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                         reinterpret_cast<LPCWSTR>(object.base), &holder) == 0) {
    return false;
  }
  return reinterpret_cast<std::uintptr_t>(holder) == object.base && module_file_name(holder) == object.name;
}

std::vector<std::string> loaded_library_names() {
  std::vector<std::string> names;
  any_loaded_object([&](std::uintptr_t, const std::string& name) { return names.push_back(name), false; });
  return names;
}

/* The C runtime DLL's own function: the host's free() and realloc() (>>free interposition)
   replace the C runtime's for the executable's code only, and pass on to these. */
inline void* runtime_function(const char* name) {
#if defined(_UCRT)
  static HMODULE runtime = GetModuleHandleW(L"ucrtbase.dll");
#else
  static HMODULE runtime = GetModuleHandleW(L"msvcrt.dll");
#endif
  return runtime != nullptr ? reinterpret_cast<void*>(GetProcAddress(runtime, name)) : nullptr;
}
/* Imports are bound per image when it is linked: the definition after the executable's own is
   the C runtime's, for the C functions; operator delete's falls back to free(). */
void* next_definition(const char* name) {
  return std::strcmp(name, "free") == 0 || std::strcmp(name, "realloc") == 0 ? runtime_function(name) : nullptr;
}
bool in_cxx_runtime(void*) { return false; }
std::string base_name(const std::string& path);  // ---- Paths, below

struct address_owner {
  std::string file;
  std::uintptr_t base = 0;
  std::string symbol;
};
bool owner_of_address(std::uintptr_t address, address_owner& out) {
  HMODULE holder = nullptr;
  if (GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                         reinterpret_cast<LPCWSTR>(address), &holder) == 0) {
    return false;
  }
  out.file = module_file_name(holder);
  out.base = reinterpret_cast<std::uintptr_t>(holder);
  out.symbol.clear();  // a DLL's exports are not its functions' names
  return !out.file.empty();
}

const char* environment_variable(const char* name) { return std::getenv(name); }

void process_free(void* block) noexcept {
  static const auto runtime_free = reinterpret_cast<void (*)(void*)>(runtime_function("free"));
  if (runtime_free != nullptr) runtime_free(block);
}
void* process_realloc(void* block, std::size_t size) noexcept {
  static const auto runtime_realloc = reinterpret_cast<void* (*)(void*, std::size_t)>(runtime_function("realloc"));
  return runtime_realloc != nullptr ? runtime_realloc(block, size) : nullptr;
}

/* ---- Paths: names, links, temporary directories ---- */
inline bool is_separator(char c) { return c == '/' || c == '\\'; }
std::string base_name(const std::string& path) {
  const std::size_t slash = path.find_last_of("/\\");
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string directory_of(const std::string& path) {
  const std::size_t slash = path.find_last_of("/\\");
  if (slash == std::string::npos) return ".";
  if (slash == 0 || (slash == 2 && path[1] == ':')) return path.substr(0, slash + 1);  // "/", "C:\"
  return path.substr(0, slash);
}

bool is_absolute_path(const std::string& path) {
  return (path.size() >= 3 && path[1] == ':' && is_separator(path[2])) ||
         (path.size() >= 2 && is_separator(path[0]) && is_separator(path[1]));
}
constexpr const char* path_unknown_hint = "GetFinalPathNameByHandleW failed";

/* The file a symbolic link (a reparse point) at `path` names, resolved; empty when `path` is not one. */
std::string symlink_target(const std::string& path) {
  const std::wstring wide_path = wide(path);
  const DWORD attributes = GetFileAttributesW(wide_path.c_str());
  if (attributes == INVALID_FILE_ATTRIBUTES || (attributes & FILE_ATTRIBUTE_REPARSE_POINT) == 0) return "";
  readable_file target;
  return target.open(path) == readable_file::status::opened ? target.current_path() : std::string();
}

std::vector<std::string> temporary_directories() {
  wchar_t buffer[MAX_PATH + 1];
  const DWORD length = GetTempPathW(MAX_PATH + 1, buffer);
  std::string temporary = length > 0 && length <= MAX_PATH ? narrow(buffer, length) : std::string();
  while (temporary.size() > 3 && is_separator(temporary.back())) temporary.pop_back();
  return {temporary};
}

/* ---- Trust ----
   Windows answers "may anyone else write it" with ACLs, which the trust policy does not read yet:
   every file and directory counts as the process user's own (docs/windows.md). */
bool ownership_of(const std::string& path, file_ownership& out, std::string& error) {
  const DWORD attributes = GetFileAttributesW(wide(path).c_str());
  if (attributes == INVALID_FILE_ATTRIBUTES) {
    error = error_text(GetLastError());
    return false;
  }
  out = file_ownership{};
  out.directory = (attributes & FILE_ATTRIBUTE_DIRECTORY) != 0;
  return true;
}

constexpr std::uint32_t superuser = 0;
std::uint32_t effective_user() { return 0; }
struct user_record {
  bool found = false;
  std::string name;
  std::uint32_t primary_group = 0;
};
struct group_record {
  bool found = false;
  std::string name;
  std::vector<std::string> members;
};
user_record find_user(std::uint32_t) { return {}; }
group_record find_group(std::uint32_t) { return {}; }

/* ---- Threads and thread keys: mingw-w64's winpthreads, as on Linux ---- */
using thread_id = pthread_t;
thread_id this_thread() { return pthread_self(); }
bool same_thread(thread_id a, thread_id b) { return pthread_equal(a, b) != 0; }

int start_thread(thread_id* thread, const pthread_attr_t* attributes, void* (*start)(void*), void* argument) {
  return pthread_create(thread, attributes, start, argument);
}

using thread_key = pthread_key_t;
int create_thread_key(thread_key* key, void (*destructor)(void*)) { return pthread_key_create(key, destructor); }
int delete_thread_key(thread_key key) { return pthread_key_delete(key); }
/* winpthreads clears every thread's value when a key is deleted, but pthread_setspecific on a
   deleted key still stores one; the next key made at that index would return it. */
void drop_value_of_deleted_key(thread_key key) { pthread_setspecific(key, nullptr); }

/* A module thread, held from its start until it has ended (its handle). winpthreads takes its
   thread list lock then its key lock as a thread ends, and pthread_key_delete takes them the other
   way round: unload() deletes the module's keys only once its threads are wholly gone. */
struct thread_hold {
  HANDLE handle = nullptr;
  thread_hold() = default;
  thread_hold(const thread_hold&) = delete;
  thread_hold& operator=(const thread_hold&) = delete;
  thread_hold(thread_hold&& other) noexcept : handle(std::exchange(other.handle, nullptr)) {}
  thread_hold& operator=(thread_hold&& other) noexcept {
    std::swap(handle, other.handle);
    return *this;
  }
  ~thread_hold() {
    if (handle != nullptr) CloseHandle(handle);
  }
};
thread_hold hold_this_thread() {
  thread_hold hold;
  if (!DuplicateHandle(GetCurrentProcess(), GetCurrentThread(), GetCurrentProcess(), &hold.handle, SYNCHRONIZE, FALSE, 0)) {
    hold.handle = nullptr;  // not held: unload() cannot wait for this one
  }
  return hold;
}
bool has_ended(const thread_hold& hold) { return hold.handle == nullptr || WaitForSingleObject(hold.handle, 0) == WAIT_OBJECT_0; }
void wait_until_ended(thread_hold& hold) {
  if (hold.handle != nullptr) WaitForSingleObject(hold.handle, INFINITE);
}

/* This thread's T, made at its first use and destroyed when the thread exits. Not a thread_local:
   mingw-w64 keeps thread_locals in emulated TLS, which a thread's exit may free before their
   destructors run; a pthread key's destructor runs while the object is still there. */
template <class T>
T& per_thread() {
  static const thread_key key = [] {
    thread_key made{};
    create_thread_key(&made, [](void* object) { delete static_cast<T*>(object); });
    return made;
  }();
  T* object = static_cast<T*>(pthread_getspecific(key));
  if (object == nullptr) {
    object = new T();
    pthread_setspecific(key, object);
  }
  return *object;
}

/* Every other running thread passes a full memory barrier before this returns. */
void fence_other_threads() { FlushProcessWriteBuffers(); }

/* ---- Sanitizers: none with mingw-w64 ---- */
inline void (*const sanitizer_free)(void*) = nullptr;
inline void* (*const sanitizer_realloc)(void*, std::size_t) = nullptr;
inline std::size_t (*const sanitizer_usable_size)(void*) = nullptr;
inline int (*const sanitizer_owns)(const volatile void*) = nullptr;

/* ---- Address space ---- */
inline std::uint64_t page_size() {
  static const std::uint64_t size = [] {
    SYSTEM_INFO info{};
    GetSystemInfo(&info);
    return static_cast<std::uint64_t>(info.dwPageSize);
  }();
  return size;
}

/* Reserves `size` bytes aligned to `alignment`, below `limit`, uncommitted (mimalloc commits
   what it uses). The system puts a large reservation where it likes (Wine: near the top, far
   above `limit`), so the free regions are walked with VirtualQuery, from the upper half below
   `limit` (away from the executable and the usual heaps), then from 4 GiB. */
std::uintptr_t reserve_address_space(std::size_t size, std::size_t alignment, std::uintptr_t limit) {
  if (size == 0 || alignment == 0 || limit < 2 * size) return 0;
  for (const std::uintptr_t start : {limit / 2, std::uintptr_t{4} << 30}) {
    MEMORY_BASIC_INFORMATION region{};
    for (std::uintptr_t at = start; at < limit && VirtualQuery(reinterpret_cast<void*>(at), &region, sizeof region) != 0;) {
      const std::uintptr_t base = reinterpret_cast<std::uintptr_t>(region.BaseAddress), end = base + region.RegionSize;
      const std::uintptr_t aligned = (std::max(base, at) + alignment - 1) / alignment * alignment;
      if (region.State == MEM_FREE && aligned + size <= end && aligned + size <= limit &&
          VirtualAlloc(reinterpret_cast<void*>(aligned), size, MEM_RESERVE, PAGE_NOACCESS) != nullptr) {
        return aligned;
      }
      if (end <= at) break;
      at = end;
    }
  }
  return 0;
}

bool release_address_space(std::uintptr_t begin, std::size_t) {
  return VirtualFree(reinterpret_cast<void*>(begin), 0, MEM_RELEASE) != 0;
}

#if RELIB_DETAIL_UNLOADING
/* ---- Watching a directory ---- */

/* Watches one name in each directory (the module's path, and the file a symlink there names) with
   ReadDirectoryChangesW. Windows reports no "closed after writing": a file counts as new once it
   was created, renamed into place or written, and then stayed untouched for the settle time; a
   writer that still holds it open makes the copy wait (readable_file::held_by_writer), and the
   watcher looks again a little later. The thread also runs the chores the reload leaves behind. */
class file_watch {
 public:
  struct place {
    std::string directory, name;
    int watch = -1;  // the index of its directory in directories_, -1 while that one is gone
  };

  file_watch(std::vector<place> places, std::chrono::milliseconds settle, change_signal& signal,
             std::function<void()> chores)
      : places_(std::move(places)), settle_(settle), signal_(signal), chores_(std::move(chores)) {}
  file_watch(const file_watch&) = delete;
  file_watch& operator=(const file_watch&) = delete;
  ~file_watch() {
    if (thread_.joinable()) {
      poke(stop_request);
      thread_.join();
    }
    for (directory& watched : directories_) close_directory(watched);
    if (poke_event_ != nullptr) CloseHandle(poke_event_);
  }

  void retry_later() { poke(retry_request); }
  void run_chores() { poke(chores_request); }

  std::string start() {
    poke_event_ = CreateEventW(nullptr, FALSE, FALSE, nullptr);
    if (poke_event_ == nullptr) return "CreateEventW failed: " + error_text(GetLastError());
    for (place& where : places_) {
      const auto known = std::find_if(directories_.begin(), directories_.end(),
                                      [&](const directory& watched) { return watched.path == where.directory; });
      if (known == directories_.end()) {
        directories_.emplace_back();
        directories_.back().path = where.directory;
        if (!open_directory(directories_.back())) {
          return "cannot watch directory '" + where.directory + "': " + error_text(GetLastError());
        }
      }
    }
    thread_ = std::thread([this] { run(); });
    return "";
  }

 private:
  struct directory {
    std::string path;
    HANDLE handle = INVALID_HANDLE_VALUE;
    OVERLAPPED pending{};
    alignas(DWORD) char buffer[16384];
  };
  using clock = std::chrono::steady_clock;
  static constexpr unsigned stop_request = 1, retry_request = 2, chores_request = 4;
  static constexpr DWORD watched_changes =
      FILE_NOTIFY_CHANGE_FILE_NAME | FILE_NOTIFY_CHANGE_DIR_NAME | FILE_NOTIFY_CHANGE_LAST_WRITE | FILE_NOTIFY_CHANGE_SIZE;

  void poke(unsigned request) {
    requests_.fetch_or(request, std::memory_order_release);
    if (poke_event_ != nullptr) SetEvent(poke_event_);
  }

  bool open_directory(directory& watched) {
    watched.handle = CreateFileW(wide(watched.path).c_str(), FILE_LIST_DIRECTORY,
                                 FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr, OPEN_EXISTING,
                                 FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OVERLAPPED, nullptr);
    if (watched.handle == INVALID_HANDLE_VALUE) return false;
    if (watched.pending.hEvent == nullptr) watched.pending.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
    if (!ask_for_changes(watched)) {
      close_directory(watched);
      return false;
    }
    return true;
  }
  bool ask_for_changes(directory& watched) {
    ResetEvent(watched.pending.hEvent);
    return ReadDirectoryChangesW(watched.handle, watched.buffer, sizeof watched.buffer, FALSE, watched_changes,
                                 nullptr, &watched.pending, nullptr) != 0;
  }
  static void close_directory(directory& watched) {
    if (watched.handle != INVALID_HANDLE_VALUE) {
      CancelIoEx(watched.handle, &watched.pending);
      DWORD ignored = 0;
      GetOverlappedResult(watched.handle, &watched.pending, &ignored, TRUE);
      CloseHandle(watched.handle);
      watched.handle = INVALID_HANDLE_VALUE;
    }
    if (watched.pending.hEvent != nullptr) CloseHandle(std::exchange(watched.pending.hEvent, nullptr));
  }
  bool watched_name(const directory& watched, const std::string& name) const {
    return std::any_of(places_.begin(), places_.end(), [&](const place& where) {
      return where.directory == watched.path && CompareStringOrdinal(wide(where.name).c_str(), -1, wide(name).c_str(), -1, TRUE) == CSTR_EQUAL;
    });
  }
  bool any_directory_gone() const {
    return std::any_of(directories_.begin(), directories_.end(),
                       [](const directory& watched) { return watched.handle == INVALID_HANDLE_VALUE; });
  }

  void run() {
    bool settling = false;
    std::string cause;
    clock::time_point due{};
    for (;;) {
      std::vector<HANDLE> handles{poke_event_};
      std::vector<directory*> waited;
      for (directory& watched : directories_) {
        if (watched.handle == INVALID_HANDLE_VALUE) continue;
        handles.push_back(watched.pending.hEvent);
        waited.push_back(&watched);
      }
      DWORD timeout = any_directory_gone() ? 200 : INFINITE;  // a directory went away: look for it now and then
      if (settling) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(due - clock::now()).count();
        timeout = std::min<DWORD>(timeout, left <= 0 ? 0 : static_cast<DWORD>(left));
      }
      const DWORD woken = WaitForMultipleObjects(static_cast<DWORD>(handles.size()), handles.data(), FALSE, timeout);
      if (woken == WAIT_OBJECT_0) {
        const unsigned requests = requests_.exchange(0, std::memory_order_acquire);
        if (requests & stop_request) return;
        if (requests & chores_request) chores_();
        if (requests & retry_request) {
          settling = true;
          cause = "a build found still being written was looked at again";
          due = clock::now() + std::max(settle_, std::chrono::milliseconds(10));
        }
      }
      for (directory& watched : directories_) {
        if (watched.handle == INVALID_HANDLE_VALUE && open_directory(watched)) {  // back, maybe with a new build
          settling = true;
          cause = "directory '" + watched.path + "' came back";
          due = clock::now() + settle_;
        }
      }
      if (woken > WAIT_OBJECT_0 && woken < WAIT_OBJECT_0 + handles.size()) {
        directory& watched = *waited[woken - WAIT_OBJECT_0 - 1];
        DWORD length = 0;
        const bool read = GetOverlappedResult(watched.handle, &watched.pending, &length, FALSE) != 0;
        if (!read || length == 0) {  // gone (deleted, renamed) or too many changes: look at the file again
          settling = true;
          cause = read ? "the change list overflowed" : "directory '" + watched.path + "' changed";
          due = clock::now() + settle_;
        }
        for (DWORD offset = 0; read && offset + sizeof(FILE_NOTIFY_INFORMATION) <= length;) {
          const auto* change = reinterpret_cast<const FILE_NOTIFY_INFORMATION*>(watched.buffer + offset);
          const std::string name = narrow(change->FileName, change->FileNameLength / sizeof(wchar_t));
          if (watched_name(watched, name)) {
            due = clock::now() + settle_;
            if (change->Action == FILE_ACTION_REMOVED || change->Action == FILE_ACTION_RENAMED_OLD_NAME) {
              settling = false;  // gone: wait for the next build
              signal_.changed.store(false, std::memory_order_release);
            } else {
              settling = true;
              cause = name + (change->Action == FILE_ACTION_RENAMED_NEW_NAME ? " renamed into place"
                              : change->Action == FILE_ACTION_ADDED           ? " created"
                                                                              : " written");
            }
          }
          if (change->NextEntryOffset == 0) break;
          offset += change->NextEntryOffset;
        }
        if (!ask_for_changes(watched)) close_directory(watched);
      }
      if (settling && clock::now() >= due) {
        settling = false;
        signal_.raise(cause + ", then untouched for " + std::to_string(settle_.count()) + " ms");
      }
    }
  }

  std::vector<place> places_;
  std::chrono::milliseconds settle_;
  change_signal& signal_;
  std::function<void()> chores_;
  std::atomic<unsigned> requests_{0};
  std::deque<directory> directories_;  // a deque: a pending read keeps its buffer's address
  HANDLE poke_event_ = nullptr;
  std::thread thread_;
};

/* The copies that are loaded live in a private directory, so a build rewriting the module file
   never touches a file the process has loaded (Windows would refuse the build anyway). A file
   inside it, open without sharing and deleted when closed, says "its process is alive": a
   process that dies drops it, and the next process to use the parent removes the directory. The
   directory inherits its parent's ACL (docs/windows.md). */
class shadow_directory {
 public:
  enum class copy_status { copied, busy, failed };

  shadow_directory() = default;
  shadow_directory(const shadow_directory&) = delete;
  shadow_directory& operator=(const shadow_directory&) = delete;
  ~shadow_directory() {
    remove_doomed();
    for (const std::string& name : names_) DeleteFileW(wide(path_ + "\\" + name).c_str());
    if (alive_ != INVALID_HANDLE_VALUE) CloseHandle(alive_);
    if (!path_.empty()) RemoveDirectoryW(wide(path_).c_str());
  }

  std::string create(const std::vector<std::string>& parents, const std::string& base_name) {
    base_ = base_name;
    std::string failures;
    const std::string prefix = ".relib-" + base_name + "-";
    for (const std::string& parent : parents) {
      if (parent.empty()) continue;
      std::string candidate;
      DWORD failure = ERROR_ALREADY_EXISTS;
      for (unsigned attempt = 0; attempt < 16 && failure == ERROR_ALREADY_EXISTS; ++attempt) {
        candidate = parent + "\\" + prefix + std::to_string(GetCurrentProcessId()) + "-" + std::to_string(GetTickCount() + attempt);
        failure = CreateDirectoryW(wide(candidate).c_str(), nullptr) != 0 ? ERROR_SUCCESS : GetLastError();
      }
      if (failure == ERROR_SUCCESS) {
        alive_ = CreateFileW(wide(candidate + "\\" + alive_name).c_str(), GENERIC_WRITE, 0, nullptr, CREATE_NEW,
                             FILE_ATTRIBUTE_HIDDEN | FILE_FLAG_DELETE_ON_CLOSE, nullptr);
        if (alive_ != INVALID_HANDLE_VALUE) {
          path_ = candidate;
          remove_abandoned(parent, prefix, candidate.substr(parent.size() + 1));
          return "";
        }
        failure = GetLastError();
        RemoveDirectoryW(wide(candidate).c_str());
      }
      failures += (failures.empty() ? "" : ", ") + parent + " (" + error_text(failure) + ")";
    }
    return "cannot make a private directory for its copies in " + failures;
  }

  /* Copies `source`, which the caller opened and checked. While relib holds it no writer can
     open it, so a copy is busy only when the file changed between its open and now. */
  copy_status copy(const readable_file& source, std::string& copy_path, std::string& error) {
    const std::string name = std::to_string(++copies_made_) + "-" + base_;
    copy_path = path_ + "\\" + name;
    file_descriptor out(CreateFileW(wide(copy_path).c_str(), GENERIC_WRITE, FILE_SHARE_READ, nullptr, CREATE_NEW,
                                    FILE_ATTRIBUTE_NORMAL, nullptr));
    if (out.get() == INVALID_HANDLE_VALUE) {
      error = "cannot copy it into '" + path_ + "': " + error_text(GetLastError());
      return copy_status::failed;
    }
    names_.push_back(name);
    std::vector<char> buffer(1 << 16);
    bool copied = true;
    for (std::uint64_t done = 0; copied && done < source.size();) {
      const std::uint64_t chunk = std::min<std::uint64_t>(buffer.size(), source.size() - done);
      DWORD written = 0;
      copied = source.read_range(done, buffer.data(), chunk) &&
               WriteFile(out.get(), buffer.data(), static_cast<DWORD>(chunk), &written, nullptr) != 0 && written == chunk;
      done += chunk;
    }
    const DWORD copy_failure = GetLastError();
    out.reset(INVALID_HANDLE_VALUE);
    if (copied && !source.changed_since_open()) return copy_status::copied;
    remove(copy_path);
    if (copied) return copy_status::busy;
    error = "cannot copy it into '" + path_ + "': " + error_text(copy_failure);
    return copy_status::failed;
  }

  /* No writer has a file open that relib holds: one that had it kept relib from opening it. */
  static bool being_written(const readable_file&) { return false; }

  void remove(const std::string& copy_path) {
    if (forget(copy_path)) DeleteFileW(wide(copy_path).c_str());
  }
  void remove_later(const std::string& copy_path) {
    if (!forget(copy_path)) return;
    std::lock_guard<std::mutex> guard(doomed_lock_);
    doomed_.push_back(base_name(copy_path));
  }
  void remove_doomed() {
    std::vector<std::string> names;
    {
      std::lock_guard<std::mutex> guard(doomed_lock_);
      names.swap(doomed_);
    }
    for (const std::string& name : names) DeleteFileW(wide(path_ + "\\" + name).c_str());
  }

 private:
  static constexpr const char* alive_name = ".alive";

  bool forget(const std::string& copy_path) {
    const auto found = std::find(names_.begin(), names_.end(), base_name(copy_path));
    if (found == names_.end()) return false;
    names_.erase(found);
    return true;
  }

  /* Removes the directories named `prefix`... in `parent` whose process died: their ".alive" file
     is gone, or can be deleted (nobody holds it). */
  static void remove_abandoned(const std::string& parent, const std::string& prefix, const std::string& mine) {
    WIN32_FIND_DATAW entry{};
    HANDLE listing = FindFirstFileW(wide(parent + "\\" + prefix + "*").c_str(), &entry);
    if (listing == INVALID_HANDLE_VALUE) return;
    std::vector<std::string> candidates;
    do {
      const std::string name = narrow(std::wstring(entry.cFileName));
      if ((entry.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0 && name != mine) candidates.push_back(name);
    } while (FindNextFileW(listing, &entry) != 0);
    FindClose(listing);
    for (const std::string& name : candidates) {
      const std::string directory = parent + "\\" + name;
      const std::wstring alive = wide(directory + "\\" + alive_name);
      if (DeleteFileW(alive.c_str()) == 0 && GetLastError() != ERROR_FILE_NOT_FOUND) continue;  // its process lives
      HANDLE contents = FindFirstFileW(wide(directory + "\\*").c_str(), &entry);
      if (contents != INVALID_HANDLE_VALUE) {
        do {
          if ((entry.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) == 0) {
            DeleteFileW(wide(directory + "\\" + narrow(std::wstring(entry.cFileName))).c_str());
          }
        } while (FindNextFileW(contents, &entry) != 0);
        FindClose(contents);
      }
      RemoveDirectoryW(wide(directory).c_str());
    }
  }

  std::string path_, base_;
  HANDLE alive_ = INVALID_HANDLE_VALUE;
  std::uint64_t copies_made_ = 0;
  std::vector<std::string> names_;
  std::mutex doomed_lock_;
  std::vector<std::string> doomed_;
};
#endif  // RELIB_DETAIL_UNLOADING

/* ---- Crashes ---- */
struct crash_event {
  int signal = 0;
  std::uintptr_t address = 0;
  std::uintptr_t pc = 0;
  std::uintptr_t return_hint = 0;
};
constexpr int crash_signals[] = {SIGSEGV, SIGFPE, SIGILL};
constexpr int abort_signal = SIGABRT;
const char* signal_name(int signal) {
  switch (signal) {
    case SIGSEGV: return "SIGSEGV (invalid memory access)";
    case SIGFPE: return "SIGFPE (arithmetic error: division by zero)";
    case SIGILL: return "SIGILL (illegal instruction: __builtin_trap, or corrupt code)";
    case SIGABRT: return "SIGABRT (abort() called)";
    default: return "a signal";
  }
}
inline void install_crash_handler(void (*)(const crash_event&)) {}
inline void restore_signal_mask_after_crash() {}
class signal_stack {
 public:
  void ensure() {}
};
inline std::vector<std::pair<std::uintptr_t, std::uintptr_t>> code_of_object_holding(std::uintptr_t address) {
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> found;
  HMODULE holder = nullptr;
  if (GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                         reinterpret_cast<LPCWSTR>(address), &holder) == 0) {
    return found;
  }
  const auto* base = reinterpret_cast<const unsigned char*>(holder);
  const auto* dos = reinterpret_cast<const IMAGE_DOS_HEADER*>(base);
  const auto* nt = reinterpret_cast<const IMAGE_NT_HEADERS*>(base + dos->e_lfanew);
  const IMAGE_SECTION_HEADER* section = IMAGE_FIRST_SECTION(nt);
  for (unsigned i = 0; i < nt->FileHeader.NumberOfSections; ++i, ++section) {
    if ((section->Characteristics & IMAGE_SCN_MEM_EXECUTE) == 0) continue;
    const std::uintptr_t begin = reinterpret_cast<std::uintptr_t>(base) + section->VirtualAddress;
    found.emplace_back(begin, begin + section->Misc.VirtualSize);
  }
  return found;
}
inline bool open_main_program(readable_file& file, std::uintptr_t& base) {
  base = reinterpret_cast<std::uintptr_t>(GetModuleHandleW(nullptr));
  return file.open(module_file_name(nullptr)) == readable_file::status::opened;
}
inline std::uintptr_t main_program_code() {
  const auto all = code_of_object_holding(reinterpret_cast<std::uintptr_t>(GetModuleHandleW(nullptr)));
  return all.empty() ? 0 : all.front().first;
}

}  // namespace platform
}  // namespace detail
}  // namespace relib
#endif  // _WIN32

/* >>errors ---- each code's name and explanation, from the lists; messages made from fields ---- */
namespace relib {

#define RELIB_DETAIL_CODE_NAME(code, explanation) \
  case errc::code:                                \
    return #code;
#define RELIB_DETAIL_CODE_EXPLANATION(code, explanation) \
  case errc::code:                                       \
    return explanation;
#define RELIB_DETAIL_ERROR_TEXTS(errc_type, LIST)                                            \
  const char* to_string(errc_type code) noexcept {                                           \
    using errc = errc_type;                                                                  \
    switch (code) { LIST(RELIB_DETAIL_CODE_NAME) }                                           \
    return "unknown";                                                                        \
  }                                                                                          \
  const char* explain(errc_type code) noexcept {                                             \
    using errc = errc_type;                                                                  \
    switch (code) { LIST(RELIB_DETAIL_CODE_EXPLANATION) }                                    \
    return "an unknown error code";                                                          \
  }

RELIB_DETAIL_ERROR_TEXTS(load_errc, RELIB_LOAD_ERRORS)
RELIB_DETAIL_ERROR_TEXTS(unload_errc, RELIB_UNLOAD_ERRORS)
RELIB_DETAIL_ERROR_TEXTS(call_errc, RELIB_CALL_ERRORS)
#if RELIB_DETAIL_UNLOADING
RELIB_DETAIL_ERROR_TEXTS(reload_errc, RELIB_RELOAD_ERRORS)
#endif

}  // namespace relib

namespace relib {
namespace detail {

/* Text that comes from a file (records, symbol and library names, the loader's and the module's
   words) or a path, as messages show it: control characters, and bytes that are not UTF-8, become
   \xHH, so that nothing read from a module can drive the terminal that prints the message. */
std::string shown(std::string_view text) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    std::size_t plain = i;  // a run of printable ASCII goes in at once
    while (plain < text.size() && static_cast<unsigned char>(text[plain]) >= 0x20 && static_cast<unsigned char>(text[plain]) < 0x7f) {
      ++plain;
    }
    out.append(text.substr(i, plain - i));
    if ((i = plain) == text.size()) break;
    const auto byte = static_cast<unsigned char>(text[i]);
    const std::size_t length = byte >= 0xc2 && byte <= 0xdf ? 2 : byte >= 0xe0 && byte <= 0xef ? 3
                               : byte >= 0xf0 && byte <= 0xf4                                  ? 4
                                                                                               : 0;
    bool whole = length > 0 && length <= text.size() - i;
    for (std::size_t k = 1; whole && k < length; ++k) whole = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    const bool c1_control = whole && byte == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0;
    if (whole && !c1_control) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out += "\\x";
      out += digits[byte >> 4];
      out += digits[byte & 15];
      ++i;
    }
  }
  return out;
}

/* The error's fields first, then its message, formatted once from them. An empty module name
   stands for a moved-from object, whose reason says so. */
std::string error_message(const char* operation, const std::string& module, const std::string& reason) {
  if (module.empty()) return "relib: " + reason;
  return std::string("relib: cannot ") + operation + " module '" + shown(module) + "': " + reason;
}

load_error make_load_error(load_errc code, const std::string& module, std::string reason) {
  load_error error{code, module, std::move(reason), ""};
  error.message = error_message("load", module, error.reason);
  return error;
}

unload_error make_unload_error(unload_errc code, const std::string& module, std::string reason) {
  unload_error error{code, module, std::move(reason), ""};
  error.message = error_message("unload", module, error.reason);
  return error;
}

/* >>log ---- one line per step of load, unload and reload, when RELIB_LOG=1 or set_log_function
   asks for it. A step calls logging() first and builds its line only when that is true. */
struct log_state {
  std::mutex lock;          // one line at a time, and the function while it changes
  log_function function;    // set_log_function's; empty: standard error
  std::atomic<int> on{-1};  // -1: RELIB_LOG not read yet
};

log_state& the_log() {
  static log_state state;
  return state;
}

bool log_requested_by_environment() {
  const char* value = platform::environment_variable("RELIB_LOG");
  return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
}

bool logging() noexcept {
  const int on = the_log().on.load(std::memory_order_relaxed);
  if (RELIB_DETAIL_LIKELY(on == 0)) return false;
  if (on > 0) return true;
  int unknown = -1;
  the_log().on.compare_exchange_strong(unknown, log_requested_by_environment() ? 1 : 0, std::memory_order_relaxed);
  return the_log().on.load(std::memory_order_relaxed) == 1;
}

/* "relib: <operation> '<module>': <step>" to the log function or standard error. */
void log_step(const char* operation, const std::string& module, const std::string& step) {
  const std::string line = std::string("relib: ") + operation + " '" + shown(module) + "': " + step;
  log_state& log = the_log();
  std::lock_guard<std::mutex> hold(log.lock);
  if (log.function) {
    log.function(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

/* Microseconds since `start`, for a log line: " (41 µs)". */
std::string took(std::chrono::steady_clock::time_point start) {
  const auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return " (" + std::to_string(elapsed.count()) + " \u00b5s)";
}

std::string counted(std::size_t count, const char* one, const char* many) {
  return std::to_string(count) + " " + (count == 1 ? one : many);
}

}  // namespace detail

void set_log_function(log_function function) {
  detail::log_state& log = detail::the_log();
  std::lock_guard<std::mutex> hold(log.lock);
  const bool on = static_cast<bool>(function) || detail::log_requested_by_environment();
  log.function = std::move(function);
  log.on.store(on ? 1 : 0, std::memory_order_relaxed);
}

namespace detail {

/* >>elf reader ------------------------------------------------------------------------------
   dlopen() runs the library's constructors, so everything relib checks is read from the file
   first: the header and relib's notes; to explain a failed unload, also the dynamic symbols (for STB_GNU_UNIQUE, which
   glibc never unloads) and the dynamic section (DT_NEEDED, DT_SONAME). Every offset is checked
   against the file size, so a truncated or hostile file is an error, never a crash. */

/* A PT_LOAD as mapped, relative to the module's base address. */
struct image_span {
  std::uint64_t begin = 0, end = 0;
  bool writable = false, executable = false;
};

struct image_contents {
  std::string meta;  // relib's records, each followed by a NUL byte
  std::vector<image_span> spans;  // the loaded segments, as the ELF gate checked them
  std::vector<std::string> unique_symbols;  // read only when asked for
  std::vector<std::string> needed;          // DT_NEEDED, read only when asked for
  std::vector<std::string> search_paths;    // DT_RUNPATH and DT_RPATH
};

/* What read_image reads beyond the header and relib's records, which loading always needs. */
enum image_extras : unsigned { image_records_only = 0, image_unique_symbols = 1, image_needed = 2 };

enum class image_status { ok, not_an_image, wrong_architecture, not_shared_library, unreadable };

/* How much relib reads of a file at most: the notes holding its records before loading, and each
   section read to explain a failed unload (a larger one goes unexplained). */
constexpr std::uint64_t notes_read_limit = std::uint64_t{1} << 20;
constexpr std::uint64_t section_read_limit = std::uint64_t{16} << 20;

/* What the ELF gate (>>elf gate) accepts at most: far above any real module, low enough that the
   largest file allowed is checked in milliseconds. */
constexpr std::size_t gate_max_program_headers = 256;
constexpr std::size_t gate_max_sections = 4096;
constexpr std::uint64_t gate_max_dynamic_entries = 4096;
constexpr std::uint64_t gate_max_symbols = std::uint64_t{1} << 20;
constexpr std::uint64_t gate_max_relocations = std::uint64_t{1} << 20;
constexpr std::uint64_t gate_max_array_entries = 65536;    // DT_INIT_ARRAY, DT_FINI_ARRAY
constexpr std::uint64_t gate_max_version_records = 65536;  // DT_VERNEED, DT_VERDEF
constexpr std::uint64_t gate_max_alignment = std::uint64_t{1} << 30;
constexpr std::uint64_t gate_max_tls_size = std::uint64_t{64} << 20;

inline std::string hex(std::uint64_t value) {
  static const char digits[] = "0123456789abcdef";
  std::string text;
  do {
    text.insert(text.begin(), digits[value & 15]);
    value >>= 4;
  } while (value != 0);
  return "0x" + text;
}

/* What the file format's reader provides (>>elf reader below, >>pe reader on Windows). */
image_status read_image(const platform::readable_file& opened, image_contents& out, std::string& detail,
                        unsigned extras = image_records_only);
/* The contents of every section named `name` (relib's host records), appended to `out`; false
   when the section table cannot be read. */
bool read_sections_named(const platform::readable_file& file, std::string_view name, std::vector<std::string>& out);

#if !defined(_WIN32)
/* Bounds-checked reads at file offsets. */
class elf_reader {
 public:
  explicit elf_reader(const platform::readable_file& file) : file_(file), size_(file.size()) {}

  bool read_at(std::uint64_t offset, void* out, std::uint64_t length) const {
    if (offset > size_ || length > size_ - offset) return false;
    return file_.read_range(offset, out, length);
  }

  bool read_section(const platform::elf_section & section, std::string& out) const {
    if (section.sh_type == SHT_NOBITS || section.sh_size > size_ || section.sh_size > section_read_limit) return false;
    out.resize(section.sh_size);
    return read_at(section.sh_offset, out.data(), section.sh_size);
  }

  /* A section and the string table its sh_link names: a symbol table's names, or those of the
     dynamic section's entries. */
  bool read_with_strings(const std::vector<platform::elf_section>& sections, const platform::elf_section& section,
                         std::string& out, std::string& strings) const {
    return section.sh_link < sections.size() && read_section(section, out) &&
           read_section(sections[section.sh_link], strings);
  }

 private:
  const platform::readable_file& file_;
  std::uint64_t size_;
};

/* The section headers and their names, for what lies outside the loaded image (symbols, debug
   information, relib's host records); false when the table is missing or malformed. */
inline bool read_section_headers(const elf_reader& reader, std::vector<platform::elf_section>& sections,
                                 std::string& names) {
  platform::elf_header header{};
  if (!reader.read_at(0, &header, sizeof header) || header.e_shentsize != sizeof(platform::elf_section) ||
      header.e_shnum == 0 || header.e_shnum > gate_max_sections || header.e_shstrndx >= header.e_shnum) {
    return false;
  }
  sections.resize(header.e_shnum);
  return reader.read_at(header.e_shoff, sections.data(), sizeof(platform::elf_section) * sections.size()) &&
         reader.read_section(sections[header.e_shstrndx], names);
}

#endif  // !_WIN32

/* The NUL-terminated string at `offset` in a string table (or what is left of the table). */
inline std::string_view string_at(std::string_view table, std::uint64_t offset) {
  if (offset >= table.size()) return {};
  const std::string_view rest = table.substr(static_cast<std::size_t>(offset));
  return rest.substr(0, rest.find('\0'));
}

/* Calls visit(entry) for each fixed-size entry of a section read into `data`. */
template <class Entry, class Visit>
void for_each_entry(const std::string& data, Visit&& visit) {
  for (std::size_t i = 0; i + sizeof(Entry) <= data.size(); i += sizeof(Entry)) {
    Entry entry;
    std::memcpy(&entry, data.data() + i, sizeof entry);
    visit(entry);
  }
}

/* relib's records are notes named "relib" in a PT_NOTE segment; they are appended to `meta`
   separated by NUL bytes. False when a note runs past the segment. */
bool collect_notes(std::string_view notes, std::size_t alignment, std::string& meta) {
  while (!notes.empty()) {
    std::uint32_t sizes[3];  // name size, description size, type
    if (notes.size() < sizeof sizes) return false;
    std::memcpy(sizes, notes.data(), sizeof sizes);
    const std::size_t name_size = (std::size_t{sizes[0]} + 3) / 4 * 4;  // the name is padded to 4 bytes
    const std::size_t description_size = (std::size_t{sizes[1]} + alignment - 1) / alignment * alignment;
    if (name_size > notes.size() - 12 || description_size > notes.size() - 12 - name_size) {
      // The last description of the segment need not carry its padding.
      if (name_size > notes.size() - 12 || sizes[1] != notes.size() - 12 - name_size) return false;
    }
    const std::string_view name(notes.data() + 12, sizes[0]);
    if (sizes[2] == note_type && name == std::string_view("relib", 6)) {
      const std::string_view description(notes.data() + 12 + name_size, sizes[1]);
      meta.append(description.substr(0, description.find('\0')));
      meta.push_back('\0');
    }
    notes.remove_prefix(std::min(notes.size(), 12 + name_size + description_size));
  }
  return true;
}

#if !defined(_WIN32)
bool read_sections_named(const platform::readable_file& file, std::string_view name, std::vector<std::string>& out) {
  const elf_reader reader(file);
  std::vector<platform::elf_section> sections;
  std::string names, data;
  if (!read_section_headers(reader, sections, names)) return false;
  for (const platform::elf_section& section : sections) {
    if (string_at(names, section.sh_name) == name && reader.read_section(section, data)) out.push_back(data);
  }
  return true;
}

/* False, with what is wrong, when the dynamic loader could crash on the image (>>elf gate). When
   it passes, `search_paths` gets its DT_RUNPATH and DT_RPATH. */
bool passes_elf_gate(const platform::readable_file& file, std::string_view head, const platform::elf_header& header,
                     const std::vector<platform::elf_segment>& segments, std::string& problem, bool& is_executable,
                     image_contents& out);

image_status read_image(const platform::readable_file& opened, image_contents& out, std::string& detail,
                        unsigned extras) {
  const elf_reader file(opened);
  const std::uint64_t size = opened.size();
  // One read of the first pages holds the header, the program headers, the notes and, in a
  // small module, the dynamic tables the gate reads.
  char first_page[16384];
  const std::size_t head = static_cast<std::size_t>(std::min<std::uint64_t>(size, sizeof first_page));
  if (!file.read_at(0, first_page, head)) {
    detail = "it cannot be read";
    return image_status::unreadable;
  }
  // From the first page when the range lies in it, else from the file.
  auto read_cached = [&](std::uint64_t offset, void* to, std::uint64_t length) {
    if (offset <= head && length <= head - offset) {
      std::memcpy(to, first_page + offset, static_cast<std::size_t>(length));
      return true;
    }
    return file.read_at(offset, to, length);
  };
  if (head < SELFMAG || std::memcmp(first_page, ELFMAG, SELFMAG) != 0) {
    detail = size == 0 ? "the file is empty" : "it does not start with the ELF signature";
    return image_status::not_an_image;
  }
  platform::elf_header header{};
  if (head < sizeof header) {
    detail = "it is truncated within the ELF header (is it still being written?)";
    return image_status::unreadable;
  }
  const unsigned char elf_class = static_cast<unsigned char>(first_page[EI_CLASS]);
  if (elf_class != platform::host_class || first_page[EI_DATA] != platform::host_byte_order ||
      !read_cached(0, &header, sizeof header) || header.e_machine != platform::host_machine) {
    detail = "it is built for ELF machine " + std::to_string(elf_class == platform::host_class ? header.e_machine : 0) +
             (elf_class == ELFCLASS32 ? " (32-bit)" : " (64-bit)") + ", this process is machine " +
             std::to_string(platform::host_machine) + (platform::host_class == ELFCLASS32 ? " (32-bit)" : " (64-bit)");
    if (elf_class == platform::host_class && first_page[EI_DATA] != platform::host_byte_order) {
      detail = std::string("its bytes are in ") + (first_page[EI_DATA] == ELFDATA2MSB ? "big" : "another") +
               "-endian order (EI_DATA), this process is " + (platform::host_byte_order == ELFDATA2LSB ? "little" : "big") + "-endian";
    }
    return image_status::wrong_architecture;
  }
  if (header.e_type != ET_DYN) {
    detail = header.e_type == ET_EXEC ? "it is an executable" : header.e_type == ET_REL ? "it is an object file (.o)" : "it is not a shared library";
    return image_status::not_shared_library;
  }
  if (header.e_phentsize != sizeof(platform::elf_segment) || header.e_phnum == 0 ||
      header.e_phnum > gate_max_program_headers) {
    detail = "its program headers are missing or malformed: e_phnum " + std::to_string(header.e_phnum) +
             ", e_phentsize " + std::to_string(header.e_phentsize) + " (this ABI uses " +
             std::to_string(sizeof(platform::elf_segment)) + ", and relib reads at most " +
             std::to_string(gate_max_program_headers) + ")";
    return image_status::unreadable;
  }
  std::vector<platform::elf_segment> segments(header.e_phnum);
  if (!read_cached(header.e_phoff, segments.data(), sizeof(platform::elf_segment) * segments.size())) {
    detail = "its program headers are truncated: e_phoff " + std::to_string(header.e_phoff) + " with e_phnum " +
             std::to_string(header.e_phnum) + " ends past the file's " + std::to_string(size) + " bytes";
    return image_status::unreadable;
  }
  // The dynamic loader maps segments without checking them against the file size, and touching
  // a page past the end of the file is SIGBUS: a truncated file (one still being written, say)
  // must be refused here.
  const std::uint64_t section_headers_end =
      std::uint64_t{header.e_shoff} + std::uint64_t{header.e_shnum} * header.e_shentsize;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const platform::elf_segment& segment = segments[i];
    if ((segment.p_type == PT_LOAD || segment.p_type == PT_DYNAMIC || segment.p_type == PT_NOTE) &&
        (segment.p_offset > size || segment.p_filesz > size - segment.p_offset)) {
      detail = std::string("it is truncated: its ") +
               (segment.p_type == PT_LOAD ? "PT_LOAD" : segment.p_type == PT_DYNAMIC ? "PT_DYNAMIC" : "PT_NOTE") +
               " segment (program header " + std::to_string(i) + ") takes p_filesz " + std::to_string(segment.p_filesz) +
               " bytes from p_offset " + std::to_string(segment.p_offset) + ", but the file has " + std::to_string(size) +
               " bytes (is it still being written?)";
      return image_status::unreadable;
    }
  }
  if (section_headers_end > size) {
    detail = "it is truncated: its section headers end at byte " + std::to_string(section_headers_end) +
             " but the file has " + std::to_string(size) + " bytes (is it still being written?)";
    return image_status::unreadable;
  }
  // The records are read from a bounded area, so that no file makes relib read or allocate much
  // before it refuses: a module's notes take a few KB (about 100 bytes per export or import).
  std::uint64_t notes_size = 0;
  for (const platform::elf_segment & segment : segments) {
    if (segment.p_type != PT_NOTE) continue;
    notes_size += segment.p_filesz;
    if (notes_size > notes_read_limit) {
      detail = "its notes take " + std::to_string(notes_size) + " bytes or more, and relib reads at most " +
               std::to_string(notes_read_limit) + " (relib's records of a module with thousands of exports take less)";
      return image_status::unreadable;
    }
  }
  bool is_executable = false;
  if (!passes_elf_gate(opened, std::string_view(first_page, head), header, segments, detail, is_executable, out)) {
    return is_executable ? image_status::not_shared_library : image_status::unreadable;
  }
  std::string notes;
  for (const platform::elf_segment & segment : segments) {
    if (segment.p_type != PT_NOTE) continue;
    notes.resize(segment.p_filesz);
    if (!read_cached(segment.p_offset, notes.data(), segment.p_filesz)) {
      detail = "its PT_NOTE segment cannot be read";
      return image_status::unreadable;
    }
    if (!collect_notes(notes, segment.p_align == 8 ? 8 : 4, out.meta)) {
      detail = "a note in its PT_NOTE segment at " + hex(segment.p_vaddr) + " runs past the end of the segment";
      return image_status::unreadable;
    }
  }
  if ((extras & (image_unique_symbols | image_needed)) == 0) return image_status::ok;

  // Only for explaining a failed unload: dynamic symbols and DT_NEEDED, from the section headers.
  std::vector<platform::elf_section> sections(header.e_shentsize == sizeof(platform::elf_section) ? header.e_shnum : 0);
  if (sections.empty() || !file.read_at(header.e_shoff, sections.data(), sizeof(platform::elf_section) * sections.size())) {
    return image_status::ok;
  }
  std::string data, strings;
  for (const platform::elf_section & section : sections) {
    const bool wanted = (section.sh_type == SHT_DYNSYM && (extras & image_unique_symbols)) ||
                        (section.sh_type == SHT_DYNAMIC && (extras & image_needed));
    if (!wanted || !file.read_with_strings(sections, section, data, strings)) continue;
    if (section.sh_type == SHT_DYNSYM) {
      for_each_entry<platform::elf_symbol>(data, [&](const platform::elf_symbol & symbol) {
        if (ELF64_ST_BIND(symbol.st_info) == STB_GNU_UNIQUE && symbol.st_shndx != SHN_UNDEF) {
          out.unique_symbols.emplace_back(string_at(strings, symbol.st_name));
        }
      });
    } else {
      for_each_entry<platform::elf_dynamic>(data, [&](const platform::elf_dynamic & entry) {
        if (entry.d_tag == DT_NEEDED) out.needed.emplace_back(string_at(strings, entry.d_un.d_val));
      });
    }
  }
  return image_status::ok;
}
#endif  // !_WIN32

/* >>elf gate ---- what would crash the dynamic loader, refused before dlopen ------------------
   glibc trusts what it maps: a segment that overlaps another, a table outside the image, a
   relocation that writes outside the writable segments or an init function outside the code
   crashes the process inside dlopen (or later, in dlsym or dlclose). Everything the loader reads
   of the image is checked here against the segments that will hold it, and each refusal names
   the field. Tables are read in chunks through one small window, so memory stays the same
   whatever the file declares; the limits below bound the time. */
#if !defined(_WIN32)

/* The module's address space as the loader lays it out (addresses relative to its base), read
   through the file: a segment's file-backed part is read at the matching file offset. */
class loaded_image {
 public:
  /* `head`: the file's first bytes, read already. */
  loaded_image(const platform::readable_file& file, std::string_view head) : file_(file) { windows_[0].bytes = head; }
  loaded_image(const loaded_image&) = delete;  // the windows view their own buffers

  std::vector<platform::elf_segment> loads;  // the PT_LOAD segments, sorted and checked
  bool writable_everywhere = false;          // text relocations: the loader unprotects every segment

  /* The PT_LOAD whose memory (or whose file-backed part) holds [address, address + size). */
  const platform::elf_segment* holding(std::uint64_t address, std::uint64_t size, bool in_file) const {
    const auto holds = [&](const platform::elf_segment& load) {
      if (in_file && (load.p_flags & PF_R) == 0) return false;  // the loader reads it there
      const std::uint64_t extent = in_file ? load.p_filesz : load.p_memsz;
      return address >= load.p_vaddr && address - load.p_vaddr <= extent && size <= extent - (address - load.p_vaddr);
    };
    // Consecutive questions are mostly about one segment: relocations are sorted by address.
    if (last_ < loads.size() && holds(loads[last_])) return &loads[last_];
    for (std::size_t i = 0; i < loads.size(); ++i) {
      if (holds(loads[i])) {
        last_ = i;
        return &loads[i];
      }
    }
    return nullptr;
  }
  bool in_file(std::uint64_t address, std::uint64_t size) const { return holding(address, size, true) != nullptr; }
  bool writable(std::uint64_t address, std::uint64_t size) const {
    const platform::elf_segment* load = holding(address, size, false);
    return load != nullptr && (writable_everywhere || (load->p_flags & PF_W) != 0);
  }
  bool executable(std::uint64_t address) const {
    const platform::elf_segment* load = holding(address, 1, true);
    return load != nullptr && (load->p_flags & PF_X) != 0;
  }

  /* Reads [address, address + size), which must lie in one segment's file-backed part. Two
     windows of the file keep the reads few: the tables usually share the first segment, the
     dynamic section lies in the last. */
  bool copy_out(std::uint64_t address, void* out, std::uint64_t size) {
    const platform::elf_segment* load = holding(address, size, true);
    if (load == nullptr) return false;
    const std::uint64_t offset = load->p_offset + (address - load->p_vaddr);
    for (const window& seen : windows_) {
      if (offset >= seen.offset && offset - seen.offset <= seen.bytes.size() && size <= seen.bytes.size() - (offset - seen.offset)) {
        std::memcpy(out, seen.bytes.data() + (offset - seen.offset), static_cast<std::size_t>(size));
        return true;
      }
    }
    if (size > window_capacity) return file_.read_range(offset, out, size);
    // The whole file-backed part of a small segment, else from the page that holds `offset`.
    const std::uint64_t segment_end = load->p_offset + load->p_filesz;
    const std::uint64_t start = load->p_filesz <= window_capacity ? load->p_offset
                                : std::max(load->p_offset, std::min(offset & ~std::uint64_t{4095}, offset + size - window_capacity));
    window& fill = windows_[next_window_];
    next_window_ = (next_window_ + 1) % 2;
    fill.offset = start;
    fill.buffer.resize(static_cast<std::size_t>(std::min<std::uint64_t>(window_capacity, segment_end - start)));
    fill.bytes = fill.buffer;
    if (!file_.read_range(start, fill.buffer.data(), fill.buffer.size())) {
      fill.bytes = {};
      return false;
    }
    std::memcpy(out, fill.bytes.data() + (offset - start), static_cast<std::size_t>(size));
    return true;
  }

  /* The word the file holds at `address`; 0 in a segment's zero-filled part. */
  std::uint64_t word_at(std::uint64_t address) {
    platform::elf_word word = 0;
    if (in_file(address, sizeof word)) copy_out(address, &word, sizeof word);
    return word;
  }

 private:
  static constexpr std::size_t window_capacity = 65536;
  struct window {
    std::uint64_t offset = 0;
    std::string_view bytes;  // `buffer`, or the head read before the gate
    std::string buffer;
  };
  const platform::readable_file& file_;
  window windows_[2];
  std::size_t next_window_ = 1;  // window 0 starts with the head of the file
  mutable std::size_t last_ = 0;  // the segment that answered last
};

/* The dynamic section's values that the loader acts on. A tag given twice counts with its last
   value, as in glibc. */
/* The name of a dynamic tag that names a string. */
inline const char* string_tag_name(std::int64_t tag) {
  return tag == DT_NEEDED ? "DT_NEEDED" : tag == DT_SONAME ? "DT_SONAME" : tag == DT_RPATH ? "DT_RPATH" : "DT_RUNPATH";
}

struct dynamic_values {
  std::optional<std::uint64_t> strtab, strsz, symtab, syment, hash, gnu_hash, relocations, relocations_size,
      relocations_entry_size, plt_relocations, plt_relocations_size, plt_relocation_kind, pltgot, init, fini,
      init_array, init_array_size, fini_array, fini_array_size, relr, relr_size, relr_entry_size, versym, verdef,
      verneed;
  std::optional<std::uint64_t> relative_count;  // DT_RELACOUNT: the first entries, applied as relative
  std::uint64_t flags = 0, flags_1 = 0;
  bool text_relocations = false;
  std::vector<std::pair<std::int64_t, std::uint64_t>> strings;  // DT_NEEDED and the like: tag, offset

  void record(const platform::elf_dynamic& entry) {
    const std::uint64_t value = entry.d_un.d_val;
    switch (entry.d_tag) {
      case DT_STRTAB: strtab = value; break;
      case DT_STRSZ: strsz = value; break;
      case DT_SYMTAB: symtab = value; break;
      case DT_SYMENT: syment = value; break;
      case DT_HASH: hash = value; break;
      case DT_GNU_HASH: gnu_hash = value; break;
      case DT_RELA: if (platform::relocations_have_addends) relocations = value; break;
      case DT_RELASZ: if (platform::relocations_have_addends) relocations_size = value; break;
      case DT_RELAENT: if (platform::relocations_have_addends) relocations_entry_size = value; break;
      case DT_RELACOUNT: if (platform::relocations_have_addends) relative_count = value; break;
      case DT_RELCOUNT: if (!platform::relocations_have_addends) relative_count = value; break;
      case DT_REL: if (!platform::relocations_have_addends) relocations = value; break;
      case DT_RELSZ: if (!platform::relocations_have_addends) relocations_size = value; break;
      case DT_RELENT: if (!platform::relocations_have_addends) relocations_entry_size = value; break;
      case DT_JMPREL: plt_relocations = value; break;
      case DT_PLTRELSZ: plt_relocations_size = value; break;
      case DT_PLTREL: plt_relocation_kind = value; break;
      case DT_PLTGOT: pltgot = value; break;
      case DT_INIT: init = value; break;
      case DT_FINI: fini = value; break;
      case DT_INIT_ARRAY: init_array = value; break;
      case DT_INIT_ARRAYSZ: init_array_size = value; break;
      case DT_FINI_ARRAY: fini_array = value; break;
      case DT_FINI_ARRAYSZ: fini_array_size = value; break;
      case platform::tag_relr: relr = value; break;
      case platform::tag_relr_size: relr_size = value; break;
      case platform::tag_relr_entry_size: relr_entry_size = value; break;
      case DT_VERSYM: versym = value; break;
      case DT_VERDEF: verdef = value; break;
      case DT_VERNEED: verneed = value; break;
      case DT_FLAGS: flags = value; break;
      case DT_FLAGS_1: flags_1 = value; break;
      case DT_TEXTREL: text_relocations = true; break;
      case DT_NEEDED: case DT_SONAME: case DT_RPATH: case DT_RUNPATH: strings.emplace_back(entry.d_tag, value); break;
      default: break;
    }
  }
};

/* Checks the image the way the loader will use it; `problem` says what is wrong. */
class image_gate {
 public:
  image_gate(const platform::readable_file& file, std::string_view head, const platform::elf_header& header,
             const std::vector<platform::elf_segment>& segments)
      : file_(file), header_(header), segments_(segments), image_(file, head) {}

  std::string problem;          // empty when the image passed
  bool is_executable = false;   // a position-independent executable (DF_1_PIE), not a library

  /* The PT_LOAD segments as they will be mapped, once check() passed. */
  std::vector<image_span> spans() const {
    std::vector<image_span> out;
    for (const platform::elf_segment& load : image_.loads) {
      out.push_back({load.p_vaddr, load.p_vaddr + load.p_memsz,
                     image_.writable_everywhere || (load.p_flags & PF_W) != 0, (load.p_flags & PF_X) != 0});
    }
    return out;
  }

  /* DT_RUNPATH and DT_RPATH, once check() passed. */
  std::vector<std::string> search_paths() {
    std::vector<std::string> paths;
    for (const auto& [tag, offset] : values().strings) {
      if (tag == DT_RUNPATH || tag == DT_RPATH) paths.push_back(string_at_offset(offset, 4095));
    }
    return paths;
  }

  bool check() {
    return check_segments() && check_sections() && read_dynamic() && check_tables() && count_symbols() && check_versions() &&
           check_symbols() && check_relocations() && check_functions();
  }

 private:
  static constexpr std::uint64_t word = sizeof(platform::elf_word);

  /* A table of init or fini functions: the loader calls every entry, so each must be relocated
     to an address in the code. */
  struct function_array {
    const char* name;
    std::uint64_t address, count;
    std::vector<bool> relocated;
  };
  struct relocation_table {
    const char* name;
    std::uint64_t address, count;
    std::uint64_t leading_relative = 0;  // DT_RELACOUNT: how many of the first entries must be relative
  };

  bool refuse(std::string text) {
    problem = std::move(text);
    return false;
  }
  static std::string segment_name(const platform::elf_segment& segment, std::size_t index, const char* type) {
    return std::string(type) + " (program header " + std::to_string(index) + ", address " + hex(segment.p_vaddr) + ")";
  }

  /* ---- Segments: what the loader maps, and the headers it reads from the mapped image ---- */
  bool check_segments() {
    const std::uint64_t page = platform::page_size();
    std::size_t tls_count = 0, relro_count = 0, dynamic_count = 0;
    for (std::size_t i = 0; i < segments_.size(); ++i) {
      const platform::elf_segment& segment = segments_[i];
      if (segment.p_type == PT_GNU_STACK && (segment.p_flags & PF_X) != 0) {
        return refuse("PT_GNU_STACK asks for an executable stack, which would make the stack of every thread in "
                      "this process executable; link the module with -z noexecstack (an assembly file without a "
                      ".note.GNU-stack section asks for one)");
      }
      tls_count += segment.p_type == PT_TLS;
      relro_count += segment.p_type == PT_GNU_RELRO;
      dynamic_count += segment.p_type == PT_DYNAMIC;
      if (segment.p_type != PT_LOAD) continue;
      const auto name = [&] { return segment_name(segment, i, "PT_LOAD"); };  // made only for a refusal
      if (segment.p_filesz > segment.p_memsz) {
        return refuse(name() + ": p_filesz " + hex(segment.p_filesz) + " is larger than p_memsz " + hex(segment.p_memsz));
      }
      // Only data has a zero-filled tail (.bss); code or constants that stop short would run or
      // read zeros where the file was cut.
      if ((segment.p_flags & PF_W) == 0 && segment.p_filesz != segment.p_memsz) {
        return refuse(name() + ": a read-only segment whose p_filesz " + hex(segment.p_filesz) + " differs from its p_memsz " +
                      hex(segment.p_memsz));
      }
      const std::uint64_t highest = ~std::uint64_t{0} - page;
      if (segment.p_vaddr > highest || segment.p_memsz > highest - segment.p_vaddr) {
        return refuse(name() + ": p_memsz " + hex(segment.p_memsz) + " runs past the end of the address space");
      }
      if (segment.p_align > 1 && ((segment.p_align & (segment.p_align - 1)) != 0 || segment.p_align > gate_max_alignment)) {
        return refuse(name() + ": p_align " + hex(segment.p_align) + " is not a power of two up to 1 GiB");
      }
      if (((segment.p_vaddr - segment.p_offset) & (page - 1)) != 0 ||
          (segment.p_align > 1 && ((segment.p_vaddr - segment.p_offset) & (segment.p_align - 1)) != 0)) {
        return refuse(name() + ": p_vaddr and p_offset " + hex(segment.p_offset) +
                      " are not congruent modulo the page size and p_align");
      }
      if (!image_.loads.empty()) {
        const platform::elf_segment& previous = image_.loads.back();
        if (segment.p_vaddr < previous.p_vaddr) {
          return refuse(name() + " comes after the PT_LOAD at " + hex(previous.p_vaddr) +
                        ": PT_LOAD segments must be sorted by address");
        }
        const std::uint64_t previous_end = (previous.p_vaddr + previous.p_memsz + page - 1) & ~(page - 1);
        if (previous_end > (segment.p_vaddr & ~(page - 1))) {
          return refuse(name() + " overlaps the PT_LOAD at " + hex(previous.p_vaddr) + ", which ends at " +
                        hex(previous.p_vaddr + previous.p_memsz));
        }
        // Linkers lay the segments out in the file in address order; bytes mapped twice are a
        // sign of a damaged p_offset.
        if (segment.p_offset < previous.p_offset + previous.p_filesz) {
          return refuse(name() + ": p_offset " + hex(segment.p_offset) + " maps bytes of the file that the PT_LOAD at " +
                        hex(previous.p_vaddr) + " maps already");
        }
      }
      image_.loads.push_back(segment);
    }
    if (image_.loads.empty()) return refuse("it has no PT_LOAD segment, so nothing of it would be mapped");
    if (dynamic_count != 1) return refuse("it has " + std::to_string(dynamic_count) + " PT_DYNAMIC segments; a shared library has one");
    if (tls_count > 1 || relro_count > 1) return refuse("it has more than one PT_TLS or PT_GNU_RELRO segment");

    for (std::size_t i = 0; i < segments_.size(); ++i) {
      const platform::elf_segment& segment = segments_[i];
      switch (segment.p_type) {
        case PT_DYNAMIC:
          dynamic_segment_ = &segment;
          if (!mapped_from_file(segment, i, "PT_DYNAMIC", segment.p_filesz)) return false;
          // Marked writable, the loader adds the base address to its entries in place.
          if ((segment.p_flags & PF_W) != 0 && !image_.writable(segment.p_vaddr, segment.p_filesz)) {
            return refuse(segment_name(segment, i, "PT_DYNAMIC") + " is marked writable (PF_W) but lies in a read-only PT_LOAD");
          }
          break;
        case PT_NOTE:
          if (!mapped_from_file(segment, i, "PT_NOTE", segment.p_filesz)) return false;
          break;
        case PT_GNU_PROPERTY:
          if (!mapped_from_file(segment, i, "PT_GNU_PROPERTY", segment.p_filesz)) return false;
          break;
        case PT_GNU_EH_FRAME:
          if (!mapped_from_file(segment, i, "PT_GNU_EH_FRAME", segment.p_filesz)) return false;
          break;
        case PT_PHDR:
          if (segment.p_offset != header_.e_phoff) {
            return refuse(segment_name(segment, i, "PT_PHDR") + ": p_offset " + hex(segment.p_offset) +
                          " is not e_phoff " + hex(header_.e_phoff));
          }
          if (!mapped_from_file(segment, i, "PT_PHDR", std::uint64_t{header_.e_phnum} * header_.e_phentsize)) return false;
          break;
        case PT_TLS:
          tls_ = &segment;
          if (segment.p_filesz > segment.p_memsz || segment.p_memsz > gate_max_tls_size ||
              (segment.p_align > 1 && ((segment.p_align & (segment.p_align - 1)) != 0 || segment.p_align > page))) {
            return refuse(segment_name(segment, i, "PT_TLS") + ": p_filesz " + hex(segment.p_filesz) + ", p_memsz " +
                          hex(segment.p_memsz) + " or p_align " + hex(segment.p_align) +
                          " is out of range (p_filesz <= p_memsz <= 64 MiB, p_align a power of two up to a page)");
          }
          if (!mapped_from_file(segment, i, "PT_TLS", segment.p_filesz)) return false;
          break;
        case PT_GNU_RELRO: {
          const platform::elf_segment* load = image_.holding(segment.p_vaddr, segment.p_memsz, false);
          if (load == nullptr || (load->p_flags & PF_W) == 0) {
            return refuse(segment_name(segment, i, "PT_GNU_RELRO") + " with p_memsz " + hex(segment.p_memsz) +
                          " lies outside the writable PT_LOAD segments, so the loader would write-protect memory "
                          "that is not the module's");
          }
          break;
        }
        default: break;
      }
    }
    return true;
  }

  /* A segment the loader (or the unwinder) reads in memory: it must lie in the bytes a PT_LOAD maps
     from the file, at the same file offset, so that what relib reads is what the loader sees. */
  bool mapped_from_file(const platform::elf_segment& segment, std::size_t index, const char* type, std::uint64_t size) {
    const platform::elf_segment* load = image_.holding(segment.p_vaddr, size, true);
    if (load == nullptr) {
      return refuse(segment_name(segment, index, type) + " with " + std::to_string(size) +
                    " bytes lies outside the bytes the PT_LOAD segments map from the file");
    }
    if (segment.p_offset != load->p_offset + (segment.p_vaddr - load->p_vaddr)) {
      return refuse(segment_name(segment, index, type) + ": p_offset " + hex(segment.p_offset) +
                    " is not where the PT_LOAD that maps it takes those bytes from");
    }
    return true;
  }

  /* ---- Section headers, when the file has them ----
     The loader ignores them, but they tell where the code and data that the segments must map
     lie: a p_offset or p_filesz, DT_INIT or DT_FINI moved by damage shows against them. */
  bool check_sections() {
    if (header_.e_shnum == 0 || header_.e_shentsize != sizeof(platform::elf_section)) return true;  // stripped of them
    if (header_.e_shnum > gate_max_sections) {
      return refuse("e_shnum is " + std::to_string(header_.e_shnum) + ", and relib reads at most " +
                    std::to_string(gate_max_sections) + " section headers");
    }
    std::vector<platform::elf_section> sections(header_.e_shnum);
    if (!file_.read_range(header_.e_shoff, sections.data(), sections.size() * sizeof(platform::elf_section))) {
      return refuse("its section headers at e_shoff " + hex(header_.e_shoff) + " cannot be read");
    }
    for (std::size_t i = 0; i < sections.size(); ++i) {
      const platform::elf_section& section = sections[i];
      if ((section.sh_flags & SHF_ALLOC) == 0 || section.sh_type == SHT_NOBITS || section.sh_size == 0) continue;
      const platform::elf_segment* load = image_.holding(section.sh_addr, section.sh_size, true);
      if (load == nullptr || section.sh_offset != load->p_offset + (section.sh_addr - load->p_vaddr)) {
        return refuse("section " + std::to_string(i) + " (address " + hex(section.sh_addr) + ", " +
                      std::to_string(section.sh_size) + " bytes) is not where the PT_LOAD segments map it from the "
                      "file: a segment's p_offset, p_filesz or p_vaddr is damaged");
      }
    }
    for (std::size_t i = 0; i < sections.size(); ++i) {  // .bss must be in a zero-filled part
      const platform::elf_section& section = sections[i];
      if ((section.sh_flags & SHF_ALLOC) == 0 || (section.sh_flags & SHF_TLS) != 0 || section.sh_type != SHT_NOBITS ||
          section.sh_size == 0) {
        continue;
      }
      const platform::elf_segment* load = image_.holding(section.sh_addr, section.sh_size, false);
      if (load == nullptr || section.sh_addr < load->p_vaddr + load->p_filesz) {
        return refuse("section " + std::to_string(i) + " (zero-filled, address " + hex(section.sh_addr) +
                      ") is not in the part of a PT_LOAD that the loader fills with zeros: a p_filesz or p_memsz is damaged");
      }
    }
    if (header_.e_shstrndx < sections.size()) {
      const platform::elf_section& names = sections[header_.e_shstrndx];
      section_names_.resize(static_cast<std::size_t>(std::min<std::uint64_t>(names.sh_size, 65536)));
      if (names.sh_type != SHT_STRTAB || !file_.read_range(names.sh_offset, section_names_.data(), section_names_.size())) {
        section_names_.clear();
      }
    }
    sections_ = std::move(sections);
    return true;
  }

  /* ---- The dynamic section ---- */
  bool read_dynamic() {
    const std::uint64_t count = std::min(dynamic_segment_->p_filesz / sizeof(platform::elf_dynamic), gate_max_dynamic_entries);
    std::vector<platform::elf_dynamic> entries(static_cast<std::size_t>(count));
    if (!image_.copy_out(dynamic_segment_->p_vaddr, entries.data(), count * sizeof(platform::elf_dynamic))) {
      return refuse("PT_DYNAMIC cannot be read");
    }
    const auto end = std::find_if(entries.begin(), entries.end(),
                                  [](const platform::elf_dynamic& entry) { return entry.d_tag == DT_NULL; });
    if (end == entries.end()) {
      return refuse("PT_DYNAMIC has no DT_NULL entry to end it within its first " + std::to_string(count) + " entries");
    }
    // Damage that turns one tag into another shows as a tag no linker writes, or one given twice.
    std::vector<std::int64_t> seen;
    seen.reserve(static_cast<std::size_t>(end - entries.begin()));
    for (auto entry = entries.begin(); entry != end; ++entry) {
      const std::int64_t tag = entry->d_tag;
      if (tag < 0 || (tag > platform::tag_relr_entry_size && tag < DT_LOOS) || tag > DT_HIPROC) {
        return refuse("PT_DYNAMIC entry " + std::to_string(entry - entries.begin()) + " has tag " +
                      hex(static_cast<std::uint64_t>(tag)) + ", which no linker writes");
      }
      if (tag != DT_NEEDED && std::find(seen.begin(), seen.end(), tag) != seen.end()) {
        return refuse("PT_DYNAMIC entry " + std::to_string(entry - entries.begin()) + ": tag " +
                      hex(static_cast<std::uint64_t>(tag)) + " is given twice");
      }
      seen.push_back(tag);
      dynamic_.record(*entry);
    }
    if ((values().flags_1 & DF_1_PIE) != 0) {
      is_executable = true;
      return refuse("it is a position-independent executable (DF_1_PIE in DT_FLAGS_1)");
    }
    image_.writable_everywhere = values().text_relocations || (values().flags & DF_TEXTREL) != 0;
    return true;
  }
  const dynamic_values& values() const { return dynamic_; }
  std::uint64_t image_end() const { return image_.loads.back().p_vaddr + image_.loads.back().p_memsz; }

  /* ---- Tables: each inside the image, with this ABI's entry sizes ---- */
  /* With section headers, each table the dynamic section names starts a section of its kind (and
     the sizes match): a pointer moved by damage inside the image shows here. */
  bool matches_section(const char* tag, const std::optional<std::uint64_t>& address, std::uint32_t type,
                       const char* size_tag = nullptr, const std::optional<std::uint64_t>& size = std::nullopt,
                       const char* name = nullptr) {
    if (!address || sections_.empty()) return true;
    for (const platform::elf_section& section : sections_) {
      if (section.sh_addr != *address || section.sh_type != type || (section.sh_flags & SHF_ALLOC) == 0) continue;
      if (size && section.sh_size != *size) continue;
      if (name && (section.sh_name >= section_names_.size() || std::strcmp(section_names_.c_str() + section.sh_name, name) != 0)) {
        continue;
      }
      return true;
    }
    return refuse(std::string(tag) + " " + hex(*address) + (size ? std::string(" with ") + size_tag + " " + hex(*size) : "") +
                  " does not match the section headers: no " + (name ? name : "section of its kind") +
                  " starts there" + (size ? " with that size" : ""));
  }

  bool check_tables_against_sections() {
    const dynamic_values& d = values();
    const std::uint32_t relocations = platform::relocations_have_addends ? SHT_RELA : SHT_REL;
    return matches_section("DT_STRTAB", d.strtab, SHT_STRTAB, "DT_STRSZ", d.strsz) && matches_section("DT_SYMTAB", d.symtab, SHT_DYNSYM) &&
           matches_section("DT_GNU_HASH", d.gnu_hash, SHT_GNU_HASH) && matches_section("DT_HASH", d.hash, SHT_HASH) &&
           matches_section(platform::relocations_have_addends ? "DT_RELA" : "DT_REL", d.relocations, relocations) &&
           matches_section("DT_JMPREL", d.plt_relocations, relocations, "DT_PLTRELSZ", d.plt_relocations_size) &&
           matches_section("DT_RELR", d.relr, SHT_RELR, "DT_RELRSZ", d.relr_size) &&
           matches_section("DT_VERSYM", d.versym, SHT_GNU_versym) && matches_section("DT_VERNEED", d.verneed, SHT_GNU_verneed) &&
           matches_section("DT_VERDEF", d.verdef, SHT_GNU_verdef) &&
           matches_section("DT_INIT_ARRAY", d.init_array, SHT_INIT_ARRAY, "DT_INIT_ARRAYSZ", d.init_array_size) &&
           matches_section("DT_FINI_ARRAY", d.fini_array, SHT_FINI_ARRAY, "DT_FINI_ARRAYSZ", d.fini_array_size) &&
           matches_section("DT_INIT", d.init, SHT_PROGBITS, nullptr, std::nullopt, ".init") &&
           matches_section("DT_FINI", d.fini, SHT_PROGBITS, nullptr, std::nullopt, ".fini");
  }

  bool check_tables() {
    const dynamic_values& d = values();
    if (!check_tables_against_sections()) return false;
    // The loader reads these while relocating, even when there is nothing to relocate.
    if (!d.strtab || !d.strsz || !d.symtab) {
      return refuse(std::string("its dynamic section lacks ") + (!d.strtab ? "DT_STRTAB" : !d.strsz ? "DT_STRSZ" : "DT_SYMTAB") +
                    ", which the loader reads for every library");
    }
    if (*d.strsz == 0 || !image_.in_file(*d.strtab, *d.strsz)) {
      return refuse("DT_STRTAB " + hex(*d.strtab) + " with DT_STRSZ " + hex(*d.strsz) +
                    " lies outside the bytes the PT_LOAD segments map from the file");
    }
    char last = 1;
    if (!image_.copy_out(*d.strtab + *d.strsz - 1, &last, 1) || last != '\0') {
      return refuse("DT_STRTAB: the string table does not end with a NUL byte (is DT_STRSZ " + hex(*d.strsz) + " right?)");
    }
    for (const auto& [tag, offset] : d.strings) {
      if (offset >= *d.strsz) {
        return refuse(std::string(string_tag_name(tag)) + " names string " + hex(offset) + ", outside DT_STRTAB (DT_STRSZ " +
                      hex(*d.strsz) + ")");
      }
    }
    if (d.syment && *d.syment != sizeof(platform::elf_symbol)) {
      return refuse("DT_SYMENT is " + std::to_string(*d.syment) + ", this ABI's symbols take " +
                    std::to_string(sizeof(platform::elf_symbol)) + " bytes");
    }
    const std::uint64_t relocation_size = sizeof(platform::elf_relocation);
    const char* const table = platform::relocations_have_addends ? "DT_RELA" : "DT_REL";
    const char* const size_tag = platform::relocations_have_addends ? "DT_RELASZ" : "DT_RELSZ";
    if (d.plt_relocation_kind && *d.plt_relocation_kind != std::uint64_t{platform::relocations_have_addends ? DT_RELA : DT_REL}) {
      return refuse("DT_PLTREL is " + std::to_string(*d.plt_relocation_kind) + ", this ABI's relocations are " + table);
    }
    if (d.relocations_size && !d.relocations) return refuse(std::string(size_tag) + " without " + table);
    if (d.plt_relocations_size && !d.plt_relocations) return refuse("DT_PLTRELSZ without DT_JMPREL");
    if (d.plt_relocations.has_value() != d.plt_relocation_kind.has_value()) return refuse("one of DT_JMPREL and DT_PLTREL without the other");
    if (d.relr_size && !d.relr) return refuse("DT_RELRSZ without DT_RELR");
    if (d.relocations) {
      if (!d.relocations_entry_size || *d.relocations_entry_size != relocation_size) {
        return refuse(std::string(table) + "ENT is " +
                      (d.relocations_entry_size ? std::to_string(*d.relocations_entry_size) : std::string("missing")) +
                      ", this ABI's relocations take " + std::to_string(relocation_size) + " bytes");
      }
      if (!add_relocation_table(table, size_tag, *d.relocations, d.relocations_size, relocation_size)) return false;
      relocation_table& added = relocation_tables_.back();
      added.leading_relative = d.relative_count.value_or(0);
      if (added.leading_relative > added.count) {
        return refuse(std::string(table) + "COUNT " + std::to_string(added.leading_relative) + " is larger than the " +
                      std::to_string(added.count) + " entries of " + table);
      }
    }
    if (d.plt_relocations &&
        !add_relocation_table("DT_JMPREL", "DT_PLTRELSZ", *d.plt_relocations, d.plt_relocations_size, relocation_size)) {
      return false;
    }
    if (d.relr) {
      if (!d.relr_entry_size || *d.relr_entry_size != word) {  // glibc 2.36 reads it unchecked
        return refuse("DT_RELRENT is " + (d.relr_entry_size ? std::to_string(*d.relr_entry_size) : std::string("missing")) +
                      ", this ABI's entries take " + std::to_string(word) + " bytes");
      }
      if (!add_relocation_table("DT_RELR", "DT_RELRSZ", *d.relr, d.relr_size, word)) return false;
      relr_ = relocation_tables_.back();
      relocation_tables_.pop_back();
    }
    if (d.plt_relocations && d.pltgot && !image_.writable(*d.pltgot, 3 * word)) {
      return refuse("DT_PLTGOT " + hex(*d.pltgot) + " lies outside the writable segments");
    }
    return add_function_array("DT_INIT_ARRAY", d.init_array, d.init_array_size) &&
           add_function_array("DT_FINI_ARRAY", d.fini_array, d.fini_array_size);
  }

  bool add_relocation_table(const char* name, const char* size_tag, std::uint64_t address,
                            const std::optional<std::uint64_t>& size, std::uint64_t entry_size) {
    if (!size) return refuse(std::string(name) + " without " + size_tag);
    if (*size % entry_size != 0 || *size / entry_size > gate_max_relocations) {
      return refuse(std::string(size_tag) + " " + hex(*size) + " is not a multiple of " + std::to_string(entry_size) +
                    " bytes up to " + std::to_string(gate_max_relocations) + " entries");
    }
    if (!image_.in_file(address, *size)) {
      return refuse(std::string(name) + " " + hex(address) + " with " + size_tag + " " + hex(*size) +
                    " lies outside the bytes the PT_LOAD segments map from the file");
    }
    relocation_tables_.push_back({name, address, *size / entry_size});
    return true;
  }

  bool add_function_array(const char* name, const std::optional<std::uint64_t>& address,
                          const std::optional<std::uint64_t>& size) {
    if (!address && size) return refuse(std::string(name) + "SZ without " + name);
    if (!address) return true;
    if (!size) return refuse(std::string(name) + " without " + name + "SZ");
    if (*size % word != 0 || *size / word > gate_max_array_entries || !image_.in_file(*address, *size)) {
      return refuse(std::string(name) + " " + hex(*address) + " with " + name + "SZ " + hex(*size) +
                    " lies outside the loaded segments or is not a whole number of pointers");
    }
    function_arrays_.push_back({name, *address, *size / word, std::vector<bool>(static_cast<std::size_t>(*size / word))});
    return true;
  }

  /* ---- Symbols: how many there are (from the hash table the loader uses), each one sane ---- */
  bool count_symbols() {
    const dynamic_values& d = values();
    if (d.gnu_hash) {
      if (!count_gnu_hashed_symbols(*d.gnu_hash)) return false;
    } else if (d.hash) {
      if (!count_hashed_symbols(*d.hash)) return false;
    } else {
      return refuse("it has DT_SYMTAB but no DT_GNU_HASH or DT_HASH, so none of its symbols can be found");
    }
    if (!image_.in_file(*d.symtab, symbol_count_ * sizeof(platform::elf_symbol))) {
      return refuse("DT_SYMTAB " + hex(*d.symtab) + " with " + std::to_string(symbol_count_) +
                    " symbols lies outside the bytes the PT_LOAD segments map from the file");
    }
    return true;
  }

  bool count_gnu_hashed_symbols(std::uint64_t address) {
    std::uint32_t head[4];  // buckets, first hashed symbol, bloom words, bloom shift
    if (!image_.copy_out(address, head, sizeof head)) return refuse("DT_GNU_HASH " + hex(address) + " lies outside the image");
    const std::uint64_t buckets = head[0], first = head[1], bloom_words = head[2];
    if (buckets == 0 || buckets > gate_max_symbols || bloom_words == 0 || (bloom_words & (bloom_words - 1)) != 0) {
      return refuse("DT_GNU_HASH has " + std::to_string(buckets) + " buckets and " + std::to_string(bloom_words) +
                    " bloom words (the loader needs at least one bucket and a power of two of bloom words)");
    }
    const std::uint64_t buckets_at = address + sizeof head + bloom_words * word;
    const std::uint64_t chains_at = buckets_at + buckets * 4;
    if (!image_.in_file(address, chains_at - address)) return refuse("DT_GNU_HASH: its buckets lie outside the image");
    std::uint64_t last_chain = 0;
    std::uint32_t chunk[1024];
    for (std::uint64_t i = 0; i < buckets; i += 1024) {
      const std::uint64_t n = std::min<std::uint64_t>(1024, buckets - i);
      if (!image_.copy_out(buckets_at + i * 4, chunk, n * 4)) return refuse("DT_GNU_HASH cannot be read");
      for (std::uint64_t j = 0; j < n; ++j) {
        if (chunk[j] != 0 && chunk[j] < first) {
          return refuse("DT_GNU_HASH: bucket " + std::to_string(i + j) + " starts at symbol " + std::to_string(chunk[j]) +
                        ", before the first hashed symbol " + std::to_string(first));
        }
        last_chain = std::max<std::uint64_t>(last_chain, chunk[j]);
      }
    }
    symbol_count_ = first;
    if (last_chain == 0) return true;
    for (std::uint64_t symbol = last_chain;; ++symbol) {  // the last chain ends at the last symbol
      std::uint32_t value = 0;
      if (symbol >= gate_max_symbols || !image_.copy_out(chains_at + (symbol - first) * 4, &value, 4)) {
        return refuse("DT_GNU_HASH: the chain of its last bucket does not end inside the image");
      }
      if ((value & 1) != 0) {
        symbol_count_ = symbol + 1;
        return true;
      }
    }
  }

  bool count_hashed_symbols(std::uint64_t address) {
    std::uint32_t head[2];  // buckets, chain entries (= symbols)
    if (!image_.copy_out(address, head, sizeof head)) return refuse("DT_HASH " + hex(address) + " lies outside the image");
    const std::uint64_t buckets = head[0], symbols = head[1];
    if (buckets == 0 || buckets > gate_max_symbols || symbols > gate_max_symbols ||
        !image_.in_file(address + 8, (buckets + symbols) * 4)) {
      return refuse("DT_HASH with " + std::to_string(buckets) + " buckets and " + std::to_string(symbols) +
                    " symbols does not fit the image");
    }
    // Every chain must stay inside the table and end: the loader follows them without a bound.
    std::vector<std::uint32_t> table(static_cast<std::size_t>(buckets + symbols));
    if (!image_.copy_out(address + 8, table.data(), table.size() * 4)) return refuse("DT_HASH cannot be read");
    std::vector<bool> seen(static_cast<std::size_t>(symbols));
    for (std::uint64_t b = 0; b < buckets; ++b) {
      for (std::uint64_t symbol = table[b]; symbol != 0; symbol = table[buckets + symbol]) {
        if (symbol >= symbols || seen[symbol]) {
          return refuse("DT_HASH: the chain of bucket " + std::to_string(b) + " leaves the table or loops");
        }
        seen[symbol] = true;
      }
    }
    symbol_count_ = symbols;
    return true;
  }

  /* ---- Symbol versions: the loader indexes its version table with each symbol's DT_VERSYM ---- */
  bool check_versions() {
    const dynamic_values& d = values();
    std::uint64_t highest = 0;
    if (d.verneed && !walk_version_needs(*d.verneed, highest)) return false;
    if (d.verdef && !walk_version_definitions(*d.verdef, highest)) return false;
    version_count_ = highest > 0 ? highest + 1 : 0;
    if (version_count_ > 0 && !d.versym) return refuse("it has DT_VERNEED or DT_VERDEF without DT_VERSYM");
    if (d.versym && !image_.in_file(*d.versym, symbol_count_ * 2)) {
      return refuse("DT_VERSYM " + hex(*d.versym) + " with " + std::to_string(symbol_count_) +
                    " symbols lies outside the image");
    }
    return true;
  }

  bool check_string(const char* what, std::uint64_t offset) {
    if (offset < *values().strsz) return true;
    return refuse(std::string(what) + " names string " + hex(offset) + ", outside DT_STRTAB");
  }

  /* Whether the string at `offset` is one of the DT_NEEDED names. */
  bool names_a_needed_library(std::uint64_t offset) {
    for (const auto& [tag, needed] : values().strings) {  // linkers share the string: the same offset
      if (tag == DT_NEEDED && needed == offset) return true;
    }
    const std::string name = string_at_offset(offset);
    for (const auto& [tag, needed] : values().strings) {
      if (tag == DT_NEEDED && string_at_offset(needed) == name) return true;
    }
    return false;
  }
  std::string string_at_offset(std::uint64_t offset, std::size_t longest = 255) {
    char text[4096] = {};
    longest = std::min(longest, sizeof text - 1);
    const std::uint64_t length = std::min<std::uint64_t>(longest, *values().strsz - offset);
    image_.copy_out(*values().strtab + offset, text, length);
    return text;
  }

  bool walk_version_needs(std::uint64_t address, std::uint64_t& highest) {
    std::uint64_t steps = 0;
    for (std::uint64_t need_at = address;;) {
      platform::elf_version_need need{};
      if (++steps > gate_max_version_records || !image_.copy_out(need_at, &need, sizeof need)) {
        return refuse("DT_VERNEED: its list leaves the image or does not end");
      }
      if (need.vn_version != 1) return refuse("DT_VERNEED: version " + std::to_string(need.vn_version) + " records, the loader knows 1");
      if (!check_string("DT_VERNEED", need.vn_file)) return false;
      if (!names_a_needed_library(need.vn_file)) {
        return refuse("DT_VERNEED names library '" + string_at_offset(need.vn_file) + "', which is not a DT_NEEDED entry");
      }
      for (std::uint64_t entry_at = need_at + need.vn_aux;;) {
        platform::elf_version_need_entry entry{};
        if (++steps > gate_max_version_records || !image_.copy_out(entry_at, &entry, sizeof entry)) {
          return refuse("DT_VERNEED: the version list of '" + string_at_offset(need.vn_file) + "' leaves the image or does not end");
        }
        if (!check_string("DT_VERNEED", entry.vna_name)) return false;
        highest = std::max<std::uint64_t>(highest, entry.vna_other & 0x7fff);
        if (entry.vna_next == 0) break;
        entry_at += entry.vna_next;
      }
      if (need.vn_next == 0) return true;
      need_at += need.vn_next;
    }
  }

  bool walk_version_definitions(std::uint64_t address, std::uint64_t& highest) {
    for (std::uint64_t steps = 0, definition_at = address;;) {
      platform::elf_version_definition definition{};
      platform::elf_version_definition_name name{};
      if (++steps > gate_max_version_records || !image_.copy_out(definition_at, &definition, sizeof definition) ||
          !image_.copy_out(definition_at + definition.vd_aux, &name, sizeof name)) {
        return refuse("DT_VERDEF: its list leaves the image or does not end");
      }
      if (!check_string("DT_VERDEF", name.vda_name)) return false;
      highest = std::max<std::uint64_t>(highest, definition.vd_ndx & 0x7fff);
      if (definition.vd_next == 0) return true;
      definition_at += definition.vd_next;
    }
  }

  bool check_symbols() {
    const dynamic_values& d = values();
    platform::elf_symbol symbols[256];
    std::uint16_t versions[256];
    for (std::uint64_t i = 0; i < symbol_count_; i += 256) {
      const std::uint64_t n = std::min<std::uint64_t>(256, symbol_count_ - i);
      if (!image_.copy_out(*d.symtab + i * sizeof(platform::elf_symbol), symbols, n * sizeof(platform::elf_symbol)) ||
          (d.versym && !image_.copy_out(*d.versym + i * 2, versions, n * 2))) {
        return refuse("DT_SYMTAB or DT_VERSYM cannot be read");
      }
      for (std::uint64_t j = 0; j < n; ++j) {
        const platform::elf_symbol& symbol = symbols[j];
        const auto name = [&] { return "symbol " + std::to_string(i + j); };  // made only for a refusal
        if (symbol.st_name >= *d.strsz) return check_string(name().c_str(), symbol.st_name);
        if (ELF64_ST_TYPE(symbol.st_info) == STT_GNU_IFUNC && symbol.st_shndx != SHN_UNDEF &&
            !image_.executable(symbol.st_value)) {
          return refuse(name() + " is an indirect function (STT_GNU_IFUNC) whose resolver at " + hex(symbol.st_value) +
                        " lies outside the executable segments");
        }
        const std::uint64_t version = d.versym ? versions[j] & 0x7fff : 0;
        if (version != 0 && version >= version_count_) {
          return refuse("DT_VERSYM gives " + name() + " version " + std::to_string(version) + ", but DT_VERNEED and "
                        "DT_VERDEF define " + std::to_string(version_count_ == 0 ? 0 : version_count_ - 1));
        }
      }
    }
    return true;
  }

  /* ---- Relocations: where each writes, and what the loader calls through them ---- */
  bool check_relocations() {
    // Most relocations are relative ones into the data segment: they take a short path, which
    // asks only what the full check would (a writable file-backed word, no init or fini entry,
    // a pointer into the image).
    const platform::elf_segment& data = image_.loads.back();
    const bool data_writable = (data.p_flags & PF_W) != 0 || image_.writable_everywhere;
    std::uint64_t arrays_begin = ~std::uint64_t{0}, arrays_end = 0;
    for (const function_array& array : function_arrays_) {
      arrays_begin = std::min(arrays_begin, array.address);
      arrays_end = std::max(arrays_end, array.address + array.count * word);
    }
    const auto plainly_relative = [&](const platform::elf_relocation& relocation) {
      const std::uint64_t offset = relocation.r_offset;
      return platform::relocations_have_addends && data_writable && offset >= data.p_vaddr &&
             offset - data.p_vaddr < data.p_filesz && data.p_filesz - (offset - data.p_vaddr) >= word &&
             (offset >= arrays_end || offset + word <= arrays_begin) &&
             platform::relocation_effect_of(platform::relocation_type(relocation.r_info)).kind == platform::relocation_kind::relative &&
             platform::relocation_symbol(relocation.r_info) == 0 &&
             platform::relocation_addend(relocation) <= image_end();
    };
    platform::elf_relocation chunk[256];
    for (const relocation_table& table : relocation_tables_) {
      for (std::uint64_t i = 0; i < table.count; i += 256) {
        const std::uint64_t n = std::min<std::uint64_t>(256, table.count - i);
        if (!image_.copy_out(table.address + i * sizeof(platform::elf_relocation), chunk, n * sizeof(platform::elf_relocation))) {
          return refuse(std::string(table.name) + " cannot be read");
        }
        for (std::uint64_t j = 0; j < n; ++j) {
          if (!plainly_relative(chunk[j]) && !check_relocation(table, i + j, chunk[j])) return false;
        }
      }
    }
    return relr_.count == 0 || check_relr();
  }

  bool check_relocation(const relocation_table& table, std::uint64_t index, const platform::elf_relocation& relocation) {
    const std::uint32_t type = platform::relocation_type(relocation.r_info);
    const std::uint64_t symbol = platform::relocation_symbol(relocation.r_info);
    const platform::relocation_effect effect = platform::relocation_effect_of(type);
    const auto name = [&] {
      return "relocation " + std::to_string(index) + " of " + table.name + " (type " + std::to_string(type) + ")";
    };
    if (index < table.leading_relative && effect.kind != platform::relocation_kind::relative &&
        effect.kind != platform::relocation_kind::unchecked) {
      return refuse(name() + " is not relative, but DT_RELACOUNT says the first " + std::to_string(table.leading_relative) +
                    " are");
    }
    switch (effect.kind) {
      case platform::relocation_kind::none: return true;
      case platform::relocation_kind::unknown: return refuse(name() + " is of a type the dynamic loader does not apply on this machine");
      case platform::relocation_kind::copy: return refuse(name() + " is a copy relocation, which only an executable may have");
      default: break;
    }
    if (symbol >= std::max<std::uint64_t>(symbol_count_, 1)) {
      return refuse(name() + " refers to symbol " + std::to_string(symbol) + ", past the symbol table's " +
                    std::to_string(symbol_count_) + " symbols");
    }
    // In the file-backed part of a writable segment (the file-backed part of the one that holds it).
    const platform::elf_segment* target = image_.holding(relocation.r_offset, effect.bytes_written, true);
    if (target == nullptr || (!image_.writable_everywhere && (target->p_flags & PF_W) == 0)) {
      return refuse(name() + " writes " + std::to_string(effect.bytes_written) + " bytes at " + hex(relocation.r_offset) +
                    ", outside the writable segments' file-backed bytes");
    }
    if (effect.kind == platform::relocation_kind::thread_local_data && symbol == 0 && tls_ == nullptr) {
      return refuse(name() + " refers to the module's thread-local storage, but it has no PT_TLS segment");
    }
    const std::uint64_t addend =
        platform::relocations_have_addends ? platform::relocation_addend(relocation) : image_.word_at(relocation.r_offset);
    if (effect.kind == platform::relocation_kind::relative && addend > image_end()) {
      return refuse(name() + " makes a pointer to " + hex(addend) + ", past the end of the image at " + hex(image_end()));
    }
    if (effect.kind == platform::relocation_kind::resolver_call && !image_.executable(addend)) {
      return refuse(name() + " has the loader call a resolver at " + hex(addend) + ", outside the executable segments");
    }
    for (function_array& array : function_arrays_) {
      if (relocation.r_offset - array.address >= array.count * word) continue;  // before it wraps around
      const std::uint64_t entry = (relocation.r_offset - array.address) / word;
      std::optional<std::uint64_t> function;  // the function's address, when it is known before loading
      if (effect.kind == platform::relocation_kind::relative) function = addend;
      if (effect.kind == platform::relocation_kind::symbol_word && symbol != 0) {
        platform::elf_symbol defined{};
        image_.copy_out(*values().symtab + symbol * sizeof defined, &defined, sizeof defined);
        if (defined.st_shndx != SHN_UNDEF && ELF64_ST_TYPE(defined.st_info) != STT_GNU_IFUNC) {
          function = defined.st_value + addend;
        }
      }
      const bool gives_address = effect.kind == platform::relocation_kind::relative ||
                                 effect.kind == platform::relocation_kind::symbol_word ||
                                 effect.kind == platform::relocation_kind::resolver_call ||
                                 effect.kind == platform::relocation_kind::unchecked;
      if ((relocation.r_offset - array.address) % word != 0 || !gives_address) {
        return refuse(name() + " writes into " + array.name + " something other than a function's address");
      }
      if (function && !image_.executable(*function)) {
        return refuse(std::string(array.name) + " entry " + std::to_string(entry) + " points at " + hex(*function) +
                      ", outside the executable segments");
      }
      array.relocated[static_cast<std::size_t>(entry)] = true;
    }
    return true;
  }

  /* RELR: an even entry is an address to relocate; an odd one a bitmap of the next 63 words. */
  bool check_relr() {
    std::optional<std::uint64_t> next;  // the word after the last one relocated
    platform::elf_word chunk[256];
    for (std::uint64_t i = 0; i < relr_.count; i += 256) {
      const std::uint64_t n = std::min<std::uint64_t>(256, relr_.count - i);
      if (!image_.copy_out(relr_.address + i * word, chunk, n * word)) return refuse("DT_RELR cannot be read");
      for (std::uint64_t j = 0; j < n; ++j) {
        const std::uint64_t entry = chunk[j];
        if ((entry & 1) == 0) {
          if (!relocate_word(entry)) return false;
          next = entry + word;
          continue;
        }
        if (!next) return refuse("DT_RELR: its entry " + std::to_string(i + j) + " is a bitmap before any address");
        for (std::uint64_t bit = 1; bit < 8 * word; ++bit) {
          if (((entry >> bit) & 1) != 0 && !relocate_word(*next + (bit - 1) * word)) return false;
        }
        *next += (8 * word - 1) * word;
      }
    }
    return true;
  }

  bool relocate_word(std::uint64_t address) {
    if (!image_.writable(address, word) || !image_.in_file(address, word)) {
      return refuse("DT_RELR relocates the word at " + hex(address) + ", outside the writable segments' file-backed bytes");
    }
    for (function_array& array : function_arrays_) {
      if (address < array.address || address - array.address >= array.count * word) continue;
      const std::uint64_t target = image_.word_at(address);
      if ((address - array.address) % word != 0 || !image_.executable(target)) {
        return refuse(std::string(array.name) + " entry " + std::to_string((address - array.address) / word) +
                      " points at " + hex(target) + ", outside the executable segments");
      }
      array.relocated[static_cast<std::size_t>((address - array.address) / word)] = true;
    }
    return true;
  }

  /* ---- The functions the loader calls: DT_INIT, DT_FINI and every array entry ---- */
  bool check_functions() {
    const dynamic_values& d = values();
    if (d.init && !image_.executable(*d.init)) return refuse("DT_INIT " + hex(*d.init) + " lies outside the executable segments");
    if (d.fini && !image_.executable(*d.fini)) return refuse("DT_FINI " + hex(*d.fini) + " lies outside the executable segments");
    for (const function_array& array : function_arrays_) {
      for (std::size_t entry = 0; entry < array.relocated.size(); ++entry) {
        if (!array.relocated[entry]) {
          return refuse(std::string(array.name) + " entry " + std::to_string(entry) +
                        " is never relocated, so the loader would call the address the file holds there");
        }
      }
    }
    return true;
  }

  const platform::readable_file& file_;
  const platform::elf_header& header_;
  const std::vector<platform::elf_segment>& segments_;
  loaded_image image_;
  std::vector<platform::elf_section> sections_;  // empty when the file has no section headers
  std::string section_names_;
  const platform::elf_segment* dynamic_segment_ = nullptr;
  const platform::elf_segment* tls_ = nullptr;
  dynamic_values dynamic_;
  std::vector<relocation_table> relocation_tables_;
  relocation_table relr_{"DT_RELR", 0, 0};
  std::vector<function_array> function_arrays_;
  std::uint64_t symbol_count_ = 0;
  std::uint64_t version_count_ = 0;  // entries in the loader's version table: the highest index + 1
};

bool passes_elf_gate(const platform::readable_file& file, std::string_view head, const platform::elf_header& header,
                     const std::vector<platform::elf_segment>& segments, std::string& problem, bool& is_executable,
                     image_contents& out) {
  image_gate gate(file, head, header, segments);
  const bool passed = gate.check();
  problem = std::move(gate.problem);
  is_executable = gate.is_executable;
  if (passed) {
    out.search_paths = gate.search_paths();
    out.spans = gate.spans();
  }
  return passed;
}

#endif  // !_WIN32

/* >>pe reader ---- Windows: the PE header, relib's records and the checks before LoadLibrary ----
   The same job as >>elf reader and >>elf gate for a DLL: LoadLibrary runs DllMain and the static
   constructors, so the header, the section table and relib's records (the notes in section
   .relib) are read from the file first. Every offset and size is checked against the file and the
   image before it is used; a truncated or hostile file is refused, never read past its end. */
#if defined(_WIN32)

/* The PE structures as laid out in the file, read field by field (no packing assumptions). */
struct pe_section {
  std::string name;  // up to 8 bytes; "/N" names in the COFF string table are left as they are
  std::uint32_t virtual_size = 0, virtual_address = 0, raw_size = 0, raw_offset = 0, characteristics = 0;
};
struct pe_image {
  std::uint16_t machine = 0, characteristics = 0, optional_magic = 0;
  std::uint32_t size_of_image = 0, size_of_headers = 0, section_alignment = 0, file_alignment = 0;
  std::uint64_t image_base = 0;  // the preferred address, which debug information counts from
  std::uint32_t symbol_table = 0, symbol_count = 0;  // the COFF symbol table (absent once stripped)
  std::vector<std::pair<std::uint32_t, std::uint32_t>> directories;  // RVA and size of each data directory
  std::vector<pe_section> sections;
};

/* What relib reads of a PE at most: the header area, and the sections and directories listed. */
constexpr std::size_t pe_max_sections = 96;          // the Windows loader's own limit
constexpr std::uint32_t pe_max_directories = 16;
constexpr std::uint32_t pe_max_imported_libraries = 4096;

inline std::uint16_t read_u16(const char* at) {
  std::uint16_t value;
  std::memcpy(&value, at, sizeof value);
  return value;
}
inline std::uint32_t read_u32(const char* at) {
  std::uint32_t value;
  std::memcpy(&value, at, sizeof value);
  return value;
}

/* Reads the headers of a PE file; on failure, `detail` says what is wrong and the status which
   kind of refusal it is. */
image_status read_pe_headers(const platform::readable_file& file, pe_image& out, std::string& detail) {
  const std::uint64_t size = file.size();
  char head[4096];
  const std::size_t got = static_cast<std::size_t>(std::min<std::uint64_t>(size, sizeof head));
  if (!file.read_range(0, head, got)) {
    detail = "it cannot be read";
    return image_status::unreadable;
  }
  if (got < 2 || head[0] != 'M' || head[1] != 'Z') {
    detail = size == 0 ? "the file is empty" : "it does not start with the PE signature (MZ)";
    return image_status::not_an_image;
  }
  if (got < 0x40) {
    detail = "it is truncated within the DOS header (is it still being written?)";
    return image_status::unreadable;
  }
  const std::uint32_t pe_offset = read_u32(head + 0x3c);
  char nt[4 + 20];
  if (pe_offset > size || sizeof nt > size - pe_offset || !file.read_range(pe_offset, nt, sizeof nt) ||
      std::memcmp(nt, "PE\0\0", 4) != 0) {
    const bool truncated = pe_offset > size || sizeof nt > size - pe_offset;
    detail = truncated ? "it is truncated before its PE header at offset " + std::to_string(pe_offset) +
                             " (e_lfanew; is it still being written?)"
                       : "it has a DOS header but no PE header at offset " + std::to_string(pe_offset) + " (e_lfanew)";
    return truncated ? image_status::unreadable : image_status::not_an_image;
  }
  out.machine = read_u16(nt + 4);
  const std::uint16_t section_count = read_u16(nt + 6);
  out.symbol_table = read_u32(nt + 12);
  out.symbol_count = read_u32(nt + 16);
  const std::uint16_t optional_size = read_u16(nt + 20);
  out.characteristics = read_u16(nt + 22);
  if (out.machine != platform::host_machine) {
    detail = "it is built for PE machine " + hex(out.machine) + ", this process is machine " + hex(platform::host_machine);
    return image_status::wrong_architecture;
  }
  const std::uint64_t optional_offset = std::uint64_t{pe_offset} + sizeof nt;
  std::string optional(optional_size, '\0');
  if (optional_size < 2 || optional_offset + optional_size > size ||
      !file.read_range(optional_offset, optional.data(), optional_size)) {
    detail = "it is truncated within its optional header (is it still being written?)";
    return image_status::unreadable;
  }
  out.optional_magic = read_u16(optional.data());
  if (out.optional_magic != platform::host_optional_magic) {
    detail = std::string("it is a ") + (out.optional_magic == IMAGE_NT_OPTIONAL_HDR32_MAGIC ? "32-bit" : "64-bit") +
             " PE image (optional header magic " + hex(out.optional_magic) + "), this process is " +
             (sizeof(void*) == 8 ? "64-bit" : "32-bit");
    return image_status::wrong_architecture;
  }
  if ((out.characteristics & IMAGE_FILE_DLL) == 0) {
    detail = (out.characteristics & IMAGE_FILE_EXECUTABLE_IMAGE) != 0 ? "it is an executable"
                                                                     : "it is an object file or not an image";
    return image_status::not_shared_library;
  }
  // The fields at the same offsets in PE32 and PE32+ up to the directories.
  const std::size_t directories_at = sizeof(void*) == 8 ? 112 : 96;
  if (optional_size < directories_at) {
    detail = "its optional header takes " + std::to_string(optional_size) + " bytes, too few for its fields";
    return image_status::unreadable;
  }
  out.image_base = sizeof(void*) == 8 ? std::uint64_t{read_u32(optional.data() + 24)} |
                                           std::uint64_t{read_u32(optional.data() + 28)} << 32
                                     : read_u32(optional.data() + 28);
  out.section_alignment = read_u32(optional.data() + 32);
  out.file_alignment = read_u32(optional.data() + 36);
  out.size_of_image = read_u32(optional.data() + 56);
  out.size_of_headers = read_u32(optional.data() + 60);
  const std::uint32_t directory_count = read_u32(optional.data() + directories_at - 4);
  if (directory_count > pe_max_directories || directories_at + std::size_t{directory_count} * 8 > optional_size) {
    detail = "its optional header lists " + std::to_string(directory_count) + " data directories in " +
             std::to_string(optional_size) + " bytes (NumberOfRvaAndSizes)";
    return image_status::unreadable;
  }
  for (std::uint32_t i = 0; i < directory_count; ++i) {
    const char* entry = optional.data() + directories_at + i * 8;
    out.directories.emplace_back(read_u32(entry), read_u32(entry + 4));
  }
  const auto power_of_two = [](std::uint32_t value) { return value != 0 && (value & (value - 1)) == 0; };
  if (!power_of_two(out.section_alignment) || !power_of_two(out.file_alignment) ||
      out.file_alignment > out.section_alignment || out.size_of_headers > out.size_of_image ||
      out.size_of_headers > size) {
    detail = "its optional header is inconsistent: SectionAlignment " + std::to_string(out.section_alignment) +
             ", FileAlignment " + std::to_string(out.file_alignment) + ", SizeOfHeaders " +
             std::to_string(out.size_of_headers) + ", SizeOfImage " + std::to_string(out.size_of_image) +
             ", file size " + std::to_string(size);
    return image_status::unreadable;
  }
  if (section_count == 0 || section_count > pe_max_sections) {
    detail = "it has " + std::to_string(section_count) + " sections (relib reads 1 to " +
             std::to_string(pe_max_sections) + ")";
    return image_status::unreadable;
  }
  const std::uint64_t table_offset = optional_offset + optional_size;
  std::string table(std::size_t{section_count} * 40, '\0');
  if (table_offset + table.size() > size || table_offset + table.size() > out.size_of_headers ||
      !file.read_range(table_offset, table.data(), table.size())) {
    detail = "its section table ends past its headers or the file (is it still being written?)";
    return image_status::unreadable;
  }
  for (std::size_t i = 0; i < section_count; ++i) {
    const char* entry = table.data() + i * 40;
    pe_section section;
    section.name.assign(entry, strnlen(entry, 8));
    section.virtual_size = read_u32(entry + 8);
    section.virtual_address = read_u32(entry + 12);
    section.raw_size = read_u32(entry + 16);
    section.raw_offset = read_u32(entry + 20);
    section.characteristics = read_u32(entry + 36);
    out.sections.push_back(std::move(section));
  }
  return image_status::ok;
}

/* The checks the Windows loader relies on, and those relib itself needs: every section lies in
   the image, after the headers, in address order without overlap, with its file bytes in the
   file; every data directory lies in the image. */
bool passes_pe_gate(const platform::readable_file& file, const pe_image& image, std::string& problem) {
  const std::uint64_t size = file.size();
  std::uint64_t previous_end = image.size_of_headers;
  for (std::size_t i = 0; i < image.sections.size(); ++i) {
    const pe_section& section = image.sections[i];
    const std::string which = "section " + std::to_string(i) + " (" + shown(section.name) + ")";
    const std::uint64_t span = std::max(section.virtual_size, section.raw_size);
    if (section.virtual_address < previous_end || section.virtual_address % image.section_alignment != 0 ||
        std::uint64_t{section.virtual_address} + span > image.size_of_image) {
      problem = which + " at " + hex(section.virtual_address) + " with " + std::to_string(span) +
                " bytes overlaps the previous one or the headers, is misaligned, or ends past SizeOfImage " +
                hex(image.size_of_image);
      return false;
    }
    if (section.raw_size != 0 && (section.raw_offset > size || section.raw_size > size - section.raw_offset)) {
      problem = "it is truncated: " + which + " takes " + std::to_string(section.raw_size) + " bytes from offset " +
                std::to_string(section.raw_offset) + ", but the file has " + std::to_string(size) +
                " bytes (is it still being written?)";
      return false;
    }
    previous_end = std::uint64_t{section.virtual_address} + span;
  }
  // The COFF symbol table and the string table after it (the long section names) end the file:
  // a file cut there would load, yet it is not the file the build wrote.
  if (image.symbol_table != 0) {
    const std::uint64_t strings_at = std::uint64_t{image.symbol_table} + std::uint64_t{image.symbol_count} * 18;
    std::uint32_t strings_size = 0;
    if (strings_at + 4 > size || !file.read_range(strings_at, &strings_size, 4) || strings_at + strings_size > size) {
      problem = "it is truncated: its COFF symbol table at offset " + std::to_string(image.symbol_table) +
                " and the string table after it end past the file's " + std::to_string(size) +
                " bytes (is it still being written?)";
      return false;
    }
  }
  for (std::size_t i = 0; i < image.directories.size(); ++i) {
    const auto& [address, length] = image.directories[i];
    // The security directory (4) holds a file offset, not an address.
    const std::uint64_t limit = i == 4 ? size : image.size_of_image;
    if (length != 0 && (address > limit || length > limit - address)) {
      problem = "data directory " + std::to_string(i) + " (" + hex(address) + ", " + std::to_string(length) +
                " bytes) lies outside the " + (i == 4 ? "file" : "image");
      return false;
    }
  }
  return true;
}

/* The file offset of an address in the image, when a section's file bytes hold it. */
bool pe_file_offset(const pe_image& image, std::uint64_t address, std::uint64_t length, std::uint64_t& offset) {
  if (address + length <= image.size_of_headers) return offset = address, true;
  for (const pe_section& section : image.sections) {
    if (address >= section.virtual_address && address + length <= std::uint64_t{section.virtual_address} + section.raw_size) {
      offset = section.raw_offset + (address - section.virtual_address);
      return true;
    }
  }
  return false;
}

/* The bytes of a section as the file holds them (at most its virtual size: the rest is padding). */
bool read_pe_section(const platform::readable_file& file, const pe_section& section, std::string& out) {
  const std::uint32_t length = section.virtual_size != 0 ? std::min(section.virtual_size, section.raw_size) : section.raw_size;
  if (length > section_read_limit) return false;
  out.resize(length);
  return file.read_range(section.raw_offset, out.data(), length);
}

/* The names of the DLLs the image imports (the import directory), for explanations. */
void read_pe_imports(const platform::readable_file& file, const pe_image& image, std::vector<std::string>& out) {
  if (image.directories.size() <= 1 || image.directories[1].second == 0) return;
  const std::uint32_t table = image.directories[1].first;
  for (std::uint32_t i = 0; i < pe_max_imported_libraries; ++i) {
    char descriptor[20];
    std::uint64_t offset = 0;
    if (!pe_file_offset(image, table + std::uint64_t{i} * 20, 20, offset) ||
        !file.read_range(offset, descriptor, sizeof descriptor)) {
      return;
    }
    const std::uint32_t name_address = read_u32(descriptor + 12);
    if (name_address == 0) return;  // the table ends with an empty descriptor
    char name[256] = {};
    std::uint64_t name_offset = 0;
    if (!pe_file_offset(image, name_address, 1, name_offset)) return;
    const std::uint64_t available = std::min<std::uint64_t>(sizeof name - 1, file.size() - name_offset);
    if (!file.read_range(name_offset, name, available)) return;
    out.emplace_back(name, strnlen(name, available));
  }
}

image_status read_image(const platform::readable_file& opened, image_contents& out, std::string& detail, unsigned extras) {
  pe_image image;
  const image_status status = read_pe_headers(opened, image, detail);
  if (status != image_status::ok) return status;
  if (!passes_pe_gate(opened, image, detail)) return image_status::unreadable;
  std::uint64_t records_size = 0;
  for (const pe_section& section : image.sections) {
    out.spans.push_back({section.virtual_address,
                         std::uint64_t{section.virtual_address} + std::max(section.virtual_size, section.raw_size),
                         (section.characteristics & IMAGE_SCN_MEM_WRITE) != 0,
                         (section.characteristics & IMAGE_SCN_MEM_EXECUTE) != 0});
    if (section.name != ".relib") continue;
    records_size += section.raw_size;
    std::string notes;
    if (records_size > notes_read_limit) {
      detail = "its .relib section takes " + std::to_string(records_size) + " bytes, and relib reads at most " +
               std::to_string(notes_read_limit);
      return image_status::unreadable;
    }
    if (!read_pe_section(opened, section, notes)) {
      detail = "its .relib section cannot be read";
      return image_status::unreadable;
    }
    if (!collect_notes(notes, 4, out.meta)) {
      detail = "a note in its .relib section runs past the end of the section";
      return image_status::unreadable;
    }
  }
  if ((extras & image_needed) != 0) read_pe_imports(opened, image, out.needed);
  return image_status::ok;  // a DLL has no unique symbols to read
}

bool read_sections_named(const platform::readable_file& file, std::string_view name, std::vector<std::string>& out) {
  pe_image image;
  std::string ignored, data;
  if (read_pe_headers(file, image, ignored) == image_status::not_an_image || image.sections.empty()) return false;
  for (const pe_section& section : image.sections) {
    if (section.name == name && read_pe_section(file, section, data)) out.push_back(data);
  }
  return true;
}

#endif  // _WIN32

/* >>module records --------------------------------------------------------------------------
   Written by relib_module.hpp as ELF notes, one record each:
     module <TAB> relib <TAB> version=.. <TAB> compiler=.. <TAB> stdlib=.. <TAB> unloading=0|1
            <TAB> heaps=mimalloc|none
     export|import|main|before_unload <TAB> name <TAB> signature <TAB> layout
   The views point into image_contents::meta. */

struct module_records {
  bool has_module_record = false;
  std::string duplicate;  // a record given twice ("export 'add'"), which makes the records ambiguous
  std::string_view version, compiler, stdlib, unloading, heaps;
  struct entry {
    std::string_view kind, name, signature, layout;
  };
  std::vector<entry> entries;

  const entry* find(std::string_view kind, std::string_view name) const {
    for (const entry& e : entries) {
      if (e.kind == kind && e.name == name) return &e;
    }
    return nullptr;
  }
};

/* Splits at tabs into at most N fields; returns how many were found. */
template <std::size_t N>
std::size_t split_tabs(std::string_view record, std::string_view (&fields)[N]) {
  std::size_t count = 0;
  while (count < N) {
    const std::size_t tab = record.find('\t');
    fields[count++] = record.substr(0, tab);
    if (tab == std::string_view::npos) break;
    record.remove_prefix(tab + 1);
  }
  return count;
}

/* The key=value fields of a record ("module\trelib\tversion=0.2.0\t..."), from the third on. */
template <class Visit>
void for_each_setting(const std::string_view* fields, std::size_t count, Visit visit) {
  for (std::size_t i = 2; i < count; ++i) {
    const std::size_t equals = fields[i].find('=');
    if (equals != std::string_view::npos) visit(fields[i].substr(0, equals), fields[i].substr(equals + 1));
  }
}

module_records parse_records(std::string_view meta) {
  module_records records;
  while (!meta.empty()) {
    const std::size_t end = std::min(meta.find('\0'), meta.size());
    const std::string_view record = meta.substr(0, end);
    meta.remove_prefix(std::min(end + 1, meta.size()));
    std::string_view fields[8];
    const std::size_t count = split_tabs(record, fields);
    if (count >= 2 && fields[0] == "module" && fields[1] == "relib") {
      if (records.has_module_record) records.duplicate = "the module record";
      records.has_module_record = true;
      for_each_setting(fields, count, [&](std::string_view key, std::string_view value) {
        if (key == "version") records.version = value;
        if (key == "compiler") records.compiler = value;
        if (key == "stdlib") records.stdlib = value;
        if (key == "unloading") records.unloading = value;
        if (key == "heaps") records.heaps = value;
      });
    } else if (count == 4) {
      records.entries.push_back({fields[0], fields[1], fields[2], fields[3]});
    }
  }
  std::vector<const module_records::entry*> sorted;
  for (const module_records::entry& e : records.entries) sorted.push_back(&e);
  const auto key = [](const module_records::entry* e) { return std::make_pair(e->kind, e->name); };
  std::sort(sorted.begin(), sorted.end(), [&](auto* a, auto* b) { return key(a) < key(b); });
  for (std::size_t i = 1; i < sorted.size() && records.duplicate.empty(); ++i) {
    if (key(sorted[i - 1]) == key(sorted[i])) {
      records.duplicate = std::string(sorted[i]->kind) + " '" + std::string(sorted[i]->name) + "'";
    }
  }
  return records;
}

/* What a host was built with: the loader compares a module with its own, relib-inspect --host
   with another host's, recorded in that host's executable (section .relib_host). */
struct build_configuration {
  std::string_view version, compiler, stdlib, unloading;
};
constexpr build_configuration this_build{RELIB_VERSION_STRING, RELIB_DETAIL_COMPILER, RELIB_DETAIL_STDLIB,
                                         RELIB_DETAIL_STR(RELIB_DETAIL_UNLOADING)};
RELIB_DETAIL_HOST_META static constexpr auto relib_meta_host = make_note(fixed_string(
    "host\trelib\tversion=" RELIB_VERSION_STRING "\tcompiler=" RELIB_DETAIL_COMPILER "\tstdlib=" RELIB_DETAIL_STDLIB
    "\tunloading=" RELIB_DETAIL_STR(RELIB_DETAIL_UNLOADING)));

/* >>state blocks ----------------------------------------------------------------------------
   The host allocates the block, so it outlives every version of the module. While a reload
   migrates, the previous block waits in `previous` until the new version is kept (commit) or
   the reload is undone (rollback). */

struct state_declaration {
  std::string_view type;
  std::uint32_t version = 0;
  std::size_t size = 0, alignment = 0;
};

/* "state\tstate\t<type>\t<version>:<size>,<alignment>"; nullopt when absent or malformed. */
std::optional<state_declaration> parse_state(const module_records& records) {
  const module_records::entry* entry = records.find("state", "state");
  if (entry == nullptr) return std::nullopt;
  unsigned long long version = 0, size = 0, alignment = 0;
  const std::string numbers(entry->layout);
  if (std::sscanf(numbers.c_str(), "%llu:%llu,%llu", &version, &size, &alignment) != 3 || size == 0 ||
      alignment == 0 || (alignment & (alignment - 1)) != 0 || version > UINT32_MAX) {
    return std::nullopt;
  }
  return state_declaration{entry->signature, static_cast<std::uint32_t>(version), static_cast<std::size_t>(size),
                           static_cast<std::size_t>(alignment)};
}

struct kept_block {
  std::uint32_t version = 0;
  std::string type;  // empty: no block
  std::size_t size = 0, alignment = 0;
  void* data = nullptr;
};

void free_block(kept_block& block) noexcept {
  if (block.data != nullptr) ::operator delete(block.data, std::align_val_t(block.alignment));
  block = kept_block{};
}

struct kept_state {
  kept_block current, previous;

  kept_state() = default;
  kept_state(const kept_state&) = delete;
  kept_state& operator=(const kept_state&) = delete;
  ~kept_state() {
    free_block(current);
    free_block(previous);
  }
  void replace(kept_block fresh) {
    free_block(previous);
    previous = std::exchange(current, std::move(fresh));
  }
  void commit() noexcept { free_block(previous); }
  void rollback() noexcept {
    if (previous.data == nullptr) return;
    free_block(current);
    current = std::exchange(previous, kept_block{});
  }
};

/* >>module core ---- one loaded module, and the registry of all -------------------------------- */

/* Everything relib knows of one loaded module: what it read from the file, the symbols it bound,
   and what the module's runtime recorded. module<Exports> and live_core own one each. */
struct module_core {
  std::string path;  // the path the file was opened at
  std::string name;  // what errors and reports call it (load_request::name)
  // The file as checked, open from the check until the library is gone: it is what gets loaded.
  platform::readable_file file;
  std::string real_path;  // the file's, read by the trust policy (empty when it was not asked)
  platform::library handle = nullptr;
  char* replaced_loader_name = nullptr;  // see platform::name_library
  // Its RUNPATH or RPATH names $ORIGIN, which the loader computes from the name it opens: such a
  // module is opened by its path (see open_core).
  bool searches_its_origin = false;
  bool loaded = false;
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::vector<export_binding> exports;
  const void* main_symbol = nullptr;
  std::string main_signature;  // "int()" and layout, as recorded by the module
  std::string main_layout;
  const void* before_unload_symbol = nullptr;
  bool uses_heaps = false;  // its memory goes to relib's mimalloc heaps (not RELIB_CUSTOM_ALLOCATOR)
  // RELIB_MODULE_STATE: the declared type and where its block lives (empty type: no state).
  std::string state_type;
  std::uint32_t state_version = 0;
  std::size_t state_size = 0, state_alignment = 0;
  const void* state_attach_symbol = nullptr;
  const void* migrate_state_symbol = nullptr;
  std::shared_ptr<kept_state> state;
  bool owns_state = false;
  std::shared_ptr<struct module_runtime> runtime;  // threads and thread_locals; outlives the core
  host_link link{};                                  // what the module calls back into
  const host_link** link_slot = nullptr;             // the module's pointer to `link`
  std::uintptr_t base = 0;                           // where the loader put address 0 of the image
  std::vector<image_span> spans;                     // its segments, relative to `base`
  // Function names and lines for stack traces (>>stack traces), read at the first throw.
  mutable std::mutex symbols_lock;
  mutable std::shared_ptr<struct symbol_index> symbols;
  // load_options::crash_guard, and what the guard caught (>>crash guard): once `poisoned` is
  // set, `crash` (code crashed, with the signal, address and stack) says why.
  bool crash_guard = false;
  std::atomic<bool> poisoned{false};
  call_error crash{};
  std::function<void()> on_crash;  // a live module's: the next update() rolls back
};

void module_core_deleter::operator()(module_core* core) const noexcept { delete core; }

/* Loading sets up what later sections define: the host link and the module's heaps, and on a
   failure the unload and the calls' error texts. */
void keep_alive(module_core_pointer& core) noexcept;
std::string describe_call_failure(const call_error& error);
host_link make_host_link(module_core& core);
struct mimalloc_api;
const mimalloc_api& pinned_mimalloc();
const address_range& reserve_module_heap_arena();
void destroy_orphaned_heaps_of_this_thread();
void register_module_heap(void* context, void* heap);

/* What inspect_file() learned about a file, kept for its load. */
struct inspected_file {
  module_core_pointer core;
  image_contents contents;
  module_records records;  // views into contents
};

/* ---- Registry of loaded modules ----------------------------------------------------------
   One lock serializes loads and unloads, so "is this file loaded?" and the dlopen() that
   follows are a single step for every thread. */

struct registry_entry {
  std::uint64_t device;
  std::uint64_t inode;
  std::string path;
};

struct registry {
  std::mutex lock;
  std::vector<registry_entry> modules;

  const registry_entry* find(std::uint64_t device, std::uint64_t inode) const {
    for (const registry_entry& entry : modules) {
      if (entry.device == device && entry.inode == inode) return &entry;
    }
    return nullptr;
  }
  void remove(std::uint64_t device, std::uint64_t inode) {
    modules.erase(std::remove_if(modules.begin(), modules.end(),
                                 [&](const registry_entry& e) { return e.device == device && e.inode == inode; }),
                  modules.end());
  }
};

registry& global_registry() {
  static registry instance;
  return instance;
}

/* >>calls ---- errors from calls, main, and what a module object does as it goes -------------- */

struct call_failure {
  bool not_loaded = false;
  std::string type;
  std::string what;
  std::vector<std::uintptr_t> thrown_at;  // return addresses, named by take_call_error
};

call_failure& last_call_failure() { return platform::per_thread<call_failure>(); }

std::string demangle(const char* mangled) {
  if (mangled == nullptr || *mangled == '\0') return "an unknown type";
  int status = 0;
  char* readable = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string out = status == 0 && readable != nullptr ? readable : mangled;
  std::free(readable);
  return out;
}

void record_call_failure(const char* mangled_type, const char* what, void* const* thrown_at,
                         std::size_t thrown_at_count) {
  call_failure& failure = last_call_failure();
  failure.not_loaded = mangled_type == nullptr && what == nullptr;
  failure.type = failure.not_loaded ? "" : demangle(mangled_type);
  failure.what = what != nullptr ? what : "";
  failure.thrown_at.clear();
  for (std::size_t i = 0; i < thrown_at_count; ++i) failure.thrown_at.push_back(reinterpret_cast<std::uintptr_t>(thrown_at[i]));
}

std::vector<stack_frame> name_frames(const module_core* core, const std::uintptr_t* addresses, std::size_t count,
                                     bool first_is_instruction = false);
std::string stack_lines(const std::vector<stack_frame>& stack, const char* heading);


std::string module_label(const module_core* owner) {
  return owner != nullptr ? "module '" + shown(owner->name) + "'" : "a module object that was moved from";
}

call_error take_call_error(const call_site& site) {
  const module_core* owner = site.owner;
  const char* function = site.function;
  call_failure& failure = last_call_failure();
  call_error error;
  error.module = owner != nullptr ? owner->name : "";
  error.function = function;
  if (failure.not_loaded) {
    error.code = call_errc::not_loaded;
    error.message = "relib: cannot call '" + error.function + "' of " + module_label(owner) +
                    ": it is not loaded (unloaded or moved from); load the module again";
    return error;
  }
  error.code = call_errc::exception;
  error.exception_type = std::move(failure.type);
  error.what = std::move(failure.what);
  error.message = "relib: '" + error.function + "' of " + module_label(owner) + " threw " + shown(error.exception_type);
  if (!error.what.empty()) error.message += ": " + shown(error.what);
  error.stack = name_frames(owner, failure.thrown_at.data(), failure.thrown_at.size());
  error.message += stack_lines(error.stack, "thrown at");
  return error;
}

std::string describe_call_failure(const call_error& error) {
  if (error.exception_type.empty()) return error.message;
  return shown(error.exception_type) + (error.what.empty() ? "" : ": " + shown(error.what));
}

call_error make_main_error(const module_core* owner, call_errc code, std::string_view asked_signature) {
  call_error error;
  error.code = code;
  error.module = owner != nullptr ? owner->name : "";
  error.function = "main";
  const std::string prefix = "relib: cannot call main of " + module_label(owner) + ": ";
  switch (code) {
    case call_errc::no_main:
      error.message = prefix + "the module defines no main; add RELIB_MODULE_MAIN(type) { ... } to it";
      break;
    case call_errc::main_signature_mismatch:
      error.message = prefix + "it is " + shown(owner->main_signature) + " but the host asked for " +
                      std::string(asked_signature) + "; call call_main<R>() with the module's return type";
      break;
    default:
      error.message = prefix + "it is not loaded (unloaded or moved from); load the module again";
      break;
  }
  return error;
}

bool core_is_loaded(const module_core* core) noexcept { return core != nullptr && core->loaded; }

const std::string& core_path(const module_core* core) noexcept {
  static const std::string none;
  return core != nullptr ? core->path : none;
}

result<const void*, call_error> find_main(const module_core* core, std::string_view signature, std::string_view layout) {
  if (core == nullptr || !core->loaded) return make_main_error(core, call_errc::not_loaded, signature);
  if (core->main_symbol == nullptr) return make_main_error(core, call_errc::no_main, signature);
  if (core->main_signature != signature || core->main_layout != layout) {
    return make_main_error(core, call_errc::main_signature_mismatch, signature);
  }
  return core->main_symbol;
}

void report_destructor_unload_failure(const unload_error& error) noexcept {
  std::fprintf(stderr, "%s (while destroying the module object; call unload() to handle this error)\n",
               error.message.c_str());
}

/* A core whose library could not be unloaded is leaked on purpose: module threads may still call
   back through its link. */
void keep_alive(module_core_pointer& core) noexcept {
  if (core && core->loaded) (void)core.release();
}

void release_core(module_core_pointer& core) noexcept {
  if (!core || !core->loaded) return;
#if RELIB_DETAIL_UNLOADING
  auto unloaded = unload_core(*core);
  if (!unloaded) {
    report_destructor_unload_failure(unloaded.error());
    keep_alive(core);
  }
#else
  abandon_core(*core);
#endif
}

void import_threw(const char* name, const char* signature) noexcept {
  std::string type = "an unknown type", what;
  try {
    throw;
  } catch (const std::exception& error) {
    type = demangle(typeid(error).name());
    what = error.what();
  } catch (...) {
    type = demangle(abi::__cxa_current_exception_type() ? abi::__cxa_current_exception_type()->name() : nullptr);
  }
  std::fprintf(stderr,
               "relib: import '%s' (%s) threw %s%s%s. Imports must not throw: the exception would unwind "
               "through module code. Catch it inside the import. Aborting.\n",
               name, signature, type.c_str(), what.empty() ? "" : ": ", what.c_str());
  std::fflush(stderr);
  std::abort();
}

/* >>stack traces ---- names and source lines for the frames where a module threw --------------
   The module records return addresses as it throws (relib_module.hpp, >>runtime); a call_error
   names them. Names come from the module's own file, read through the descriptor relib keeps
   open while the module is loaded, so they are those of the version that ran even when a newer
   build has replaced the file at its path. .symtab (.dynsym when stripped) gives function names,
   .debug_line (with -g) files and lines; relib reads them itself, so that no symbolizer library
   is needed and none caches a file by path (docs/diagnostics.md weighs the alternatives). The
   index is built at the first throw and dropped at unload. Every read is bounds-checked: the
   debug sections are never seen by the dynamic loader or the ELF gate. */

struct symbol_index {
  struct function_symbol {
    std::uint64_t begin, end;
    std::uint32_t name;  // offset in `names`
  };
  struct line_row {
    std::uint64_t address;
    std::uint32_t file;  // index in `files`; unknown_file when the unit names none
    std::uint32_t line;  // 0: the end of a sequence (no line past it)
  };
  static constexpr std::uint32_t unknown_file = ~std::uint32_t{0};
  std::vector<function_symbol> functions;  // sorted by begin
  std::string names;
  std::vector<line_row> rows;  // sorted by address
  std::vector<std::string> files;
  std::vector<std::string> readable_names;  // functions' names demangled, as frames ask for them

  const function_symbol* function_at(std::uint64_t address) const {
    auto after = std::upper_bound(functions.begin(), functions.end(), address,
                                  [](std::uint64_t a, const function_symbol& f) { return a < f.begin; });
    if (after == functions.begin() || address >= std::prev(after)->end) return nullptr;
    return &*std::prev(after);
  }
  const line_row* row_at(std::uint64_t address) const {
    auto after = std::upper_bound(rows.begin(), rows.end(), address,
                                  [](std::uint64_t a, const line_row& row) { return a < row.address; });
    if (after == rows.begin() || std::prev(after)->line == 0) return nullptr;
    return &*std::prev(after);
  }
};

/* Whether `offset` (from the module's base) lies in one of its executable segments. */
inline bool in_code(const std::vector<image_span>& spans, std::uint64_t offset) {
  return std::any_of(spans.begin(), spans.end(), [&](const image_span& span) {
    return span.executable && offset >= span.begin && offset < span.end;
  });
}

/* At most this many line rows (16 bytes each) are kept for one module. */
constexpr std::size_t max_line_rows = std::size_t{1} << 21;

/* The DWARF constants a line table uses (DWARF 5, section 7). */
namespace dwarf {
enum form : std::uint64_t {
  form_data2 = 0x05, form_data4 = 0x06, form_data8 = 0x07, form_string = 0x08, form_block = 0x09,
  form_data1 = 0x0b, form_strp = 0x0e, form_udata = 0x0f, form_data16 = 0x1e, form_line_strp = 0x1f
};
enum content : std::uint64_t { path = 1, directory_index = 2 };
enum opcode : std::uint8_t {
  copy = 1, advance_pc = 2, advance_line = 3, set_file = 4, const_add_pc = 8, fixed_advance_pc = 9
};
enum extended_opcode : std::uint8_t { end_sequence = 1, set_address = 2 };
}  // namespace dwarf

/* Reads DWARF data; a read past the end clears ok() and returns zeros from then on. */
class dwarf_cursor {
 public:
  explicit dwarf_cursor(std::string_view data) : data_(data) {}
  bool ok() const { return ok_; }
  bool empty() const { return data_.empty(); }
  std::size_t size() const { return data_.size(); }

  template <class T>
  T fixed() {
    T value{};
    if (!ok_ || data_.size() < sizeof value) return fail(), value;
    std::memcpy(&value, data_.data(), sizeof value);
    data_.remove_prefix(sizeof value);
    return value;
  }
  std::uint64_t uleb() {
    std::uint64_t value = 0;
    for (unsigned shift = 0; ok_; shift += 7) {
      const auto byte = fixed<std::uint8_t>();
      if (shift < 64) value |= std::uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80) == 0) break;
    }
    return value;
  }
  std::int64_t sleb() {
    std::uint64_t value = 0;
    unsigned shift = 0;
    std::uint8_t byte = 0x80;
    while (ok_ && (byte & 0x80) != 0) {
      byte = fixed<std::uint8_t>();
      if (shift < 64) value |= std::uint64_t{byte & 0x7fu} << shift;
      shift += 7;
    }
    if (shift < 64 && (byte & 0x40) != 0) value |= ~std::uint64_t{0} << shift;
    return static_cast<std::int64_t>(value);
  }
  std::uint64_t offset(bool dwarf64) { return dwarf64 ? fixed<std::uint64_t>() : fixed<std::uint32_t>(); }
  std::string_view string() {
    const std::size_t end = data_.find('\0');
    if (!ok_ || end == std::string_view::npos) return fail(), std::string_view();
    const std::string_view text = data_.substr(0, end);
    data_.remove_prefix(end + 1);
    return text;
  }
  dwarf_cursor take(std::uint64_t size) {
    if (!ok_ || size > data_.size()) return fail(), dwarf_cursor(std::string_view());
    dwarf_cursor part(data_.substr(0, static_cast<std::size_t>(size)));
    data_.remove_prefix(static_cast<std::size_t>(size));
    return part;
  }
  void skip(std::uint64_t size) { (void)take(size); }

 private:
  void fail() {
    ok_ = false;
    data_ = {};
  }
  std::string_view data_;
  bool ok_ = true;
};

/* The sections a line program's strings may point into. */
struct dwarf_strings {
  std::string_view line_strings;  // .debug_line_str
  std::string_view strings;       // .debug_str
};

/* One attribute of a DWARF 5 directory or file entry: its text (paths) or number (indices).
   False for a form a line table header does not use. */
bool read_entry_form(dwarf_cursor& in, std::uint64_t form, bool dwarf64, const dwarf_strings& sections,
                     std::string_view& text, std::uint64_t& number) {
  switch (form) {
    case dwarf::form_string: text = in.string(); return true;
    case dwarf::form_line_strp: text = string_at(sections.line_strings, in.offset(dwarf64)); return true;
    case dwarf::form_strp: text = string_at(sections.strings, in.offset(dwarf64)); return true;
    case dwarf::form_data1: number = in.fixed<std::uint8_t>(); return true;
    case dwarf::form_data2: number = in.fixed<std::uint16_t>(); return true;
    case dwarf::form_data4: number = in.fixed<std::uint32_t>(); return true;
    case dwarf::form_data8: number = in.fixed<std::uint64_t>(); return true;
    case dwarf::form_data16: in.skip(16); return true;
    case dwarf::form_udata: number = in.uleb(); return true;
    case dwarf::form_block: in.skip(in.uleb()); return true;
    default: return false;
  }
}

inline std::string joined_path(std::string_view directory, std::string_view file) {
  if (directory.empty() || (!file.empty() && file.front() == '/')) return std::string(file);
  std::string path(directory);
  if (path.back() != '/') path += '/';
  return path.append(file);
}

/* A DWARF 5 directory or file table: each entry's path (files: joined with their directory). */
bool read_entry_table(dwarf_cursor& in, bool dwarf64, const dwarf_strings& sections,
                      const std::vector<std::string>& directories, std::vector<std::string>& out) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> formats(in.fixed<std::uint8_t>());  // content type, form
  for (auto& format : formats) format = {in.uleb(), in.uleb()};
  const std::uint64_t count = in.uleb();
  for (std::uint64_t i = 0; i < count && in.ok(); ++i) {
    std::string_view path;
    std::uint64_t directory = 0;
    for (const auto& [content, form] : formats) {
      std::string_view text;
      std::uint64_t number = 0;
      if (!read_entry_form(in, form, dwarf64, sections, text, number)) return false;
      if (content == dwarf::path) path = text;
      if (content == dwarf::directory_index) directory = number;
    }
    out.push_back(directory < directories.size() ? joined_path(directories[directory], path) : std::string(path));
  }
  return in.ok();
}

/* Adds one unit's line program to `index`. A sequence is kept when it starts in the module's
   code: the linker leaves the sequences of functions that --gc-sections dropped at address 0. */
bool read_line_unit(dwarf_cursor unit, bool dwarf64, const dwarf_strings& sections,
                    const std::vector<image_span>& spans, symbol_index& index) {
  const auto version = unit.fixed<std::uint16_t>();
  if (version < 2 || version > 5) return false;
  if (version >= 5) unit.skip(2);  // address size, segment selector size
  dwarf_cursor header = unit.take(unit.offset(dwarf64));
  dwarf_cursor& program = unit;
  const auto min_instruction_length = header.fixed<std::uint8_t>();
  if (version >= 4) header.skip(1);  // maximum operations per instruction (VLIW only)
  header.skip(1);                    // default_is_stmt
  const auto line_base = header.fixed<std::int8_t>();
  const auto line_range = header.fixed<std::uint8_t>();
  const auto opcode_base = header.fixed<std::uint8_t>();
  if (line_range == 0 || opcode_base == 0) return false;
  std::vector<std::uint8_t> argument_counts(opcode_base);
  for (std::size_t i = 1; i < opcode_base; ++i) argument_counts[i] = header.fixed<std::uint8_t>();

  // The unit's file names; a row's file number indexes them (from 1 before DWARF 5, from 0 in it).
  std::vector<std::string> directories, files;
  if (version >= 5) {
    if (!read_entry_table(header, dwarf64, sections, {}, directories) ||
        !read_entry_table(header, dwarf64, sections, directories, files)) {
      return false;
    }
  } else {
    directories.emplace_back();  // 0: the compilation directory, which the line table does not hold
    for (std::string_view directory = header.string(); header.ok() && !directory.empty(); directory = header.string()) {
      directories.emplace_back(directory);
    }
    files.emplace_back();  // file numbers start at 1
    for (std::string_view name = header.string(); header.ok() && !name.empty(); name = header.string()) {
      const std::uint64_t directory = header.uleb();
      header.uleb(), header.uleb();  // modification time, size
      files.push_back(directory < directories.size() ? joined_path(directories[directory], name) : std::string(name));
    }
  }
  if (!header.ok()) return false;
  const auto first_file = static_cast<std::uint32_t>(index.files.size());
  for (std::string& file : files) index.files.push_back(std::move(file));

  std::vector<symbol_index::line_row> sequence;
  std::uint64_t address = 0, file = 1;
  std::int64_t line = 1;
  auto add_row = [&](std::uint32_t row_line) {
    const std::uint32_t global = file < files.size() ? first_file + static_cast<std::uint32_t>(file) : symbol_index::unknown_file;
    sequence.push_back({address, global, row_line});
  };
  while (!program.empty() && program.ok() && index.rows.size() + sequence.size() < max_line_rows) {
    const auto opcode = program.fixed<std::uint8_t>();
    if (opcode >= opcode_base) {  // a special opcode: advance both, add a row
      const unsigned adjusted = opcode - opcode_base;
      address += std::uint64_t{adjusted / line_range} * min_instruction_length;
      line += line_base + static_cast<int>(adjusted % line_range);
      add_row(static_cast<std::uint32_t>(std::max<std::int64_t>(line, 1)));
      continue;
    }
    switch (opcode) {
      case 0: {  // extended
        dwarf_cursor extended = program.take(program.uleb());
        const auto sub_opcode = extended.fixed<std::uint8_t>();
        if (sub_opcode == dwarf::end_sequence) {
          add_row(0);
          const std::uint64_t start = sequence.front().address;
          if (start != 0 && in_code(spans, start)) index.rows.insert(index.rows.end(), sequence.begin(), sequence.end());
          sequence.clear();
          address = 0, file = 1, line = 1;
        } else if (sub_opcode == dwarf::set_address) {
          address = extended.size() == 4 ? extended.fixed<std::uint32_t>() : extended.fixed<std::uint64_t>();
        }
        break;
      }
      case dwarf::copy: add_row(static_cast<std::uint32_t>(std::max<std::int64_t>(line, 1))); break;
      case dwarf::advance_pc: address += program.uleb() * min_instruction_length; break;
      case dwarf::advance_line: line += program.sleb(); break;
      case dwarf::set_file: file = program.uleb(); break;
      case dwarf::const_add_pc: address += std::uint64_t{(255u - opcode_base) / line_range} * min_instruction_length; break;
      case dwarf::fixed_advance_pc: address += program.fixed<std::uint16_t>(); break;
      default:  // the others set flags or columns: skip their arguments
        for (unsigned i = 0; i < argument_counts[opcode]; ++i) program.uleb();
        break;
    }
  }
  return program.ok();
}

/* The line programs of .debug_line, unit by unit; a damaged unit ends the reading, the units
   before it stay. */
void read_line_table(std::string_view debug_line, const dwarf_strings& sections, const std::vector<image_span>& spans,
                     symbol_index& index) {
  dwarf_cursor in(debug_line);
  while (!in.empty() && in.ok()) {
    std::uint64_t length = in.fixed<std::uint32_t>();
    const bool dwarf64 = length == 0xffffffffu;
    if (dwarf64) length = in.fixed<std::uint64_t>();
    if (!in.ok() || !read_line_unit(in.take(length), dwarf64, sections, spans, index)) break;
  }
  // Sequences follow each other in the section in any order; at an address where one ends and
  // the next begins, the end goes first.
  std::stable_sort(index.rows.begin(), index.rows.end(), [](const symbol_index::line_row& a, const symbol_index::line_row& b) {
    return a.address != b.address ? a.address < b.address : (a.line == 0) > (b.line == 0);
  });
}

#if defined(_WIN32)
/* A DLL's function names come from its COFF symbol table (which GNU ld keeps unless the DLL is
   stripped), its files and lines from its DWARF line table. COFF gives no sizes: a function ends
   where the next one begins, or with its section. DWARF counts addresses from the preferred image
   base, the index from the module's base. */
symbol_index read_symbol_index(const platform::readable_file& file, const std::vector<image_span>& spans) {
  symbol_index index;
  pe_image image;
  std::string ignored;
  if (read_pe_headers(file, image, ignored) != image_status::ok || image.symbol_table == 0) return index;
  constexpr std::uint64_t entry_size = 18;  // IMAGE_SYMBOL, aux records included
  const std::uint64_t table_size = std::uint64_t{image.symbol_count} * entry_size;
  std::uint32_t strings_size = 0;
  if (table_size > section_read_limit ||
      !file.read_range(image.symbol_table + table_size, &strings_size, sizeof strings_size) ||
      strings_size < sizeof strings_size || strings_size > section_read_limit) {
    return index;
  }
  std::string symbols(static_cast<std::size_t>(table_size), '\0'), strings(strings_size, '\0');
  if (!file.read_range(image.symbol_table, symbols.data(), symbols.size()) ||
      !file.read_range(image.symbol_table + table_size, strings.data(), strings.size())) {
    return index;
  }
  // A name of up to 8 bytes is in place; a longer one is at an offset in the string table.
  const auto long_name = [&](std::string_view name) -> std::string_view {
    if (name.size() < 2 || name[0] != '/') return name;
    std::uint64_t offset = 0;
    for (const char digit : name.substr(1)) offset = offset * 10 + static_cast<std::uint64_t>(digit - '0');
    return string_at(strings, offset);
  };
  // Each function's end is first its section's end, then the next function's start.
  for (std::uint64_t at = 0; at + entry_size <= symbols.size(); at += entry_size) {
    const char* entry = symbols.data() + at;
    const std::uint32_t value = read_u32(entry + 8);
    const auto section = static_cast<std::int16_t>(read_u16(entry + 12));
    const std::uint16_t type = read_u16(entry + 14);
    const auto storage = static_cast<std::uint8_t>(entry[16]);
    at += entry_size * static_cast<std::uint8_t>(entry[17]);  // its aux records
    const bool function = (type >> 4) == IMAGE_SYM_DTYPE_FUNCTION &&
                          (storage == IMAGE_SYM_CLASS_EXTERNAL || storage == IMAGE_SYM_CLASS_STATIC);
    if (!function || section <= 0 || static_cast<std::size_t>(section) > image.sections.size()) continue;
    const pe_section& holder = image.sections[static_cast<std::size_t>(section) - 1];
    if ((holder.characteristics & IMAGE_SCN_MEM_EXECUTE) == 0 || value >= holder.virtual_size) continue;
    const std::string_view name = read_u32(entry) == 0 ? string_at(strings, read_u32(entry + 4))
                                                       : std::string_view(entry, strnlen(entry, 8));
    index.functions.push_back({std::uint64_t{holder.virtual_address} + value,
                               std::uint64_t{holder.virtual_address} + holder.virtual_size,
                               static_cast<std::uint32_t>(index.names.size())});
    index.names.append(name).push_back('\0');
  }
  std::vector<symbol_index::function_symbol>& functions = index.functions;
  std::sort(functions.begin(), functions.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });
  std::uint64_t next_begin = ~std::uint64_t{0};
  for (std::size_t i = functions.size(); i-- > 0;) {  // aliases share a start: the next one above it ends them
    if (i + 1 < functions.size() && functions[i + 1].begin > functions[i].begin) next_begin = functions[i + 1].begin;
    functions[i].end = std::min(functions[i].end, next_begin);
  }

  std::string line_data, line_strings, other_strings;
  for (const pe_section& section : image.sections) {
    const std::string_view name = long_name(section.name);
    if (name == ".debug_line") read_pe_section(file, section, line_data);
    if (name == ".debug_line_str") read_pe_section(file, section, line_strings);
    if (name == ".debug_str") read_pe_section(file, section, other_strings);
  }
  if (!line_data.empty()) {
    std::vector<image_span> at_image_base = spans;
    for (image_span& span : at_image_base) span.begin += image.image_base, span.end += image.image_base;
    read_line_table(line_data, dwarf_strings{line_strings, other_strings}, at_image_base, index);
    for (symbol_index::line_row& row : index.rows) row.address -= image.image_base;
  }
  return index;
}
#else
/* The function symbols of .symtab (or .dynsym when the file is stripped), and its line table. */
symbol_index read_symbol_index(const platform::readable_file& file, const std::vector<image_span>& spans) {
  symbol_index index;
  const elf_reader reader(file);
  std::vector<platform::elf_section> sections;
  std::string section_names;
  if (!read_section_headers(reader, sections, section_names)) return index;
  const platform::elf_section* symbols = nullptr;
  const platform::elf_section *debug_line = nullptr, *debug_line_str = nullptr, *debug_str = nullptr;
  for (const platform::elf_section& section : sections) {
    if (section.sh_type == SHT_SYMTAB || (section.sh_type == SHT_DYNSYM && symbols == nullptr)) symbols = &section;
    if ((section.sh_flags & SHF_COMPRESSED) != 0) continue;  // -gz: relib does not inflate sections
    const std::string_view name = string_at(section_names, section.sh_name);
    if (name == ".debug_line") debug_line = &section;
    if (name == ".debug_line_str") debug_line_str = &section;
    if (name == ".debug_str") debug_str = &section;
  }
  std::string data, strings;
  if (symbols != nullptr && reader.read_with_strings(sections, *symbols, data, strings)) {
    for_each_entry<platform::elf_symbol>(data, [&](const platform::elf_symbol& symbol) {
      const unsigned type = ELF64_ST_TYPE(symbol.st_info);
      if ((type != STT_FUNC && type != STT_GNU_IFUNC) || symbol.st_shndx == SHN_UNDEF || symbol.st_size == 0) return;
      index.functions.push_back({symbol.st_value, symbol.st_value + symbol.st_size,
                                 static_cast<std::uint32_t>(index.names.size())});
      index.names.append(string_at(strings, symbol.st_name)).push_back('\0');
    });
    std::sort(index.functions.begin(), index.functions.end(),
              [](const auto& a, const auto& b) { return a.begin < b.begin; });
  }
  std::string line_data, line_strings, other_strings;
  if (debug_line != nullptr && reader.read_section(*debug_line, line_data)) {
    if (debug_line_str != nullptr) reader.read_section(*debug_line_str, line_strings);
    if (debug_str != nullptr) reader.read_section(*debug_str, other_strings);
    read_line_table(line_data, dwarf_strings{line_strings, other_strings}, spans, index);
  }
  return index;
}
#endif

/* Names a frame in the module's code from its index, built at the first throw. Demangled names
   are kept: a module that throws in a loop pays for each name once. */
void name_module_frame(const module_core& core, stack_frame& frame) {
  std::lock_guard<std::mutex> hold(core.symbols_lock);
  if (!core.symbols) core.symbols = std::make_shared<symbol_index>(read_symbol_index(core.file, core.spans));
  symbol_index& index = *core.symbols;
  if (const auto* function = index.function_at(frame.offset)) {
    const std::size_t at = static_cast<std::size_t>(function - index.functions.data());
    if (index.readable_names.size() != index.functions.size()) index.readable_names.resize(index.functions.size());
    if (index.readable_names[at].empty()) index.readable_names[at] = demangle(index.names.c_str() + function->name);
    frame.function = index.readable_names[at];
  }
  if (const auto* row = index.row_at(frame.offset)) {
    if (row->file != symbol_index::unknown_file) frame.source_file = index.files[row->file];
    frame.line = row->line;
  }
}

/* The code of the executable and of the object holding relib: frames there are the host's. Set
   at the first load, before any module code runs. */
std::vector<std::pair<std::uintptr_t, std::uintptr_t>> host_code;

/* A sanitizer's interceptors, when clang has linked its runtime into the executable: they stand
   in for C library functions (strlen), so a crash under one is its caller's, as in the C library
   itself. Read from the executable's dynamic symbols at the first load, only under a sanitizer. */
std::vector<std::pair<std::uintptr_t, std::uintptr_t>> interceptor_code;

void find_interceptors() {
#if !defined(_WIN32)  // no sanitizer there
  platform::readable_file file;
  std::uintptr_t base = 0;
  if (platform::sanitizer_free == nullptr || !platform::open_main_program(file, base)) return;
  const elf_reader reader(file);
  std::vector<platform::elf_section> sections;
  std::string section_names, data, strings;
  if (!read_section_headers(reader, sections, section_names)) return;
  for (const platform::elf_section& section : sections) {
    if (section.sh_type != SHT_DYNSYM || !reader.read_with_strings(sections, section, data, strings)) continue;
    for_each_entry<platform::elf_symbol>(data, [&](const platform::elf_symbol& symbol) {
      if (symbol.st_shndx == SHN_UNDEF || symbol.st_size == 0) return;
      if (string_at(strings, symbol.st_name).substr(0, 14) != "__interceptor_") return;
      interceptor_code.emplace_back(base + symbol.st_value, base + symbol.st_value + symbol.st_size);
    });
  }
#endif
}

bool in_host_code(std::uintptr_t address) noexcept {
  const auto holds = [&](const auto& range) { return address >= range.first && address < range.second; };
  return std::any_of(host_code.begin(), host_code.end(), holds) &&
         std::none_of(interceptor_code.begin(), interceptor_code.end(), holds);
}

/* The module's frames by its index, others by the dynamic loader's names, until the first frame
   of the host's own code after one of the module's. The addresses are return addresses, but for
   the first when it is the instruction itself (where a crash happened). */
std::vector<stack_frame> name_frames(const module_core* core, const std::uintptr_t* addresses, std::size_t count,
                                     bool first_is_instruction) {
  std::vector<stack_frame> frames;
  bool in_module = false;
  for (std::size_t i = 0; i < count; ++i) {
    stack_frame frame;
    // A return address names the call before it, which may be the last instruction of its function.
    frame.address = i == 0 && first_is_instruction ? addresses[i] : addresses[i] - 1;
    const std::uint64_t offset = core != nullptr ? frame.address - core->base : 0;
    if (core != nullptr && core->loaded && in_code(core->spans, offset)) {
      in_module = true;
      frame.object = core->name;
      frame.offset = offset;
      name_module_frame(*core, frame);
    } else {
      if (in_module && in_host_code(frame.address)) break;  // below the module's entry point: the host's frames
      platform::address_owner owner;
      if (platform::owner_of_address(frame.address, owner)) {
        frame.object = std::move(owner.file);
        frame.offset = frame.address - owner.base;
        if (!owner.symbol.empty()) frame.function = demangle(owner.symbol.c_str());
      }
    }
    frames.push_back(std::move(frame));
  }
  return frames;
}

/* The frames as the messages list them, under `heading`; empty for no frame. */
std::string stack_lines(const std::vector<stack_frame>& stack, const char* heading) {
  std::string text = stack.empty() ? "" : std::string("\n  ") + heading;
  for (std::size_t i = 0; i < stack.size(); ++i) text += "\n    #" + std::to_string(i) + " " + to_string(stack[i]);
  return text;
}

}  // namespace detail

std::string to_string(const stack_frame& frame) {
  std::string text = frame.function.empty() ? "??" : detail::shown(frame.function);
  if (!frame.source_file.empty()) text += " at " + detail::shown(frame.source_file) + ":" + std::to_string(frame.line);
  if (frame.object.empty()) return text + " (" + detail::hex(frame.address) + ")";
  return text + " (" + detail::shown(detail::platform::base_name(frame.object)) + "+" + detail::hex(frame.offset) + ")";
}

namespace detail {

/* >>crash guard ---- a crash in module code: caught in a guarded call, or reported before the end
   The handler (platform::install_crash_handler, at the first load) looks for the code the
   crash belongs to: starting at the faulting instruction, the first frame that lies in a
   module's code or in the host's (the executable, and the object holding relib). Library code in
   between (the C library's memcpy called by the module) belongs to its caller. A module's crash
   during a guarded call of that module jumps back to the call (guarded_invoke), which returns
   call_errc::crashed and poisons the module; any other module crash is printed with its stack,
   and every crash then goes on to what the process had before relib (its handler, or the
   default action that ends it). abort() in module code reaches the host through host_link, so
   that no C library lock is held across the jump. docs/diagnostics.md says what is unsafe. */

/* The modules' code, for a handler that must not take locks: written under the registry lock. */
struct code_range {
  std::atomic<std::uintptr_t> begin{0}, end{0};
  std::atomic<const module_core*> owner{nullptr};
};
constexpr std::size_t max_code_ranges = 256;  // modules loaded at once, each one code segment
code_range module_code_ranges[max_code_ranges];

void register_module_code(const module_core& core) {
  for (const image_span& span : core.spans) {
    if (!span.executable) continue;
    for (code_range& range : module_code_ranges) {
      if (range.owner.load(std::memory_order_relaxed) != nullptr) continue;
      range.begin.store(core.base + span.begin, std::memory_order_relaxed);
      range.end.store(core.base + span.end, std::memory_order_relaxed);
      range.owner.store(&core, std::memory_order_release);
      break;
    }
  }
}

void forget_module_code(const module_core& core) {
  for (code_range& range : module_code_ranges) {
    if (range.owner.load(std::memory_order_relaxed) == &core) range.owner.store(nullptr, std::memory_order_release);
  }
}

const module_core* module_of_code(std::uintptr_t address) noexcept {
  for (const code_range& range : module_code_ranges) {
    const module_core* owner = range.owner.load(std::memory_order_acquire);
    if (owner != nullptr && address >= range.begin.load(std::memory_order_relaxed) &&
        address < range.end.load(std::memory_order_relaxed)) {
      return owner;
    }
  }
  return nullptr;
}

/* What the handler recorded, read after the jump. */
struct crash_record {
  int signal = 0;
  std::uintptr_t address = 0;
  bool first_exact = false;  // frames[0] is the faulting instruction itself; the rest are return addresses
  std::size_t count = 0;
  std::uintptr_t frames[48] = {};
};
thread_local crash_guard_point* innermost_guard = nullptr;
thread_local crash_record last_crash;

/* Records the stack from `first` (the faulting instruction, or the module's abort) outwards,
   ending at the first frame outside module code after a frame in it. */
struct crash_walk {
  bool from_signal;     // from `first`; otherwise (abort) from the first frame in a module
  std::uintptr_t first;
  bool started;
  bool in_module;
  crash_record* out;
};

_Unwind_Reason_Code record_crash_frame(_Unwind_Context* context, void* argument) {
  auto* walk = static_cast<crash_walk*>(argument);
  int before_instruction = 0;
  const std::uintptr_t address = _Unwind_GetIPInfo(context, &before_instruction);
  if (!walk->started) {  // from the faulting instruction; for abort(), from the first module frame
    if (walk->from_signal ? address != walk->first : module_of_code(address) == nullptr) return _URC_NO_REASON;
    walk->started = true;
  }
  if (walk->in_module && in_host_code(address)) return _URC_END_OF_STACK;  // the caller of the module
  walk->in_module = walk->in_module || module_of_code(address) != nullptr;
  crash_record& out = *walk->out;
  if (out.count == sizeof out.frames / sizeof out.frames[0]) return _URC_END_OF_STACK;
  out.frames[out.count++] = address;
  return _URC_NO_REASON;
}

/* From a signal, `first` is the faulting instruction and `return_hint` the top of the stack. */
void record_crash(int signal, std::uintptr_t address, bool from_signal, std::uintptr_t first, std::uintptr_t return_hint,
                  crash_record& out) {
  out.signal = signal;
  out.address = address;
  out.first_exact = from_signal;
  out.count = 0;
  crash_walk walk{from_signal, first, false, false, &out};
  _Unwind_Backtrace(&record_crash_frame, &walk);
  if (!from_signal) return;
  if (out.count == 0) out.frames[out.count++] = first;
  // No unwind information where it stopped (a call through a bad pointer): the return address on
  // top of the stack names the caller.
  if (out.count == 1 && module_of_code(first) == nullptr && !in_host_code(first) && module_of_code(return_hint) != nullptr) {
    out.frames[out.count++] = return_hint;
  }
}

/* The module whose code the crash belongs to; null when it is the host's or unknown. */
const module_core* culprit_of(const crash_record& record) {
  for (std::size_t i = 0; i < record.count; ++i) {
    if (const module_core* owner = module_of_code(record.frames[i])) return owner;
    if (in_host_code(record.frames[i])) return nullptr;
  }
  return nullptr;
}

std::vector<stack_frame> name_crash_frames(const module_core* core, const crash_record& record) {
  return name_frames(core, record.frames, record.count, record.first_exact);
}

/* "SIGSEGV (invalid memory access) at address 0x10"; abort() names no address. */
std::string describe_crash(int signal, std::uintptr_t address) {
  std::string text = platform::signal_name(signal);
  if (signal != platform::abort_signal) text += " at address " + hex(address);
  return text;
}

/* Without the guard: where the module crashed, before the process goes on to its end. */
void report_unguarded_crash(const module_core& core, const crash_record& record) {
  const std::string text = "relib: module '" + shown(core.name) + "' crashed: " + describe_crash(record.signal, record.address) +
                           " (load it with load_options::crash_guard to get an error instead)" +
                           stack_lines(name_crash_frames(&core, record), "crashed at") + "\n";
  std::fputs(text.c_str(), stderr);
  std::fflush(stderr);
}

/* Back to the guarded call of `culprit` on this thread, if there is one; else the report. */
void jump_back_or_report(const module_core& culprit, const crash_record& record) {
  crash_guard_point* point = innermost_guard;
  if (point != nullptr && point->owner == &culprit) std::longjmp(point->jump, 1);
  report_unguarded_crash(culprit, record);
}

void handle_crash_signal(const platform::crash_event& event) {
  crash_record& record = last_crash;
  record_crash(event.signal, event.address, true, event.pc, event.return_hint, record);
  if (const module_core* culprit = culprit_of(record)) jump_back_or_report(*culprit, record);
}

/* host_link::aborted: the module's abort(), std::terminate's included. */
void module_aborted(const void* module_code) {
  const module_core* culprit = module_of_code(reinterpret_cast<std::uintptr_t>(module_code));
  if (culprit == nullptr) return;
  crash_record& record = last_crash;
  record_crash(platform::abort_signal, 0, false, 0, 0, record);
  jump_back_or_report(*culprit, record);
}

/* At each load, under the registry lock. */
void install_crash_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    host_code = platform::code_of_object_holding(platform::main_program_code());
    for (const auto& range : platform::code_of_object_holding(reinterpret_cast<std::uintptr_t>(&install_crash_handler))) {
      host_code.push_back(range);
    }
    find_interceptors();
  });
  platform::install_crash_handler(&handle_crash_signal);
}


call_site site_of(const module_core* owner, const char* function) noexcept {
  return call_site{owner, function, owner != nullptr && owner->crash_guard};
}

bool enter_guard(crash_guard_point& point, const call_site& site) {
  if (site.owner->poisoned.load(std::memory_order_acquire)) return false;
  static thread_local platform::signal_stack stack;
  stack.ensure();
  point.owner = site.owner;
  point.outer = innermost_guard;
  innermost_guard = &point;
  return true;
}

void leave_guard(crash_guard_point& point) noexcept { innermost_guard = point.outer; }

call_error take_crash_error(crash_guard_point& point, const call_site& site) {
  innermost_guard = point.outer;
  const crash_record record = last_crash;
  if (record.signal != platform::abort_signal) platform::restore_signal_mask_after_crash();
  auto& core = const_cast<module_core&>(*site.owner);
  call_error error;
  error.code = call_errc::crashed;
  error.module = core.name;
  error.function = site.function;
  error.signal = record.signal;
  error.fault_address = record.address;
  error.stack = name_crash_frames(&core, record);
  error.message = "relib: '" + error.function + "' of module '" + shown(core.name) + "' crashed: " +
                  describe_crash(record.signal, record.address) + "; the module is poisoned: later calls fail with call_errc::poisoned, " +
                  (core.on_crash ? "and the next update() brings back the version before" : "unload it") +
                  stack_lines(error.stack, "crashed at");
  bool first = false;
  {
    std::lock_guard<std::mutex> hold(core.symbols_lock);
    if (!core.poisoned.load(std::memory_order_relaxed)) {
      core.crash = error;
      core.poisoned.store(true, std::memory_order_release);
      first = true;
    }
  }
  if (logging()) log_step("call", core.name, "'" + error.function + "' crashed: " + describe_crash(record.signal, record.address) + "; the module is poisoned");
  if (first && core.on_crash) core.on_crash();
  return error;
}

call_error poisoned_error(const call_site& site) {
  const module_core& core = *site.owner;
  call_error error;
  {
    std::lock_guard<std::mutex> hold(core.symbols_lock);
    error = core.crash;
  }
  const std::string crashed_function = error.function;
  error.code = call_errc::poisoned;
  error.function = site.function;
  error.message = "relib: cannot call '" + error.function + "' of module '" + shown(core.name) + "': '" +
                  crashed_function + "' crashed before (" + describe_crash(error.signal, error.fault_address) +
                  ") and left the module poisoned; " +
                  (core.on_crash ? "the next update() brings back the version before" : "unload it");
  return error;
}

/* >>load ---- inspect (read and check the file), open, bind, hand over the state -------------- */

/* ---- Inspect: the file and its records against the host's interface, before any module code ---- */

std::string describe_entry(std::string_view kind, std::string_view name, std::string_view signature) {
  return std::string(kind) + " '" + shown(name) + "' (" + shown(signature) + ")";
}

/* Compares the host's interface with the module's records; every problem is listed at once. */
struct interface_problems {
  load_errc first_code = load_errc::signature_mismatch;
  std::vector<std::string> problems;

  void fail(load_errc code, std::string problem) {
    if (problems.empty()) first_code = code;
    problems.push_back(std::move(problem));
  }

  void compare(std::string_view kind, const interface_entry& host, const module_records::entry& module) {
    if (host.signature != module.signature) {
      fail(load_errc::signature_mismatch, std::string(kind) + " '" + shown(module.name) + "' is " +
                                              shown(host.signature) + " in the host but " +
                                              shown(module.signature) + " in the module");
    } else if (host.layout != module.layout) {
      fail(load_errc::signature_mismatch,
           std::string(kind) + " '" + shown(module.name) + "' is " + shown(module.signature) +
               " on both sides, but the sizes of its types differ (host " + shown(host.layout) + ", module " +
               shown(module.layout) + ", as return:parameters): a type with this name is defined differently");
    }
  }
};

void compare_interfaces(const load_request& request, const module_records& records, interface_problems& check) {
  for (const export_binding& wanted : request.exports) {
    const module_records::entry* found = records.find("export", wanted.entry.name);
    if (found == nullptr) {
      check.fail(load_errc::missing_export,
                 "the host expects " + describe_entry("export", wanted.entry.name, wanted.entry.signature) +
                     " but the module does not export it; add it to the module's export list or remove it from the host's");
    } else {
      check.compare("export", wanted.entry, *found);
    }
  }
  for (const module_records::entry& needed : records.entries) {
    if (needed.kind != "import") continue;
    const auto provided = std::find_if(request.imports.begin(), request.imports.end(),
                                       [&](const import_binding& b) { return b.entry.name == needed.name; });
    if (provided == request.imports.end()) {
      check.fail(load_errc::missing_import,
                 "the module imports " + describe_entry("import", needed.name, needed.signature) +
                     " but the host does not provide it; add it to the imports type passed to load_module");
    } else {
      check.compare("import", provided->entry, needed);
    }
  }
}

result<void, load_error> check_records(const std::string& name, const module_records& records,
                                       const load_request& request, const build_configuration& host) {
  auto mismatch = [&](load_errc code, const char* what, std::string_view module_value, std::string_view host_value,
                      const char* fix) {
    return make_load_error(code, name,
                           std::string("it was built with ") + what + " '" + shown(module_value) +
                               "' but this host uses '" + shown(host_value) + "'; " + fix);
  };
  if (records.version != host.version) {
    return mismatch(load_errc::version_mismatch, "relib version", records.version, host.version,
                    "rebuild the module with the same relib headers as the host");
  }
  // The library first ("libc++" or "libstdc++", the record's first word): it is the deeper
  // difference, and the rest of the record (gxx-abi) also changes with the compiler.
  const auto library = [](std::string_view stdlib) { return stdlib.substr(0, stdlib.find(' ')); };
  if (library(records.stdlib) != library(host.stdlib)) {
    return mismatch(load_errc::stdlib_mismatch, "C++ standard library", records.stdlib, host.stdlib,
                    "build host and module against the same one: both with clang++ -stdlib=libc++, or both "
                    "with libstdc++ (g++'s, and clang++'s default on Linux)");
  }
  if (records.compiler != host.compiler) {
    return mismatch(load_errc::compiler_mismatch, "compiler", records.compiler, host.compiler,
                    "build host and module with the same compiler family and major version");
  }
  if (records.stdlib != host.stdlib) {
    return mismatch(load_errc::stdlib_mismatch, "C++ standard library ABI", records.stdlib, host.stdlib,
                    "build host and module with the same ABI setting of it (_GLIBCXX_USE_CXX11_ABI for "
                    "libstdc++, _LIBCPP_ABI_VERSION for libc++)");
  }
  if (records.unloading != host.unloading) {
    return make_load_error(
        load_errc::unloading_mismatch, name,
        std::string("the module was built ") + (records.unloading == "0" ? "with" : "without") +
            " RELIB_NO_UNLOADING and the host " + (host.unloading == "1" ? "without" : "with") +
            " it; define it the same way for both");
  }
  interface_problems check;
  compare_interfaces(request, records, check);
  if (check.problems.empty()) return {};
  std::string text = check.problems.size() == 1 ? "the interfaces differ: "
                                                 : std::to_string(check.problems.size()) + " interface problems: ";
  for (std::size_t i = 0; i < check.problems.size(); ++i) text += (i ? "; " : "") + check.problems[i];
  return make_load_error(check.first_code, name, text + ". Rebuild host and module from the same interface header.");
}

/* A host's records (relib-inspect --host): its build, and the entries of each interface type,
   each once (every file of the host that includes an interface header holds a copy). The views
   point into `text`. */
struct host_records {
  std::string text;
  build_configuration build;
  std::vector<std::pair<std::string_view, load_request>> interfaces;
};

bool read_host_records(const platform::readable_file& file, host_records& out) {
  std::vector<std::string> sections;
  if (!read_sections_named(file, RELIB_DETAIL_HOST_SECTION, sections)) return false;
  for (const std::string& data : sections) {
    if (!collect_notes(data, 4, out.text)) return false;
  }
  for (std::string_view rest = out.text; !rest.empty();) {
    const std::string_view record = rest.substr(0, rest.find('\0'));
    rest.remove_prefix(std::min(rest.size(), record.size() + 1));
    std::string_view fields[8];
    const std::size_t count = split_tabs(record.substr(0, record.find('\n')), fields);
    if (count >= 2 && fields[0] == "host" && fields[1] == "relib") {
      for_each_setting(fields, count, [&](std::string_view key, std::string_view value) {
        if (key == "version") out.build.version = value;
        if (key == "compiler") out.build.compiler = value;
        if (key == "stdlib") out.build.stdlib = value;
        if (key == "unloading") out.build.unloading = value;
      });
    }
    if (count != 2 || fields[0] != "host-interface") continue;
    const std::string_view interface_name = fields[1];
    if (std::any_of(out.interfaces.begin(), out.interfaces.end(), [&](const auto& known) { return known.first == interface_name; })) {
      continue;
    }
    load_request request;
    std::string_view lines = record.substr(std::min(record.size(), record.find('\n')));
    while (!lines.empty()) {
      lines.remove_prefix(1);  // the newline
      const std::string_view line = lines.substr(0, lines.find('\n'));
      lines.remove_prefix(line.size());
      std::string_view entry[4];
      if (split_tabs(line, entry) != 4) continue;
      const interface_entry described{entry[1], entry[2], entry[3]};
      if (entry[0] == "export") request.exports.push_back(export_binding{described, nullptr, nullptr, nullptr});
      if (entry[0] == "import") request.imports.push_back(import_binding{described, nullptr});
    }
    out.interfaces.emplace_back(interface_name, std::move(request));
  }
  return true;
}

std::string describe_state(std::string_view type, std::size_t size, std::uint32_t version) {
  return "'" + shown(type) + "' (" + std::to_string(size) + " bytes, version " + std::to_string(version) + ")";
}

/* Whether the module's state can take over the block a live module kept from earlier versions. */
result<void, load_error> check_state(const std::string& name, const module_records& records, const kept_state* kept,
                                     module_core& core) {
  if (records.find("state", "state") == nullptr) return {};
  const std::optional<state_declaration> declared = parse_state(records);
  if (!declared) {
    return make_load_error(load_errc::not_a_relib_module, name,
                           "its state record is malformed; build it with this version of relib_module.hpp");
  }
  core.state_type = declared->type;
  core.state_version = declared->version;
  core.state_size = declared->size;
  core.state_alignment = declared->alignment;
  if (kept == nullptr || kept->current.data == nullptr) return {};
  const kept_block& block = kept->current;
  const std::string module_state = describe_state(declared->type, declared->size, declared->version);
  const std::string kept_state_text = describe_state(block.type, block.size, block.version);
  if (declared->version == block.version) {
    if (declared->type == block.type && declared->size == block.size && declared->alignment == block.alignment) return {};
    return make_load_error(load_errc::state_mismatch, name,
                           "its state is " + module_state + " but the kept state is " + kept_state_text +
                               ": the state type changed and its version did not. Raise the version in "
                               "RELIB_MODULE_STATE and convert the old state in RELIB_MODULE_MIGRATE_STATE");
  }
  if (records.find("migrate_state", "migrate_state") == nullptr) {
    return make_load_error(load_errc::state_mismatch, name,
                           "its state is " + module_state + " but the kept state is " + kept_state_text +
                               ", and the module has no RELIB_MODULE_MIGRATE_STATE to convert it. Add one, or "
                               "keep version " + std::to_string(block.version));
  }
  return {};
}

/* ---- Trust: who could have written the file ----
   The rules sshd applies to authorized_keys. The file and each directory above its real path must
   be owned by this process's user or root, and writable by nobody else: not by others, unless it
   is a sticky directory (/tmp) and the file is the user's own (root's files count as the user's
   own only when the user is root: a sticky directory protects a file from everyone but its owner);
   not by its group, unless that group is its owner's user-private group, which a umask of 002
   makes writable on many systems. The file is judged through its open descriptor, so a rename
   onto its path changes nothing; the directories by their paths, as sshd does. The usual case
   costs a stat() per directory (the file's real path, read once, also names the library in
   open_core); the user and group databases are asked only for an entry that its group may
   write, and for the words of an error. */

/* The shell's words for a path: single-quoted, and shown (control characters escaped). */
std::string shell_quoted(const std::string& path) {
  std::string quoted = "'";
  for (const char c : path) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return shown(quoted + "'");
}

std::string describe_user(std::uint32_t id) {
  const platform::user_record user = platform::find_user(id);
  return "uid " + std::to_string(id) + (user.found ? " (" + shown(user.name) + ")" : "");
}

/* A user's name, or number when the databases do not know it (as chown takes it). */
std::string user_name(std::uint32_t id) {
  const platform::user_record user = platform::find_user(id);
  return user.found && !user.name.empty() ? shown(user.name) : std::to_string(id);
}

/* Empty when `entry`'s group is its owner's private group: the owner's primary group, named after
   the owner (a group that is the primary group of several users, such as "users", lists none of
   them as members: the name tells it from a private one), with no listed member but the owner.
   Else what is wrong, and the fix. */
std::string group_problem(const std::string& quoted, const platform::file_ownership& entry) {
  const platform::group_record group = platform::find_group(entry.group);
  const platform::user_record owner = platform::find_user(entry.owner);
  std::string why;
  std::string others;
  for (const std::string& member : group.members) {
    if (!owner.found || member != owner.name) others += (others.empty() ? "" : ", ") + shown(member);
  }
  if (!group.found) {
    why = "which the group database does not know";
  } else if (!owner.found) {
    why = "and its owner, uid " + std::to_string(entry.owner) + ", is not in the user database";
  } else if (!others.empty()) {
    why = "which has other members (" + others + ")";
  } else if (owner.primary_group != entry.group) {
    why = "which is not the primary group of its owner " + shown(owner.name);
  } else if (group.name != owner.name) {
    why = "which is not named after its owner " + shown(owner.name) + ": other users may have it as their primary group";
  } else {
    return "";
  }
  return quoted + " is writable by group " + (group.found ? "'" + shown(group.name) + "' (gid " : "(gid ") +
         std::to_string(entry.group) + "), " + why + "; run: chmod g-w " + quoted;
}

/* The module file, as the rules for each entry need it. */
struct judged_file {
  std::uint32_t user;            // this process's effective user
  const std::string& file_path;  // the module file's real path
  bool file_is_users_own;        // the module file is owned by `user`
};

/* What is wrong with one entry (the file, or a directory above it), with the command that fixes
   it; empty when nothing is. */
std::string trust_problem(const std::string& path, const platform::file_ownership& entry, const judged_file& file) {
  if (entry.owner != file.user && entry.owner != platform::superuser) {
    const std::string trusted = file.user == platform::superuser ? "root, this process's user"
                                                                  : "this process's user (" + user_name(file.user) + ") or root";
    return shell_quoted(path) + " is owned by " + describe_user(entry.owner) + ", not by " + trusted + "; run: chown " +
           user_name(file.user) + " " + shell_quoted(path);
  }
  // Others and the group may add entries to a sticky directory, but not rename or remove the file.
  const bool shields_the_file = entry.directory && entry.sticky && file.file_is_users_own;
  if (entry.others_writable && !shields_the_file) {
    if (entry.directory && entry.sticky) {
      return shell_quoted(path) + " is writable by everyone, and its sticky bit protects only the files of this "
             "process's user (" + user_name(file.user) + "), which the module file is not; run: chown " +
             user_name(file.user) + " " + shell_quoted(file.file_path) +
             ", or move the file to a directory that only its owner can write";
    }
    return shell_quoted(path) + " is writable by everyone; run: chmod o-w " + shell_quoted(path);
  }
  if (entry.group_writable && !shields_the_file) return group_problem(shell_quoted(path), entry);
  return "";
}

/* Why users other than this process's and root could have written the open file (whose
   current_path() is `real_path`) or a directory above it, ending with `opt_out`, the option that
   loads it anyway; empty when none could. */
std::string why_untrusted(const platform::readable_file& file, const std::string& real_path, const char* opt_out) {
  const std::uint32_t user = platform::effective_user();
  const judged_file module_file{user, real_path, file.ownership().owner == user};
  std::string problem = !platform::is_absolute_path(real_path)
                            ? "who may write the directories that hold it cannot be told: its path is unknown (" +
                                  std::string(platform::path_unknown_hint) + ")"
                            : trust_problem(real_path, file.ownership(), module_file);
  for (std::string directory = real_path; problem.empty();) {
    const std::string parent = platform::directory_of(directory);
    if (parent == directory) break;  // the root was the last
    directory = parent;
    platform::file_ownership above;
    std::string error;
    if (!platform::ownership_of(directory, above, error)) {
      problem = "cannot tell who may write its directory " + shell_quoted(directory) + ": " + error;
    } else {
      problem = trust_problem(directory, above, module_file);
    }
  }
  if (problem.empty()) return "";
  return problem + ". To load it anyway, set " + opt_out + " = false";
}

/* The ELF gate, and relib's records against the host's interface: all that the file's contents
   can tell before anything is loaded. */
result<void, load_error> check_contents(const load_request& request, const std::string& name,
                                        const platform::readable_file& file, image_contents& contents,
                                        module_records& records) {
  std::string detail;
  switch (read_image(file, contents, detail)) {
    case image_status::ok: break;
    case image_status::not_an_image:
      return make_load_error(load_errc::not_elf, name, std::string("not an ") + platform::image_format + " shared library: " + detail);
    case image_status::wrong_architecture:
      return make_load_error(load_errc::wrong_architecture, name, detail + "; build the module for this machine");
    case image_status::not_shared_library:
      return make_load_error(load_errc::not_shared_library, name,
                             detail + ", not a shared library; build the module with relib_add_module()");
    case image_status::unreadable:
      return make_load_error(load_errc::damaged_file, name, std::string("a damaged ") + platform::image_format + " file: " + detail);
  }
  records = parse_records(contents.meta);
  if (!records.has_module_record) {
    return make_load_error(load_errc::not_a_relib_module, name,
                           "a shared library, but not a relib module (it has no relib records); build it with "
                           "relib_add_module() and define RELIB_IMPLEMENTATION in one of its source files");
  }
  if (!records.duplicate.empty()) {
    return make_load_error(load_errc::not_a_relib_module, name,
                           "its relib records are malformed: " + shown(records.duplicate) +
                               " is recorded twice; rebuild the module");
  }
  return check_records(name, records, request, this_build);
}

/* Reads and checks the file; fills core's identity and everything read from the records. */
result<void, load_error> inspect_file(const load_request& request, module_core& core, image_contents& contents,
                                      module_records& records) {
  const std::string& path = request.path;
  const std::string& name = core.name;
  if (request.crash_guard && !platform::has_crash_guard) {
    return make_load_error(load_errc::not_on_this_platform, name,
                           std::string("load_options::crash_guard is not available on ") + platform::system_name +
                               " yet (docs/windows.md): load without it; a crash in module code then ends the process");
  }
  platform::readable_file& file = core.file;
  switch (file.open(path)) {
    case platform::readable_file::status::opened: break;
    case platform::readable_file::status::not_found:
      return make_load_error(load_errc::file_not_found, name,
                             "no such file; check the path (a relative path starts from the current directory)");
    case platform::readable_file::status::failed:
      return make_load_error(load_errc::file_not_found, name, "cannot open it: " + file.error());
  }
  if (file.type() != platform::readable_file::kind::regular) {
    return make_load_error(load_errc::not_a_file, name,
                           std::string(file.type() == platform::readable_file::kind::directory
                                           ? "it is a directory"
                                           : "it is not a regular file") +
                               "; pass the path of the built shared library (" + platform::library_suffix + ")");
  }
  if (request.require_trusted_file) {
    core.real_path = file.current_path();  // named after it in the loader's list too (open_core)
    const std::string untrusted = why_untrusted(file, core.real_path, "load_options::require_trusted_file");
    if (!untrusted.empty()) return make_load_error(load_errc::untrusted_file, name, untrusted);
  }
  core.device = file.device();
  core.inode = file.inode();
  if (const registry_entry* other = global_registry().find(core.device, core.inode)) {
    return make_load_error(load_errc::already_loaded, name,
                           "this file is already loaded as module '" + other->path + "'; " +
                               (RELIB_DETAIL_UNLOADING ? "unload that module first, or load a copy of the file"
                                                       : "modules stay loaded until the process exits "
                                                         "(RELIB_NO_UNLOADING), so load a copy of the file"));
  }

  auto checked = check_contents(request, name, file, contents, records);
  if (!checked) return checked;
  auto state_checked = check_state(name, records, request.state.get(), core);
  if (!state_checked) return state_checked;

  if (const module_records::entry* main = records.find("main", "main")) {
    core.main_signature = main->signature;
    core.main_layout = main->layout;
  }
  core.uses_heaps = records.heaps == "mimalloc";
  core.searches_its_origin = std::any_of(contents.search_paths.begin(), contents.search_paths.end(), [](const std::string& paths) {
    return paths.find("$ORIGIN") != std::string::npos || paths.find("${ORIGIN}") != std::string::npos;
  });
  return {};
}

/* inspect_file() into a fresh core with request.path; the registry lock is held by the caller. */
result<void, load_error> inspect_into(const load_request& request, inspected_file& file) {
  file.core = module_core_pointer(new module_core);
  file.core->path = request.path;
  file.core->name = request.name.empty() ? request.path : request.name;
  file.core->crash_guard = request.crash_guard;
  return inspect_file(request, *file.core, file.contents, file.records);
}

/* The log's line for a file that passed inspect_file(). */
std::size_t count_of(const module_records& records, std::string_view kind) {
  return static_cast<std::size_t>(std::count_if(records.entries.begin(), records.entries.end(),
                                                [&](const module_records::entry& e) { return e.kind == kind; }));
}

std::string describe_checks(const load_request& request, const inspected_file& file) {
  const module_records& records = file.records;
  const std::size_t exports = count_of(records, "export"), imports = count_of(records, "import");
  return std::string("checked before any of its code runs: ") +
         (request.require_trusted_file ? "trusted (owner and write permissions)" : "trust check off") +
         ", " + platform::image_format + " gate passed, relib " + shown(records.version) + " records (" + shown(records.compiler) + ", " +
         counted(exports, "export", "exports") + ", " + counted(imports, "import", "imports") +
         (file.core->main_signature.empty() ? "" : ", main") +
         (file.core->state_type.empty() ? "" : ", state " + shown(file.core->state_type)) + ") match the host";
}

/* ---- Open and bind ---- */

/* What binding found wrong; the module is open by then (its static constructors ran), so the
   caller unloads it like any other rather than leaving behind what those constructors made. */
struct binding_problems {
  std::string missing;     // symbols the records name but the library lacks
  std::string misplaced;   // symbols, or the pointers they hold, outside the module's segments
};

/* Whether [address, address + size) lies in one of the module's segments, writable or executable
   as asked. relib reads and writes through pointers the module's relocations made; a damaged
   relocation could aim one anywhere in the process. */
bool module_holds(const module_core& core, const void* address, std::size_t size, bool writable, bool executable) {
  const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(address);
  if (at < core.base) return false;
  const std::uint64_t offset = at - core.base;
  return std::any_of(core.spans.begin(), core.spans.end(), [&](const image_span& span) {
    return offset >= span.begin && offset < span.end && size <= span.end - offset && (!writable || span.writable) &&
           (!executable || span.executable);
  });
}

/* Opens the file and binds what its records list. */
result<module_core_pointer, load_error> open_core(load_request request, binding_problems& problems) {
#if RELIB_DETAIL_UNLOADING
  destroy_orphaned_heaps_of_this_thread();
#endif
  registry& modules = global_registry();
  std::lock_guard<std::mutex> guard(modules.lock);
  const bool logged = logging();
  auto step_start = logged ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
  inspected_file own;
  inspected_file& file = request.inspected ? *request.inspected : own;
  if (!request.inspected) {
    auto inspected = inspect_into(request, own);
    if (!inspected) return inspected.error();
    if (logged) log_step("load", own.core->name, describe_checks(request, own) + took(step_start));
  }
  module_core_pointer core = std::move(file.core);
  const module_records& records = file.records;

  // The registry knows relib's own modules. The same file opened by anyone else shows up as a
  // dlopen() that returns an object which was already in the process.
#if RELIB_DETAIL_UNLOADING
  if (core->uses_heaps) (void)reserve_module_heap_arena();  // before the module's static constructors allocate
#endif
  install_crash_handler();  // before dlopen: a crash in a static constructor is reported too
  const std::vector<std::uintptr_t> before = platform::loaded_library_bases();
  if (logged) step_start = std::chrono::steady_clock::now();
  // The checked file itself, through its descriptor; but a module that finds its dependencies
  // through $ORIGIN must be opened by its path, or they would be looked for in /proc/<pid>/fd.
  std::string refusal;
  core->handle = core->searches_its_origin ? platform::open_library_at(core->path, refusal)
                                           : platform::open_library(core->file, refusal);
  if (core->handle == nullptr) {
    return make_load_error(load_errc::dlopen_failed, core->name,
                           "the dynamic loader refused it: " + shown(refusal) +
                               " (check that every symbol it uses is defined and its dependencies are installed)");
  }
#if RELIB_DETAIL_UNLOADING
  // A module with its own allocator may still have brought mimalloc in: kept, like the heaps'
  // copy, so that it starts once per process (and ThreadSanitizer's note about it stays valid).
  if (!core->uses_heaps) {
    for (const char* name : platform::mimalloc_library_names) (void)platform::pin_library(name, /*only_if_loaded=*/true);
  }
#endif
  // The unwinder a module links stays for the process, as it does in a host with the shared C++
  // runtime: a host without it would otherwise map and unmap it at every load.
  static std::atomic<bool> unwinder_pinned{false};
  if (!unwinder_pinned.load(std::memory_order_relaxed) &&
      platform::pin_library(platform::unwinder_library_name, /*only_if_loaded=*/true) != nullptr) {
    unwinder_pinned.store(true, std::memory_order_relaxed);
  }
  const platform::loaded_object opened = platform::describe_library(core->handle);
  if (std::find(before.begin(), before.end(), opened.base) != before.end()) {
    core->file.keep_open_for_good();  // the loader added our descriptor's name to that library's names
    platform::close_library(core->handle);
    return make_load_error(load_errc::already_loaded, core->name,
                           "this file is already loaded in the process outside relib (by dlopen() or as a "
                           "dependency); close it first or load a copy of the file");
  }
  if (!core->searches_its_origin) {
    const std::string real_path = core->real_path.empty() ? core->file.current_path() : core->real_path;
    core->replaced_loader_name = platform::name_library(core->handle, real_path);
  }

  core->base = opened.base;
  core->spans = file.contents.spans;
  register_module_code(*core);
  if (logged) {
    log_step("load", core->name,
             "mapped at " + hex(core->base) + " by the dynamic loader, which ran its static constructors" +
                 (core->searches_its_origin ? " (opened by path: its RUNPATH names $ORIGIN)" : "") + took(step_start));
  }

  // Symbols are looked up only for what the records list: a failed dlsym() searches every
  // library the module depends on. Each is a pointer in the module's data: to a function of the
  // module, or to a slot relib writes.
  enum class holds { code, slot };
  // The symbol's address when it and the pointer it holds lie where they should; null otherwise.
  auto placed = [&](const std::string& symbol, const void* address, holds what) -> const void* {
    const void* target = module_holds(*core, address, sizeof(void*), false, false) ? *static_cast<const void* const*>(address)
                                                                                    : nullptr;
    if (target == nullptr || !module_holds(*core, target, sizeof(void*), what == holds::slot, what == holds::code)) {
      problems.misplaced += " " + shown(symbol);
      return nullptr;
    }
    return address;
  };
  auto find = [&](const char* prefix, std::string_view name, holds what) -> const void* {
    const std::string symbol = prefix + std::string(name);
    const void* address = platform::find_symbol(core->handle, symbol.c_str());
    if (address == nullptr) {
      problems.missing += " " + shown(symbol);
      return nullptr;
    }
    return placed(symbol, address, what);
  };
  if (const void* link = find("relib_", "host_link", holds::slot)) {
    core->link = make_host_link(*core);
    core->link_slot = *static_cast<const host_link** const*>(link);
    *core->link_slot = &core->link;
  }
#if RELIB_DETAIL_UNLOADING
  // A module that routes its memory (relib_static_init_heap exists) made a heap on this thread if
  // its static constructors allocated.
  if (const void* heap = platform::find_symbol(core->handle, "relib_static_init_heap")) {  // may be absent
    if (placed("relib_static_init_heap", heap, holds::slot) != nullptr) {
      (void)pinned_mimalloc();
      void* static_heap = **static_cast<void** const*>(heap);
      if (static_heap != nullptr && core->runtime) register_module_heap(core->runtime.get(), static_heap);
    }
  }
#endif
  for (const module_records::entry& needed : records.entries) {
    if (needed.kind != "import") continue;
    for (const import_binding& import : request.imports) {
      if (import.entry.name != needed.name) continue;
      if (const void* symbol = find("relib_import_", needed.name, holds::slot)) import.link(symbol);
    }
  }
  for (const export_binding& binding : request.exports) {
    if (const void* symbol = find("relib_export_", binding.entry.name, holds::code)) {
      binding.bind(binding.object, symbol, core.get());
    }
  }
  if (!core->main_signature.empty()) core->main_symbol = find("relib_", "main", holds::code);
  if (records.find("before_unload", "before_unload") != nullptr) {
    core->before_unload_symbol = find("relib_", "before_unload", holds::code);
  }
  if (!core->state_type.empty()) {
    core->state_attach_symbol = find("relib_", "state_attach", holds::code);
    if (records.find("migrate_state", "migrate_state") != nullptr) {
      core->migrate_state_symbol = find("relib_", "migrate_state", holds::code);
    }
    core->owns_state = request.state == nullptr;
    core->state = core->owns_state ? std::make_shared<kept_state>() : request.state;
  }
  if (logged && problems.missing.empty() && problems.misplaced.empty()) {
    log_step("load", core->name,
             "linked: " + counted(request.exports.size(), "export", "exports") + " bound, " +
                 counted(count_of(records, "import"), "import", "imports") + " pointed at the host" +
                 (core->main_symbol != nullptr ? ", main found" : ""));
  }
  core->exports = std::move(request.exports);
  core->loaded = true;
  modules.modules.push_back(registry_entry{core->device, core->inode, core->name});
  return core;
}

/* ---- Hand over the state; the whole load ---- */

/* Gives the module its state block: the kept one when the version is the same, else a fresh one,
   converted from the kept one by the module's migrate hook. */
result<void, load_error> hand_state_to_module(module_core& core) {
  kept_state& kept = *core.state;
  using attach_pointer = export_thunk<void(void*, int)>::pointer;
  const attach_pointer attach = *static_cast<const attach_pointer*>(core.state_attach_symbol);
  if (kept.current.data != nullptr && kept.current.version == core.state_version) {
    auto attached = invoke_export<void, void*, int>(attach, site_of(&core, "state"), kept.current.data,
                                                    state_existing);
    if (attached) {
      if (logging()) log_step("load", core.name, "state " + shown(core.state_type) + " version " + std::to_string(core.state_version) + " kept from the previous version");
      return {};
    }
    return make_load_error(load_errc::state_migration_failed, core.name,
                           "attaching the kept state failed: " + describe_call_failure(attached.error()));
  }
  kept_block fresh{core.state_version, core.state_type, core.state_size, core.state_alignment,
                    ::operator new(core.state_size, std::align_val_t(core.state_alignment))};
  std::memset(fresh.data, 0, fresh.size);
  auto made = invoke_export<void, void*, int>(attach, site_of(&core, "state"), fresh.data, state_fresh);
  std::string failure = made ? "" : "the state's constructor threw " + describe_call_failure(made.error());
  if (made && kept.current.data != nullptr) {
    const kept_block& old = kept.current;
    const old_state view{old.version, old.type.c_str(), old.data, old.size};
    using migrate_pointer = export_thunk<void(const old_state*)>::pointer;
    const migrate_pointer migrate = *static_cast<const migrate_pointer*>(core.migrate_state_symbol);
    auto migrated = invoke_export<void, const old_state*>(migrate, site_of(&core, "migrate_state"), &view);
    if (!migrated) {
      failure = "its RELIB_MODULE_MIGRATE_STATE threw " + describe_call_failure(migrated.error()) +
                " while converting the state from version " + std::to_string(old.version) + " to " +
                std::to_string(core.state_version);
    }
  }
  if (!failure.empty()) {
    free_block(fresh);
    return make_load_error(load_errc::state_migration_failed, core.name,
                           failure + "; the kept state is unchanged. Fix it and rebuild");
  }
  if (logging()) {
    log_step("load", core.name,
             "state " + shown(core.state_type) + " version " + std::to_string(core.state_version) +
                 (kept.current.data == nullptr ? " constructed"
                                               : " migrated from version " + std::to_string(kept.current.version)));
  }
  kept.replace(std::move(fresh));
  if (core.owns_state) kept.commit();
  return {};
}

result<module_core_pointer, load_error> load_core_steps(load_request request) {
  binding_problems problems;
  auto opened = open_core(std::move(request), problems);
  if (!opened) return opened;
  module_core& core = **opened;
  result<void, load_error> ready{};
  if (!problems.missing.empty()) {
    ready = make_load_error(load_errc::not_a_relib_module, core.name,
                            "its records list functions whose symbols are missing:" + problems.missing +
                                "; it was not built with relib_module.hpp's macros");
  } else if (!problems.misplaced.empty()) {
    ready = make_load_error(load_errc::damaged_file, core.name,
                            std::string("a damaged ") + platform::image_format + " file: after relocation, these symbols (or the pointers they hold) lie "
                            "outside the module's segments:" + problems.misplaced + "; rebuild it");
  } else if (!core.state_type.empty()) {
    ready = hand_state_to_module(core);  // module code runs here (constructor, migrate hook): outside the registry lock
  }
  if (ready) return opened;
  const load_error& error = ready.error();
#if RELIB_DETAIL_UNLOADING
  auto unloaded = unload_core(core, before_unload_step::skip);
  if (unloaded) return error;
  keep_alive(*opened);  // its static constructors started threads that still run
  return make_load_error(error.code, error.module,
                         error.reason + "; the module could not be unloaded afterwards and stays in the process: " +
                             unloaded.error().reason);
#else
  abandon_core(core);  // RTLD_NODELETE keeps it anyway; the registry names it for the next attempt
  return make_load_error(error.code, error.module, error.reason + "; it stays in the process (RELIB_NO_UNLOADING)");
#endif
}

result<module_core_pointer, load_error> load_core(load_request request) {
  const bool logged = logging();
  const auto started = logged ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
  const std::string name = !logged ? std::string() : request.name.empty() ? request.path : request.name;
  auto loaded = load_core_steps(std::move(request));
  if (logged) {
    if (loaded) log_step("load", name, "loaded" + took(started));
    if (!loaded) log_step("load", name, std::string("refused (") + to_string(loaded.error().code) + "): " + loaded.error().reason);
  }
  return loaded;
}

/* >>heaps ---- a mimalloc heap per (module, thread) ---------------------------------------------
   The host reaches mimalloc through the library the modules load (libmimalloc.so.2), pinned
   with RTLD_NODELETE once the first module is loaded, so the host's own allocator is left as it
   is (glibc, or mimalloc if the host chose it). */
struct mimalloc_api {
  void (*heap_destroy)(void* heap) = nullptr;
  void (*heap_delete)(void* heap) = nullptr;  // keeps the blocks, giving them to the thread's own heap
  void (*heap_collect)(void* heap, bool force) = nullptr;
  bool (*heap_visit_blocks)(const void* heap, bool all_blocks,
                            bool (*visitor)(const void*, const void* area, void*, std::size_t, void*),
                            void* argument) = nullptr;
};

/* Blocks that module code allocated may reach the host (a std::string returned by value) and be
   freed there. The host's free, realloc and malloc_usable_size (defined at the end of this file)
   hand such blocks to mimalloc once the first module has pinned it. */
struct module_block_functions {
  bool (*owns)(const void*);
  void (*free)(void*);
  void* (*realloc)(void*, std::size_t);
  std::size_t (*usable_size)(const void*);
  void* (*allocate)(std::size_t);
};
const module_block_functions* module_blocks = nullptr;  // acquire_load(): read by the host's free()

const mimalloc_api& pinned_mimalloc() {
  static const mimalloc_api api = [] {
    mimalloc_api found;
    for (const char* name : platform::mimalloc_library_names) {
      platform::library library = platform::pin_library(name, /*only_if_loaded=*/true);
      if (library == nullptr) continue;
      found.heap_destroy = reinterpret_cast<decltype(found.heap_destroy)>(platform::find_symbol(library, "mi_heap_destroy"));
      found.heap_delete = reinterpret_cast<decltype(found.heap_delete)>(platform::find_symbol(library, "mi_heap_delete"));
      found.heap_collect = reinterpret_cast<decltype(found.heap_collect)>(platform::find_symbol(library, "mi_heap_collect"));
      found.heap_visit_blocks =
          reinterpret_cast<decltype(found.heap_visit_blocks)>(platform::find_symbol(library, "mi_heap_visit_blocks"));
      static module_block_functions blocks{};
      blocks.owns = reinterpret_cast<decltype(blocks.owns)>(platform::find_symbol(library, "mi_is_in_heap_region"));
      blocks.free = reinterpret_cast<decltype(blocks.free)>(platform::find_symbol(library, "mi_free"));
      blocks.realloc = reinterpret_cast<decltype(blocks.realloc)>(platform::find_symbol(library, "mi_realloc"));
      blocks.usable_size = reinterpret_cast<decltype(blocks.usable_size)>(platform::find_symbol(library, "mi_usable_size"));
      blocks.allocate = reinterpret_cast<decltype(blocks.allocate)>(platform::find_symbol(library, "mi_malloc"));
      if (blocks.owns && blocks.free && blocks.realloc && blocks.usable_size && blocks.allocate) {
        release_store(module_blocks, static_cast<const module_block_functions*>(&blocks));
      }
      break;
    }
    return found;
  }();
  return api;
}

/* Module code frees blocks from anywhere (its own, libc's strdup, the host's), so its free() must
   tell mimalloc blocks from others; mimalloc answers that with a call that also reads the block's
   segment header. Instead, relib gives mimalloc one range of address space before the first
   module that uses heaps is opened, so that every segment (32 MiB) comes from it. The range stays
   mapped for the life of the process, so nothing but mimalloc ever owns an address inside it, and
   module code answers with two compares (host_link::module_heap_arena). mimalloc still
   decommits what it frees there (MADV_DONTNEED), and goes to the OS once the range is full. */
const address_range* reserved_module_heap_arena = nullptr;  // acquire_load(): read by the host's free()

const address_range& reserve_module_heap_arena() {
  static const address_range arena = [] {
    constexpr std::size_t segment_alignment = std::size_t{32} << 20;  // mimalloc 2.0's segments
    constexpr std::uintptr_t tracked_below = std::uintptr_t{20} << 40;  // its segment map's reach
    const std::size_t size = (std::size_t{RELIB_MODULE_ARENA_SIZE} / segment_alignment) * segment_alignment;
    // The library the modules will need anyway, loaded first so that no segment predates the arena.
    platform::library library = platform::pin_library(platform::mimalloc_library_names[0], /*only_if_loaded=*/false);
    using manage_function = bool (*)(void*, std::size_t, bool, bool, bool, int);
    const auto manage = library != nullptr ? reinterpret_cast<manage_function>(platform::find_symbol(library, "mi_manage_os_memory"))
                                           : nullptr;
    const std::uintptr_t begin =
        manage != nullptr ? platform::reserve_address_space(size, segment_alignment, tracked_below) : 0;
    if (begin == 0) return address_range{};
    if (!manage(reinterpret_cast<void*>(begin), size, /*is_committed=*/false, /*is_large=*/false, /*is_zero=*/true,
                /*numa_node=*/-1)) {
      platform::release_address_space(begin, size);
      return address_range{};
    }
    return address_range{begin, size};
  }();
  release_store(reserved_module_heap_arena, &arena);
  return arena;
}

struct memory_count {
  std::size_t blocks = 0;
  std::size_t bytes = 0;
  void add(const memory_count& other) {
    blocks += other.blocks;
    bytes += other.bytes;
  }
};

struct heap_area_view {  // the leading fields of mimalloc's mi_heap_area_t: one page
  void* blocks;
  std::size_t reserved, committed, used, block_size;
};

/* Live blocks of a heap, summed per area (used blocks and their size), without visiting each
   block. Must run on the heap's thread. */
memory_count count_heap(void* heap) {
  using area_view = heap_area_view;
  memory_count count;
  const mimalloc_api& api = pinned_mimalloc();
  if (api.heap_visit_blocks == nullptr) return count;
  api.heap_visit_blocks(
      heap, false,
      [](const void*, const void* area, void*, std::size_t, void* argument) {
        const auto* view = static_cast<const area_view*>(area);
        auto* total = static_cast<memory_count*>(argument);
        total->blocks += view->used;
        total->bytes += view->used * view->block_size;
        return true;
      },
      &count);
  return count;
}

/* ---- Blocks left by exited threads ----
   When a thread exits, mimalloc 2.0 gives its heaps to the thread's own heap and abandons them:
   their pages join a pool from which any heap of any thread, another module's included, may take
   them. So before that, the exiting thread lists the live blocks of its module heaps (module code
   or the host may still use them) under their module, and:
   - a free() of a listed block, from module or host code, takes it off the list (see
     exited_block_filter in relib_module.hpp for how the others pass without locking);
   - a heap destroyed at unload that took such pages frees its own blocks one by one and keeps
     the listed ones of other modules alive (mi_heap_delete);
   - the module's unload frees its listed blocks that are left. */
exited_block_filter exited_filter;  // read by every free() of a module block

struct listed_block {
  std::uint64_t module;  // module_runtime::serial
  std::size_t size;
};
struct exited_block_list {
  std::mutex lock;
  std::unordered_map<std::uintptr_t, listed_block> blocks;
};
exited_block_list& exited_blocks() {
  static auto* list = new exited_block_list;  // never destroyed: threads exit after static destructors
  return *list;
}

/* Holds the list lock. The holder's own free() calls come back here (the host's allocator may be
   mimalloc, in the arena), so a nested guard neither locks again nor empties the filter midway. */
thread_local bool holds_exited_list = false;
class exited_list_guard {
 public:
  exited_list_guard() : nested_(holds_exited_list) {
    if (nested_) return;
    list.lock.lock();
    holds_exited_list = true;
  }
  ~exited_list_guard() {
    if (nested_) return;
    if (list.blocks.empty()) {  // nothing listed: every free() may pass
      for (auto& word : exited_filter.words) word.store(0, std::memory_order_relaxed);
    }
    holds_exited_list = false;
    list.lock.unlock();
  }
  exited_list_guard(const exited_list_guard&) = delete;
  exited_list_guard& operator=(const exited_list_guard&) = delete;
  exited_block_list& list = exited_blocks();

 private:
  bool nested_;
};

/* Calls `visit` with the start of each 64 KiB span (the filter's unit) that [begin, begin + size)
   touches, until it returns false; returns false if it did. */
template <class Visit>
bool for_each_filter_span(std::uintptr_t begin, std::size_t size, Visit visit) {
  for (std::uintptr_t span = begin >> 16; span <= (begin + (size > 0 ? size - 1 : 0)) >> 16; ++span) {
    if (!visit(reinterpret_cast<const void*>(span << 16))) return false;
  }
  return true;
}

void mark_filter(std::uintptr_t begin, std::size_t size) {
  for_each_filter_span(begin, size, [](const void* span) {
    const std::size_t bit = exited_block_filter::bit_of(span);
    exited_filter.words[bit >> 6].fetch_or(std::uint64_t{1} << (bit & 63), std::memory_order_relaxed);
    return true;
  });
}

void free_listed_block(void* block) {
  exited_list_guard guard;
  guard.list.blocks.erase(reinterpret_cast<std::uintptr_t>(block));
  acquire_load(module_blocks)->free(block);  // under the lock: not listed again meanwhile
}

void forget_listed_block(void* block) {
  exited_list_guard guard;
  guard.list.blocks.erase(reinterpret_cast<std::uintptr_t>(block));
}

/* Every live block of a heap. Must run on the heap's thread: it first applies the frees other
   threads left for the heap (heap_collect), so that blocks they freed are not counted. mimalloc
   calls the visitor once per area with a null block, before that area's blocks. */
struct live_block {
  std::uintptr_t address;
  std::size_t size;
};
std::vector<live_block> live_blocks_of(void* heap) {
  std::vector<live_block> found;
  pinned_mimalloc().heap_collect(heap, false);
  pinned_mimalloc().heap_visit_blocks(
      heap, true,
      [](const void*, const void*, void* block, std::size_t size, void* argument) {
        if (block != nullptr) {
          static_cast<std::vector<live_block>*>(argument)->push_back({reinterpret_cast<std::uintptr_t>(block), size});
        }
        return true;
      },
      &found);
  return found;
}

/* Whether a heap holds pages where listed blocks may lie (the filter marks their 64 KiB spans). */
bool may_hold_listed_blocks(void* heap) {
  bool may = false;
  pinned_mimalloc().heap_visit_blocks(
      heap, false,
      [](const void*, const void* area, void*, std::size_t, void* argument) {
        const auto* view = static_cast<const heap_area_view*>(area);
        const bool none = for_each_filter_span(reinterpret_cast<std::uintptr_t>(view->blocks), view->reserved,
                                               [](const void* span) { return !exited_filter.might_hold(span); });
        if (!none) *static_cast<bool*>(argument) = true;
        return none;
      },
      &may);
  return may;
}

/* The calling thread is exiting and owns `heap` of a module still loaded: lists its live blocks
   under `module`. The filter is marked first, then platform::fence_other_threads() makes every
   free() that read it before either visible to the visit below or aware of the change (see
   free_watching_exits). Returns what it listed. */
memory_count list_blocks_of_exiting_thread(void* heap, std::uint64_t module) {
  memory_count listed;
  if (count_heap(heap).blocks == 0) return listed;  // counts frees not yet collected as used: never too low
  exited_list_guard guard;
  pinned_mimalloc().heap_visit_blocks(
      heap, false,
      [](const void*, const void* area, void*, std::size_t, void*) {
        const auto* view = static_cast<const heap_area_view*>(area);
        mark_filter(reinterpret_cast<std::uintptr_t>(view->blocks), view->reserved);
        return true;
      },
      nullptr);
  platform::fence_other_threads();
  for (const live_block& block : live_blocks_of(heap)) {
    if (guard.list.blocks.emplace(block.address, listed_block{module, block.size}).second) {  // not another module's
      ++listed.blocks;
      listed.bytes += block.size;
    }
  }
  return listed;
}

/* At unload: frees the module's listed blocks that nobody freed. */
memory_count free_listed_blocks_of(std::uint64_t module) {
  memory_count freed;
  exited_list_guard guard;
  auto& blocks = guard.list.blocks;
  for (auto it = blocks.begin(); it != blocks.end();) {
    if (it->second.module != module) {
      ++it;
      continue;
    }
    acquire_load(module_blocks)->free(reinterpret_cast<void*>(it->first));
    ++freed.blocks;
    freed.bytes += it->second.size;
    it = blocks.erase(it);
  }
  return freed;
}

/* Destroys a module heap on its thread, with every block in it, and returns what it held.
   Pages it took from exited threads may hold listed blocks of other modules, still in use: then
   its own blocks are freed one by one and the heap is deleted, which keeps those. */
memory_count destroy_heap(void* heap, std::uint64_t module) {
  const mimalloc_api& api = pinned_mimalloc();
  exited_list_guard guard;
  auto& blocks = guard.list.blocks;
  if (blocks.empty() || !may_hold_listed_blocks(heap)) {
    const memory_count count = count_heap(heap);
    api.heap_destroy(heap);
    return count;
  }
  memory_count freed;
  bool keeps_others = false;
  std::vector<live_block> own;
  for (const live_block& block : live_blocks_of(heap)) {
    const auto listed = blocks.find(block.address);
    if (listed != blocks.end() && listed->second.module != module) {
      keeps_others = true;
      continue;
    }
    if (listed != blocks.end()) blocks.erase(listed);
    own.push_back(block);
    ++freed.blocks;
    freed.bytes += block.size;
  }
  if (keeps_others) {
    for (const live_block& block : own) acquire_load(module_blocks)->free(reinterpret_cast<void*>(block.address));
    api.heap_delete(heap);
  } else {
    api.heap_destroy(heap);
  }
  return freed;
}

struct heap_entry {
  platform::thread_id owner;
  void* heap;
  std::atomic<std::uintptr_t>* slot = nullptr;  // the module's lookup slot for the owner, if any
};

/* Heaps of unloaded modules still owned by live threads: only the owner may destroy them, which
   it does at its exit or its next load or unload. */
struct orphaned_heap {
  heap_entry entry;
  memory_count count;
  std::uint64_t module;  // module_runtime::serial
};
std::mutex orphans_lock;
std::vector<orphaned_heap> orphans;
std::atomic<std::size_t> orphan_count{0};

void destroy_orphaned_heaps_of_this_thread() {
  if (orphan_count.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard<std::mutex> guard(orphans_lock);
  for (auto it = orphans.begin(); it != orphans.end();) {
    if (platform::same_thread(it->entry.owner, platform::this_thread()) != 0) {
      destroy_heap(it->entry.heap, it->module);
      it = orphans.erase(it);
    } else {
      ++it;
    }
  }
  orphan_count.store(orphans.size(), std::memory_order_relaxed);
}

/* >>host link ---- module threads, thread_local destructors, keys and mappings -----------------
   A module built with relib_add_module() sends pthread_create and __cxa_thread_atexit_impl here
   (see relib_module.hpp). Threads run module code between two pieces of host code: the start
   counts them, the end runs the thread's module thread_local destructors and uncounts them, so
   once the count is zero no thread can be inside the module. thread_local destructors are kept
   per thread: a module thread runs its own as it ends, a host thread when it exits (through a
   host thread_local), and the unloading thread its own during unload(). */

struct thread_local_entry {
  platform::thread_id thread;
  void (*destructor)(void*);
  void* object;
};

std::atomic<std::uint64_t> next_module_serial{1};

struct module_runtime : std::enable_shared_from_this<module_runtime> {
  const std::uint64_t serial = next_module_serial.fetch_add(1, std::memory_order_relaxed);  // names it in lists
  std::mutex lock;
  std::size_t live_threads = 0;    // module threads running, or threads running its destructors
  std::size_t threads_started = 0;
  std::vector<platform::thread_hold> thread_holds;  // module threads, until they have ended
  std::vector<thread_local_entry> thread_locals;
  std::vector<heap_entry> heaps;       // one per thread that allocated in module code, while alive
  struct key {
    platform::thread_key id;
    bool has_destructor;
  };
  std::vector<key> keys;                // created by module code and not deleted
  std::optional<platform::thread_key> heap_key;  // where the module finds each thread's heap
  struct mapping {
    std::uintptr_t begin, end;
  };
  std::vector<mapping> mappings;        // mapped by module code and not unmapped

  /* The calling thread is ending, and mimalloc will give its module heap away: the blocks in it
     are listed, to stay valid until unload frees them. */
  void list_heap_of_this_thread() {
    std::lock_guard<std::mutex> guard(lock);
    for (auto it = heaps.begin(); it != heaps.end(); ++it) {
      if (platform::same_thread(it->owner, platform::this_thread()) != 0) {
        if (it->slot != nullptr) it->slot->store(0, std::memory_order_release);  // the module is still loaded
        list_blocks_of_exiting_thread(it->heap, serial);
        heaps.erase(it);
        return;
      }
    }
  }

  /* Removes and returns this thread's entries, newest first (the order C++ destroys them). */
  std::vector<thread_local_entry> take_thread_locals_of(platform::thread_id thread) {
    std::vector<thread_local_entry> mine;
    for (auto it = thread_locals.rbegin(); it != thread_locals.rend(); ++it) {
      if (platform::same_thread(it->thread, thread)) mine.push_back(*it);
    }
    thread_locals.erase(std::remove_if(thread_locals.begin(), thread_locals.end(),
                                       [&](const thread_local_entry& e) { return platform::same_thread(e.thread, thread); }),
                        thread_locals.end());
    return mine;
  }

  /* The calling thread is ending and was counted in live_threads: runs its thread_local
     destructors, gives up its heap, then uncounts it. */
  void finish_thread() {
    run_thread_locals_of_this_thread();
    list_heap_of_this_thread();
    std::lock_guard<std::mutex> guard(lock);
    --live_threads;
  }

  /* Runs this thread's destructors; the caller counts itself in live_threads meanwhile. */
  std::size_t run_thread_locals_of_this_thread() {
    std::size_t run = 0;
    for (;;) {  // a destructor may touch another thread_local, registering a new entry
      std::vector<thread_local_entry> mine;
      {
        std::lock_guard<std::mutex> guard(lock);
        mine = take_thread_locals_of(platform::this_thread());
      }
      if (mine.empty()) return run;
      for (const thread_local_entry& entry : mine) entry.destructor(entry.object);
      run += mine.size();
    }
  }
};

/* A host thread that touched module thread_locals runs their destructors when it exits. */
struct thread_exit_hook {
  std::vector<std::weak_ptr<module_runtime>> modules;
  ~thread_exit_hook() {
    destroy_orphaned_heaps_of_this_thread();
    for (const auto& weak : modules) {
      std::shared_ptr<module_runtime> runtime = weak.lock();
      if (!runtime) continue;
      {
        std::lock_guard<std::mutex> guard(runtime->lock);
        ++runtime->live_threads;  // unload() must wait for the destructors to return
      }
      runtime->finish_thread();
    }
  }
};

void watch_this_thread(module_runtime* runtime);

thread_exit_hook& this_thread_exit_hook() { return platform::per_thread<thread_exit_hook>(); }

struct thread_launch {
  std::shared_ptr<module_runtime> runtime;
  void* (*start)(void*);
  void* argument;
};

void* module_thread_main(void* raw_launch) {
  std::unique_ptr<thread_launch> launch(static_cast<thread_launch*>(raw_launch));
  // Runs on return, pthread_exit() and cancellation alike: all of them unwind this frame.
  {
    platform::thread_hold hold = platform::hold_this_thread();
    module_runtime& runtime = *launch->runtime;
    std::lock_guard<std::mutex> guard(runtime.lock);
    runtime.thread_holds.erase(std::remove_if(runtime.thread_holds.begin(), runtime.thread_holds.end(),
                                              [](const platform::thread_hold& h) { return platform::has_ended(h); }),
                               runtime.thread_holds.end());
    runtime.thread_holds.push_back(std::move(hold));
  }
  struct finish {
    module_runtime& runtime;
    ~finish() { runtime.finish_thread(); }
  } at_end{*launch->runtime};
  return launch->start(launch->argument);
}

int create_module_thread(void* context, platform::thread_id* thread, const pthread_attr_t* attributes, void* (*start)(void*),
                         void* argument) {
  auto* runtime = static_cast<module_runtime*>(context);
  auto* launch = new (std::nothrow) thread_launch{runtime->shared_from_this(), start, argument};
  if (launch == nullptr) return EAGAIN;
  {
    std::lock_guard<std::mutex> guard(runtime->lock);
    ++runtime->live_threads;
    ++runtime->threads_started;
  }
  const int created = platform::start_thread(thread, attributes, &module_thread_main, launch);
  if (created != 0) {
    std::lock_guard<std::mutex> guard(runtime->lock);
    --runtime->live_threads;
    --runtime->threads_started;
    delete launch;
  }
  return created;
}

int register_module_thread_local(void* context, void (*destructor)(void*), void* object) {
  auto* runtime = static_cast<module_runtime*>(context);
  {
    std::lock_guard<std::mutex> guard(runtime->lock);
    runtime->thread_locals.push_back(thread_local_entry{platform::this_thread(), destructor, object});
  }
  watch_this_thread(runtime);
  return 0;
}

/* Every thread that touched module thread_locals or allocated in module code settles both at its
   exit; module threads have done so by then. */
void watch_this_thread(module_runtime* runtime) {
  auto& watched = this_thread_exit_hook().modules;
  // Forget unloaded modules, so a thread that loads many keeps a short list.
  watched.erase(std::remove_if(watched.begin(), watched.end(),
                               [](const std::weak_ptr<module_runtime>& w) { return w.expired(); }),
                watched.end());
  const bool known = std::any_of(watched.begin(), watched.end(), [&](const std::weak_ptr<module_runtime>& w) {
    return w.lock().get() == runtime;
  });
  if (!known) watched.push_back(runtime->weak_from_this());
}

void register_module_heap(void* context, void* heap) {
  auto* runtime = static_cast<module_runtime*>(context);
  destroy_orphaned_heaps_of_this_thread();  // a pool thread calling into each new module frees the old heaps here
  {
    std::lock_guard<std::mutex> guard(runtime->lock);
    runtime->heaps.push_back(heap_entry{platform::this_thread(), heap});
  }
  watch_this_thread(runtime);
}

void register_module_heap_slot(void* context, std::atomic<std::uintptr_t>* slot) {
  auto* runtime = static_cast<module_runtime*>(context);
  std::lock_guard<std::mutex> guard(runtime->lock);
  for (heap_entry& entry : runtime->heaps) {
    if (platform::same_thread(entry.owner, platform::this_thread()) != 0) entry.slot = slot;
  }
}

int create_module_key(void* context, platform::thread_key* key, void (*destructor)(void*)) {
  auto* runtime = static_cast<module_runtime*>(context);
  const int created = platform::create_thread_key(key, destructor);
  if (created == 0) {
    std::lock_guard<std::mutex> guard(runtime->lock);
    runtime->keys.push_back({*key, destructor != nullptr});
  }
  return created;
}

int delete_module_key(void* context, platform::thread_key key) {
  auto* runtime = static_cast<module_runtime*>(context);
  {
    std::lock_guard<std::mutex> guard(runtime->lock);
    runtime->keys.erase(std::remove_if(runtime->keys.begin(), runtime->keys.end(),
                                       [&](const module_runtime::key& k) { return platform::same_thread(k.id, key) != 0; }),
                        runtime->keys.end());
  }
  return platform::delete_thread_key(key);
}

void module_mapped(void* context, void* address, std::size_t length) {
  auto* runtime = static_cast<module_runtime*>(context);
  const auto begin = reinterpret_cast<std::uintptr_t>(address);
  std::lock_guard<std::mutex> guard(runtime->lock);
  runtime->mappings.push_back({begin, begin + length});
}

/* Removes [address, address + length) from the recorded mappings, splitting those it cuts. */
void module_unmapped(void* context, void* address, std::size_t length) {
  auto* runtime = static_cast<module_runtime*>(context);
  const auto begin = reinterpret_cast<std::uintptr_t>(address), end = begin + length;
  std::lock_guard<std::mutex> guard(runtime->lock);
  std::vector<module_runtime::mapping> kept;
  for (const module_runtime::mapping& m : runtime->mappings) {
    if (m.end <= begin || m.begin >= end) {
      kept.push_back(m);
      continue;
    }
    if (m.begin < begin) kept.push_back({m.begin, begin});
    if (m.end > end) kept.push_back({end, m.end});
  }
  runtime->mappings = std::move(kept);
}

/* Deletes the module's keys with (or without) a destructor; their ids go to `deleted_ids`. */
std::size_t delete_module_keys(module_runtime* runtime, bool with_destructor,
                               std::vector<platform::thread_key>* deleted_ids = nullptr) {
  if (runtime == nullptr) return 0;
  std::lock_guard<std::mutex> guard(runtime->lock);
  std::size_t deleted = 0;
  for (const module_runtime::key& key : runtime->keys) {
    if (key.has_destructor != with_destructor || platform::delete_thread_key(key.id) != 0) continue;
    ++deleted;
    if (deleted_ids != nullptr) deleted_ids->push_back(key.id);
  }
  runtime->keys.erase(std::remove_if(runtime->keys.begin(), runtime->keys.end(),
                                     [&](const module_runtime::key& k) { return k.has_destructor == with_destructor; }),
                      runtime->keys.end());
  return deleted;
}

host_link make_host_link(module_core& core) {
  host_link link{};
  link.report_failure = &record_call_failure;
  link.aborted = &module_aborted;
#if RELIB_DETAIL_UNLOADING
  core.runtime = std::make_shared<module_runtime>();
  link.create_thread = &create_module_thread;
  link.register_thread_local = &register_module_thread_local;
  link.register_heap = &register_module_heap;
  link.register_heap_slot = &register_module_heap_slot;
  link.create_key = &create_module_key;
  link.delete_key = &delete_module_key;
  link.mapped = &module_mapped;
  link.unmapped = &module_unmapped;
  if (platform::create_thread_key(&link.heap_key, nullptr) == 0) {
    core.runtime->heap_key = link.heap_key;
  } else {
    link.register_heap = nullptr;  // no key: the module keeps to one heap, adopted at load
  }
  link.context = core.runtime.get();
  if (core.uses_heaps) link.module_heap_arena = reserve_module_heap_arena();
  link.exited_blocks = &exited_filter;
  link.free_listed_block = &free_listed_block;
  link.forget_listed_block = &forget_listed_block;
#else
  (void)core;
#endif
  return link;
}

/* >>unload ----------------------------------------------------------------------------------
   dlclose() returning 0 does not mean the library left: glibc keeps it for STB_GNU_UNIQUE
   symbols, for other open handles, for libraries that depend on it, and while thread_local
   destructors it registered are pending. So unload verifies, and explains what it can. */

bool read_image_file(const std::string& path, unsigned extras, image_contents& contents) {
  platform::readable_file file;
  std::string ignored;
  return file.open(path) == platform::readable_file::status::opened &&
         file.type() == platform::readable_file::kind::regular &&
         read_image(file, contents, ignored, extras) == image_status::ok;
}

std::string explain_still_loaded(const module_core& core, const std::string& link_name) {
  image_contents module;
  std::string ignored;  // the file as loaded, still open
  if (read_image(core.file, module, ignored, image_unique_symbols) == image_status::ok && !module.unique_symbols.empty()) {
    std::string names;
    for (std::size_t i = 0; i < module.unique_symbols.size() && i < 5; ++i) {
      names += (i ? ", " : "") + shown(module.unique_symbols[i]);
    }
    if (module.unique_symbols.size() > 5) names += ", ...";
    return "it defines STB_GNU_UNIQUE symbols (" + names +
           "), which glibc never unloads; build it with relib_add_module() or the flag -fno-gnu-unique";
  }
  for (const std::string& name : platform::loaded_library_names()) {
    image_contents other;
    if (name == link_name || !read_image_file(name, image_needed, other)) continue;
    for (const std::string& needed : other.needed) {
      if (needed == core.path || needed == link_name || platform::base_name(needed) == platform::base_name(core.path)) {
        return "the library '" + shown(name) + "' depends on it (DT_NEEDED '" + shown(needed) +
               "') and is still loaded; unload that library first";
      }
    }
  }
  return "another handle to it is still open (a dlopen() of the same file outside relib), or a thread_local "
         "destructor it registered has not run yet (glibc keeps the library until that thread exits)";
}

/* After the library is gone (its static destructors ran in dlclose, freeing what they owned),
   destroys the unloading thread's module heap, freeing every block left in it at once, and
   counts what other threads' heaps still hold. */
void release_heaps(module_runtime& runtime, unload_report& report) {
  std::lock_guard<std::mutex> guard(runtime.lock);
  if (pinned_mimalloc().heap_destroy == nullptr) return;
  memory_count reclaimed = free_listed_blocks_of(runtime.serial), held;
  std::size_t holders = 0;
  for (const heap_entry& entry : runtime.heaps) {
    if (platform::same_thread(entry.owner, platform::this_thread()) != 0) {
      reclaimed.add(destroy_heap(entry.heap, runtime.serial));
    } else {
      const memory_count count = count_heap(entry.heap);
      held.add(count);
      ++holders;
      std::lock_guard<std::mutex> orphans_guard(orphans_lock);
      orphans.push_back(orphaned_heap{entry, count, runtime.serial});
      orphan_count.store(orphans.size(), std::memory_order_relaxed);
    }
  }
  runtime.heaps.clear();
  report.reclaimed_blocks = reclaimed.blocks;
  report.reclaimed_bytes = reclaimed.bytes;
  report.unreclaimed_blocks = held.blocks;
  report.unreclaimed_bytes = held.bytes;
  if (held.blocks > 0) {
    report.unreclaimed_reason = std::to_string(held.blocks) + " blocks in the module heaps of " +
                                std::to_string(holders) +
                                " other live thread(s), which only those threads may destroy: each does when it "
                                "exits, next allocates in module code, or calls load_module() or unload() (see "
                                "memory_awaiting_reclamation())";
  }
}

result<unload_report, unload_error> unload_core(module_core& core, before_unload_step step) {
  const auto started = std::chrono::steady_clock::now();
  destroy_orphaned_heaps_of_this_thread();
  registry& modules = global_registry();
  std::lock_guard<std::mutex> guard(modules.lock);
  auto fail = [&](unload_errc code, const std::string& text) {
    if (logging()) log_step("unload", core.name, std::string("refused (") + to_string(code) + "): " + text);
    return make_unload_error(code, core.name, text);
  };
  if (!core.loaded) return fail(unload_errc::not_loaded, "it is not loaded (already unloaded)");

  if (core.poisoned.load(std::memory_order_acquire) && step == before_unload_step::run) {
    step = before_unload_step::skip;  // its state may be half updated: no more of its code than dlclose runs
    if (logging()) log_step("unload", core.name, "before_unload skipped: the module crashed before");
  }
  if (step == before_unload_step::run && core.before_unload_symbol != nullptr) {
    auto thunk = *static_cast<const export_thunk<void()>::pointer*>(core.before_unload_symbol);
    auto called = invoke_export<void>(thunk, site_of(&core, "before_unload"));
    if (!called) {
      return fail(unload_errc::before_unload_failed,
                  "its before_unload threw " + describe_call_failure(called.error()) +
                      "; the module stays loaded and usable, fix before_unload and unload again");
    }
    if (logging()) log_step("unload", core.name, "before_unload returned" + took(started));
  }

  std::size_t threads_started = 0, destructors_run = 0;
  if (core.runtime) {
    module_runtime& runtime = *core.runtime;
    std::unique_lock<std::mutex> guard(runtime.lock);
    if (runtime.live_threads > 0) {
      return fail(unload_errc::threads_still_running,
                  std::to_string(runtime.live_threads) +
                      " thread(s) started by module code are still running, and unloading would unmap the code "
                      "they run. Stop and join them in before_unload (RELIB_MODULE_BEFORE_UNLOAD) and unload "
                      "again; the module stays loaded and usable");
    }
    std::vector<platform::thread_id> holders;
    for (const thread_local_entry& entry : runtime.thread_locals) {
      const bool mine = platform::same_thread(entry.thread, platform::this_thread()) != 0;
      const bool counted = std::any_of(holders.begin(), holders.end(),
                                       [&](platform::thread_id t) { return platform::same_thread(t, entry.thread) != 0; });
      if (!mine && !counted) holders.push_back(entry.thread);
    }
    if (!holders.empty()) {
      return fail(unload_errc::thread_locals_pending,
                  std::to_string(holders.size()) +
                      " other live thread(s) hold thread_local objects of the module, whose destructors must run "
                      "on those threads: let them exit (their destructors then run) or unload from that thread; "
                      "the module stays loaded and usable");
    }
    threads_started = runtime.threads_started;
    // From here the module's memory may be unmapped: a host thread exiting meanwhile must not
    // clear its lookup slot in it.
    for (heap_entry& entry : runtime.heaps) entry.slot = nullptr;
    guard.unlock();
    destructors_run = runtime.run_thread_locals_of_this_thread();
  }

  // Module threads have left module code; they also end before keys go (platform::thread_hold).
  if (core.runtime) {
    std::vector<platform::thread_hold> holds;
    {
      std::lock_guard<std::mutex> guard(core.runtime->lock);
      holds.swap(core.runtime->thread_holds);
    }
    for (platform::thread_hold& hold : holds) platform::wait_until_ended(hold);
  }

  // Keys with a destructor go before dlclose: left behind, they would call into unmapped code at
  // thread exit. Keys without one go after, like relib's heap key, since static destructors
  // running inside dlclose may still use them.
  std::vector<platform::thread_key> deleted_keys;
  std::size_t keys_deleted = delete_module_keys(core.runtime.get(), true, &deleted_keys);

  for (const export_binding& binding : core.exports) binding.unbind(binding.object, &core);
  const platform::loaded_object object = platform::describe_library(core.handle);
  forget_module_code(core);
  platform::close_library(core.handle);
  // Static destructors ran on this thread inside the close and may have used those keys again
  // (mingw's emulated TLS does, for any thread_local they touch).
  for (platform::thread_key key : deleted_keys) platform::drop_value_of_deleted_key(key);
  core.handle = nullptr;
  core.loaded = false;
  core.main_symbol = nullptr;
  core.before_unload_symbol = nullptr;
  modules.remove(core.device, core.inode);

  if (platform::still_mapped(object)) {
    // The library stays, and its code may still run (static destructors at exit): it must not
    // reach this core, which goes away with the module object. Its names stay valid for good.
    if (core.link_slot != nullptr) *core.link_slot = nullptr;
    const std::string why = explain_still_loaded(core, object.name);
    core.file.keep_open_for_good();
    core.replaced_loader_name = nullptr;
    return fail(unload_errc::still_loaded, std::string(platform::close_call) + " succeeded but the library is still mapped: " + why);
  }
  if (logging()) {
    log_step("unload", core.name,
             std::string(platform::close_call) + " returned and the library is gone from the process" + std::string(destructors_run > 0 ? ", after " + counted(destructors_run, "thread_local destructor", "thread_local destructors") + " ran on this thread" : "") + took(started));
  }
  platform::forget_library_name(std::exchange(core.replaced_loader_name, nullptr));
  core.file.close();
  core.symbols.reset();
  unload_report report;
  report.module = core.name;
  report.threads_started = threads_started;
  report.thread_local_destructors_run = destructors_run;
  report.pthread_keys_deleted = keys_deleted + delete_module_keys(core.runtime.get(), false);
  if (core.runtime && core.runtime->heap_key) platform::delete_thread_key(*core.runtime->heap_key);
  if (core.runtime) {
    release_heaps(*core.runtime, report);
    std::lock_guard<std::mutex> guard(core.runtime->lock);
    for (const module_runtime::mapping& m : core.runtime->mappings) {
      if (platform::release_address_space(m.begin, m.end - m.begin)) report.mapped_bytes_unmapped += m.end - m.begin;
    }
    core.runtime->mappings.clear();
  }
  report.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
  if (logging()) {
    std::string reclaimed = "reclaimed " + counted(report.reclaimed_blocks, "block", "blocks") + " (" +
                            std::to_string(report.reclaimed_bytes) + " bytes) the module left allocated";
    if (report.unreclaimed_blocks > 0) {
      reclaimed += "; " + counted(report.unreclaimed_blocks, "block", "blocks") + " wait for their threads: " + report.unreclaimed_reason;
    }
    if (report.pthread_keys_deleted > 0) reclaimed += ", deleted " + counted(report.pthread_keys_deleted, "pthread key", "pthread keys");
    if (report.mapped_bytes_unmapped > 0) reclaimed += ", unmapped " + std::to_string(report.mapped_bytes_unmapped) + " bytes";
    log_step("unload", core.name, reclaimed + took(started));
  }
  return report;
}

void abandon_core(module_core& core) noexcept {
  core.loaded = false;  // the handle is never closed: RTLD_NODELETE keeps the library for good
  core.file.keep_open_for_good();
  if (core.link_slot != nullptr) *core.link_slot = nullptr;  // the core goes with the module object
}

}  // namespace detail
}  // namespace relib

/* >>reports ---- the unload report as text, the arena, memory awaiting reclamation ----------- */
namespace relib {
std::string to_string(const unload_report& report) {
  std::string text = "relib: unloaded '" + report.module + "' in " +
                     std::to_string(report.duration.count() / 1000) + " us\n";
  text += "  memory reclaimed: " + std::to_string(report.reclaimed_blocks) + " blocks, " +
          std::to_string(report.reclaimed_bytes) + " bytes\n";
  if (report.unreclaimed_blocks > 0) {
    text += "  memory not reclaimed: " + std::to_string(report.unreclaimed_blocks) + " blocks, " +
            std::to_string(report.unreclaimed_bytes) + " bytes: " + report.unreclaimed_reason + "\n";
  }
  text += "  threads started by the module: " + std::to_string(report.threads_started) +
          ", thread_local destructors run: " + std::to_string(report.thread_local_destructors_run) + "\n";
  if (report.pthread_keys_deleted > 0 || report.mapped_bytes_unmapped > 0) {
    text += "  left behind and released: " + std::to_string(report.pthread_keys_deleted) + " pthread keys, " +
            std::to_string(report.mapped_bytes_unmapped) + " mapped bytes\n";
  }
  return text;
}

address_range module_heap_arena() noexcept {
#if RELIB_DETAIL_UNLOADING
  if (const address_range* arena = detail::acquire_load(detail::reserved_module_heap_arena)) return *arena;
#endif
  return {};
}

pending_memory memory_awaiting_reclamation() {
  pending_memory pending;
#if RELIB_DETAIL_UNLOADING
  std::lock_guard<std::mutex> guard(detail::orphans_lock);
  for (const detail::orphaned_heap& orphan : detail::orphans) {
    ++pending.heaps;
    pending.blocks += orphan.count.blocks;
    pending.bytes += orphan.count.bytes;
  }
#endif
  return pending;
}

}  // namespace relib

#if RELIB_DETAIL_UNLOADING
/* >>live reload -----------------------------------------------------------------------------
   A thread watches the module's directory with inotify and raises one flag when a new build is
   complete; the host's per-frame update() reads only that flag. The reload itself runs on the
   host's thread: copy the file into a private directory, check the copy, unload the running
   version, load the copy. Everything that can be checked without running module code is checked
   before the running version is unloaded; a failure after that brings the previous version back
   from its own copy. See docs/live-reload.md. */

namespace relib {
namespace detail {


class live_core {
 public:
  load_request prototype;  // exports bound to the live_module's one Exports object, and imports
  mutable platform::change_signal signal;  // waited on through a const live_module
  platform::shadow_directory shadows;
  std::unique_ptr<platform::file_watch> watch;  // after signal: stopped before it goes
  module_core_pointer current;
  std::string current_copy;  // the copy `current` was loaded from, kept to bring it back
  std::string current_source;  // the watched file's identity when `current` was copied from it
  // Under the crash guard, the version that ran before `current`, kept while `current` runs: a
  // crash brings it back.
  std::string previous_copy, previous_source;
  std::uint64_t previous_generation = 0;
  std::atomic<bool> crashed{false};  // `current` crashed: the next update() rolls back
  // What the exports name in their not_loaded error while no version is loaded: the cores of
  // failed versions are gone by then.
  module_core nothing_loaded;
  std::shared_ptr<kept_state> state = std::make_shared<kept_state>();
  std::uint64_t generation = 0;
  std::function<void()> before_reload;
  std::function<void(const reload_error*)> after_reload;

  const std::string& path() const { return prototype.path; }

  ~live_core() {
    watch.reset();
    if (current && current->loaded) {
      auto unloaded = unload_core(*current);
      if (!unloaded) report_destructor_unload_failure(unloaded.error());
      keep_alive(current);
    }
  }
};

void live_core_deleter::operator()(live_core* core) const noexcept { delete core; }

const std::atomic<bool>& live_changed_flag(const live_core* core) noexcept {
  static const std::atomic<bool> never{false};  // what a moved-from live_module reads
  return core != nullptr ? core->signal.changed : never;
}

/* What runs after a failed attempt that left the running version alone. */
std::string running_version_stays(const live_core& live) {
  if (live.current && live.current->loaded) return "version " + std::to_string(live.generation) + " keeps running";
  return "no version is loaded";
}

/* A reload error, formatted once from its fields: what failed (usually the inner error's reason)
   and which version serves calls now. The caller sets the inner error. */
reload_error make_reload_error(const live_core& live, reload_errc code, const std::string& what_failed,
                               const std::string& what_runs) {
  reload_error error{code, live.path(), "", "", std::nullopt, std::nullopt, std::nullopt, 0};
  error.running_version = live.current && live.current->loaded ? live.generation : 0;
  error.reason = std::string(explain(code)) + ": " + what_failed + (what_runs.empty() ? "" : "; " + what_runs);
  error.message = error_message(live.generation == 0 ? "load" : "reload", live.path(), error.reason);
  if (logging()) log_step("reload", live.path(), std::string("failed (") + to_string(code) + "): " + error.reason);
  return error;
}

/* Checks what can be checked without running module code: the whole of load_module's file
   checks, the state rules, and that main (called at every load) returns void. */
result<std::shared_ptr<inspected_file>, load_error> check_copy(const load_request& request) {
  auto file = std::make_shared<inspected_file>();
  {
    std::lock_guard<std::mutex> guard(global_registry().lock);
    auto inspected = inspect_into(request, *file);
    if (!inspected) return inspected.error();
  }
  const module_core& core = *file->core;
  if (!core.main_signature.empty() && core.main_signature != type_name<void()>::view) {
    return make_load_error(load_errc::signature_mismatch, core.name,
                           "its main is " + shown(core.main_signature) +
                               ", but a live module calls main at every load and needs RELIB_MODULE_MAIN(void); "
                               "move the rest into an export");
  }
  return file;
}

/* The live module's exports, imports and state, for one of its copies; errors name the watched
   file, not the copy. */
load_request request_for(const live_core& live, const std::string& copy) {
  load_request request = live.prototype;
  request.path = copy;
  request.name = live.path();
  request.state = live.state;
  request.require_trusted_file = false;  // relib's own copy, in its private directory, of a file checked before
  return request;
}

/* One attempt to start a version from a copy. */
struct started_version {
  module_core_pointer core;  // null when nothing of it stays loaded
  std::optional<load_error> load;     // it failed to load
  std::optional<call_error> call;     // its main threw
  std::string stuck;  // main threw and it could not be unloaded: why (it stays, in `core`)
};

/* Loads a copy, attaches the state and calls main; on failure nothing of it stays loaded and the
   state is as it was. */
started_version start_version(live_core& live, const std::string& copy,
                              std::shared_ptr<inspected_file> inspected = nullptr) {
  load_request request = request_for(live, copy);
  request.inspected = std::move(inspected);
  auto loaded = load_core(std::move(request));
  if (!loaded) return {nullptr, loaded.error(), std::nullopt, ""};
  module_core& core = **loaded;
  core.on_crash = [&live] {
    live.crashed.store(true, std::memory_order_release);
    live.signal.raise("the running version crashed under the crash guard");
  };
  if (core.main_symbol != nullptr) {
    auto thunk = *static_cast<const export_thunk<void()>::pointer*>(core.main_symbol);
    const auto started = logging() ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    auto called = invoke_export<void>(thunk, site_of(&core, "main"));
    if (logging()) {
      log_step("load", core.name, (called ? "main returned" : "main threw " + describe_call_failure(called.error())) + took(started));
    }
    if (!called) {
      auto unloaded = unload_core(core);
      if (unloaded) {
        live.state->rollback();
        return {nullptr, std::nullopt, called.error(), ""};
      }
      live.state->commit();  // main started threads before it threw: this version cannot go
      return {std::move(*loaded), std::nullopt, called.error(), unloaded.error().reason};
    }
  }
  live.state->commit();
  return {std::move(*loaded), std::nullopt, std::nullopt, ""};
}

/* Every reload attempt that got past the checks ends here: the exports point at what runs, and
   the host's after_reload callback learns the outcome. */
result<bool, reload_error> finish_reload(live_core& live, std::optional<reload_error> error) {
  if (!live.current) {
    for (const export_binding& binding : live.prototype.exports) binding.unbind(binding.object, &live.nothing_loaded);
  }
  if (live.after_reload) live.after_reload(error ? &*error : nullptr);
  if (error) return std::move(*error);
  return true;
}

/* A new build in the private directory, checked without running any of its code. */
struct checked_copy {
  std::string path;  // empty: the file is still being written, look again later
  std::shared_ptr<inspected_file> inspected;
  std::string source;  // the watched file's identity as it was copied
};

/* A build refused before the running version was touched: it keeps running. */
reload_error refused_build(live_core& live, load_error refused) {
  reload_error error = make_reload_error(live, reload_errc::load_failed, refused.reason, running_version_stays(live));
  error.load = std::move(refused);
  return error;
}

/* Step 1: copy the watched file (once the trust policy accepts it) and check the copy. The
   running version is untouched. */
std::optional<reload_error> copy_and_check(live_core& live, checked_copy& next) {
  platform::readable_file source;
  if (source.open(live.path()) != platform::readable_file::status::opened) {
    if (source.held_by_writer()) {  // a build still writing it: the watcher looks again
      if (live.watch) live.watch->retry_later();
      return std::nullopt;
    }
    return make_reload_error(live, reload_errc::copy_failed, "cannot open it: " + source.error(), running_version_stays(live));
  }
  if (source.type() != platform::readable_file::kind::regular) {
    return make_reload_error(live, reload_errc::copy_failed, "it is not a regular file", running_version_stays(live));
  }
  if (live.prototype.require_trusted_file) {
    const std::string untrusted = why_untrusted(source, source.current_path(), "live_options::require_trusted_file");
    if (!untrusted.empty()) return refused_build(live, make_load_error(load_errc::untrusted_file, live.path(), untrusted));
  }
  // The header and records before the copy: a file that is not a module costs no copy.
  image_contents contents;
  module_records records;
  auto contents_checked = check_contents(live.prototype, live.path(), source, contents, records);
  if (!contents_checked) {
    // Half a build, or one that was rewritten while it was read: the watcher looks again.
    if (platform::shadow_directory::being_written(source) || source.changed_since_open()) {
      if (live.watch) live.watch->retry_later();
      return std::nullopt;
    }
    return refused_build(live, contents_checked.error());
  }
  std::string why;
  next.source = source.identity();
  switch (live.shadows.copy(source, next.path, why)) {
    case platform::shadow_directory::copy_status::busy:  // still being written: the watcher looks again
      next.path.clear();
      if (live.watch) live.watch->retry_later();
      return std::nullopt;
    case platform::shadow_directory::copy_status::failed:
      return make_reload_error(live, reload_errc::copy_failed, why, running_version_stays(live));
    case platform::shadow_directory::copy_status::copied: break;
  }
  auto checked = check_copy(request_for(live, next.path));
  if (!checked) {
    live.shadows.remove(next.path);
    return refused_build(live, checked.error());
  }
  if (logging()) log_step("reload", live.path(), "copied to '" + shown(next.path) + "', " + describe_checks(live.prototype, **checked));
  next.inspected = std::move(*checked);
  return std::nullopt;
}

/* Step 3, when the new version failed after the old one was unloaded: the previous version comes
   back from its own copy (its static data starts over, the state is kept). */
result<bool, reload_error> roll_back(live_core& live, started_version& failed, const std::string& failed_copy,
                                     const std::string& previous_copy, std::uint64_t previous_generation) {
  live.shadows.remove(failed_copy);
  live.current.reset();
  reload_errc code = failed.call ? reload_errc::main_failed : reload_errc::load_failed;
  const std::string what_failed = failed.call ? describe_call_failure(*failed.call) : failed.load->reason;
  const std::string previous = "version " + std::to_string(previous_generation);
  std::string what_runs = "no version is loaded";
  if (!previous_copy.empty()) {
    started_version again = start_version(live, previous_copy);
    if (again.core) {
      live.current = std::move(again.core);
      what_runs = previous + " was loaded again (its static data starts over, the state is kept)";
    } else {
      live.current_copy.clear();
      live.shadows.remove(previous_copy);
      code = reload_errc::rollback_failed;
      what_runs = "bringing " + previous + " back failed too: " +
                  (again.call ? "its main threw " + describe_call_failure(*again.call) : again.load->reason) +
                  ". No version is loaded until the next good build";
    }
  }
  reload_error error = make_reload_error(live, code, what_failed, what_runs);
  error.load = failed.load;
  error.call = failed.call;
  return finish_reload(live, std::move(error));
}

/* Step 2: unload the running version and start the checked copy in its place. */
result<bool, reload_error> swap_in(live_core& live, checked_copy next) {
  if (live.before_reload) live.before_reload();
  const std::string previous_copy = live.current_copy;
  std::optional<unload_error> left_mapped;  // still_loaded: the old library stays, relib let go of it
  if (live.current && live.current->loaded) {
    auto unloaded = unload_core(*live.current);
    if (!unloaded && live.current->loaded) {  // refused: it keeps running
      live.shadows.remove(next.path);
      reload_error error = make_reload_error(live, reload_errc::unload_failed, unloaded.error().reason,
                                             running_version_stays(live));
      error.unload = unloaded.error();
      return finish_reload(live, std::move(error));
    }
    if (!unloaded) left_mapped = unloaded.error();
  }
  const std::uint64_t previous_generation = live.generation;
  const bool previous_crashed = live.crashed.exchange(false);
  started_version started = start_version(live, next.path, std::move(next.inspected));
  if (!started.core) return roll_back(live, started, next.path, previous_copy, previous_generation);

  live.current = std::move(started.core);
  live.current_copy = next.path;
  if (previous_crashed || !live.prototype.crash_guard) {  // crashed: the version before it stays the one to come back to
    live.shadows.remove_later(previous_copy);
  } else {
    live.shadows.remove_later(live.previous_copy);
    live.previous_copy = previous_copy;
    live.previous_source = live.current_source;
    live.previous_generation = previous_generation;
  }
  live.current_source = next.source;
  if (live.watch) {
    live.watch->run_chores();
  } else {
    live.shadows.remove_doomed();
  }
  ++live.generation;
  const std::string version = std::to_string(live.generation);
  if (logging()) log_step("reload", live.path(), "version " + version + " serves calls now");
  if (left_mapped) {
    reload_error error = make_reload_error(live, reload_errc::unload_failed, left_mapped->reason,
                                           "the previous version stayed in the process, and version " + version +
                                               " runs now");
    error.unload = std::move(left_mapped);
    return finish_reload(live, std::move(error));
  }
  if (started.call) {
    reload_error error = make_reload_error(live, reload_errc::main_failed,
                                           describe_call_failure(*started.call) + ", and it cannot be unloaded (" +
                                               started.stuck + ")",
                                           "so it runs now as version " + version);
    error.call = std::move(started.call);
    return finish_reload(live, std::move(error));
  }
  return finish_reload(live, std::nullopt);
}

/* After a crash under the guard: the poisoned version goes, the one before it comes back. A
   build written since the crashed version was copied is looked at by the next update(). */
result<bool, reload_error> roll_back_crash(live_core& live) {
  const std::string crashed = "version " + std::to_string(live.generation) + " crashed (" + live.current->crash.message.substr(0, live.current->crash.message.find('\n')) + ")";
  if (live.previous_copy.empty()) {
    live.crashed.store(false);
    return make_reload_error(live, reload_errc::rollback_failed, crashed,
                             "no version ran before it: calls fail with call_errc::poisoned until a new build loads");
  }
  if (logging()) log_step("reload", live.path(), crashed + ": bringing back version " + std::to_string(live.previous_generation));
  if (live.before_reload) live.before_reload();
  auto unloaded = unload_core(*live.current);
  if (!unloaded && live.current->loaded) {
    reload_error error = make_reload_error(live, reload_errc::unload_failed, unloaded.error().reason,
                                           "the crashed version stays, poisoned");
    error.unload = unloaded.error();
    return finish_reload(live, std::move(error));
  }
  live.crashed.store(false);
  live.current.reset();
  live.shadows.remove_later(live.current_copy);
  live.current_copy.clear();
  const std::string copy = std::exchange(live.previous_copy, std::string());
  started_version again = start_version(live, copy);
  if (!again.core) {
    live.shadows.remove_later(copy);
    return finish_reload(live, make_reload_error(live, reload_errc::rollback_failed, crashed,
                                                 "bringing back the version before failed too: " +
                                                     (again.call ? "its main threw " + describe_call_failure(*again.call) : again.load->reason) +
                                                     ". No version is loaded until the next good build"));
  }
  const std::string crashed_source = live.current_source;
  live.current = std::move(again.core);
  live.current_copy = copy;
  live.current_source = std::exchange(live.previous_source, std::string());
  ++live.generation;
  if (live.watch) live.watch->run_chores();
  if (logging()) log_step("reload", live.path(), "version " + std::to_string(live.generation) + " (the build before the crash) serves calls now");
  platform::readable_file watched;
  if (watched.open(live.path()) == platform::readable_file::status::opened && watched.identity() != crashed_source &&
      watched.identity() != live.current_source) {
    live.signal.raise("a build newer than the one brought back");  // maybe the fix: the next update() tries it
  }
  return finish_reload(live, std::nullopt);
}

/* The reload, from a live_module (null when it was moved from). */
result<bool, reload_error> reload_live_module(live_core* live, bool only_if_changed) {
  if (live == nullptr) {
    const std::string reason = "reload() on a live_module that was moved from; use the object it was moved to";
    return reload_error{reload_errc::load_failed, "", reason, error_message("reload", "", reason), std::nullopt, std::nullopt,
                        std::nullopt, 0};
  }
  // Taken before the copy: a write that starts now raises it again when it ends.
  const bool was_changed = live->signal.changed.exchange(false, std::memory_order_acq_rel);
  if (live->crashed.load(std::memory_order_acquire) && live->current && live->current->poisoned) {
    return roll_back_crash(*live);
  }
  if (only_if_changed && !was_changed) return false;
  if (logging()) {
    log_step("reload", live->path(), was_changed              ? "triggered: " + live->signal.last_cause()
                                     : live->generation == 0 ? "the first load of the watched file"
                                                             : "asked for by reload()");
  }
  checked_copy next;
  if (std::optional<reload_error> refused = copy_and_check(*live, next)) return std::move(*refused);
  if (next.path.empty()) return false;
  return swap_in(*live, std::move(next));
}

result<live_core_pointer, reload_error> open_live_core(load_request prototype, const live_options& options) {
  live_core_pointer live(new live_core);
  live->prototype = std::move(prototype);
  live->nothing_loaded.name = live->path();
  const std::string& path = live->path();
  const std::string directory = platform::directory_of(path), name = platform::base_name(path);
  if (name.empty()) {
    return make_reload_error(*live, reload_errc::watch_failed, "the path ends with '/'", "give the module file's path");
  }
  std::vector<std::string> parents{options.shadow_parent};
  if (options.shadow_parent.empty()) {
    parents = {directory};
    for (std::string& temporary : platform::temporary_directories()) parents.push_back(std::move(temporary));
  }
  std::string why = live->shadows.create(parents, name);
  if (!why.empty()) return make_reload_error(*live, reload_errc::copy_failed, why, "");
  // A symlink: builds write the file it names, so that file's directory is watched too.
  std::vector<platform::file_watch::place> places{{directory, name}};
  const std::string resolved = platform::symlink_target(path);
  if (!resolved.empty()) places.push_back({platform::directory_of(resolved), platform::base_name(resolved)});
  live_core& core = *live;
  live->watch = std::make_unique<platform::file_watch>(std::move(places), options.settle_time, live->signal,
                                                       [&core] { core.shadows.remove_doomed(); });
  why = live->watch->start();
  if (!why.empty()) return make_reload_error(*live, reload_errc::watch_failed, why, "check that the directory exists");
  auto first = reload_live_module(live.get(), false);
  if (!first) return first.error();
  if (!*first) {
    return make_reload_error(*live, reload_errc::copy_failed,
                             "another process has it open for writing (a build still running?)",
                             "load it once the build is done");
  }
  return live;
}

bool live_wait_for_change(const live_core* core, std::chrono::milliseconds timeout) {
  if (core == nullptr) return false;
  platform::change_signal& signal = core->signal;
  std::unique_lock<std::mutex> guard(signal.lock);
  return signal.ready.wait_for(guard, timeout, [&] { return signal.changed.load(std::memory_order_acquire); });
}

std::uint64_t live_generation(const live_core* core) noexcept { return core != nullptr ? core->generation : 0; }
bool live_is_loaded(const live_core* core) noexcept {
  return core != nullptr && core->current && core->current->loaded;
}
const std::string& live_path(const live_core* core) noexcept {
  static const std::string none;
  return core != nullptr ? core->path() : none;
}

void* live_state(live_core* core, std::string_view type, std::size_t size, std::size_t alignment) noexcept {
  if (core == nullptr) return nullptr;
  const kept_block& block = core->state->current;
  if (block.data == nullptr || block.type != type || block.size != size || block.alignment != alignment) return nullptr;
  return block.data;
}

void live_set_callbacks(live_core* core, std::function<void()> before, std::function<void(const reload_error*)> after) {
  if (core == nullptr) return;
  core->before_reload = std::move(before);
  core->after_reload = std::move(after);
}

result<unload_report, unload_error> live_unload(live_core* live) {
  if (live == nullptr) {
    return make_unload_error(unload_errc::not_loaded, "",
                             "unload() on a live_module that was moved from; unload the object it was moved to");
  }
  live_core& core = *live;
  if (!core.current) {
    return make_unload_error(unload_errc::not_loaded, core.path(), "it is not loaded");
  }
  auto unloaded = unload_core(*core.current);
  if (!unloaded) return unloaded;
  core.watch.reset();
  core.signal.changed.store(false);
  core.shadows.remove(core.current_copy);
  core.current_copy.clear();
  return unloaded;
}

}  // namespace detail
}  // namespace relib
#endif

#if RELIB_DETAIL_UNLOADING && !defined(RELIB_NO_FREE_INTERPOSITION)
/* >>free interposition ---- module blocks to mimalloc, the rest to the process allocator -----
   Defined in the host executable, these take precedence over the allocator's own (glibc, or
   mimalloc, jemalloc or tcmalloc linked or preloaded), which RTLD_NEXT finds for everything else.
   operator delete is among them because some allocators (tcmalloc) replace it too. Define
   RELIB_NO_FREE_INTERPOSITION if the host defines these itself; memory returned by modules must
   then be released by module code. */
namespace relib {
namespace detail {
/* The allocator function after the host's own in lookup order, found once. dlsym may itself call
   free: during the lookup, such calls get glibc's function. */
template <class Function, class Fallback>
RELIB_DETAIL_UNINSTRUMENTED Function next_allocator_function(Function& slot, const char* name, Fallback fallback) {
  Function found = acquire_load(slot);
  if (found != nullptr) return found;
  static thread_local bool resolving = false;
  if (resolving) return fallback;
  resolving = true;
  found = reinterpret_cast<Function>(platform::next_definition(name));
  resolving = false;
  if (found == nullptr) found = fallback;
  __atomic_store_n(&slot, found, __ATOMIC_RELEASE);
  return found;
}

void (*next_free)(void*) = nullptr;
void* (*next_realloc)(void*, std::size_t) = nullptr;
std::size_t (*next_usable_size)(void*) = nullptr;

std::size_t no_usable_size(void*) { return 0; }

/* operator delete, each form: an allocator that replaces it (tcmalloc does) would otherwise get
   module blocks that host code deletes (a std::string the module built). */
using delete_function = void (*)(void*);
using sized_delete_function = void (*)(void*, std::size_t);
using aligned_delete_function = void (*)(void*, std::align_val_t);
using sized_aligned_delete_function = void (*)(void*, std::size_t, std::align_val_t);
delete_function next_delete = nullptr, next_delete_array = nullptr;
sized_delete_function next_sized_delete = nullptr, next_sized_delete_array = nullptr;
aligned_delete_function next_aligned_delete = nullptr, next_aligned_delete_array = nullptr;
sized_aligned_delete_function next_sized_aligned_delete = nullptr, next_sized_aligned_delete_array = nullptr;
// What the C++ runtime's own operator delete does, while the next one is being found.
void free_any(void* block) { next_allocator_function(next_free, "free", &platform::process_free)(block); }
void free_sized(void* block, std::size_t) { free_any(block); }
void free_aligned(void* block, std::align_val_t) { free_any(block); }
void free_sized_aligned(void* block, std::size_t, std::align_val_t) { free_any(block); }

/* Set once the functions below are found, by a static initializer: until then a sanitizer may be
   starting, and the host's free() and realloc() give its calls straight back to it. */
bool host_allocator_ready = false;

/* The C++ runtime's operator delete calls free, which already gives module blocks to mimalloc:
   then the host's operator delete passes every block straight on. (A tool that replaces the
   runtime's operator new and delete, valgrind or a sanitizer, still gets its own blocks.) */
bool next_delete_calls_free = false;

/* Found before main rather than at the first call: found lazily, the first realloc would call
   dlsym(), and when that realloc runs inside dlerror() (which formats its message with
   asprintf), dlsym() frees the very message dlerror() is still writing. */
[[maybe_unused]] const bool next_allocator_functions_found = [] {
  // A sanitizer's own functions are the next ones: clang links its runtime into the executable,
  // where the host's definitions replace its free() and realloc(), and the next definition after
  // the executable would be the C library's, which knows nothing of the sanitizer's blocks.
  if (platform::sanitizer_free != nullptr) __atomic_store_n(&next_free, platform::sanitizer_free, __ATOMIC_RELEASE);
  if (platform::sanitizer_realloc != nullptr) {
    __atomic_store_n(&next_realloc, platform::sanitizer_realloc, __ATOMIC_RELEASE);
  }
  if (platform::sanitizer_usable_size != nullptr) {
    __atomic_store_n(&next_usable_size, platform::sanitizer_usable_size, __ATOMIC_RELEASE);
  }
  next_allocator_function(next_free, "free", &platform::process_free);
  next_allocator_function(next_realloc, "realloc", &platform::process_realloc);
  next_allocator_function(next_usable_size, "malloc_usable_size", &no_usable_size);
  release_store(next_delete_calls_free, platform::in_cxx_runtime(platform::next_definition("_ZdlPv")));
  next_allocator_function(next_delete, "_ZdlPv", &free_any);
  next_allocator_function(next_delete_array, "_ZdaPv", &free_any);
  next_allocator_function(next_sized_delete, "_ZdlPvm", &free_sized);
  next_allocator_function(next_sized_delete_array, "_ZdaPvm", &free_sized);
  next_allocator_function(next_aligned_delete, "_ZdlPvSt11align_val_t", &free_aligned);
  next_allocator_function(next_aligned_delete_array, "_ZdaPvSt11align_val_t", &free_aligned);
  next_allocator_function(next_sized_aligned_delete, "_ZdlPvmSt11align_val_t", &free_sized_aligned);
  next_allocator_function(next_sized_aligned_delete_array, "_ZdaPvmSt11align_val_t", &free_sized_aligned);
  host_allocator_ready = true;
  return true;
}();

/* What free_watching_exits needs on the host's side: the pinned mimalloc, and the list. */
struct host_side {
  static const module_block_functions& blocks() { return *acquire_load(module_blocks); }
  static void free_now(void* block) { blocks().free(block); }
  static void* realloc_now(void* block, std::size_t size) { return blocks().realloc(block, size); }
  static void* allocate(std::size_t size) { return blocks().allocate(size); }
  static std::size_t usable_size(const void* block) { return blocks().usable_size(block); }
  static void free_listed(void* block) { free_listed_block(block); }
  static void forget(void* block) { forget_listed_block(block); }
};

/* The module blocks' functions if mimalloc made `block`, as module code decides it (see
   is_mimalloc_block in relib_module.hpp); null for the process allocator's blocks. */
RELIB_DETAIL_UNINSTRUMENTED const module_block_functions* module_block_owner(const void* block) {
  const module_block_functions* blocks = acquire_load(module_blocks);
  if (blocks == nullptr || block == nullptr) return nullptr;
  const address_range* arena = acquire_load(reserved_module_heap_arena);
  if (arena != nullptr && reinterpret_cast<std::uintptr_t>(block) - arena->begin < arena->size) return blocks;
  if (blocks->owns(block)) return blocks;
  return platform::sanitizer_owns != nullptr && platform::sanitizer_owns(block) == 0 ? blocks : nullptr;
}
}  // namespace detail
}  // namespace relib

extern "C" RELIB_DETAIL_UNINSTRUMENTED void free(void* block) noexcept {
  using namespace relib::detail;
  if (RELIB_DETAIL_UNLIKELY(!host_allocator_ready) && platform::sanitizer_free != nullptr) {
    return platform::sanitizer_free(block);
  }
  if (module_block_owner(block) != nullptr) return free_watching_exits<host_side>(exited_filter, block);
  next_allocator_function(next_free, "free", &platform::process_free)(block);
}

extern "C" RELIB_DETAIL_UNINSTRUMENTED void* realloc(void* block, std::size_t size) noexcept {
  using namespace relib::detail;
  if (RELIB_DETAIL_UNLIKELY(!host_allocator_ready) && platform::sanitizer_realloc != nullptr) {
    return platform::sanitizer_realloc(block, size);
  }
  if (module_block_owner(block) != nullptr) return realloc_watching_exits<host_side>(exited_filter, block, size);
  return next_allocator_function(next_realloc, "realloc", &platform::process_realloc)(block, size);
}

extern "C" RELIB_DETAIL_UNINSTRUMENTED std::size_t malloc_usable_size(void* block) noexcept {
  using namespace relib::detail;
  if (RELIB_DETAIL_UNLIKELY(!host_allocator_ready) && platform::sanitizer_usable_size != nullptr) {
    return platform::sanitizer_usable_size(block);
  }
  if (const auto* blocks = module_block_owner(block)) return blocks->usable_size(block);
  return next_allocator_function(next_usable_size, "malloc_usable_size", &no_usable_size)(block);
}

/* The nothrow forms, which the C++ runtime implements with the plain ones, take the same path. */
#define RELIB_DETAIL_HOST_DELETE(name, next, symbol, fallback, parameters, arguments)   \
  void name parameters noexcept {                                                        \
    using namespace relib::detail;                                                       \
    if (!acquire_load(next_delete_calls_free)) {                                         \
      if (module_block_owner(block) != nullptr) return free_watching_exits<host_side>(exited_filter, block); \
    }                                                                                    \
    next_allocator_function(next, symbol, &fallback) arguments;                           \
  }
RELIB_DETAIL_HOST_DELETE(operator delete, next_delete, "_ZdlPv", free_any, (void* block), (block))
RELIB_DETAIL_HOST_DELETE(operator delete[], next_delete_array, "_ZdaPv", free_any, (void* block), (block))
RELIB_DETAIL_HOST_DELETE(operator delete, next_sized_delete, "_ZdlPvm", free_sized, (void* block, std::size_t size),
                         (block, size))
RELIB_DETAIL_HOST_DELETE(operator delete[], next_sized_delete_array, "_ZdaPvm", free_sized,
                         (void* block, std::size_t size), (block, size))
RELIB_DETAIL_HOST_DELETE(operator delete, next_aligned_delete, "_ZdlPvSt11align_val_t", free_aligned,
                         (void* block, std::align_val_t alignment), (block, alignment))
RELIB_DETAIL_HOST_DELETE(operator delete[], next_aligned_delete_array, "_ZdaPvSt11align_val_t", free_aligned,
                         (void* block, std::align_val_t alignment), (block, alignment))
RELIB_DETAIL_HOST_DELETE(operator delete, next_sized_aligned_delete, "_ZdlPvmSt11align_val_t", free_sized_aligned,
                         (void* block, std::size_t size, std::align_val_t alignment), (block, size, alignment))
RELIB_DETAIL_HOST_DELETE(operator delete[], next_sized_aligned_delete_array, "_ZdaPvmSt11align_val_t",
                         free_sized_aligned, (void* block, std::size_t size, std::align_val_t alignment),
                         (block, size, alignment))
#undef RELIB_DETAIL_HOST_DELETE

/* clang links AddressSanitizer's runtime into the executable, where its operator new and delete
   are weak: the host's operator delete above replaces the sanitizer's, and the next one is the C++
   runtime's, which calls free(). AddressSanitizer would then report every block its operator new
   made as freed with the wrong function, so under it the host's operator new takes its blocks
   from malloc(), and the pair stays consistent. (GCC links the sanitizer as a shared library,
   whose operator delete is the next one.) */
#if defined(__clang__) && defined(__has_feature)
#if __has_feature(address_sanitizer)
namespace relib {
namespace detail {
/* The nothrow forms (throwing false) return null where the others throw, a new_handler's
   exception included. */
inline void* host_new(std::size_t size, std::size_t alignment, bool throwing) {
  if (size == 0) size = 1;
  for (;;) {
    void* block = alignment == 0 ? std::malloc(size)
                                 : std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
    if (block != nullptr) return block;
    const std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      if (throwing) throw std::bad_alloc();
      return nullptr;
    }
    if (throwing) {
      handler();
      continue;
    }
    try {
      handler();
    } catch (...) {
      return nullptr;
    }
  }
}
}  // namespace detail
}  // namespace relib

void* operator new(std::size_t size) { return relib::detail::host_new(size, 0, true); }
void* operator new[](std::size_t size) { return relib::detail::host_new(size, 0, true); }
void* operator new(std::size_t size, std::align_val_t alignment) {
  return relib::detail::host_new(size, static_cast<std::size_t>(alignment), true);
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return relib::detail::host_new(size, static_cast<std::size_t>(alignment), true);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return relib::detail::host_new(size, 0, false); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return relib::detail::host_new(size, 0, false); }
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return relib::detail::host_new(size, static_cast<std::size_t>(alignment), false);
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return relib::detail::host_new(size, static_cast<std::size_t>(alignment), false);
}
#endif
#endif
#endif
#undef RELIB_DETAIL_UNINSTRUMENTED
#endif

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
