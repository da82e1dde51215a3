// The placement engine as it was on main before issue 16 (commit 47983a5), kept verbatim but for
// its namespace so that bench/place measures before and after in one run on the same hosts.
#include <algorithm>
#include <numeric>
#include <optional>
#include <set>
#include <tuple>

#include "hostfit/place.h"

namespace hostfit::before {
namespace {

// A distance the kernel did not report is taken as far: such a node is chosen last.
constexpr int kUnknownDistance = 255;

struct CoreView {
  CpuSet cpus;         // all its hardware threads
  CpuSet free;         // threads that are allowed and held by nobody
  bool whole = false;  // every thread is free: taking it shares the core with no one
  int width = 0;
};

struct NodeView {
  int id = 0;
  int package = -1;
  std::vector<int> cores;  // indices into Context::cores, ascending first CPU
  int free_any = 0;        // free CPUs
  int free_full = 0;       // CPUs in whole free cores
  int held = 0;            // CPUs of this node held in the ledger (the node's load)
  int cap(bool full) const { return full ? free_full : free_any; }
};

// What the engine knows about the machine for one decision.
struct Context {
  const Topology* topology = nullptr;
  std::vector<CpuSet> node_cpus;  // each node's own CPUs, by node index
  std::vector<NodeView> nodes;    // same order as topology->numa_nodes
  std::vector<CoreView> cores;
  std::vector<std::vector<int>> distance;  // by node index
  int threads_per_core = 1;
};

Context make_context(const Topology& topology, const CpuSet& allowed, const Ledger& ledger) {
  Context ctx;
  ctx.topology = &topology;
  ctx.threads_per_core = std::max(1, topology.threads_per_core);
  for (const NumaNode& node : topology.numa_nodes)
    ctx.node_cpus.push_back(node.cpus);
  const CpuSet held = ledger.held();
  const size_t n = topology.numa_nodes.size();
  ctx.distance.assign(n, std::vector<int>(n, kUnknownDistance));
  for (size_t i = 0; i < n; ++i) {
    const NumaNode& node = topology.numa_nodes[i];
    NodeView view;
    view.id = node.id;
    view.package = node.package;
    view.held = (ctx.node_cpus[i] & held).count();
    ctx.nodes.push_back(view);
    for (size_t j = 0; j < n && j < node.distances.size(); ++j) {
      if (node.distances[j] >= 0) ctx.distance[i][j] = node.distances[j];
    }
  }
  const auto node_index_of = [&](int cpu) -> int {
    for (size_t i = 0; i < n; ++i) {
      if (ctx.node_cpus[i].contains(cpu)) return static_cast<int>(i);
    }
    return -1;
  };
  const auto add_core = [&](const CpuSet& cpus) {
    const int node = node_index_of(cpus.first());
    if (node < 0) return;  // a CPU in no NUMA node (e.g. of an offline node) is never placed
    CoreView core;
    core.cpus = cpus & ctx.node_cpus[node];
    core.free = core.cpus & allowed;
    core.free -= held;
    core.width = core.cpus.count();
    core.whole = core.width > 0 && core.free.count() == core.width;
    ctx.nodes[node].free_any += core.free.count();
    if (core.whole) ctx.nodes[node].free_full += core.width;
    ctx.nodes[node].cores.push_back(static_cast<int>(ctx.cores.size()));
    ctx.cores.push_back(std::move(core));
  };
  CpuSet covered;
  for (const Core& core : topology.cores) {
    if (core.cpus.empty()) continue;
    add_core(core.cpus);
    covered |= core.cpus;
  }
  // CPUs hwloc put in a node but in no core: each is its own core.
  for (const CpuSet& node_cpus : ctx.node_cpus) {
    for (int cpu : (node_cpus - covered).ids())
      add_core(CpuSet::of({cpu}));
  }
  for (NodeView& node : ctx.nodes) {
    std::sort(node.cores.begin(), node.cores.end(),
              [&](int a, int b) { return ctx.cores[a].cpus.first() < ctx.cores[b].cpus.first(); });
  }
  return ctx;
}

// Picks `count` CPUs of one node: whole cores of the usual width first (lowest ids first), then
// narrower whole cores; unless full_cores, then the free threads of cores already shared, and
// only then threads of whole cores (splitting them). nullopt when that cannot make `count`.
std::optional<CpuSet> pick_in_node(const Context& ctx, const NodeView& node, int count,
                                   bool full_cores) {
  CpuSet picked;
  int left = count;
  std::vector<int> whole;
  for (int c : node.cores) {
    if (ctx.cores[c].whole) whole.push_back(c);
  }
  std::stable_sort(whole.begin(), whole.end(), [&](int a, int b) {
    return (ctx.cores[a].width != ctx.threads_per_core) <
           (ctx.cores[b].width != ctx.threads_per_core);
  });
  std::vector<bool> taken(ctx.cores.size(), false);
  for (int c : whole) {
    if (left == 0) break;
    if (ctx.cores[c].width > left) continue;
    picked |= ctx.cores[c].cpus;
    left -= ctx.cores[c].width;
    taken[c] = true;
  }
  if (full_cores) return left == 0 ? std::optional<CpuSet>(picked) : std::nullopt;
  const auto take_threads = [&](bool from_whole) {
    for (int c : node.cores) {
      if (left == 0) return;
      if (taken[c] || ctx.cores[c].whole != from_whole) continue;
      for (int cpu : ctx.cores[c].free.ids()) {
        if (left == 0) return;
        picked.set(cpu);
        --left;
      }
    }
  };
  take_threads(false);
  take_threads(true);
  return left == 0 ? std::optional<CpuSet>(picked) : std::nullopt;
}

// Splits `count` over nodes with capacities `caps` as evenly as the capacities allow, in whole
// units of `grain` CPUs (a core) where possible: water-filling, extra units going to nodes in
// the given order (caps are in that order). nullopt when the capacities do not hold count.
std::optional<std::vector<int>> even_split(const std::vector<int>& caps, int count, int grain) {
  const int total = std::accumulate(caps.begin(), caps.end(), 0);
  if (total < count) return std::nullopt;
  if (grain > 1) {
    const int units = count / grain;
    const int rest = count % grain;
    std::vector<int> unit_caps;
    for (int c : caps)
      unit_caps.push_back(c / grain);
    if (auto shares = even_split(unit_caps, units, 1)) {
      for (int& s : *shares)
        s *= grain;
      if (rest == 0) return shares;
      // The CPUs short of a whole core go to the node with the fewest that has room.
      int best = -1;
      for (size_t i = 0; i < caps.size(); ++i) {
        if (caps[i] - (*shares)[i] < rest) continue;
        if (best < 0 || (*shares)[i] < (*shares)[best]) best = static_cast<int>(i);
      }
      if (best >= 0) {
        (*shares)[best] += rest;
        return shares;
      }
    }
    return even_split(caps, count, 1);
  }
  // The lowest level L with sum(min(cap, L)) >= count; every node gets min(cap, L - 1) and the
  // rest one more each, in order.
  int lo = 0, hi = *std::max_element(caps.begin(), caps.end());
  const auto filled = [&](int level) {
    int sum = 0;
    for (int c : caps)
      sum += std::min(c, level);
    return sum;
  };
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (filled(mid) >= count) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const int level = lo;
  std::vector<int> shares;
  int left = count;
  for (int c : caps) {
    shares.push_back(std::min(c, std::max(level - 1, 0)));
    left -= shares.back();
  }
  for (size_t i = 0; i < caps.size() && left > 0; ++i) {
    if (caps[i] >= level) {
      ++shares[i];
      --left;
    }
  }
  return shares;
}

// One candidate node set and how good it is; smaller is better, compared in this order.
struct Candidate {
  int packages = 0;
  int distance = 0;        // sum over pairs
  int load = 0;            // CPUs held on these nodes (balanced only)
  std::vector<int> ids;    // node ids, ascending: the final tie-break
  std::vector<int> nodes;  // node indices, in fill order
  auto key() const { return std::tie(packages, distance, load, ids); }
};

int pair_distance(const Context& ctx, const std::vector<int>& nodes) {
  int sum = 0;
  for (size_t a = 0; a < nodes.size(); ++a) {
    for (size_t b = a + 1; b < nodes.size(); ++b)
      sum += ctx.distance[nodes[a]][nodes[b]];
  }
  return sum;
}

// Node sets of exactly k nodes that can hold `count`, without looking at all subsets: from each
// seed, add the node nearest to the set (same package as the seed first, then the smallest sum of
// distances to the chosen nodes, then the least loaded for balanced, then the lowest id) among
// those that still leave the set able to reach `count` with its remaining picks.
std::vector<Candidate> grow_candidates(const Context& ctx, const std::vector<int>& usable, int k,
                                       int count, bool full, bool balanced) {
  std::vector<int> by_cap = usable;  // capacity descending, then index
  std::stable_sort(by_cap.begin(), by_cap.end(),
                   [&](int a, int b) { return ctx.nodes[a].cap(full) > ctx.nodes[b].cap(full); });
  const auto cap = [&](int i) { return ctx.nodes[i].cap(full); };
  std::set<std::vector<int>> seen;
  std::vector<Candidate> out;
  const size_t n = ctx.nodes.size();
  for (int seed : usable) {
    std::vector<bool> in_set(n, false);
    std::vector<int> chosen{seed};
    in_set[seed] = true;
    int sum = cap(seed);
    std::vector<int> dist_to_set(n, 0);
    for (size_t i = 0; i < n; ++i)
      dist_to_set[i] = ctx.distance[i][seed];
    bool ok = true;
    while (static_cast<int>(chosen.size()) < k) {
      // The r largest capacities outside the set bound what the picks after this one can add.
      const int r = k - static_cast<int>(chosen.size()) - 1;
      std::vector<int> top;
      for (int i : by_cap) {
        if (static_cast<int>(top.size()) > r) break;
        if (!in_set[i]) top.push_back(i);
      }
      int sum_r = 0, sum_r1 = 0;
      std::vector<bool> in_top_r(n, false);
      for (size_t t = 0; t < top.size(); ++t) {
        if (static_cast<int>(t) < r) {
          sum_r += cap(top[t]);
          in_top_r[top[t]] = true;
        }
        sum_r1 += cap(top[t]);
      }
      int best = -1;
      std::tuple<bool, int, int, int> best_key;
      for (int c : usable) {
        if (in_set[c]) continue;
        const int rest = in_top_r[c] ? sum_r1 - cap(c) : sum_r;
        if (sum + cap(c) + rest < count) continue;
        const std::tuple<bool, int, int, int> key{ctx.nodes[c].package != ctx.nodes[seed].package,
                                                  dist_to_set[c], balanced ? ctx.nodes[c].held : 0,
                                                  ctx.nodes[c].id};
        if (best < 0 || key < best_key) {
          best = c;
          best_key = key;
        }
      }
      if (best < 0) {
        ok = false;
        break;
      }
      chosen.push_back(best);
      in_set[best] = true;
      sum += cap(best);
      for (size_t i = 0; i < n; ++i)
        dist_to_set[i] += ctx.distance[i][best];
    }
    if (!ok || sum < count) continue;
    std::vector<int> sorted = chosen;
    std::sort(sorted.begin(), sorted.end());
    if (!seen.insert(sorted).second) continue;
    Candidate cand;
    std::set<int> packages;
    for (int i : chosen) {
      packages.insert(ctx.nodes[i].package);
      cand.ids.push_back(ctx.nodes[i].id);
      if (balanced) cand.load += ctx.nodes[i].held;
    }
    std::sort(cand.ids.begin(), cand.ids.end());
    cand.packages = static_cast<int>(packages.size());
    cand.distance = pair_distance(ctx, chosen);
    cand.nodes = chosen;
    out.push_back(std::move(cand));
  }
  std::sort(out.begin(), out.end(),
            [](const Candidate& a, const Candidate& b) { return a.key() < b.key(); });
  return out;
}

// CPUs for given per-node shares, or nullopt when a node cannot make its share.
std::optional<CpuSet> pick_shares(const Context& ctx, const std::vector<int>& nodes,
                                  const std::vector<int>& shares, bool full) {
  CpuSet cpus;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (shares[i] == 0) continue;
    auto picked = pick_in_node(ctx, ctx.nodes[nodes[i]], shares[i], full);
    if (!picked) return std::nullopt;
    cpus |= *picked;
  }
  return cpus;
}

// The smallest k whose k largest capacities hold count; 0 when even all of them do not.
int min_node_count(const Context& ctx, const std::vector<int>& usable, int count, bool full) {
  std::vector<int> caps;
  for (int i : usable)
    caps.push_back(ctx.nodes[i].cap(full));
  std::sort(caps.rbegin(), caps.rend());
  int sum = 0;
  for (size_t k = 0; k < caps.size(); ++k) {
    sum += caps[k];
    if (sum >= count) return static_cast<int>(k) + 1;
  }
  return 0;
}

struct Attempt {
  CpuSet cpus;
  int node_count = 0;
};

// Compact or balanced with one SMT mode. nullopt when it does not fit.
std::optional<Attempt> place_near(const Context& ctx, const std::vector<int>& usable, int count,
                                  bool full, bool balanced) {
  const int k = min_node_count(ctx, usable, count, full);
  if (k == 0) return std::nullopt;
  for (const Candidate& cand : grow_candidates(ctx, usable, k, count, full, balanced)) {
    std::vector<int> order = cand.nodes;
    std::vector<int> shares;
    if (balanced) {
      // Extra cores of an uneven split go to the nodes with the most room, then lowest id.
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return std::make_tuple(-ctx.nodes[a].cap(full), ctx.nodes[a].id) <
               std::make_tuple(-ctx.nodes[b].cap(full), ctx.nodes[b].id);
      });
      std::vector<int> caps;
      for (int i : order)
        caps.push_back(ctx.nodes[i].cap(full));
      auto split = even_split(caps, count, ctx.threads_per_core);
      if (!split) continue;
      shares = *split;
    } else {
      // Compact fills the roomiest node first, so the last one gets what is left.
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return std::make_tuple(-ctx.nodes[a].cap(full), ctx.nodes[a].id) <
               std::make_tuple(-ctx.nodes[b].cap(full), ctx.nodes[b].id);
      });
      int left = count;
      for (int i : order) {
        const int share = std::min(left, ctx.nodes[i].cap(full));
        shares.push_back(share);
        left -= share;
      }
    }
    if (auto cpus = pick_shares(ctx, order, shares, full)) return Attempt{*cpus, k};
  }
  return std::nullopt;
}

