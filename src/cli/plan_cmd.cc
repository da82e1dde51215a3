// hostfit plan: the worker count and sandbox-instance budget for where the workload really runs.
#include <unistd.h>

#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "hostfit/plan.h"

namespace hostfit::cli {
namespace {

constexpr uint64_t kMaxInstancesPerWorker = 1000000;
constexpr uint64_t kMaxWorkers = 65536;

struct PlanOptions {
  std::string sysroot = "/";
  pid_t pid = 0;
  std::string cgroup;
  std::string instances_per_worker;
  std::string runtime;
  std::string profile;
  std::string reserve, resident, maps, cap;
  std::string round = "floor";
  std::string min_workers, max_workers;
  std::string headroom;
  std::string map_headroom;
  Format format = Format::kTable;
};

// A CLI11 validator from one of the plan module's parsers: the parser's message is the error.
template <class T>
CLI::Validator checked(std::function<Result<T>(std::string_view)> parse, std::string name) {
  return CLI::Validator(
      [parse](std::string& value) -> std::string {
        auto parsed = parse(value);
        return parsed ? std::string() : parsed.error().message;
      },
      "", std::move(name));
}

// CLI11 already prefixes the message with the option's name, so the parser leaves it out.
std::function<Result<uint64_t>(std::string_view)> count_parser(uint64_t min, uint64_t max) {
  return [min, max](std::string_view text) { return parse_count(text, "", min, max); };
}

// The shape from the flags. CLI11 validated each value already; parsing again keeps one source
// of truth for what each flag accepts.
Result<WorkloadShape> shape_from(const PlanOptions& o) {
  WorkloadShape shape;
  const auto count = [](const std::string& text, std::string_view flag, uint64_t min,
                        uint64_t max) { return parse_count(text, flag, min, max); };
  auto runtime = runtime_from_flags(o.profile, o.runtime);
  if (!runtime) return fail(runtime.error());
  shape.runtime = *runtime;
  const auto size = [](const std::string& text) -> Result<std::optional<uint64_t>> {
    if (text.empty()) return std::optional<uint64_t>();
    auto v = parse_bytes(text);
    if (!v) return fail(v.error());
    return std::optional<uint64_t>(*v);
  };
  auto reserve = size(o.reserve);
  if (!reserve) return fail(reserve.error());
  shape.instance_reserve_bytes = *reserve;
  auto resident = size(o.resident);
  if (!resident) return fail(resident.error());
  shape.instance_resident_bytes = *resident;
  if (!o.maps.empty()) {
    auto maps = count(o.maps, "--instance-maps", 0, 1 << 20);
    if (!maps) return fail(maps.error());
    shape.instance_maps = *maps;
  }
  if (!o.cap.empty()) {
    auto cap = count(o.cap, "--instance-cap", 1, UINT32_MAX);
    if (!cap) return fail(cap.error());
    shape.instance_cap = *cap;
  }
  if (!o.instances_per_worker.empty()) {
    auto n = count(o.instances_per_worker, "--instances-per-worker", 1, kMaxInstancesPerWorker);
    if (!n) return fail(n.error());
    shape.instances_per_worker = *n;
  } else if (shape.runtime.name != "none" || shape.instance_reserve_bytes ||
             shape.instance_resident_bytes || shape.instance_maps || shape.instance_cap) {
    // A sandbox runtime or an instance cost without a count: one instance per worker.
    shape.instances_per_worker = 1;
  }
  auto round = parse_rounding(o.round);
  if (!round) return fail(round.error());
  shape.rounding = *round;
  if (!o.min_workers.empty()) {
    auto n = count(o.min_workers, "--min-workers", 1, kMaxWorkers);
    if (!n) return fail(n.error());
    shape.min_workers = *n;
  }
  if (!o.max_workers.empty()) {
    auto n = count(o.max_workers, "--max-workers", 1, kMaxWorkers);
    if (!n) return fail(n.error());
    shape.max_workers = *n;
  }
  if (!o.headroom.empty()) {
    auto h = parse_headroom(o.headroom);
    if (!h) return fail(h.error());
    shape.memory_headroom = *h;
  }
  if (!o.map_headroom.empty()) {
    auto n = count(o.map_headroom, "--map-headroom", 0, UINT32_MAX);
    if (!n) return fail(n.error());
    shape.map_headroom = *n;
  }
  return shape;
}

std::string budget_value(const Budget& b) {
  switch (b.state) {
    case Budget::State::kKnown:
      return std::to_string(b.instances);
    case Budget::State::kUnknown:
      return "unknown";
    case Budget::State::kNotApplicable:
      return "-";
  }
  return "-";
}

void print_table(const Plan& plan) {
  Table t(false);
  t.add({"workers", std::to_string(plan.workers), plan.binding});
  std::string per = std::to_string(plan.instances_per_worker) + " per worker";
  if (plan.runtime != "none") per += ", runtime " + plan.runtime;
  t.add({"instances", std::to_string(plan.instances), per});
  if (plan.runtime != "none") t.add({"runtime", plan.runtime, plan.runtime_source});
  if (plan.instance_budget) {
    const Budget* binding = nullptr;
    for (const auto& b : plan.budgets) {
      if (b.state == Budget::State::kKnown && (!binding || b.instances < binding->instances)) {
        binding = &b;
      }
    }
    t.add({"instance budget", std::to_string(*plan.instance_budget),
           std::string("set by ") + to_string(binding->constraint)});
  } else {
    t.add({"instance budget", "none", "no instance budget applies"});
  }
  t.add({"budgets"});
  t.add({"  cpu", std::to_string(plan.cpu_workers) + " workers", plan.cpu_explanation});
  for (const auto& b : plan.budgets) {
    t.add({std::string("  ") + to_string(b.constraint), budget_value(b), b.explanation});
  }
  t.print(std::cout);
  for (const auto& w : plan.warnings)
    std::cout << "warning: " << w << "\n";
}

}  // namespace

void add_plan_command(CLI::App& app, Commands& commands) {
  auto o = std::make_shared<PlanOptions>();
  CLI::App* cmd = app.add_subcommand(
      "plan",
      "Size a workload to where it really runs: workers from the effective CPUs (affinity, "
      "cpuset, CPU quota over the whole cgroup chain), and a sandbox-instance budget from "
      "memory, address space, vm.max_map_count and the runtime's per-VM cost. Workers are "
      "lowered until workers x instances per worker fits the budget.");
  add_sysroot_option(*cmd, o->sysroot);
  auto* pid = add_pid_option(*cmd, o->pid, "Plan for the process PID's view");
  cmd->add_option("--cgroup", o->cgroup,
                  "Plan for a cgroup by its path inside the hierarchy (e.g. /kubepods/pod1)")
      ->excludes(pid);
  const std::string ipw_range = "1-" + std::to_string(kMaxInstancesPerWorker);
  cmd->add_option("--instances-per-worker,--plugins", o->instances_per_worker,
                  "Sandbox instances each worker holds, e.g. one Wasm VM per plugin (default: 1 "
                  "with a runtime or an instance cost, else 0: a plain worker plan)")
      ->type_name("N")
      ->check(checked<uint64_t>(count_parser(1, kMaxInstancesPerWorker), "count"));
  std::string runtimes;
  for (const auto& p : runtime_profiles())
    runtimes += (runtimes.empty() ? "" : "|") + p.name;
  cmd->add_option(
         "--runtime", o->runtime,
         "Sandbox runtime profile for the per-instance costs (docs/runtimes.md): " + runtimes)
      ->type_name(runtimes)
      ->check(checked<RuntimeProfile>(find_runtime, "runtime"));
  cmd->add_option("--profile", o->profile,
                  "Per-instance costs measured here: the JSON of 'hostfit calibrate -o json' "
                  "(instead of --runtime)")
      ->type_name("FILE")
      ->excludes("--runtime");
  cmd->add_option("--instance-reserve", o->reserve,
                  "Address space each instance reserves, guards included (overrides the runtime)")
      ->type_name("SIZE")
      ->check(size_validator());
  cmd->add_option("--instance-resident", o->resident,
                  "Memory each instance really uses (overrides the runtime's estimate)")
      ->type_name("SIZE")
      ->check(size_validator());
  cmd->add_option("--instance-maps", o->maps,
                  "Memory mappings each instance creates (overrides the runtime's estimate)")
      ->type_name("N")
      ->check(checked<uint64_t>(count_parser(0, 1 << 20), "count"));
  cmd->add_option("--instance-cap", o->cap,
                  "Instances one process can hold (overrides the runtime's cap)")
      ->type_name("N")
      ->check(checked<uint64_t>(count_parser(1, UINT32_MAX), "count"));
  cmd->add_option("--round", o->round,
                  "How fractional CPUs become workers: floor (default) or ceil; below 1 CPU "
                  "gives 1 either way")
      ->type_name("floor|ceil")
      ->check(checked<Rounding>(parse_rounding, "rounding"));
  cmd->add_option("--min-workers", o->min_workers, "At least this many workers (default 1)")
      ->type_name("N")
      ->check(checked<uint64_t>(count_parser(1, kMaxWorkers), "count"));
  cmd->add_option("--max-workers", o->max_workers, "At most this many workers")
      ->type_name("N")
      ->check(checked<uint64_t>(count_parser(1, kMaxWorkers), "count"));
  cmd->add_option("--headroom", o->headroom,
                  "Memory left out of the instance budget: a share (default 10%) or a size")
      ->type_name("SIZE|PERCENT")
      ->check(checked<Headroom>(parse_headroom, "headroom"));
  cmd->add_option("--map-headroom", o->map_headroom,
                  "Memory mappings left for the process itself (default " +
                      std::to_string(kDefaultMapHeadroom) + ")")
      ->type_name("N")
      ->check(checked<uint64_t>(count_parser(0, UINT32_MAX), "count"));
  add_format_option(*cmd, o->format, {Format::kTable, Format::kJson, Format::kEnv});
  cmd->footer(
      "Rules: workers = effective CPUs rounded (--round), clamped by --min/--max-workers.\n"
      "Instance budget = the least of: memory (cgroup limit over the chain or MemAvailable,\n"
      "minus --headroom) / resident size; address space (RLIMIT_AS, user half of the virtual\n"
      "address bits) / reservation; mappings (vm.max_map_count - current maps - --map-headroom)\n"
      "/ maps per instance; the runtime's cap. Unknown facts leave that budget out, with a\n"
      "warning. If not even one worker fits, exit 1 naming the constraint and the shortfall.\n"
      "Examples:\n"
      "  hostfit plan                                   a worker count for this process\n"
      "  hostfit plan --plugins 8 --runtime v8          8 V8 VMs per worker\n"
      "  hostfit calibrate -o json > v8.json && hostfit plan --plugins 8 --profile v8.json\n"
      "  hostfit plan --plugins 4 --instance-resident 64Mi --headroom 128Mi -o json\n"
      "  eval \"$(hostfit plan -o env)\"                  GOMAXPROCS, UV_THREADPOOL_SIZE, ...");

  commands.push_back({cmd, [o]() {
                        if (o->sysroot.empty()) return usage_error("--sysroot needs a directory");
                        auto shape = shape_from(*o);
                        if (!shape) return report(shape.error());
                        const Sysroot root(o->sysroot);
                        ProbeTarget target = ProbeTarget::self();
                        if (o->pid > 0) target = ProbeTarget::process(o->pid);
                        if (!o->cgroup.empty()) {
                          auto path = normalize_cgroup_path(o->cgroup);
                          if (!path) return report(path.error());
                          target = ProbeTarget::cgroup(*path);
                        }
                        const HostFacts facts = probe_host(root, target);
                        if (facts.nothing_known()) {
                          std::string why = root.is_dir("/")
                                                ? "nothing under " + o->sysroot + " could be read"
                                                : "sysroot " + o->sysroot + " does not exist";
                          return report(Error{ErrorKind::kNotFound, "cannot plan: " + why, 0});
                        }
                        // A plan for a cgroup that is not there would silently be the host's.
                        if (auto st = check_target(root, facts); !st) {
                          return report(st.error());
                        }
                        auto plan = make_plan(facts, *shape);
                        if (!plan) return report(plan.error());
                        switch (o->format) {
                          case Format::kJson:
                            print_json(std::cout, to_json(*plan));
                            break;
                          case Format::kEnv:
                            std::cout << render_env(plan_environment(*plan));
                            for (const auto& w : plan->warnings)
                              std::cerr << "hostfit: warning: " << w << "\n";
                            break;
                          case Format::kTable:
                            print_table(*plan);
                            break;
                        }
                        return kExitOk;
                      }});
}

}  // namespace hostfit::cli
