// Sessions against real engine processes: a tiny test engine listening on {port}, killed with
// real signals, exiting on its own, never getting ready.
#include "hostfit/sessions.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <set>

#include "process_host.h"

namespace hostfit::sessions {
namespace {

using nlohmann::json;
using testing::ProcessHost;

bool process_gone(pid_t pid) {
  return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH;
}

// What a client of the engine sees: "engine PID" from a TCP connection to its endpoint.
std::string hello_from(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    char buf[64];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) out.assign(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

class SessionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("hostfit-sessions-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    host_ = std::make_unique<ProcessHost>(io_, dir_ / "logs");
  }
  void TearDown() override {
    sessions_.reset();
    host_.reset();  // kills what is left
    std::filesystem::remove_all(dir_);
  }

  // A port range of this test process's own, so tests in parallel do not race for one port.
  Sessions& make() {
    const int first = 21000 + (::getpid() % 400) * 20;
    sessions_ = std::make_unique<Sessions>(
        io_, *host_,
        SessionsOptions{.data_root = dir_ / "engines",
                        .port_first = first,
                        .port_last = first + 19,
                        .on_event = [this](const Event& e) { on_event(e); }});
    return *sessions_;
  }

  void add(json extra = json::object(), std::vector<std::string> args = {}) {
    json j = {{"name", "t"},
              {"argv", {TEST_ENGINE_BIN, "--port", "{port}", "--lifetime", "60"}},
              {"stop_timeout", "2s"}};
    for (const auto& a : args)
      j["argv"].push_back(a);
    for (auto it = extra.begin(); it != extra.end(); ++it)
      j[it.key()] = it.value();
    auto t = parse_template(j);
    ASSERT_TRUE(t) << t.error().message;
    sessions_->put_template(*t);
  }

  SessionInfo open(const std::string& owner = "alice") {
    auto s = sessions_->open({.template_name = "t", .owner = owner});
    EXPECT_TRUE(s) << s.error().message;
    return s ? *s : SessionInfo{};
  }

  // Runs the loop until `done` or a generous bound (a hang guard, not a timing assertion).
  template <class F>
  bool run_until(F&& done, std::chrono::seconds bound = std::chrono::seconds(30)) {
    const auto until = std::chrono::steady_clock::now() + bound;
    while (!done() && std::chrono::steady_clock::now() < until) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(5));
    }
    return done();
  }

  SessionState state(const std::string& id) { return sessions_->session(id)->state; }
  bool settled(const std::vector<SessionInfo>& all) {
    for (const auto& s : all)
      if (state(s.id) == SessionState::kPending) return false;
    return true;
  }

  std::function<void(const Event&)> event_hook;
  std::vector<Event> events;
  void on_event(const Event& e) {
    events.push_back(e);
    if (event_hook) event_hook(e);
  }
  int count_events(const std::string& type) {
    int n = 0;
    for (const auto& e : events)
      n += e.type == type;
    return n;
  }

  boost::asio::io_context io_;
  std::filesystem::path dir_;
  std::unique_ptr<ProcessHost> host_;
  std::unique_ptr<Sessions> sessions_;
};

TEST_F(SessionsTest, OpenLaunchesAnEngineAndTheSessionOpensWhenItsPortAccepts) {
  make();
  add({}, {"--delay-ms", "200"});
  const auto s = open();
  EXPECT_EQ(s.state, SessionState::kPending);
  ASSERT_FALSE(s.engine.empty());
  ASSERT_TRUE(run_until([&] { return state(s.id) != SessionState::kPending; }));
  const auto now = *sessions_->session(s.id);
  EXPECT_EQ(now.state, SessionState::kOpen) << now.message;
  ASSERT_TRUE(now.endpoint.port);
  const pid_t pid = host_->pid_of(now.engine);
  EXPECT_EQ(hello_from(*now.endpoint.port), "engine " + std::to_string(pid) + "\n");
  EXPECT_EQ(sessions_->engine(now.engine)->state, EngineState::kReady);
  EXPECT_EQ(host_->launches.at(0).argv.at(2), std::to_string(*now.endpoint.port));
}

TEST_F(SessionsTest, FiftyConcurrentOpensLaunchOneEngine) {
  make();
  add({}, {"--delay-ms", "300"});
  std::vector<SessionInfo> all;
  for (int i = 0; i < 50; ++i)
    all.push_back(open());
  ASSERT_TRUE(run_until([&] { return settled(all); }));
  EXPECT_EQ(host_->launches.size(), 1u);
  std::set<std::string> engines;
  for (const auto& s : all) {
    EXPECT_EQ(state(s.id), SessionState::kOpen);
    engines.insert(sessions_->session(s.id)->engine);
  }
  EXPECT_EQ(engines.size(), 1u);
  EXPECT_EQ(sessions_->engine(*engines.begin())->sessions.size(), 50u);
}