// Spread (or nodes:LIST): round-robin over the given nodes in id order, a core at a time.
std::optional<Attempt> place_round_robin(const Context& ctx, const std::vector<int>& nodes,
                                         int count, bool full) {
  std::vector<int> caps;
  for (int i : nodes)
    caps.push_back(ctx.nodes[i].cap(full));
  auto shares = even_split(caps, count, ctx.threads_per_core);
  if (!shares) return std::nullopt;
  auto cpus = pick_shares(ctx, nodes, *shares, full);
  if (!cpus) return std::nullopt;
  int used = 0;
  for (int s : *shares)
    used += s > 0 ? 1 : 0;
  return Attempt{*cpus, used};
}

std::string node_list_text(const std::vector<int>& ids) {
  CpuSet set;
  for (int id : ids)
    set.set(id);
  return set.to_list();
}

std::string free_summary(const Context& ctx, const std::vector<int>& nodes, bool full) {
  int total = 0;
  std::string per;
  for (int i : nodes) {
    const int cap = ctx.nodes[i].cap(full);
    if (cap == 0) continue;
    total += cap;
    per += (per.empty() ? "" : ", ") + ("node " + std::to_string(ctx.nodes[i].id)) + ": " +
           std::to_string(cap);
  }
  if (total == 0) return "none free";
  return std::to_string(total) + " free" + (full ? " in whole cores" : "") + " (" + per + ")";
}

