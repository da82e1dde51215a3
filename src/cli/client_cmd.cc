// The daemon's client verbs: ps, start, stop, create, rm, events, reload. Each sends one API
// request over the daemon's Unix socket and prints the answer; the daemon does the work.
#include <sys/stat.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "client.h"

namespace hostfit::cli {
namespace {

using nlohmann::json;

// Stops are answered when the workload has ended, which may take its whole stop timeout.
constexpr std::chrono::hours kStopTimeout{2};
// Long polls of `events --follow`: the daemon answers at the latest after this many seconds.
constexpr int kFollowWaitSeconds = 30;

std::string bytes_cell(const json& j) {
  return j.is_number_unsigned() ? format_bytes(j.get<uint64_t>()) : json_cell(j);
}

// "running (pid 4242)", "stopped: killed (oom)".
std::string state_line(const json& w) {
  std::string line = json_cell(json_at(w, "state"));
  if (json_at(w, "pid").is_number()) return line + " (pid " + json_cell(json_at(w, "pid")) + ")";
  const json& verdict = json_at(json_at(w, "verdict"), "text");
  if (verdict.is_string() && verdict != json_at(w, "state")) line += ": " + json_cell(verdict);
  return line;
}

std::string cpus_cell(const json& w) {
  const json& placed = json_at(json_at(w, "placement"), "cpus");
  if (placed.is_string()) return placed.get<std::string>();
  if (json_at(w, "cpuset").is_string()) return json_at(w, "cpuset").get<std::string>();
  const json& quota = json_at(json_at(w, "cpu"), "quota_cpus");
  if (quota.is_number()) return json_cell(quota);
  return "-";
}

// The last run's verdict once it ended; "-" before the first ends and while one runs.
std::string verdict_cell(const json& w) {
  const json& verdict = json_at(w, "verdict");
  if (verdict.is_null()) return "-";
  return json_cell(json_at(verdict, "text"));
}

int run_ps(const ClientFlags& f) {
  auto answer = call_daemon(f, "GET", "/v1/workloads");
  if (!answer) return report(answer.error());
  const json& list = json_at(*answer, "workloads");
  if (f.format == Format::kJson) {
    print_json(std::cout, list.is_array() ? list : json::array());
    return kExitOk;
  }
  Table table;
  table.add({"NAME", "STATE", "PID", "RESTARTS", "MEMORY", "LIMIT", "CPUS", "LAST RUN"});
  if (list.is_array()) {
    for (const json& w : list) {
      table.add({json_cell(json_at(w, "name")), json_cell(json_at(w, "state")),
                 json_cell(json_at(w, "pid")), json_cell(json_at(w, "restarts")),
                 bytes_cell(json_at(json_at(w, "memory"), "usage_bytes")),
                 bytes_cell(json_at(w, "memory_limit_bytes")), cpus_cell(w), verdict_cell(w)});
    }
  }
  table.print(std::cout);
  return kExitOk;
}

// start, stop, restart: one POST, the workload's state after it.
int run_action(const ClientFlags& f, const std::string& name, const std::string& action) {
  auto answer = call_daemon(f, "POST", "/v1/workloads/" + path_segment(name) + "/" + action, {},
                            action == "start" ? kClientTimeout : kStopTimeout);
  if (!answer) return report(answer.error());
  if (f.format == Format::kJson) {
    print_json(std::cout, *answer);
  } else {
    std::cout << name << ": " << state_line(*answer) << "\n";
  }
  return kExitOk;
}

struct CreateOptions {
  ClientFlags client;
  std::string name;
  WorkloadFlags w;
  std::vector<std::string> env;
  std::string user;
  std::string restart;
  bool no_start = false;
};

// The workload object of POST /v1/workloads from the flags, each checked here first so a bad
// value is named by its flag.
Result<json> workload_body(const CreateOptions& o) {
  auto r = request_from_flags(o.w);
  if (!r) return fail(r.error());
  if (o.w.command.empty()) {
    return fail(ErrorKind::kUsage,
                "give the command after --, e.g. hostfit create " + o.name + " -- sleep 60");
  }
  json body = {{"name", o.name}, {"argv", o.w.command}};
  json env = json::object();
  for (const std::string& kv : o.env) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return fail(ErrorKind::kUsage, "bad --env '" + kv + "': give KEY=VALUE");
    }
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (!env.empty()) body["env"] = env;
  if (!o.user.empty()) body["user"] = o.user;
  if (r->cpus) body["cpus"] = *r->cpus;
  if (r->cpuset) body["cpuset"] = r->cpuset->to_list();
  if (!o.w.placement.empty()) body["placement"] = o.w.placement;
  if (r->memory_max_bytes) body["memory"] = *r->memory_max_bytes;
  if (r->memory_high_bytes) body["memory_high"] = *r->memory_high_bytes;
  if (r->pids_max) body["pids"] = *r->pids_max;
  // The runtime's name and the plugin count: the daemon sizes {workers} at each start.
  if (r->shape.runtime.name != "none" && !r->shape.runtime.name.empty()) {
    body["runtime"] = r->shape.runtime.name;
  }
  if (!o.w.plugins.empty()) body["plugins"] = r->shape.instances_per_worker;
  auto cache = size_flag("--cache-limit", o.w.cache_limit);
  if (!cache) return fail(cache.error());
  if (*cache) body["cache_limit"] = **cache;
  if (!o.restart.empty()) {
    if (o.restart != "never" && o.restart != "on-failure" && o.restart != "always") {
      return fail(ErrorKind::kUsage,
                  "bad --restart '" + o.restart + "': give never, on-failure or always");
    }
    body["restart"] = o.restart;
  }
  if (o.w.stop_timeout != "10") body["stop_timeout_ms"] = r->stop_timeout.count();
  if (o.no_start) body["start"] = false;
  return body;
}

int run_create(const CreateOptions& o) {
  auto body = workload_body(o);
  if (!body) return report(body.error());
  auto answer = call_daemon(o.client, "POST", "/v1/workloads", body->dump());
  if (!answer) return report(answer.error());
  if (o.client.format == Format::kJson) {
    print_json(std::cout, *answer);
  } else {
    std::cout << "created " << o.name << ": " << state_line(*answer) << "\n";
  }
  return kExitOk;
}

int run_rm(const ClientFlags& f, const std::string& name, bool force) {
  auto answer =
      call_daemon(f, "DELETE", "/v1/workloads/" + path_segment(name) + (force ? "?force=1" : ""),
                  {}, kStopTimeout);
  if (!answer) return report(answer.error());
  if (f.format == Format::kJson) {
    print_json(std::cout, *answer);
  } else {
    std::cout << "removed " << name << "\n";
  }
  return kExitOk;
}

struct EventsOptions {
  ClientFlags client;
  bool follow = false;
  uint64_t since = 0;
};

void print_event(const json& e, Format format) {
  if (format == Format::kJson) {
    std::cout << e.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
    return;
  }
  std::cout << escape_bytes(json_cell(json_at(e, "seq")) + "  " + json_cell(json_at(e, "time")) +
                                "  " + json_cell(json_at(e, "type")) + "  " +
                                json_cell(json_at(e, "workload")) + "  " +
                                json_cell(json_at(e, "message")),
                            true)
            << std::endl;
}

// Without --follow: the events after --since, then exit. With it: long polls, one line per
// event as it happens, until interrupted or the daemon goes away.
int run_events(const EventsOptions& o) {
  uint64_t since = o.since;
  bool header = o.client.format == Format::kTable;
  do {
    std::string target = "/v1/events?since=" + std::to_string(since);
    if (o.follow) target += "&wait=" + std::to_string(kFollowWaitSeconds);
    auto answer = call_daemon(o.client, "GET", target);
    if (!answer) return report(answer.error());
    if (header) std::cout << "SEQ  TIME  TYPE  WORKLOAD  MESSAGE\n";
    header = false;
    const json& events = json_at(*answer, "events");
    if (events.is_array()) {
      for (const json& e : events)
        print_event(e, o.client.format);
    }
    const json& next = json_at(*answer, "next");
    if (next.is_number_unsigned()) since = next.get<uint64_t>();
  } while (o.follow);
  return kExitOk;
}

int run_reload(const ClientFlags& f) {
  auto answer = call_daemon(f, "POST", "/v1/reload");
  if (!answer) return report(answer.error());
  if (f.format == Format::kJson) {
    print_json(std::cout, *answer);
    return kExitOk;
  }
  const json& errors = json_at(*answer, "errors");
  if (errors.is_array() && !errors.empty()) {
    for (const json& e : errors) {
      std::string where = json_cell(json_at(e, "file"));
      if (json_at(e, "line").is_number() && json_at(e, "line") != 0)
        where += ":" + json_cell(json_at(e, "line"));
      std::cerr << "hostfit: "
                << escape_bytes(where + ": " + json_cell(json_at(e, "message")), true) << "\n";
    }
    return kExitFailure;
  }
  std::cout << "reloaded " << json_cell(json_at(*answer, "config_dir")) << "\n";
  return kExitOk;
}

CLI::App* add_name_verb(CLI::App& app, const char* name, const char* about, ClientFlags& flags,
                        std::string& workload) {
  CLI::App* cmd = app.add_subcommand(name, about);
  cmd->add_option("name", workload, "The workload's name")->required()->type_name("NAME");
  add_client_flags(*cmd, flags);
  return cmd;
}

}  // namespace

