// The client verbs against a real `hostfit daemon` on this machine: workloads in real cgroups,
// the daemon's own answers and errors as the CLI prints them, a long-poll follow, reload, attach.
#include <gtest/gtest.h>

#include <future>

#include "command.h"
#include "daemon_harness.h"
#include "hostfit/cgroup.h"
#include "hostfit/probe.h"

namespace hostfit {
namespace {

using testing::DaemonProcess;
using testing::json;

class ClientDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: the daemon creates cgroups";
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    daemon_ = std::make_unique<DaemonProcess>("cli-" + name.substr(0, 20));
  }
  void TearDown() override {
    if (!daemon_) return;
    const std::string parent = daemon_->cgroup_parent();
    daemon_.reset();
    EXPECT_TRUE(testing::cgroup_dirs(parent).empty()) << "cgroup left behind";
  }
  fixtures::CommandResult hostfit(std::vector<std::string> args) {
    std::vector<std::string> argv = {HOSTFIT_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    return fixtures::run_command(argv, {"HOSTFIT_SOCKET=" + daemon_->socket()});
  }
  DaemonProcess& d() { return *daemon_; }
  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_F(ClientDaemonTest, CreatePsStopStartRmThroughTheRealDaemon) {
  ASSERT_TRUE(d().start()) << d().log();
  auto r = hostfit({"create", "web", "--memory", "64Mi", "--pids", "50", "--", "sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("created web: RUNNING (pid ", 0), 0u) << r.out;
  const json w = d().call("GET", "/v1/workloads/web").json();
  EXPECT_EQ(w["spec"]["memory"], 64 << 20);
  EXPECT_EQ(w["spec"]["pids"], 50);
  const pid_t pid = w["pid"].get<pid_t>();
  EXPECT_NE(
      testing::slurp("/proc/" + std::to_string(pid) + "/cgroup").find(d().cgroup_parent() + "/web"),
      std::string::npos);

  r = hostfit({"ps"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("web"), std::string::npos);
  EXPECT_NE(r.out.find(std::to_string(pid)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("64 MiB"), std::string::npos) << r.out;

  r = hostfit({"rm", "web"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("hostfit: workload 'web' is running: stop it first", 0), 0u) << r.err;

  r = hostfit({"stop", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "web: STOPPED: KILLED(SIGNAL 15)\n");
  EXPECT_FALSE(testing::pid_alive(pid));

  r = hostfit({"start", "web", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["state"], "RUNNING");

  // create takes run's sizing flags: they reach the daemon's spec.
  r = hostfit({"create", "sized", "--no-start", "--memory", "128Mi", "--runtime", "v8", "--plugins",
               "2", "--", "sh", "-c", "echo {workers}"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json sized = d().call("GET", "/v1/workloads/sized").json();
  EXPECT_EQ(sized["spec"]["runtime"], "v8") << sized.dump();
  EXPECT_EQ(sized["spec"]["plugins"], 2);
  r = hostfit({"create", "soft", "--no-start", "--memory-high", "64Mi", "--", "true"});
  const HostFacts self = probe_host(Sysroot("/"), ProbeTarget::self());
  const ControllerPath* memory = self.cgroup.find("memory");
  if (memory && memory->v2) {
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(d().call("GET", "/v1/workloads/soft").json()["spec"]["memory_high"], 64 << 20);
    ASSERT_EQ(hostfit({"rm", "soft"}).exit_code, 0);
  } else {
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("memory_high"), std::string::npos) << r.err;
  }
  ASSERT_EQ(hostfit({"rm", "sized"}).exit_code, 0);

  r = hostfit({"rm", "--force", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "removed web\n");
  r = hostfit({"ps", "-o", "json"});
  EXPECT_EQ(json::parse(r.out), json::array());

  r = hostfit({"events", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> types;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);)
    types.push_back(json::parse(line)["type"]);
  EXPECT_EQ(types.front(), "workload.created");
  EXPECT_EQ(types.back(), "workload.deleted");
}

TEST_F(ClientDaemonTest, DaemonRejectionsAreOneLineWithExit2) {
  ASSERT_TRUE(d().start()) << d().log();
  auto r = hostfit({"create", "bad/name", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("hostfit: bad \"name\"", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  ASSERT_EQ(hostfit({"create", "one", "--no-start", "--", "true"}).exit_code, 0);
  r = hostfit({"create", "one", "--no-start", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "hostfit: workload 'one' exists (DELETE it first)\n");
  r = hostfit({"stop", "nothing"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "hostfit: no workload 'nothing'\n");
  r = hostfit({"reload"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "hostfit: the daemon has no --config directory to reload\n");
}

TEST_F(ClientDaemonTest, FollowPrintsEventsAsTheyHappen) {
  ASSERT_TRUE(d().start()) << d().log();
  auto follow = std::async(std::launch::async, [this] {
    return fixtures::run_command(
        {"timeout", "3", HOSTFIT_BIN, "events", "--follow", "--socket", d().socket()});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(hostfit({"create", "late", "--", "sleep", "1000"}).exit_code, 0);
  const auto r = follow.get();
  EXPECT_EQ(r.exit_code, 124) << r.err;  // still following when timeout ended it
  EXPECT_NE(r.out.find("workload.created  late"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("run.started  late"), std::string::npos) << r.out;
  EXPECT_EQ(hostfit({"rm", "-f", "late"}).exit_code, 0);
}

TEST_F(ClientDaemonTest, ReloadNamesTheFileThatDidNotLoad) {
  const auto config = d().dir() / "config";
  std::filesystem::create_directories(config);
  ASSERT_TRUE(d().start({"--config", config.string()})) << d().log();
  std::ofstream(config / "a.json") << R"({"name": "cfg", "argv": ["sleep", "1000"]})";
  std::ofstream(config / "b.json") << "{\n  \"name\": \"broken\",\n  \"cpus\": \"many\"\n}\n";
  auto r = hostfit({"reload"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "hostfit: " + (config / "b.json").string() +
                       ":3: bad \"cpus\": give a number of CPUs, such as 1.5\n");
  EXPECT_EQ(d().call("GET", "/v1/workloads/cfg").json()["state"], "RUNNING");
  std::filesystem::remove(config / "b.json");
  r = hostfit({"reload"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "reloaded " + config.string() + "\n");
  EXPECT_EQ(d().call("POST", "/v1/workloads/cfg/stop").status, 200);
}

TEST_F(ClientDaemonTest, AttachHandsTheGroupToTheDaemon) {
  ASSERT_TRUE(d().start()) << d().log();
  const Sysroot root("/");
  auto driver = open_cgroup_driver(root, probe_cgroups(root, ProbeTarget::self()),
                                   {.parent = d().cgroup_parent() + "/foreign"});
  ASSERT_TRUE(driver) << driver.error().message;
  ASSERT_TRUE((*driver)->prepare());
  auto group = (*driver)->create("registry");
  ASSERT_TRUE(group) << group.error().message;
  const CgroupDir* memory = group->dir_of("memory");
  ASSERT_NE(memory, nullptr);

  auto r = hostfit({"attach", "--cgroup", memory->cgroup, "--cache-limit", "16Mi"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("now watches " + memory->cgroup +
                       " as 'registry', page cache held under "
                       "16 MiB"),
            std::string::npos)
      << r.out;
  const json list = d().call("GET", "/v1/attachments").json()["attachments"];
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["cache_limit_bytes"], 16 << 20);
  EXPECT_EQ(d().call("DELETE", "/v1/attachments/registry").status, 200);
  EXPECT_TRUE((*driver)->remove(*group));
}

}  // namespace
}  // namespace hostfit
