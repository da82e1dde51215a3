// hostfit sessions: engine templates, share levels and session routing, on the daemon's one
// Boost.Asio io_context. A session asks for an engine of a template; the engine key (template,
// share level, owner, subdomain) says which engines may serve it; the module launches engines
// through an EngineHost, waits for them to be ready (a TCP port, a Unix socket or a stdout line)
// and hands out the least-busy ready one.
//
// The rule this module exists for (DESIGN.md, incident 5): when an engine dies, every session
// bound to it fails in the same loop turn with the engine's verdict (KILLED(OOM), EXITED(1), ...),
// openers waiting for it are answered at once, the dead engine is never handed out again, and the
// next open launches a fresh one. Nothing waits for a launch timeout to find out.
//
//   ProcessHost host(io);                       // or the daemon's workload runner
//   sessions::Sessions s(io, host, {.data_root = "/var/lib/hostfit/engines"});
//   s.put_template(*sessions::parse_template(json));
//   auto session = s.open({.template_name = "pg", .owner = "alice"});   // PENDING or OPEN
//   s.when_settled(session->id, [](const sessions::SessionInfo& i) { ... });  // OPEN or FAILED
//
// Not thread-safe: every call, and every EngineHost callback, runs on the io_context's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hostfit/core.h"

namespace boost::asio {
class io_context;
}

