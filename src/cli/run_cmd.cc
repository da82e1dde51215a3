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
  std::string cpus;
  std::string cpuset;
  std::string placement;
  std::string memory;
  std::string memory_high;
  std::string pids;
  std::string report_file;
  std::string cgroup_parent;
  std::string stop_timeout = "10";
  std::string cache_limit;
  std::string cache_interval = "50ms";
  bool no_env = false;
  std::string runtime;
  std::string profile;
  std::string plugins;
  std::vector<std::string> command;
};

Result<std::optional<uint64_t>> size_flag(const std::string& flag, const std::string& text) {
  if (text.empty()) return std::optional<uint64_t>{};
  auto v = parse_bytes(text);
  if (!v) return fail(ErrorKind::kUsage, "bad " + flag + " '" + text + "': " + v.error().message);
  return std::optional<uint64_t>(*v);
}

// Cache accounting for every run, and the --cache-limit budget when one is given.
Result<CacheLimitOptions> to_cache_options(const RunOptions& o, const WorkloadRequest& request) {
  CacheLimitOptions cache;
  auto limit = size_flag("--cache-limit", o.cache_limit);
  if (!limit) return fail(limit.error());
  cache.limit_bytes = *limit;
  if (cache.limit_bytes && request.memory_max_bytes &&
      *cache.limit_bytes > *request.memory_max_bytes) {
    return fail(ErrorKind::kUsage, "bad --cache-limit '" + o.cache_limit +
                                       "': more than --memory '" + o.memory +
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

// The sandbox side of the plan: --runtime or --profile, and --plugins instances per worker, so
// that {workers} and {instances} carry the instance budget and not only the CPUs.
Result<WorkloadShape> to_shape(const RunOptions& o) {
  WorkloadShape shape;
  auto runtime = runtime_from_flags(o.profile, o.runtime);
  if (!runtime) return fail(runtime.error());
  shape.runtime = *runtime;
  const bool sandbox = shape.runtime.name != "none";
  if (!o.plugins.empty()) {
    if (!sandbox) {
      return fail(ErrorKind::kUsage, "--plugins " + o.plugins +
                                         " needs --runtime v8|envoy-v8|wasmtime|wasmer|wamr or "
                                         "--profile FILE: the per-instance costs to budget with");
    }
    auto n = parse_count(o.plugins, "--plugins", 1, 1000000);
    if (!n) return fail(n.error());
    shape.instances_per_worker = *n;
  } else if (sandbox) {
    shape.instances_per_worker = 1;
  }
  return shape;
}

Result<WorkloadRequest> to_request(const RunOptions& o) {
  WorkloadRequest r;
  r.name = o.name;
  r.argv = o.command;
  r.cgroup_parent = o.cgroup_parent;
  r.export_env = !o.no_env;
  for (char** e = environ; *e; ++e)
    r.env.emplace_back(*e);
  if (!o.cpus.empty()) {
    auto c = parse_double(o.cpus);
    if (!c) {
      return fail(ErrorKind::kUsage,
                  "bad --cpus '" + o.cpus + "': give a number of CPUs such as 0.5 or 2");
    }
    r.cpus = *c;
  }
  if (!o.cpuset.empty()) {
    auto set = CpuSet::parse_list(o.cpuset);
    if (!set) return fail(set.error().wrap("bad --cpuset"));
    r.cpuset = *set;
  }
  if (!o.placement.empty()) {
    std::vector<int> nodes;
    auto policy = parse_policy(o.placement, &nodes);
    if (!policy) return fail(policy.error().wrap("bad --placement"));
    r.placement = *policy;
    r.placement_nodes = nodes;
    // `run` has no --ledger: $HOSTFIT_LEDGER names a file ledger, else a running daemon's wins.
    if (auto socket = daemon_ledger_socket("")) {
      r.hold_placement = [socket = *socket](const PlacementRequest& req, const std::string& owner) {
        return daemon_hold(socket, req, owner);
      };
      r.release_placement = [socket = *socket](const std::string& owner) {
        (void)daemon_release(socket, owner);
      };
    }
  }
  auto memory = size_flag("--memory", o.memory);
  if (!memory) return fail(memory.error());
  r.memory_max_bytes = *memory;
  auto high = size_flag("--memory-high", o.memory_high);
  if (!high) return fail(high.error());
  r.memory_high_bytes = *high;
  if (!o.pids.empty()) {
    auto p = parse_u64(o.pids);
    if (!p) return fail(ErrorKind::kUsage, "bad --pids '" + o.pids + "': give a whole number");
    r.pids_max = *p;
  }
  auto stop = parse_double(o.stop_timeout);
  if (!stop || *stop < 0 || *stop > 86400) {
    return fail(ErrorKind::kUsage,
                "bad --stop-timeout '" + o.stop_timeout + "': give seconds from 0 to 86400");
  }
  r.stop_timeout = std::chrono::milliseconds(static_cast<int64_t>(*stop * 1000));
  auto shape = to_shape(o);
  if (!shape) return fail(shape.error());
  r.shape = *shape;
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
  cmd->add_option("--cpus", o->cpus, "CPU quota in CPUs, e.g. 0.5 or 2 (quota over 100 ms)")
      ->type_name("N");
  cmd->add_option("--cpuset", o->cpuset, "CPUs the workload may run on, e.g. 0-3,8")
      ->type_name("LIST");
  cmd->add_option("--placement", o->placement,
                  "Let hostfit place ceil(--cpus) CPUs: balanced, compact, spread or nodes:LIST "
                  "(recorded in the placement ledger, released at exit)")
      ->type_name("POLICY");
  cmd->add_option("--memory", o->memory, "Memory limit, e.g. 64Mi or 1.5G (also caps swap)")
      ->type_name("SIZE");
  cmd->add_option("--memory-high", o->memory_high,
                  "Memory throttle point (memory.high, cgroup v2 only)")
      ->type_name("SIZE");
  cmd->add_option("--pids", o->pids, "Most processes and threads the workload may have")
      ->type_name("N");
  cmd->add_option("--report", o->report_file, "Write the run's JSON record to FILE at the end")
      ->type_name("FILE");
  cmd->add_option("--cgroup-parent", o->cgroup_parent,
                  "Create the group under PATH in every hierarchy instead of the default")
      ->type_name("PATH");
  cmd->add_option("--stop-timeout", o->stop_timeout,
                  "Seconds between a forwarded SIGTERM/SIGINT and SIGKILL (default 10)")
      ->type_name("SECONDS");
  cmd->add_option("--cache-limit", o->cache_limit,
                  "Keep the workload's reclaimable page cache under SIZE with the kernel's help "
                  "(v2 memory.high held at its other memory + SIZE; v1 a usage threshold that "
                  "wakes hostfit to reclaim at once); never OOM-kills, tmpfs is never counted or "
                  "reclaimed")
      ->type_name("SIZE");
  cmd->add_option("--cache-interval", o->cache_interval,
                  "How often memory is sampled for the report and to re-arm --cache-limit (the "
                  "kernel wakes hostfit in between), e.g. 50ms, 1s (default 50ms)")
      ->type_name("DURATION");
  cmd->add_flag("--no-env", o->no_env, "Do not export HOSTFIT_* variables to the workload");
  cmd->add_option("--runtime", o->runtime,
                  "Sandbox runtime whose per-instance costs size {workers} (as hostfit plan)");
  cmd->add_option("--profile", o->profile,
                  "Per-instance costs from 'hostfit calibrate -o json' (instead of --runtime)")
      ->type_name("FILE")
      ->excludes("--runtime");
  cmd->add_option("--plugins", o->plugins,
                  "Sandbox instances per worker (e.g. Wasm plugins): workers shrink to fit")
      ->type_name("N");
  cmd->add_option("command", o->command, "The command and its arguments, after --")
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
