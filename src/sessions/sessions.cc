// Session routing and engine lifecycle on the loop. One rule above all: an engine that dies fails
// its sessions, answers its waiting openers and leaves its pool in the same handler.
#include "hostfit/sessions.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <ctime>
#include <deque>
#include <random>
#include <set>

#include "placeholders.h"
#include "readiness.h"

namespace hostfit::sessions {
namespace {

namespace asio = boost::asio;
using nlohmann::json;
using Clock = std::chrono::system_clock;

json time_json(Clock::time_point t) {
  return t == Clock::time_point{} ? json(nullptr) : json(format_utc(t));
}

std::string seconds_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

// A TCP port nobody listens on or holds bound right now (TIME_WAIT is fine: engines set
// SO_REUSEADDR, as servers do).
bool port_free(const std::string& host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  boost::system::error_code ec;
  const auto a = asio::ip::make_address_v4(host, ec);
  if (ec) {
    ::close(fd);
    return false;
  }
  addr.sin_addr.s_addr = htonl(a.to_uint());
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

Verdict stopped(const std::string& cause, std::string message) {
  return Verdict{.state = "STOPPED",
                 .reason = cause,
                 .text = "STOPPED(" + cause + ")",
                 .message = std::move(message)};
}

}  // namespace

const char* to_string(SessionState state) {
  switch (state) {
    case SessionState::kPending:
      return "PENDING";
    case SessionState::kOpen:
      return "OPEN";
    case SessionState::kClosed:
      return "CLOSED";
    case SessionState::kFailed:
      return "FAILED";
  }
  return "PENDING";
}

const char* to_string(EngineState state) {
  switch (state) {
    case EngineState::kLaunching:
      return "LAUNCHING";
    case EngineState::kReady:
      return "READY";
    case EngineState::kStopping:
      return "STOPPING";
    case EngineState::kExiting:
      return "EXITING";
    case EngineState::kEnded:
      return "ENDED";
  }
  return "LAUNCHING";
}

json to_json(const Verdict& v) {
  json j = {{"state", v.state}, {"reason", v.reason}, {"verdict", v.text}, {"message", v.message}};
  if (v.exit_code) j["exit_code"] = *v.exit_code;
  if (v.signal) j["signal"] = *v.signal;
  if (v.memory_limit_bytes) j["memory_limit_bytes"] = *v.memory_limit_bytes;
  if (v.memory_peak_bytes) j["memory_peak_bytes"] = *v.memory_peak_bytes;
  if (!v.victim.empty()) j["victim"] = v.victim;
  return j;
}

static json endpoint_json(const Endpoint& e) {
  json j = {{"host", e.host}, {"port", e.port ? json(*e.port) : json(nullptr)}};
  if (!e.socket.empty()) j["socket"] = e.socket;
  return j;
}

json to_json(const SessionInfo& s) {
  return {{"id", s.id},
          {"state", to_string(s.state)},
          {"template", s.key.template_name},
          {"owner", s.key.owner},
          {"key", s.key.text()},
          {"engine", s.engine.empty() ? json(nullptr) : json(s.engine)},
          {"endpoint", endpoint_json(s.endpoint)},
          {"message", s.message},
          {"verdict", s.verdict ? to_json(*s.verdict) : json(nullptr)},
          {"created_at", time_json(s.created_at)},
          {"opened_at", time_json(s.opened_at)},
          {"ended_at", time_json(s.ended_at)}};
}

json to_json(const EngineInfo& e) {
  return {{"id", e.id},
          {"key", e.key.text()},
          {"template", e.key.template_name},
          {"slot", e.slot},
          {"state", to_string(e.state)},
          {"endpoint", endpoint_json(e.endpoint)},
          {"data_dir", e.data_dir.string()},
          {"sessions", e.sessions},
          {"stop_cause", e.stop_cause},
          {"verdict", e.verdict ? to_json(*e.verdict) : json(nullptr)},
          {"exit_verdict", e.exit_verdict ? to_json(*e.exit_verdict) : json(nullptr)},
          {"launched_at", time_json(e.launched_at)},
          {"started_at", time_json(e.started_at)},
          {"ready_at", time_json(e.ready_at)},
          {"ended_at", time_json(e.ended_at)}};
}

namespace {

// format_utc's text back; the epoch for anything else.
Clock::time_point time_of(const json& j) {
  if (!j.is_string()) return {};
  return parse_utc(j.get_ref<const std::string&>()).value_or(Clock::time_point{});
}

std::string text_of(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

template <class T>
std::optional<T> number_of(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<T>();
}

Endpoint endpoint_of(const json& j) {
  return Endpoint{.host = text_of(j, "host"),
                  .port = number_of<int>(j, "port"),
                  .socket = text_of(j, "socket")};
}

std::optional<Verdict> verdict_of(const json& j) {
  if (!j.is_object()) return std::nullopt;
  return Verdict{.state = text_of(j, "state"),
                 .reason = text_of(j, "reason"),
                 .text = text_of(j, "verdict"),
                 .message = text_of(j, "message"),
                 .exit_code = number_of<int>(j, "exit_code"),
                 .signal = number_of<int>(j, "signal"),
                 .memory_limit_bytes = number_of<uint64_t>(j, "memory_limit_bytes"),
                 .memory_peak_bytes = number_of<uint64_t>(j, "memory_peak_bytes"),
                 .victim = text_of(j, "victim")};
}

template <class State, size_t N>
std::optional<State> state_of(const std::string& text, const State (&all)[N]) {
  for (State st : all)
    if (text == to_string(st)) return st;
  return std::nullopt;
}

}  // namespace

Result<SessionInfo> session_from_json(const json& j) {
  if (!j.is_object()) return fail(ErrorKind::kParse, "a session record is not a JSON object");
  SessionInfo s;
  s.id = text_of(j, "id");
  auto key = parse_key(text_of(j, "key"));
  if (!key) return fail(key.error().wrap("session '" + s.id + "'"));
  s.key = *key;
  constexpr SessionState kAll[] = {SessionState::kPending, SessionState::kOpen,
                                   SessionState::kClosed, SessionState::kFailed};
  auto state = state_of(text_of(j, "state"), kAll);
  if (!state || s.id.empty()) {
    return fail(ErrorKind::kParse, "session record '" + s.id + "' has no id or a bad state '" +
                                       text_of(j, "state") + "'");
  }
  s.state = *state;
  s.engine = text_of(j, "engine");
  if (auto e = j.find("endpoint"); e != j.end() && e->is_object()) s.endpoint = endpoint_of(*e);
  s.message = text_of(j, "message");
  if (auto v = j.find("verdict"); v != j.end()) s.verdict = verdict_of(*v);
  s.created_at = time_of(j.value("created_at", json()));
  s.opened_at = time_of(j.value("opened_at", json()));
  s.ended_at = time_of(j.value("ended_at", json()));
  return s;
}

Result<EngineInfo> engine_from_json(const json& j) {
  if (!j.is_object()) return fail(ErrorKind::kParse, "an engine record is not a JSON object");
  EngineInfo e;
  e.id = text_of(j, "id");
  auto key = parse_key(text_of(j, "key"));
  if (!key) return fail(key.error().wrap("engine '" + e.id + "'"));
  e.key = *key;
  constexpr EngineState kAll[] = {EngineState::kLaunching, EngineState::kReady,
                                  EngineState::kStopping, EngineState::kExiting,
                                  EngineState::kEnded};
  auto state = state_of(text_of(j, "state"), kAll);
  if (!state || e.id.empty()) {
    return fail(ErrorKind::kParse, "engine record '" + e.id + "' has no id or a bad state '" +
                                       text_of(j, "state") + "'");
  }
  e.state = *state;
  e.slot = number_of<int>(j, "slot").value_or(0);
  if (auto p = j.find("endpoint"); p != j.end() && p->is_object()) e.endpoint = endpoint_of(*p);
  e.data_dir = text_of(j, "data_dir");
  e.stop_cause = text_of(j, "stop_cause");
  if (auto v = j.find("verdict"); v != j.end()) e.verdict = verdict_of(*v);
  if (auto v = j.find("exit_verdict"); v != j.end()) e.exit_verdict = verdict_of(*v);
  e.launched_at = time_of(j.value("launched_at", json()));
  e.started_at = time_of(j.value("started_at", json()));
  if (e.started_at == std::chrono::system_clock::time_point{}) e.started_at = e.launched_at;
  e.ready_at = time_of(j.value("ready_at", json()));
  e.ended_at = time_of(j.value("ended_at", json()));
  return e;
}

Result<EngineHost::Adopted> EngineHost::adopt(const std::string& engine, EngineWatch) {
  return fail(ErrorKind::kUnsupported, "this engine host cannot adopt engine '" + engine + "'");
}

struct Engine {
  explicit Engine(asio::io_context& io) : launch_timer(io), idle_timer(io) {}
  EngineInfo info;
  std::shared_ptr<const EngineTemplate> tmpl;
  ReadinessTarget target;
  std::shared_ptr<ReadinessProbe> probe;
  asio::steady_timer launch_timer, idle_timer;
  std::set<std::string> sessions;  // attached, PENDING or OPEN
  // Failed on the first sign of an OOM kill, before the verdict settled: their verdict gets the
  // settled details when the engine ends.
  std::vector<std::string> failed_early;
  bool failed_on_oom = false;  // out of service on an OOM kill's first sign

