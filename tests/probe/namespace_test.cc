// The probe inside a real cgroup namespace on this machine: a process moved into a v1 group with a
// CPU quota and a memory limit, then `unshare --cgroup`, sees its cgroups as "/" and the mounts'
// roots as "/.."; hostfit still finds the group and reports its limits.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "command.h"
#include "hostfit/probe.h"

namespace hostfit {
namespace {

using fixtures::run_command;

constexpr uint64_t kLimitBytes = 268435456;  // 256 MiB

// A v1 group in the cpu and memory hierarchies below this process's own cgroups, removed at the
// end.
class ScratchGroup {
 public:
  ScratchGroup(const Sysroot& root, const CgroupFacts& facts, const std::string& name)
      : root_(root) {
    for (const char* c : {"cpu", "memory"}) {
      if (const ControllerPath* p = facts.find(c)) dirs_.push_back(join_path(p->dir, name));
    }
  }
  ~ScratchGroup() {
    for (const auto& d : dirs_)
      (void)root_.remove_dir(d);
  }
  const std::vector<std::string>& dirs() const { return dirs_; }

 private:
  const Sysroot& root_;
  std::vector<std::string> dirs_;
};

TEST(CgroupNamespaceTest, UnshareCgroupInAV1GroupReportsItsQuotaAndMemoryLimit) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
  if (run_command({"unshare", "--help"}).exit_code != 0) GTEST_SKIP() << "no unshare(1)";
  const Sysroot root("/");
  const CgroupFacts facts = probe_cgroups(root, ProbeTarget::self());
  const ControllerPath* cpu = facts.find("cpu");
  const ControllerPath* memory = facts.find("memory");
  if (!cpu || !memory || cpu->v2 || memory->v2) {
    GTEST_SKIP() << "needs the v1 cpu and memory controllers (this machine's layout)";
  }
  ScratchGroup group(root, facts, "hostfit-ns-test-" + std::to_string(::getpid()));
  for (const auto& dir : group.dirs())
    ASSERT_TRUE(root.make_dir(dir)) << dir;
  const std::string& cpu_dir = group.dirs()[0];
  const std::string& memory_dir = group.dirs()[1];
  ASSERT_TRUE(root.write(join_path(cpu_dir, "cpu.cfs_period_us"), "100000"));
  ASSERT_TRUE(root.write(join_path(cpu_dir, "cpu.cfs_quota_us"), "150000"));
  ASSERT_TRUE(
      root.write(join_path(memory_dir, "memory.limit_in_bytes"), std::to_string(kLimitBytes)));

  // The shell moves itself into the group, then becomes unshare, then hostfit: one process.
  const std::string script = "echo $$ > " + join_path(cpu_dir, "cgroup.procs") + " && echo $$ > " +
                             join_path(memory_dir, "cgroup.procs") +
                             " && exec unshare --cgroup \"$0\" probe -o json";
  const auto r = run_command({"/bin/sh", "-c", script, HOSTFIT_BIN});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_DOUBLE_EQ(j["cpu"]["effective"].get<double>(), 1.5) << j["cpu"].dump();
  EXPECT_EQ(j["memory"]["limit_bytes"], kLimitBytes) << j["unknown"].dump();
  // Inside the namespace the kernel names the process's cgroup "/" and the mount's root "/..".
  EXPECT_EQ(j["cgroup"]["paths"]["cpu"], "/");
  EXPECT_EQ(j["cgroup"]["controllers"]["cpu"]["dir"], cpu_dir);
  EXPECT_EQ(j["cgroup"]["controllers"]["memory"]["dir"], memory_dir);
  bool climbing_root = false;
  for (const auto& m : j["cgroup"]["mounts"])
    climbing_root |= m["root"].get<std::string>().starts_with("/..");
  EXPECT_TRUE(climbing_root) << j["cgroup"]["mounts"].dump();
}

}  // namespace
}  // namespace hostfit
