// One `hostfit run` from request to released cgroup: checks, group, sizing, supervision, report.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "hostfit/supervise.h"

namespace hostfit {
namespace {

// CFS refuses quotas under 1 ms; a tenth of a second is the period Docker and Kubernetes use.
constexpr int64_t kPeriodUs = 100000;
constexpr int64_t kMinQuotaUs = 1000;
constexpr double kMaxCpus = 65536;      // quota arithmetic stays far from overflow
constexpr uint64_t kMaxPids = 4194304;  // PID_MAX_LIMIT on 64-bit

std::string format_cpus(double cpus) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", cpus);
  std::string s = buf;
  while (s.back() == '0')
    s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::string format_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.1f s" : "%.0f s", s);
  return buf;
}

// "python3" -> "python3-4242"; characters a cgroup name may not hold become '-'.
std::string default_name(const std::string& command) {
  std::string base = command.substr(command.rfind('/') + 1);
  for (char& c : base) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) c = '-';
  }
  while (!base.empty() && (base.front() == '.' || base.front() == '_'))
    base.erase(base.begin());
  if (base.empty()) base = "workload";
  return base.substr(0, 40) + "-" + std::to_string(::getpid());
}

// The facts of the new group: hostfit's own view narrowed by the group's limits, with the
// probe's own rule for effective CPUs (compute_effective_cpus), for make_plan.
HostFacts group_facts(const HostFacts& self, const CgroupLimits& limits, const Cgroup& group) {
  HostFacts f = self;
  const CgroupDir* cpu_dir = group.dir_of("cpu");
  const CgroupDir* memory_dir = group.dir_of("memory");
  if (memory_dir) f.target = ProbeTarget::cgroup(memory_dir->cgroup);
  if (limits.cpus) f.cpu.cpuset = Fact<CpuSet>::of(*limits.cpus, "cpuset.cpus of " + group.name);
  if (limits.mems) {
    f.cpu.cpuset_mems = Fact<CpuSet>::of(*limits.mems, "cpuset.mems of " + group.name);
  }
  if (limits.cpu_quota_us) {
    CpuQuota q;
    q.cgroup = cpu_dir ? cpu_dir->cgroup : group.name;
    q.source = cpu_dir ? join_path(cpu_dir->dir, cpu_dir->v2 ? "cpu.max" : "cpu.cfs_quota_us") : "";
    q.raw = std::to_string(*limits.cpu_quota_us);
    q.quota_us = *limits.cpu_quota_us;
    q.period_us = limits.cpu_period_us;
    q.v2 = cpu_dir && cpu_dir->v2;
    f.cpu.quotas.push_back(q);
  }
  compute_effective_cpus(f.cpu);
  if (limits.memory_max_bytes) {
    const Limit own = Limit::of(*limits.memory_max_bytes);
    const Limit above = f.cgroup.memory_limit.known() ? *f.cgroup.memory_limit : Limit::unlimited();
    const Limit tighter = min_limit(own, above);
    if (tighter == own) {
      f.cgroup.memory_limit = Fact<Limit>::of(own, memory_dir ? memory_dir->dir : group.name);
      f.cgroup.memory_limit_cgroup = memory_dir ? memory_dir->cgroup : group.name;
    }
  }
  return f;
}

// A limit below kMinMemoryBytes is a forgotten unit ("--memory 64"): the workload would be killed
// before it starts. The message suggests the unit.
Status check_memory_size(std::string_view flag, const std::optional<uint64_t>& bytes) {
  if (!bytes || *bytes >= kMinMemoryBytes) return {};
  const uint64_t n = *bytes;
  std::string hint = "give a size such as 64Mi or 1.5G";
  if (n > 0 && n < 1024)
    hint = "did you mean " + std::to_string(n) + "Mi? a size without a unit is in bytes";
  return fail(ErrorKind::kUsage, "bad " + std::string(flag) + " " + std::to_string(n) + " (" +
                                     format_bytes(n) + "): the minimum is " +
                                     format_bytes(kMinMemoryBytes) + "; " + hint);
}

