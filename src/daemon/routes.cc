// The daemon's HTTP routes (docs/daemon.md). Every route is registered in add_routes below.
#include <unistd.h>

#include <iomanip>
#include <sstream>

#include "daemon_impl.h"
#include "hostfit/web.h"

namespace hostfit {

using nlohmann::json;

namespace {

constexpr int kMaxWaitSeconds = 60;

json opt(const std::optional<int64_t>& v) {
  return v ? json(*v) : json(nullptr);
}

// Prometheus label values: backslash, quote and newline escaped.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

json to_json(const RunRow& r) {
  return {{"id", r.id},
          {"state", r.state},
          {"reason", r.reason.empty() ? json(nullptr) : json(r.reason)},
          {"verdict", r.verdict.empty() ? json(r.state) : json(r.verdict)},
          {"message", r.message},
          {"pid", opt(r.pid)},
          {"exit_code", opt(r.exit_code)},
          {"signal", opt(r.signal)},
          {"memory_limit_bytes", opt(r.memory_limit_bytes)},
          {"memory_peak_bytes", opt(r.memory_peak_bytes)},
          {"cache_peak_bytes", opt(r.cache_peak_bytes)},
          {"oom_kills", r.oom_kills},
          {"started_at", r.started_at},
          {"ended_at", r.ended_at.empty() ? json(nullptr) : json(r.ended_at)}};
}

json to_json(const EventRow& e) {
  return {
      {"seq", e.seq},         {"time", e.time},
      {"type", e.type},       {"workload", e.workload.empty() ? json(nullptr) : json(e.workload)},
      {"message", e.message}, {"data", json::parse(e.data, nullptr, false)}};
}

// The HTTP status of a failed request: the user's mistake, a missing thing, a conflict, or ours.
api::Response error_of(const Error& e) {
  switch (e.kind) {
    case ErrorKind::kUsage:
    case ErrorKind::kParse:
      return api::error(400, e.message);
    case ErrorKind::kNotFound:
      return api::error(404, e.message);
    case ErrorKind::kResource:
      return api::error(409, e.message);
    default:
      return api::error(500, e.message);
  }
}

CpuSet Daemon::Impl::held_cpus() {
  CpuSet held;
  for (const auto& h : store->holds().value_or(std::vector<HoldRow>{})) {
    if (auto cpus = CpuSet::parse_list(h.cpus)) held |= *cpus;
  }
  return held;
}

json Daemon::Impl::workload_json(const Workload& w) {
  return workload_json(w, store->holds().value_or(std::vector<HoldRow>{}));
}

namespace {

// How the last run ended, in `hostfit run --report`'s words; null while none has ended.
json verdict_json(const std::optional<RunRow>& run) {
  if (!run || run->ended_at.empty()) return nullptr;
  const RunRow& r = *run;
  return {{"state", r.state},
          {"reason", r.reason.empty() ? json(nullptr) : json(r.reason)},
          {"text", r.verdict.empty() ? r.state : r.verdict},
          {"exit_code", opt(r.exit_code)},
          {"signal", opt(r.signal)},
          {"message", r.message},
          {"memory",
           {{"limit_bytes", opt(r.memory_limit_bytes)},
            {"peak_bytes", opt(r.memory_peak_bytes)},
            {"cache_peak_bytes", opt(r.cache_peak_bytes)}}},
          {"oom_kills", r.oom_kills},
          {"ended_at", r.ended_at}};
}

json cpu_json(const Workload& w) {
  const bool live = w.sample && w.phase != Phase::kStopped;
  return {{"quota_cpus", w.spec.cpus ? json(*w.spec.cpus) : json(nullptr)},
          {"usage_usec",
           live && w.sample->cpu_usage_us ? json(*w.sample->cpu_usage_us) : json(nullptr)}};
}

json placement_json(const Workload& w, const std::vector<HoldRow>& holds) {
  for (const auto& h : holds) {
    if (h.owner == w.spec.name) return {{"cpus", h.cpus}, {"mems", h.mems}};
  }
  return nullptr;
}

json pid_json(const Workload& w) {
  return w.pid > 0 && w.phase != Phase::kStopped ? json(w.pid) : json(nullptr);
}

}  // namespace

json Daemon::Impl::workload_json(const Workload& w, const std::vector<HoldRow>& holds) {
  json memory = nullptr;
  if (w.sample && w.phase != Phase::kStopped) memory = to_json(w.sample->memory);
  json cgroup = nullptr;
  if (w.group) {
    if (const CgroupDir* m = w.group->dir_of("memory")) cgroup = m->cgroup;
  }
  return {{"name", w.spec.name},
          {"state", to_string(w.phase)},
          {"wanted", w.wanted},
          {"restarts", w.restarts},
          {"source", w.source},
          {"pid", pid_json(w)},
          {"cgroup", cgroup},
          {"verdict", verdict_json(w.run)},
          {"run", w.run ? to_json(*w.run) : json(nullptr)},
          {"memory", memory},
          {"cpu", cpu_json(w)},
          {"placement", placement_json(w, holds)},
          {"cache", w.cache ? to_json(*w.cache) : json(nullptr)},
          {"logs",
           {{"stdout", log_path(w.spec.name, "out").string()},
            {"stderr", log_path(w.spec.name, "err").string()}}},
          {"spec", to_json(w.spec)}};
}

// Compact, as a list of 1,000 must be (docs/api.md): the numbers a table and its bars show; the
// spec, logs and the run's details are in GET /v1/workloads/NAME.
json Daemon::Impl::list_entry_json(const Workload& w, const std::vector<HoldRow>& holds) {
  json memory = nullptr;
  if (w.sample && w.phase != Phase::kStopped) {
    const MemoryBreakdown& m = w.sample->memory;
    memory = {{"usage_bytes", m.usage_bytes},
              {"anon_bytes", m.anon_bytes},
              {"file_bytes", m.file_bytes},
              {"shmem_bytes", m.shmem_bytes}};
  }
  return {{"name", w.spec.name},
          {"state", to_string(w.phase)},
          {"pid", pid_json(w)},
          {"restarts", w.restarts},
          {"verdict", verdict_json(w.run)},
          {"memory", memory},
          {"memory_limit_bytes",
           w.spec.memory_max_bytes ? json(*w.spec.memory_max_bytes) : json(nullptr)},
          {"cpu", cpu_json(w)},
          {"cpuset", w.spec.cpuset ? json(w.spec.cpuset->to_list()) : json(nullptr)},
          {"placement", placement_json(w, holds)}};
}

void Daemon::Impl::changed(Workload* w) {
  if (w) w->list_entry_stale = true;
  ++list_version;
}

std::shared_ptr<const std::string> Daemon::Impl::workloads_body() {
  if (list_body && list_body_version == list_version) return list_body;
  std::optional<std::vector<HoldRow>> holds;  // read only when an element is rebuilt
  auto body = std::make_shared<std::string>("{\"workloads\":[");
  body->reserve(list_body ? list_body->size() + 64 : 0);
  bool first = true;
  for (auto& [name, w] : workloads) {
    if (w->list_entry_stale) {
      if (!holds) holds = store->holds().value_or(std::vector<HoldRow>{});
      w->list_entry =
          list_entry_json(*w, *holds).dump(-1, ' ', false, json::error_handler_t::replace);
      w->list_entry_stale = false;
    }
    if (!first) *body += ',';
    first = false;
    *body += w->list_entry;
  }
  *body += "]}";
  list_body = std::move(body);
  list_body_version = list_version;
  return list_body;
}

json Daemon::Impl::attachment_json(const Attachment& a) {
  json out = {{"name", a.row.name},
              {"cgroup", a.row.cgroup},
              {"cache_limit_bytes", opt(a.row.cache_limit_bytes)},
              {"created_at", a.row.created_at},
              {"oom_kills", a.oom.baseline ? a.oom.seen_kills - a.oom.baseline->oom_kill : 0},
              {"memory", a.sample ? to_json(a.sample->memory) : json(nullptr)}};
  if (a.cache) out["cache"] = to_json(*a.cache);
  return out;
}

std::string Daemon::Impl::metrics_text() {
  std::ostringstream m;
  m << "# HELP hostfit_workload_up 1 while the workload's main process runs.\n"
       "# TYPE hostfit_workload_up gauge\n";
  for (const auto& [name, w] : workloads)
    m << "hostfit_workload_up{name=\"" << label(name) << "\"} "
      << (w->phase == Phase::kRunning || w->phase == Phase::kStopping ? 1 : 0) << "\n";
  m << "# HELP hostfit_workload_restarts Restarts in a row since the workload was last started.\n"
       "# TYPE hostfit_workload_restarts gauge\n";
  for (const auto& [name, w] : workloads)
    m << "hostfit_workload_restarts{name=\"" << label(name) << "\"} " << w->restarts << "\n";
  m << "# HELP hostfit_workload_memory_bytes Memory of the running workload by kind.\n"
       "# TYPE hostfit_workload_memory_bytes gauge\n";
  const auto memory_lines = [&](const std::string& kind_label, const std::string& name,
                                const MemoryBreakdown& b) {
    const std::pair<const char*, uint64_t> kinds[] = {{"anon", b.anon_bytes},
                                                      {"file", b.file_bytes},
                                                      {"shmem", b.shmem_bytes},
                                                      {"kernel", b.other_bytes},
                                                      {"usage", b.usage_bytes}};
    for (const auto& [kind, bytes] : kinds) {
      m << "hostfit_" << kind_label << "_memory_bytes{name=\"" << label(name) << "\",kind=\""
        << kind << "\"} " << bytes << "\n";
    }
  };
  for (const auto& [name, w] : workloads) {
    if (w->sample && w->phase != Phase::kStopped) memory_lines("workload", name, w->sample->memory);
  }
  m << "# HELP hostfit_workload_memory_limit_bytes The workload's memory limit.\n"
       "# TYPE hostfit_workload_memory_limit_bytes gauge\n";
  for (const auto& [name, w] : workloads) {
    if (w->spec.memory_max_bytes)
      m << "hostfit_workload_memory_limit_bytes{name=\"" << label(name) << "\"} "
        << *w->spec.memory_max_bytes << "\n";
  }
  m << "# HELP hostfit_workload_cpu_quota_cpus The workload's CPU quota in CPUs.\n"
       "# TYPE hostfit_workload_cpu_quota_cpus gauge\n";
  for (const auto& [name, w] : workloads) {
    if (w->spec.cpus)
      m << "hostfit_workload_cpu_quota_cpus{name=\"" << label(name) << "\"} " << *w->spec.cpus
        << "\n";
  }
  m << "# HELP hostfit_workload_cpu_usage_seconds_total CPU time the running workload's cgroup "
       "used, at the last sample.\n"
       "# TYPE hostfit_workload_cpu_usage_seconds_total counter\n";
  for (const auto& [name, w] : workloads) {
    if (w->sample && w->sample->cpu_usage_us && w->phase != Phase::kStopped) {
      m << "hostfit_workload_cpu_usage_seconds_total{name=\"" << label(name) << "\"} "
        << *w->sample->cpu_usage_us / 1'000'000 << '.' << std::setw(6) << std::setfill('0')
        << *w->sample->cpu_usage_us % 1'000'000 << std::setfill(' ') << "\n";
    }
  }
  m << "# HELP hostfit_workload_oom_kills OOM kills in the workload's current or last run.\n"
       "# TYPE hostfit_workload_oom_kills gauge\n";
  for (const auto& [name, w] : workloads) {
    const int64_t kills =
        w->phase == Phase::kStopped && w->run
            ? w->run->oom_kills
            : static_cast<int64_t>(w->oom.baseline ? w->oom.seen_kills - w->oom.baseline->oom_kill
                                                   : 0);
    m << "hostfit_workload_oom_kills{name=\"" << label(name) << "\"} " << kills << "\n";
  }
  m << "# HELP hostfit_attachment_memory_bytes Memory of an attached cgroup by kind.\n"
       "# TYPE hostfit_attachment_memory_bytes gauge\n";
  for (const auto& [name, a] : attachments) {
    if (a->sample) memory_lines("attachment", name, a->sample->memory);
  }
  const int held = held_cpus().count();
  m << "# HELP hostfit_node_cpus_effective CPUs hostfit may use on this node.\n"
       "# TYPE hostfit_node_cpus_effective gauge\n"
    << "hostfit_node_cpus_effective " << self.cpu.effective << "\n"
    << "# HELP hostfit_node_cpus_held CPUs held by placements.\n"
       "# TYPE hostfit_node_cpus_held gauge\n"
    << "hostfit_node_cpus_held " << held << "\n"
    << "# HELP hostfit_events_last_seq The sequence number of the newest event.\n"
       "# TYPE hostfit_events_last_seq counter\n"
    << "hostfit_events_last_seq " << store->last_event_seq().value_or(0) << "\n";
  if (server) m << server->metrics_text();
  return m.str();
}

void Daemon::Impl::add_routes(api::Router& router) {
  // The page (docs/web.md): GET /, its files, and the topology its map draws, where the CPUs of
  // hostfit's own placements are not mistaken for other tools' pins.
  web::add_routes(router, io, root, self, [this] { return held_cpus(); });
  const auto find = [this](const api::Request& req) -> std::shared_ptr<Workload> {
    auto it = workloads.find(req.params.at("name"));
    return it == workloads.end() ? nullptr : it->second;
  };
  const auto not_found = [](const api::Request& req) {
    return api::error(404, "no workload '" + escape_bytes(req.params.at("name")) + "'");
  };

  router.add("GET", "/healthz", [](const api::Request&, api::Reply reply) {
    reply(api::json(200, {{"status", "ok"}}));
  });

  router.add("GET", "/v1/node", [this](const api::Request&, api::Reply reply) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    reply(api::json(
        200,
        {{"hostname", host},
         {"pid", ::getpid()},
         {"started_at", format_utc(started_at)},
         {"cgroup_mode", to_string(driver->mode())},
         {"cpus",
          {{"effective", self.cpu.effective},
           {"usable", self.cpu.usable.to_list()},
           {"placeable", placeable_cpus(self).to_list()}}},
         {"memory_total_bytes",
          self.memory.total.known() ? json(*self.memory.total) : json(nullptr)},
         {"store", {{"path", store->path().string()}, {"schema_version", store->schema_version()}}},
         {"workloads", workloads.size()},
         {"attachments", attachments.size()},
         {"last_event_seq", store->last_event_seq().value_or(0)}}));
  });

