// Placement decisions per second: balanced and compact on the incident's 384-CPU/24-node host
// and on a 256-CPU/64-node host, with an empty ledger and with a ledger that holds about half;
// for the engine on main before issue 16 (engine_before.cc), today's place() and a prepared
// PlacementEngine, in one run.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>

#include "hostfit/place.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace before {
Result<Placement> place(const Topology& topology, const CpuSet& allowed, const Ledger& ledger,
                        const PlacementRequest& request);
}  // namespace before
namespace {

enum Engine { kBefore = 0, kPlace = 1, kPrepared = 2 };

struct Host {
  Topology topology;
  CpuSet allowed;
  Ledger half_held;  // every other node's first half of CPUs held, in 8-CPU holds
};

Host load_host(int sockets, int nodes_per_socket, int cores_per_node) {
  fixtures::Shape shape;
  shape.sockets = sockets;
  shape.nodes_per_socket = nodes_per_socket;
  shape.cores_per_node = cores_per_node;
  shape.threads_per_core = 2;
  fixtures::TempDir dir;
  if (!fixtures::write_sysroot(dir.path(), shape)) std::abort();
  Host host;
  host.topology = load_topology(Sysroot(dir.path()));
  for (const auto& n : host.topology.numa_nodes)
    host.allowed |= n.cpus;
  std::mt19937 rng(7);
  std::vector<int> cpus = host.allowed.ids();
  std::shuffle(cpus.begin(), cpus.end(), rng);
  for (size_t i = 0; i + 8 <= cpus.size() / 2; i += 8) {
    CpuSet hold;
    for (size_t j = i; j < i + 8; ++j)
      hold.set(cpus[j]);
    (void)host.half_held.hold("h" + std::to_string(i), hold, CpuSet::of({0}));
  }
  return host;
}

const Host& host_384() {
  static const Host h = load_host(2, 12, 8);
  return h;
}
const Host& host_256x64() {
  static const Host h = load_host(2, 32, 2);
  return h;
}

void run(benchmark::State& state, const Host& host, PlacementPolicy policy, int cpus) {
  PlacementRequest req;
  req.cpus = cpus;
  req.policy = policy;
  const Ledger empty;
  const Ledger& ledger = state.range(0) ? host.half_held : empty;
  const auto engine = static_cast<Engine>(state.range(1));
  const PlacementEngine prepared(host.topology);
  for (auto _ : state) {
    Result<Placement> p;
    switch (engine) {
      case kBefore:
        p = before::place(host.topology, host.allowed, ledger, req);
        break;
      case kPlace:
        p = place(host.topology, host.allowed, ledger, req);
        break;
      case kPrepared:
        p = prepared.place(host.allowed, ledger, req);
        break;
    }
    if (!p) {
      state.SkipWithError(p.error().message.c_str());
      return;
    }
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Balanced384(benchmark::State& s) {
  run(s, host_384(), PlacementPolicy::kBalanced, 48);
}
void BM_Compact384(benchmark::State& s) {
  run(s, host_384(), PlacementPolicy::kCompact, 48);
}
void BM_Balanced256x64(benchmark::State& s) {
  run(s, host_256x64(), PlacementPolicy::kBalanced, 16);
}
void BM_Compact256x64(benchmark::State& s) {
  run(s, host_256x64(), PlacementPolicy::kCompact, 16);
}
// Args: {ledger half held?, engine}.
BENCHMARK(BM_Balanced384)->ArgsProduct({{0, 1}, {kBefore, kPlace, kPrepared}});
BENCHMARK(BM_Compact384)->ArgsProduct({{0, 1}, {kBefore, kPlace, kPrepared}});
BENCHMARK(BM_Balanced256x64)->ArgsProduct({{0, 1}, {kBefore, kPlace, kPrepared}});
BENCHMARK(BM_Compact256x64)->ArgsProduct({{0, 1}, {kBefore, kPlace, kPrepared}});

}  // namespace
}  // namespace hostfit

BENCHMARK_MAIN();
