// Engines and sessions in the daemon: the sessions module's EngineHost on the workload runner
// (each engine is a workload "engine.ID" with source "engine": its own cgroup, OOM truth,
// verdict and log), engine templates kept as files under the state dir, and the /v1/engines and
// /v1/sessions routes (docs/sessions.md).
#include <pwd.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <fstream>

#include "daemon_impl.h"

namespace hostfit {
namespace {

using nlohmann::json;
using sessions::EngineLaunch;
using sessions::EngineWatch;
using sessions::LaunchedEngine;
using sessions::Verdict;

constexpr int kMaxWaitSeconds = 60;
constexpr std::string_view kEnginePrefix = "engine.";
constexpr const char* kEngineSource = "engine";
constexpr const char* kInitSource = "engine-init";
// Ended sessions and engines kept for queries, in memory and in the store.
constexpr size_t kKeptEnded = 1000;

std::string workload_of(const std::string& engine) {
  return std::string(kEnginePrefix) + engine;
}

// The verdict of a run in the sessions module's words.
Verdict verdict_of(const Workload& w) {
  const RunRow& run = *w.run;
  Verdict v{.state = run.state,
            .reason = run.reason,
            .text = run.verdict.empty() ? run.state : run.verdict,
            .message = run.message};
  if (run.exit_code) v.exit_code = static_cast<int>(*run.exit_code);
  if (run.signal) v.signal = static_cast<int>(*run.signal);
  if (run.memory_limit_bytes) v.memory_limit_bytes = static_cast<uint64_t>(*run.memory_limit_bytes);
  if (run.memory_peak_bytes) v.memory_peak_bytes = static_cast<uint64_t>(*run.memory_peak_bytes);
  if (run.reason == "OOM" && run.pid) {
    v.victim = (w.spec.argv.empty() ? std::string("engine") : w.spec.argv[0]) + " (pid " +
               std::to_string(*run.pid) + ")";
  }
  return v;
}

// ?wait=SECONDS, 0 when absent; nullopt (and a 400 sent) when bad.
std::optional<int> wait_of(const api::Request& req, const api::Reply& reply) {
  auto it = req.query.find("wait");
  if (it == req.query.end()) return 0;
  auto v = parse_u64(it->second);
  if (!v || *v > kMaxWaitSeconds) {
    reply(api::error(400, "bad wait '" + escape_bytes(it->second) + "': give 0 to " +
                              std::to_string(kMaxWaitSeconds) + " seconds"));
    return std::nullopt;
  }
  return static_cast<int>(*v);
}

}  // namespace

// The sessions module's door to the workload runner.
class DaemonEngineHost : public sessions::EngineHost {
 public:
  explicit DaemonEngineHost(Daemon::Impl& d) : d_(d) {}

  Result<LaunchedEngine> launch(const EngineLaunch& l, EngineWatch watch) override {
    const std::string name = workload_of(l.engine);
    if (d_.workloads.contains(name) || d_.workloads.contains(name + ".init"))
      return fail(ErrorKind::kResource, "a workload '" + name + "' exists already");
    WorkloadSpec spec;
    spec.name = name;
    spec.argv = l.argv;
    spec.env = l.env;
    spec.user = l.user;
    spec.cpus = l.cpus;
    spec.memory_max_bytes = l.memory_max_bytes;
    spec.stop_timeout = l.stop_timeout;
    // The same checks as any workload (name, sizes), through the one parser.
    auto checked = parse_workload_spec(to_json(spec));
    if (!checked) return fail(checked.error().wrap("engine '" + l.engine + "'"));
    const auto out = d_.log_path(name, "out");
    std::error_code ec;
    const uint64_t offset =
        std::filesystem::exists(out, ec) ? std::filesystem::file_size(out, ec) : 0;
    watches_[name] = std::move(watch);
    // A start that fails at once (no such program, no such user) ends its run inside
    // create_workload: that is this launch's error, not a callback from inside launch().
    launching_ = true;
    ended_in_launch_.reset();
    Status started;
    if (!l.init.empty() && !std::filesystem::exists(l.data_dir, ec)) {
      started = start_init(l, *checked);
    } else {
      started = d_.create_workload(*checked, kEngineSource, true);
    }
    launching_ = false;
    if (started && ended_in_launch_) started = fail(ErrorKind::kIo, ended_in_launch_->message);
    if (!started) {
      watches_.erase(name);
      return fail(started.error().wrap("engine '" + l.engine + "'"));
    }
    return LaunchedEngine{.stdout_path = out, .stdout_offset = offset};
  }