  bool routable() const {
    return info.state == EngineState::kLaunching || info.state == EngineState::kReady;
  }
  void quiet() {  // no more readiness checks or timers for this engine
    if (probe) probe->cancel();
    probe.reset();
    launch_timer.cancel();
    idle_timer.cancel();
  }
  EngineInfo snapshot() const {
    EngineInfo i = info;
    i.sessions.assign(sessions.begin(), sessions.end());
    return i;
  }
};

struct Session {
  SessionInfo info;
  std::vector<std::pair<SessionState, std::function<void(const SessionInfo&)>>> waiters;
};

struct Sessions::Impl {
  Impl(asio::io_context& io_, EngineHost& host_, SessionsOptions options_)
      : io(io_),
        host(host_),
        options(std::move(options_)),
        engine_seq(options.first_engine_seq),
        rng(std::random_device{}()) {
    // From a random place in the range: two daemons starting at once (tests, a restart beside a
    // dying one) rarely race for one port between its check and the engine's bind.
    const int span = std::max(1, options.port_last - options.port_first + 1);
    port_cursor = static_cast<int>(rng() % static_cast<uint64_t>(span));
  }

  asio::io_context& io;
  EngineHost& host;
  SessionsOptions options;
  std::map<std::string, std::shared_ptr<const EngineTemplate>, std::less<>> templates;
  std::map<std::string, std::shared_ptr<Engine>> engines;  // not ENDED
  std::map<EngineKey, std::vector<std::shared_ptr<Engine>>> pools;
  std::deque<EngineInfo> ended_engines;
  std::map<std::string, Session> sessions;
  std::deque<std::string> ended_sessions;               // ids in the order they ended, for trimming
  std::map<EngineKey, std::deque<std::string>> queued;  // sessions waiting for a pool slot
  uint64_t engine_seq;
  int port_cursor = 0;
  std::mt19937_64 rng;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);  // host callbacks after us: no-op