int nearest(const Context& ctx, int from, const std::vector<int>& among) {
  // A node is nearest to itself, even when the distance matrix does not say so.
  if (std::find(among.begin(), among.end(), from) != among.end()) return from;
  int best = -1;
  for (int i : among) {
    if (best < 0 || ctx.distance[from][i] < ctx.distance[from][best]) best = i;
  }
  return best;
}

Result<CpuSet> choose_mems(const Context& ctx, const PlacementRequest& req,
                           const std::vector<int>& chosen) {
  const Topology& topo = *ctx.topology;
  std::vector<int> allowed;  // node indices, ascending id
  for (size_t i = 0; i < topo.numa_nodes.size(); ++i) {
    if (req.allowed_mems.empty() || req.allowed_mems.contains(topo.numa_nodes[i].id))
      allowed.push_back(static_cast<int>(i));
  }
  if (allowed.empty()) {
    return fail(ErrorKind::kResource, "no memory node is allowed (cpuset.mems " +
                                          req.allowed_mems.to_list() + " names no node)");
  }
  CpuSet mems;
  switch (req.mems) {
    case MemsMode::kAll:
      for (int i : allowed)
        mems.set(topo.numa_nodes[i].id);
      return mems;
    case MemsMode::kList:
      return req.mems_list;  // checked against the topology before placing
    case MemsMode::kFollow:
    case MemsMode::kNear:
      break;
  }
  for (int i : chosen) {
    mems.set(topo.numa_nodes[nearest(ctx, i, allowed)].id);
  }
  if (req.mems == MemsMode::kNear) {
    std::vector<int> cpu_nodes;
    for (size_t i = 0; i < topo.numa_nodes.size(); ++i) {
      if (!ctx.node_cpus[i].empty()) cpu_nodes.push_back(static_cast<int>(i));
    }
    for (int m : allowed) {
      if (!ctx.node_cpus[m].empty() || cpu_nodes.empty()) continue;
      const int home = nearest(ctx, m, cpu_nodes);
      if (std::find(chosen.begin(), chosen.end(), home) != chosen.end())
        mems.set(topo.numa_nodes[m].id);
    }
  }
  return mems;
}