void add_client_commands(CLI::App& app, Commands& commands) {
  {
    auto f = std::make_shared<ClientFlags>();
    CLI::App* cmd = app.add_subcommand("ps", "List the daemon's workloads and their state");
    add_client_flags(*cmd, *f);
    cmd->footer(kNoDaemonFooter);
    commands.push_back({cmd, [f] { return run_ps(*f); }});
  }
  for (const char* action : {"start", "stop", "restart"}) {
    auto f = std::make_shared<ClientFlags>();
    auto name = std::make_shared<std::string>();
    const std::string about =
        std::string(action) == "start"
            ? "Start a workload the daemon knows (its restart count starts over)"
        : std::string(action) == "stop"
            ? "Stop a workload: SIGTERM, SIGKILL after its stop timeout; answers when it has ended"
            : "Stop a workload if it runs, then start it";
    CLI::App* cmd = add_name_verb(app, action, about.c_str(), *f, *name);
    cmd->footer(kNoDaemonFooter);
    commands.push_back(
        {cmd, [f, name, a = std::string(action)] { return run_action(*f, *name, a); }});
  }
  {
    auto o = std::make_shared<CreateOptions>();
    CLI::App* cmd = app.add_subcommand(
        "create",
        "Give the daemon a workload: the flags of 'hostfit run', plus a restart policy; it "
        "starts at once unless --no-start, and survives restarts of the daemon.");
    cmd->add_option("name", o->name, "The workload's name (also its cgroup's)")
        ->required()
        ->type_name("NAME");
    add_workload_flags(*cmd, o->w, WorkloadFlagSet::kDaemon);
    cmd->add_option("--env", o->env, "Set an environment variable (repeatable)")
        ->type_name("KEY=VALUE");
    cmd->add_option("--user", o->user, "Run as this user and its primary group (default root)")
        ->type_name("USER");
    cmd->add_option("--restart", o->restart,
                    "When the daemon starts it again: never (default), on-failure or always")
        ->type_name("POLICY");
    cmd->add_flag("--no-start", o->no_start, "Create it stopped; 'hostfit start NAME' starts it");
    add_client_flags(*cmd, o->client);
    cmd->add_option("command", o->w.command, "The command and its arguments, after --")
        ->type_name("CMD ARGS...");
    cmd->footer(
        "Examples:\n"
        "  hostfit create web --cpus 2 --memory 512Mi --restart on-failure -- nginx -g 'daemon "
        "off;'\n"
        "  hostfit create etl --no-start --memory 1G -- ./etl --threads {workers}\n" +
        std::string(kNoDaemonFooter));
    commands.push_back({cmd, [o] { return run_create(*o); }});
  }
  {
    auto f = std::make_shared<ClientFlags>();
    auto name = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    CLI::App* cmd =
        add_name_verb(app, "rm", "Remove a stopped workload from the daemon", *f, *name);
    cmd->add_flag("-f,--force", *force, "Stop it first when it runs");
    cmd->footer(kNoDaemonFooter);
    commands.push_back({cmd, [f, name, force] { return run_rm(*f, *name, *force); }});
  }
  {
    auto o = std::make_shared<EventsOptions>();
    CLI::App* cmd = app.add_subcommand(
        "events",
        "Print the daemon's events (starts, exits, OOM kills, restarts, placements, reloads), "
        "oldest first");
    cmd->add_flag("-f,--follow", o->follow, "Keep printing new events as they happen");
    cmd->add_option("--since", o->since, "Only events after this sequence number (default 0)")
        ->type_name("SEQ");
    add_client_flags(*cmd, o->client);
    cmd->footer("-o json prints one JSON object per line.\n" + std::string(kNoDaemonFooter));
    commands.push_back({cmd, [o] { return run_events(*o); }});
  }
  {
    auto f = std::make_shared<ClientFlags>();
    CLI::App* cmd = app.add_subcommand(
        "reload", "Make the daemon read its --config directory again (as SIGHUP does)");
    add_client_flags(*cmd, *f);
    cmd->footer("Files that do not load are printed, one per line, and the exit code is 1.\n" +
                std::string(kNoDaemonFooter));
    commands.push_back({cmd, [f] { return run_reload(*f); }});
  }
}

}  // namespace hostfit::cli
