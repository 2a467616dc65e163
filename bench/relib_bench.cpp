// relib_bench: the cost of relib's calls and of a load/unload cycle, each next to its baseline
// measured in the same run, so the table at the end reads as ratios.
#define RELIB_IMPLEMENTATION
#include "relib.hpp"

#include "bench_api.hpp"

#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <cstdio>
#include <map>
#include <optional>
#include <string>

RELIB_HOST_EXPORTS(bench_exports, BENCH_EXPORTS);
RELIB_HOST_IMPORTS(bench_imports, BENCH_IMPORTS);

int bench_imports::host_add(int a, int b) { return a + b; }

namespace {

constexpr int import_batch = 1000;  // imports are measured as loops inside the module

__attribute__((noinline)) int direct_add(int a, int b) {
  benchmark::ClobberMemory();
  return a + b;
}

relib::module<bench_exports>& bench_module() {
  static relib::module<bench_exports> module = [] {
    auto loaded = relib::load_module<bench_exports>(BENCH_MODULE_PATH, bench_imports{});
    if (!loaded) {
      std::fprintf(stderr, "%s\n", loaded.error().message.c_str());
      std::exit(1);
    }
    return std::move(*loaded);
  }();
  return module;
}

// The three call benchmarks consume results the same way: summed in a register, published once.
void BM_DirectCall(benchmark::State& state) {
  int i = 0, total = 0;
  for (auto _ : state) total += direct_add(++i, 1);
  benchmark::DoNotOptimize(total);
}

// The pointer from dlsym is kept in a table in memory, as hosts keep them and as relib keeps its
// exports.
struct raw_table {
  int (*add)(int, int);
};

void BM_RawPointerCall(benchmark::State& state) {
  void* handle = dlopen(BENCH_MODULE_PATH, RTLD_NOW | RTLD_LOCAL);
  static raw_table table;
  table.add = reinterpret_cast<int (*)(int, int)>(dlsym(handle, "relib_bench_raw_add"));
  if (table.add == nullptr) return state.SkipWithError("relib_bench_raw_add is not exported");
  int i = 0, total = 0;
  for (auto _ : state) total += table.add(++i, 1);
  benchmark::DoNotOptimize(total);
  dlclose(handle);
}

void BM_ExportCall(benchmark::State& state) {
  const bench_exports& exports = bench_module().exports();
  int i = 0, total = 0;
  for (auto _ : state) total += exports.add(++i, 1).value();  // checked: throws if the export threw
  benchmark::DoNotOptimize(total);
}

void BM_RawPointerCallFromModule(benchmark::State& state) {
  const bench_exports& exports = bench_module().exports();
  for (auto _ : state) benchmark::DoNotOptimize(exports.call_pointer(&bench_imports::host_add, import_batch));
  state.SetItemsProcessed(state.iterations() * import_batch);
}

void BM_ImportCall(benchmark::State& state) {
  const bench_exports& exports = bench_module().exports();
  for (auto _ : state) benchmark::DoNotOptimize(exports.call_import(import_batch));
  state.SetItemsProcessed(state.iterations() * import_batch);
}

constexpr int malloc_batch = 1000;  // malloc/free pairs per iteration, in each of the three

void BM_ModuleMalloc(benchmark::State& state) {
  const bench_exports& exports = bench_module().exports();
  for (auto _ : state) benchmark::DoNotOptimize(exports.malloc_free(0, malloc_batch).value());
  state.SetItemsProcessed(state.iterations() * malloc_batch);
}

void BM_MimallocMalloc(benchmark::State& state) {
  const bench_exports& exports = bench_module().exports();
  for (auto _ : state) benchmark::DoNotOptimize(exports.malloc_free(1, malloc_batch).value());
  state.SetItemsProcessed(state.iterations() * malloc_batch);
}

void BM_GlibcMalloc(benchmark::State& state) {
  const bench_exports& exports = bench_module().exports();
  for (auto _ : state) benchmark::DoNotOptimize(exports.malloc_free(2, malloc_batch).value());
  state.SetItemsProcessed(state.iterations() * malloc_batch);
}

// The same three allocators on batches of 64 mixed-size blocks (per malloc/free pair).
constexpr int batch_blocks = 64, batches_per_iteration = 16;

void mixed_batches(benchmark::State& state, int allocator) {
  const bench_exports& exports = bench_module().exports();
  for (auto _ : state) benchmark::DoNotOptimize(exports.malloc_free_batches(allocator, batches_per_iteration).value());
  state.SetItemsProcessed(state.iterations() * batch_blocks * batches_per_iteration);
}
void BM_ModuleMallocMixed(benchmark::State& state) { mixed_batches(state, 0); }
void BM_MimallocMallocMixed(benchmark::State& state) { mixed_batches(state, 1); }
void BM_GlibcMallocMixed(benchmark::State& state) { mixed_batches(state, 2); }

// Loads the bench module (untimed) with state.range(0) blocks allocated by module code.
std::optional<relib::module<bench_exports>> load_with_blocks(benchmark::State& state) {
  state.PauseTiming();
  auto loaded = relib::load_module<bench_exports>(BENCH_MODULE_PATH, bench_imports{});
  if (!loaded) return state.SkipWithError("load failed"), std::nullopt;
  loaded->exports().allocate_blocks(static_cast<int>(state.range(0))).value();
  state.ResumeTiming();
  return std::move(*loaded);
}

// A module holding state.range(0) leaked blocks: unload reclaims them at once...
void BM_UnloadWithLeakedBlocks(benchmark::State& state) {
  for (auto _ : state) {
    auto module = load_with_blocks(state);
    if (!module || !module->unload()) return state.SkipWithError("unload failed");
  }
}

// ...against freeing them one by one (then unloading, untimed).
void BM_FreeBlocksOneByOne(benchmark::State& state) {
  for (auto _ : state) {
    auto module = load_with_blocks(state);
    if (!module) return;
    module->exports().free_blocks().value();
    state.PauseTiming();
    if (!module->unload()) state.SkipWithError("unload failed");
    state.ResumeTiming();
  }
}

// Both cycles run with mimalloc already in the process (relib pins it at the first load), so the
// raw cycle does not load and unload libmimalloc each time.
void pin_mimalloc() { dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE); }

