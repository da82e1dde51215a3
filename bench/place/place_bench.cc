// Placement decisions per second: balanced and compact on the incident's 384-CPU/24-node host
// and on a 256-CPU/64-node host, with an empty ledger and with a ledger that holds about half.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>

#include "hostfit/place.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

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

void run(benchmark::State& state, const Host& host, PlacementPolicy policy, int cpus,
         bool half_held) {
  PlacementRequest req;
  req.cpus = cpus;
  req.policy = policy;
  const Ledger empty;
  const Ledger& ledger = half_held ? host.half_held : empty;
  for (auto _ : state) {
    auto p = place(host.topology, host.allowed, ledger, req);
    if (!p) {
      state.SkipWithError(p.error().message.c_str());
      return;
    }
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Balanced384(benchmark::State& s) {
  run(s, host_384(), PlacementPolicy::kBalanced, 48, s.range(0));
}
void BM_Compact384(benchmark::State& s) {
  run(s, host_384(), PlacementPolicy::kCompact, 48, s.range(0));
}
void BM_Balanced256x64(benchmark::State& s) {
  run(s, host_256x64(), PlacementPolicy::kBalanced, 16, s.range(0));
}
void BM_Compact256x64(benchmark::State& s) {
  run(s, host_256x64(), PlacementPolicy::kCompact, 16, s.range(0));
}
BENCHMARK(BM_Balanced384)->Arg(0)->Arg(1);
BENCHMARK(BM_Compact384)->Arg(0)->Arg(1);
BENCHMARK(BM_Balanced256x64)->Arg(0)->Arg(1);
BENCHMARK(BM_Compact256x64)->Arg(0)->Arg(1);

}  // namespace
}  // namespace hostfit

BENCHMARK_MAIN();
