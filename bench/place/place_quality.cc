// Placement quality of hostfit against the container manager's rule, on the same random
// sequence of place and release requests on the incident's host (2 sockets x 12 nodes x 8 cores
// x 2 threads). Prints one JSON object per engine.
//
// The baseline re-implements the rule described in the issue: span ceil(N / CPUs of a node)
// nodes assuming all nodes are equal, rank nodes by how many instances use them (fewest first,
// then lowest id), ignore distances, sockets and SMT siblings, take free CPUs of those nodes in
// random order, and bind no memory. When its nodes lack free CPUs it adds the next-ranked node.
#include <algorithm>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "hostfit/place.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace before {
Result<Placement> place(const Topology& topology, const CpuSet& allowed, const Ledger& ledger,
                        const PlacementRequest& request);
}  // namespace before
namespace {

struct Op {
  bool release = false;
  std::string owner;
  int cpus = 0;
};

// Place while less than ~75% of the CPUs are asked for, release a random live owner otherwise
// (and now and then anyway), so that both engines work on a busy, fragmented host.
std::vector<Op> make_sequence(int total_cpus, int length, unsigned seed) {
  std::mt19937 rng(seed);
  const std::vector<int> sizes = {4, 8, 12, 16, 16, 24, 32, 48};
  std::vector<std::pair<std::string, int>> live;
  int asked = 0;
  std::vector<Op> ops;
  for (int i = 0; i < length; ++i) {
    const bool release = !live.empty() && (asked > total_cpus * 3 / 4 ||
                                           std::uniform_int_distribution<>(0, 3)(rng) == 0);
    if (release) {
      const size_t v = rng() % live.size();
      ops.push_back({true, live[v].first, 0});
      asked -= live[v].second;
      live.erase(live.begin() + static_cast<long>(v));
    } else {
      const int n = sizes[rng() % sizes.size()];
      const std::string owner = "w" + std::to_string(i);
      ops.push_back({false, owner, n});
      live.push_back({owner, n});
      asked += n;
    }
  }
  return ops;
}

struct Outcome {
  CpuSet cpus;
  bool binds_memory = false;
};

// The container manager's rule.
Result<Outcome> baseline(const Topology& t, const CpuSet& allowed, const Ledger& ledger,
                         const std::map<std::string, std::vector<int>>& instance_nodes, int n,
                         std::mt19937& rng) {
  const int node_size = t.numa_nodes.front().cpus.count();
  const int want = (n + node_size - 1) / node_size;
  std::map<int, int> instances;
  for (const auto& node : t.numa_nodes)
    instances[node.id] = 0;
  for (const auto& [owner, nodes] : instance_nodes) {
    for (int id : nodes)
      ++instances[id];
  }
  std::vector<int> ranked;
  for (const auto& node : t.numa_nodes)
    ranked.push_back(node.id);
  std::stable_sort(ranked.begin(), ranked.end(),
                   [&](int a, int b) { return instances[a] < instances[b]; });
  const CpuSet free = allowed - ledger.held();
  CpuSet pool;
  size_t used = 0;
  while (used < ranked.size() && (static_cast<int>(used) < want || pool.count() < n))
    pool |= t.node(ranked[used++])->cpus & free;
  if (pool.count() < n) return fail(ErrorKind::kResource, "does not fit");
  std::vector<int> ids = pool.ids();
  std::shuffle(ids.begin(), ids.end(), rng);
  Outcome out;
  for (int i = 0; i < n; ++i)
    out.cpus.set(ids[i]);
  return out;
}

struct Stats {
  int placed = 0, refused = 0, over_spanned = 0, with_split = 0, split_cores = 0, bound = 0;
  double distance_sum = 0, spread_sum = 0;
  int spread_samples = 0;
};

int min_nodes(const Topology& t, const CpuSet& free, int n) {
  std::vector<int> caps;
  for (const auto& node : t.numa_nodes)
    caps.push_back((node.cpus & free).count());
  std::sort(caps.rbegin(), caps.rend());
  int sum = 0;
  for (size_t k = 0; k < caps.size(); ++k) {
    if ((sum += caps[k]) >= n) return static_cast<int>(k) + 1;
  }
  return 0;
}

enum class Engine { kBaseline, kBefore, kHostfit };

nlohmann::json run(const Topology& t, const CpuSet& allowed, const std::vector<Op>& ops,
                   Engine engine) {
  const bool use_hostfit = engine != Engine::kBaseline;
  const PlacementEngine prepared(t);
  int identical = 0;  // kHostfit: decisions equal to main's engine on the same ledger
  Ledger ledger;
  std::map<std::string, std::vector<int>> instance_nodes;
  std::mt19937 rng(99);
  Stats s;
  for (const Op& op : ops) {
    if (op.release) {
      if (ledger.find(op.owner)) {
        (void)ledger.release(op.owner);
        instance_nodes.erase(op.owner);
      }
      continue;
    }
    const CpuSet free = allowed - ledger.held();
    Outcome out;
    if (use_hostfit) {
      PlacementRequest req;
      req.cpus = op.cpus;
      auto p = engine == Engine::kBefore ? before::place(t, allowed, ledger, req)
                                         : prepared.place(allowed, ledger, req);
      if (engine == Engine::kHostfit) {
        auto b = before::place(t, allowed, ledger, req);
        if (p.has_value() == b.has_value() && (!p || (p->cpus == b->cpus && p->mems == b->mems)))
          ++identical;
      }
      if (!p) {
        ++s.refused;
        continue;
      }
      out.cpus = p->cpus;
      out.binds_memory = !p->mems.empty();
    } else {
      auto p = baseline(t, allowed, ledger, instance_nodes, op.cpus, rng);
      if (!p) {
        ++s.refused;
        continue;
      }
      out = *p;
    }
    ++s.placed;
    std::vector<int> nodes;
    std::map<int, int> per_node;
    for (const auto& node : t.numa_nodes) {
      const int c = (node.cpus & out.cpus).count();
      if (c == 0) continue;
      nodes.push_back(node.id);
      per_node[node.id] = c;
    }
    if (static_cast<int>(nodes.size()) > min_nodes(t, free, op.cpus)) ++s.over_spanned;
    int split = 0;
    for (const Core& core : t.cores) {
      const int in = (core.cpus & out.cpus).count();
      if (in > 0 && in < core.cpus.count()) ++split;
    }
    s.split_cores += split;
    s.with_split += split > 0 ? 1 : 0;
    s.bound += out.binds_memory ? 1 : 0;
    double weighted = 0;
    for (const auto& [a, na] : per_node) {
      for (const auto& [b, nb] : per_node)
        weighted += double(na) * nb * t.distance(a, b);
    }
    s.distance_sum += weighted / (double(op.cpus) * op.cpus);
    (void)ledger.hold(op.owner, out.cpus, CpuSet{});
    instance_nodes[op.owner] = nodes;
    const CpuSet held = ledger.held();
    int lo = 1 << 30, hi = 0;
    for (const auto& node : t.numa_nodes) {
      const int used = (node.cpus & held).count();
      lo = std::min(lo, used);
      hi = std::max(hi, used);
    }
    s.spread_sum += hi - lo;
    ++s.spread_samples;
  }
  const double placed = std::max(1, s.placed);
  const char* names[] = {"baseline (container manager rule)", "hostfit balanced, main (before)",
                         "hostfit balanced"};
  return {{"engine", names[static_cast<int>(engine)]},
          {"identical_to_before",
           engine == Engine::kHostfit ? nlohmann::json(identical) : nlohmann::json(nullptr)},
          {"requests", s.placed + s.refused},
          {"placed", s.placed},
          {"refused", s.refused},
          {"over_spanned_pct", 100.0 * s.over_spanned / placed},
          {"split_placements_pct", 100.0 * s.with_split / placed},
          {"split_cores", s.split_cores},
          {"mean_used_spread", s.spread_sum / std::max(1, s.spread_samples)},
          {"mean_distance", s.distance_sum / placed},
          {"memory_bound_pct", 100.0 * s.bound / placed}};
}

}  // namespace
}  // namespace hostfit