  router.add("GET", "/v1/workloads", [this](const api::Request&, api::Reply reply) {
    api::Response r;
    r.shared_body = workloads_body();  // shared with answers still being written
    reply(std::move(r));
  });

  router.add("POST", "/v1/workloads", [this](const api::Request& req, api::Reply reply) {
    auto body = api::parse_object(req);
    if (!body) return reply(api::error(400, body.error().message));
    auto spec = parse_workload_spec(*body);
    if (!spec) return reply(api::error(400, spec.error().message));
    if (workloads.contains(spec->name)) {
      return reply(api::error(409, "workload '" + spec->name + "' exists (DELETE it first)"));
    }
    if (auto st = create_workload(*spec, "api", spec->autostart); !st) {
      return reply(error_of(st.error()));
    }
    reply(api::json(201, workload_json(*workloads.at(spec->name))));
  });

  router.add("GET", "/v1/workloads/{name}", [=, this](const api::Request& req, api::Reply reply) {
    auto w = find(req);
    if (!w) return reply(not_found(req));
    reply(api::json(200, workload_json(*w)));
  });

  router.add(
      "DELETE", "/v1/workloads/{name}", [=, this](const api::Request& req, api::Reply reply) {
        auto w = find(req);
        if (!w) return reply(not_found(req));
        if (w->phase == Phase::kRunning || w->phase == Phase::kStopping) {
          const bool force = req.query.contains("force") && req.query.at("force") != "0" &&
                             req.query.at("force") != "false";
          if (!force) {
            return reply(api::error(409, "workload '" + w->spec.name +
                                             "' is running: stop it first, or DELETE with ?force=1 "
                                             "to kill it"));
          }
          w->delete_after_stop = true;
          w->on_ended.push_back(std::move(reply));
          return stop(w, true);
        }
        const std::string name = w->spec.name;
        if (auto st = remove_workload(name); !st) return reply(error_of(st.error()));
        reply(api::json(200, {{"deleted", name}}));
      });

