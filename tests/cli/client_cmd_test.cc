// The daemon's client verbs against an api::Server in this process with canned answers in the
// daemon's shapes: what each verb sends, what it prints, and its exit codes.
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "command.h"
#include "hostfit/api.h"

namespace hostfit {
namespace {

namespace net = boost::asio;
using nlohmann::json;

struct Seen {
  std::string method;
  std::string target;
  std::map<std::string, std::string> params;
  std::string body;
};

const json kWorkload = {{"name", "etl"},
                        {"state", "running"},
                        {"pid", 4242},
                        {"restarts", 1},
                        {"memory", {{"usage_bytes", 3 << 20}}},
                        {"placement", {{"cpus", "0-1"}, {"mems", "0"}}},
                        {"verdict", nullptr},
                        {"memory_limit_bytes", 64 << 20},
                        {"cpu", {{"quota_cpus", nullptr}, {"usage_usec", 1200}}},
                        {"cpuset", nullptr}};

class ClientCommandTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hostfit-cli-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    socket_ = dir_ + "/hostfit.sock";
    answer("GET", "/v1/workloads", 200, {{"workloads", json::array({kWorkload})}});
  }
  void TearDown() override {
    if (thread_.joinable()) {
      std::promise<void> done;
      net::post(io_, [&] {
        server_->close();
        done.set_value();
      });
      done.get_future().wait();
      guard_.reset();
      thread_.join();
    }
    std::filesystem::remove_all(dir_);
  }

