// Garbage in kernel files makes that one fact unknown with a reason; the rest is still reported.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "hostfit/probe.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using fixtures::CgroupLevel;
using fixtures::Shape;

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shape_.cores_per_node = 8;
    shape_.cgroup_chain = {CgroupLevel{.name = "l0", .cpu_max = "200000 100000"}};
    ASSERT_TRUE(fixtures::write_sysroot(dir_.path(), shape_));
  }
  void overwrite(const std::string& target_path, const std::string& text) {
    std::ofstream(dir_.path() / target_path.substr(1), std::ios::trunc) << text;
  }
  HostFacts probe() { return probe_host(Sysroot(dir_.path()), ProbeTarget::self()); }

  Shape shape_;
  fixtures::TempDir dir_;
};

TEST_F(BadInputTest, MalformedCpuMaxMakesThatQuotaUnknownAndKeepsTheRest) {
  for (const char* bad : {"abc", "100000", "-5 100000", "", "max 0", "1 2 3"}) {
    overwrite("/sys/fs/cgroup/l0/cpu.max", bad);
    const HostFacts f = probe();
    ASSERT_EQ(f.cpu.quotas.size(), 1u) << bad;
    EXPECT_FALSE(f.cpu.quotas[0].quota_us.has_value()) << bad;
    EXPECT_FALSE(f.cpu.quotas[0].unknown_reason.empty()) << bad;
    // The quota is unknown, not zero: effective falls back to the CPUs that are known.
    EXPECT_DOUBLE_EQ(f.cpu.effective, 8) << bad;
    EXPECT_TRUE(f.memory.total.known());
    bool warned = false;
    for (const auto& w : f.warnings)
      warned |= w.find("cpu.max") != std::string::npos;
    EXPECT_TRUE(warned) << bad;
  }
}

TEST_F(BadInputTest, MalformedOnlineListIsUnknownWithTheReason) {
  for (const char* bad : {"3-1", "0-99999999", "x"}) {
    overwrite("/sys/devices/system/cpu/online", bad);
    const HostFacts f = probe();
    EXPECT_FALSE(f.cpu.online.known()) << bad;
    EXPECT_NE(f.cpu.online.unknown_reason.find(bad), std::string::npos)
        << f.cpu.online.unknown_reason;
    // possible still answers, and the quota still binds.
    EXPECT_TRUE(f.cpu.possible.known());
    EXPECT_DOUBLE_EQ(f.cpu.effective, 2);
  }
}

TEST_F(BadInputTest, MissingEmptyAndUnreadableFilesAreUnknown) {
  std::filesystem::remove(dir_.path() / "proc/sys/vm/max_map_count");
  overwrite("/proc/sys/vm/overcommit_memory", "");
  std::filesystem::remove(dir_.path() / "proc/meminfo");
  std::filesystem::create_directory(dir_.path() / "proc/meminfo");  // read() fails with EISDIR
  const HostFacts f = probe();
  EXPECT_FALSE(f.memory.max_map_count.known());
  EXPECT_NE(f.memory.max_map_count.unknown_reason.find("No such file"), std::string::npos);
  EXPECT_FALSE(f.memory.overcommit_memory.known());
  EXPECT_NE(f.memory.overcommit_memory.unknown_reason.find("empty"), std::string::npos);
  EXPECT_FALSE(f.memory.total.known());
  EXPECT_NE(f.memory.total.unknown_reason.find("Is a directory"), std::string::npos);
  EXPECT_TRUE(f.cpu.online.known());
  EXPECT_FALSE(f.nothing_known());
}

// Issue 17 item 3: a FIFO in a --sysroot tree hung the probe in open(2).
TEST_F(BadInputTest, AFifoWhereAKernelFileBelongsIsUnknownNotAHang) {
  std::filesystem::remove(dir_.path() / "proc/meminfo");
  ASSERT_EQ(::mkfifo((dir_.path() / "proc/meminfo").c_str(), 0600), 0);
  const HostFacts f = probe();
  EXPECT_FALSE(f.memory.total.known());
  EXPECT_NE(f.memory.total.unknown_reason.find("FIFO"), std::string::npos)
      << f.memory.total.unknown_reason;
  EXPECT_TRUE(f.cpu.online.known());
  // hwloc reads the tree itself: it is not run on one with a FIFO in it.
  EXPECT_NE(f.topology.unknown_reason.find("proc/meminfo is a FIFO"), std::string::npos)
      << f.topology.unknown_reason;
}

TEST_F(BadInputTest, GarbageMountinfoAndCgroupFilesDoNotCrash) {
  overwrite("/proc/self/mountinfo", "\x01\x02 garbage - - -\n- - -\n\n");
  overwrite("/proc/self/cgroup", ":::\n0::\nnonsense\n");
  const HostFacts f = probe();
  EXPECT_EQ(f.cgroup.mode, CgroupMode::kNone);
  EXPECT_TRUE(f.cpu.online.known());
}

TEST(SysrootMissingTest, NothingIsKnownAndEveryFactSaysWhy) {
  const HostFacts f = probe_host(Sysroot("/nonexistent/hostfit-sysroot"), ProbeTarget::self());
  EXPECT_TRUE(f.nothing_known());
  EXPECT_FALSE(f.cpu.online.unknown_reason.empty());
  EXPECT_FALSE(f.topology.known());
}

}  // namespace
}  // namespace hostfit
