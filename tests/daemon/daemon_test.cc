// `hostfit daemon` as a real process on this machine: workloads in real cgroups, real OOM kills,
// kill -9 of the daemon and adoption, attachments, bad input, slow clients.
#include <gtest/gtest.h>
#include <pwd.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>

#include <atomic>
#include <set>

#include "command.h"
#include "daemon_harness.h"
#include "hostfit/cgroup.h"
#include "hostfit/place.h"
#include "hostfit/probe.h"
#include "hostfit/store.h"

namespace hostfit {
namespace {

using testing::DaemonProcess;
using testing::json;
using testing::test_name;

json sleeper(const std::string& name, json extra = json::object()) {
  json j = {{"name", name}, {"argv", {"sleep", "1000"}}, {"memory", "64Mi"}};
  for (const auto& [k, v] : extra.items())
    j[k] = v;
  return j;
}

// A python3 that waits for `trigger` to exist, then allocates far past its 64 MiB limit.
json oom_on_trigger(const std::string& name, const std::string& trigger) {
  return {{"name", name},
          {"argv",
           {"python3", "-c",
            "import os, time\nwhile not os.path.exists('" + trigger +
                "'): time.sleep(0.02)\nbytearray(512 << 20)"}},
          {"memory", "64Mi"}};
}

bool process_in_cgroup(pid_t pid, const std::string& fragment) {
  return testing::slurp("/proc/" + std::to_string(pid) + "/cgroup").find(fragment) !=
         std::string::npos;
}

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "needs python3";
    daemon_ = std::make_unique<DaemonProcess>(test_name());
  }
  void TearDown() override {
    if (!daemon_) return;
    const std::string parent = daemon_->cgroup_parent();
    daemon_.reset();
    EXPECT_TRUE(testing::cgroup_dirs(parent).empty()) << "cgroup left behind";
  }
  DaemonProcess& d() { return *daemon_; }
  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_F(DaemonTest, CreateRunsTheWorkloadInItsCgroupAndStopRecordsTheVerdict) {
  ASSERT_TRUE(d().start()) << d().log();
  auto created = d().call("POST", "/v1/workloads", sleeper("web"));
  ASSERT_EQ(created.status, 201) << created.body;
  const json w = created.json();
  EXPECT_EQ(w["state"], "RUNNING");
  ASSERT_TRUE(w["pid"].is_number()) << w.dump();
  const pid_t pid = w["pid"].get<pid_t>();
  EXPECT_TRUE(process_in_cgroup(pid, d().cgroup_parent() + "/web")) << pid;

  auto stopped = d().call("POST", "/v1/workloads/web/stop");
  ASSERT_EQ(stopped.status, 200) << stopped.body;
  const json s = stopped.json();
  EXPECT_EQ(s["state"], "STOPPED");
  EXPECT_EQ(s["run"]["verdict"], "KILLED(SIGNAL 15)") << s.dump();
  EXPECT_FALSE(testing::pid_alive(pid));
  EXPECT_TRUE(testing::cgroup_dirs(d().cgroup_parent() + "/web").empty());

  auto runs = d().call("GET", "/v1/workloads/web/runs").json()["runs"];
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0]["state"], "KILLED");
  EXPECT_EQ(runs[0]["reason"], "SIGNAL");
  EXPECT_EQ(runs[0]["signal"], 15);

  // Started again by request, then deleted once stopped.
  ASSERT_EQ(d().call("POST", "/v1/workloads/web/start").status, 200);
  EXPECT_EQ(d().call("DELETE", "/v1/workloads/web").status, 409);
  ASSERT_EQ(d().call("DELETE", "/v1/workloads/web?force=1").status, 200);
  EXPECT_EQ(d().call("GET", "/v1/workloads/web").status, 404);
}

TEST_F(DaemonTest, UserDropsCredentialsAndOutputGoesToTheLogFile) {
  const passwd* nobody = ::getpwnam("nobody");
  if (!nobody) GTEST_SKIP() << "no user 'nobody' here";
  ASSERT_TRUE(d().start()) << d().log();
  ASSERT_EQ(d().call("POST", "/v1/workloads",
                     {{"name", "who"},
                      {"argv", {"sh", "-c", "id -u; id -g; echo oops >&2"}},
                      {"user", "nobody"}})
                .status,
            201);
  auto w = d().wait_for("/v1/workloads/who", [](const json& j) { return j["state"] == "STOPPED"; });
  EXPECT_EQ(w["run"]["verdict"], "EXITED(0)") << w.dump();
  EXPECT_EQ(testing::slurp(w["logs"]["stdout"].get<std::string>()),
            std::to_string(nobody->pw_uid) + "\n" + std::to_string(nobody->pw_gid) + "\n");
  EXPECT_EQ(testing::slurp(w["logs"]["stderr"].get<std::string>()), "oops\n");

  // An unknown user is a FAILED run that says why, not a crash.
  ASSERT_EQ(d().call("POST", "/v1/workloads",
                     {{"name", "ghost"}, {"argv", {"true"}}, {"user", "no-such-user-xyz"}})
                .status,
            201);
  auto g =
      d().wait_for("/v1/workloads/ghost", [](const json& j) { return j["state"] == "STOPPED"; });
  EXPECT_EQ(g["run"]["verdict"], "FAILED");
  EXPECT_NE(g["run"]["message"].get<std::string>().find("no-such-user-xyz"), std::string::npos);
}