// The hierarchies a run's group needs: memory for the OOM verdict, the peak and the cache
// accounting, cpuacct for the CPU time in the report, and the others only for a limit asked for.
std::vector<std::string> needed_controllers(const WorkloadRequest& r) {
  std::vector<std::string> needed = {"memory", "cpuacct"};
  if (r.cpus) needed.emplace_back("cpu");
  if (r.cpuset || r.placement) needed.emplace_back("cpuset");
  if (r.pids_max) needed.emplace_back("pids");
  // On a hybrid host PSI is only in the unified tree; on v2 memory already brings it.
  if (r.memory_pressure) needed.emplace_back("unified");
  return needed;
}

}  // namespace

Status check_memory_high_supported(const CgroupFacts& cgroup, std::string_view setting,
                                   std::string_view hard_limit) {
  const ControllerPath* memory = cgroup.find("memory");
  if (!memory || memory->v2) return {};
  return fail(ErrorKind::kUsage,
              std::string(setting) +
                  " needs the cgroup v2 memory controller (memory.high); this host's memory "
                  "controller is cgroup v1 at " +
                  memory->mount_point + " (use " + std::string(hard_limit) + " for a hard limit)");
}

Status validate_request(const HostFacts& self, const WorkloadRequest& r) {
  if (r.argv.empty() || r.argv.front().empty()) {
    return fail(ErrorKind::kUsage, "no command given (usage: hostfit run [flags] -- CMD ARGS...)");
  }
  if (!r.name.empty()) {
    if (auto st = validate_cgroup_name(r.name); !st) return fail(st.error().wrap("--name"));
  }
  if (!r.cgroup_parent.empty()) {
    if (auto p = normalize_cgroup_path(r.cgroup_parent); !p)
      return fail(p.error().wrap("bad --cgroup-parent"));
  }
  const CpuSet usable = self.cpu.usable;
  const std::string available = format_cpus(self.cpu.effective) + " CPUs available to hostfit" +
                                (usable.empty() ? "" : " (CPUs " + usable.to_list() + ")");
  if (r.cpus) {
    const double c = *r.cpus;
    if (!std::isfinite(c) || c * kPeriodUs < kMinQuotaUs) {
      return fail(ErrorKind::kUsage, "bad --cpus " + format_cpus(c) +
                                         ": need at least 0.01 (a 1 ms quota per 100 ms period)");
    }
    if (c > kMaxCpus) {
      return fail(ErrorKind::kUsage, "bad --cpus " + format_cpus(c) + ": at most " +
                                         std::to_string(kMaxCpus) + " CPUs");
    }
    if (self.cpu.effective > 0 && c > self.cpu.effective + 1e-9) {
      return fail(ErrorKind::kUsage,
                  "bad --cpus " + format_cpus(c) + ": this host has " + available);
    }
  }
  if (r.cpuset) {
    if (r.cpuset->empty()) return fail(ErrorKind::kUsage, "bad --cpuset: the list is empty");
    if (!usable.empty() && !r.cpuset->is_subset_of(usable)) {
      return fail(ErrorKind::kUsage, "bad --cpuset " + r.cpuset->to_list() + ": " +
                                         (*r.cpuset - usable).to_list() +
                                         " not usable here; this host has " + available);
    }
    if (r.cpus && *r.cpus > r.cpuset->count() + 1e-9) {
      return fail(ErrorKind::kUsage, "bad --cpus " + format_cpus(*r.cpus) + ": more than the " +
                                         std::to_string(r.cpuset->count()) + " CPUs of --cpuset " +
                                         r.cpuset->to_list());
    }
  }
  if (r.placement) {
    if (r.cpuset) return fail(ErrorKind::kUsage, "--placement and --cpuset exclude each other");
    if (!r.cpus) {
      return fail(ErrorKind::kUsage,
                  "--placement needs --cpus N: it places ceil(N) CPUs and sets a quota of N");
    }
  }
  // Catch unknown or unterminated {placeholders} now, before anything is created.
  if (auto probe = substitute_placeholders(r.argv, {"1", "1", "0", "0", "0", "max"}); !probe) {
    return fail(probe.error());
  }
  if (auto st = check_memory_size("--memory", r.memory_max_bytes); !st) return st;
  if (auto st = check_memory_size("--memory-high", r.memory_high_bytes); !st) return st;
  if (r.memory_high_bytes) {
    if (auto st = check_memory_high_supported(self.cgroup, "--memory-high", "--memory"); !st)
      return st;
  }
  if (r.pids_max && (*r.pids_max == 0 || *r.pids_max > kMaxPids)) {
    return fail(ErrorKind::kUsage, "bad --pids " + std::to_string(*r.pids_max) + ": give 1 to " +
                                       std::to_string(kMaxPids) + " (the kernel's PID_MAX_LIMIT)");
  }
  return {};
}