namespace hostfit::sessions {

// ---------------------------------------------------------------------------------------------
// Templates: how to launch one kind of engine (docs/sessions.md has the JSON shape).

// Who shares an engine: each session its own (connection), the sessions of one owner (user), or
// every session of the template (server). The subdomain splits any level further.
enum class ShareLevel { kConnection, kUser, kServer };
const char* to_string(ShareLevel level);  // "connection", "user", "server"

// When an engine counts as ready: its {port} accepts a TCP connection, a Unix socket accepts
// one, or its stdout shows a line containing a text.
enum class ReadinessKind { kPort, kSocket, kLine };
struct Readiness {
  ReadinessKind kind = ReadinessKind::kPort;
  std::string target;  // socket: a path (placeholders allowed); line: the text; port: ""
};

// What another process of the engine being OOM-killed means: the engine is broken (fail its
// sessions and stop it), or it copes by itself (an event only).
enum class OnOom { kFail, kIgnore };

inline constexpr int kMaxPoolSize = 64;

struct EngineTemplate {
  std::string name;               // [A-Za-z0-9._-], 1..32, starting with a letter or digit
  std::vector<std::string> argv;  // no shell; placeholders below, plus the run's {workers} etc.
  std::map<std::string, std::string> env;  // values take placeholders too
  std::vector<std::string> init;  // run to completion before a launch whose {data_dir} is new
  std::string user;               // run as this user; "" = root
  std::optional<uint64_t> memory_max_bytes;
  std::optional<double> cpus;
  ShareLevel share_level = ShareLevel::kUser;
  Readiness readiness;
  std::chrono::milliseconds launch_timeout{60'000};
  std::chrono::milliseconds idle_timeout{30 * 60'000};  // 0: never stopped for idleness
  std::chrono::milliseconds stop_timeout{10'000};       // SIGTERM -> SIGKILL
  int pool_size = 1;                                    // engines per key, 1..kMaxPoolSize
  OnOom on_oom = OnOom::kFail;
};

// The placeholders an engine's argv, env, init and readiness socket may use.
inline constexpr std::string_view kPlaceholders =
    "{port} {host} {engine} {key} {owner} {subdomain} {slot} {data_dir}";

// Strict: unknown keys, wrong types, unsafe names, bad durations ("60s", "30m"), unknown
// placeholders and out-of-range numbers are kUsage errors naming the key and what is accepted.
Result<EngineTemplate> parse_template(const nlohmann::json& j);
nlohmann::json to_json(const EngineTemplate& t);  // the same shape, normalized

// A name for a template, owner or subdomain: letters, digits, '.', '_', '-' (and '@' for
// owners), 1..64 characters (32 for templates), starting with a letter or digit.
Status check_name(std::string_view what, std::string_view name, size_t max_length = 64,
                  bool allow_at = false);

// ---------------------------------------------------------------------------------------------
// Engine keys

// Which engines may serve a session. Server level has owner "*"; connection level has the
// session's id as subdomain.
struct EngineKey {
  std::string template_name;
  ShareLevel level = ShareLevel::kUser;
  std::string owner;
  std::string subdomain = "default";

  std::string text() const;  // "pg/user/alice/default"
  friend auto operator<=>(const EngineKey&, const EngineKey&) = default;
};
// "pg/user/alice/default" back into a key; kUsage naming the text otherwise.
Result<EngineKey> parse_key(std::string_view text);

// ---------------------------------------------------------------------------------------------
// What the module needs from whoever runs processes.

// How an engine process ended, in the words of `hostfit run --report`.
struct Verdict {
  std::string state{};    // "EXITED", "KILLED", "FAILED", "STOPPED"
  std::string reason{};   // "", "OOM", "SIGNAL", "TIMEOUT"; for STOPPED: "idle", "killed", "closed"
  std::string text{};     // "EXITED(1)", "KILLED(OOM)", "KILLED(SIGNAL 9)", "KILLED(TIMEOUT)"
  std::string message{};  // one line a person can act on
  std::optional<int> exit_code{}, signal{};
  std::optional<uint64_t> memory_limit_bytes{}, memory_peak_bytes{};  // KILLED(OOM): limit and peak
  std::string victim{};                                               // OOM: "postgres (pid 42)"
};
nlohmann::json to_json(const Verdict& v);

// One launch, placeholders resolved. `engine` is unique per launch and safe as a cgroup name.
struct EngineLaunch {
  std::string engine{};  // "pg-7"
  EngineKey key{};
  std::vector<std::string> argv{};
  std::map<std::string, std::string> env{};
  std::vector<std::string> init{};  // empty: none
  std::string user{};
  std::optional<uint64_t> memory_max_bytes;
  std::optional<double> cpus{};
  std::filesystem::path data_dir{};  // stable per key and slot, so an engine finds its data again
  std::chrono::milliseconds stop_timeout{10'000};
};

// How the host reports what happens to a launched engine. Every callback runs on the loop, never
// from inside launch() or stop().
struct EngineWatch {
  // Exactly once per successful launch(): the main process has ended and this is its verdict.
  std::function<void(const Verdict&)> on_ended{};
  // Optional early notice: the main process is gone, its verdict still settling (the kernel
  // counts an OOM kill after it delivers the SIGKILL).
  std::function<void()> on_exit{};
  // Another process of the engine (its group) was OOM-killed; the main process lives.
  std::function<void(const Verdict&)> on_oom{};
  // The kernel OOM-killed the main process (its log named it): the engine is dead or dying and
  // on_ended follows with the settled verdict. Sessions fail on this, the first sign.
  std::function<void(const Verdict&)> on_killed{};
  // The group's OOM kill counter rose and no log has named the victim yet: the main process or
  // another one. An engine that fails on any OOM kill fails on this.
  std::function<void(const Verdict&)> on_oom_counted{};
  // Optional: the init command has ended and the main process is started now.
  std::function<void()> on_started{};
};

struct LaunchedEngine {
  std::filesystem::path stdout_path;  // where its stdout goes ("" when nowhere readable)
  uint64_t stdout_offset = 0;         // bytes already in that file before this launch
};

// The seam between sessions and the process runner: the daemon's workload runner (cgroup, OOM
// truth, holds) in production, a plain fork/exec host in tests.
class EngineHost {
 public:
  virtual ~EngineHost() = default;
  // Starts the engine (its init command first, when given and data_dir does not exist yet). An
  // Error means nothing was started and no callback follows.
  virtual Result<LaunchedEngine> launch(const EngineLaunch& launch, EngineWatch watch) = 0;
  // SIGTERM, then SIGKILL after its stop timeout; at once when `force`. on_ended follows.
  virtual void stop(const std::string& engine, bool force) = 0;

  // After a daemon restart: takes over an engine an earlier host launched. `ended` holds its
  // verdict when its process ended meanwhile (no callback follows); else `watch` is armed as
  // launch() arms it. An Error: this host cannot adopt it (the engine counts as lost).
  struct Adopted {
    std::optional<Verdict> ended{};
    LaunchedEngine output{};
  };
  virtual Result<Adopted> adopt(const std::string& engine, EngineWatch watch);
};

// ---------------------------------------------------------------------------------------------
// Sessions and engines

// PENDING (its engine launches) -> OPEN -> CLOSED (by its client) or FAILED (its engine died,
// did not start in time, or was killed). FAILED and CLOSED are final.
enum class SessionState { kPending, kOpen, kClosed, kFailed };
const char* to_string(SessionState state);  // "PENDING", "OPEN", "CLOSED", "FAILED"

// LAUNCHING -> READY -> STOPPING (idle, killed, OOM of a helper, launch timeout) -> ENDED;
// EXITING while a dead engine's verdict settles. Only LAUNCHING and READY engines take sessions.
enum class EngineState { kLaunching, kReady, kStopping, kExiting, kEnded };
const char* to_string(EngineState state);  // "LAUNCHING", "READY", "STOPPING", "EXITING", "ENDED"

struct Endpoint {
  std::string host{};         // "127.0.0.1"
  std::optional<int> port{};  // the engine's {port}
  std::string socket{};       // readiness socket path, when the template has one
};

struct SessionInfo {
  std::string id{};  // "s-1f2e3d4c5b6a7980"
  SessionState state = SessionState::kPending;
  EngineKey key{};
  std::string engine{};  // "" while it waits for a slot in its pool
  Endpoint endpoint{};
  std::string message{};             // why it failed, for a person
  std::optional<Verdict> verdict{};  // FAILED: the engine's verdict
  std::chrono::system_clock::time_point created_at{}, opened_at{}, ended_at{};
};
nlohmann::json to_json(const SessionInfo& s);
// to_json's shape back (a record the daemon stored); kParse naming the field otherwise.
Result<SessionInfo> session_from_json(const nlohmann::json& j);

struct EngineInfo {
  std::string id{};
  EngineKey key{};
  int slot = 0;
  EngineState state = EngineState::kLaunching;
  Endpoint endpoint{};
  std::filesystem::path data_dir{};
  std::vector<std::string> sessions{};    // attached: PENDING and OPEN
  std::string stop_cause{};               // "", "idle", "killed", "closed", "oom", "launch_timeout"
  std::optional<Verdict> verdict{};       // ENDED: STOPPED(idle) for an idle stop, else the host's
  std::optional<Verdict> exit_verdict{};  // ENDED: the host's verdict, always
  // launched_at: launch asked of the host; started_at: its main process started (after the init
  // command, when one ran; else launched_at); ready_at: readiness seen.
  std::chrono::system_clock::time_point launched_at{}, started_at{}, ready_at{}, ended_at{};
};
nlohmann::json to_json(const EngineInfo& e);
Result<EngineInfo> engine_from_json(const nlohmann::json& j);

// Something that happened, for the daemon's event feed: "engine.launching", "engine.ready",
// "engine.ended", "engine.oom", "session.opened", "session.closed", "session.failed".
// Every change of a session or an engine comes as an Event carrying the record as it now is, in
// the turn of the change and before anyone waiting is answered, so the daemon can store both in
// one transaction. A change nobody needs to be told of (a session that waits for its engine, an
// engine whose exit is settling, a verdict's late details) has an empty type.
struct Event {
  std::string type;
  std::string subject;  // the engine or session id
  std::string message;
  nlohmann::json data = nlohmann::json::object();
  std::optional<SessionInfo> session{};
  std::optional<EngineInfo> engine{};
  const EngineTemplate* engine_template = nullptr;  // with `engine`: the one it was launched with
};

struct SessionsOptions {
  std::filesystem::path data_root = "/var/lib/hostfit/engines";  // {data_dir} lives below
  std::string host = "127.0.0.1";                                // where engines listen
  int port_first = 20000, port_last = 20999;  // {port} is a free port of this range
  uint64_t first_engine_seq = 1;              // engine ids continue from here ("pg-7")
  size_t keep_ended = 1000;                   // ended sessions and engines kept for queries
  std::function<void(const Event&)> on_event;
};

struct OpenRequest {
  std::string template_name;
  std::string owner;  // who opens it: a user name
  std::string subdomain = "default";
};

class Sessions {
 public:
  Sessions(boost::asio::io_context& io, EngineHost& host, SessionsOptions options);
  ~Sessions();
  Sessions(const Sessions&) = delete;
  Sessions& operator=(const Sessions&) = delete;

  // Adds or replaces a template; running engines keep the template they were launched with.
  void put_template(EngineTemplate t);
  std::vector<EngineTemplate> templates() const;
  const EngineTemplate* find_template(std::string_view name) const;

  // A new session: OPEN at once when a ready engine of its key has room, PENDING while one
  // launches (or while its pool's slots are held by dying engines), FAILED when the launch could
  // not even start. kUsage for an unknown template or a bad owner or subdomain.
  Result<SessionInfo> open(const OpenRequest& request);
  // Calls `done` once, on the loop, when the session's state is no longer `state`: at once
  // (posted) when it already is not; never when the session is dropped from memory first.
  // Unknown id: kNotFound. when_settled waits for PENDING to end (OPEN or FAILED).
  Status when_leaves(const std::string& id, SessionState state,
                     std::function<void(const SessionInfo&)> done);
  Status when_settled(const std::string& id, std::function<void(const SessionInfo&)> done) {
    return when_leaves(id, SessionState::kPending, std::move(done));
  }
  // Closes an OPEN or PENDING session (CLOSED); a final one is returned as it is.
  Result<SessionInfo> close(const std::string& id);

  std::optional<SessionInfo> session(const std::string& id) const;
  // Live sessions and the recently ended ones, oldest first; engine = "" for all.
  std::vector<SessionInfo> sessions(const std::string& engine = "") const;
  std::optional<EngineInfo> engine(const std::string& id) const;
  // Live engines, then recently ended ones.
  std::vector<EngineInfo> engines() const;

  // Stops the engines named by an engine id or a key text: their sessions fail at once with
  // STOPPED(killed); returns the ids. kNotFound when nothing live matches.
  Result<std::vector<std::string>> kill(const std::string& engine_or_key);

  // After a daemon restart, before any open: takes back what an earlier Sessions recorded
  // through on_event. Each engine not ENDED is adopted through EngineHost::adopt: a live one
  // keeps its sessions, endpoint and port (READY: open sessions stay open, its idle timer starts
  // again; LAUNCHING: readiness is waited for again, within what is left of its launch timeout;
  // STOPPING: its stop goes on); one that ended meanwhile fails its sessions with its verdict.
  // A PENDING session without an engine is routed again. Ended ones are kept for queries.
  struct Recorded {
    EngineInfo engine;
    EngineTemplate launched_with;
  };
  void adopt(std::vector<Recorded> engines, std::vector<SessionInfo> sessions);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hostfit::sessions
