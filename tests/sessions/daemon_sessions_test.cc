// Sessions through a real `hostfit daemon`: engines in real cgroups, real OOM kills seen by a
// long-polling client, init commands, bad input, and a restart of the daemon.
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <thread>

#include "../daemon/daemon_harness.h"
#include "hostfit/core.h"

namespace hostfit {
namespace {

using testing::DaemonProcess;
using testing::json;
using testing::test_name;

// Alive and not a zombie (an engine orphaned by the first daemon is reaped by whoever is init
// here, in its own time).
bool running(pid_t pid) {
  const std::string stat = testing::slurp("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

class DaemonSessionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    daemon_ = std::make_unique<DaemonProcess>(test_name("s"));
    ASSERT_TRUE(daemon_->start()) << daemon_->log();
    trigger_ = (daemon_->dir() / "hog-now").string();
  }
  void TearDown() override {
    if (!daemon_) return;
    const std::string parent = daemon_->cgroup_parent();
    daemon_.reset();
    EXPECT_TRUE(testing::cgroup_dirs(parent).empty()) << "cgroup left behind";
  }
  DaemonProcess& d() { return *daemon_; }

  // An engine that listens on {port} in a 64 MiB group and touches 512 MiB once the trigger
  // file exists, itself or in a child.
  json hog_template(const std::string& name, bool in_child, json extra = json::object()) {
    json argv = {TEST_ENGINE_BIN, "--port", "{port}", "--hog-when", trigger_, "--hog-mb", "512"};
    if (in_child) argv.push_back("--hog-in-child");
    json t = {{"name", name}, {"argv", argv}, {"memory", "64Mi"}, {"stop_timeout", "2s"}};
    for (auto it = extra.begin(); it != extra.end(); ++it)
      t[it.key()] = it.value();
    return t;
  }

  json open(const std::string& tmpl, int wait = 30) {
    auto r = d().call("POST", "/v1/sessions?wait=" + std::to_string(wait),
                      {{"template", tmpl}, {"owner", "alice"}});
    EXPECT_TRUE(r.status == 201 || r.status == 503) << r.status << " " << r.body;
    return r.json();
  }

  // Why the PostgreSQL example cannot run here, or "" (Debian's postgresql package installed).
  static std::string postgres_missing() {
    for (const char* need : {"/usr/lib/postgresql/15/bin/postgres", "/usr/bin/psql"}) {
      if (::access(need, X_OK) != 0)
        return std::string("needs ") + need + " (scripts/install-deps)";
    }
    if (testing::slurp("/etc/passwd").find("\npostgres:") == std::string::npos)
      return "needs the postgres user (Debian's postgresql package)";
    return "";
  }

  // Alice's session on the example engine (examples/engines/postgres.json).
  json open_postgres() {
    const json t =
        json::parse(testing::slurp(HOSTFIT_SOURCE_DIR "/examples/engines/postgres.json"));
    EXPECT_EQ(d().call("POST", "/v1/engines", t).status, 201);
    return open("pg", 60);
  }

  // `query` through psql at the session's endpoint: what psql printed, stderr included.
  static std::string psql(const json& session, const std::string& query) {
    const std::string command = "psql -h 127.0.0.1 -p " +
                                std::to_string(session["endpoint"]["port"].get<int>()) +
                                " -U postgres -Atc \"" + query + "\" 2>&1";
    std::string out;
    FILE* p = ::popen(command.c_str(), "r");
    char buf[256];
    while (p && std::fgets(buf, sizeof buf, p))
      out += buf;
    if (p) ::pclose(p);
    return out;
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::string trigger_;
};

TEST_F(DaemonSessionsTest, AnOomKilledEngineFailsItsSessionsForALongPollingClient) {
  ASSERT_EQ(d().call("POST", "/v1/engines", hog_template("pg", false)).status, 201);
  const json s = open("pg");
  ASSERT_EQ(s["state"], "OPEN") << s.dump();
  const std::string id = s["id"];
  const std::string engine = s["engine"];
  auto poll = std::async(std::launch::async, [&] {
    return d().call("GET", "/v1/sessions/" + id + "?wait=30", nullptr, std::chrono::seconds(40));
  });
  std::ofstream(trigger_) << "now\n";
  const auto answer = poll.get();
  ASSERT_EQ(answer.status, 200) << answer.body;
  const json failed = answer.json();
  EXPECT_EQ(failed["state"], "FAILED") << failed.dump();
  EXPECT_EQ(failed["verdict"]["verdict"], "KILLED(OOM)") << failed.dump();
  EXPECT_EQ(failed["verdict"]["memory_limit_bytes"], 64 << 20);
  EXPECT_NE(failed["verdict"]["victim"].get<std::string>().find("test-engine"), std::string::npos);
  EXPECT_NE(failed["message"].get<std::string>().find("died: KILLED(OOM)"), std::string::npos);

  // The dead engine is gone from the pool: the next session gets a fresh one.
  std::filesystem::remove(trigger_);
  const json next = open("pg");
  EXPECT_EQ(next["state"], "OPEN") << next.dump();
  EXPECT_NE(next["engine"], engine);
  const json engines = d().call("GET", "/v1/engines").json()["engines"];
  bool dead_listed = false;
  for (const auto& e : engines)
    if (e["id"] == engine)
      dead_listed = e["state"] == "ENDED" && e["verdict"]["verdict"] == "KILLED(OOM)";
  EXPECT_TRUE(dead_listed) << engines.dump();
}

TEST_F(DaemonSessionsTest, AnOomKillInsideTheEngineFailsItsSessionsUnlessOnOomIsIgnore) {
  ASSERT_EQ(d().call("POST", "/v1/engines", hog_template("failing", true)).status, 201);
  ASSERT_EQ(d().call("POST", "/v1/engines", hog_template("tolerant", true, {{"on_oom", "ignore"}}))
                .status,
            201);
  const json f = open("failing");
  const json t = open("tolerant");
  ASSERT_EQ(f["state"], "OPEN") << f.dump();
  ASSERT_EQ(t["state"], "OPEN") << t.dump();
  std::ofstream(trigger_) << "now\n";
  const json failed = d().wait_for("/v1/sessions/" + f["id"].get<std::string>(),
                                   [](const json& j) { return j["state"] != "OPEN"; });
  EXPECT_EQ(failed["state"], "FAILED") << failed.dump();
  EXPECT_EQ(failed["verdict"]["verdict"], "KILLED(OOM)");
  // The session fails on the first sign of the kill; the victim is filled in once the kernel log
  // names it (never, when the kernel has rate-limited its oom-kill lines: then it stays null).
  const json settled = d().wait_for(
      "/v1/sessions/" + f["id"].get<std::string>(),
      [](const json& j) { return j["verdict"]["victim"].is_string(); }, 5);
  EXPECT_EQ(settled["state"], "FAILED") << settled.dump();
  EXPECT_EQ(settled["verdict"]["verdict"], "KILLED(OOM)") << settled.dump();
  if (settled["verdict"]["victim"].is_string()) {
    EXPECT_NE(settled["verdict"]["victim"].get<std::string>().find("pid"), std::string::npos);
  }
  // The tolerant engine's child was killed too, and an event says so; its session stays open.
  const json events = d().wait_for("/v1/events?since=0", [](const json& j) {
    int n = 0;
    for (const auto& e : j["events"])
      n += e["type"] == "engine.oom";
    return n == 2;
  });
  EXPECT_EQ(d().call("GET", "/v1/sessions/" + t["id"].get<std::string>()).json()["state"], "OPEN");
}

TEST_F(DaemonSessionsTest, InitRunsOnceBeforeTheFirstLaunchAndItsFailureFailsTheSession) {
  json ok = {{"name", "withinit"},
             {"argv", {TEST_ENGINE_BIN, "--port", "{port}"}},
             {"init", {"mkdir", "{data_dir}"}}};
  ASSERT_EQ(d().call("POST", "/v1/engines", ok).status, 201);
  const json s = open("withinit");
  EXPECT_EQ(s["state"], "OPEN") << s.dump();
  const json e = d().call("GET", "/v1/engines").json()["engines"][0];
  EXPECT_TRUE(std::filesystem::is_directory(e["data_dir"].get<std::string>())) << e.dump();

  json bad = {{"name", "badinit"},
              {"argv", {TEST_ENGINE_BIN, "--port", "{port}"}},
              {"init", {"sh", "-c", "exit 4"}}};
  ASSERT_EQ(d().call("POST", "/v1/engines", bad).status, 201);
  const json f = open("badinit");
  EXPECT_EQ(f["error"].get<std::string>().find("init command ended EXITED(4)") != std::string::npos,
            true)
      << f.dump();
}

// The launch's split: launched_at, then started_at when the init command has ended (it sleeps
// 300 ms), then ready_at.
TEST_F(DaemonSessionsTest, StartedAtFollowsTheInitCommandAndPrecedesReadiness) {
  json t = {{"name", "slowinit"},
            {"argv", {TEST_ENGINE_BIN, "--port", "{port}"}},
            {"init", {"sh", "-c", "sleep 0.3 && mkdir \"$0\"", "{data_dir}"}}};
  ASSERT_EQ(d().call("POST", "/v1/engines", t).status, 201);
  const json s = open("slowinit");
  ASSERT_EQ(s["state"], "OPEN") << s.dump();
  const json e = d().call("GET", "/v1/engines").json()["engines"][0];
  const auto time = [&](const char* k) {
    auto t = e[k].is_string() ? parse_utc(e[k].get<std::string>()) : std::nullopt;
    EXPECT_TRUE(t.has_value()) << k << ": " << e.dump();
    return t.value_or(std::chrono::system_clock::time_point{});
  };
  const auto launched = time("launched_at"), started = time("started_at"), ready = time("ready_at");
  EXPECT_LE(launched, started) << e.dump();
  EXPECT_LE(started, ready) << e.dump();
  EXPECT_GE(started - launched, std::chrono::milliseconds(300)) << e.dump();
}

TEST_F(DaemonSessionsTest, BadRequestsAreRefusedWithTheirReason) {
  auto r = d().call("POST", "/v1/engines", {{"name", "x"}, {"argv", {"a"}}, {"pool", 2}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("unknown key"), std::string::npos) << r.body;
  r = d().call("POST", "/v1/sessions", {{"template", "nope"}, {"owner", "alice"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("unknown engine template"), std::string::npos) << r.body;
  r = d().call("POST", "/v1/sessions?wait=61", {{"template", "nope"}, {"owner", "alice"}});
  EXPECT_EQ(r.status, 400);
  r = d().call("POST", "/v1/sessions", {{"template", "nope"}, {"user", "alice"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(d().call("GET", "/v1/sessions/s-0000000000000000").status, 404);
  EXPECT_EQ(d().call("DELETE", "/v1/engines").status, 400);
  EXPECT_EQ(d().call("DELETE", "/v1/engines?target=pg-1").status, 404);
  json missing = {{"name", "missing"}, {"argv", {"/nonexistent/engine"}}};
  ASSERT_EQ(d().call("POST", "/v1/engines", missing).status, 201);
  r = d().call("POST", "/v1/sessions?wait=5", {{"template", "missing"}, {"owner", "alice"}});
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("/nonexistent/engine"), std::string::npos) << r.body;
}

// The main pid of each live engine, from its workload.
std::map<std::string, pid_t> engine_pids(DaemonProcess& d) {
  std::map<std::string, pid_t> out;
  const json all = d.call("GET", "/v1/workloads").json();  // kept: the loop reads into it
  for (const auto& w : all["workloads"]) {
    const std::string name = w["name"];
    if (name.starts_with("engine.") && w["pid"].is_number()) out[name.substr(7)] = w["pid"];
  }
  return out;
}

int count_events(DaemonProcess& d, const std::string& type) {
  int n = 0;
  for (const auto& e : d.events())
    n += e["type"] == type;
  return n;
}

TEST_F(DaemonSessionsTest, KillNineWithOpenSessionsAdoptsEnginesAndSessionsWithoutARelaunch) {
  ASSERT_EQ(d().call("POST", "/v1/engines", hog_template("pg", false)).status, 201);
  const auto open_for = [&](const std::string& owner) {
    return d().call("POST", "/v1/sessions?wait=30", {{"template", "pg"}, {"owner", owner}}).json();
  };
  const json a1 = open_for("alice"), a2 = open_for("alice"), b1 = open_for("bob");
  for (const auto* s : {&a1, &a2, &b1})
    ASSERT_EQ((*s)["state"], "OPEN") << s->dump();
  ASSERT_EQ(a1["engine"], a2["engine"]);
  ASSERT_NE(a1["engine"], b1["engine"]);
  const auto pids = engine_pids(d());
  ASSERT_EQ(pids.size(), 2u);
  const int launches = count_events(d(), "engine.launching");

  d().kill9();
  for (const auto& [id, pid] : pids)
    ASSERT_TRUE(running(pid)) << id;
  ASSERT_TRUE(d().start()) << d().log();

  EXPECT_EQ(engine_pids(d()), pids);
  for (const auto* s : {&a1, &a2, &b1}) {
    const json now = d().call("GET", "/v1/sessions/" + (*s)["id"].get<std::string>()).json();
    EXPECT_EQ(now["state"], "OPEN") << now.dump();
    EXPECT_EQ(now["engine"], (*s)["engine"]);
    EXPECT_EQ(now["endpoint"], (*s)["endpoint"]) << now.dump();
  }
  const json engines = d().call("GET", "/v1/engines").json()["engines"];
  for (const auto& e : engines) {
    EXPECT_EQ(e["state"], "READY") << e.dump();
    EXPECT_EQ(e["sessions"].size(), e["id"] == a1["engine"] ? 2u : 1u) << e.dump();
  }
  // alice's next session reuses her engine: nothing is launched, and the engine still answers.
  const json a3 = open_for("alice");
  EXPECT_EQ(a3["state"], "OPEN") << a3.dump();
  EXPECT_EQ(a3["engine"], a1["engine"]);
  EXPECT_EQ(count_events(d(), "engine.launching"), launches);
  EXPECT_EQ(count_events(d(), "engine.adopted"), 2);
  EXPECT_EQ(engine_pids(d()), pids);
  // A new engine does not take an adopted one's port.
  const json c1 = open_for("carol");
  ASSERT_EQ(c1["state"], "OPEN") << c1.dump();
  EXPECT_NE(c1["endpoint"]["port"], a1["endpoint"]["port"]);
  EXPECT_NE(c1["endpoint"]["port"], b1["endpoint"]["port"]);
  // Closing and killing work on adopted sessions and engines as on any other.
  EXPECT_EQ(d().call("DELETE", "/v1/sessions/" + b1["id"].get<std::string>()).json()["state"],
            "CLOSED");
  EXPECT_EQ(d().call("DELETE", "/v1/engines?target=" + a1["engine"].get<std::string>()).status,
            200);
  const json killed = d().wait_for("/v1/sessions/" + a2["id"].get<std::string>(),
                                   [](const json& j) { return j["state"] != "OPEN"; });
  EXPECT_EQ(killed["verdict"]["verdict"], "STOPPED(killed)") << killed.dump();
}

TEST_F(DaemonSessionsTest, EnginesThatDiedWhileTheDaemonWasDownFailTheirSessionsOnAdoption) {
  ASSERT_EQ(d().call("POST", "/v1/engines", hog_template("pg", false)).status, 201);
  const auto open_for = [&](const std::string& owner) {
    return d().call("POST", "/v1/sessions?wait=30", {{"template", "pg"}, {"owner", owner}}).json();
  };
  const json a = open_for("alice"), b = open_for("bob");
  ASSERT_EQ(a["state"], "OPEN") << a.dump();
  ASSERT_EQ(b["state"], "OPEN") << b.dump();
  const auto pids = engine_pids(d());
  ASSERT_EQ(pids.size(), 2u);
  const pid_t alice = pids.at(a["engine"]), bob = pids.at(b["engine"]);

  d().kill9();
  // While no daemon watches: alice's engine meets the OOM killer, bob's is killed by a signal.
  std::ofstream(trigger_) << "now\n";
  ASSERT_EQ(::kill(bob, SIGKILL), 0);
  for (int i = 0; i < 1000 && (running(alice) || running(bob)); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_FALSE(running(alice));
  std::filesystem::remove(trigger_);
  ASSERT_TRUE(d().start()) << d().log();

  const json af = d().call("GET", "/v1/sessions/" + a["id"].get<std::string>()).json();
  EXPECT_EQ(af["state"], "FAILED") << af.dump();
  EXPECT_EQ(af["verdict"]["verdict"], "KILLED(OOM)") << af.dump();
  EXPECT_EQ(af["verdict"]["memory_limit_bytes"], 64 << 20);
  const json bf = d().call("GET", "/v1/sessions/" + b["id"].get<std::string>()).json();
  EXPECT_EQ(bf["state"], "FAILED") << bf.dump();
  EXPECT_NE(bf["verdict"]["verdict"], "KILLED(OOM)") << bf.dump();
  EXPECT_EQ(bf["verdict"]["reason"], "UNKNOWN") << bf.dump();
  // The dead engines are not handed out: the next open launches a fresh one.
  const json next = open_for("alice");
  ASSERT_EQ(next["state"], "OPEN") << next.dump();
  EXPECT_NE(next["engine"], a["engine"]);
  EXPECT_NE(engine_pids(d()).at(next["engine"]), alice);
  const json gone = d().wait_for("/v1/workloads", [&](const json& j) {
    for (const auto& w : j["workloads"])
      if (w["name"] == "engine." + a["engine"].get<std::string>()) return false;
    return true;
  });
  EXPECT_EQ(gone["workloads"].size(), 1u) << gone.dump();
}

TEST_F(DaemonSessionsTest, TemplatesSurviveARestart) {
  ASSERT_EQ(d().call("POST", "/v1/engines", hog_template("pg", false)).status, 201);
  ASSERT_EQ(d().term() & 0x7f, 0);
  ASSERT_TRUE(d().start()) << d().log();
  const json again = open("pg");
  EXPECT_EQ(again["state"], "OPEN") << again.dump();
}

// The PostgreSQL example: initdb once per key as the postgres user, psql through the endpoint,
// and a query that blows the engine's memory limit fails its sessions with KILLED(OOM).
TEST_F(DaemonSessionsTest, PostgresExampleServesSqlAndAnOomKilledBackendFailsItsSessions) {
  if (const std::string why = postgres_missing(); !why.empty()) GTEST_SKIP() << why;
  const json s = open_postgres();
  ASSERT_EQ(s["state"], "OPEN") << s.dump() << d().log();
  EXPECT_EQ(psql(s, "select 6*7"), "42\n");
  (void)psql(s, "select length(string_agg(repeat('x', 1000000), '')) from generate_series(1, 600)");
  const json failed = d().wait_for("/v1/sessions/" + s["id"].get<std::string>(),
                                   [](const json& j) { return j["state"] != "OPEN"; });
  EXPECT_EQ(failed["state"], "FAILED") << failed.dump();
  EXPECT_EQ(failed["verdict"]["verdict"], "KILLED(OOM)") << failed.dump();
  EXPECT_NE(failed["verdict"]["victim"].get<std::string>().find("postgres"), std::string::npos);
  const json next = open("pg", 60);
  ASSERT_EQ(next["state"], "OPEN") << next.dump();
  EXPECT_NE(next["engine"], s["engine"]);
}

// The same with PostgreSQL: after kill -9 of the daemon, the postmaster is adopted, alice's
// session stays open on the same port and SQL still works through it.
TEST_F(DaemonSessionsTest, PostgresEngineIsAdoptedAfterKillNineAndStillServesSql) {
  if (const std::string why = postgres_missing(); !why.empty()) GTEST_SKIP() << why;
  const json s = open_postgres();
  ASSERT_EQ(s["state"], "OPEN") << s.dump() << d().log();
  const auto pids = engine_pids(d());
  ASSERT_EQ(psql(s, "select 6*7"), "42\n");
  d().kill9();
  ASSERT_TRUE(d().start()) << d().log();
  EXPECT_EQ(engine_pids(d()), pids);
  const json now = d().call("GET", "/v1/sessions/" + s["id"].get<std::string>()).json();
  EXPECT_EQ(now["state"], "OPEN") << now.dump();
  EXPECT_EQ(psql(s, "select 6*7"), "42\n");
  const json again = open("pg", 60);
  EXPECT_EQ(again["engine"], s["engine"]) << again.dump();
}

}  // namespace
}  // namespace hostfit
