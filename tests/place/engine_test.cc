// The placement engine on generated machines (src/place/engine.cc).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "place_fixtures.h"

namespace hostfit {
namespace {

using ::testing::HasSubstr;
using testing_place::cpus;
using testing_place::incident_machine;
using testing_place::Machine;
using testing_place::make_machine;
using testing_place::shape;

int package_of(const Topology& t, int node_id) {
  return t.node(node_id)->package;
}

// Every core the placement touches is taken whole.
void expect_whole_cores(const Topology& t, const CpuSet& placed) {
  for (const Core& core : t.cores) {
    const int in = (core.cpus & placed).count();
    EXPECT_TRUE(in == 0 || in == core.cpus.count())
        << "core " << core.cpus.to_list() << " split by " << placed.to_list();
  }
}

TEST(PlaceEngineTest, BalancedSpansThreeNearNodesOfOneSocketFor48CpusOn16CpuNodes) {
  const Machine& m = incident_machine();
  ASSERT_EQ(m.topology().numa_nodes.size(), 24u);
  const auto p = place(m.topology(), m.allowed, Ledger{}, cpus(48));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->cpus.count(), 48);
  ASSERT_EQ(p->nodes.size(), 3u);
  for (int id : p->nodes) {
    EXPECT_EQ(p->per_node.at(id), 16);
    EXPECT_EQ(package_of(m.topology(), id), package_of(m.topology(), p->nodes[0]));
  }
  // Mutually nearest: every pair at the same-socket distance.
  EXPECT_EQ(p->distance_score, 3 * 16);
  expect_whole_cores(m.topology(), p->cpus);
  EXPECT_EQ(p->split_cores, 0);
  EXPECT_TRUE(p->full_cores);
  CpuSet nodes;
  for (int id : p->nodes)
    nodes.set(id);
  EXPECT_EQ(p->mems, nodes);
}

TEST(PlaceEngineTest, ThreeMoreBalancedRequestsLandOnOtherLeastLoadedNodes) {
  const Machine& m = incident_machine();
  Ledger ledger;
  std::set<int> used;
  for (int i = 0; i < 4; ++i) {
    const auto p = place(m.topology(), m.allowed, ledger, cpus(48));
    ASSERT_TRUE(p) << p.error().message;
    ASSERT_EQ(p->nodes.size(), 3u) << "request " << i;
    for (int id : p->nodes) {
      EXPECT_TRUE(used.insert(id).second) << "node " << id << " used twice (request " << i << ")";
      EXPECT_EQ(p->per_node.at(id), 16);
      EXPECT_EQ(package_of(m.topology(), id), package_of(m.topology(), p->nodes[0]));
    }
    EXPECT_EQ(p->distance_score, 48);
    expect_whole_cores(m.topology(), p->cpus);
    ASSERT_TRUE(ledger.hold("job" + std::to_string(i), p->cpus, p->mems));
  }
}

TEST(PlaceEngineTest, BalancedPrefersTheLeastLoadedNode) {
  const Machine m = make_machine(shape(1, 4, 8, 2));
  Ledger ledger;
  // A little load on nodes 0 and 1, more on node 3: node 2 is the least loaded.
  const auto& nodes = m.topology().numa_nodes;
  ASSERT_TRUE(ledger.hold("a", CpuSet::of({nodes[0].cpus.first()}), CpuSet::of({0})));
  ASSERT_TRUE(ledger.hold("b", CpuSet::of({nodes[1].cpus.first()}), CpuSet::of({1})));
  const auto p = place(m.topology(), m.allowed, ledger, cpus(8));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->nodes, std::vector<int>({2}));
}

TEST(PlaceEngineTest, CompactPicksTheNearestNodesOnOneSocket) {
  // 2 sockets x 2 nodes of 16 CPUs; node 1 is fully held. 32 CPUs fit on nodes 2+3 (distance 16)
  // or on 0+2 (distance 32, two sockets).
  const Machine m = make_machine(shape(2, 2, 8, 2));
  Ledger ledger;
  ASSERT_TRUE(ledger.hold("x", m.topology().node(1)->cpus, CpuSet::of({1})));
  const auto p = place(m.topology(), m.allowed, ledger, cpus(32, PlacementPolicy::kCompact));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->nodes, std::vector<int>({2, 3}));
  EXPECT_EQ(p->distance_score, 16);
}

