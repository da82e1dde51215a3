// The cgroup drivers on generated trees: the v2 driver's reads, writes and memory.events parsing,
// and the v1/hybrid driver's choices that need no kernel.
#include <gtest/gtest.h>
#include <poll.h>

#include <fstream>
#include <sstream>

#include "files.h"
#include "hostfit/cgroup.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using fixtures::CgroupLayout;
using fixtures::Shape;
using fixtures::slurp;
using fixtures::spit;
using fixtures::TempDir;

constexpr pid_t kFixturePid = 4242;  // the process the generator puts in the leaf

struct Tree {
  TempDir dir;
  Sysroot root{"/"};
  std::unique_ptr<CgroupDriver> driver;

  explicit Tree(CgroupLayout layout, std::vector<fixtures::CgroupLevel> chain = {{"user"}},
                std::string parent = {}) {
    Shape shape;
    shape.cgroup = layout;
    shape.cgroup_chain = std::move(chain);
    EXPECT_TRUE(fixtures::write_sysroot(dir.path(), shape));
    root = Sysroot(dir.path());
    auto d = open_cgroup_driver(root, probe_cgroups(root, ProbeTarget::self()),
                                {.parent = std::move(parent), .self_pid = kFixturePid});
    EXPECT_TRUE(d) << d.error().message;
    if (d) driver = std::move(*d);
  }
  std::filesystem::path real(const std::string& target) const { return root.path(target); }
};

TEST(CgroupNameTest, AcceptsPlainNamesAndRejectsPathsDotsAndLongNames) {
  EXPECT_TRUE(validate_cgroup_name("etl"));
  EXPECT_TRUE(validate_cgroup_name("nginx-1.22_a"));
  for (const char* bad : {"", ".", "..", "a/b", "../x", ".hidden", "_supervisor", "a b", "a\nb"}) {
    auto st = validate_cgroup_name(bad);
    ASSERT_FALSE(st) << bad;
    EXPECT_EQ(st.error().kind, ErrorKind::kUsage);
    EXPECT_NE(st.error().message.find("A-Z a-z 0-9"), std::string::npos);
  }
  EXPECT_FALSE(validate_cgroup_name(std::string(65, 'a')));
  EXPECT_TRUE(validate_cgroup_name(std::string(64, 'a')));
}

// Issue 17 item 6: these names reached the kernel as files of the parent group.
TEST(CgroupNameTest, RejectsTheNamesOfCgroupControlFiles) {
  for (const char* bad :
       {"cgroup.procs", "cgroup.subtree_control", "tasks", "notify_on_release", "release_agent",
        "memory.limit_in_bytes", "memory.max", "cpu.max", "cpuset.cpus", "pids.max", "io.max",
        "hugetlb.2MB.limit_in_bytes", "cpuacct.usage", "blkio.weight"}) {
    auto st = validate_cgroup_name(bad);
    ASSERT_FALSE(st) << bad;
    EXPECT_EQ(st.error().kind, ErrorKind::kUsage);
    EXPECT_NE(st.error().message.find("cgroup control file"), std::string::npos)
        << st.error().message;
  }
  for (const char* good : {"web.1", "nginx.conf", "memory", "cpu", "tasks-2", "io-bound", "cpus.4"})
    EXPECT_TRUE(validate_cgroup_name(good)) << good;
}

TEST(OomCountersTest, ParsesMemoryEventsAndToleratesGarbage) {
  const OomCounters c =
      parse_oom_counters("low 0\nhigh 7\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n", true);
  EXPECT_EQ(c.oom_kill, 2u);
  EXPECT_TRUE(c.oom_kill_known);
  EXPECT_EQ(c.oom, 3u);
  EXPECT_EQ(c.limit_hits, 12u);
  const OomCounters g = parse_oom_counters("\x01garbage\noom_kill x\n\nmax -4\n", true);
  EXPECT_FALSE(g.oom_kill_known);
  EXPECT_EQ(g.limit_hits, 0u);
}