  void emit(std::string type, std::string subject, std::string message, json data = json::object(),
            const Session* s = nullptr, const Engine* e = nullptr) {
    if (!options.on_event) return;
    Event event{std::move(type), std::move(subject), std::move(message), std::move(data)};
    if (s) event.session = s->info;
    if (e) {
      event.engine = e->snapshot();
      event.engine_template = e->tmpl.get();
    }
    options.on_event(event);
  }
  // A change nobody is told of, for the record.
  void record(const Session& s) { emit("", s.info.id, "", json::object(), &s); }
  void record(const Engine& e) { emit("", e.info.id, "", json::object(), nullptr, &e); }

  std::string new_session_id() {
    static constexpr char kHex[] = "0123456789abcdef";
    for (;;) {
      std::string id = "s-";
      uint64_t r = rng();
      for (int i = 0; i < 16; ++i, r >>= 4)
        id += kHex[r & 15];
      if (!sessions.contains(id)) return id;
    }
  }

  Result<int> allocate_port() {
    std::set<int> used;
    for (const auto& [id, e] : engines)
      if (e->info.endpoint.port) used.insert(*e->info.endpoint.port);
    const int span = options.port_last - options.port_first + 1;
    for (int i = 0; i < span; ++i) {
      const int port = options.port_first + (port_cursor + i) % span;
      if (used.contains(port) || !port_free(options.host, port)) continue;
      port_cursor = (port - options.port_first + 1) % span;
      return port;
    }
    return fail(ErrorKind::kResource, "no free TCP port in " + std::to_string(options.port_first) +
                                          "-" + std::to_string(options.port_last) + " on " +
                                          options.host);
  }

  // Answers the callers waiting for this session to leave a state it has left.
  void settle(Session& s) {
    std::vector<std::function<void(const SessionInfo&)>> due;
    std::erase_if(s.waiters, [&](auto& w) {
      if (w.first == s.info.state) return false;
      due.push_back(std::move(w.second));
      return true;
    });
    const SessionInfo info = s.info;
    for (auto& done : due)
      done(info);
  }

  void ended(Session& s) {
    if (s.info.ended_at == Clock::time_point{}) s.info.ended_at = Clock::now();
    ended_sessions.push_back(s.info.id);
    while (ended_sessions.size() > options.keep_ended) {
      sessions.erase(ended_sessions.front());
      ended_sessions.pop_front();
    }
  }

  void open_session(Session& s) {
    s.info.state = SessionState::kOpen;
    s.info.opened_at = Clock::now();
    emit("session.opened", s.info.id,
         "session " + s.info.id + " opened on engine '" + s.info.engine + "'",
         {{"engine", s.info.engine}, {"key", s.info.key.text()}}, &s);
    settle(s);
  }

  // FAILED with `verdict` (the engine's), in this turn; waiting callers are answered now.
  void fail_session(const std::string& id, const std::string& message,
                    const std::optional<Verdict>& verdict) {
    auto it = sessions.find(id);
    if (it == sessions.end()) return;
    Session& s = it->second;
    if (s.info.state == SessionState::kFailed || s.info.state == SessionState::kClosed) return;
    if (auto e = engines.find(s.info.engine); e != engines.end()) e->second->sessions.erase(id);
    s.info.state = SessionState::kFailed;
    s.info.message = message;
    s.info.verdict = verdict;
    s.info.ended_at = Clock::now();
    emit("session.failed", id, "session " + id + " failed: " + message,
         {{"engine", s.info.engine},
          {"key", s.info.key.text()},
          {"verdict", verdict ? to_json(*verdict) : json(nullptr)},
          // CLOCK_MONOTONIC µs, the kernel log's clock: for bench/sessions' timeline.
          {"mono_us", std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count()}},
         &s);
    settle(s);
    ended(s);  // may erase `s`: last
  }

  void fail_sessions_of(Engine& e, const std::string& message, const Verdict& verdict) {
    const auto ids = e.sessions;  // fail_session detaches
    for (const auto& id : ids)
      fail_session(id, message, verdict);
  }

