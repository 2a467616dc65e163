// The module's own copy of the C++ runtime (relib_add_module links it statically): its terminate
// handler, exceptions inside module code through the process's unwinder, and memory a static
// constructor allocated.
#include "support.hpp"

#include "runtime_api.hpp"

#if !defined(_WIN32)
#include "elf_image.hpp"

#include <dlfcn.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <csignal>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

RELIB_HOST_EXPORTS(runtime_exports, RUNTIME_EXPORTS);

namespace {
void host_terminate_handler() { std::abort(); }

// Loads the runtime module in a child process, makes one call that ends in std::terminate, and
// checks that the child aborted with a message naming the module.
template <class Call>
test::child_outcome terminate_in_child(Call call) {
  const test::child_outcome outcome = test::run_in_child([call] {
    auto module = relib::load_module<runtime_exports>(TEST_RUNTIME_PATH);
    if (module) call(module->exports());
  });
  CHECK(outcome.signal == SIGABRT);
  CHECK(test::contains(outcome.stderr_text, "terminate called in module"));
  CHECK(test::contains(outcome.stderr_text, std::string("libtest_runtime") + test::library_suffix));
  return outcome;
}
}  // namespace

TEST_CASE("std::terminate in module code names the module, the exception's type and its what()") {
  const test::child_outcome outcome =
      terminate_in_child([](const runtime_exports& exports) { (void)exports.terminate_after_throw(); });
  CHECK(test::contains(outcome.stderr_text, "runtime_failure"));
  // Demangled by the process's libstdc++ when it has a shared one: "(anonymous namespace)::...".
  // (A DLL reaches no demangler of the process: the name stays mangled on Windows.)
#if !defined(_WIN32)
  if (::dlsym(RTLD_DEFAULT, "__cxa_demangle") != nullptr) {
    CHECK(test::contains(outcome.stderr_text, "namespace)::runtime_failure'"));
  }
#endif
  CHECK(test::contains(outcome.stderr_text, "what():  thrown where nothing catches it"));
}

TEST_CASE("std::terminate without an exception in module code names the module") {
  const test::child_outcome outcome =
      terminate_in_child([](const runtime_exports& exports) { (void)exports.terminate_without_exception(); });
  CHECK(test::contains(outcome.stderr_text, "without an active exception"));
}

TEST_CASE("a module's terminate handler never replaces the host's") {
  const std::terminate_handler previous = std::set_terminate(host_terminate_handler);
  {
    auto module = test::load_or_fail<runtime_exports>(TEST_RUNTIME_PATH);
    CHECK(std::get_terminate() == host_terminate_handler);
    CHECK(module.exports().throw_and_catch(3).value() == 3);
    test::unload_or_fail(module);
  }
  CHECK(std::get_terminate() == host_terminate_handler);
  std::set_terminate(previous);
}

TEST_CASE("a module maps no demangler of its own") {
  // The runtime's default terminate handler would bring it; the module's handler borrows the
  // process's. (The test modules keep their symbol tables, which name what was linked.)
  const std::string image = test::read_file(TEST_RUNTIME_PATH);
  REQUIRE(!image.empty());
#if defined(_LIBCPP_VERSION)
  // libc++abi's demangler, about 120 KB.
  CHECK(!test::contains(image, "itanium_demangle"));
  CHECK(!test::contains(image, "demangling_terminate_handler"));
#else
  // libstdc++'s, about 40 KB. GCC's sanitizer runtime, a shared library, asks the module for one,
  // so it is linked there; clang links its sanitizer runtime into the host.
#if defined(__clang__)
  const bool sanitizer_needs_it = false;
#else
  const bool sanitizer_needs_it = test::sanitizer_bytes_per_load != 0;
#endif
#if defined(_WIN32)
  // mingw-w64's libstdc++ names its default handler in std::set_terminate (eh_terminate.o), which
  // every module links: the handler and its demangler come along (docs/windows.md).
  (void)sanitizer_needs_it;
  CHECK(test::contains(image, "__verbose_terminate_handler"));
#else
  CHECK(test::contains(image, "cplus_demangle") == sanitizer_needs_it);
  CHECK(!test::contains(image, "__verbose_terminate_handler"));
#endif
#endif
}

