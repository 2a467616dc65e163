// The module's own copy of the C++ runtime (relib_add_module links it statically): its terminate
// handler, exceptions inside module code through the process's unwinder, and memory a static
// constructor allocated.
#include "support.hpp"

#include "runtime_api.hpp"

#include <dlfcn.h>

#include <csignal>
#include <exception>

RELIB_HOST_EXPORTS(runtime_exports, RUNTIME_EXPORTS);

namespace {
void host_terminate_handler() { std::abort(); }
}  // namespace

TEST_CASE("std::terminate in module code names the module, the exception's type and its what()") {
  const test::child_outcome outcome = test::run_in_child([] {
    auto module = relib::load_module<runtime_exports>(TEST_RUNTIME_PATH);
    if (module) (void)module->exports().terminate_after_throw();
  });
  CHECK(outcome.signal == SIGABRT);
  CHECK(test::contains(outcome.stderr_text, "terminate called in module"));
  CHECK(test::contains(outcome.stderr_text, "libtest_runtime.so"));
  CHECK(test::contains(outcome.stderr_text, "runtime_failure"));
  // Demangled by the process's libstdc++ when it has a shared one: "(anonymous namespace)::...".
  if (::dlsym(RTLD_DEFAULT, "__cxa_demangle") != nullptr) {
    CHECK(test::contains(outcome.stderr_text, "namespace)::runtime_failure'"));
  }
  CHECK(test::contains(outcome.stderr_text, "what():  thrown where nothing catches it"));
}

TEST_CASE("std::terminate without an exception in module code names the module") {
  const test::child_outcome outcome = test::run_in_child([] {
    auto module = relib::load_module<runtime_exports>(TEST_RUNTIME_PATH);
    if (module) (void)module->exports().terminate_without_exception();
  });
  CHECK(outcome.signal == SIGABRT);
  CHECK(test::contains(outcome.stderr_text, "terminate called in module"));
  CHECK(test::contains(outcome.stderr_text, "libtest_runtime.so"));
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
  // libstdc++'s default terminate handler would bring it (about 40 KB); the module's handler
  // borrows the process's. A sanitizer's runtime asks for one itself, so it is linked there.
  const std::string image = test::read_file(TEST_RUNTIME_PATH);
  REQUIRE(!image.empty());
  const bool sanitizer_needs_it = test::sanitizer_bytes_per_load != 0;
  CHECK(test::contains(image, "cplus_demangle") == sanitizer_needs_it);
  CHECK(!test::contains(image, "__verbose_terminate_handler"));
}

TEST_CASE("exceptions thrown and caught in module code unwind through the process's unwinder, load after load") {
  for (int load = 0; load < 20; ++load) {
    auto module = test::load_or_fail<runtime_exports>(TEST_RUNTIME_PATH);
    CHECK(module.exports().throw_and_catch(load).value() == load);
    test::unload_or_fail(module);
    // The unwinder the module brought (a host with a static C++ runtime has none) stays loaded.
    void* unwinder = ::dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NOLOAD);
    CHECK(unwinder != nullptr);
    if (unwinder != nullptr) ::dlclose(unwinder);
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