  void attach(const std::shared_ptr<Engine>& e, Session& s) {
    e->sessions.insert(s.info.id);
    e->idle_timer.cancel();
    s.info.engine = e->info.id;
    s.info.endpoint = e->info.endpoint;
    if (e->info.state == EngineState::kReady) return open_session(s);
    record(s);
  }

  // Finds a place for a PENDING session: the least busy routable engine of its key, or a new
  // engine when every one is busy and the pool has room, or the key's queue when every slot is
  // held by an engine on its way out.
  void route(const std::string& id) {
    Session& s = sessions.at(id);
    auto t = templates.find(s.info.key.template_name);
    if (t == templates.end()) {
      return fail_session(id, "engine template '" + s.info.key.template_name + "' was removed",
                          std::nullopt);
    }
    auto& pool = pools[s.info.key];
    std::shared_ptr<Engine> best;
    for (const auto& e : pool) {
      if (e->routable() && (!best || e->sessions.size() < best->sessions.size())) best = e;
    }
    const bool room = static_cast<int>(pool.size()) < t->second->pool_size;
    if (room && (!best || !best->sessions.empty())) {
      auto launched = launch(s.info.key, t->second);
      if (!launched) {
        if (pool.empty()) pools.erase(s.info.key);
        return fail_session(id, launched.error().message, std::nullopt);
      }
      best = *launched;
    }
    if (!best) {
      queued[s.info.key].push_back(id);
      return record(s);
    }
    attach(best, s);
  }

  PlaceholderMap values_for(const EngineKey& key, const std::string& engine, int slot, int port,
                            const std::filesystem::path& data_dir) const {
    return {{"port", std::to_string(port)},
            {"host", options.host},
            {"engine", engine},
            {"key", key.text()},
            {"owner", key.owner},
            {"subdomain", key.subdomain},
            {"slot", std::to_string(slot)},
            {"data_dir", data_dir.string()}};
  }

  // The directory an engine of this key and slot keeps its data in, across launches.
  std::filesystem::path data_dir_for(const EngineKey& key, int slot) const {
    std::string leaf = to_string(key.level);
    if (key.owner != "*") leaf += "." + key.owner;
    leaf += "." + key.subdomain + "." + std::to_string(slot);
    return options.data_root / key.template_name / leaf;
  }

  Result<EngineLaunch> resolve(const EngineTemplate& t, const EngineKey& key,
                               const PlaceholderMap& values, const std::string& engine,
                               const std::filesystem::path& data_dir) const {
    EngineLaunch l{.engine = engine,
                   .key = key,
                   .user = t.user,
                   .memory_max_bytes = t.memory_max_bytes,
                   .cpus = t.cpus,
                   .data_dir = data_dir,
                   .stop_timeout = t.stop_timeout};
    for (const auto* from : {&t.argv, &t.init}) {
      auto& to = from == &t.argv ? l.argv : l.init;
      for (const auto& a : *from) {
        auto r = substitute(a, values);
        if (!r) return fail(r.error());
        to.push_back(std::move(*r));
      }
    }
    for (const auto& [k, v] : t.env) {
      auto r = substitute(v, values);
      if (!r) return fail(r.error());
      l.env[k] = std::move(*r);
    }
    return l;
  }

  EngineWatch watch_for(const std::string& id) {
    std::weak_ptr<bool> token = alive;
    return EngineWatch{.on_ended =
                           [this, token, id](const Verdict& v) {
                             if (!token.expired()) engine_ended(id, v);
                           },
                       .on_exit =
                           [this, token, id] {
                             if (!token.expired()) engine_exiting(id);
                           },
                       .on_oom =
                           [this, token, id](const Verdict& v) {
                             if (!token.expired()) engine_oom(id, v);
                           },
                       .on_killed =
                           [this, token, id](const Verdict& v) {
                             if (!token.expired()) engine_killed(id, v);
                           },
                       .on_oom_counted =
                           [this, token, id](const Verdict& v) {
                             if (!token.expired()) engine_oom_counted(id, v);
                           },
                       .on_started =
                           [this, token, id] {
                             if (!token.expired()) engine_started(id);
                           }};
  }

  Result<std::shared_ptr<Engine>> launch(const EngineKey& key,
                                         const std::shared_ptr<const EngineTemplate>& t) {
    auto& pool = pools[key];
    int slot = 0;
    while (
        std::any_of(pool.begin(), pool.end(), [&](const auto& e) { return e->info.slot == slot; }))
      ++slot;
    auto port = allocate_port();
    if (!port) return fail(port.error().wrap("cannot launch an engine for " + key.text()));
    const std::string id = t->name + "-" + std::to_string(engine_seq++);
    const auto data_dir = data_dir_for(key, slot);
    const auto values = values_for(key, id, slot, *port, data_dir);
    auto spec = resolve(*t, key, values, id, data_dir);
    if (!spec) return fail(spec.error().wrap("cannot launch engine '" + id + "'"));

    auto e = std::make_shared<Engine>(io);
    e->tmpl = t;
    e->info.id = id;
    e->info.key = key;
    e->info.slot = slot;
    e->info.data_dir = data_dir;
    e->info.endpoint = Endpoint{.host = options.host, .port = *port, .socket = {}};
    if (t->readiness.kind == ReadinessKind::kSocket) {
      auto socket = substitute(t->readiness.target, values);
      if (!socket) return fail(socket.error().wrap("cannot launch engine '" + id + "'"));
      e->info.endpoint.socket = *socket;
    }
    e->info.launched_at = e->info.started_at = Clock::now();
    auto launched = host.launch(*spec, watch_for(id));
    if (!launched) return fail(launched.error().wrap("cannot launch engine '" + id + "'"));
    engines[id] = e;
    pool.push_back(e);
    await_ready(e, *launched, t->launch_timeout);
    emit("engine.launching", id, "engine '" + id + "' launching for " + key.text(),
         {{"key", key.text()}, {"slot", slot}, {"port", *port}, {"argv", spec->argv}}, nullptr,
         e.get());
    return e;
  }

