// Placement on /sys and /proc trees captured from real machines (../shared/fixtures/real): sparse
// node ids, SMT4, a cpuset-restricted process, offline CPUs and an offline node 0.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "command.h"
#include "place_fixtures.h"

namespace hostfit {
namespace {

using ::testing::HasSubstr;
using testing_place::cpus;

const std::filesystem::path kShared = HOSTFIT_SHARED_FIXTURES;

// The capture unpacked into a temporary directory; its single top directory is the sysroot
// (named differently from the archive).
class RealTree {
 public:
  explicit RealTree(const std::string& archive_name) {
    const auto archive = kShared / archive_name;
    if (!std::filesystem::exists(archive)) return;
    const auto tar =
        fixtures::run_command({"tar", "-xf", archive.string(), "-C", dir_.path().string()});
    if (tar.exit_code != 0) return;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path()))
      root_ = entry.path();
    facts_ = probe_host(Sysroot(root_), ProbeTarget::self());
    allowed_ = placeable_cpus(facts_);
  }
  // A capture that is there must probe: a topology regression fails rather than skips.
  bool present() const {
    if (root_.empty()) return false;
    EXPECT_TRUE(facts_.topology.known()) << root_ << ": " << facts_.topology.unknown_reason;
    return facts_.topology.known();
  }
  const Topology& topology() const { return facts_.topology; }
  const CpuSet& allowed() const { return allowed_; }
  Result<Placement> place_on(const Ledger& ledger, PlacementRequest req) const {
    req.allowed_mems = placeable_mems(facts_);
    return place(facts_.topology, allowed_, ledger, req);
  }

 private:
  fixtures::TempDir dir_;
  std::filesystem::path root_;
  HostFacts facts_;
  CpuSet allowed_;
};

#define SKIP_UNLESS_PRESENT(tree, name) \
  if (!(tree).present()) GTEST_SKIP() << "no usable " << (name) << " under " << kShared

TEST(PlaceRealTreeTest, SparseNodeIdsAreNamedAsTheKernelNamesThem) {
  const RealTree tree("48amd64-4pa2n6c-sparse.tar.bz2");
  SKIP_UNLESS_PRESENT(tree, "48amd64-4pa2n6c-sparse");
  Ledger ledger;
  std::set<int> seen;
  for (int i = 0; i < 4; ++i) {
    const auto p = tree.place_on(ledger, cpus(12));
    ASSERT_TRUE(p) << p.error().message;
    ASSERT_EQ(p->nodes.size(), 2u);
    // Both nodes on one package, each with 6 CPUs.
    EXPECT_EQ(tree.topology().node(p->nodes[0])->package,
              tree.topology().node(p->nodes[1])->package);
    for (int id : p->nodes) {
      EXPECT_EQ(p->per_node.at(id), 6);
      seen.insert(id);
    }
    ASSERT_TRUE(ledger.hold("o" + std::to_string(i), p->cpus, p->mems));
  }
  EXPECT_EQ(seen, (std::set<int>{0, 1, 2, 33, 34, 45, 72, 73}));
}

TEST(PlaceRealTreeTest, Smt4CoresAreTakenWhole) {
  const RealTree tree("256ppc-8n8s4t.tar.bz2");
  SKIP_UNLESS_PRESENT(tree, "256ppc-8n8s4t");
  ASSERT_EQ(tree.topology().threads_per_core, 4);
  const auto p = tree.place_on(Ledger{}, cpus(16, PlacementPolicy::kCompact));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->split_cores, 0);
  EXPECT_TRUE(p->full_cores);
  EXPECT_EQ(p->nodes, std::vector<int>({0}));
  // 64 CPUs need two of its 32-CPU nodes: the pair at distance 20, not 40.
  const auto wide = tree.place_on(Ledger{}, cpus(64));
  ASSERT_TRUE(wide) << wide.error().message;
  ASSERT_EQ(wide->nodes.size(), 2u);
  EXPECT_EQ(wide->distance_score, 20);
  EXPECT_EQ(wide->split_cores, 0);
}

TEST(PlaceRealTreeTest, CpusetRestrictedProcessGetsOnlyItsAllowedCpusAndMems) {
  const RealTree tree("16amd64-8n2c-cpusets.tar.bz2");
  SKIP_UNLESS_PRESENT(tree, "16amd64-8n2c-cpusets");
  ASSERT_EQ(tree.allowed().to_list(), "0-3,5-6,12-15");
  const auto all = tree.place_on(Ledger{}, cpus(10, PlacementPolicy::kSpread));
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(all->cpus, tree.allowed());
  EXPECT_TRUE(all->mems.is_subset_of(CpuSet::range(1, 4))) << all->mems.to_list();
  const auto too_many = tree.place_on(Ledger{}, cpus(11));
  ASSERT_FALSE(too_many);
  EXPECT_THAT(too_many.error().message, HasSubstr("cannot place 11 CPUs: 10 free"));
}

TEST(PlaceRealTreeTest, OfflineCpusAndAnOfflineNodeAreNeverUsed) {
  const RealTree tree("offline-cpu0-node0.tar.bz2");
  SKIP_UNLESS_PRESENT(tree, "offline-cpu0-node0");
  const auto p = tree.place_on(Ledger{}, cpus(8));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->nodes, std::vector<int>({1}));
  EXPECT_EQ(p->mems.to_list(), "1");
  EXPECT_TRUE((p->cpus & CpuSet::range(0, 3)).empty());
  EXPECT_TRUE(p->cpus.is_subset_of(tree.topology().node(1)->cpus));
  // CPUs of the offline node 0 (4, 6, ...) have no memory node: they are not handed out.
  const auto more = tree.place_on(Ledger{}, cpus(9));
  ASSERT_FALSE(more);
  EXPECT_EQ(more.error().message, "cannot place 9 CPUs: 8 free (node 1: 8)");
}

}  // namespace
}  // namespace hostfit