TEST_CASE("exceptions thrown and caught in module code unwind through the process's unwinder, load after load") {
  for (int load = 0; load < 20; ++load) {
    auto module = test::load_or_fail<runtime_exports>(TEST_RUNTIME_PATH);
    CHECK(module.exports().throw_and_catch(load).value() == load);
    test::unload_or_fail(module);
    // The unwinder the module brought (a host with a static C++ runtime has none) stays loaded.
    // (On Windows each module links its unwinder statically.)
#if !defined(_WIN32)
    void* unwinder = ::dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NOLOAD);
    CHECK(unwinder != nullptr);
    if (unwinder != nullptr) ::dlclose(unwinder);
#endif
  }
}

TEST_CASE("a large block a static constructor allocated can be used, grown and freed") {
  auto module = test::load_or_fail<runtime_exports>(TEST_RUNTIME_PATH);
  CHECK(module.exports().load_time_block_works().value());
  const auto report = module.unload();
  REQUIRE(report.has_value());
  CHECK(report->unreclaimed_bytes == 0);
  CHECK(report->reclaimed_blocks == 0);  // the block was freed by module code
}

// ELF's hardening and Linux's private dirty pages: not applicable on Windows.
#if !defined(_WIN32)
namespace {
// Private_Dirty of the whole process, in bytes.
std::size_t private_dirty_bytes() {
  std::ifstream rollup("/proc/self/smaps_rollup");
  std::size_t total_kb = 0;
  for (std::string line; std::getline(rollup, line);) {
    if (line.rfind("Private_Dirty:", 0) == 0) total_kb += std::stoul(line.substr(14));
  }
  return total_kb * 1024;
}
}  // namespace

TEST_CASE("relib_add_module keeps the hardening: full RELRO, code apart from data") {
  const test::elf_image elf(TEST_RUNTIME_PATH);
  CHECK(std::any_of(elf.segments.begin(), elf.segments.end(),
                    [](const ElfW(Phdr)& segment) { return segment.p_type == PT_GNU_RELRO; }));
  const auto flags = [&](ElfW(Sxword) tag) -> ElfW(Xword) {  // 0 when the tag is absent
    for (const ElfW(Dyn)& entry : elf.dynamic) {
      if (entry.d_tag == tag) return entry.d_un.d_val;
    }
    return 0;
  };
  const bool binds_now = (flags(DT_FLAGS) & DF_BIND_NOW) != 0 || (flags(DT_FLAGS_1) & DF_1_NOW) != 0;
  CHECK(binds_now);
  // Separate code: the executable segment does not start at the file's first byte (the ELF
  // header), and no executable segment is writable.
  for (const ElfW(Phdr)& segment : elf.segments) {
    if (segment.p_type != PT_LOAD || (segment.p_flags & PF_X) == 0) continue;
    CHECK(segment.p_offset != 0);
    CHECK((segment.p_flags & PF_W) == 0);
  }
}

TEST_CASE("a loaded module costs a few pages of private memory") {
  // 20 copies loaded at once, each called: what each adds to the process's private dirty memory
  // (docs/footprint.md: 18.5 KB in a Release build; the relocated data, the first heap, the
  // exception pool's page and the records). Before the pool's block got a span of its own it
  // was 30 KB.
  constexpr int copies = 20;
  test::temp_dir dir;
  std::vector<std::string> paths;
  for (int i = 0; i < copies; ++i) paths.push_back(dir.copy_file(TEST_RUNTIME_PATH, "copy" + std::to_string(i) + ".so"));
  ::sync();  // pages not yet written back count as dirty in every mapping
  {
    auto warm_up = test::load_or_fail<runtime_exports>(paths.front());
    test::unload_or_fail(warm_up);
  }
  std::vector<relib::module<runtime_exports>> loaded;
  loaded.reserve(copies);
  const std::size_t before = private_dirty_bytes();
  for (const std::string& path : paths) {
    loaded.push_back(test::load_or_fail<runtime_exports>(path));
    CHECK(loaded.back().exports().throw_and_catch(-1).value() == 0);  // returns without throwing
  }
  const std::size_t per_module = (private_dirty_bytes() - before) / copies;
  INFO("private dirty per module: " << per_module << " bytes");
  // A sanitizer's instrumented module and its shadow cost more: about 165 KB under
  // AddressSanitizer, 58 KB under ThreadSanitizer.
  CHECK(per_module <= (test::sanitizer_bytes_per_load == 0 ? 26 * 1024 : 512 * 1024));
  for (auto& module : loaded) test::unload_or_fail(module);
}
#endif