  // Checks the engine's readiness until it is ready or `timeout` has passed.
  void await_ready(const std::shared_ptr<Engine>& e, const LaunchedEngine& output,
                   std::chrono::milliseconds timeout) {
    const EngineTemplate& t = *e->tmpl;
    e->target = ReadinessTarget{.kind = t.readiness.kind,
                                .host = e->info.endpoint.host,
                                .port = e->info.endpoint.port.value_or(0),
                                .socket = e->info.endpoint.socket,
                                .line = t.readiness.target,
                                .stdout_path = output.stdout_path,
                                .stdout_offset = output.stdout_offset};
    std::weak_ptr<bool> token = alive;
    const std::string id = e->info.id;
    e->launch_timer.expires_after(timeout);
    e->launch_timer.async_wait([this, token, id](const boost::system::error_code& ec) {
      if (!ec && !token.expired()) launch_timed_out(id);
    });
    start_probe(e);
  }

  void start_probe(const std::shared_ptr<Engine>& e) {
    std::weak_ptr<bool> token = alive;
    e->probe = std::make_shared<ReadinessProbe>(io, e->target, [this, token, id = e->info.id] {
      if (!token.expired()) engine_ready(id);
    });
    e->probe->start();
  }

  std::shared_ptr<Engine> find(const std::string& id) {
    auto it = engines.find(id);
    return it == engines.end() ? nullptr : it->second;
  }

  // Its init command ended and its main process started: recorded for the launch's split.
  void engine_started(const std::string& id) {
    auto e = find(id);
    if (!e) return;
    e->info.started_at = Clock::now();
    record(*e);
    // The probe has slowed to its longest pause while the init command ran: checked again from
    // its shortest, so ready_at tells the server's start and not the probe's pace.
    if (e->info.state == EngineState::kLaunching && e->probe) {
      e->probe->cancel();
      start_probe(e);
    }
  }

  void engine_ready(const std::string& id) {
    auto e = find(id);
    if (!e || e->info.state != EngineState::kLaunching) return;
    e->info.state = EngineState::kReady;
    e->info.ready_at = Clock::now();
    e->launch_timer.cancel();
    e->probe.reset();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(e->info.ready_at -
                                                                          e->info.launched_at);
    emit("engine.ready", id,
         "engine '" + id + "' ready (" + describe(e->target) + ") after " +
             std::to_string(ms.count()) + " ms",
         {{"key", e->info.key.text()}, {"launch_ms", ms.count()}}, nullptr, e.get());
    for (const auto& sid : std::set<std::string>(e->sessions)) {
      auto s = sessions.find(sid);
      if (s != sessions.end() && s->second.info.state == SessionState::kPending)
        open_session(s->second);
    }
    if (e->sessions.empty()) arm_idle(e);
  }

  void arm_idle(const std::shared_ptr<Engine>& e) {
    if (e->tmpl->idle_timeout.count() == 0) return;
    std::weak_ptr<bool> token = alive;
    const std::string id = e->info.id;
    e->idle_timer.expires_after(e->tmpl->idle_timeout);
    e->idle_timer.async_wait([this, token, id](const boost::system::error_code& ec) {
      if (ec || token.expired()) return;
      auto e = find(id);
      if (e && e->info.state == EngineState::kReady && e->sessions.empty())
        stop_engine(e, "idle", false, std::nullopt);
    });
  }

  // Takes an engine out of service: no new sessions, its own fail with `verdict` now (when
  // given), and the host stops it; engine_ended follows.
  void stop_engine(const std::shared_ptr<Engine>& e, const std::string& cause, bool force,
                   const std::optional<Verdict>& verdict) {
    if (!e->routable()) {
      if (force && e->info.state == EngineState::kStopping) host.stop(e->info.id, true);
      return;
    }
    e->quiet();
    e->info.state = EngineState::kStopping;
    e->info.stop_cause = cause;
    if (verdict) {
      e->info.verdict = verdict;
      fail_sessions_of(*e,
                       "engine '" + e->info.id + "' (" + e->info.key.text() +
                           "): " + verdict->text + ": " + verdict->message,
                       *verdict);
    }
    emit("engine.stopping", e->info.id, "engine '" + e->info.id + "' stopping (" + cause + ")",
         {{"key", e->info.key.text()}, {"cause", cause}}, nullptr, e.get());
    host.stop(e->info.id, force);
  }