Result<PreparedCommand> prepare_command(const HostFacts& self, const Cgroup& group,
                                        const CgroupLimits& limits, const std::string& name,
                                        const std::vector<std::string>& command,
                                        const std::vector<std::string>& env,
                                        const WorkloadShape& shape, bool export_env) {
  PreparedCommand out;
  auto plan = make_plan(group_facts(self, limits, group), shape);
  if (!plan) return fail(plan.error().wrap("cannot size '" + name + "'"));
  out.plan = *plan;
  if (plan->instances_per_worker > 0) {
    out.notices.push_back("sized '" + name + "' for " + std::to_string(plan->instances_per_worker) +
                          " " + plan->runtime_label +
                          " instances per worker: " + std::to_string(plan->workers) + " workers, " +
                          std::to_string(plan->instances) + " instances (" + plan->binding + ")");
  }
  for (const auto& w : plan->warnings)
    out.notices.push_back("warning: " + w);

  PlaceholderValues values = placeholder_values(*plan);
  auto argv = substitute_placeholders(command, values);
  if (!argv) return fail(argv.error());
  out.argv = *argv;
  for (const auto& e : env) {
    if (export_env && e.starts_with("HOSTFIT_")) continue;  // ours replace inherited ones
    out.env.push_back(e);
  }
  if (export_env) {
    for (const auto& [key, value] : plan_environment(*plan)) {
      // Runtime variables the user set on purpose win over the plan's.
      const bool user_set = !key.starts_with("HOSTFIT_") &&
                            std::any_of(env.begin(), env.end(), [&](const std::string& e) {
                              return e.starts_with(key + "=");
                            });
      if (!user_set) out.env.push_back(key + "=" + value);
    }
    const CgroupDir* memory = group.dir_of("memory");
    out.env.push_back("HOSTFIT_NAME=" + name);
    out.env.push_back("HOSTFIT_CGROUP=" + (memory ? memory->cgroup : group.dirs[0].cgroup));
    out.env.push_back("HOSTFIT_CPUSET=" + values.cpuset);
    out.env.push_back("HOSTFIT_MEMS=" + values.mems);
    out.env.push_back("HOSTFIT_MEMORY_LIMIT=" + values.memory_limit);
  }
  return out;
}