Status check_request(const Topology& topo, const std::vector<CpuSet>& node_cpus,
                     const PlacementRequest& req) {
  if ((req.cpus > 0) == (req.cores > 0)) {
    if (req.cpus < 0 || req.cores < 0)
      return fail(ErrorKind::kUsage, "the CPU or core count must be at least 1");
    return fail(ErrorKind::kUsage, req.cpus > 0
                                       ? "give either a CPU count or a core count, not both"
                                       : "the CPU or core count must be at least 1");
  }
  if (req.cpus < 0 || req.cores < 0)
    return fail(ErrorKind::kUsage, "the CPU or core count must be at least 1");
  if (req.cores > CpuSet::kMaxId) {
    return fail(ErrorKind::kUsage, "bad core count " + std::to_string(req.cores) + ": at most " +
                                       std::to_string(CpuSet::kMaxId));
  }
  CpuSet ids;
  for (const auto& n : topo.numa_nodes)
    ids.set(n.id);
  if (req.policy == PlacementPolicy::kNodes) {
    if (req.nodes.empty())
      return fail(ErrorKind::kUsage, "policy nodes:LIST needs at least one node");
    for (int id : req.nodes) {
      const NumaNode* node = topo.node(id);
      if (!node) {
        return fail(ErrorKind::kUsage, "NUMA node " + std::to_string(id) +
                                           " does not exist (nodes: " + ids.to_list() + ")");
      }
      if (node_cpus[node - topo.numa_nodes.data()].empty()) {
        return fail(ErrorKind::kUsage, "NUMA node " + std::to_string(id) +
                                           " has no CPUs (memory only); use --mems to bind it");
      }
    }
  }
  if (req.mems == MemsMode::kList) {
    if (req.mems_list.empty()) return fail(ErrorKind::kUsage, "--mems LIST names no node");
    for (int id : req.mems_list.ids()) {
      if (!topo.node(id)) {
        return fail(ErrorKind::kUsage, "memory node " + std::to_string(id) +
                                           " does not exist (nodes: " + ids.to_list() + ")");
      }
      if (!req.allowed_mems.empty() && !req.allowed_mems.contains(id)) {
        return fail(ErrorKind::kUsage, "memory node " + std::to_string(id) +
                                           " is outside the allowed mems " +
                                           req.allowed_mems.to_list());
      }
    }
  }
  return {};
}

}  // namespace