  void launch_timed_out(const std::string& id) {
    auto e = find(id);
    if (!e || e->info.state != EngineState::kLaunching) return;
    const Verdict v{.state = "KILLED",
                    .reason = "TIMEOUT",
                    .text = "KILLED(TIMEOUT)",
                    .message = "engine '" + id + "' was not ready within " +
                               seconds_text(e->tmpl->launch_timeout) +
                               " (readiness: " + describe(e->target) + "); stopped"};
    stop_engine(e, "launch_timeout", true, v);
  }

  void engine_exiting(const std::string& id) {
    auto e = find(id);
    if (!e || !e->routable()) return;
    e->quiet();
    e->info.state = EngineState::kExiting;  // never handed out again; the verdict follows
    record(*e);
  }

  // The first sign of the engine's death by OOM (the kernel counted or named the kill, the
  // process may not have exited yet): out of service and its sessions failed now, with what is
  // known; engine_ended settles the details.
  void fail_early(const std::shared_ptr<Engine>& e, const Verdict& v) {
    e->quiet();
    e->info.state = EngineState::kExiting;
    e->info.verdict = v;
    e->failed_on_oom = true;
    for (const auto& id : e->sessions)
      e->failed_early.push_back(id);
    fail_sessions_of(*e,
                     "engine '" + e->info.id + "' (" + e->info.key.text() + ") died: " + v.text +
                         ": " + v.message,
                     v);
    record(*e);
  }

  void engine_killed(const std::string& id, const Verdict& v) {
    auto e = find(id);
    if (e && e->routable()) fail_early(e, v);
  }

  void engine_oom_counted(const std::string& id, const Verdict& v) {
    auto e = find(id);
    if (e && e->routable() && e->tmpl->on_oom == OnOom::kFail) fail_early(e, v);
  }

  void engine_oom(const std::string& id, const Verdict& v) {
    auto e = find(id);
    if (!e) return;
    const bool fails = e->tmpl->on_oom == OnOom::kFail;
    emit("engine.oom", id,
         "engine '" + id + "': " + v.message + (fails ? "; its sessions fail" : "; ignored"),
         {{"key", e->info.key.text()},
          {"verdict", to_json(v)},
          {"on_oom", fails ? "fail" : "ignore"}});
    // Failed already on the counter: the log naming the victim settles the details, and the
    // engine, whose main process lives, is stopped.
    if (fails && e->failed_on_oom) {
      if (e->info.stop_cause.empty()) {
        e->info.verdict = v;
        stop_engine_now(e);
      }
      return;
    }
    if (fails) stop_engine(e, "oom", true, v);
  }

  void stop_engine_now(const std::shared_ptr<Engine>& e) {
    e->info.stop_cause = "oom";
    host.stop(e->info.id, true);
  }

  void engine_ended(const std::string& id, const Verdict& v) {
    auto e = find(id);
    if (!e) return;
    e->quiet();
    const bool was_ready = e->info.ready_at != Clock::time_point{};
    e->info.exit_verdict = v;
    const std::string& cause = e->info.stop_cause;
    if (cause == "idle" || cause == "closed") {
      e->info.verdict =
          stopped(cause, "engine '" + id + "' stopped: " +
                             (cause == "idle" ? "idle for " + seconds_text(e->tmpl->idle_timeout)
                                              : "its session closed") +
                             "; it exited " + v.text);
    } else if (cause == "killed") {
      e->info.verdict->message += "; it exited " + v.text;
    } else if (cause.empty() || (cause == "oom" && v.reason == "OOM")) {
      e->info.verdict = v;  // for an OOM kill told early: the settled one, victim named
    }
    settle_early(*e);
    e->info.state = EngineState::kEnded;
    e->info.ended_at = Clock::now();
    std::vector<std::string> failed(e->sessions.begin(), e->sessions.end());
    const Verdict shown = *e->info.verdict;
    fail_sessions_of(*e,
                     "engine '" + id + "' (" + e->info.key.text() + ") " +
                         (was_ready ? "died" : "ended during launch") + ": " + shown.text + ": " +
                         shown.message,
                     shown);
    const EngineKey key = e->info.key;
    auto& pool = pools[key];
    std::erase(pool, e);
    if (pool.empty()) pools.erase(key);
    engines.erase(id);
    ended_engines.push_back(e->snapshot());
    while (ended_engines.size() > options.keep_ended)
      ended_engines.pop_front();
    emit("engine.ended", id, "engine '" + id + "' (" + key.text() + ") ended: " + shown.text,
         {{"key", key.text()},
          {"verdict", to_json(shown)},
          {"exit_verdict", to_json(v)},
          {"failed_sessions", failed}},
         nullptr, e.get());
    serve_queue(key);
  }

  // Sessions failed early with a verdict of the same kind get its settled details (the victim,
  // the peak); their state and the answer they were given stand.
  void settle_early(Engine& e) {
    const Verdict& settled = *e.info.verdict;
    for (const auto& id : e.failed_early) {
      auto it = sessions.find(id);
      if (it == sessions.end() || !it->second.info.verdict) continue;
      SessionInfo& info = it->second.info;
      if (info.verdict->text != settled.text) continue;
      info.verdict = settled;
      info.message = "engine '" + e.info.id + "' (" + e.info.key.text() +
                     ") died: " + settled.text + ": " + settled.message;
      record(it->second);
    }
    e.failed_early.clear();
  }