Result<WorkloadRun> run_workload(const Sysroot& root, const HostFacts& self,
                                 const WorkloadRequest& request, const SuperviseHooks& hooks) {
  if (auto st = validate_request(self, request); !st) return fail(st.error());
  // A SIGTERM or ^C while the group is being made waits (blocked) until the next check below,
  // which cancels the run, so every path still goes through the release below.
  sigset_t stop_signals, old_mask;
  sigemptyset(&stop_signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT})
    sigaddset(&stop_signals, sig);
  ::pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);
  struct Unblock {
    sigset_t stop, mask;
    ~Unblock() {
      // A stop signal that came after the workload ended was meant for it: drop it rather than
      // let it kill hostfit before the verdict is printed and the report written.
      const timespec now{0, 0};
      while (::sigtimedwait(&stop, nullptr, &now) > 0) {
      }
      ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
    }
  } unblock{stop_signals, old_mask};
  const auto stop_pending = [&]() {
    sigset_t pending;
    ::sigpending(&pending);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
      if (sigismember(&pending, sig) == 1) return sig;
    }
    return 0;
  };
  const auto cancelled = [&](const std::string& what) {
    const int sig = stop_pending();
    const char* abbrev = ::sigabbrev_np(sig);
    return fail(ErrorKind::kResource,
                "stopped by SIG" + std::string(abbrev ? abbrev : "?") + " while setting up " +
                    what + "; the workload was not started and what was made for it is removed",
                EINTR);
  };
  auto driver = open_cgroup_driver(
      root, self.cgroup,
      {.parent = request.cgroup_parent, .controllers = needed_controllers(request)});
  if (!driver) return fail(driver.error());
  WorkloadRun run;
  run.mode = (*driver)->mode();
  auto swept = (*driver)->prepare();
  if (!swept) return fail(swept.error());
  run.swept = *swept;
  const std::filesystem::path ledger =
      request.ledger_path.empty() ? default_ledger_path() : request.ledger_path;
  // Placements a killed run made for the groups it left behind go with them; a `place` hold that
  // only shares a swept group's name stays.
  // A hold names its group in the first hierarchy of the run that made it, which need not be
  // this run's: every hierarchy's parent is tried (a driver over all of them reads no file).
  if (!swept->empty() && std::filesystem::exists(ledger)) {
    auto all = open_cgroup_driver(root, self.cgroup, {.parent = request.cgroup_parent});
    for (const CgroupDir& parent : all ? (*all)->parents() : (*driver)->parents()) {
      for (const auto& stale : *swept)
        (void)release_group_hold(ledger, stale, join_path(parent.dir, stale));
    }
  }

  const std::string name = request.name.empty() ? default_name(request.argv[0]) : request.name;
  if (stop_pending()) {
    (*driver)->release_parents();
    return cancelled("'" + name + "'");
  }
  auto group = (*driver)->create(name);
  if (!group) {
    (*driver)->release_parents();  // prepare() may have made a v1 cpuset parent just now
    return fail(group.error());
  }
  run.group = *group;
  // From here every path out removes the group, and then a v1 cpuset parent left idle; the other
  // parents stay for the next run.
  struct Release {
    CgroupDriver& driver;
    Cgroup group;  // a copy: `run` is moved into the result before this runs
    std::filesystem::path ledger;
    std::function<void(const std::string&)> release_placement;
    bool placed = false;
    ~Release() {
      (void)driver.remove(group);
      driver.release_parents();
      if (placed && release_placement) release_placement(group.name);
      if (placed && !release_placement)
        (void)release_group_hold(ledger, group.name, group.dirs.front().dir);
    }
  } release{**driver, run.group, ledger, request.release_placement};

  CgroupLimits& limits = run.limits;
  if (request.cpus) {
    limits.cpu_period_us = kPeriodUs;
    limits.cpu_quota_us = std::llround(*request.cpus * kPeriodUs);
  }
  limits.cpus = request.cpuset;
  if (request.placement) {
    PlacementRequest place_request;
    place_request.cpus = static_cast<int>(std::ceil(*request.cpus - 1e-9));
    place_request.policy = *request.placement;
    place_request.nodes = request.placement_nodes;
    place_request.allowed_mems = placeable_mems(self);
    ForeignPins foreign;
    if (!request.ignore_foreign) foreign = read_foreign_pins(root, self, ledger);
    for (const std::string& w : foreign.warnings)
      if (hooks.on_notice) hooks.on_notice("warning: " + w);
    // The daemon's ledger (when it runs) does not take other tools' pins into account yet.
    auto placed =
        request.hold_placement
            ? request.hold_placement(place_request, name)
            : place_and_hold(ledger, self, place_request, name, foreign, run.group.dirs.front().dir,
                             request.ledger_wait, [&] { return stop_pending() != 0; });
    release.placed = placed.has_value();
    if (stop_pending()) return cancelled("'" + name + "'");
    if (!placed) {
      return fail(explain_exclusive_pins(placed.error(), foreign, placeable_cpus(self))
                      .wrap("cannot place '" + name + "'"));
    }
    limits.cpus = placed->cpus;
    if (!placed->mems.empty()) limits.mems = placed->mems;
    run.sizing.placement = *placed;
  }
  limits.memory_max_bytes = request.memory_max_bytes;
  limits.memory_high_bytes = request.memory_high_bytes;
  limits.pids_max = request.pids_max;
  if (auto st = (*driver)->set_limits(run.group, limits); !st) {
    return fail(st.error().wrap("cannot limit cgroup '" + name + "'"));
  }
  auto prepared = prepare_command(self, run.group, limits, name, request.argv, request.env,
                                  request.shape, request.export_env);
  if (!prepared) return fail(prepared.error());
  run.sizing.plan = prepared->plan;
  if (hooks.on_notice) {
    for (const auto& n : prepared->notices)
      hooks.on_notice(n);
  }
  run.argv = prepared->argv;
  SpawnSpec spec;
  spec.argv = run.argv;
  spec.stop_timeout = request.stop_timeout;
  spec.env = std::move(prepared->env);
  // The last moment a stop signal cancels; from here on it is forwarded to the workload.
  if (stop_pending()) return cancelled("'" + name + "'");
  auto record = supervise(root, **driver, run.group, spec, hooks);
  if (!record) return fail(record.error());
  run.record = std::move(*record);
  run.record.memory_limit_bytes = limits.memory_max_bytes;
  run.stop_timeout_s = std::chrono::duration<double>(request.stop_timeout).count();
  return run;
}