TEST_F(SessionsTest, AKilledEngineFailsAllItsSessionsInTheSameTurnAndTheNextOpenLaunchesFresh) {
  make();
  add();
  std::vector<SessionInfo> all = {open(), open(), open()};
  ASSERT_TRUE(run_until([&] { return settled(all); }));
  const std::string engine = sessions_->session(all[0].id)->engine;
  // When the engine's end is published, every one of its sessions has already failed.
  std::vector<SessionState> at_event;
  event_hook = [&](const Event& e) {
    if (e.type != "engine.ended") return;
    for (const auto& s : all)
      at_event.push_back(state(s.id));
  };
  const pid_t pid = host_->pid_of(engine);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(run_until([&] { return !at_event.empty(); }));
  for (auto st : at_event)
    EXPECT_EQ(st, SessionState::kFailed);
  for (const auto& s : all) {
    const auto now = *sessions_->session(s.id);
    ASSERT_TRUE(now.verdict);
    EXPECT_EQ(now.verdict->text, "KILLED(SIGNAL 9)");
    EXPECT_NE(now.message.find("died"), std::string::npos) << now.message;
  }
  const auto dead = sessions_->engine(engine);
  EXPECT_EQ(dead->state, EngineState::kEnded);
  EXPECT_EQ(dead->verdict->text, "KILLED(SIGNAL 9)");

  const auto next = open();
  EXPECT_NE(next.engine, engine);
  ASSERT_TRUE(run_until([&] { return state(next.id) != SessionState::kPending; }));
  EXPECT_EQ(state(next.id), SessionState::kOpen);
  EXPECT_EQ(host_->launches.size(), 2u);
}

TEST_F(SessionsTest, AnEngineThatExitsDuringLaunchAnswersItsWaitersAtOnceWithItsExitCode) {
  make();
  add({{"launch_timeout", "10m"}},
      {"--delay-ms", "60000", "--exit-after-ms", "100", "--exit-code", "3"});
  std::vector<SessionInfo> all = {open(), open()};
  std::vector<SessionInfo> answered;
  for (const auto& s : all)
    ASSERT_TRUE(
        sessions_->when_settled(s.id, [&](const SessionInfo& i) { answered.push_back(i); }));
  ASSERT_TRUE(run_until([&] { return answered.size() == 2; }));
  for (const auto& i : answered) {
    EXPECT_EQ(i.state, SessionState::kFailed);
    ASSERT_TRUE(i.verdict);
    EXPECT_EQ(i.verdict->text, "EXITED(3)");
    EXPECT_EQ(i.verdict->exit_code, 3);
    EXPECT_NE(i.message.find("ended during launch"), std::string::npos) << i.message;
  }
}

TEST_F(SessionsTest, ALaunchTimeoutFailsTheWaitersAndKillsTheEngine) {
  make();
  add({{"launch_timeout", "300ms"}}, {"--delay-ms", "60000", "--ignore-term"});
  const auto s = open();
  ASSERT_TRUE(run_until([&] { return state(s.id) != SessionState::kPending; }));
  const auto now = *sessions_->session(s.id);
  EXPECT_EQ(now.state, SessionState::kFailed);
  EXPECT_EQ(now.verdict->text, "KILLED(TIMEOUT)");
  EXPECT_NE(now.message.find("not ready within 300ms"), std::string::npos) << now.message;
  const pid_t pid = host_->pid_of(now.engine);
  ASSERT_TRUE(
      run_until([&] { return sessions_->engine(now.engine)->state == EngineState::kEnded; }));
  EXPECT_TRUE(process_gone(pid));
  EXPECT_EQ(sessions_->engine(now.engine)->stop_cause, "launch_timeout");
}

TEST_F(SessionsTest, AnIdleEngineIsStoppedAndEndsAsStoppedIdle) {
  make();
  add({{"idle_timeout", "200ms"}});
  const auto s = open();
  ASSERT_TRUE(run_until([&] { return state(s.id) == SessionState::kOpen; }));
  const pid_t pid = host_->pid_of(s.engine);
  auto closed = sessions_->close(s.id);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->state, SessionState::kClosed);
  ASSERT_TRUE(run_until([&] { return sessions_->engine(s.engine)->state == EngineState::kEnded; }));
  const auto e = *sessions_->engine(s.engine);
  EXPECT_EQ(e.verdict->text, "STOPPED(idle)");
  EXPECT_EQ(e.exit_verdict->text, "KILLED(SIGNAL 15)");
  EXPECT_TRUE(process_gone(pid));
  EXPECT_EQ(state(s.id), SessionState::kClosed);  // a closed session does not fail later
}

