// The flags that say what a workload may use, shared by `hostfit run` (the foreground) and
// `hostfit create` (the daemon), checked by one function so both reject the same input alike.
#include "cli.h"
#include "hostfit/place.h"

namespace hostfit::cli {
namespace {

// The sandbox side of the plan: --runtime or --profile, and --plugins instances per worker, so
// that {workers} and {instances} carry the instance budget and not only the CPUs.
Result<WorkloadShape> to_shape(const WorkloadFlags& o) {
  auto runtime = runtime_from_flags(o.profile, o.runtime);
  if (!runtime) return fail(runtime.error());
  uint64_t plugins = 0;
  if (!o.plugins.empty()) {
    auto n = parse_count(o.plugins, "--plugins", 1, 1000000);
    if (!n) return fail(n.error());
    plugins = *n;
  }
  auto shape = sandbox_shape(*runtime, plugins);
  if (!shape) {
    return fail(ErrorKind::kUsage, "--plugins " + o.plugins +
                                       " needs --runtime v8|envoy-v8|wasmtime|wasmer|wamr or "
                                       "--profile FILE: the per-instance costs to budget with");
  }
  return shape;
}

}  // namespace

Result<std::optional<uint64_t>> size_flag(const std::string& flag, const std::string& text) {
  if (text.empty()) return std::optional<uint64_t>{};
  auto v = parse_bytes(text);
  if (!v) return fail(ErrorKind::kUsage, "bad " + flag + " '" + text + "': " + v.error().message);
  return std::optional<uint64_t>(*v);
}

Result<WorkloadRequest> request_from_flags(const WorkloadFlags& o) {
  WorkloadRequest r;
  r.argv = o.command;
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
    r.ignore_foreign = o.ignore_foreign;
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

void add_workload_flags(CLI::App& cmd, WorkloadFlags& o, WorkloadFlagSet set) {
  cmd.add_option("--cpus", o.cpus, "CPU quota in CPUs, e.g. 0.5 or 2 (quota over 100 ms)")
      ->type_name("N");
  cmd.add_option("--cpuset", o.cpuset, "CPUs the workload may run on, e.g. 0-3,8")
      ->type_name("LIST");
  cmd.add_option("--placement", o.placement,
                 "Let hostfit place ceil(--cpus) CPUs: balanced, compact, spread or nodes:LIST "
                 "(recorded in the placement ledger, released at exit)")
      ->type_name("POLICY");
  cmd.add_option("--memory", o.memory, "Memory limit, e.g. 64Mi or 1.5G (also caps swap)")
      ->type_name("SIZE");
  if (set == WorkloadFlagSet::kForeground) {
    cmd.add_flag("--ignore-foreign", o.ignore_foreign,
                 "With --placement: also use CPUs that other tools pinned (docker --cpuset-cpus, "
                 "systemd AllowedCPUs=, taskset); by default only free CPUs are placed");
  }
  cmd.add_option("--memory-high", o.memory_high,
                 "Memory throttle point (memory.high, cgroup v2 only)")
      ->type_name("SIZE");
  cmd.add_option("--pids", o.pids, "Most processes and threads the workload may have")
      ->type_name("N");
  cmd.add_option("--stop-timeout", o.stop_timeout,
                 "Seconds between SIGTERM (a forwarded signal, or a stop) and SIGKILL (default "
                 "10)")
      ->type_name("SECONDS");
  cmd.add_option("--cache-limit", o.cache_limit,
                 "Keep the workload's reclaimable page cache under SIZE with the kernel's help "
                 "(v2 memory.high held at its other memory + SIZE; v1 a usage threshold that "
                 "wakes hostfit to reclaim at once); never OOM-kills, tmpfs is never counted or "
                 "reclaimed")
      ->type_name("SIZE");
  auto* runtime =
      cmd.add_option("--runtime", o.runtime,
                     "Sandbox runtime whose per-instance costs size {workers} (as hostfit plan)");
  cmd.add_option("--plugins", o.plugins,
                 "Sandbox instances per worker (e.g. Wasm plugins): workers shrink to fit")
      ->type_name("N");
  // The daemon sizes each start itself, from a runtime name; a profile file stays on this host.
  if (set == WorkloadFlagSet::kDaemon) return;
  cmd.add_option("--profile", o.profile,
                 "Per-instance costs from 'hostfit calibrate -o json' (instead of --runtime)")
      ->type_name("FILE")
      ->excludes(runtime);
}

}  // namespace hostfit::cli