std::string oom_event_line(const std::string& name, const OomEvent& e) {
  std::string line = "a process in '" + name + "' was killed by the OOM killer";
  if (e.pid > 0) {
    line += ": pid " + std::to_string(e.pid) + " (" + e.comm + ")";
  } else {
    line += " (its pid is unknown: the kernel log was not readable)";
  }
  return line + "; the run goes on";
}

std::string verdict_line(const WorkloadRun& run) {
  const RunRecord& r = run.record;
  const std::string who = "'" + run.group.name + "'";
  const std::string after = format_seconds(r.duration_s());
  const std::string peak = r.memory_peak_bytes ? "peak " + format_bytes(*r.memory_peak_bytes) : "";
  switch (r.state) {
    case RunState::kFailed:
      return r.failure + (r.failure_errno == ENOENT ? " (check the command and PATH)" : "");
    case RunState::kExited:
      return who + " exited with code " + std::to_string(r.exit_code) + " after " + after +
             (peak.empty() ? "" : " (" + peak + ")");
    case RunState::kKilled:
      break;
    default:
      return who + " is " + to_string(r.state);
  }
  if (r.reason == KillReason::kOom) {
    if (r.memory_limit_bytes) {
      return who + " was killed by the kernel OOM killer after " + after + ": memory limit " +
             format_bytes(*r.memory_limit_bytes) + " reached" +
             (peak.empty() ? "" : " (" + peak + ")") +
             "; raise --memory or reduce the workload's memory";
    }
    return who + " was killed by the kernel OOM killer after " + after +
           (peak.empty() ? "" : " (" + peak + ")") +
           ": hostfit set no memory limit, so a parent cgroup's limit or the host ran out; set "
           "--memory or free memory on the host";
  }
  const std::string sig = std::string(::sigabbrev_np(r.signal) ? ::sigabbrev_np(r.signal) : "?");
  if (r.reason == KillReason::kTimeout) {
    return who + " did not stop within " + format_seconds(run.stop_timeout_s) +
           " of the forwarded signal and was killed (SIGKILL) after " + after +
           "; raise --stop-timeout or make it exit on SIGTERM";
  }
  if (r.forwarded_signal != 0 && r.forwarded_signal == r.signal) {
    return who + " stopped on SIG" + sig + ", forwarded to it by hostfit, after " + after;
  }
  if (r.oom_victim_unknown) {
    return who + " was killed by signal " + std::to_string(r.signal) + " (SIG" + sig + ") after " +
           after + "; the OOM killer killed a process in the group (oom_in_group: true), but " +
           "whether it was this one is unknown (victim: unknown; " + r.oom_evidence + ")";
  }
  // The counter may have risen for other processes' kills, each reported as it happened.
  const std::string oom_note = r.oom_kills == 0
                                   ? "oom_kill counter unchanged"
                                   : "it killed " + std::to_string(r.oom_kills) + " other process" +
                                         (r.oom_kills == 1 ? "" : "es") + " of the workload";
  return who + " was killed by signal " + std::to_string(r.signal) + " (SIG" + sig + ") after " +
         after + "; not by the OOM killer (" + oom_note + ")";
}