  void stop(const std::string& engine, bool force) override {
    const std::string name = workload_of(engine);
    for (const auto& n : {name, name + ".init"}) {
      auto it = d_.workloads.find(n);
      if (it != d_.workloads.end()) d_.stop(it->second, force);
    }
    if (auto p = waiting_.find(name + ".init"); p != waiting_.end()) p->second.cancelled = true;
  }

  // A run of an engine (or of its init) has its verdict; called by finish_run.
  void run_ended(const std::shared_ptr<Workload>& w) {
    const std::string name = w->spec.name;
    if (w->source == kInitSource) return init_ended(w);
    auto it = watches_.find(name);
    const Verdict v = verdict_of(*w);
    // An engine runs once: its workload goes (the verdict stays in the events and engine list).
    asio::post(d_.io, [&d = d_, name] { (void)d.remove_workload(name); });
    if (launching_) {
      ended_in_launch_ = v;
      return;
    }
    if (it != watches_.end()) {
      auto watch = std::move(it->second);
      watches_.erase(it);
      if (watch.on_ended) watch.on_ended(v);  // sessions fail here, in this turn
    }
  }

  void exit_seen(const std::shared_ptr<Workload>& w) {
    auto it = watches_.find(w->spec.name);
    if (it != watches_.end() && it->second.on_exit) it->second.on_exit();
  }

  // An OOM kill in the engine's group: of another process (on_oom), of the main process as the
  // kernel log names it (on_killed), or counted and not named yet (on_oom_counted).
  enum class OomKind { kOther, kMain, kUnnamed };
  void oom_kill(const std::shared_ptr<Workload>& w, const OomEvent& e, OomKind kind) {
    auto it = watches_.find(w->spec.name);
    if (it == watches_.end()) return;
    const auto& callback = kind == OomKind::kOther  ? it->second.on_oom
                           : kind == OomKind::kMain ? it->second.on_killed
                                                    : it->second.on_oom_counted;
    if (!callback) return;
    Verdict v{.state = "KILLED", .reason = "OOM", .text = "KILLED(OOM)"};
    v.memory_limit_bytes = w->spec.memory_max_bytes;
    if (w->group) {
      if (auto usage = d_.driver->usage(*w->group)) v.memory_peak_bytes = usage->memory_peak_bytes;
    }
    // The victim is the kernel log's word, or nothing: its oom-kill lines are rate-limited.
    if (kind != OomKind::kUnnamed && e.pid != 0) {
      v.victim = (e.comm.empty() ? std::string("a process") : e.comm) + " (pid " +
                 std::to_string(e.pid) + ")";
    }
    const std::string who = !v.victim.empty()           ? v.victim
                            : kind == OomKind::kUnnamed ? "a process (not named yet)"
                                                        : "a process the kernel log did not name";
    v.message = who + " of '" + w->spec.name + "' was killed by the OOM killer" +
                (v.memory_limit_bytes ? " at its limit of " + format_bytes(*v.memory_limit_bytes)
                                      : std::string()) +
                (v.memory_peak_bytes ? " (peak " + format_bytes(*v.memory_peak_bytes) + ")"
                                     : std::string());
    callback(v);
  }