  router.add("POST", "/v1/workloads/{name}/start",
             [=, this](const api::Request& req, api::Reply reply) {
               auto w = find(req);
               if (!w) return reply(not_found(req));
               if (w->phase == Phase::kStopping) {
                 return reply(api::error(409, "workload '" + w->spec.name + "' is stopping"));
               }
               w->wanted = true;
               w->restarts = 0;
               changed(w.get());
               start(w);
               reply(api::json(200, workload_json(*w)));
             });

  router.add("POST", "/v1/workloads/{name}/stop",
             [=, this](const api::Request& req, api::Reply reply) {
               auto w = find(req);
               if (!w) return reply(not_found(req));
               if (w->phase == Phase::kRunning || w->phase == Phase::kStopping) {
                 w->on_ended.push_back(std::move(reply));
                 return stop(w, false);
               }
               stop(w, false);
               reply(api::json(200, workload_json(*w)));
             });

  router.add("POST", "/v1/workloads/{name}/restart",
             [=, this](const api::Request& req, api::Reply reply) {
               auto w = find(req);
               if (!w) return reply(not_found(req));
               if (w->phase == Phase::kRunning || w->phase == Phase::kStopping) {
                 w->restart_after_stop = true;
                 w->on_ended.push_back(std::move(reply));
                 return stop(w, false);
               }
               w->wanted = true;
               w->restarts = 0;
               changed(w.get());
               start(w);
               reply(api::json(200, workload_json(*w)));
             });

