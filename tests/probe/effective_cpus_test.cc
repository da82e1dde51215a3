// Effective CPUs and their binding constraint on generated machines (issue 2's acceptance list).
#include <gtest/gtest.h>

#include "hostfit/probe.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using fixtures::CgroupLayout;
using fixtures::CgroupLevel;
using fixtures::Shape;

// A 32-CPU single-socket machine unless a test says otherwise.
Shape shape32() {
  Shape s;
  s.sockets = 1;
  s.nodes_per_socket = 2;
  s.cores_per_node = 16;
  return s;
}

HostFacts probe(const Shape& shape, fixtures::TempDir& dir) {
  auto written = fixtures::write_sysroot(dir.path(), shape);
  EXPECT_TRUE(written) << written.error().message;
  return probe_host(Sysroot(dir.path()), ProbeTarget::self());
}

TEST(EffectiveCpusTest, V2QuotaOfOneAndAHalfGivesOneAndBindsQuota) {
  Shape s = shape32();
  s.cgroup_chain = {CgroupLevel{.name = "l0", .cpu_max = "150000 100000"}};
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  EXPECT_DOUBLE_EQ(f.cpu.effective, 1.5);
  EXPECT_EQ(f.cpu.effective_integer, 1);
  EXPECT_EQ(f.cpu.binding_kind, CpuBinding::kQuota);
  EXPECT_EQ(f.cpu.binding, "limited by cpu.max of /l0: 1.5 CPUs");
}

TEST(EffectiveCpusTest, AncestorQuotaBindsWhenTheLeafHasNone) {
  // Go's runtime reads only the leaf's cpu.max and would use all 32 CPUs here.
  Shape s = shape32();
  s.cgroup_chain = {CgroupLevel{.name = "parent", .cpu_max = "200000 100000"},
                    CgroupLevel{.name = "leaf", .cpu_max = "max 100000"}};
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  EXPECT_DOUBLE_EQ(f.cpu.effective, 2.0);
  EXPECT_EQ(f.cpu.effective_integer, 2);
  EXPECT_EQ(f.cpu.binding_kind, CpuBinding::kQuota);
  EXPECT_NE(f.cpu.binding.find("/parent"), std::string::npos) << f.cpu.binding;
  ASSERT_EQ(f.cpu.quotas.size(), 2u);
  EXPECT_FALSE(f.cpu.quotas[1].quota_us.has_value());
}

TEST(EffectiveCpusTest, V1QuotaOfMinusOneIsUnlimited) {
  Shape s = shape32();
  s.cgroup = CgroupLayout::kV1;
  s.cgroup_chain = {CgroupLevel{.name = "l0", .cpu_max = "max 100000"}};
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  // v1's root has cpu.cfs_quota_us too (always -1): it is read like every visible level.
  ASSERT_EQ(f.cpu.quotas.size(), 2u);
  EXPECT_EQ(f.cpu.quotas[0].cgroup, "/");
  EXPECT_EQ(f.cpu.quotas[1].cgroup, "/l0");
  for (const auto& q : f.cpu.quotas) {
    EXPECT_EQ(q.raw, "-1 100000");
    EXPECT_FALSE(q.quota_us.has_value());
  }
  EXPECT_DOUBLE_EQ(f.cpu.effective, 32);
  EXPECT_EQ(f.cpu.binding_kind, CpuBinding::kOnline);
}

TEST(EffectiveCpusTest, V1QuotaBindsWithItsOwnFileName) {
  Shape s = shape32();
  s.cgroup = CgroupLayout::kV1;
  s.cgroup_chain = {CgroupLevel{.name = "l0", .cpu_max = "250000 100000"}};
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  EXPECT_DOUBLE_EQ(f.cpu.effective, 2.5);
  EXPECT_EQ(f.cpu.binding, "limited by cpu.cfs_quota_us of /l0: 2.5 CPUs");
}

TEST(EffectiveCpusTest, CpusetOfSixOnThirtyTwoGivesSix) {
  Shape s = shape32();
  s.cgroup_chain = {CgroupLevel{.name = "job", .cpuset_cpus = "0-5"}};
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  EXPECT_DOUBLE_EQ(f.cpu.effective, 6);
  EXPECT_EQ(f.cpu.effective_integer, 6);
  EXPECT_EQ(f.cpu.binding_kind, CpuBinding::kCpuset);
  EXPECT_EQ(f.cpu.usable.to_list(), "0-5");
}