TEST(OomCountersTest, ParsesV1OomControlAndNoticesOldKernelsWithoutOomKill) {
  const OomCounters c = parse_oom_counters("oom_kill_disable 1\nunder_oom 1\noom_kill 5\n", false);
  EXPECT_TRUE(c.kill_disabled);
  EXPECT_TRUE(c.under_oom);
  EXPECT_EQ(c.oom_kill, 5u);
  const OomCounters old = parse_oom_counters("oom_kill_disable 0\nunder_oom 0\n", false);
  EXPECT_FALSE(old.oom_kill_known);
}

TEST(V2DriverTest, ParentIsAHostfitChildOfTheProcessOwnCgroup) {
  Tree t(CgroupLayout::kV2);
  ASSERT_TRUE(t.driver);
  EXPECT_EQ(t.driver->mode(), CgroupMode::kV2);
  ASSERT_EQ(t.driver->parents().size(), 1u);
  EXPECT_EQ(t.driver->parents()[0].cgroup, "/user/hostfit");
  EXPECT_EQ(t.driver->parents()[0].dir, "/sys/fs/cgroup/user/hostfit");
  EXPECT_TRUE(t.driver->parents()[0].v2);
}

TEST(V2DriverTest, PrepareMovesHostfitIntoALeafBeforeEnablingControllers) {
  Tree t(CgroupLayout::kV2);
  ASSERT_TRUE(t.driver);
  auto swept = t.driver->prepare();
  ASSERT_TRUE(swept) << swept.error().message;
  EXPECT_EQ(slurp(t.real("/sys/fs/cgroup/user/hostfit/_supervisor/cgroup.procs")), "4242");
  // Controllers were delegated from the process's own cgroup to the parent.
  const std::string own = slurp(t.real("/sys/fs/cgroup/user/cgroup.subtree_control"));
  const std::string parent = slurp(t.real("/sys/fs/cgroup/user/hostfit/cgroup.subtree_control"));
  for (const char* c : {"+cpu", "+cpuset", "+memory", "+pids"}) {
    EXPECT_NE(own.find(c), std::string::npos) << own;
  }
  // The new parent has no cgroup.controllers in a generated tree, so nothing could be enabled
  // there; on a real kernel it inherits the parent's subtree_control.
  EXPECT_TRUE(parent.empty()) << parent;
}

TEST(V2DriverTest, PrepareRefusesWhenOtherProcessesShareTheOwnCgroup) {
  Tree t(CgroupLayout::kV2);
  ASSERT_TRUE(t.driver);
  spit(t.real("/sys/fs/cgroup/user/cgroup.procs"), "4242\n777\n");
  auto r = t.driver->prepare();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::kResource);
  EXPECT_NE(r.error().message.find(t.real("/sys/fs/cgroup/user").string()), std::string::npos);
  EXPECT_NE(r.error().message.find("777"), std::string::npos);
}

TEST(V2DriverTest, LimitsAreWrittenInV2Format) {
  Tree t(CgroupLayout::kV2);
  ASSERT_TRUE(t.driver);
  ASSERT_TRUE(t.driver->prepare());
  auto g = t.driver->create("etl");
  ASSERT_TRUE(g) << g.error().message;
  ASSERT_EQ(g->dirs.size(), 1u);
  EXPECT_EQ(g->dirs[0].cgroup, "/user/hostfit/etl");
  CgroupLimits limits;
  limits.cpu_quota_us = 50000;
  limits.cpus = CpuSet::of({1});
  limits.mems = CpuSet::of({0});
  limits.memory_max_bytes = 64 << 20;
  limits.memory_high_bytes = 48 << 20;
  limits.pids_max = 100;
  ASSERT_TRUE(t.driver->set_limits(*g, limits));
  const std::string dir = "/sys/fs/cgroup/user/hostfit/etl/";
  EXPECT_EQ(slurp(t.real(dir + "cpu.max")), "50000 100000");
  EXPECT_EQ(slurp(t.real(dir + "cpuset.cpus")), "1");
  EXPECT_EQ(slurp(t.real(dir + "cpuset.mems")), "0");
  EXPECT_EQ(slurp(t.real(dir + "memory.max")), "67108864");
  EXPECT_EQ(slurp(t.real(dir + "memory.high")), "50331648");
  EXPECT_EQ(slurp(t.real(dir + "pids.max")), "100");
  ASSERT_TRUE(t.driver->attach(*g, 4343));
  EXPECT_EQ(slurp(t.real(dir + "cgroup.procs")), "4343");
}