  router.add("GET", "/v1/workloads/{name}/runs",
             [=, this](const api::Request& req, api::Reply reply) {
               auto w = find(req);
               if (!w) return reply(not_found(req));
               auto runs = store->runs(w->spec.name);
               if (!runs) return reply(error_of(runs.error()));
               json list = json::array();
               for (const auto& r : *runs)
                 list.push_back(to_json(r));
               reply(api::json(200, {{"runs", list}}));
             });

  router.add("GET", "/v1/placements", [this](const api::Request&, api::Reply reply) {
    auto holds = store->holds();
    if (!holds) return reply(error_of(holds.error()));
    json list = json::array();
    CpuSet held;
    for (const auto& h : *holds) {
      list.push_back({{"owner", h.owner}, {"cpus", h.cpus}, {"mems", h.mems}});
      if (auto c = CpuSet::parse_list(h.cpus)) held = held | *c;
    }
    const CpuSet all = placeable_cpus(self);
    reply(api::json(
        200, {{"holds", list}, {"placeable", all.to_list()}, {"free", (all - held).to_list()}}));
  });

  // `hostfit place --owner` and `hostfit run --placement` through the daemon: the same engine
  // and request fields as the CLI's, on the daemon's ledger.
  router.add("POST", "/v1/placements", [this](const api::Request& req, api::Reply reply) {
    auto body = api::parse_object(req);
    if (!body) return reply(api::error(400, body.error().message));
    auto parsed = parse_placement_body(*body);
    if (!parsed) return reply(api::error(400, parsed.error().message));
    const PlacementRequest& request = parsed->request;
    const std::string& owner = parsed->owner;
    const bool ignore_foreign = parsed->ignore_foreign;
    if (workloads.contains(owner)) {
      return reply(
          api::error(409, "'" + owner + "' is a workload: its CPUs are placed when it starts"));
    }
    auto placed = place_request(request, owner, ignore_foreign);
    if (!placed) return reply(error_of(placed.error()));
    auto st = store->transaction([&](Store& s) -> Status {
      if (auto h = s.hold({owner, placed->cpus.to_list(), placed->mems.to_list()}); !h) return h;
      auto e =
          event("placement.held", owner, "'" + owner + "' holds CPUs " + placed->cpus.to_list(),
                {{"cpus", placed->cpus.to_list()}, {"mems", placed->mems.to_list()}});
      return e ? Status{} : fail(e.error());
    });
    if (!st) return reply(error_of(st.error()));
    publish();
    json out = to_json(*placed);
    out["owner"] = owner;
    reply(api::json(201, out));
  });

