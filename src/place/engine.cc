// The placement engine: from the topology, the CPUs the caller may use and the ledger, which CPUs
// and memory nodes a request gets. Pure and deterministic: every choice ends in a tie-break on
// node ids or CPU ids, and nothing iterates an unordered container. docs/place.md explains it.
//
// Speed: what depends only on the topology (which node each CPU and core is on, the cores of each
// node in CPU order, the distance matrix) is indexed once in PlacementEngine; a decision then works
// on flat arrays of small integers and allocates a handful of buffers, never a CpuSet per core.
#include <algorithm>
#include <numeric>
#include <optional>
#include <tuple>

#include "hostfit/place.h"

namespace hostfit {

// A distance the kernel did not report is taken as far: such a node is chosen last.
constexpr int kUnknownDistance = 255;
// A core is a bit mask of its threads; wider ones (none known) are indexed as one core per thread.
constexpr int kMaxThreadsPerCore = 64;

// What place() needs of the topology, in flat arrays.
struct PlacementEngine::Index {
  std::string unknown_reason;  // set when the topology cannot be placed on
  int threads_per_core = 1;
  std::vector<int> node_id;       // by node index (the order of Topology::numa_nodes)
  std::vector<int> node_package;  // by node index
  std::vector<char> node_has_cpus;
  std::vector<int> node_index_by_id;  // by node id, -1 when no such node
  std::vector<int> distance;          // n x n, row-major, by node index
  int min_distance = 0;               // the smallest distance between two different nodes
  std::vector<int> nearest;           // by node index: its smallest distance to another node
  std::vector<int> cpu_node;          // by CPU id: the first node that lists it, -1 when none
  struct CoreEntry {
    int node = 0;   // node index
    int begin = 0;  // its threads: threads[begin, begin + width), ascending
    int width = 0;
  };
  std::vector<CoreEntry> cores;    // node by node, each node's cores in order of first CPU
  std::vector<int> threads;        // CPU ids
  std::vector<int> node_core_end;  // node i's cores are cores[end(i-1), end(i))

