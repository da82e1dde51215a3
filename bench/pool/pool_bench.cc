// SlotPool against the two ways runtimes do without one: a fresh mapping per instance
// (mmap + mprotect + munmap) and the heap (malloc + memset). Each round gives one instance 64 KiB,
// touches all of it and gives it back. Also: creating a pool of 1,000 x 4 GiB.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

#include "hostfit/pool.h"

namespace {

using hostfit::PoolMode;
using hostfit::PoolOptions;
using hostfit::SlotPool;

constexpr uint64_t kInstanceBytes = 64 << 10;
constexpr uint64_t kSlotBytes = uint64_t{4} << 30;
constexpr uint64_t kGuardBytes = uint64_t{32} << 20;

PoolOptions wasm_options() {
  PoolOptions o;
  o.slot_count = 1000;
  o.max_slot_bytes = kSlotBytes;
  o.guard_bytes = kGuardBytes;
  o.read_environment = false;
  return o;
}

void acquire_touch_release(benchmark::State& state, std::unique_ptr<SlotPool> pool) {
  for (auto _ : state) {
    auto slot = pool->acquire(kInstanceBytes);
    if (!slot) {
      state.SkipWithError(slot.error().message.c_str());
      return;
    }
    std::memset(slot->base, 1, kInstanceBytes);
    benchmark::ClobberMemory();
    if (!pool->release(*slot)) {
      state.SkipWithError("release failed");
      return;
    }
  }
  state.SetLabel(std::string(hostfit::to_string(pool->tier())) + ", " +
                 std::to_string(pool->plan().slot_count) + " slots");
}

std::unique_ptr<SlotPool> make(PoolOptions o, const hostfit::PoolFacts& facts) {
  auto pool = SlotPool::create(o, facts);
  return pool ? std::move(*pool) : nullptr;
}

void BM_PoolTier(benchmark::State& state) {
  PoolOptions o = wasm_options();
  o.mode = PoolMode::kPool;
  auto pool = make(o, hostfit::probe_pool_facts(hostfit::Sysroot("/")));
  if (!pool) return state.SkipWithError("cannot create the pool tier here");
  acquire_touch_release(state, std::move(pool));
}

void BM_PoolTierKeepResident64KiB(benchmark::State& state) {
  PoolOptions o = wasm_options();
  o.mode = PoolMode::kPool;
  o.keep_resident_bytes = kInstanceBytes;
  auto pool = make(o, hostfit::probe_pool_facts(hostfit::Sysroot("/")));
  if (!pool) return state.SkipWithError("cannot create the pool tier here");
  acquire_touch_release(state, std::move(pool));
}

void BM_SmallTier(benchmark::State& state) {
  // The tier a process under RLIMIT_AS=64 GiB gets: the facts say so, the probe confirms it.
  hostfit::PoolFacts facts = hostfit::probe_pool_facts(hostfit::Sysroot("/"));
  facts.rlimit_as = hostfit::Limit::of(uint64_t{64} << 30);
  auto pool = make(wasm_options(), facts);
  if (!pool || pool->tier() != hostfit::PoolTier::kSmall) {
    return state.SkipWithError("cannot create the small tier here");
  }
  acquire_touch_release(state, std::move(pool));
}

void BM_OnDemandTier(benchmark::State& state) {
  PoolOptions o = wasm_options();
  o.mode = PoolMode::kOnDemand;
  auto pool = make(o, hostfit::probe_pool_facts(hostfit::Sysroot("/")));
  if (!pool) return state.SkipWithError("cannot create the on-demand tier");
  acquire_touch_release(state, std::move(pool));
}

// What a runtime without a pool does per instance: reserve slot and guards, open 64 KiB, unmap.
void BM_MmapMprotectMunmap(benchmark::State& state) {
  const size_t mapping = kSlotBytes + 2 * kGuardBytes;
  for (auto _ : state) {
    void* p =
        ::mmap(nullptr, mapping, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return state.SkipWithError("mmap failed");
    auto* base = static_cast<char*>(p) + kGuardBytes;
    if (::mprotect(base, kInstanceBytes, PROT_READ | PROT_WRITE) != 0) {
      return state.SkipWithError("mprotect failed");
    }
    std::memset(base, 1, kInstanceBytes);
    benchmark::ClobberMemory();
    ::munmap(p, mapping);
  }
}

void BM_MallocMemset(benchmark::State& state) {
  for (auto _ : state) {
    void* p = std::malloc(kInstanceBytes);
    if (!p) return state.SkipWithError("malloc failed");
    std::memset(p, 1, kInstanceBytes);
    benchmark::DoNotOptimize(p);
    benchmark::ClobberMemory();
    std::free(p);
  }
}

// Creating a 1,000 x 4 GiB pool: probe the facts, fork the bounded probe, reserve; then unmap.
void BM_CreatePool1000x4GiB(benchmark::State& state) {
  for (auto _ : state) {
    auto pool = SlotPool::create(wasm_options());
    if (!pool || (*pool)->tier() != hostfit::PoolTier::kPool) {
      return state.SkipWithError("this host did not get the pool tier");
    }
  }
}

// The same with HOSTFIT_POOL=pool: no facts, no probe, only the reservation.
void BM_CreatePool1000x4GiBForced(benchmark::State& state) {
  PoolOptions o = wasm_options();
  o.mode = PoolMode::kPool;
  const hostfit::PoolFacts facts;
  for (auto _ : state) {
    auto pool = SlotPool::create(o, facts);
    if (!pool) return state.SkipWithError("cannot reserve 1,000 x 4 GiB here");
  }
}

BENCHMARK(BM_PoolTier);
BENCHMARK(BM_PoolTierKeepResident64KiB);
BENCHMARK(BM_SmallTier);
BENCHMARK(BM_OnDemandTier);
BENCHMARK(BM_MmapMprotectMunmap);
BENCHMARK(BM_MallocMemset);
BENCHMARK(BM_CreatePool1000x4GiB)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CreatePool1000x4GiBForced)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // one INFO line per created pool would drown the table
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
