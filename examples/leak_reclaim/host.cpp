// Loads a module that leaks 100 KB, unloads it, and does it again 2,000 times (or as many times as
// the second argument says), printing the process's resident memory as it goes: it stays flat
// because unload reclaims the module's heap.
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include "leaky_api.hpp"

#include <cstdio>
#include <cstdlib>

RELIB_HOST_EXPORTS(leaky_exports, LEAKY_EXPORTS);

#if defined(_WIN32)
#include <windows.h>
static const char* const memory_kind = "committed memory";
static long memory_kb() {  // private memory committed (Wine has no working-set figure of its own)
  long total = 0;
  MEMORY_BASIC_INFORMATION region;
  for (char* at = nullptr; VirtualQuery(at, &region, sizeof region) == sizeof region;
       at = static_cast<char*>(region.BaseAddress) + region.RegionSize) {
    if (region.State == MEM_COMMIT && region.Type == MEM_PRIVATE) total += static_cast<long>(region.RegionSize / 1024);
  }
  return total;
}
#else
#include <unistd.h>

#include <fstream>
static const char* const memory_kind = "resident memory";
static long memory_kb() {
  std::ifstream statm("/proc/self/statm");
  long total = 0, resident = 0;
  statm >> total >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}
#endif

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "libleaky_module.so";
  const int cycles = argc > 2 ? std::atoi(argv[2]) : 2000;
  for (int cycle = 1; cycle <= cycles; ++cycle) {
    auto loaded = relib::load_module<leaky_exports>(path);
    if (!loaded) return std::fprintf(stderr, "%s\n", loaded.error().message.c_str()), 1;
    loaded->exports().leak(100).value();
    auto report = loaded->unload();
    if (!report) return std::fprintf(stderr, "%s\n", report.error().message.c_str()), 1;
    if (cycle == 1 || cycle % 400 == 0 || cycle == cycles) {
      std::printf("[host] cycle %4d: unload reclaimed %zu blocks (%zu KB); %s %ld KB\n", cycle,
                  report->reclaimed_blocks, report->reclaimed_bytes / 1024, memory_kind, memory_kb());
    }
  }
  std::printf("[host] %d cycles leaked about %d MB in the module; the host did not grow\n", cycles, cycles / 10);
  auto last = relib::load_module<leaky_exports>(path);  // one more, to print a whole report
  if (!last) return 1;
  last->exports().leak(100).value();
  auto report = last->unload();
  if (report) std::printf("%s", relib::to_string(*report).c_str());
  return 0;
}