Result<Placement> place(const Topology& topology, const CpuSet& allowed, const Ledger& ledger,
                        const PlacementRequest& request) {
  if (!topology.known() || topology.numa_nodes.empty()) {
    return fail(ErrorKind::kUnsupported,
                "cannot place: the topology is unknown (" + topology.unknown_reason + ")");
  }
  const Context ctx = make_context(topology, allowed, ledger);
  if (auto ok = check_request(topology, ctx.node_cpus, request); !ok) return fail(ok.error());
  const int tpc = ctx.threads_per_core;
  const int count = request.cpus > 0 ? request.cpus : request.cores * tpc;
  const bool strict_full = request.cores > 0 || request.smt == SmtMode::kFullCores;
  if (strict_full && count % tpc != 0) {
    return fail(ErrorKind::kUsage, "--smt full-cores needs a multiple of " + std::to_string(tpc) +
                                       " CPUs (threads per core), got " + std::to_string(count));
  }
  const bool try_full = strict_full || (request.smt == SmtMode::kAuto && count % tpc == 0);

  std::vector<int> candidates;  // node indices with CPUs that the policy may use
  if (request.policy == PlacementPolicy::kNodes) {
    for (size_t i = 0; i < topology.numa_nodes.size(); ++i) {
      const int id = topology.numa_nodes[i].id;
      if (std::find(request.nodes.begin(), request.nodes.end(), id) != request.nodes.end())
        candidates.push_back(static_cast<int>(i));
    }
  } else {
    for (size_t i = 0; i < ctx.nodes.size(); ++i) {
      if (ctx.nodes[i].free_any > 0) candidates.push_back(static_cast<int>(i));
    }
  }

  const auto attempt = [&](bool full) -> std::optional<Attempt> {
    std::vector<int> usable;
    for (int i : candidates) {
      if (ctx.nodes[i].cap(full) > 0) usable.push_back(i);
    }
    if (usable.empty()) return std::nullopt;
    switch (request.policy) {
      case PlacementPolicy::kCompact:
        return place_near(ctx, usable, count, full, false);
      case PlacementPolicy::kBalanced:
        return place_near(ctx, usable, count, full, true);
      case PlacementPolicy::kSpread:
      case PlacementPolicy::kNodes:
        return place_round_robin(ctx, candidates, count, full);
    }
    return std::nullopt;
  };

  std::optional<Attempt> result;
  bool full = false;
  if (try_full) {
    result = attempt(true);
    full = result.has_value();
  }
  // Whole cores win unless they cost an extra node: span what it must and no more.
  bool any_may_help = !strict_full;
  if (any_may_help && result) {
    std::vector<int> usable;
    for (int i : candidates) {
      if (ctx.nodes[i].free_any > 0) usable.push_back(i);
    }
    const bool near =
        request.policy == PlacementPolicy::kCompact || request.policy == PlacementPolicy::kBalanced;
    any_may_help = near && min_node_count(ctx, usable, count, false) < result->node_count;
  }
  if (any_may_help) {
    std::optional<Attempt> any = attempt(false);
    if (any && (!result || any->node_count < result->node_count)) {
      result = any;
      full = false;
    }
  }
  if (!result) {
    std::string where;
    if (request.policy == PlacementPolicy::kNodes)
      where = " on nodes " + node_list_text(request.nodes);
    return fail(ErrorKind::kResource,
                "cannot place " + std::to_string(count) + " CPUs" +
                    (strict_full ? " as whole cores" : "") + where + ": " +
                    free_summary(ctx, candidates, strict_full) +
                    (strict_full ? "; --smt any also hands out single threads" : ""));
  }

  Placement p;
  p.cpus = result->cpus;
  p.full_cores = full;
  p.policy = request.policy;
  std::vector<int> chosen;
  for (size_t i = 0; i < topology.numa_nodes.size(); ++i) {
    const int n = (ctx.node_cpus[i] & p.cpus).count();
    if (n == 0) continue;
    chosen.push_back(static_cast<int>(i));
    p.nodes.push_back(topology.numa_nodes[i].id);
    p.per_node[topology.numa_nodes[i].id] = n;
  }
  p.distance_score = pair_distance(ctx, chosen);
  double weighted = 0;
  for (int a : chosen) {
    for (int b : chosen)
      weighted +=
          double(p.per_node[ctx.nodes[a].id]) * p.per_node[ctx.nodes[b].id] * ctx.distance[a][b];
  }
  p.mean_distance = weighted / (double(count) * count);
  for (const CoreView& core : ctx.cores) {
    const int in = (core.cpus & p.cpus).count();
    if (in > 0 && in < core.width) ++p.split_cores;
  }
  auto mems = choose_mems(ctx, request, chosen);
  if (!mems) return fail(mems.error());
  p.mems = *mems;
  return p;
}

}  // namespace hostfit::before
