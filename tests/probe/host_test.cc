// The probe on the machine the tests run on (the build machine: 2 CPUs, cgroup v1 + empty cgroup2).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "hostfit/probe.h"

namespace hostfit {
namespace {

std::string memory_cgroup_of_self() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const auto first = line.find(':');
    const auto second = line.find(':', first + 1);
    if (second == std::string::npos) continue;
    // Named: split() returns views into its argument, and a temporary in the range-for's
    // initialiser dies before the loop body runs (g++ 12 predates C++23's lifetime extension).
    const std::string controllers = line.substr(first + 1, second - first - 1);
    for (auto c : split(controllers, ',')) {
      if (c == "memory") return line.substr(second + 1);
    }
  }
  return {};
}

TEST(HostTest, EffectiveCpusMatchTheSchedulerView) {
  const HostFacts f = probe_host(Sysroot("/"), ProbeTarget::self());
  cpu_set_t mask;
  ASSERT_EQ(sched_getaffinity(0, sizeof mask, &mask), 0);
  ASSERT_TRUE(f.cpu.affinity.known());
  EXPECT_EQ(f.cpu.affinity->count(), CPU_COUNT(&mask));
  EXPECT_LE(f.cpu.effective, CPU_COUNT(&mask));
  EXPECT_GE(f.cpu.effective_integer, 1);
  EXPECT_TRUE(f.topology.known()) << f.topology.unknown_reason;
}

TEST(HostTest, MemoryCgroupPathIsTheOneInProcSelfCgroup) {
  const std::string expected = memory_cgroup_of_self();
  if (expected.empty()) GTEST_SKIP() << "no v1 memory controller line in /proc/self/cgroup";
  const HostFacts f = probe_host(Sysroot("/"), ProbeTarget::self());
  const ControllerPath* memory = f.cgroup.find("memory");
  ASSERT_NE(memory, nullptr);
  EXPECT_EQ(memory->cgroup, expected);
  EXPECT_FALSE(memory->v2);
}

TEST(HostTest, BuildMachineIsHybridWhenV1AndAnEmptyCgroup2AreMounted) {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string mounts = ss.str();
  const bool v1 = mounts.find(" - cgroup ") != std::string::npos;
  const bool v2 = mounts.find(" - cgroup2 ") != std::string::npos;
  const HostFacts f = probe_host(Sysroot("/"), ProbeTarget::self());
  const CgroupMode expected = v1 && v2 ? CgroupMode::kHybrid
                              : v1     ? CgroupMode::kV1
                              : v2     ? CgroupMode::kV2
                                       : CgroupMode::kNone;
  EXPECT_EQ(f.cgroup.mode, expected);
}

TEST(HostTest, ProbingAnotherPidReadsThatProcess) {
  const HostFacts f = probe_host(Sysroot("/"), ProbeTarget::process(getppid()));
  EXPECT_TRUE(f.cpu.affinity.known());
  EXPECT_TRUE(f.memory.map_count.known());
  EXPECT_EQ(f.memory.map_count.source, "/proc/" + std::to_string(getppid()) + "/maps (lines)");
}

}  // namespace
}  // namespace hostfit