TEST_F(SessionsTest, ASessionKeepsItsEngineFromIdling) {
  make();
  add({{"idle_timeout", "100ms"}});
  const auto a = open();
  const auto b = open();
  ASSERT_TRUE(run_until([&] { return state(a.id) == SessionState::kOpen; }));
  ASSERT_TRUE(sessions_->close(a.id));
  io_.restart();
  io_.run_for(std::chrono::milliseconds(400));  // well past the idle timeout
  EXPECT_EQ(sessions_->engine(a.engine)->state, EngineState::kReady);
  EXPECT_EQ(state(b.id), SessionState::kOpen);
}

TEST_F(SessionsTest, APoolSpreadsSessionsOverItsEnginesLeastBusyFirst) {
  make();
  add({{"pool_size", 3}});
  std::vector<SessionInfo> all;
  for (int i = 0; i < 9; ++i)
    all.push_back(open());
  ASSERT_TRUE(run_until([&] { return settled(all); }));
  EXPECT_EQ(host_->launches.size(), 3u);
  std::map<std::string, int> per_engine;
  for (const auto& s : all)
    ++per_engine[sessions_->session(s.id)->engine];
  ASSERT_EQ(per_engine.size(), 3u);
  for (const auto& [engine, n] : per_engine)
    EXPECT_EQ(n, 3) << engine;
  // Close two on one engine: the next open goes to it, the least busy.
  const std::string light = sessions_->session(all[0].id)->engine;
  int closed = 0;
  for (const auto& s : all)
    if (closed < 2 && sessions_->session(s.id)->engine == light && sessions_->close(s.id)) ++closed;
  EXPECT_EQ(open().engine, light);
  EXPECT_EQ(host_->launches.size(), 3u);
}

TEST_F(SessionsTest, ShareLevelsDecideWhoSharesAnEngine) {
  make();
  add();  // user level
  const auto a1 = open("alice"), a2 = open("alice"), b = open("bob");
  EXPECT_EQ(a1.engine, a2.engine);
  EXPECT_NE(a1.engine, b.engine);
  EXPECT_EQ(a1.key.text(), "t/user/alice/default");

  add({{"share_level", "server"}});
  const auto s1 = open("alice"), s2 = open("bob");
  EXPECT_EQ(s1.engine, s2.engine);
  EXPECT_EQ(s1.key.owner, "*");

  add({{"share_level", "connection"}});
  const auto c1 = open("alice"), c2 = open("alice");
  EXPECT_NE(c1.engine, c2.engine);
  ASSERT_TRUE(run_until([&] { return state(c1.id) == SessionState::kOpen; }));
  const pid_t pid = host_->pid_of(c1.engine);
  ASSERT_TRUE(sessions_->close(c1.id));  // its engine goes with it
  ASSERT_TRUE(
      run_until([&] { return sessions_->engine(c1.engine)->state == EngineState::kEnded; }));
  EXPECT_EQ(sessions_->engine(c1.engine)->verdict->text, "STOPPED(closed)");
  EXPECT_TRUE(process_gone(pid));
}

TEST_F(SessionsTest, ADeadEngineIsNeverHandedOutWhileItsVerdictSettles) {
  make();
  host_->verdict_delay = std::chrono::milliseconds(300);
  add();
  const auto first = open();
  ASSERT_TRUE(run_until([&] { return state(first.id) == SessionState::kOpen; }));
  bool exiting = false;
  ASSERT_EQ(::kill(host_->pid_of(first.engine), SIGKILL), 0);
  ASSERT_TRUE(run_until(
      [&] { return exiting = sessions_->engine(first.engine)->state == EngineState::kExiting; }));
  // The slot is held: a new session waits instead of landing on the dead engine.
  const auto during = open();
  EXPECT_EQ(during.state, SessionState::kPending);
  EXPECT_TRUE(during.engine.empty());
  EXPECT_EQ(host_->launches.size(), 1u);
  ASSERT_TRUE(run_until([&] { return state(during.id) != SessionState::kPending; }));
  EXPECT_EQ(state(first.id), SessionState::kFailed);
  const auto now = *sessions_->session(during.id);
  EXPECT_EQ(now.state, SessionState::kOpen);
  EXPECT_NE(now.engine, first.engine);
  EXPECT_EQ(host_->launches.size(), 2u);
}