  // Every request to METHOD PATTERN is recorded and answered with STATUS and BODY.
  void answer(std::string method, std::string pattern, int status, json body) {
    router_.add(method, pattern, [this, status, body](const api::Request& r, api::Reply reply) {
      {
        std::lock_guard lock(mutex_);
        seen_.push_back({r.method, r.target, r.params, r.body});
      }
      reply(api::json(status, body));
    });
  }
  void serve() {
    server_ = std::make_unique<api::Server>(io_, router_);
    auto st = server_->listen_unix(socket_);
    ASSERT_TRUE(st) << st.error().message;
    thread_ = std::thread([this] { io_.run(); });
  }
  fixtures::CommandResult hostfit(std::vector<std::string> args, bool with_socket = true) {
    std::vector<std::string> argv = {HOSTFIT_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    if (with_socket) argv.insert(argv.end(), {"--socket", socket_});
    return fixtures::run_command(argv);
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }

  std::string dir_;
  std::string socket_;
  net::io_context io_;
  net::executor_work_guard<net::io_context::executor_type> guard_ = net::make_work_guard(io_);
  api::Router router_;
  std::unique_ptr<api::Server> server_;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<Seen> seen_;
};

TEST_F(ClientCommandTest, NoDaemonIsOneLineAndExit1) {
  for (const char* verb : {"ps", "events", "reload"}) {
    const auto r = hostfit({verb});
    EXPECT_EQ(r.exit_code, 1) << verb;
    EXPECT_EQ(r.err, "hostfit: no daemon at " + socket_ + " (start one with hostfit daemon)\n");
    EXPECT_EQ(r.out, "") << verb;
  }
}

TEST_F(ClientCommandTest, SocketComesFromHostfitSocketWhenNotGiven) {
  serve();
  const auto r = fixtures::run_command({HOSTFIT_BIN, "ps"}, {"HOSTFIT_SOCKET=" + socket_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("etl"), std::string::npos);
}

TEST_F(ClientCommandTest, PsPrintsATableOrTheWorkloadsAsJson) {
  serve();
  auto r = hostfit({"ps"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("NAME"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("LAST RUN"), std::string::npos) << r.out;
  // name, state, pid, restarts, memory, limit, placed CPUs
  for (const char* text : {"etl", "running", "4242", "3 MiB", "64 MiB", "0-1"})
    EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << r.out;
  r = hostfit({"ps", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j[0]["name"], "etl");
  EXPECT_EQ(seen().back().target, "/v1/workloads");
}

TEST_F(ClientCommandTest, CreateSendsTheWorkloadShapeFromRunsFlags) {
  answer("POST", "/v1/workloads", 201, kWorkload);
  serve();
  const auto r =
      hostfit({"create",    "etl",        "--cpus",         "2",        "--placement",   "balanced",
               "--memory",  "64Mi",       "--pids",         "100",      "--cache-limit", "8Mi",
               "--env",     "A=1",        "--env",          "B=x=y",    "--user",        "nobody",
               "--restart", "on-failure", "--stop-timeout", "2.5",      "--no-start",    "--socket",
               socket_,     "--",         "sleep",          "{workers}"},
              false);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "created etl: running (pid 4242)\n");
  const Seen s = seen().back();
  EXPECT_EQ(s.method, "POST");
  EXPECT_EQ(s.target, "/v1/workloads");
  const json body = json::parse(s.body);
  EXPECT_EQ(body["name"], "etl");
  EXPECT_EQ(body["argv"], json({"sleep", "{workers}"}));
  EXPECT_EQ(body["env"], json({{"A", "1"}, {"B", "x=y"}}));
  EXPECT_EQ(body["user"], "nobody");
  EXPECT_EQ(body["cpus"], 2.0);
  EXPECT_EQ(body["placement"], "balanced");
  EXPECT_EQ(body["memory"], 64 << 20);
  EXPECT_EQ(body["pids"], 100);
  EXPECT_EQ(body["cache_limit"], 8 << 20);
  EXPECT_EQ(body["restart"], "on-failure");
  EXPECT_EQ(body["stop_timeout_ms"], 2500);
  EXPECT_EQ(body["start"], false);
  EXPECT_FALSE(body.contains("memory_high"));
}

TEST_F(ClientCommandTest, CreateWithABadFlagSendsNothingAndExits2) {
  answer("POST", "/v1/workloads", 201, kWorkload);
  serve();
  const std::vector<std::vector<std::string>> bad = {
      {"create", "etl", "--memory", "lots", "--", "true"},
      {"create", "etl", "--cpus", "two", "--", "true"},
      {"create", "etl", "--restart", "sometimes", "--", "true"},
      {"create", "etl", "--env", "=x", "--", "true"},
      {"create", "etl", "--plugins", "2", "--", "true"},  // plugins without a runtime
      {"create", "etl", "--runtime", "jvm", "--", "true"},
      {"create", "etl"},
  };
  for (const auto& args : bad) {
    const auto r = hostfit(args);
    EXPECT_EQ(r.exit_code, 2) << args[2] << ": " << r.err;
    EXPECT_EQ(r.err.rfind("hostfit: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_TRUE(seen().empty());
}

TEST_F(ClientCommandTest, DaemonErrorsBecomeOneLineExit2For4xxAnd1Otherwise) {
  answer("POST", "/v1/workloads/{name}/start", 409,
         {{"error", "workload 'etl' is stopping"}, {"detail", nullptr}});
  answer("POST", "/v1/workloads/{name}/stop", 500,
         {{"error", "cannot write cgroup.kill"}, {"detail", "Permission denied"}});
  serve();
  auto r = hostfit({"start", "etl"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "hostfit: workload 'etl' is stopping\n");
  r = hostfit({"stop", "etl"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "hostfit: cannot write cgroup.kill (Permission denied)\n");
  r = hostfit({"rm", "nope"});  // no such route in this server: the router's own 404
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "hostfit: no route for /v1/workloads/nope\n");
}

TEST_F(ClientCommandTest, NamesArePathSegmentsAndRmForceAsksToStopFirst) {
  answer("POST", "/v1/workloads/{name}/stop", 200,
         {{"name", "a b"},
          {"state", "stopped"},
          {"pid", nullptr},
          {"verdict", {{"text", "signaled"}, {"reason", "stopped"}}}});
  answer("DELETE", "/v1/workloads/{name}", 200, {{"deleted", "etl"}});
  serve();
  auto r = hostfit({"stop", "a b"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "a b: stopped: signaled\n");
  EXPECT_EQ(seen().back().target, "/v1/workloads/a%20b/stop");
  EXPECT_EQ(seen().back().params.at("name"), "a b");
  r = hostfit({"rm", "--force", "etl"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "removed etl\n");
  EXPECT_EQ(seen().back().target, "/v1/workloads/etl?force=1");
}

TEST_F(ClientCommandTest, EventsFollowResumesFromNextUntilTheDaemonFails) {
  int calls = 0;
  router_.add("GET", "/v1/events", [&](const api::Request& r, api::Reply reply) {
    {
      std::lock_guard lock(mutex_);
      seen_.push_back({r.method, r.target, r.params, r.body});
    }
    if (calls++ == 0) {
      reply(api::json(200, {{"events",
                             {{{"seq", 1},
                               {"time", "T1"},
                               {"type", "workload.started"},
                               {"workload", "etl"},
                               {"message", "started"}},
                              {{"seq", 2},
                               {"time", "T2"},
                               {"type", "workload.oom"},
                               {"workload", "etl"},
                               {"message", "OOM kill"}}}},
                            {"next", 2}}));
    } else {
      reply(api::error(503, "the daemon is shutting down"));
    }
  });
  serve();
  const auto r = hostfit({"events", "--follow"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("1  T1  workload.started  etl  started"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2  T2  workload.oom  etl  OOM kill"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "hostfit: the daemon is shutting down\n");
  const auto s = seen();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].target, "/v1/events?since=0&wait=30");
  EXPECT_EQ(s[1].target, "/v1/events?since=2&wait=30");
}

TEST_F(ClientCommandTest, EventsAsJsonIsOneObjectPerLine) {
  answer("GET", "/v1/events", 200,
         {{"events", {{{"seq", 5}, {"type", "a"}}, {{"seq", 6}, {"type", "b"}}}}, {"next", 6}});
  serve();
  const auto r = hostfit({"events", "--since", "4", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"seq\":5,\"type\":\"a\"}\n{\"seq\":6,\"type\":\"b\"}\n");
  EXPECT_EQ(seen().back().target, "/v1/events?since=4");
}

TEST_F(ClientCommandTest, ReloadPrintsFilesThatDidNotLoadAndExits1) {
  answer(
      "POST", "/v1/reload", 200,
      {{"errors", {{{"file", "/etc/hostfit/a.json"}, {"line", 3}, {"message", "bad \"cpus\""}}}}});
  serve();
  const auto r = hostfit({"reload"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "hostfit: /etc/hostfit/a.json:3: bad \"cpus\"\n");
}

TEST_F(ClientCommandTest, AttachGoesToTheDaemonWhenItsSocketExists) {
  answer("POST", "/v1/attachments", 201,
         {{"name", "registry"},
          {"cgroup", "/system.slice/registry"},
          {"cache_limit_bytes", 64 << 20}});
  serve();
  auto r = hostfit({"attach", "--cgroup", "/system.slice/registry", "--cache-limit", "64Mi"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("now watches /system.slice/registry as 'registry', page cache held under "
                       "64 MiB"),
            std::string::npos)
      << r.out;
  const json body = json::parse(seen().back().body);
  EXPECT_EQ(body, json({{"cgroup", "/system.slice/registry"}, {"cache_limit", 64 << 20}}));
  // --foreground (or a foreground-only flag) keeps it here: nothing more reaches the daemon.
  r = hostfit({"attach", "--foreground", "--cgroup", "/hostfit-test-no-such-group", "--cache-limit",
               "64Mi"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(seen().size(), 1u);
}

TEST_F(ClientCommandTest, AttachWithoutADaemonNeedsACacheLimit) {
  const auto r = hostfit({"attach", "--cgroup", "/x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "hostfit: attach in the foreground needs --cache-limit SIZE (no daemon at " +
                       socket_ + ")\n");
}

}  // namespace
}  // namespace hostfit