  size_t nodes() const { return node_id.size(); }
  int dist(int a, int b) const { return distance[static_cast<size_t>(a) * nodes() + b]; }
  int core_begin(int node) const { return node == 0 ? 0 : node_core_end[node - 1]; }
};

namespace {

using Index = PlacementEngine::Index;

std::shared_ptr<const Index> build_index(const Topology& topology) {
  auto index = std::make_shared<Index>();
  Index& x = *index;
  if (!topology.known() || topology.numa_nodes.empty()) {
    x.unknown_reason = topology.known() ? "no NUMA node" : topology.unknown_reason;
    return index;
  }
  x.threads_per_core = std::max(1, topology.threads_per_core);
  const size_t n = topology.numa_nodes.size();
  int max_cpu = -1, max_node_id = -1;
  for (const NumaNode& node : topology.numa_nodes) {
    max_cpu = std::max(max_cpu, node.cpus.last());
    max_node_id = std::max(max_node_id, node.id);
  }
  x.cpu_node.assign(static_cast<size_t>(max_cpu + 1), -1);
  x.node_index_by_id.assign(static_cast<size_t>(max_node_id + 1), -1);
  x.distance.assign(n * n, kUnknownDistance);
  for (size_t i = 0; i < n; ++i) {
    const NumaNode& node = topology.numa_nodes[i];
    x.node_id.push_back(node.id);
    x.node_package.push_back(node.package);
    x.node_has_cpus.push_back(!node.cpus.empty());
    if (node.id >= 0 && x.node_index_by_id[node.id] < 0)
      x.node_index_by_id[node.id] = static_cast<int>(i);
    node.cpus.for_each([&](int cpu) {
      if (x.cpu_node[cpu] < 0) x.cpu_node[cpu] = static_cast<int>(i);
    });
    for (size_t j = 0; j < n && j < node.distances.size(); ++j) {
      if (node.distances[j] >= 0) x.distance[i * n + j] = node.distances[j];
    }
  }
  x.min_distance = kUnknownDistance;
  x.nearest.assign(n, kUnknownDistance);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      if (i != j) x.nearest[i] = std::min(x.nearest[i], x.distance[i * n + j]);
    }
    x.min_distance = std::min(x.min_distance, x.nearest[i]);
  }
  // Each core is restricted to the CPUs of the node of its first CPU; a CPU in no NUMA node (e.g.
  // of an offline node) is never placed. CPUs hwloc put in a node but in no core are cores of one.
  std::vector<Index::CoreEntry> cores;
  std::vector<int> threads;
  std::vector<char> covered(x.cpu_node.size(), 0);
  const auto add_core = [&](auto&& for_each_cpu, int first) {
    if (first < 0 || first > max_cpu || x.cpu_node[first] < 0) return;
    const int node = x.cpu_node[first];
    Index::CoreEntry core{node, static_cast<int>(threads.size()), 0};
    for_each_cpu([&](int cpu) {
      if (cpu > max_cpu || x.cpu_node[cpu] != node) return;
      if (core.width == kMaxThreadsPerCore) {
        cores.push_back(core);
        core = {node, static_cast<int>(threads.size()), 0};
      }
      threads.push_back(cpu);
      ++core.width;
    });
    if (core.width > 0) cores.push_back(core);
  };
  for (const Core& core : topology.cores) {
    if (core.cpus.empty()) continue;
    add_core([&](auto&& f) { core.cpus.for_each(f); }, core.cpus.first());
    core.cpus.for_each([&](int cpu) {
      if (cpu <= max_cpu) covered[cpu] = 1;
    });
  }
  for (const NumaNode& node : topology.numa_nodes) {
    node.cpus.for_each([&](int cpu) {
      if (!covered[cpu]) add_core([&](auto&& f) { f(cpu); }, cpu);
    });
  }
  // Node by node, each node's cores by first CPU.
  std::vector<int> order(cores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return std::make_pair(cores[a].node, threads[cores[a].begin]) <
           std::make_pair(cores[b].node, threads[cores[b].begin]);
  });
  x.node_core_end.assign(n, 0);
  for (int c : order) {
    Index::CoreEntry core = cores[c];
    const int begin = static_cast<int>(x.threads.size());
    x.threads.insert(x.threads.end(), threads.begin() + core.begin,
                     threads.begin() + core.begin + core.width);
    core.begin = begin;
    x.cores.push_back(core);
    ++x.node_core_end[core.node];
  }
  for (size_t i = 1; i < n; ++i)
    x.node_core_end[i] += x.node_core_end[i - 1];
  return index;
}

struct NodeView {
  int free_any = 0;   // free CPUs
  int free_full = 0;  // CPUs in whole free cores
  int held = 0;       // CPUs of this node held in the ledger (the node's load)
  int shared = 0;     // free CPUs that a foreign pin shares (a cost, like load)
  int cap(bool full) const { return full ? free_full : free_any; }
};

// What the engine knows about the machine for one decision.
struct Context {
  const Index* x = nullptr;
  std::vector<NodeView> nodes;      // by node index
  std::vector<uint64_t> core_free;  // by core: bit t set when thread t is allowed and unheld
  std::vector<char> core_shared;    // by core: a free thread is in a foreign pin
  int threads_per_core = 1;

  int width(int c) const { return x->cores[c].width; }
  bool whole(int c) const {
    const int w = width(c);
    return w > 0 && core_free[c] == (w == 64 ? ~uint64_t{0} : (uint64_t{1} << w) - 1);
  }
};