  router.add("DELETE", "/v1/placements/{owner}", [this](const api::Request& req, api::Reply reply) {
    const std::string owner = req.params.at("owner");
    if (workloads.contains(owner)) {
      return reply(api::error(409, "'" + owner + "' is a workload's hold: stop the workload"));
    }
    auto holds = store->holds();
    if (!holds) return reply(error_of(holds.error()));
    const bool held = std::any_of(holds->begin(), holds->end(),
                                  [&](const HoldRow& h) { return h.owner == owner; });
    if (!held) return reply(api::error(404, "'" + escape_bytes(owner) + "' holds no placement"));
    auto st = store->transaction([&](Store& s) -> Status {
      if (auto r = s.release_hold(owner); !r) return r;
      auto e = event("placement.released", owner, "'" + owner + "' released its CPUs");
      return e ? Status{} : fail(e.error());
    });
    if (!st) return reply(error_of(st.error()));
    publish();
    reply(api::json(200, {{"released", owner}}));
  });

  router.add("GET", "/v1/attachments", [this](const api::Request&, api::Reply reply) {
    json list = json::array();
    for (const auto& [name, a] : attachments)
      list.push_back(attachment_json(*a));
    reply(api::json(200, {{"attachments", list}}));
  });

  router.add("POST", "/v1/attachments", [this](const api::Request& req, api::Reply reply) {
    auto body = api::parse_object(req);
    if (!body) return reply(api::error(400, body.error().message));
    auto row = parse_attachment_body(*body);
    if (!row) return reply(api::error(400, row.error().message));
    if (attachments.contains(row->name)) {
      return reply(api::error(409, "attachment '" + row->name + "' exists"));
    }
    auto a = attach(*row, true);
    if (!a) return reply(error_of(a.error()));
    reply(api::json(201, attachment_json(**a)));
  });

