// hostfit run: one workload in the foreground, in its own cgroup, and the truth about its end.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "daemon_ledger.h"
#include "hostfit/cache.h"
#include "hostfit/supervise.h"

extern char** environ;

namespace hostfit::cli {
namespace {

struct RunOptions {
  std::string name;
  WorkloadFlags w;
  std::string report_file;
  std::string cgroup_parent;
  std::string cache_interval = "50ms";
  bool no_env = false;
};

// Cache accounting for every run, and the --cache-limit budget when one is given.
Result<CacheLimitOptions> to_cache_options(const RunOptions& o, const WorkloadRequest& request) {
  CacheLimitOptions cache;
  auto limit = size_flag("--cache-limit", o.w.cache_limit);
  if (!limit) return fail(limit.error());
  cache.limit_bytes = *limit;
  if (cache.limit_bytes && request.memory_max_bytes &&
      *cache.limit_bytes > *request.memory_max_bytes) {
    return fail(ErrorKind::kUsage, "bad --cache-limit '" + o.w.cache_limit +
                                       "': more than --memory '" + o.w.memory +
                                       "'; the cache budget is part of the memory limit");
  }
  auto interval = parse_duration(o.cache_interval);
  if (!interval) return fail(interval.error().wrap("bad --cache-interval"));
  if (*interval < std::chrono::milliseconds(1) || *interval > std::chrono::seconds(60)) {
    return fail(ErrorKind::kUsage,
                "bad --cache-interval '" + o.cache_interval + "': give 1ms to 60s, e.g. 50ms");
  }
  cache.interval = std::chrono::duration_cast<std::chrono::milliseconds>(*interval);
  return cache;
}

// "peaks: usage 1 GiB = page cache 1 GiB (tmpfs 0 B) + anon 2 MiB + kernel 3 MiB; ..."
std::string cache_line(const std::string& name, const CacheController& c) {
  const MemoryBreakdown& p = c.peaks();
  std::string line = "memory of " + name + " at its peaks: usage " + format_bytes(p.usage_bytes) +
                     ", page cache " + format_bytes(p.file_bytes) + " (tmpfs/shmem " +
                     format_bytes(p.shmem_bytes) + "), anon " + format_bytes(p.anon_bytes) +
                     ", working set " + format_bytes(p.working_set_bytes) + ", unreclaimable " +
                     format_bytes(p.unreclaimable_bytes);
  const CacheLimiterStats& s = c.stats();
  if (c.options().limit_bytes) {
    line += "; --cache-limit " + format_bytes(*c.options().limit_bytes) + ": " +
            std::to_string(s.reclaims) + " reclaims by " + s.method + " freed " +
            format_bytes(s.reclaimed_bytes);
    if (s.pressure_backoffs) {
      line += ", held back " + std::to_string(s.pressure_backoffs) + " times by memory pressure";
    }
    if (!s.last_error.empty()) line += "; last reclaim error: " + s.last_error;
  }
  return line;
}

Result<WorkloadRequest> to_request(const RunOptions& o) {
  auto r = request_from_flags(o.w);
  if (!r) return fail(r.error());
  r->name = o.name;
  r->cgroup_parent = o.cgroup_parent;
  r->export_env = !o.no_env;
  for (char** e = environ; *e; ++e)
    r->env.emplace_back(*e);
  // `run` has no --ledger: $HOSTFIT_LEDGER names a file ledger, else a running daemon's wins.
  if (r->placement) {
    if (auto socket = daemon_ledger_socket("")) {
      r->hold_placement = [socket = *socket](const PlacementRequest& req,
                                             const std::string& owner) {
        return daemon_hold(socket, req, owner);
      };
      r->release_placement = [socket = *socket](const std::string& owner) {
        (void)daemon_release(socket, owner);
      };
    }
  }
  return r;
}

int run(const RunOptions& o) {
  auto request = to_request(o);
  if (!request) return report(request.error());
  auto cache_options = to_cache_options(o, *request);
  if (!cache_options) return report(cache_options.error());
  const Sysroot root("/");
  const HostFacts self = probe_host(root, ProbeTarget::self());
  if (auto st = validate_request(self, *request); !st) return report(st.error());
  if (cache_options->limit_bytes) {
    if (auto st = check_cache_limit_support(root, self.cgroup); !st) return report(st.error());
  }

  std::string name;
  SuperviseHooks hooks;
  // The controller starts once the workload runs in its group, on a thread that inherits the
  // stop signals blocked by run_workload; it ends by itself when the group is removed.
  std::unique_ptr<CacheController> cache;
  hooks.on_running = [&](const Cgroup& workload, pid_t) {
    name = workload.name;  // for OOM event lines while it runs
    if (cache) return;
    auto group = cache_group_of(root, workload);
    if (!group) return;  // no memory controller: the report says cache null
    auto controller = CacheController::open(root, *group, *cache_options);
    if (!controller) {
      std::cerr << "hostfit: cache accounting is off: " << controller.error().message << "\n";
      return;
    }
    cache = std::move(*controller);
    cache->start();
  };
  hooks.on_oom_event = [&](const OomEvent& e) {
    std::cerr << "hostfit: " << oom_event_line(name, e) << "\n";
  };
  hooks.on_notice = [](const std::string& notice) { std::cerr << "hostfit: " << notice << "\n"; };
  name = request->name;
  auto run = run_workload(root, self, *request, hooks);
  if (!run) return report(run.error());
  name = run->group.name;
  if (cache) (void)cache->stop();
  std::cerr << "hostfit: " << verdict_line(*run) << "\n";
  if (cache && cache->stats().samples > 0)
    std::cerr << "hostfit: " << cache_line(name, *cache) << "\n";
  if (!o.report_file.empty()) {
    nlohmann::json j = to_json(*run);
    j["cache"] = cache ? to_json(*cache) : nlohmann::json(nullptr);
    std::ofstream out(o.report_file);
    if (out) print_json(out, j);
    if (!out) {
      std::cerr << "hostfit: cannot write the report to " << o.report_file << "\n";
    }
  }
  return run->record.shell_exit_code();
}

}  // namespace

void add_run_command(CLI::App& app, Commands& commands) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "Run one workload in the foreground inside a cgroup hostfit creates, limited and sized "
      "for it, and say what really ended it (exit code, signal, or the kernel OOM killer).");
  cmd->add_option("--name", o->name, "Name of the workload and its cgroup (default CMD-PID)");
  add_workload_flags(*cmd, o->w, WorkloadFlagSet::kForeground);
  cmd->add_option("--report", o->report_file, "Write the run's JSON record to FILE at the end")
      ->type_name("FILE");
  cmd->add_option("--cgroup-parent", o->cgroup_parent,
                  "Create the group under PATH in every hierarchy instead of the default")
      ->type_name("PATH");
  cmd->add_option("--cache-interval", o->cache_interval,
                  "How often memory is sampled for the report and to re-arm --cache-limit (the "
                  "kernel wakes hostfit in between), e.g. 50ms, 1s (default 50ms)")
      ->type_name("DURATION");
  cmd->add_flag("--no-env", o->no_env, "Do not export HOSTFIT_* variables to the workload");
  cmd->add_option("command", o->w.command, "The command and its arguments, after --")
      ->type_name("CMD ARGS...");
  cmd->footer(
      "Where the group goes: hostfit manages only its own subtree, a 'hostfit' child of its own\n"
      "cgroup in each hierarchy (see /proc/self/cgroup), e.g. <own memory cgroup>/hostfit/NAME;\n"
      "--cgroup-parent PATH puts it at PATH/NAME instead. The --report records each path.\n"
      "\n"
      "Placeholders in ARGS: {workers} {cpus} {instances} {cpuset} {mems} {memory_limit}, from\n"
      "'hostfit plan' for the group hostfit creates ({{ and }} are literal braces). Exported "
      "unless\n"
      "--no-env: the variables of 'hostfit plan -o env' (HOSTFIT_WORKERS, HOSTFIT_CPUS,\n"
      "GOMAXPROCS, ...) and HOSTFIT_NAME HOSTFIT_CGROUP HOSTFIT_CPUSET HOSTFIT_MEMS\n"
      "HOSTFIT_MEMORY_LIMIT.\n"
      "\n"
      "Memory: hostfit samples the group every --cache-interval and prints the peaks of page\n"
      "cache, tmpfs, anon, working set and unreclaimable memory at the end (docs/cache.md);\n"
      "--report has them under \"cache\".\n"
      "\n"
      "Exit code: the workload's, or 128 + signal (137 for an OOM kill), 127 when the command\n"
      "cannot be executed; 2 for a usage error (nothing is created).\n"
      "\n"
      "Examples:\n"
      "  hostfit run --memory 64Mi -- python3 -c 'bytearray(512 << 20)'\n"
      "  hostfit run --cpus 2 -- nginx -g 'daemon off; worker_processes {workers};'\n"
      "  hostfit run --name etl --memory 1G --report etl.json -- ./etl --threads {workers}\n"
      "  hostfit run --memory 2Gi --cache-limit 64Mi -- python3 -m http.server 8080");
  commands.push_back({cmd, [o]() { return run(*o); }});
}

}  // namespace hostfit::cli