TEST_F(DaemonTest, OnFailureRestartsWithBackoffUpToItsLimit) {
  ASSERT_TRUE(d().start()) << d().log();
  json spec = {{"name", "flaky"},
               {"argv", {"sh", "-c", "exit 3"}},
               {"restart", "on-failure"},
               {"restart_limit", 2},
               {"restart_backoff_ms", 20}};
  ASSERT_EQ(d().call("POST", "/v1/workloads", spec).status, 201);
  auto runs = d().wait_for("/v1/workloads/flaky/runs", [](const json& j) {
    return j["runs"].size() == 3 && !j["runs"][0]["ended_at"].is_null();
  });
  ASSERT_EQ(runs["runs"].size(), 3u) << runs.dump();
  for (const auto& r : runs["runs"])
    EXPECT_EQ(r["verdict"], "EXITED(3)");
  auto w =
      d().wait_for("/v1/workloads/flaky", [](const json& j) { return j["state"] == "STOPPED"; });
  EXPECT_EQ(w["state"], "STOPPED");
  EXPECT_EQ(w["restarts"], 2);
  EXPECT_FALSE(w["wanted"].get<bool>());

  // on-failure does not restart a clean exit; always does.
  ASSERT_EQ(d().call("POST", "/v1/workloads",
                     {{"name", "clean"}, {"argv", {"true"}}, {"restart", "on-failure"}})
                .status,
            201);
  ASSERT_EQ(d().call("POST", "/v1/workloads",
                     {{"name", "again"},
                      {"argv", {"true"}},
                      {"restart", "always"},
                      {"restart_limit", 1},
                      {"restart_backoff_ms", 20}})
                .status,
            201);
  auto again =
      d().wait_for("/v1/workloads/again/runs", [](const json& j) { return j["runs"].size() == 2; });
  EXPECT_EQ(again["runs"].size(), 2u);
  auto clean =
      d().wait_for("/v1/workloads/clean", [](const json& j) { return j["state"] == "STOPPED"; });
  EXPECT_EQ(d().call("GET", "/v1/workloads/clean/runs").json()["runs"].size(), 1u);
  EXPECT_EQ(clean["run"]["verdict"], "EXITED(0)");
}

TEST_F(DaemonTest, OomKillIsKilledOomWithItsEventOnTheLongPoll) {
  ASSERT_TRUE(d().start()) << d().log();
  const int64_t since = d().call("GET", "/v1/node").json()["last_event_seq"].get<int64_t>();
  const std::string trigger = (d().dir() / "go").string();
  ASSERT_EQ(d().call("POST", "/v1/workloads", oom_on_trigger("hog", trigger)).status, 201);

  // A long poll waiting from now gets the events as they come.
  std::atomic<bool> done{false};
  json seen = json::array();
  std::thread poller([&] {
    int64_t next = since;
    while (!done) {
      auto r = d().call("GET", "/v1/events?since=" + std::to_string(next) + "&wait=5").json();
      for (const auto& e : r["events"])
        seen.push_back(e);
      next = r["next"].get<int64_t>();
      for (const auto& e : r["events"]) {
        if (e["type"] == "run.ended") done = true;
      }
    }
  });
  std::ofstream(trigger) << "go";
  auto w = d().wait_for("/v1/workloads/hog", [](const json& j) { return j["state"] == "STOPPED"; });
  done = true;
  poller.join();
  EXPECT_EQ(w["run"]["verdict"], "KILLED(OOM)") << w.dump();
  EXPECT_EQ(w["run"]["reason"], "OOM");
  EXPECT_EQ(w["run"]["signal"], 9);
  EXPECT_GE(w["run"]["oom_kills"].get<int>(), 1);
  EXPECT_NE(w["run"]["message"].get<std::string>().find("killed by the kernel OOM killer"),
            std::string::npos);
  // The same verdict in the issue's shape, with `hostfit run --report`'s words.
  EXPECT_EQ(w["verdict"]["state"], "KILLED") << w.dump();
  EXPECT_EQ(w["verdict"]["reason"], "OOM");
  EXPECT_EQ(w["verdict"]["text"], "KILLED(OOM)");
  EXPECT_EQ(w["verdict"]["signal"], 9);
  EXPECT_EQ(w["verdict"]["memory"]["limit_bytes"], 64 << 20);
  bool oom_event = false, ended_event = false;
  for (const auto& e : seen) {
    if (e["type"] == "oom.kill" && e["workload"] == "hog" && e["data"]["main"] == true) {
      oom_event = true;
    }
    if (e["type"] == "run.ended" && e["data"]["verdict"] == "KILLED(OOM)") ended_event = true;
  }
  EXPECT_TRUE(oom_event) << seen.dump();
  EXPECT_TRUE(ended_event) << seen.dump();
}