  // After a restart: the engine's workload was adopted (or closed) with the other open runs.
  Result<Adopted> adopt(const std::string& engine, EngineWatch watch) override {
    const std::string name = workload_of(engine);
    if (auto init = d_.workloads.find(name + ".init"); init != d_.workloads.end()) {
      // Its init command ran when the daemon stopped; the engine waiting for it was in memory.
      end_init_for_good(init->second);
      return Adopted{.ended = Verdict{.state = "FAILED",
                                      .reason = "UNKNOWN",
                                      .text = "FAILED",
                                      .message = "hostfit restarted while its init command ran; "
                                                 "open a new session"}};
    }
    auto it = d_.workloads.find(name);
    if (it == d_.workloads.end()) {
      return fail(ErrorKind::kNotFound, "engine '" + engine + "' has no workload '" + name + "'");
    }
    const auto w = it->second;
    if (!w->run) {
      // Its run ended before the daemon stopped, the engine's end was not recorded yet.
      auto runs = d_.store->runs(name, 1);
      if (!runs || runs->empty()) {
        return fail(ErrorKind::kNotFound, "engine '" + engine + "' has no run of '" + name + "'");
      }
      w->run = runs->front();
    }
    if (w->phase != Phase::kRunning && w->phase != Phase::kStopping) {
      asio::post(d_.io, [&d = d_, name] { (void)d.remove_workload(name); });
      return Adopted{.ended = verdict_of(*w)};
    }
    watches_[name] = std::move(watch);
    if (w->oom.other_kills > 0) {
      // Another process was OOM-killed while no daemon watched: told as it would have been.
      asio::post(d_.io, [this, w] { oom_kill(w, OomEvent{}, OomKind::kOther); });
    }
    return Adopted{.output = {.stdout_path = d_.log_path(name, "out"), .stdout_offset = 0}};
  }

  // The engine workloads no adopted engine claimed: stopped (when running) and removed.
  void drop_unclaimed() {
    std::vector<std::shared_ptr<Workload>> unclaimed;
    for (const auto& [name, w] : d_.workloads)
      if (is_engine_workload(*w) && !watches_.contains(name)) unclaimed.push_back(w);
    for (const auto& w : unclaimed)
      end_init_for_good(w);
  }

 private:
  struct Waiting {
    WorkloadSpec engine;
    bool cancelled = false;
  };