TEST_F(SessionsTest, KillByKeyFailsTheSessionsAtOnce) {
  make();
  add();
  const auto s = open();
  ASSERT_TRUE(run_until([&] { return state(s.id) == SessionState::kOpen; }));
  const pid_t pid = host_->pid_of(s.engine);
  auto killed = sessions_->kill("t/user/alice/default");
  ASSERT_TRUE(killed) << killed.error().message;
  EXPECT_EQ(*killed, std::vector<std::string>{s.engine});
  EXPECT_EQ(state(s.id), SessionState::kFailed);  // before the loop runs again
  EXPECT_EQ(sessions_->session(s.id)->verdict->text, "STOPPED(killed)");
  ASSERT_TRUE(run_until([&] { return sessions_->engine(s.engine)->state == EngineState::kEnded; }));
  EXPECT_TRUE(process_gone(pid));
  EXPECT_EQ(sessions_->kill("t/user/alice/default").error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(sessions_->kill("nope").error().kind, ErrorKind::kNotFound);
}

TEST_F(SessionsTest, ReadinessByUnixSocketAndByStdoutLine) {
  make();
  add({{"readiness", {{"socket", "{data_dir}.sock"}}}},
      {"--socket", "{data_dir}.sock", "--delay-ms", "100"});
  std::filesystem::create_directories(dir_ / "engines" / "t");
  const auto s = open();
  ASSERT_TRUE(run_until([&] { return state(s.id) != SessionState::kPending; }));
  EXPECT_EQ(state(s.id), SessionState::kOpen) << sessions_->session(s.id)->message;
  EXPECT_EQ(sessions_->session(s.id)->endpoint.socket,
            (dir_ / "engines/t/user.alice.default.0.sock").string());

  json line = {{"name", "l"},
               {"argv", {TEST_ENGINE_BIN, "--print", "listening for {owner}", "--delay-ms", "150"}},
               {"readiness", {{"line", "listening for bob"}}}};
  sessions_->put_template(*parse_template(line));
  auto l = sessions_->open({.template_name = "l", .owner = "bob"});
  ASSERT_TRUE(l);
  ASSERT_TRUE(run_until([&] { return state(l->id) != SessionState::kPending; }));
  EXPECT_EQ(state(l->id), SessionState::kOpen);
}

// PostgreSQL creates its socket's path before it accepts: a path that exists is not readiness,
// a successful connect() is. Here the path is a bound socket nobody listens on.
TEST_F(SessionsTest, ASocketPathThatExistsButDoesNotAcceptIsNotReady) {
  make();
  const auto path = dir_ / "engines" / "early.sock";
  std::filesystem::create_directories(path.parent_path());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  add({{"readiness", {{"socket", path.string()}}}, {"launch_timeout", "400ms"}},
      {"--delay-ms", "60000"});
  const auto s = open();
  ASSERT_TRUE(run_until([&] { return state(s.id) != SessionState::kPending; }));
  ::close(fd);
  const auto now = *sessions_->session(s.id);
  EXPECT_EQ(now.state, SessionState::kFailed);
  ASSERT_TRUE(now.verdict);
  EXPECT_EQ(now.verdict->text, "KILLED(TIMEOUT)") << now.message;
}

TEST_F(SessionsTest, BadOpensAreUsageErrorsAndAnEngineThatCannotStartFailsItsSession) {
  make();
  add();
  auto unknown = sessions_->open({.template_name = "nope", .owner = "alice"});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().kind, ErrorKind::kUsage);
  EXPECT_NE(unknown.error().message.find("known: t"), std::string::npos);
  auto owner = sessions_->open({.template_name = "t", .owner = "../root"});
  ASSERT_FALSE(owner);
  EXPECT_EQ(owner.error().kind, ErrorKind::kUsage);

  json missing = {{"name", "m"}, {"argv", {"/nonexistent/engine", "{port}"}}};
  sessions_->put_template(*parse_template(missing));
  auto s = sessions_->open({.template_name = "m", .owner = "alice"});
  ASSERT_TRUE(s);
  EXPECT_EQ(s->state, SessionState::kFailed);
  EXPECT_NE(s->message.find("cannot execute '/nonexistent/engine'"), std::string::npos)
      << s->message;
  EXPECT_TRUE(sessions_->engines().empty());
}

}  // namespace
}  // namespace hostfit::sessions