Context make_context(const Index& x, const CpuSet& allowed, const Ledger& ledger,
                     const CpuSet& shared) {
  Context ctx;
  ctx.x = &x;
  ctx.threads_per_core = x.threads_per_core;
  ctx.nodes.assign(x.nodes(), NodeView{});
  // Per CPU: bit 0 allowed, bit 1 held, bit 2 shared with a foreign pin.
  std::vector<uint8_t> state(x.cpu_node.size(), 0);
  const int max_cpu = static_cast<int>(state.size()) - 1;
  allowed.for_each([&](int cpu) {
    if (cpu <= max_cpu) state[cpu] |= 1;
  });
  for (const Hold& h : ledger.holds()) {
    h.cpus.for_each([&](int cpu) {
      if (cpu > max_cpu || (state[cpu] & 2)) return;
      state[cpu] |= 2;
      if (x.cpu_node[cpu] >= 0) ++ctx.nodes[x.cpu_node[cpu]].held;
    });
  }
  shared.for_each([&](int cpu) {
    if (cpu <= max_cpu) state[cpu] |= 4;
  });
  ctx.core_free.assign(x.cores.size(), 0);
  ctx.core_shared.assign(x.cores.size(), 0);
  for (size_t c = 0; c < x.cores.size(); ++c) {
    const Index::CoreEntry& core = x.cores[c];
    const int* threads = x.threads.data() + core.begin;
    uint64_t free = 0;
    int n_free = 0, n_shared = 0;
    for (int t = 0; t < core.width; ++t) {
      const uint8_t s = state[threads[t]];
      const int is_free = (s & 3) == 1;
      free |= static_cast<uint64_t>(is_free) << t;
      n_free += is_free;
      n_shared += is_free & (s >> 2);
    }
    ctx.core_free[c] = free;
    ctx.core_shared[c] = n_shared > 0;
    NodeView& node = ctx.nodes[core.node];
    node.free_any += n_free;
    node.shared += n_shared;
    if (n_free == core.width) node.free_full += core.width;
  }
  return ctx;
}

// Picks `count` CPUs of one node into `out`: whole cores of the usual width first (lowest ids
// first; cores no foreign pin shares before those it does), then narrower whole cores; unless
// full_cores, then the free threads of cores already shared, and only then threads of whole
// cores (splitting them). False when that cannot make `count`; `out` is then unspecified.
bool pick_in_node(const Context& ctx, int node, int count, bool full_cores, std::vector<int>& out) {
  const Index& x = *ctx.x;
  const int begin = x.core_begin(node), end = x.node_core_end[node];
  int left = count;
  std::vector<int> whole;
  for (int c = begin; c < end; ++c) {
    if (ctx.whole(c)) whole.push_back(c);
  }
  std::stable_sort(whole.begin(), whole.end(), [&](int a, int b) {
    return std::make_pair(ctx.width(a) != ctx.threads_per_core, ctx.core_shared[a]) <
           std::make_pair(ctx.width(b) != ctx.threads_per_core, ctx.core_shared[b]);
  });
  std::vector<char> taken(static_cast<size_t>(end - begin), 0);
  for (int c : whole) {
    if (left == 0) break;
    if (ctx.width(c) > left) continue;
    for (int t = 0; t < ctx.width(c); ++t)
      out.push_back(x.threads[x.cores[c].begin + t]);
    left -= ctx.width(c);
    taken[c - begin] = 1;
  }
  if (full_cores) return left == 0;
  const auto take_threads = [&](bool from_whole) {
    for (int c = begin; c < end && left > 0; ++c) {
      if (taken[c - begin] || ctx.whole(c) != from_whole) continue;
      for (int t = 0; t < ctx.width(c) && left > 0; ++t) {
        if (!(ctx.core_free[c] >> t & 1)) continue;
        out.push_back(x.threads[x.cores[c].begin + t]);
        --left;
      }
    }
  };
  take_threads(false);
  take_threads(true);
  return left == 0;
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
  int load = 0;            // CPUs held (and shared with foreign pins) on these nodes; balanced
  std::vector<int> ids;    // node ids, ascending: the final tie-break
  std::vector<int> nodes;  // node indices, in fill order
  auto key() const { return std::tie(packages, distance, load, ids); }
};