  // The init command runs as its own workload "engine.ID.init" (same user, limits and log
  // directory); the engine starts when it exits 0.
  Status start_init(const EngineLaunch& l, const WorkloadSpec& engine) {
    WorkloadSpec init = engine;
    init.name = engine.name + ".init";
    init.argv = l.init;
    auto checked = parse_workload_spec(to_json(init));
    if (!checked) return fail(checked.error().wrap("init"));
    std::error_code ec;
    std::filesystem::create_directories(l.data_dir.parent_path(), ec);
    if (ec) {
      return fail(ErrorKind::kIo,
                  "cannot create " + l.data_dir.parent_path().string() + ": " + ec.message());
    }
    if (!l.user.empty()) {
      // The engine's user creates its data directory inside.
      if (const passwd* pw = ::getpwnam(l.user.c_str())) {
        if (::chown(l.data_dir.parent_path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
          return fail(Error::from_errno(errno, "chown", l.data_dir.parent_path().string()));
        }
      }
    }
    waiting_[checked->name] = Waiting{engine};
    auto st = d_.create_workload(*checked, kInitSource, true);
    if (!st) waiting_.erase(checked->name);
    return st;
  }

  void init_ended(const std::shared_ptr<Workload>& w) {
    const std::string init_name = w->spec.name;
    asio::post(d_.io, [&d = d_, init_name] { (void)d.remove_workload(init_name); });
    auto it = waiting_.find(init_name);
    if (it == waiting_.end()) return;
    Waiting waiting = std::move(it->second);
    waiting_.erase(it);
    const std::string name = waiting.engine.name;
    const RunRow& run = *w->run;
    const bool ok = run.state == "EXITED" && run.exit_code && *run.exit_code == 0;
    if (ok && !waiting.cancelled) {
      asio::post(d_.io, [this, engine = std::move(waiting.engine)] {
        if (auto st = d_.create_workload(engine, kEngineSource, true); !st) {
          end_without_run(
              engine.name,
              Verdict{.state = "FAILED", .text = "FAILED", .message = st.error().message});
        } else if (auto it = watches_.find(engine.name);
                   it != watches_.end() && it->second.on_started) {
          it->second.on_started();
        }
      });
      return;
    }
    Verdict v = verdict_of(*w);
    v.message = "its init command ended " + v.text + ": " + v.message + " (see " +
                d_.log_path(init_name, "err").string() + ")";
    end_without_run(name, v);
  }

  void end_without_run(const std::string& name, const Verdict& v) {
    if (launching_) {
      ended_in_launch_ = v;
      return;
    }
    auto it = watches_.find(name);
    if (it == watches_.end()) return;
    auto watch = std::move(it->second);
    watches_.erase(it);
    if (watch.on_ended) watch.on_ended(v);
  }

  static bool is_engine_workload(const Workload& w) { return Daemon::Impl::is_engine(w); }

  void end_init_for_good(const std::shared_ptr<Workload>& w) {
    if (w->phase == Phase::kRunning || w->phase == Phase::kStopping) {
      w->delete_after_stop = true;
      d_.stop(w, true);
    } else {
      asio::post(d_.io, [&d = d_, name = w->spec.name] { (void)d.remove_workload(name); });
    }
  }

  Daemon::Impl& d_;
  std::map<std::string, EngineWatch> watches_;  // by workload name
  std::map<std::string, Waiting> waiting_;      // engines waiting for their init, by init name
  bool launching_ = false;
  std::optional<Verdict> ended_in_launch_;
};

void Daemon::Impl::engine_run_ended(const std::shared_ptr<Workload>& w) {
  if (engine_runner) engine_runner->run_ended(w);
}
void Daemon::Impl::engine_exit_seen(const std::shared_ptr<Workload>& w) {
  if (engine_runner) engine_runner->exit_seen(w);
}
void Daemon::Impl::engine_oom_kill(const std::shared_ptr<Workload>& w, const OomEvent& e) {
  if (engine_runner) engine_runner->oom_kill(w, e, DaemonEngineHost::OomKind::kOther);
}
void Daemon::Impl::engine_main_oom_killed(const std::shared_ptr<Workload>& w, const OomEvent& e) {
  if (engine_runner) engine_runner->oom_kill(w, e, DaemonEngineHost::OomKind::kMain);
}
void Daemon::Impl::engine_oom_counted(const std::shared_ptr<Workload>& w) {
  if (engine_runner) engine_runner->oom_kill(w, OomEvent{}, DaemonEngineHost::OomKind::kUnnamed);
}
bool Daemon::Impl::is_engine(const Workload& w) {
  return w.source == kEngineSource || w.source == kInitSource;
}

std::filesystem::path Daemon::Impl::templates_dir() const {
  // Not under engines/, where each template has a directory of its own.
  return options.state_dir / "engine-templates";
}

// Engine ids go on from the highest one the logs remember, so an id names one launch for good.
static uint64_t next_engine_seq(const std::filesystem::path& logs) {
  uint64_t highest = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(logs, ec)) {
    const std::string file = entry.path().filename().string();
    if (!file.starts_with(kEnginePrefix)) continue;
    const std::string id = file.substr(kEnginePrefix.size(),
                                       file.find('.', kEnginePrefix.size()) - kEnginePrefix.size());
    const auto dash = id.rfind('-');
    if (dash == std::string::npos) continue;
    if (auto n = parse_u64(std::string_view(id).substr(dash + 1))) highest = std::max(highest, *n);
  }
  return highest + 1;
}

void Daemon::Impl::open_sessions() {
  auto host = std::make_unique<DaemonEngineHost>(*this);
  engine_runner = host.get();
  engine_host = std::move(host);
  sessions = std::make_unique<sessions::Sessions>(
      io, *engine_host,
      // Absolute: engines do not run in the daemon's working directory.
      sessions::SessionsOptions{
          .data_root = std::filesystem::absolute(options.state_dir) / "engines",
          .first_engine_seq = next_engine_seq(options.state_dir / "logs"),
          .keep_ended = kKeptEnded,
          .on_event = [this](const sessions::Event& e) { record_session_change(e); }});
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(templates_dir(), ec)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    auto t = sessions::parse_template(json::parse(in, nullptr, false));
    if (!t) {
      log_line("engine template " + entry.path().string() + " not loaded: " + t.error().message);
      continue;
    }
    sessions->put_template(std::move(*t));
  }
  adopt_sessions();
}