int main(int argc, char** argv) {
  using namespace hostfit;
  const int length = argc > 1 ? std::atoi(argv[1]) : 2000;
  nlohmann::json out = nlohmann::json::array();
  // The incident's host as generated, and the same host with two cores offline in every other
  // node (nodes of 16 and 12 CPUs), where "all nodes are equal" stops being true.
  for (const bool uneven : {false, true}) {
    fixtures::Shape shape;
    shape.sockets = 2;
    shape.nodes_per_socket = 12;
    shape.cores_per_node = 8;
    shape.threads_per_core = 2;
    if (uneven) {
      std::string offline;
      for (int socket = 0; socket < 2; ++socket) {
        for (int node = 1; node < 12; node += 2) {
          for (int core = 6; core < 8; ++core) {
            for (int thread = 0; thread < 2; ++thread) {
              offline += (offline.empty() ? "" : ",") +
                         std::to_string(fixtures::cpu_id(shape, socket, node, core, thread));
            }
          }
        }
      }
      shape.offline_cpus = offline;
    }
    fixtures::TempDir dir;
    if (auto ok = fixtures::write_sysroot(dir.path(), shape); !ok) {
      std::cerr << ok.error().message << "\n";
      return 1;
    }
    const Topology t = load_topology(Sysroot(dir.path()));
    CpuSet allowed;
    for (const auto& n : t.numa_nodes)
      allowed |= n.cpus;
    const auto ops = make_sequence(allowed.count(), length, 2024);
    for (const Engine engine : {Engine::kBaseline, Engine::kBefore, Engine::kHostfit}) {
      nlohmann::json row = run(t, allowed, ops, engine);
      row["host"] = uneven ? "384-CPU/24-node, every other node 12 CPUs (" +
                                 std::to_string(allowed.count()) + " online)"
                           : "384-CPU/24-node";
      out.push_back(row);
    }
  }
  std::cout << out.dump(2) << "\n";
  return 0;
}