TEST(PlaceEngineTest, CompactUsesTheFewestNodesByFreeCpus) {
  // Nodes 0 and 1 are half held; 16 CPUs fit on one free node, not on 0+1 though those are
  // the lowest ids.
  const Machine m = make_machine(shape(1, 4, 8, 2));
  Ledger ledger;
  const auto& t = m.topology();
  const auto half = [&](int node) {
    std::vector<int> ids = t.node(node)->cpus.ids();
    CpuSet s;
    for (size_t i = 0; i < ids.size() / 2; ++i)
      s.set(ids[i]);
    return s;
  };
  ASSERT_TRUE(ledger.hold("a", half(0), CpuSet::of({0})));
  ASSERT_TRUE(ledger.hold("b", half(1), CpuSet::of({1})));
  const auto p = place(t, m.allowed, ledger, cpus(16, PlacementPolicy::kCompact));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->nodes, std::vector<int>({2}));
}

TEST(PlaceEngineTest, UnequalNodesSpanWhatTheirFreeCpusNeed) {
  // 4 nodes of 8 cores x 2 threads with two cores of every node offline: 12 CPUs per node, so
  // 32 CPUs need 3 nodes, not ceil(32/16) = 2.
  auto s = shape(1, 4, 8, 2);
  std::string offline;
  for (int node = 0; node < 4; ++node) {
    for (int core = 6; core < 8; ++core) {
      for (int thread = 0; thread < 2; ++thread) {
        offline += (offline.empty() ? "" : ",") +
                   std::to_string(fixtures::cpu_id(s, 0, node, core, thread));
      }
    }
  }
  s.offline_cpus = offline;
  const Machine m = make_machine(s);
  ASSERT_EQ(m.allowed.count(), 48);
  const auto p = place(m.topology(), m.allowed, Ledger{}, cpus(32));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->nodes.size(), 3u);
  int lo = 99, hi = 0;
  for (const auto& [id, n] : p->per_node) {
    lo = std::min(lo, n);
    hi = std::max(hi, n);
  }
  EXPECT_LE(hi - lo, 2) << "split differs by more than one core";
  EXPECT_TRUE(p->cpus.is_subset_of(m.allowed));
  expect_whole_cores(m.topology(), p->cpus);
}

TEST(PlaceEngineTest, OneFullNodeAmongShrunkenOnesTakesTheRequestAlone) {
  auto s = shape(1, 3, 8, 2);
  s.offline_cpus = std::to_string(fixtures::cpu_id(s, 0, 0, 7, 1)) + "," +
                   std::to_string(fixtures::cpu_id(s, 0, 2, 7, 1));
  const Machine m = make_machine(s);
  const auto p = place(m.topology(), m.allowed, Ledger{}, cpus(16, PlacementPolicy::kCompact));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->nodes, std::vector<int>({1}));
}

TEST(PlaceEngineTest, SpreadRoundRobinsACoreAtATimeOverAllNodes) {
  const Machine m = make_machine(shape(2, 2, 4, 2));
  const auto p = place(m.topology(), m.allowed, Ledger{}, cpus(8, PlacementPolicy::kSpread));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->per_node, (std::map<int, int>{{0, 2}, {1, 2}, {2, 2}, {3, 2}}));
  expect_whole_cores(m.topology(), p->cpus);
}

TEST(PlaceEngineTest, NodesListUsesOnlyThoseNodes) {
  const Machine m = make_machine(shape(2, 2, 4, 2));
  auto req = cpus(8, PlacementPolicy::kNodes);
  req.nodes = {1, 3};
  const auto p = place(m.topology(), m.allowed, Ledger{}, req);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->per_node, (std::map<int, int>{{1, 4}, {3, 4}}));
  EXPECT_EQ(p->mems.to_list(), "1,3");
}

