// `hostfit run` on a real kernel in every cgroup layout (v2, v1, hybrid): limits read back from the
// kernel by the workload itself, OOM kills from the kernel's own counters, kill -9 never taken for
// OOM, a child's OOM kill as an event, and no group left behind.
#include <signal.h>

#include <algorithm>
#include <map>
#include <thread>

#include "guest.h"

namespace hostfit::vm {
namespace {

// Where hostfit puts group NAME for a process in the root cgroup: "<hierarchy root>/hostfit/NAME".
std::vector<std::string> group_dirs(const std::string& name) {
  const std::string layout = cgroup_layout();
  if (layout == "v2") return {"/sys/fs/cgroup/hostfit/" + name};
  std::vector<std::string> dirs;
  for (const char* h : {"cpu", "cpuacct", "cpuset", "memory", "pids"})
    dirs.push_back(std::string("/sys/fs/cgroup/") + h + "/hostfit/" + name);
  if (layout == "hybrid") dirs.push_back("/sys/fs/cgroup/unified/hostfit/" + name);
  return dirs;
}

std::string memory_dir(const std::string& name) {
  return cgroup_layout() == "v2" ? group_dirs(name)[0] : "/sys/fs/cgroup/memory/hostfit/" + name;
}

class Run : public ::testing::Test {
 protected:
  void SetUp() override {
    HOSTFIT_REQUIRE_GUEST();
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    name_ = test_name();
    report_ = "/tmp/" + name_ + ".json";
  }
  void TearDown() override {
    for (const auto& d : group_dirs(name_))
      EXPECT_FALSE(std::filesystem::exists(d)) << "cgroup left behind: " << d;
    std::filesystem::remove(report_);
  }
  nlohmann::json report() {
    auto j = nlohmann::json::parse(slurp(report_), nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "no report at " << report_;
    return j;
  }
  std::string name_, report_;
};

// "file=value" lines printed by the workload about its own group.
std::map<std::string, std::string> read_back(const std::string& out) {
  std::map<std::string, std::string> values;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) values[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return values;
}

TEST_F(Run, LimitsAreWhatTheKernelReadsBack) {
  const bool v2 = cgroup_layout() == "v2";
  const std::string mem = memory_dir(name_);
  std::map<std::string, std::string> want;
  if (v2) {
    const std::string d = group_dirs(name_)[0];
    want = {{d + "/cpu.max", "50000 100000"},
            {d + "/memory.max", "100663296"},
            {d + "/memory.high", "83886080"},
            {d + "/memory.swap.max", "0"},
            {d + "/pids.max", "50"},
            {d + "/cpuset.cpus", "1"},
            {d + "/cpuset.cpus.effective", "1"}};
  } else {
    const std::string root = "/sys/fs/cgroup/";
    want = {{root + "cpu/hostfit/" + name_ + "/cpu.cfs_quota_us", "50000"},
            {root + "cpu/hostfit/" + name_ + "/cpu.cfs_period_us", "100000"},
            {mem + "/memory.limit_in_bytes", "100663296"},
            {root + "pids/hostfit/" + name_ + "/pids.max", "50"},
            {root + "cpuset/hostfit/" + name_ + "/cpuset.cpus", "1"}};
    if (std::filesystem::exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"))
      want[mem + "/memory.memsw.limit_in_bytes"] = "100663296";
  }
  std::string script =
      "grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status | tr -d '\\t' | "
      "sed 's/:/=/'; echo cgroup=$(grep -E '^0::|:memory:' /proc/self/cgroup); ";
  for (const auto& [file, value] : want)
    script += "echo " + file + "=$(cat " + file + "); ";
  std::vector<std::string> args = {"run",  "--name", name_, "--cpus",   "0.5", "--memory",
                                   "96Mi", "--pids", "50",  "--cpuset", "1"};
  if (v2) args.insert(args.end(), {"--memory-high", "80Mi"});
  args.insert(args.end(), {"--report", report_, "--", "sh", "-c", script});
  const auto r = hostfit(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto got = read_back(r.out);
  for (const auto& [file, value] : want)
    EXPECT_EQ(got.count(file) ? got.at(file) : "(missing)", value) << file << "\n" << r.out;
  EXPECT_EQ(got.count("Cpus_allowed_list") ? got.at("Cpus_allowed_list") : "", "1") << r.out;
  const std::string cg = got.count("cgroup") ? got.at("cgroup") : "";
  EXPECT_NE(cg.find("/hostfit/" + name_), std::string::npos) << cg;
  const auto j = report();
  EXPECT_EQ(j["cgroup_mode"], cgroup_layout());
  EXPECT_EQ(j["verdict"], "EXITED(0)");
  EXPECT_EQ(j["limits"]["memory_max_bytes"], 96 << 20);
  EXPECT_TRUE(j["cpu_usage_us"].is_number()) << j.dump();
  EXPECT_TRUE(j["memory"]["peak_bytes"].is_number()) << j.dump();
}

TEST_F(Run, OomKillIsKilledOomFromTheKernelsCounter20Of20) {
  const std::string counter = cgroup_layout() == "v2" ? "memory.events" : "memory.oom_control";
  int oom_verdicts = 0;
  for (int i = 0; i < 20; ++i) {
    const auto r = hostfit(
        {"run", "--name", name_, "--memory", "32Mi", "--report", report_, "--", VM_HOG_BIN, "256"});
    const auto j = report();
    const bool oom = r.exit_code == 137 && j["verdict"] == "KILLED(OOM)" && j["reason"] == "OOM" &&
                     j["oom_kills"].get<int>() >= 1 &&
                     j["oom_evidence"].dump().find(counter) != std::string::npos;
    EXPECT_TRUE(oom) << "run " << i << ": exit " << r.exit_code << "\n" << r.err << j.dump();
    oom_verdicts += oom;
  }
  EXPECT_EQ(oom_verdicts, 20);
}

TEST_F(Run, KillNineIsNeverOom) {
  // The workload is SIGKILLed from outside while it holds most of its limit, so the group has hit
  // (or nearly hit) its limit, but the OOM killer never acted.
  const std::string procs = memory_dir(name_) + "/cgroup.procs";
  for (int i = 0; i < 3; ++i) {
    const std::string script = std::string(HOSTFIT_BIN) + " run --name " + name_ +
                               " --memory 64Mi --report " + report_ + " -- " + VM_HOG_BIN +
                               " 56 hold > /tmp/" + name_ +
                               ".out & "
                               "for t in $(seq 300); do grep -q nodes /tmp/" +
                               name_ +
                               ".out 2>/dev/null && break; "
                               "sleep 0.1; done; kill -9 $(cat " +
                               procs + "); wait $!";
    const auto r = fixtures::run_command({"sh", "-c", script});
    EXPECT_EQ(r.exit_code, 137) << r.err;
    const auto j = report();
    EXPECT_EQ(j["verdict"], "KILLED(SIGNAL 9)") << j.dump();
    EXPECT_EQ(j["reason"], "SIGNAL");
    EXPECT_EQ(j["oom_kills"], 0);
    EXPECT_NE(r.err.find("killed by signal 9 (SIGKILL)"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("not by the OOM killer"), std::string::npos) << r.err;
  }
  std::filesystem::remove("/tmp/" + name_ + ".out");
}

TEST_F(Run, SelfKillNineIsNeverOom) {
  const auto r = hostfit({"run", "--name", name_, "--memory", "64Mi", "--report", report_, "--",
                          "sh", "-c", "kill -9 $$"});
  EXPECT_EQ(r.exit_code, 137) << r.err;
  EXPECT_EQ(report()["verdict"], "KILLED(SIGNAL 9)");
}

TEST_F(Run, ChildOomKillIsAnEventAndTheRunGoesOn) {
  const auto r = hostfit({"run", "--name", name_, "--memory", "64Mi", "--report", report_, "--",
                          "sh", "-c", std::string(VM_HOG_BIN) + " 256; echo survived"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "survived\n");
  EXPECT_NE(r.err.find("a process in '" + name_ + "' was killed by the OOM killer: pid "),
            std::string::npos)
      << r.err;
  const auto j = report();
  EXPECT_EQ(j["verdict"], "EXITED(0)");
  ASSERT_EQ(j["oom_events"].size(), 1u) << j.dump();
  EXPECT_EQ(j["oom_events"][0]["comm"], "vm_hog") << j.dump();
  EXPECT_TRUE(j["oom_events"][0]["pid"].is_number()) << j.dump();
}

TEST_F(Run, AKilledHostfitsGroupIsSweptByTheNextRunOnceEmpty) {
  // hostfit SIGKILLed mid-run leaves its group with the workload in it; once the workload is gone
  // too, the next hostfit run removes the empty group and says so in its report.
  const std::string procs = memory_dir(name_) + "/cgroup.procs";
  // cgroupfs files have no size, so "has a pid" is grep -q ., not test -s.
  const std::string has_pid = "grep -q . " + procs;
  const std::string script = std::string(HOSTFIT_BIN) + " run --name " + name_ + " -- " +
                             VM_HOG_BIN + " 1 hold & h=$!; " + "for t in $(seq 300); do " +
                             has_pid + " && break; sleep 0.1; done; kill -9 $h; wait $h; " +
                             "kill -9 $(cat " + procs + "); " + "for t in $(seq 100); do " +
                             has_pid + " || exit 0; sleep 0.1; done; exit 1";
  const auto killed = fixtures::run_command({"sh", "-c", script});
  ASSERT_EQ(killed.exit_code, 0) << killed.err;
  ASSERT_TRUE(std::filesystem::exists(memory_dir(name_))) << "the killed hostfit's group is gone";
  const auto next = hostfit({"run", "--name", name_ + "-next", "--report", report_, "--", "true"});
  EXPECT_EQ(next.exit_code, 0) << next.err;
  const auto swept = report()["swept"];
  EXPECT_NE(std::find(swept.begin(), swept.end(), name_), swept.end()) << swept.dump();
}

TEST_F(Run, TheGroupGoesAndTheParentStaysForTheNextRun) {
  const auto r = hostfit({"run", "--name", name_, "--", "true"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(memory_dir(name_))) << memory_dir(name_);
  const std::filesystem::path parent = std::filesystem::path(memory_dir(name_)).parent_path();
  EXPECT_TRUE(std::filesystem::is_directory(parent)) << parent;
}

}  // namespace
}  // namespace hostfit::vm