int pair_distance(const Index& x, const std::vector<int>& nodes) {
  int sum = 0;
  for (size_t a = 0; a < nodes.size(); ++a) {
    for (size_t b = a + 1; b < nodes.size(); ++b)
      sum += x.dist(nodes[a], nodes[b]);
  }
  return sum;
}

int load_of(const Context& ctx, int node) {
  return ctx.nodes[node].held + ctx.nodes[node].shared;
}

// Whether a set that starts as `chosen` (flags in `in_set`) and ends with k nodes of at least
// these packages, pair distance and load must rank after `best`. On a tie of those, the lowest ids
// it could still end with (chosen plus the lowest ids outside it) decide.
bool bound_loses(const Index& x, const std::vector<int>& chosen, const std::vector<char>& in_set,
                 int k, int packages, int distance, int load, const Candidate& best,
                 std::vector<int>& ids) {
  const auto bound = std::tie(packages, distance, load);
  const auto best_key = std::tie(best.packages, best.distance, best.load);
  if (bound != best_key) return bound > best_key;
  ids.clear();
  for (int i : chosen)
    ids.push_back(x.node_id[i]);
  for (size_t i = 0; i < x.nodes() && static_cast<int>(ids.size()) < k; ++i) {
    if (!in_set[i]) ids.push_back(x.node_id[i]);
  }
  std::sort(ids.begin(), ids.end());
  return ids >= best.ids;  // equal ids: at best the best set itself, already a candidate
}

// The cheap bound for a seed alone, before any work on it: every other node of its set is at
// least the seed's nearest distance away, and on a tie its lowest possible ids are the seed and
// the k - 1 lowest other ids. Allocates nothing: on the hosts of the benchmark all but the first
// few seeds end here.
bool seed_loses(const Context& ctx, int seed, int k, bool balanced, const Candidate& best) {
  const Index& x = *ctx.x;
  const int m = k - 1;
  const int distance = m * x.nearest[seed] + m * (m - 1) / 2 * x.min_distance;
  const int load = balanced ? load_of(ctx, seed) : 0;
  const auto bound = std::make_tuple(1, distance, load);
  const auto best_key = std::make_tuple(best.packages, best.distance, best.load);
  if (bound != best_key) return bound > best_key;
  // Node indices ascend with ids: merge the seed into the lowest k - 1 other indices.
  int next = 0, others = 0;
  bool seed_placed = false;
  for (int pos = 0; pos < k; ++pos) {
    if (next == seed) ++next;
    int index;
    if (!seed_placed && (others == m || seed < next)) {
      index = seed;
      seed_placed = true;
    } else {
      index = next++;
      ++others;
    }
    const int id = x.node_id[index];
    if (id != best.ids[pos]) return id > best.ids[pos];
  }
  return true;  // at best the best set itself, which is already a candidate
}

// Whether every k-set grown from `chosen` ranks after `best`, so the seed can be dropped: its
// packages and load can only grow, and its pair distance by at least the nearest outside node per
// remaining pick plus the smallest distance per remaining pair.
bool cannot_beat(const Context& ctx, const std::vector<int>& chosen,
                 const std::vector<char>& in_set, const std::vector<int>& dist_to_set,
                 const std::vector<int>& usable, int k, bool balanced, const Candidate& best,
                 std::vector<int>& ids) {
  const Index& x = *ctx.x;
  int packages = 0, load = 0;
  for (size_t a = 0; a < chosen.size(); ++a) {
    bool first = true;
    for (size_t b = 0; b < a; ++b)
      first = first && x.node_package[chosen[b]] != x.node_package[chosen[a]];
    packages += first ? 1 : 0;
    if (balanced) load += load_of(ctx, chosen[a]);
  }
  const int m = k - static_cast<int>(chosen.size());
  int distance = pair_distance(x, chosen);
  if (m > 0) {
    int nearest = -1;
    for (int c : usable) {
      if (!in_set[c] && (nearest < 0 || dist_to_set[c] < nearest)) nearest = dist_to_set[c];
    }
    if (nearest < 0) return true;  // nothing left to add: this seed yields no set
    distance += m * nearest + m * (m - 1) / 2 * x.min_distance;
  }
  return bound_loses(x, chosen, in_set, k, packages, distance, load, best, ids);
}