TEST(EffectiveCpusTest, AffinityNarrowerThanCpusetBinds) {
  Shape s = shape32();
  s.affinity = "2-3";
  s.cgroup_chain = {CgroupLevel{.name = "job", .cpuset_cpus = "0-5"}};
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  EXPECT_DOUBLE_EQ(f.cpu.effective, 2);
  EXPECT_EQ(f.cpu.binding_kind, CpuBinding::kAffinity);
  EXPECT_EQ(f.cpu.usable.to_list(), "2-3");
}

TEST(EffectiveCpusTest, QuotaAboveTheCpusetCountLeavesTheCpusetBinding) {
  Shape s = shape32();
  s.cgroup_chain = {CgroupLevel{.name = "job", .cpu_max = "800000 100000", .cpuset_cpus = "0-3"}};
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  EXPECT_DOUBLE_EQ(f.cpu.effective, 4);
  EXPECT_EQ(f.cpu.binding_kind, CpuBinding::kCpuset);
}

TEST(EffectiveCpusTest, TwoHundredFiftyFiveOnlineCpusAndNoLimitsGive255) {
  Shape s;
  s.sockets = 1;
  s.nodes_per_socket = 1;
  s.cores_per_node = 256;
  s.offline_cpus = "255";
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  EXPECT_EQ(f.cpu.online->count(), 255);
  EXPECT_DOUBLE_EQ(f.cpu.effective, 255);
  EXPECT_EQ(f.cpu.effective_integer, 255);
  EXPECT_EQ(f.cpu.binding_kind, CpuBinding::kOnline);
}

TEST(EffectiveCpusTest, OfflineCpusAreNeverUsable) {
  Shape s = shape32();
  s.offline_cpus = "4,30-31";
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  EXPECT_EQ(f.cpu.offline->to_list(), "4,30-31");
  EXPECT_FALSE(f.cpu.usable.contains(4));
  EXPECT_DOUBLE_EQ(f.cpu.effective, 29);
}

TEST(EffectiveCpusTest, FractionRoundsDownButNeverBelowOne) {
  CpuFacts cpu;
  cpu.online = Fact<CpuSet>::of(CpuSet::range(0, 7), "test");
  cpu.quotas.push_back(
      CpuQuota{.cgroup = "/a", .quota_us = 30000, .period_us = 100000, .v2 = true});
  compute_effective_cpus(cpu);
  EXPECT_DOUBLE_EQ(cpu.effective, 0.3);
  EXPECT_EQ(cpu.effective_integer, 1);
  EXPECT_EQ(cpu.binding, "limited by cpu.max of /a: 0.3 CPUs");
}

TEST(TopologyTest, GeneratedTwoSocketTwentyFourNodeMachine) {
  Shape s;
  s.sockets = 2;
  s.nodes_per_socket = 12;
  s.cores_per_node = 8;
  s.threads_per_core = 2;
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  ASSERT_TRUE(f.topology.known()) << f.topology.unknown_reason;
  EXPECT_EQ(f.topology.packages.size(), 2u);
  ASSERT_EQ(f.topology.numa_nodes.size(), 24u);
  EXPECT_EQ(f.topology.cores.size(), 192u);
  EXPECT_EQ(f.topology.threads_per_core, 2);
  for (const auto& n : f.topology.numa_nodes) {
    EXPECT_EQ(n.cpus.count(), 16) << "node " << n.id;
    EXPECT_EQ(n.distances.size(), 24u);
  }
  // Same socket is nearer than the other socket.
  EXPECT_LT(f.topology.distance(0, 1), f.topology.distance(0, 12));
  EXPECT_EQ(f.topology.distance(0, 0), 10);
  EXPECT_EQ(f.cpu.effective_integer, 384);
  EXPECT_FALSE(f.memory.numa_memory_mismatch);
}

TEST(TopologyTest, CpulessNodesHaveMemoryButNoCpus) {
  Shape s = shape32();
  s.cpuless_nodes = 1;
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  ASSERT_EQ(f.topology.numa_nodes.size(), 3u);
  EXPECT_TRUE(f.topology.numa_nodes[2].cpus.empty());
  EXPECT_GT(f.topology.numa_nodes[2].memory_bytes, 0u);
}

TEST(TopologyTest, CpulessNodesOfPackagesOwnNoCpusOfTheirLocality) {
  // hwloc hangs these nodes from their packages and gives them the packages' CPUs.
  Shape s;
  s.sockets = 2;
  s.nodes_per_socket = 2;
  s.cores_per_node = 2;
  s.cpuless_nodes = 2;
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  ASSERT_EQ(f.topology.numa_nodes.size(), 6u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(f.topology.numa_nodes[i].cpus,
              *CpuSet::parse_list(std::to_string(2 * i) + "-" + std::to_string(2 * i + 1)))
        << "node " << i;
  }
  EXPECT_TRUE(f.topology.numa_nodes[4].cpus.empty()) << f.topology.numa_nodes[4].cpus.to_list();
  EXPECT_TRUE(f.topology.numa_nodes[5].cpus.empty()) << f.topology.numa_nodes[5].cpus.to_list();
  EXPECT_GT(f.topology.numa_nodes[5].memory_bytes, 0u);
}