TEST(PlaceEngineTest, SmtAnyTakesWholeCoresBeforeSingleThreads) {
  const Machine m = make_machine(shape(1, 1, 4, 2));
  auto req = cpus(3);
  req.smt = SmtMode::kAny;
  const auto p = place(m.topology(), m.allowed, Ledger{}, req);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->cpus.count(), 3);
  EXPECT_EQ(p->split_cores, 1);
  EXPECT_FALSE(p->full_cores);
  // The lowest core whole (0 and its sibling 4), then one thread of the next.
  EXPECT_EQ(p->cpus.to_list(), "0-1,4");
}

TEST(PlaceEngineTest, AutoFillsSharedCoresWhenWholeCoresWouldCostAnotherNode) {
  // One node of 8 cores x 2 threads; one thread of cores 0-3 is held: 8 CPUs in whole cores and
  // 4 single threads free. 12 CPUs fit on this node only by using the single threads.
  const Machine m = make_machine(shape(1, 1, 8, 2));
  Ledger ledger;
  ASSERT_TRUE(ledger.hold("a", CpuSet::range(0, 3), CpuSet::of({0})));
  const auto p = place(m.topology(), m.allowed, ledger, cpus(12));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_FALSE(p->full_cores);
  EXPECT_EQ(p->cpus, CpuSet::range(4, 15));
  auto strict = cpus(12);
  strict.smt = SmtMode::kFullCores;
  const auto refused = place(m.topology(), m.allowed, ledger, strict);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind, ErrorKind::kResource);
  EXPECT_THAT(refused.error().message, HasSubstr("8 free in whole cores"));
}

TEST(PlaceEngineTest, CoresRequestTakesWholeCores) {
  const Machine m = make_machine(shape(1, 2, 4, 2));
  PlacementRequest req;
  req.cores = 3;
  const auto p = place(m.topology(), m.allowed, Ledger{}, req);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->cpus.count(), 6);
  expect_whole_cores(m.topology(), p->cpus);
}

TEST(PlaceEngineTest, RefusalSaysWhatIsFreePerNode) {
  // 8 nodes of 16 CPUs; everything held except 8 CPUs of node 3 and all of node 7.
  const Machine m = make_machine(shape(1, 8, 8, 2));
  Ledger ledger;
  const auto& t = m.topology();
  CpuSet held;
  for (const auto& n : t.numa_nodes) {
    if (n.id != 3 && n.id != 7) held |= n.cpus;
  }
  for (int core = 0; core < 4; ++core) {
    for (int thread = 0; thread < 2; ++thread)
      held.set(fixtures::cpu_id(shape(1, 8, 8, 2), 0, 3, core, thread));
  }
  ASSERT_TRUE(ledger.hold("x", held, CpuSet::of({0})));
  const auto p = place(t, m.allowed, ledger, cpus(48));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().kind, ErrorKind::kResource);
  EXPECT_EQ(p.error().message, "cannot place 48 CPUs: 24 free (node 3: 8, node 7: 16)");
}

TEST(PlaceEngineTest, IsolatedAndDisallowedCpusAreNeverHandedOut) {
  auto s = shape(1, 2, 4, 2);  // CPUs 0-15
  s.isolated_cpus = "0,8";
  s.affinity = "0-5,8-13";
  const Machine m = make_machine(s);
  EXPECT_EQ(m.allowed.to_list(), "1-5,9-13");
  auto req = cpus(10, PlacementPolicy::kSpread);
  const auto p = place(m.topology(), m.allowed, Ledger{}, req);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->cpus, m.allowed);
  const auto more = place(m.topology(), m.allowed, Ledger{}, cpus(11));
  ASSERT_FALSE(more);
  EXPECT_THAT(more.error().message, HasSubstr("10 free"));
}

TEST(PlaceEngineTest, CpulessNodesGetNoCpusButNearMemsAddsTheNearestOne) {
  auto s = shape(2, 2, 4, 2);
  s.cpuless_nodes = 2;  // nodes 4 (socket 0) and 5 (socket 1)
  const Machine m = make_machine(s);
  ASSERT_EQ(m.topology().numa_nodes.size(), 6u);
  auto req = cpus(16, PlacementPolicy::kCompact);
  const auto follow = place(m.topology(), m.allowed, Ledger{}, req);
  ASSERT_TRUE(follow) << follow.error().message;
  EXPECT_EQ(follow->nodes, std::vector<int>({0, 1}));
  EXPECT_EQ(follow->mems.to_list(), "0-1");
  req.mems = MemsMode::kNear;
  const auto near = place(m.topology(), m.allowed, Ledger{}, req);
  ASSERT_TRUE(near) << near.error().message;
  EXPECT_EQ(near->nodes, std::vector<int>({0, 1}));
  EXPECT_EQ(near->mems.to_list(), "0-1,4");
  req.policy = PlacementPolicy::kNodes;
  req.nodes = {4};
  const auto refused = place(m.topology(), m.allowed, Ledger{}, req);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind, ErrorKind::kUsage);
  EXPECT_THAT(refused.error().message, HasSubstr("node 4 has no CPUs"));
}