TEST(V2DriverTest, MemoryLimitAlsoClosesSwapWhenTheKernelOffersSwapAccounting) {
  Tree t(CgroupLayout::kV2);
  ASSERT_TRUE(t.driver);
  ASSERT_TRUE(t.driver->prepare());
  auto g = t.driver->create("etl");
  ASSERT_TRUE(g);
  spit(t.real("/sys/fs/cgroup/user/hostfit/etl/memory.swap.max"), "max\n");
  ASSERT_TRUE(t.driver->set_limits(*g, {.memory_max_bytes = 1 << 20}));
  EXPECT_EQ(slurp(t.real("/sys/fs/cgroup/user/hostfit/etl/memory.swap.max")), "0");
}

TEST(V2DriverTest, ReadsUsagePeakCpuAndOomCountersOfTheGroup) {
  Tree t(CgroupLayout::kV2);
  ASSERT_TRUE(t.driver);
  ASSERT_TRUE(t.driver->prepare());
  auto g = t.driver->create("etl");
  ASSERT_TRUE(g);
  const std::string dir = "/sys/fs/cgroup/user/hostfit/etl/";
  spit(t.real(dir + "memory.current"), "1048576\n");
  spit(t.real(dir + "memory.peak"), "67108864\n");
  spit(t.real(dir + "cpu.stat"), "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n");
  spit(t.real(dir + "pids.current"), "3\n");
  spit(t.real(dir + "memory.stat"), "anon 4096\nfile 8192\n");
  spit(t.real(dir + "memory.events"), "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n");
  auto u = t.driver->usage(*g);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->memory_bytes, 1048576u);
  EXPECT_EQ(u->memory_peak_bytes, 67108864u);
  EXPECT_EQ(u->cpu_usage_us, 2500u);
  EXPECT_EQ(u->pids, 3u);
  EXPECT_EQ(u->memory_stat.at("file"), 8192u);
  auto c = t.driver->oom_counters(*g);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->oom_kill, 1u);
  EXPECT_EQ(c->limit_hits, 9u);
  EXPECT_EQ(c->source, dir + "memory.events");
}

TEST(V2DriverTest, PeakIsUnknownOnKernelsWithoutMemoryPeak) {
  Tree t(CgroupLayout::kV2);
  ASSERT_TRUE(t.driver);
  ASSERT_TRUE(t.driver->prepare());
  auto g = t.driver->create("etl");
  ASSERT_TRUE(g);
  spit(t.real("/sys/fs/cgroup/user/hostfit/etl/memory.current"), "4096\n");
  auto u = t.driver->usage(*g);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->memory_bytes, 4096u);
  EXPECT_FALSE(u->memory_peak_bytes.has_value());
}

TEST(V2DriverTest, OomWatchWakesWhenMemoryEventsChanges) {
  Tree t(CgroupLayout::kV2);
  ASSERT_TRUE(t.driver);
  ASSERT_TRUE(t.driver->prepare());
  auto g = t.driver->create("etl");
  ASSERT_TRUE(g);
  const auto events = t.real("/sys/fs/cgroup/user/hostfit/etl/memory.events");
  spit(events, "oom 0\noom_kill 0\n");
  auto w = t.driver->watch_oom(*g);
  ASSERT_TRUE(w) << w.error().message;
  pollfd p{(*w)->fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);
  spit(events, "oom 1\noom_kill 1\n");
  EXPECT_EQ(::poll(&p, 1, 1000), 1);
  (*w)->drain();
  EXPECT_EQ(::poll(&p, 1, 0), 0);
}

TEST(V2DriverTest, CreateRefusesANameInUseAndBadNames) {
  Tree t(CgroupLayout::kV2);
  ASSERT_TRUE(t.driver);
  ASSERT_TRUE(t.driver->prepare());
  auto g = t.driver->create("etl");
  ASSERT_TRUE(g);
  spit(t.real("/sys/fs/cgroup/user/hostfit/etl/cgroup.procs"), "999\n");
  auto again = t.driver->create("etl");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind, ErrorKind::kResource);
  EXPECT_NE(again.error().message.find("pick another --name"), std::string::npos);
  EXPECT_FALSE(t.driver->create("../escape"));
  EXPECT_FALSE(std::filesystem::exists(t.real("/sys/fs/cgroup/user/escape")));
}