void BM_RawDlopenCycle(benchmark::State& state) {
  pin_mimalloc();
  for (auto _ : state) {
    void* handle = dlopen(BENCH_MODULE_PATH, RTLD_NOW | RTLD_LOCAL);
    benchmark::DoNotOptimize(dlsym(handle, "relib_bench_raw_add"));
    dlclose(handle);
  }
}

void BM_ModuleLoadUnloadCycle(benchmark::State& state) {
  for (auto _ : state) {
    auto loaded = relib::load_module<bench_exports>(BENCH_MODULE_PATH, bench_imports{});
    if (!loaded || !loaded->unload()) state.SkipWithError("load or unload failed");
  }
}

}  // namespace

// Each benchmark runs in several repetitions; the table keeps the fastest, which is the least
// disturbed by the other processes of a noisy machine. Calls run in the shared bench module;
// cycles need it unloaded, so they run first.
constexpr int repetitions = 7;
BENCHMARK(BM_RawDlopenCycle)->Repetitions(repetitions);
BENCHMARK(BM_ModuleLoadUnloadCycle)->Repetitions(repetitions);
BENCHMARK(BM_UnloadWithLeakedBlocks)->Arg(1000000)->Repetitions(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FreeBlocksOneByOne)->Arg(1000000)->Repetitions(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DirectCall)->Repetitions(repetitions);
BENCHMARK(BM_RawPointerCall)->Repetitions(repetitions);
BENCHMARK(BM_ExportCall)->Repetitions(repetitions);
BENCHMARK(BM_RawPointerCallFromModule)->Repetitions(repetitions);
BENCHMARK(BM_ImportCall)->Repetitions(repetitions);
BENCHMARK(BM_ModuleMalloc)->Repetitions(repetitions);
BENCHMARK(BM_MimallocMalloc)->Repetitions(repetitions);
BENCHMARK(BM_GlibcMalloc)->Repetitions(repetitions);
BENCHMARK(BM_ModuleMallocMixed)->Repetitions(repetitions);
BENCHMARK(BM_MimallocMallocMixed)->Repetitions(repetitions);
BENCHMARK(BM_GlibcMallocMixed)->Repetitions(repetitions);

namespace {

// Keeps the fastest repetition of every benchmark, in nanoseconds per operation, and prints
// only the aggregates (mean, median, deviation) to keep the output short.
class best_of_collector : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> ns;

  void ReportRuns(const std::vector<Run>& runs) override {
    std::vector<Run> aggregates;
    for (const Run& run : runs) {
      if (run.run_type == Run::RT_Aggregate) {
        aggregates.push_back(run);
        continue;
      }
      double value = run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit) * 1e9;
      const std::string name = run.run_name.function_name;
      if (name == "BM_ImportCall" || name == "BM_RawPointerCallFromModule") value /= import_batch;
      if (name == "BM_ModuleMalloc" || name == "BM_MimallocMalloc" || name == "BM_GlibcMalloc") value /= malloc_batch;
      if (name.size() > 5 && name.compare(name.size() - 5, 5, "Mixed") == 0) value /= batch_blocks * batches_per_iteration;
      const auto known = ns.find(name);
      if (known == ns.end() || value < known->second) ns[name] = value;
    }
    if (!aggregates.empty()) ConsoleReporter::ReportRuns(aggregates);
  }
};

void print_ratio(const best_of_collector& best, const char* measured, const char* baseline, double target) {
  const auto m = best.ns.find(measured);
  const auto b = best.ns.find(baseline);
  if (m == best.ns.end() || b == best.ns.end()) return;
  const double ratio = m->second / b->second;
  std::printf("%-26s %12.2f ns   %-28s %12.2f ns   %6.2fx   %s\n", measured, m->second, baseline, b->second, ratio,
              target <= 0 ? "" : ratio <= target ? "meets target" : "OVER TARGET");
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  best_of_collector reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::printf("\nFastest of the repetitions (per call; import rows per call inside a loop of %d, malloc rows per\n"
              "malloc/free pair inside a loop of %d; the unload rows per module of 1,000,000 blocks)\n",
              import_batch, malloc_batch);
  std::printf("%-26s %15s   %-28s %15s   %7s\n", "measured", "", "baseline", "", "ratio");
  print_ratio(reporter, "BM_ExportCall", "BM_RawPointerCall", 1.2);
  print_ratio(reporter, "BM_ExportCall", "BM_DirectCall", 0);
  print_ratio(reporter, "BM_ImportCall", "BM_RawPointerCallFromModule", 1.2);
  print_ratio(reporter, "BM_ModuleLoadUnloadCycle", "BM_RawDlopenCycle", 1.3);
  print_ratio(reporter, "BM_ModuleMalloc", "BM_MimallocMalloc", 1.3);
  print_ratio(reporter, "BM_ModuleMalloc", "BM_GlibcMalloc", 1.0);
  print_ratio(reporter, "BM_ModuleMallocMixed", "BM_MimallocMallocMixed", 1.3);
  print_ratio(reporter, "BM_ModuleMallocMixed", "BM_GlibcMallocMixed", 1.0);
  print_ratio(reporter, "BM_UnloadWithLeakedBlocks", "BM_FreeBlocksOneByOne", 0.1);
  return 0;
}