  // An engine an earlier daemon launched, back in service as its recorded state says.
  void adopt_engine(const std::shared_ptr<Engine>& e) {
    const std::string id = e->info.id;
    auto adopted = host.adopt(id, watch_for(id));
    if (!adopted || adopted->ended) {
      const Verdict v =
          adopted ? *adopted->ended
                  : Verdict{.state = "FAILED",
                            .reason = "UNKNOWN",
                            .text = "FAILED",
                            .message = adopted.error().message + " when hostfit restarted"};
      return engine_ended(id, v);
    }
    emit("engine.adopted", id,
         "engine '" + id + "' (" + e->info.key.text() + ") adopted, " + to_string(e->info.state) +
             ", with " + std::to_string(e->sessions.size()) + " session(s)",
         {{"key", e->info.key.text()}, {"sessions", e->sessions}}, nullptr, e.get());
    switch (e->info.state) {
      case EngineState::kReady:
        if (e->sessions.empty()) arm_idle(e);
        return;
      case EngineState::kLaunching: {
        // Readiness is waited for again, within what is left of the launch timeout.
        const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
            Clock::now() - e->info.launched_at);
        await_ready(e, adopted->output,
                    std::max(std::chrono::milliseconds(0), e->tmpl->launch_timeout - spent));
        return;
      }
      case EngineState::kStopping:
      case EngineState::kExiting:
        // Its sessions failed before the restart; the stop goes on (at once when it was dying).
        host.stop(id, e->info.state == EngineState::kExiting || e->info.stop_cause == "oom" ||
                          e->info.stop_cause == "launch_timeout");
        return;
      case EngineState::kEnded:
        return;
    }
  }

  // A slot of the key's pool came free: the sessions that waited for one are routed again.
  void serve_queue(const EngineKey& key) {
    auto q = queued.find(key);
    if (q == queued.end()) return;
    auto waiting = std::move(q->second);
    queued.erase(q);
    for (const auto& id : waiting) {
      auto s = sessions.find(id);
      if (s != sessions.end() && s->second.info.state == SessionState::kPending) route(id);
    }
  }
};

Sessions::Sessions(asio::io_context& io, EngineHost& host, SessionsOptions options)
    : impl_(std::make_unique<Impl>(io, host, std::move(options))) {}

Sessions::~Sessions() {
  for (auto& [id, e] : impl_->engines)
    e->quiet();
}

void Sessions::put_template(EngineTemplate t) {
  auto name = t.name;
  impl_->templates[name] = std::make_shared<const EngineTemplate>(std::move(t));
}

std::vector<EngineTemplate> Sessions::templates() const {
  std::vector<EngineTemplate> out;
  for (const auto& [name, t] : impl_->templates)
    out.push_back(*t);
  return out;
}

const EngineTemplate* Sessions::find_template(std::string_view name) const {
  auto it = impl_->templates.find(name);
  return it == impl_->templates.end() ? nullptr : it->second.get();
}

Result<SessionInfo> Sessions::open(const OpenRequest& request) {
  auto& d = *impl_;
  const auto t = d.templates.find(request.template_name);
  if (t == d.templates.end()) {
    std::string known;
    for (const auto& [name, _] : d.templates)
      known += (known.empty() ? "" : ", ") + name;
    return fail(ErrorKind::kUsage, "unknown engine template '" +
                                       escape_bytes(request.template_name, true) +
                                       "' (known: " + (known.empty() ? "none yet" : known) + ")");
  }
  if (auto st = check_name("owner", request.owner, 64, true); !st) return fail(st.error());
  if (auto st = check_name("subdomain", request.subdomain); !st) return fail(st.error());
  Session s;
  s.info.id = d.new_session_id();
  s.info.created_at = Clock::now();
  const ShareLevel level = t->second->share_level;
  s.info.key =
      EngineKey{.template_name = t->first,
                .level = level,
                .owner = level == ShareLevel::kServer ? "*" : request.owner,
                .subdomain = level == ShareLevel::kConnection ? s.info.id : request.subdomain};
  const std::string id = s.info.id;
  d.sessions.emplace(id, std::move(s));
  d.route(id);
  auto it = d.sessions.find(id);
  if (it == d.sessions.end()) return fail(ErrorKind::kInternal, "session " + id + " vanished");
  return it->second.info;
}

Status Sessions::when_leaves(const std::string& id, SessionState state,
                             std::function<void(const SessionInfo&)> done) {
  auto it = impl_->sessions.find(id);
  if (it == impl_->sessions.end())
    return fail(ErrorKind::kNotFound, "no session '" + escape_bytes(id, true) + "'");
  if (it->second.info.state != state) {
    asio::post(impl_->io, [done = std::move(done), info = it->second.info] { done(info); });
    return {};
  }
  it->second.waiters.emplace_back(state, std::move(done));
  return {};
}

Result<SessionInfo> Sessions::close(const std::string& id) {
  auto& d = *impl_;
  auto it = d.sessions.find(id);
  if (it == d.sessions.end())
    return fail(ErrorKind::kNotFound, "no session '" + escape_bytes(id, true) + "'");
  Session& s = it->second;
  if (s.info.state == SessionState::kClosed || s.info.state == SessionState::kFailed) return s.info;
  if (auto q = d.queued.find(s.info.key); q != d.queued.end()) std::erase(q->second, id);
  auto e = d.find(s.info.engine);
  if (e) e->sessions.erase(id);
  s.info.state = SessionState::kClosed;
  s.info.ended_at = Clock::now();
  d.emit("session.closed", id, "session " + id + " closed",
         {{"engine", s.info.engine}, {"key", s.info.key.text()}}, &s);
  const SessionInfo info = s.info;
  d.settle(s);
  d.ended(s);
  if (e && e->sessions.empty()) {
    if (e->info.key.level == ShareLevel::kConnection) {
      d.stop_engine(e, "closed", false, std::nullopt);
    } else if (e->info.state == EngineState::kReady) {
      d.arm_idle(e);
    }
  }
  return info;
}

std::optional<SessionInfo> Sessions::session(const std::string& id) const {
  auto it = impl_->sessions.find(id);
  if (it == impl_->sessions.end()) return std::nullopt;
  return it->second.info;
}

std::vector<SessionInfo> Sessions::sessions(const std::string& engine) const {
  std::vector<SessionInfo> out;
  for (const auto& [id, s] : impl_->sessions)
    if (engine.empty() || s.info.engine == engine) out.push_back(s.info);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.created_at < b.created_at; });
  return out;
}