TEST(CgroupFactsTest, MemoryLimitIsTheMinimumOverTheChain) {
  for (CgroupLayout layout : {CgroupLayout::kV1, CgroupLayout::kV2, CgroupLayout::kHybrid}) {
    Shape s = shape32();
    s.cgroup = layout;
    s.cgroup_chain = {CgroupLevel{.name = "outer", .memory_max = "536870912", .pids_max = "100"},
                      CgroupLevel{.name = "inner", .memory_max = "1073741824", .pids_max = "max"}};
    fixtures::TempDir dir;
    const HostFacts f = probe(s, dir);
    ASSERT_TRUE(f.cgroup.memory_limit.known()) << f.cgroup.memory_limit.unknown_reason;
    EXPECT_EQ(f.cgroup.memory_limit->value, 536870912u);
    EXPECT_EQ(f.cgroup.memory_limit_cgroup, "/outer");
    EXPECT_EQ(f.cgroup.pids_max->value, 100u);
    const ControllerPath* memory = f.cgroup.find("memory");
    ASSERT_NE(memory, nullptr);
    EXPECT_EQ(memory->cgroup, "/outer/inner");
  }
}

TEST(CgroupFactsTest, ModeIsDetectedForEveryLayout) {
  const std::pair<CgroupLayout, CgroupMode> cases[] = {{CgroupLayout::kV1, CgroupMode::kV1},
                                                       {CgroupLayout::kV2, CgroupMode::kV2},
                                                       {CgroupLayout::kHybrid, CgroupMode::kHybrid},
                                                       {CgroupLayout::kNone, CgroupMode::kNone}};
  for (auto [layout, mode] : cases) {
    Shape s = shape32();
    s.cgroup = layout;
    fixtures::TempDir dir;
    const HostFacts f = probe(s, dir);
    EXPECT_EQ(f.cgroup.mode, mode) << to_string(mode);
  }
}

TEST(MemoryFactsTest, KernelKnobsAndLimitsAreRead) {
  Shape s = shape32();
  s.max_map_count = 1000;
  s.map_count = 900;
  s.rlimit_as = std::to_string(uint64_t{64} << 30);
  s.overcommit_memory = 2;
  s.virtual_address_bits = 39;
  s.thp_enabled = "never";
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  EXPECT_EQ(*f.memory.max_map_count, 1000u);
  EXPECT_EQ(*f.memory.map_count, 900u);
  EXPECT_EQ(f.memory.rlimit_as->soft.value, uint64_t{64} << 30);
  EXPECT_EQ(*f.memory.overcommit_memory, 2);
  EXPECT_EQ(*f.memory.virtual_address_bits, 39);
  EXPECT_EQ(*f.memory.thp_enabled, "never");
  EXPECT_TRUE(f.memory.rlimit_data->soft.is_unlimited());
}

TEST(EnvironmentTest, QemuGuestIsRecognised) {
  Shape s = shape32();
  s.hypervisor_flag = true;
  s.dmi_sys_vendor = "QEMU";
  s.dmi_product_name = "Standard PC (Q35 + ICH9, 2009)";
  fixtures::TempDir dir;
  const HostFacts f = probe(s, dir);
  EXPECT_EQ(*f.environment.virtualization, "qemu");
  EXPECT_GE(f.environment.virtualization_evidence.size(), 2u);
}

// Issue 17 item 14: a quota of INT64_MAX over a 1 us period, with no CPU set known, was cast to int
// (undefined) and handed on as GOMAXPROCS=9223372036854775808. It is clamped to the most CPUs a
// CPU set can name.
TEST(EffectiveCpusTest, HugeQuotaWithoutKnownCpusIsClampedToTheMostCpusThereCanBe) {
  CpuFacts cpu;
  CpuQuota q;
  q.cgroup = "/huge";
  q.v2 = true;
  q.quota_us = INT64_MAX;
  q.period_us = 1;
  cpu.quotas.push_back(q);
  compute_effective_cpus(cpu);
  EXPECT_EQ(cpu.binding_kind, CpuBinding::kQuota);
  EXPECT_LE(cpu.effective, CpuSet::kMaxId + 1);
  EXPECT_GE(cpu.effective_integer, 1);
  EXPECT_LE(cpu.effective_integer, CpuSet::kMaxId + 1);
}

}  // namespace
}  // namespace hostfit
