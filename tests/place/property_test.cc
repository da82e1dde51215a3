// Properties of the engine and the ledger on random machines and random place/release sequences:
// no CPU held twice, nothing offline, isolated or disallowed handed out, release restores the free
// set exactly, the fewest nodes are used, and the same input gives the same output.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "hostfit/place.h"

namespace hostfit {
namespace {

// A machine built in memory: sparse node ids, several packages, SMT 1-4 with either numbering,
// random per-node core counts, symmetric random distances, and CPU-less nodes.
struct RandomMachine {
  Topology topology;
  CpuSet allowed;  // what the caller may use: not offline, isolated or outside its cpuset
  CpuSet present;
};

RandomMachine random_machine(std::mt19937& rng) {
  const auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  RandomMachine m;
  Topology& t = m.topology;
  t.source = "random";
  const int packages = pick(1, 4);
  const int tpc = std::vector<int>{1, 2, 2, 4}[pick(0, 3)];
  const bool interleaved = pick(0, 1) == 1;
  t.threads_per_core = tpc;
  int next_cpu = 0;
  int node_id = 0;
  std::vector<std::vector<int>> node_cores;  // per node: first CPU of each core
  for (int p = 0; p < packages; ++p) {
    Package pkg{p, {}};
    const int nodes = pick(1, 4);
    for (int n = 0; n < nodes; ++n) {
      NumaNode node;
      node.id = node_id;
      node_id += pick(1, 3);  // sparse ids
      node.package = p;
      node.memory_bytes = 1 << 30;
      const int cores = pick(1, 6);
      for (int c = 0; c < cores; ++c) {
        Core core;
        core.package = p;
        core.numa_node = node.id;
        core.core_id = c;
        for (int th = 0; th < tpc; ++th) {
          // Interleaved numbering gives siblings consecutive ids; otherwise leave gaps.
          const int cpu = interleaved ? next_cpu++ : next_cpu + th * 1000;
          core.cpus.set(cpu);
        }
        if (!interleaved) ++next_cpu;
        node.cpus |= core.cpus;
        t.cores.push_back(core);
      }
      pkg.cpus |= node.cpus;
      t.numa_nodes.push_back(node);
    }
    t.packages.push_back(pkg);
  }
  for (int extra = pick(0, 1); extra > 0; --extra) {  // a CPU-less node
    NumaNode node;
    node.id = node_id++;
    node.memory_bytes = 1 << 30;
    t.numa_nodes.push_back(node);
  }
  const size_t n = t.numa_nodes.size();
  for (size_t i = 0; i < n; ++i)
    t.numa_nodes[i].distances.assign(n, 10);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      const bool same = t.numa_nodes[i].package == t.numa_nodes[j].package;
      const int d = same ? pick(11, 21) : pick(20, 40);
      t.numa_nodes[i].distances[j] = d;
      t.numa_nodes[j].distances[i] = d;
    }
  }
  std::sort(t.cores.begin(), t.cores.end(),
            [](const Core& a, const Core& b) { return a.cpus.first() < b.cpus.first(); });
  for (const auto& node : t.numa_nodes)
    m.present |= node.cpus;
  // About a fifth of the CPUs are offline, isolated or outside the cpuset.
  m.allowed = m.present;
  for (int cpu : m.present.ids()) {
    if (pick(0, 4) == 0) m.allowed.reset(cpu);
  }
  return m;
}

PlacementRequest random_request(std::mt19937& rng, const Topology& t) {
  const auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  PlacementRequest r;
  r.cpus = pick(1, 24);
  r.policy =
      std::vector<PlacementPolicy>{PlacementPolicy::kBalanced, PlacementPolicy::kCompact,
                                   PlacementPolicy::kSpread, PlacementPolicy::kNodes}[pick(0, 3)];
  r.smt = std::vector<SmtMode>{SmtMode::kAuto, SmtMode::kAny, SmtMode::kFullCores}[pick(0, 2)];
  if (r.smt == SmtMode::kFullCores)
    r.cpus = std::max(1, r.cpus / t.threads_per_core) * t.threads_per_core;
  if (r.policy == PlacementPolicy::kNodes) {
    for (const auto& node : t.numa_nodes) {
      if (!node.cpus.empty() && pick(0, 1) == 1) r.nodes.push_back(node.id);
    }
    if (r.nodes.empty()) r.nodes.push_back(t.numa_nodes[0].id);
  }
  r.mems = std::vector<MemsMode>{MemsMode::kFollow, MemsMode::kNear, MemsMode::kAll}[pick(0, 2)];
  return r;
}

// The smallest number of nodes whose free CPUs hold count.
int min_nodes(const Topology& t, const CpuSet& free, int count) {
  std::vector<int> caps;
  for (const auto& node : t.numa_nodes)
    caps.push_back((node.cpus & free).count());
  std::sort(caps.rbegin(), caps.rend());
  int sum = 0;
  for (size_t k = 0; k < caps.size(); ++k) {
    sum += caps[k];
    if (sum >= count) return static_cast<int>(k) + 1;
  }
  return 0;
}