  router.add("DELETE", "/v1/attachments/{name}", [this](const api::Request& req, api::Reply reply) {
    auto it = attachments.find(req.params.at("name"));
    if (it == attachments.end()) {
      return reply(api::error(404, "no attachment '" + escape_bytes(req.params.at("name")) + "'"));
    }
    const std::string name = it->first;
    detach(it->second, "detached by request");
    reply(api::json(200, {{"detached", name}}));
  });

  router.add("GET", "/v1/events", [this](const api::Request& req, api::Reply reply) {
    int64_t since = 0;
    int wait = 0;
    if (auto it = req.query.find("since"); it != req.query.end()) {
      auto v = parse_u64(it->second);
      if (!v || *v > static_cast<uint64_t>(INT64_MAX)) {
        return reply(api::error(400, "bad since '" + escape_bytes(it->second) +
                                         "': give an event sequence number (0 or more)"));
      }
      since = static_cast<int64_t>(*v);
    }
    if (auto it = req.query.find("wait"); it != req.query.end()) {
      auto v = parse_u64(it->second);
      if (!v || *v > kMaxWaitSeconds) {
        return reply(api::error(400, "bad wait '" + escape_bytes(it->second) + "': give 0 to " +
                                         std::to_string(kMaxWaitSeconds) + " seconds"));
      }
      wait = static_cast<int>(*v);
    }
    auto events = store->events_since(since);
    if (!events) return reply(error_of(events.error()));
    if (!events->empty() || wait == 0 || shut_down) {
      json list = json::array();
      for (const auto& e : *events)
        list.push_back(to_json(e));
      const int64_t next = events->empty() ? since : events->back().seq;
      return reply(api::json(200, {{"events", list}, {"next", next}}));
    }
    auto poll = std::make_shared<LongPoll>();
    poll->since = since;
    poll->reply = std::move(reply);
    poll->timer = std::make_shared<asio::steady_timer>(io, std::chrono::seconds(wait));
    polls.push_back(poll);
    poll->timer->async_wait([this, poll](const boost::system::error_code& ec) {
      if (ec) return;
      auto it = std::find(polls.begin(), polls.end(), poll);
      if (it == polls.end()) return;
      polls.erase(it);
      poll->reply(api::json(200, {{"events", json::array()}, {"next", poll->since}}));
    });
  });

  // What SIGHUP does, for `hostfit reload`: the answer lists the files that did not load.
  router.add("POST", "/v1/reload", [this](const api::Request&, api::Reply reply) {
    if (options.config_dir.empty()) {
      return reply(api::error(409, "the daemon has no --config directory to reload"));
    }
    json errors = json::array();
    for (const auto& e : load_config(false))
      errors.push_back({{"file", e.file}, {"line", e.line}, {"message", e.message}});
    reply(api::json(200, {{"config_dir", options.config_dir.string()}, {"errors", errors}}));
  });

  add_session_routes(router);  // engines.cc: /v1/engines, /v1/sessions

  router.add("GET", "/metrics", [this](const api::Request&, api::Reply reply) {
    api::Response r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = metrics_text();
    reply(std::move(r));
  });
}

}  // namespace hostfit
