// pthread keys, memory mappings and atexit handlers that module code leaves behind.
#include "support.hpp"

#include "resources_api.hpp"

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

RELIB_HOST_EXPORTS(resources_exports, RESOURCES_EXPORTS);
RELIB_HOST_IMPORTS(resources_imports, RESOURCES_IMPORTS);

namespace {
std::mutex notes_lock;
std::vector<std::string> notes;

std::vector<std::string> notes_so_far() {
  std::lock_guard<std::mutex> guard(notes_lock);
  return notes;
}

// True if some mapping of this process contains `address`.
#if !defined(_WIN32)
bool address_mapped(const void* address) {
  const auto wanted = reinterpret_cast<std::uintptr_t>(address);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream range(line.substr(0, line.find(' ')));
    std::uintptr_t begin = 0, end = 0;
    char dash = 0;
    range >> std::hex >> begin >> dash >> end;
    if (wanted >= begin && wanted < end) return true;
  }
  return false;
}
#endif
}  // namespace

void resources_imports::notify(const char* what) {
  std::lock_guard<std::mutex> guard(notes_lock);
  notes.push_back(what);
}

TEST_CASE("a pthread key the module left is deleted at unload, so no thread calls into unmapped code") {
  notes.clear();
  auto module = test::load_or_fail<resources_exports>(TEST_RESOURCES_PATH, resources_imports{});
  test::parked_thread other([&] { module.exports().create_key_with_value().value(); });  // a value on that thread
  auto report = module.unload();
  REQUIRE(report.has_value());
  CHECK(report->pthread_keys_deleted == 1);
  CHECK_FALSE(test::is_mapped(TEST_RESOURCES_PATH));
  other.release();  // would crash if the key's destructor, in the unmapped module, were called
  CHECK(notes_so_far().empty());
}

// Windows: relib does not follow VirtualAlloc in module code, so memory a module reserved itself
// stays after unload (docs/windows.md); the case is not applicable there.
#if !defined(_WIN32)
TEST_CASE("a memory mapping the module left is unmapped at unload") {
  auto module = test::load_or_fail<resources_exports>(TEST_RESOURCES_PATH, resources_imports{});
  void* memory = module.exports().map_memory(1 << 20).value();
  REQUIRE(memory != nullptr);
  CHECK(address_mapped(memory));
  auto report = module.unload();
  REQUIRE(report.has_value());
  CHECK(report->mapped_bytes_unmapped == (1u << 20));
  CHECK_FALSE(address_mapped(memory));
}
#endif

TEST_CASE("an atexit handler of the module runs at unload, not at process exit") {
  notes.clear();
  auto module = test::load_or_fail<resources_exports>(TEST_RESOURCES_PATH, resources_imports{});
  CHECK(module.exports().register_atexit().value());
  CHECK(notes_so_far().empty());
  test::unload_or_fail(module);
  CHECK(notes_so_far() == std::vector<std::string>{"atexit handler"});
}