// The engines and sessions an earlier daemon recorded come back (their processes were adopted
// with the other open runs); engine workloads nobody claims are stopped and removed.
void Daemon::Impl::adopt_sessions() {
  (void)store->prune_ended(static_cast<int64_t>(kKeptEnded));
  std::vector<sessions::Sessions::Recorded> engines;
  std::vector<sessions::SessionInfo> records;
  if (auto rows = store->engines()) {
    for (const auto& row : *rows) {
      auto info = sessions::engine_from_json(json::parse(row.record, nullptr, false));
      auto t = sessions::parse_template(json::parse(row.template_json, nullptr, false));
      if (!info || !t) {
        log_line("engine '" + row.id + "' in the store not adopted: " +
                 (info ? t.error().message : info.error().message));
        continue;
      }
      engines.push_back({std::move(*info), std::move(*t)});
    }
  }
  if (auto rows = store->session_rows()) {
    for (const auto& row : *rows) {
      auto info = sessions::session_from_json(json::parse(row.record, nullptr, false));
      if (!info) {
        log_line("session '" + row.id + "' in the store not adopted: " + info.error().message);
        continue;
      }
      records.push_back(std::move(*info));
    }
  }
  // Not in one transaction: a session routed again may launch an engine, whose run must be on
  // record before its process exists.
  sessions->adopt(std::move(engines), std::move(records));
  engine_runner->drop_unclaimed();
}

// One change of a session or engine: its row and its event (when it has one) in one transaction.
void Daemon::Impl::record_session_change(const sessions::Event& e) {
  const auto recorded = store->transaction([&](Store& s) -> Status {
    if (e.session) {
      const auto& i = *e.session;
      const bool ended =
          i.state == sessions::SessionState::kClosed || i.state == sessions::SessionState::kFailed;
      if (auto st = s.put_session({i.id, i.key.text(), i.key.owner, i.key.subdomain, i.engine,
                                   sessions::to_string(i.state), i.message,
                                   sessions::to_json(i).dump(), ended});
          !st) {
        return st;
      }
    }
    if (e.engine) {
      const auto& i = *e.engine;
      EngineRow row{i.id,
                    i.key.text(),
                    sessions::to_string(i.state),
                    workload_of(i.id),
                    i.endpoint.port ? std::optional<int64_t>(*i.endpoint.port) : std::nullopt,
                    i.endpoint.socket,
                    e.engine_template ? sessions::to_json(*e.engine_template).dump() : "{}",
                    sessions::to_json(i).dump(),
                    i.state == sessions::EngineState::kEnded};
      if (auto st = s.put_engine(row); !st) return st;
    }
    if (e.type.empty()) return {};
    auto appended = event(e.type, e.subject, e.message, e.data);
    return appended ? Status{} : fail(appended.error());
  });
  if (!recorded) log_line("cannot record " + e.subject + ": " + recorded.error().message);
  if (!e.type.empty()) publish();
}

void Daemon::Impl::shutdown_sessions() {
  auto waits = std::move(session_waits);
  session_waits.clear();
  for (auto& w : waits)
    w->finish();
}

Status Daemon::Impl::save_template(const sessions::EngineTemplate& t) {
  std::error_code ec;
  std::filesystem::create_directories(templates_dir(), ec);
  const auto path = templates_dir() / (t.name + ".json");
  const auto tmp = templates_dir() / (t.name + ".json.tmp");
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << sessions::to_json(t).dump(2) << "\n";
    if (!out) return fail(ErrorKind::kIo, "cannot write " + tmp.string());
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) return fail(ErrorKind::kIo, "cannot rename " + tmp.string() + ": " + ec.message());
  return {};
}

// Answers `reply` with the session once it leaves `state`, or after `wait` seconds, whichever
// comes first; daemon shutdown answers it too.
void SessionWait::finish() {
  if (done) return;
  done = true;
  timer->cancel();
  reply(answer());
}

// Answers `reply` with the session once it leaves `state`, or after `wait` seconds, whichever
// comes first; daemon shutdown answers it too.
void Daemon::Impl::reply_when_leaves(const std::string& id, sessions::SessionState state, int wait,
                                     std::function<api::Response()> answer, api::Reply reply) {
  std::erase_if(session_waits, [](const auto& w) { return w->done; });
  auto w = std::make_shared<SessionWait>();
  w->reply = std::move(reply);
  w->answer = std::move(answer);
  w->timer = std::make_unique<asio::steady_timer>(io, std::chrono::seconds(wait));
  session_waits.push_back(w);
  w->timer->async_wait([w](const boost::system::error_code& ec) {
    if (!ec) w->finish();
  });
  (void)sessions->when_leaves(id, state, [w](const sessions::SessionInfo&) { w->finish(); });
}