// The issue's scenario: three workloads run, the daemon is killed with -9, one workload is then
// OOM-killed while no daemon watches; the next daemon adopts the two that live (same pids, not
// restarted, holds kept) and records KILLED(OOM) for the third, releasing its hold.
TEST_F(DaemonTest, KillMinus9AdoptsTheLivingAndJudgesTheOneOomKilledMeanwhile) {
  ASSERT_TRUE(d().start()) << d().log();
  const std::string trigger = (d().dir() / "go").string();
  json hog = oom_on_trigger("hog", trigger);
  hog["cpus"] = 1;
  hog["placement"] = "balanced";
  hog["restart"] = "on-failure";  // a restart would be wrong: the verdict comes first
  hog["restart_limit"] = 0;
  ASSERT_EQ(d().call("POST", "/v1/workloads", hog).status, 201);
  ASSERT_EQ(
      d().call("POST", "/v1/workloads",
               sleeper("api", {{"cpus", 1}, {"placement", "balanced"}, {"restart", "always"}}))
          .status,
      201)
      << d().call("GET", "/v1/workloads/api").body;
  ASSERT_EQ(d().call("POST", "/v1/workloads", sleeper("db", {{"restart", "always"}})).status, 201);
  std::map<std::string, pid_t> pids;
  const json before = d().call("GET", "/v1/workloads").json()["workloads"];
  for (const auto& w : before) {
    ASSERT_EQ(w["state"], "RUNNING") << w.dump();
    pids[w["name"]] = w["pid"].get<pid_t>();
  }
  ASSERT_EQ(d().call("GET", "/v1/placements").json()["holds"].size(), 2u);

  d().kill9();
  std::ofstream(trigger) << "go";
  for (int i = 0; i < 500 && testing::pid_alive(pids["hog"]); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_FALSE(testing::pid_alive(pids["hog"])) << "the hog did not die";

  ASSERT_TRUE(d().start()) << d().log();
  auto list = d().call("GET", "/v1/workloads").json()["workloads"];
  ASSERT_EQ(list.size(), 3u);
  for (const auto& w : list) {
    const std::string name = w["name"];
    if (name == "hog") {
      EXPECT_EQ(w["state"], "STOPPED") << w.dump();
      EXPECT_EQ(w["verdict"]["text"], "KILLED(OOM)") << w.dump();
    } else {
      EXPECT_EQ(w["state"], "RUNNING") << w.dump();
      EXPECT_EQ(w["pid"].get<pid_t>(), pids[name]) << name << " was restarted";
      EXPECT_TRUE(testing::pid_alive(pids[name])) << name;
      EXPECT_EQ(d().call("GET", "/v1/workloads/" + name + "/runs").json()["runs"].size(), 1u);
    }
  }
  EXPECT_EQ(d().call("GET", "/v1/workloads/hog/runs").json()["runs"].size(), 1u)
      << "the hog was restarted";
  auto holds = d().call("GET", "/v1/placements").json()["holds"];
  ASSERT_EQ(holds.size(), 1u) << holds.dump();
  EXPECT_EQ(holds[0]["owner"], "api");
  bool adopted = false;
  for (const auto& e : d().events()) {
    if (e["type"] == "run.adopted" && e["workload"] == "db") adopted = true;
  }
  EXPECT_TRUE(adopted);

  // The adopted ones are still watched: a stop ends them with a verdict.
  auto stopped = d().call("POST", "/v1/workloads/db/stop").json();
  EXPECT_EQ(stopped["state"], "STOPPED");
  for (int i = 0; i < 200 && testing::pid_alive(pids["db"]); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // its exit is in progress
  EXPECT_FALSE(testing::pid_alive(pids["db"])) << stopped.dump();
  EXPECT_EQ(d().call("POST", "/v1/workloads/api/stop").status, 200);
  EXPECT_TRUE(d().call("GET", "/v1/placements").json()["holds"].empty());
}

TEST_F(DaemonTest, AnAttachedCgroupGetsItsOomEventAndIsDetachedWhenItGoes) {
  ASSERT_TRUE(d().start()) << d().log();
  // A group the daemon did not make, under a parent of the test's own.
  const Sysroot root("/");
  auto driver = open_cgroup_driver(root, probe_cgroups(root, ProbeTarget::self()),
                                   {.parent = d().cgroup_parent() + "/foreign"});
  ASSERT_TRUE(driver) << driver.error().message;
  ASSERT_TRUE((*driver)->prepare());
  auto group = (*driver)->create("victim");
  ASSERT_TRUE(group) << group.error().message;
  ASSERT_TRUE((*driver)->set_limits(*group, {.memory_max_bytes = 32 << 20}));
  const CgroupDir* memory = group->dir_of("memory");
  ASSERT_NE(memory, nullptr);

  auto attached =
      d().call("POST", "/v1/attachments", {{"name", "victim"}, {"cgroup", memory->cgroup}});
  ASSERT_EQ(attached.status, 201) << attached.body;

  const pid_t child = ::fork();
  if (child == 0) {
    for (const auto& f : (*driver)->join_files(*group)) {
      std::ofstream(f) << "0";
    }
    ::execlp("python3", "python3", "-c", "bytearray(256 << 20)", nullptr);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  json oom;
  for (int i = 0; i < 200 && oom.is_null(); ++i) {
    for (const auto& e : d().events()) {
      if (e["type"] == "oom.kill" && e["workload"] == "victim") oom = e;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(oom.is_null()) << d().events().dump();
  EXPECT_TRUE(oom["data"]["attachment"].get<bool>());
  if (oom["data"]["pid"].is_number()) {
    EXPECT_EQ(oom["data"]["pid"].get<pid_t>(), child);
  }

  ASSERT_TRUE((*driver)->remove(*group));
  auto list = d().wait_for(
      "/v1/attachments", [](const json& j) { return j["attachments"].empty(); }, 10);
  EXPECT_TRUE(list["attachments"].empty());
  bool detached = false;
  for (const auto& e : d().events()) {
    if (e["type"] == "attachment.detached" && e["workload"] == "victim") detached = true;
  }
  EXPECT_TRUE(detached);
}

TEST_F(DaemonTest, BadInputIs4xxAndChangesNothing) {
  ASSERT_TRUE(d().start()) << d().log();
  ASSERT_EQ(d().call("POST", "/v1/workloads", sleeper("ok", {{"start", false}})).status, 201);
  const auto before_seq = d().call("GET", "/v1/node").json()["last_event_seq"];
  const std::vector<std::pair<std::string, int>> bad = {
      {R"({"name":"a","argv":["true"],"colour":"red"})", 400},
      {R"({"name":"a/b","argv":["true"]})", 400},
      {R"({"name":"..","argv":["true"]})", 400},
      {R"({"name":"","argv":["true"]})", 400},
      {R"({"name":"a","argv":"true"})", 400},
      {R"({"name":"a","argv":["true", 3]})", 400},
      {R"({"name":"a","argv":[]})", 400},
      {R"({"name":"a","argv":["true"],"memory":"1Ki"})", 400},
      {R"({"name":"a","argv":["true"],"cache_limit":"1Ki"})", 400},
      {R"({"name":"a","argv":["true"],"restart":"sometimes"})", 400},
      {R"({"name":"a","argv":["true"],"placement":"balanced"})", 400},
      {R"({"name":"a","argv":["true"])", 400},
      {R"([1,2])", 400},
      {R"({"name":"ok","argv":["true"]})", 409},
  };
  for (const auto& [body, status] : bad) {
    auto r = api::request(d().socket(), "POST", "/v1/workloads", body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << body << " -> " << r->body;
    EXPECT_TRUE(r->json().contains("error")) << r->body;
  }
  EXPECT_EQ(d().call("POST", "/v1/workloads/nope/start").status, 404);
  EXPECT_EQ(d().call("GET", "/v1/events?since=abc").status, 400);
  EXPECT_EQ(d().call("GET", "/v1/events?wait=3600").status, 400);
  EXPECT_EQ(d().call("POST", "/v1/attachments", {{"cgroup", "/no/such/group"}}).status, 404);
  EXPECT_EQ(d().call("POST", "/v1/attachments", {{"cgroup", "../etc"}}).status, 400);

  auto list = d().call("GET", "/v1/workloads").json()["workloads"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["name"], "ok");
  EXPECT_EQ(list[0]["state"], "STOPPED");
  EXPECT_EQ(d().call("GET", "/v1/node").json()["last_event_seq"], before_seq);
  EXPECT_TRUE(testing::cgroup_dirs(d().cgroup_parent() + "/a").empty());
}

TEST_F(DaemonTest, ASilentClientAndA10MiBBodyDoNotStallTheLoop) {
  ASSERT_TRUE(d().start()) << d().log();
  const auto connect = [&] {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, d().socket().c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    return fd;
  };
  const int silent = connect();
  const int big = connect();
  const std::string head =
      "POST /v1/workloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: 10485760\r\n\r\n";
  ASSERT_EQ(::send(big, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  std::thread sender([&] {
    const std::string chunk(64 << 10, 'x');
    for (int i = 0; i < 160; ++i) {
      if (::send(big, chunk.data(), chunk.size(), MSG_NOSIGNAL) < 0) break;
    }
  });
  // The loop answers others meanwhile, each within its own request timeout.
  for (int i = 0; i < 20; ++i) {
    auto r = api::request(d().socket(), "GET", "/healthz", {}, std::chrono::seconds(5));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 200);
  }
  sender.join();
  ::close(silent);
  ::close(big);
  EXPECT_TRUE(d().call("GET", "/v1/workloads").json()["workloads"].empty());
}

TEST_F(DaemonTest, ConfigDirLoadsGoodFilesReportsABadOneWithItsLineAndReloadsOnSighup) {
  const auto config = d().dir() / "config";
  std::filesystem::create_directories(config);
  std::ofstream(config / "a.json") << sleeper("alpha").dump(2);
  std::ofstream(config / "b.json") << sleeper("beta", {{"start", false}}).dump(2);
  std::ofstream(config / "c.json") << "{\n  \"name\": \"gamma\",\n  \"argv\": [\"true\"],\n"
                                      "  \"colour\": \"red\"\n}\n";
  ASSERT_TRUE(d().start({"--config", config.string()})) << d().log();
  auto list = d().call("GET", "/v1/workloads").json()["workloads"];
  ASSERT_EQ(list.size(), 2u) << list.dump();
  EXPECT_EQ(list[0]["name"], "alpha");
  EXPECT_EQ(list[0]["state"], "RUNNING");
  EXPECT_EQ(list[1]["name"], "beta");
  EXPECT_EQ(list[1]["state"], "STOPPED");
  bool reported = false;
  for (const auto& e : d().events()) {
    if (e["type"] == "config.error" && e["data"]["line"] == 4 &&
        e["message"].get<std::string>().find("c.json:4") != std::string::npos) {
      reported = true;
    }
  }
  EXPECT_TRUE(reported) << d().events().dump();

  std::filesystem::remove(config / "a.json");
  std::ofstream(config / "d.json") << sleeper("delta", {{"start", false}}).dump();
  ::kill(d().pid(), SIGHUP);
  auto after = d().wait_for("/v1/workloads", [](const json& j) {
    std::set<std::string> names;
    for (const auto& w : j["workloads"])
      names.insert(w["name"]);
    return names == std::set<std::string>{"beta", "delta"};
  });
  EXPECT_EQ(after["workloads"].size(), 2u) << after.dump();
}

TEST_F(DaemonTest, TellsSystemdItIsReady) {
  const std::string path = (d().dir() / "notify.sock").string();
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_TRUE(d().start({}, {"NOTIFY_SOCKET=" + path})) << d().log();
  char buf[256] = {};
  const ssize_t n = ::recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
  ::close(fd);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "READY=1");
}

// With a daemon running, `hostfit place --owner` and `hostfit run --placement` hold CPUs in the
// daemon's ledger, so the daemon's own workloads and the CLI never hand out one CPU twice.
TEST_F(DaemonTest, PlaceAndRunPlacementUseTheDaemonsLedger) {
  ASSERT_TRUE(d().start()) << d().log();
  const std::vector<std::string> env = {"HOSTFIT_SOCKET=" + d().socket(), "HOSTFIT_LEDGER="};
  auto placed = fixtures::run_command(
      {HOSTFIT_BIN, "place", "--cpus", "1", "--owner", "batch", "-o", "json"}, env);
  ASSERT_EQ(placed.exit_code, 0) << placed.err;
  const json p = json::parse(placed.out);
  auto holds = d().call("GET", "/v1/placements").json()["holds"];
  ASSERT_EQ(holds.size(), 1u) << holds.dump();
  EXPECT_EQ(holds[0]["owner"], "batch");
  EXPECT_EQ(holds[0]["cpus"], p["cpus"]);

  // A second owner of the same name is refused by the daemon, as the file ledger would.
  auto again =
      fixtures::run_command({HOSTFIT_BIN, "place", "--cpus", "1", "--owner", "batch"}, env);
  EXPECT_EQ(again.exit_code, 1) << again.err;
  EXPECT_NE(again.err.find("already holds"), std::string::npos) << again.err;

  const std::string name = "run-" + std::to_string(::getpid());
  auto run = fixtures::run_command(
      {HOSTFIT_BIN, "run", "--name", name, "--cpus", "1", "--placement", "balanced",
       "--cgroup-parent", d().cgroup_parent() + "/cli", "--", "sh", "-c", "echo $HOSTFIT_CPUSET"},
      env);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find_first_of("0123456789"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.substr(0, run.out.find('\n')) == p["cpus"].get<std::string>(), false)
      << "the run got the CPU batch holds";
  bool held = false, released = false;
  for (const auto& e : d().events()) {
    if (e["type"] == "placement.held" && e["workload"] == name) held = true;
    if (e["type"] == "placement.released" && e["workload"] == name) released = true;
  }
  EXPECT_TRUE(held && released) << d().events().dump();

  ASSERT_EQ(fixtures::run_command({HOSTFIT_BIN, "place", "--release", "batch"}, env).exit_code, 0);
  EXPECT_TRUE(d().call("GET", "/v1/placements").json()["holds"].empty());
}

// The store survives a daemon killed in the middle of its writes: every workload the API
// acknowledged is there after the restart, and the database is intact.
TEST_F(DaemonTest, StoreSurvivesADaemonKilledMidWrite) {
  std::set<std::string> acknowledged;
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(d().start()) << d().log();
    std::atomic<bool> stop{false};
    std::thread writer([&, round] {
      for (int i = 0; !stop; ++i) {
        const std::string name = "w" + std::to_string(round) + "-" + std::to_string(i);
        auto r = api::request(d().socket(), "POST", "/v1/workloads",
                              sleeper(name, {{"start", false}}).dump(), std::chrono::seconds(2));
        if (r && r->status == 201) acknowledged.insert(name);
        if (!r) break;
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + 70 * round));
    d().kill9();
    stop = true;
    writer.join();
  }
  {
    auto store = Store::open(d().state_dir() / "hostfit.db");
    ASSERT_TRUE(store) << store.error().message;
    EXPECT_EQ(*(*store)->integrity_check(), "ok");
  }
  ASSERT_TRUE(d().start()) << d().log();
  std::set<std::string> present;
  const auto listed = d().call("GET", "/v1/workloads");
  ASSERT_EQ(listed.status, 200) << listed.body;
  const json workloads = listed.json()["workloads"];
  for (const auto& w : workloads)
    present.insert(w["name"]);
  EXPECT_GT(acknowledged.size(), 0u);
  for (const auto& name : acknowledged)
    EXPECT_TRUE(present.contains(name)) << name << " was acknowledged and then lost";
}

}  // namespace

// GET /v1/workloads answers from memory: compact elements that follow every state change, the
// CPU quota and the usage counter sampled from the cgroup, the same numbers in /metrics.
TEST_F(DaemonTest, WorkloadListIsCompactAndFollowsStateAndCpuUsage) {
  ASSERT_TRUE(d().start()) << d().log();
  ASSERT_EQ(d().call("POST", "/v1/workloads", sleeper("idle", {{"cpus", 0.5}})).status, 201);
  json busy = {{"name", "busy"},
               {"argv", {"sh", "-c", "while :; do :; done"}},
               {"memory", "64Mi"},
               {"cpus", 0.2}};
  ASSERT_EQ(d().call("POST", "/v1/workloads", busy).status, 201);
  const auto entry = [&](const std::string& name) {
    const json list = d().call("GET", "/v1/workloads").json();
    for (const auto& w : list["workloads"]) {
      if (w["name"] == name) return w;
    }
    return json();
  };
  json idle = entry("idle");
  ASSERT_TRUE(idle.is_object());
  EXPECT_EQ(idle["state"], "RUNNING");
  EXPECT_TRUE(idle["pid"].is_number());
  EXPECT_TRUE(idle["verdict"].is_null()) << idle.dump();
  EXPECT_EQ(idle["cpu"]["quota_cpus"], 0.5);
  EXPECT_EQ(idle["memory_limit_bytes"], 64 << 20);
  EXPECT_FALSE(idle.contains("spec")) << "the list element carries the spec: " << idle.dump();
  EXPECT_LT(idle.dump().size(), 400u) << idle.dump();

  // The busy loop's usage counter rises between samples; the list shows each new value.
  json first = d().wait_for("/v1/workloads/busy", [](const json& j) {
    return j["cpu"]["usage_usec"].is_number() && j["cpu"]["usage_usec"].get<uint64_t>() > 0;
  });
  const uint64_t before = first["cpu"]["usage_usec"].get<uint64_t>();
  uint64_t after = before;
  for (int i = 0; i < 100 && after <= before + 10000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const json b = entry("busy");
    if (b["cpu"]["usage_usec"].is_number()) after = b["cpu"]["usage_usec"].get<uint64_t>();
  }
  EXPECT_GT(after, before + 10000) << "the list's usage_usec did not follow the counter";
  const std::string metrics = d().call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("hostfit_workload_cpu_quota_cpus{name=\"idle\"} 0.5"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("hostfit_workload_cpu_usage_seconds_total{name=\"busy\"} "),
            std::string::npos)
      << metrics;

  // A stop shows in the next list at once, with the verdict; so does a new workload.
  ASSERT_EQ(d().call("POST", "/v1/workloads/busy/stop").status, 200);
  json stopped = entry("busy");
  EXPECT_EQ(stopped["state"], "STOPPED");
  EXPECT_TRUE(stopped["pid"].is_null());
  EXPECT_EQ(stopped["verdict"]["text"], "KILLED(SIGNAL 15)") << stopped.dump();
  EXPECT_EQ(stopped["verdict"]["reason"], "SIGNAL");
  EXPECT_TRUE(stopped["cpu"]["usage_usec"].is_null());
  ASSERT_EQ(d().call("POST", "/v1/workloads", sleeper("late")).status, 201);
  EXPECT_EQ(entry("late")["state"], "RUNNING");
  ASSERT_EQ(d().call("DELETE", "/v1/workloads/late?force=1").status, 200);
  EXPECT_TRUE(entry("late").is_null());

  // The single answer: the issue's verdict shape beside the run it comes from.
  json one = d().call("GET", "/v1/workloads/busy").json();
  EXPECT_EQ(one["verdict"]["state"], "KILLED") << one.dump();
  EXPECT_EQ(one["verdict"]["signal"], 15);
  EXPECT_TRUE(one["verdict"]["exit_code"].is_null());
  EXPECT_EQ(one["cpu"]["quota_cpus"], 0.2);
  EXPECT_TRUE(one["cgroup"].is_null());
}

// "memory_high" goes to memory.high where the kernel has it (v2) and is refused where it does not.
TEST_F(DaemonTest, MemoryHighIsAppliedOnV2AndRefusedOnV1) {
  ASSERT_TRUE(d().start()) << d().log();
  auto r = d().call("POST", "/v1/workloads", sleeper("soft", {{"memory_high", "32Mi"}}));
  const HostFacts self = probe_host(Sysroot("/"), ProbeTarget::self());
  const ControllerPath* memory = self.cgroup.find("memory");
  ASSERT_NE(memory, nullptr);
  if (!memory->v2) {
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find("memory_high"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("cgroup v1"), std::string::npos) << r.body;
    EXPECT_EQ(d().call("GET", "/v1/workloads/soft").status, 404);
    return;
  }
  ASSERT_EQ(r.status, 201) << r.body;
  const json w = r.json();
  EXPECT_EQ(w["spec"]["memory_high"], 32 << 20);
  bool found = false;
  for (const auto& dir : testing::cgroup_dirs(d().cgroup_parent() + "/soft")) {
    if (std::filesystem::exists(dir / "memory.high")) {
      EXPECT_EQ(testing::slurp(dir / "memory.high"), std::to_string(32 << 20) + "\n");
      found = true;
    }
  }
  EXPECT_TRUE(found) << "no memory.high in the workload's group";
}

// On cgroup v1 the kernel reports cache growing past the budget (a usage threshold's eventfd);
// the daemon answers that on its loop, as `hostfit run --cache-limit` does on its thread, rather
// than at its next sample. `events` counts those wake-ups; before the loop watched them it stayed
// 0.
TEST_F(DaemonTest, CacheLimitIsDrivenByTheKernelsWakeUpsOnV1) {
  const HostFacts self = probe_host(Sysroot("/"), ProbeTarget::self());
  const ControllerPath* memory = self.cgroup.find("memory");
  if (!memory || memory->v2) GTEST_SKIP() << "needs a cgroup v1 memory hierarchy";
  ASSERT_TRUE(d().start()) << d().log();
  const std::string file = (d().dir() / "data").string();
  // Written and synced, left to the controller to bring under budget, then read back twice:
  // each read grows the cache across the threshold the controller armed.
  const std::string script = "dd if=/dev/zero of=" + file +
                             " bs=1M count=96 conv=fsync 2>/dev/null && sleep 1 && cat " + file +
                             " >/dev/null && cat " + file + " >/dev/null && touch " + file +
                             ".done && exec sleep 1000";
  auto r = d().call("POST", "/v1/workloads",
                    {{"name", "cached"},
                     {"argv", {"sh", "-c", script}},
                     {"memory", "512Mi"},
                     {"cache_limit", "16Mi"}});
  ASSERT_EQ(r.status, 201) << r.body;
  const json w = d().wait_for("/v1/workloads/cached", [&](const json& j) {
    return std::filesystem::exists(file + ".done") && j["cache"].is_object() &&
           j["cache"]["events"].get<int64_t>() > 0;
  });
  ASSERT_TRUE(w["cache"].is_object()) << w.dump();
  EXPECT_GT(w["cache"]["events"].get<int64_t>(), 0) << w["cache"].dump();
  EXPECT_GT(w["cache"]["reclaims"].get<int64_t>(), 0) << w["cache"].dump();
  EXPECT_EQ(w["cache"]["method"], "memory.limit_in_bytes") << w["cache"].dump();
  EXPECT_EQ(w["state"], "RUNNING") << w.dump();
}

// "runtime" and "plugins" size {workers} and {instances} as `hostfit run --runtime --plugins`.
TEST_F(DaemonTest, RuntimeAndPluginsSizePlaceholdersAsRunDoes) {
  ASSERT_TRUE(d().start()) << d().log();
  const std::string out = (d().dir() / "sized").string();
  json w = {{"name", "sized"},
            {"argv", {"sh", "-c", "echo {workers} {instances} > " + out}},
            {"memory", "256Mi"},
            {"runtime", "v8"},
            {"plugins", 3}};
  auto created = d().call("POST", "/v1/workloads", w);
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.json()["spec"]["runtime"], "v8");
  EXPECT_EQ(created.json()["spec"]["plugins"], 3);
  d().wait_for("/v1/workloads/sized", [](const json& j) { return j["state"] == "STOPPED"; });
  auto run =
      fixtures::run_command({HOSTFIT_BIN, "run", "--memory", "256Mi", "--runtime", "v8",
                             "--plugins", "3", "--cgroup-parent", d().cgroup_parent() + "/cli",
                             "--", "sh", "-c", "echo {workers} {instances}"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(testing::slurp(out), run.out);
  EXPECT_NE(run.out, "1 0\n") << "the plan did not count the plugins";

  // Plugins need a runtime; an unknown runtime is named.
  auto bad = d().call("POST", "/v1/workloads", {{"name", "x"}, {"argv", {"true"}}, {"plugins", 2}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("plugins"), std::string::npos) << bad.body;
  bad = d().call("POST", "/v1/workloads", {{"name", "x"}, {"argv", {"true"}}, {"runtime", "jvm"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("jvm"), std::string::npos) << bad.body;
}

// An adopted workload is not the new daemon's child; on Linux 6.15+ the pidfd it holds still gives
// the exit status (PIDFD_INFO_EXIT), so the verdict is EXITED(3), not EXITED(?).
TEST_F(DaemonTest, AnAdoptedWorkloadThatExitsGetsItsExitCodeWhereTheKernelKeepsIt) {
  ASSERT_TRUE(d().start()) << d().log();
  const std::string trigger = (d().dir() / "go").string();
  json w = {{"name", "batch"},
            {"argv", {"sh", "-c", "while [ ! -e " + trigger + " ]; do sleep 0.02; done; exit 3"}},
            {"memory", "64Mi"}};
  // This process stands in for the init that reaps orphans (the kernel keeps the status for the
  // pidfd once the process is reaped): the workload, orphaned by the kill -9, becomes our child.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  auto created = d().call("POST", "/v1/workloads", w);
  ASSERT_EQ(created.status, 201);
  const pid_t pid = created.json()["pid"].get<pid_t>();
  d().kill9();
  ASSERT_TRUE(d().start()) << d().log();
  ASSERT_EQ(d().call("GET", "/v1/workloads/batch").json()["state"], "RUNNING");
  std::ofstream(trigger) << "go";
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid) << std::strerror(errno);
  (void)::prctl(PR_SET_CHILD_SUBREAPER, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << status;
  const json done =
      d().wait_for("/v1/workloads/batch", [](const json& j) { return j["state"] == "STOPPED"; });
  utsname u{};
  ::uname(&u);
  int major = 0, minor = 0;
  std::sscanf(u.release, "%d.%d", &major, &minor);
  if (major > 6 || (major == 6 && minor >= 15)) {
    EXPECT_EQ(done["verdict"]["text"], "EXITED(3)") << done.dump();
    EXPECT_EQ(done["verdict"]["exit_code"], 3);
  } else {
    EXPECT_EQ(done["verdict"]["text"], "EXITED(?)") << done.dump();
    EXPECT_EQ(done["verdict"]["reason"], "UNKNOWN");
  }
}

}  // namespace hostfit