TEST(PlaceEngineTest, MemsOutsideTheAllowedMemsFollowTheNearestAllowedNode) {
  const Machine m = make_machine(shape(2, 2, 4, 2));
  auto req = cpus(8, PlacementPolicy::kNodes);
  req.nodes = {0};
  req.allowed_mems = CpuSet::of({1, 2});
  const auto p = place(m.topology(), m.allowed, Ledger{}, req);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->mems.to_list(), "1") << "node 1 is on node 0's socket, node 2 is not";
  req.mems = MemsMode::kList;
  req.mems_list = CpuSet::of({3});
  const auto bad = place(m.topology(), m.allowed, Ledger{}, req);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind, ErrorKind::kUsage);
  EXPECT_THAT(bad.error().message, HasSubstr("outside the allowed mems 1-2"));
}

TEST(PlaceEngineTest, MalformedRequestsAreUsageErrors) {
  const Machine m = make_machine(shape(1, 2, 2, 2));
  const auto kind = [&](const PlacementRequest& r) {
    const auto p = place(m.topology(), m.allowed, Ledger{}, r);
    return p ? std::string("placed") : p.error().message;
  };
  EXPECT_THAT(kind(cpus(0)), HasSubstr("at least 1"));
  PlacementRequest both = cpus(4);
  both.cores = 2;
  EXPECT_THAT(kind(both), HasSubstr("not both"));
  auto missing = cpus(4, PlacementPolicy::kNodes);
  missing.nodes = {99};
  EXPECT_THAT(kind(missing), HasSubstr("NUMA node 99 does not exist (nodes: 0-1)"));
  auto odd = cpus(5);
  odd.smt = SmtMode::kFullCores;
  EXPECT_THAT(kind(odd), HasSubstr("multiple of 2"));
  auto mems = cpus(4);
  mems.mems = MemsMode::kList;
  mems.mems_list = CpuSet::of({30});
  EXPECT_THAT(kind(mems), HasSubstr("memory node 30 does not exist"));
}

TEST(PlaceEngineTest, ParsersNameTheAcceptedWords) {
  std::vector<int> nodes;
  EXPECT_EQ(parse_policy("nodes:1,3-4", &nodes).value(), PlacementPolicy::kNodes);
  EXPECT_EQ(nodes, std::vector<int>({1, 3, 4}));
  EXPECT_THAT(parse_policy("roundrobin", &nodes).error().message,
              HasSubstr("expected balanced, compact, spread or nodes:LIST"));
  EXPECT_FALSE(parse_policy("nodes:", &nodes));
  EXPECT_FALSE(parse_smt("half"));
  CpuSet list;
  EXPECT_EQ(parse_mems("0-1", &list).value(), MemsMode::kList);
  EXPECT_EQ(list.to_list(), "0-1");
  EXPECT_FALSE(parse_mems("some", &list));
}

TEST(PlaceEngineTest, SameInputGivesTheSamePlacement) {
  const Machine m = make_machine(shape(2, 3, 4, 2));
  Ledger ledger;
  ASSERT_TRUE(ledger.hold("a", CpuSet::range(0, 10), CpuSet::of({0})));
  for (auto policy :
       {PlacementPolicy::kBalanced, PlacementPolicy::kCompact, PlacementPolicy::kSpread}) {
    const auto a = place(m.topology(), m.allowed, ledger, cpus(17, policy));
    const auto b = place(m.topology(), m.allowed, ledger, cpus(17, policy));
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->cpus, b->cpus);
    EXPECT_EQ(a->mems, b->mems);
  }
}

}  // namespace
}  // namespace hostfit