void Daemon::Impl::add_session_routes(api::Router& router) {
  const auto session_answer = [this](const std::string& id, bool opening) {
    return [this, id, opening]() -> api::Response {
      auto s = sessions->session(id);
      if (!s) return api::error(404, "no session '" + escape_bytes(id) + "'");
      if (s->state == sessions::SessionState::kFailed && opening)
        return api::error(503, s->message, sessions::to_json(*s));
      const int status = !opening ? 200 : s->state == sessions::SessionState::kPending ? 202 : 201;
      return api::json(status, sessions::to_json(*s));
    };
  };

  router.add("POST", "/v1/engines", [this](const api::Request& req, api::Reply reply) {
    auto body = api::parse_object(req);
    if (!body) return reply(api::error(400, body.error().message));
    auto t = sessions::parse_template(*body);
    if (!t) return reply(api::error(400, t.error().message));
    const bool replaced = sessions->find_template(t->name) != nullptr;
    if (auto st = save_template(*t); !st) return reply(api::error(500, st.error().message));
    (void)event("engine.template", t->name,
                "engine template '" + t->name + "' " + (replaced ? "replaced" : "added"),
                sessions::to_json(*t));
    publish();
    const json answer = sessions::to_json(*t);
    sessions->put_template(std::move(*t));
    reply(api::json(replaced ? 200 : 201, answer));
  });

  router.add("GET", "/v1/engines", [this](const api::Request&, api::Reply reply) {
    json templates = json::array(), engines = json::array();
    for (const auto& t : sessions->templates())
      templates.push_back(sessions::to_json(t));
    for (const auto& e : sessions->engines())
      engines.push_back(sessions::to_json(e));
    reply(api::json(200, {{"templates", templates}, {"engines", engines}}));
  });

  router.add("DELETE", "/v1/engines", [this](const api::Request& req, api::Reply reply) {
    auto it = req.query.find("target");
    if (it == req.query.end() || it->second.empty()) {
      return reply(
          api::error(400, "give ?target=ENGINE_ID or ?target=TEMPLATE/LEVEL/OWNER/SUBDOMAIN"));
    }
    auto killed = sessions->kill(it->second);
    if (!killed) return reply(error_of(killed.error()));
    reply(api::json(200, {{"killed", *killed}}));
  });

  router.add(
      "POST", "/v1/sessions", [this, session_answer](const api::Request& req, api::Reply reply) {
        auto wait = wait_of(req, reply);
        if (!wait) return;
        auto body = api::parse_object(req);
        if (!body) return reply(api::error(400, body.error().message));
        auto open = parse_session_body(*body);
        if (!open) return reply(api::error(400, open.error().message));
        auto s = sessions->open(*open);
        if (!s) return reply(error_of(s.error()));
        auto answer = session_answer(s->id, true);
        if (s->state != sessions::SessionState::kPending || *wait == 0) return reply(answer());
        reply_when_leaves(s->id, sessions::SessionState::kPending, *wait, answer, std::move(reply));
      });

  router.add("GET", "/v1/sessions", [this](const api::Request& req, api::Reply reply) {
    std::string engine;
    if (auto it = req.query.find("engine"); it != req.query.end()) engine = it->second;
    json list = json::array();
    for (const auto& s : sessions->sessions(engine))
      list.push_back(sessions::to_json(s));
    reply(api::json(200, {{"sessions", list}}));
  });

  router.add("GET", "/v1/sessions/{id}",
             [this, session_answer](const api::Request& req, api::Reply reply) {
               auto wait = wait_of(req, reply);
               if (!wait) return;
               const std::string id = req.params.at("id");
               auto s = sessions->session(id);
               if (!s) return reply(api::error(404, "no session '" + escape_bytes(id) + "'"));
               auto answer = session_answer(id, false);
               const bool final = s->state == sessions::SessionState::kClosed ||
                                  s->state == sessions::SessionState::kFailed;
               if (final || *wait == 0) return reply(answer());
               reply_when_leaves(id, s->state, *wait, answer, std::move(reply));
             });

  router.add("DELETE", "/v1/sessions/{id}", [this](const api::Request& req, api::Reply reply) {
    auto s = sessions->close(req.params.at("id"));
    if (!s) return reply(error_of(s.error()));
    reply(api::json(200, sessions::to_json(*s)));
  });
}

}  // namespace hostfit