// Node sets of exactly k nodes that can hold `count`, without looking at all subsets: from each
// seed, add the node nearest to the set (same package as the seed first, then the smallest sum of
// distances to the chosen nodes, then the least loaded for balanced, then the lowest id) among
// those that still leave the set able to reach `count` with its remaining picks. With `prune`,
// seeds whose set provably ranks after the best found so far are dropped: the first candidate is
// the same, the rest is not the full list.
std::vector<Candidate> grow_candidates(const Context& ctx, const std::vector<int>& usable, int k,
                                       int count, bool full, bool balanced, bool prune) {
  const Index& x = *ctx.x;
  const auto cap = [&](int i) { return ctx.nodes[i].cap(full); };
  std::vector<int> by_cap = usable;  // capacity descending, then index
  std::stable_sort(by_cap.begin(), by_cap.end(), [&](int a, int b) { return cap(a) > cap(b); });
  const size_t n = x.nodes();
  std::vector<Candidate> out;
  std::vector<char> in_set(n), in_top_r(n);
  std::vector<int> dist_to_set(n), chosen, top;
  int best_so_far = -1;  // index into out
  std::vector<int> ids;
  for (int seed : usable) {
    if (prune && best_so_far >= 0 && seed_loses(ctx, seed, k, balanced, out[best_so_far])) continue;
    std::fill(in_set.begin(), in_set.end(), 0);
    chosen.assign(1, seed);
    in_set[seed] = 1;
    int sum = cap(seed);
    for (size_t i = 0; i < n; ++i)
      dist_to_set[i] = x.dist(static_cast<int>(i), seed);
    bool ok = true;
    while (static_cast<int>(chosen.size()) < k) {
      if (prune && best_so_far >= 0 &&
          cannot_beat(ctx, chosen, in_set, dist_to_set, usable, k, balanced, out[best_so_far],
                      ids)) {
        ok = false;
        break;
      }
      // The r largest capacities outside the set bound what the picks after this one can add.
      const int r = k - static_cast<int>(chosen.size()) - 1;
      top.clear();
      for (int i : by_cap) {
        if (static_cast<int>(top.size()) > r) break;
        if (!in_set[i]) top.push_back(i);
      }
      int sum_r = 0, sum_r1 = 0;
      for (size_t t = 0; t < top.size(); ++t) {
        if (static_cast<int>(t) < r) {
          sum_r += cap(top[t]);
          in_top_r[top[t]] = 1;
        }
        sum_r1 += cap(top[t]);
      }
      int best = -1;
      std::tuple<bool, int, int, int> best_key;
      for (int c : usable) {
        if (in_set[c]) continue;
        const int rest = in_top_r[c] ? sum_r1 - cap(c) : sum_r;
        if (sum + cap(c) + rest < count) continue;
        const std::tuple<bool, int, int, int> key{x.node_package[c] != x.node_package[seed],
                                                  dist_to_set[c], balanced ? load_of(ctx, c) : 0,
                                                  x.node_id[c]};
        if (best < 0 || key < best_key) {
          best = c;
          best_key = key;
        }
      }
      for (int i : top)
        in_top_r[i] = 0;
      if (best < 0) {
        ok = false;
        break;
      }
      chosen.push_back(best);
      in_set[best] = 1;
      sum += cap(best);
      for (size_t i = 0; i < n; ++i)
        dist_to_set[i] += x.dist(static_cast<int>(i), best);
    }
    if (!ok || sum < count) continue;
    Candidate cand;
    for (int i : chosen)
      cand.ids.push_back(x.node_id[i]);
    std::sort(cand.ids.begin(), cand.ids.end());
    // At most one candidate per node set: the one from the first seed that reached it.
    const bool seen =
        std::any_of(out.begin(), out.end(), [&](const Candidate& c) { return c.ids == cand.ids; });
    if (seen) continue;
    std::vector<int> packages;
    for (int i : chosen) {
      packages.push_back(x.node_package[i]);
      if (balanced) cand.load += load_of(ctx, i);
    }
    std::sort(packages.begin(), packages.end());
    cand.packages =
        static_cast<int>(std::unique(packages.begin(), packages.end()) - packages.begin());
    cand.distance = pair_distance(x, chosen);
    cand.nodes = chosen;
    if (best_so_far < 0 || cand.key() < out[best_so_far].key())
      best_so_far = static_cast<int>(out.size());
    out.push_back(std::move(cand));
  }
  std::sort(out.begin(), out.end(),
            [](const Candidate& a, const Candidate& b) { return a.key() < b.key(); });
  return out;
}