std::optional<EngineInfo> Sessions::engine(const std::string& id) const {
  if (auto it = impl_->engines.find(id); it != impl_->engines.end()) return it->second->snapshot();
  for (auto it = impl_->ended_engines.rbegin(); it != impl_->ended_engines.rend(); ++it)
    if (it->id == id) return *it;
  return std::nullopt;
}

std::vector<EngineInfo> Sessions::engines() const {
  std::vector<EngineInfo> out;
  for (const auto& [id, e] : impl_->engines)
    out.push_back(e->snapshot());
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.launched_at < b.launched_at; });
  out.insert(out.end(), impl_->ended_engines.begin(), impl_->ended_engines.end());
  return out;
}

void Sessions::adopt(std::vector<Recorded> engines, std::vector<SessionInfo> sessions) {
  auto& d = *impl_;
  const auto final = [](SessionState st) {
    return st == SessionState::kClosed || st == SessionState::kFailed;
  };
  std::vector<std::shared_ptr<Engine>> live;
  for (auto& r : engines) {
    r.engine.sessions.clear();
    if (r.engine.state == EngineState::kEnded) {
      d.ended_engines.push_back(std::move(r.engine));
      continue;
    }
    auto e = std::make_shared<Engine>(d.io);
    e->info = std::move(r.engine);
    e->tmpl = std::make_shared<const EngineTemplate>(std::move(r.launched_with));
    d.engines[e->info.id] = e;
    d.pools[e->info.key].push_back(e);
    live.push_back(e);
  }
  while (d.ended_engines.size() > d.options.keep_ended)
    d.ended_engines.pop_front();
  std::vector<std::string> orphans, queued;
  for (auto& info : sessions) {
    const std::string id = info.id;
    const bool is_final = final(info.state);
    const std::string engine = info.engine;
    d.sessions[id].info = std::move(info);
    if (is_final) {
      d.ended_sessions.push_back(id);
    } else if (auto e = d.find(engine)) {
      e->sessions.insert(id);
    } else {
      (engine.empty() ? queued : orphans).push_back(id);
    }
  }
  while (d.ended_sessions.size() > d.options.keep_ended) {
    d.sessions.erase(d.ended_sessions.front());
    d.ended_sessions.pop_front();
  }
  for (const auto& e : live)
    d.adopt_engine(e);
  for (const auto& id : orphans) {
    auto it = d.sessions.find(id);
    if (it == d.sessions.end()) continue;
    const std::string engine = it->second.info.engine;
    d.fail_session(
        id, "engine '" + engine + "' was not found when hostfit restarted; open a new session",
        std::nullopt);
  }
  for (const auto& id : queued) {
    auto it = d.sessions.find(id);
    if (it != d.sessions.end() && it->second.info.state == SessionState::kPending) d.route(id);
  }
}

Result<std::vector<std::string>> Sessions::kill(const std::string& engine_or_key) {
  auto& d = *impl_;
  std::vector<std::shared_ptr<Engine>> matches;
  for (const auto& [id, e] : d.engines)
    if (id == engine_or_key || e->info.key.text() == engine_or_key) matches.push_back(e);
  if (matches.empty())
    return fail(ErrorKind::kNotFound, "no live engine with id or key '" +
                                          escape_bytes(engine_or_key, true) +
                                          "' (see hostfit engine ls)");
  std::vector<std::string> ids;
  for (const auto& e : matches) {
    ids.push_back(e->info.id);
    if (e->routable()) {
      d.stop_engine(e, "killed", false,
                    stopped("killed", "engine '" + e->info.id + "' killed by request"));
    } else {
      d.host.stop(e->info.id, true);  // already on its way out: finish it
    }
  }
  return ids;
}

}  // namespace hostfit::sessions