TEST(V2DriverTest, CgroupParentOverridesTheDefaultPlace) {
  Tree t(CgroupLayout::kV2, {{"user"}}, "/delegated/jobs");
  ASSERT_TRUE(t.driver);
  EXPECT_EQ(t.driver->parents()[0].cgroup, "/delegated/jobs");
  ASSERT_TRUE(t.driver->prepare());
  EXPECT_TRUE(std::filesystem::is_directory(t.real("/sys/fs/cgroup/delegated/jobs")));
}

TEST(V2DriverTest, SweepRemovesEmptyLeftoverGroupsOnly) {
  Tree t(CgroupLayout::kV2);
  ASSERT_TRUE(t.driver);
  ASSERT_TRUE(t.driver->prepare());
  // Empty directories as a killed hostfit leaves them (a real kernel's files vanish with rmdir).
  std::filesystem::create_directory(t.real("/sys/fs/cgroup/user/hostfit/stale"));
  std::filesystem::create_directory(t.real("/sys/fs/cgroup/user/hostfit/busy"));
  spit(t.real("/sys/fs/cgroup/user/hostfit/busy/cgroup.procs"), "31337\n");
  auto swept = t.driver->prepare();
  ASSERT_TRUE(swept);
  EXPECT_EQ(*swept, std::vector<std::string>{"stale"});
  EXPECT_FALSE(std::filesystem::exists(t.real("/sys/fs/cgroup/user/hostfit/stale")));
  EXPECT_TRUE(std::filesystem::exists(t.real("/sys/fs/cgroup/user/hostfit/busy")));
}

TEST(V1DriverTest, HybridTracksTheGroupInTheUnifiedTreeWithoutControllers) {
  Tree t(CgroupLayout::kHybrid);
  ASSERT_TRUE(t.driver);
  EXPECT_EQ(t.driver->mode(), CgroupMode::kHybrid);
  std::vector<std::string> names;
  for (const auto& p : t.driver->parents())
    names.push_back(p.hierarchy + "=" + p.cgroup);
  EXPECT_EQ(names, (std::vector<std::string>{"pids=/user/hostfit", "memory=/user/hostfit",
                                             "cpuset=/user/hostfit", "cpu,cpuacct=/user/hostfit",
                                             "unified=/hostfit"}));
  EXPECT_TRUE(t.driver->parents().back().controllers.empty());
}

TEST(V1DriverTest, NewCpusetGroupsInheritTheParentsCpusAndMems) {
  Tree t(CgroupLayout::kV1);
  ASSERT_TRUE(t.driver);
  ASSERT_TRUE(t.driver->prepare());
  auto g = t.driver->create("etl");
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(slurp(t.real("/sys/fs/cgroup/cpuset/user/hostfit/etl/cpuset.cpus")),
            slurp(t.real("/sys/fs/cgroup/cpuset/user/cpuset.cpus")).substr(0, 3));
  EXPECT_FALSE(slurp(t.real("/sys/fs/cgroup/cpuset/user/hostfit/etl/cpuset.mems")).empty());
}

TEST(V1DriverTest, CpuQuotaGoesToCfsFilesAndMemoryHighIsRefused) {
  Tree t(CgroupLayout::kV1);
  ASSERT_TRUE(t.driver);
  ASSERT_TRUE(t.driver->prepare());
  auto g = t.driver->create("etl");
  ASSERT_TRUE(g);
  ASSERT_TRUE(t.driver->set_limits(*g, {.cpu_quota_us = 50000, .cpu_period_us = 100000}));
  EXPECT_EQ(slurp(t.real("/sys/fs/cgroup/cpu,cpuacct/user/hostfit/etl/cpu.cfs_quota_us")), "50000");
  EXPECT_EQ(slurp(t.real("/sys/fs/cgroup/cpu,cpuacct/user/hostfit/etl/cpu.cfs_period_us")),
            "100000");
  auto st = t.driver->set_limits(*g, {.memory_high_bytes = 1 << 20});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().kind, ErrorKind::kUnsupported);
  EXPECT_NE(st.error().message.find("cgroup v1"), std::string::npos);
}

}  // namespace
}  // namespace hostfit