// CPUs for given per-node shares into `out`; false when a node cannot make its share.
bool pick_shares(const Context& ctx, const std::vector<int>& nodes, const std::vector<int>& shares,
                 bool full, std::vector<int>& out) {
  out.clear();
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (shares[i] == 0) continue;
    if (!pick_in_node(ctx, nodes[i], shares[i], full, out)) return false;
  }
  return true;
}

// The smallest k whose k largest capacities hold count; 0 when even all of them do not. Counts
// capacities by value (they are at most a node's CPUs), so it neither sorts nor allocates.
int min_node_count(const Context& ctx, const std::vector<int>& usable, int count, bool full) {
  thread_local std::vector<int> nodes_with_cap;
  int max_cap = 0;
  for (int i : usable)
    max_cap = std::max(max_cap, ctx.nodes[i].cap(full));
  nodes_with_cap.assign(static_cast<size_t>(max_cap) + 1, 0);
  for (int i : usable)
    ++nodes_with_cap[ctx.nodes[i].cap(full)];
  int sum = 0, k = 0;
  for (int cap = max_cap; cap > 0; --cap) {
    const int n = nodes_with_cap[cap];
    if (n == 0) continue;
    if (sum + n * cap >= count) return k + (count - sum + cap - 1) / cap;
    sum += n * cap;
    k += n;
  }
  return 0;
}

struct Attempt {
  std::vector<int> cpus;
  int node_count = 0;
};

// The CPUs of one candidate node set: its share per node (balanced: an even split in whole
// cores; compact: the roomiest node filled first), picked node by node. False when it cannot.
bool try_candidate(const Context& ctx, const Candidate& cand, int count, bool full, bool balanced,
                   std::vector<int>& cpus) {
  const Index& x = *ctx.x;
  // Both policies fill (or give the extra cores to) the roomiest node first, then lowest id.
  std::vector<int> order = cand.nodes;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return std::make_pair(-ctx.nodes[a].cap(full), x.node_id[a]) <
           std::make_pair(-ctx.nodes[b].cap(full), x.node_id[b]);
  });
  std::vector<int> shares;
  if (balanced) {
    std::vector<int> caps;
    for (int i : order)
      caps.push_back(ctx.nodes[i].cap(full));
    auto split = even_split(caps, count, ctx.threads_per_core);
    if (!split) return false;
    shares = std::move(*split);
  } else {
    int left = count;
    for (int i : order) {
      const int share = std::min(left, ctx.nodes[i].cap(full));
      shares.push_back(share);
      left -= share;
    }
  }
  return pick_shares(ctx, order, shares, full, cpus);
}