TEST(PlacePropertyTest, RandomPlaceAndReleaseSequencesKeepTheLedgerSound) {
  std::mt19937 rng(20240611);
  int placed = 0, refused = 0;
  for (int machine = 0; machine < 60; ++machine) {
    const RandomMachine m = random_machine(rng);
    const Topology& t = m.topology;
    Ledger ledger;
    std::vector<std::pair<std::string, CpuSet>> held_before;  // owner, ledger.held() before it
    for (int step = 0; step < 40; ++step) {
      const bool do_release = !ledger.holds().empty() && rng() % 3 == 0;
      if (do_release) {
        const size_t victim = rng() % ledger.holds().size();
        const Hold h = ledger.holds()[victim];
        const CpuSet expected = ledger.held() - h.cpus;
        ASSERT_TRUE(ledger.release(h.owner));
        EXPECT_EQ(ledger.held(), expected) << "release did not restore the free set exactly";
        continue;
      }
      const PlacementRequest req = random_request(rng, t);
      const CpuSet free = m.allowed - ledger.held();
      const auto p = place(t, m.allowed, ledger, req);
      const auto again = place(t, m.allowed, ledger, req);
      ASSERT_EQ(p.has_value(), again.has_value());
      if (!p) {
        ++refused;
        EXPECT_TRUE(p.error().kind == ErrorKind::kResource) << p.error().message;
        if (req.smt != SmtMode::kFullCores && req.policy != PlacementPolicy::kNodes) {
          EXPECT_LT(free.count(), req.cpus) << "refused " << req.cpus << " CPUs with "
                                            << free.count() << " free: " << p.error().message;
        }
        continue;
      }
      ++placed;
      EXPECT_EQ(p->cpus, again->cpus) << "same input, different CPUs";
      EXPECT_EQ(p->mems, again->mems);
      EXPECT_EQ(p->cpus.count(), req.cpus);
      EXPECT_TRUE(p->cpus.is_subset_of(free))
          << "handed out " << (p->cpus - free).to_list() << " which are held or not allowed";
      int sum = 0;
      for (const auto& [id, count] : p->per_node) {
        sum += count;
        ASSERT_NE(t.node(id), nullptr);
        EXPECT_FALSE(t.node(id)->cpus.empty()) << "CPU-less node " << id << " got CPUs";
        if (req.policy == PlacementPolicy::kNodes) {
          EXPECT_NE(std::find(req.nodes.begin(), req.nodes.end(), id), req.nodes.end());
        }
      }
      EXPECT_EQ(sum, req.cpus);
      EXPECT_FALSE(p->mems.empty());
      if (req.smt == SmtMode::kFullCores) {
        EXPECT_EQ(p->split_cores, 0);
      }
      if (req.smt != SmtMode::kFullCores &&
          (req.policy == PlacementPolicy::kCompact || req.policy == PlacementPolicy::kBalanced)) {
        EXPECT_EQ(static_cast<int>(p->nodes.size()), min_nodes(t, free, req.cpus))
            << "spans more nodes than its free CPUs need";
      }
      ASSERT_TRUE(ledger.hold("o" + std::to_string(step), p->cpus, p->mems))
          << "the engine handed out a held CPU";
    }
  }
  // The sequences exercise both outcomes.
  EXPECT_GT(placed, 500);
  EXPECT_GT(refused, 50);
}

TEST(PlacePropertyTest, LargeMachinesAreSearchedWithoutEnumeratingSubsets) {
  // 128 nodes: 2^128 subsets could never be enumerated; the greedy search answers at once.
  Topology t;
  t.source = "generated";
  t.threads_per_core = 2;
  for (int n = 0; n < 128; ++n) {
    NumaNode node;
    node.id = n;
    node.package = n / 64;
    for (int c = 0; c < 4; ++c) {
      Core core{node.package, n, c, CpuSet::of({n * 8 + c * 2, n * 8 + c * 2 + 1})};
      node.cpus |= core.cpus;
      t.cores.push_back(core);
    }
    t.numa_nodes.push_back(node);
  }
  for (auto& from : t.numa_nodes) {
    for (const auto& to : t.numa_nodes) {
      from.distances.push_back(from.id == to.id             ? 10
                               : from.package == to.package ? 12 + std::abs(from.id - to.id) % 5
                                                            : 32);
    }
  }
  PlacementRequest req;
  req.cpus = 200;
  const auto p = place(t, CpuSet::range(0, 1023), Ledger{}, req);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->nodes.size(), 25u);
  for (int id : p->nodes)
    EXPECT_EQ(id / 64, p->nodes[0] / 64) << "one package when possible";
}

}  // namespace
}  // namespace hostfit