nlohmann::json to_json(const WorkloadRun& run) {
  const RunRecord& r = run.record;
  const CgroupLimits& l = run.limits;
  const auto opt = [](const auto& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json cgroup = nlohmann::json::object();
  for (const auto& d : run.group.dirs)
    cgroup[d.hierarchy] = d.cgroup;
  nlohmann::json events = nlohmann::json::array();
  for (const auto& e : r.events) {
    events.push_back(
        {{"pid", e.pid > 0 ? nlohmann::json(e.pid) : nlohmann::json(nullptr)}, {"comm", e.comm}});
  }
  return {
      {"name", run.group.name},
      {"command", run.argv},
      {"pid", r.pid},
      {"state", to_string(r.state)},
      {"verdict", r.state_text()},
      {"reason", r.reason == KillReason::kNone ? nlohmann::json(nullptr)
                                               : nlohmann::json(to_string(r.reason))},
      {"failure", r.failure.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.failure)},
      {"exit_code",
       r.state == RunState::kExited ? nlohmann::json(r.exit_code) : nlohmann::json(nullptr)},
      {"signal", r.signal ? nlohmann::json(r.signal) : nlohmann::json(nullptr)},
      {"forwarded_signal",
       r.forwarded_signal ? nlohmann::json(r.forwarded_signal) : nlohmann::json(nullptr)},
      {"shell_exit_code", r.shell_exit_code()},
      {"started_at", format_utc(r.started_at)},
      {"ended_at", format_utc(r.ended_at)},
      {"duration_s", r.duration_s()},
      {"limits",
       {{"cpus", l.cpu_quota_us ? nlohmann::json(static_cast<double>(*l.cpu_quota_us) /
                                                 static_cast<double>(l.cpu_period_us))
                                : nlohmann::json(nullptr)},
        {"cpu_quota_us", opt(l.cpu_quota_us)},
        {"cpu_period_us",
         l.cpu_quota_us ? nlohmann::json(l.cpu_period_us) : nlohmann::json(nullptr)},
        {"cpuset", l.cpus ? nlohmann::json(l.cpus->to_list()) : nlohmann::json(nullptr)},
        {"memory_max_bytes", opt(l.memory_max_bytes)},
        {"memory_high_bytes", opt(l.memory_high_bytes)},
        {"pids_max", opt(l.pids_max)}}},
      {"plan", to_json(run.sizing.plan)},
      {"placement",
       run.sizing.placement ? to_json(*run.sizing.placement) : nlohmann::json(nullptr)},
      {"cgroup_mode", to_string(run.mode)},
      {"cgroup", cgroup},
      {"memory", {{"peak_bytes", opt(r.memory_peak_bytes)}}},
      {"oom_kills", r.oom_kills},
      {"oom_evidence",
       r.oom_evidence.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.oom_evidence)},
      {"oom_events", events},
      {"oom_in_group", r.oom_kills > 0},
      {"oom_victim", r.reason == KillReason::kOom ? nlohmann::json("main")
                     : r.oom_victim_unknown       ? nlohmann::json("unknown")
                                                  : nlohmann::json(nullptr)},
      {"cpu_usage_us", opt(r.cpu_usage_us)},
      {"latency_us",
       {{"wakeup_to_verdict", opt(r.wakeup_to_verdict_us)},
        {"kernel_log_to_verdict", opt(r.kernel_to_verdict_us)}}},
      {"swept", run.swept},
  };
}

}  // namespace hostfit