// Compact or balanced with one SMT mode. nullopt when it does not fit.
std::optional<Attempt> place_near(const Context& ctx, const std::vector<int>& usable, int count,
                                  bool full, bool balanced) {
  const int k = min_node_count(ctx, usable, count, full);
  if (k == 0) return std::nullopt;
  Attempt attempt{{}, k};
  // The best set almost always can be picked; only when it cannot are all sets grown, and the
  // first of them that can be picked wins, as it would have without pruning.
  std::vector<Candidate> pruned = grow_candidates(ctx, usable, k, count, full, balanced, true);
  if (!pruned.empty() && try_candidate(ctx, pruned.front(), count, full, balanced, attempt.cpus))
    return attempt;
  for (const Candidate& cand : grow_candidates(ctx, usable, k, count, full, balanced, false)) {
    if (try_candidate(ctx, cand, count, full, balanced, attempt.cpus)) return attempt;
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
  Attempt attempt;
  if (!pick_shares(ctx, nodes, *shares, full, attempt.cpus)) return std::nullopt;
  for (int s : *shares)
    attempt.node_count += s > 0 ? 1 : 0;
  return attempt;
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
    per += (per.empty() ? "" : ", ") + ("node " + std::to_string(ctx.x->node_id[i])) + ": " +
           std::to_string(cap);
  }
  if (total == 0) return "none free";
  return std::to_string(total) + " free" + (full ? " in whole cores" : "") + " (" + per + ")";
}

int nearest(const Index& x, int from, const std::vector<int>& among) {
  // A node is nearest to itself, even when the distance matrix does not say so.
  if (std::find(among.begin(), among.end(), from) != among.end()) return from;
  int best = -1;
  for (int i : among) {
    if (best < 0 || x.dist(from, i) < x.dist(from, best)) best = i;
  }
  return best;
}

Result<CpuSet> choose_mems(const Index& x, const PlacementRequest& req,
                           const std::vector<int>& chosen) {
  std::vector<int> allowed;  // node indices, ascending id
  for (size_t i = 0; i < x.nodes(); ++i) {
    if (req.allowed_mems.empty() || req.allowed_mems.contains(x.node_id[i]))
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
        mems.set(x.node_id[i]);
      return mems;
    case MemsMode::kList:
      return req.mems_list;  // checked against the topology before placing
    case MemsMode::kFollow:
    case MemsMode::kNear:
      break;
  }
  for (int i : chosen)
    mems.set(x.node_id[nearest(x, i, allowed)]);
  if (req.mems == MemsMode::kNear) {
    std::vector<int> cpu_nodes;
    for (size_t i = 0; i < x.nodes(); ++i) {
      if (x.node_has_cpus[i]) cpu_nodes.push_back(static_cast<int>(i));
    }
    for (int m : allowed) {
      if (x.node_has_cpus[m] || cpu_nodes.empty()) continue;
      const int home = nearest(x, m, cpu_nodes);
      if (std::find(chosen.begin(), chosen.end(), home) != chosen.end()) mems.set(x.node_id[m]);
    }
  }
  return mems;
}

int node_index(const Index& x, int id) {
  if (id < 0 || id >= static_cast<int>(x.node_index_by_id.size())) return -1;
  return x.node_index_by_id[id];
}

Status check_request(const Index& x, const PlacementRequest& req) {
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
  const auto ids = [&] { return node_list_text(x.node_id); };
  if (req.policy == PlacementPolicy::kNodes) {
    if (req.nodes.empty())
      return fail(ErrorKind::kUsage, "policy nodes:LIST needs at least one node");
    for (int id : req.nodes) {
      const int i = node_index(x, id);
      if (i < 0) {
        return fail(ErrorKind::kUsage,
                    "NUMA node " + std::to_string(id) + " does not exist (nodes: " + ids() + ")");
      }
      if (!x.node_has_cpus[i]) {
        return fail(ErrorKind::kUsage, "NUMA node " + std::to_string(id) +
                                           " has no CPUs (memory only); use --mems to bind it");
      }
    }
  }
  if (req.mems == MemsMode::kList) {
    if (req.mems_list.empty()) return fail(ErrorKind::kUsage, "--mems LIST names no node");
    for (int id : req.mems_list.ids()) {
      if (node_index(x, id) < 0) {
        return fail(ErrorKind::kUsage,
                    "memory node " + std::to_string(id) + " does not exist (nodes: " + ids() + ")");
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

// The placement's figures: nodes, per-node counts, distances, split cores, memory nodes.
Result<Placement> describe(const Context& ctx, const PlacementRequest& request,
                           const std::vector<int>& cpus, bool full) {
  const Index& x = *ctx.x;
  Placement p;
  p.full_cores = full;
  p.policy = request.policy;
  std::vector<int> per_index(x.nodes(), 0);
  std::vector<char> picked(x.cpu_node.size(), 0);
  for (int cpu : cpus) {
    p.cpus.set(cpu);
    picked[cpu] = 1;
    ++per_index[x.cpu_node[cpu]];
  }
  std::vector<int> chosen;
  for (size_t i = 0; i < x.nodes(); ++i) {
    if (per_index[i] == 0) continue;
    chosen.push_back(static_cast<int>(i));
    p.nodes.push_back(x.node_id[i]);
    p.per_node[x.node_id[i]] = per_index[i];
  }
  p.distance_score = pair_distance(x, chosen);
  double weighted = 0;
  for (int a : chosen) {
    for (int b : chosen)
      weighted += double(per_index[a]) * per_index[b] * x.dist(a, b);
  }
  const double count = static_cast<double>(cpus.size());
  p.mean_distance = weighted / (count * count);
  for (int node : chosen) {
    for (int c = x.core_begin(node); c < x.node_core_end[node]; ++c) {
      int in = 0;
      for (int t = 0; t < ctx.width(c); ++t)
        in += picked[x.threads[x.cores[c].begin + t]];
      if (in > 0 && in < ctx.width(c)) ++p.split_cores;
    }
  }
  auto mems = choose_mems(x, request, chosen);
  if (!mems) return fail(mems.error());
  p.mems = *mems;
  CpuSet remote;
  for (int id : p.nodes) {
    if (!p.mems.contains(id)) remote.set(id);
  }
  if (request.mems == MemsMode::kList && !remote.empty()) {
    p.warnings.push_back("--mems " + p.mems.to_list() + " leaves out node" +
                         (remote.count() == 1 ? " " : "s ") + remote.to_list() +
                         " of the placed CPUs: their memory will be remote");
  }
  return p;
}

}  // namespace

PlacementEngine::PlacementEngine(const Topology& topology) : index_(build_index(topology)) {}

Result<Placement> PlacementEngine::place(const CpuSet& allowed, const Ledger& ledger,
                                         const PlacementRequest& request,
                                         const CpuSet& shared_with_others) const {
  const Index& x = *index_;
  if (!x.unknown_reason.empty())
    return fail(ErrorKind::kUnsupported,
                "cannot place: the topology is unknown (" + x.unknown_reason + ")");
  if (auto ok = check_request(x, request); !ok) return fail(ok.error());
  const Context ctx = make_context(x, allowed, ledger, shared_with_others);
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
    for (size_t i = 0; i < x.nodes(); ++i) {
      if (std::find(request.nodes.begin(), request.nodes.end(), x.node_id[i]) !=
          request.nodes.end())
        candidates.push_back(static_cast<int>(i));
    }
  } else {
    for (size_t i = 0; i < x.nodes(); ++i) {
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
      result = std::move(any);
      full = false;
    }
  }
  if (!result) {
    std::string where;
    if (request.policy == PlacementPolicy::kNodes)
      where = " on nodes " + node_list_text(request.nodes);
    // On a host with one thread per core, single threads are whole cores: no hint helps.
    const bool hint = strict_full && tpc > 1;
    return fail(ErrorKind::kResource,
                "cannot place " + std::to_string(count) + (count == 1 ? " CPU" : " CPUs") +
                    (strict_full ? " as whole cores" : "") + where + ": " +
                    free_summary(ctx, candidates, strict_full) +
                    (hint ? "; --smt any also hands out single threads" : ""));
  }
  return describe(ctx, request, result->cpus, full);
}

Result<Placement> place(const Topology& topology, const CpuSet& allowed, const Ledger& ledger,
                        const PlacementRequest& request, const CpuSet& shared_with_others) {
  return PlacementEngine(topology).place(allowed, ledger, request, shared_with_others);
}

}  // namespace hostfit
