// hostfit plan: how many workers and sandbox instances a workload should start where it really
// runs, and why.
//
//   hostfit::HostFacts facts = hostfit::probe_host(root, hostfit::ProbeTarget::self());
//   hostfit::WorkloadShape shape;
//   shape.instances_per_worker = 8;                  // e.g. 8 Wasm plugins, one VM each per worker
//   shape.runtime = *hostfit::find_runtime("v8");
//   hostfit::Result<hostfit::Plan> plan = hostfit::make_plan(facts, shape);
//   plan->workers, plan->instances                   // e.g. 4 and 32
//   plan->binding                                    // "limited by cpu.max of /l0: 4.0 CPUs"
//
// make_plan is a pure function of its inputs: no I/O, no clock, safe to call from any thread.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hostfit/core.h"
#include "hostfit/probe.h"

namespace hostfit {

// ---------------------------------------------------------------------------------------------
// Sandbox runtime profiles (numbers and their sources: docs/runtimes.md)

// What one sandbox instance (one Wasm VM with one 32-bit linear memory) costs a process.
struct RuntimeProfile {
  std::string name;             // "v8", "envoy-v8", "wasmtime", "wasmer", "wamr", "none"
  std::string label;            // for people: "V8", "Wasmtime"
  uint64_t reserve_bytes = 0;   // address space reserved per instance, guards included
  uint64_t resident_bytes = 0;  // memory one instance really uses
  uint64_t maps = 0;            // memory mappings one instance creates
  uint64_t base_maps = 0;       // maps of a process of this runtime with no instance (0: unknown)
  std::optional<uint64_t> instance_cap;  // instances one process can hold, where measured
  bool measured = false;   // true: from `hostfit calibrate`; false: from documentation
  std::string version;     // the runtime measured ("10.2.154.26-node.37"), "" if not
  std::string source;      // where the costs come from (one line: command or documents)
  std::string cap_source;  // where instance_cap comes from
};

// All known profiles, "none" last. The vector lives as long as the program.
const std::vector<RuntimeProfile>& runtime_profiles();
// The profile named `name`; a kUsage error naming the value and the accepted names otherwise.
Result<RuntimeProfile> find_runtime(std::string_view name);
// A profile written by `hostfit calibrate -o json` (its "profile" object, or the whole document
// when it is a bare profile). `where` names the file in errors (kUsage: what is missing or wrong).
Result<RuntimeProfile> profile_from_json(const nlohmann::json& json, std::string_view where);
nlohmann::json to_json(const RuntimeProfile& profile);

// ---------------------------------------------------------------------------------------------
// The workload's shape

enum class Rounding { kFloor, kCeil };
const char* to_string(Rounding rounding);  // "floor" | "ceil"
// "floor" or "ceil"; a kUsage error naming the value otherwise.
Result<Rounding> parse_rounding(std::string_view text);

// Memory held back from the instance budget: a share of the capacity ("10%") or a size ("256Mi").
struct Headroom {
  std::optional<double> percent;  // 0..100 when given as a share
  uint64_t bytes = 0;             // when given as a size
  // The bytes held back out of `capacity_bytes` (never more than the capacity).
  uint64_t of(uint64_t capacity_bytes) const;
  std::string to_string() const;  // "10%" or "256 MiB"
};
// "10%", "2.5%", "256Mi", "1G", "0"; a kUsage error naming the value and the accepted forms.
Result<Headroom> parse_headroom(std::string_view text);

// A whole number in [min, max] given for `flag` (may be empty); a kUsage error naming flag, value
// and range otherwise.
Result<uint64_t> parse_count(std::string_view text, std::string_view flag, uint64_t min,
                             uint64_t max);

inline constexpr uint64_t kDefaultMapHeadroom = 1000;  // maps left for the process's own use
inline constexpr double kDefaultHeadroomPercent = 10;  // share of memory left out of the budget
inline constexpr double kMaxHeadroomPercent = 99.9;    // the most --headroom may hold back

struct WorkloadShape {
  // Sandbox instances each worker holds (one per plugin per worker). 0: a plain worker plan.
  uint64_t instances_per_worker = 0;
  RuntimeProfile runtime;  // defaults for the per-instance costs; name empty or "none": no runtime
  // Explicit per-instance costs; each replaces the runtime's default when set.
  std::optional<uint64_t> instance_reserve_bytes;
  std::optional<uint64_t> instance_resident_bytes;
  std::optional<uint64_t> instance_maps;
  std::optional<uint64_t> instance_cap;
  Rounding rounding = Rounding::kFloor;
  uint64_t min_workers = 1;  // at least 1
  std::optional<uint64_t> max_workers;
  Headroom memory_headroom{kDefaultHeadroomPercent, 0};
  uint64_t map_headroom = kDefaultMapHeadroom;
};

// `plugins` sandbox instances per worker of `runtime` (0: one per worker when `runtime` is a
// sandbox; a plain worker plan for "none"), as `hostfit run --runtime R --plugins N` and the
// daemon's "runtime"/"plugins" size {workers} and {instances}. kUsage: plugins without a sandbox.
Result<WorkloadShape> sandbox_shape(const RuntimeProfile& runtime, uint64_t plugins);

// ---------------------------------------------------------------------------------------------
// The plan

// What can decide a plan's worker count.
enum class Constraint {
  kCpu,           // effective CPUs (affinity, cpuset, quota over the chain)
  kMinWorkers,    // --min-workers raised the CPU count
  kMaxWorkers,    // --max-workers lowered it
  kMemory,        // cgroup memory limit or MemAvailable, minus headroom, / resident size
  kAddressSpace,  // RLIMIT_AS and the user half of the virtual address space / reservation
  kMappings,      // vm.max_map_count - current maps - headroom / maps per instance
  kRuntimeCap,    // the runtime's per-process instance cap
};
// "cpu", "min_workers", "max_workers", "memory", "address_space", "mappings", "runtime_cap".
const char* to_string(Constraint constraint);

// How many sandbox instances one resource allows, and why:
//   instances = (capacity - used - headroom) / per_instance
struct Budget {
  enum class State {
    kKnown,          // instances is the budget
    kUnknown,        // a fact it needs is unknown: it does not bind (a warning says so)
    kNotApplicable,  // the workload costs nothing of this resource (e.g. no runtime)
  };
  Constraint constraint = Constraint::kMemory;
  State state = State::kNotApplicable;
  uint64_t instances = 0;
  std::string unit;  // "bytes", "maps" or "instances"
  uint64_t capacity = 0;
  uint64_t used = 0;
  uint64_t headroom = 0;
  uint64_t per_instance = 0;
  std::string source;  // "RLIMIT_AS of /proc/self/limits", "memory.max of /l0", ...
  // "RLIMIT_AS of /proc/self/limits: 64 GiB / 8 GiB per instance = 8 instances", or why unknown.
  std::string explanation;
};
const char* to_string(Budget::State state);  // "known" | "unknown" | "not_applicable"

struct Plan {
  uint64_t workers = 1;
  uint64_t instances_per_worker = 0;
  uint64_t instances = 0;       // workers * instances_per_worker
  double cpus = 0;              // effective CPUs of the target (a fraction)
  uint64_t cpu_workers = 1;     // workers from the CPUs alone: rounded, clamped by min/max
  std::string cpu_explanation;  // "limited by cpu.max of /l0: 4.0 CPUs, floor -> 4 workers"
  Rounding rounding = Rounding::kFloor;
  std::optional<uint64_t> instance_budget;  // min over known budgets; nullopt when none is known
  Constraint binding_kind = Constraint::kCpu;
  std::string binding;          // the binding constraint in words
  std::vector<Budget> budgets;  // memory, address_space, mappings, runtime_cap (in that order)
  // The per-instance costs the budgets used (runtime defaults or explicit values).
  std::string runtime;  // profile name, "none" without one
  uint64_t reserve_bytes = 0;
  uint64_t resident_bytes = 0;
  uint64_t maps_per_instance = 0;
  std::optional<uint64_t> instance_cap;
  std::string runtime_label;   // "V8"
  std::string runtime_source;  // the profile's provenance: measured (command, version) or documents
  // Where the workload will run, for placeholders: usable CPUs, memory nodes, memory limit.
  CpuSet cpuset;
  std::optional<CpuSet> mems;  // nullopt when the target's cpuset.mems is unknown
  Limit memory_limit;          // the cgroup memory limit over the chain (unlimited when none)
  std::vector<std::string> warnings;

  const Budget* budget(Constraint constraint) const;  // nullptr for kCpu and the worker clamps
};

// The plan for `shape` on the machine described by `facts`. Workers = effective CPUs rounded and
// clamped by min/max; if workers x instances per worker exceeds the instance budget, workers are
// lowered to what fits (with a warning). Errors: kUsage for an inconsistent shape (min > max,
// instances without any per-instance cost), kResource when not even --min-workers workers fit,
// naming the constraint and the shortfall. Pure: no I/O.
Result<Plan> make_plan(const HostFacts& facts, const WorkloadShape& shape);

// Whether make_plan reads `facts.memory` for `shape`: only a per-instance memory, reservation or
// map count (a sandbox runtime's, or given) has a budget to check against them. Without one the
// probe may skip them (ProbeParts::memory).
bool needs_memory_facts(const WorkloadShape& shape);

// The machine-readable plan (keys in docs/plan.md): workers, instances, binding, budgets, ...
nlohmann::json to_json(const Plan& plan);

// The environment a worker process should see, in order: HOSTFIT_WORKERS, HOSTFIT_CPUS,
// HOSTFIT_INSTANCES, GOMAXPROCS, UV_THREADPOOL_SIZE, TOKIO_WORKER_THREADS, RAYON_NUM_THREADS,
// OMP_NUM_THREADS. Values are decimal numbers.
std::vector<std::pair<std::string, std::string>> plan_environment(const Plan& plan);
// One "KEY=value" line per entry, value single-quoted when it holds anything but [A-Za-z0-9._-],
// so the text is safe for sh's eval.
std::string render_env(const std::vector<std::pair<std::string, std::string>>& env);

// ---------------------------------------------------------------------------------------------
// Argument placeholders

// Values for {workers}, {cpus}, {instances}, {cpuset}, {mems}, {memory_limit}. An empty string
// means "no value here"; using that placeholder is then an error that says so. `hostfit run`
// fills cpuset and mems from its placement.
struct PlaceholderValues {
  std::string workers;
  std::string cpus;  // effective CPUs, "4" or "2.5"
  std::string instances;
  std::string cpuset;        // CPU list, "0-3,8"
  std::string mems;          // memory-node list, "0-1"
  std::string memory_limit;  // bytes, or "max" when unlimited
};
// The values a plan gives (cpuset and mems from the target's own cgroup).
PlaceholderValues placeholder_values(const Plan& plan);

// Replaces each {name} inside each argument by its value; "{{" is a literal "{" and "}}" a literal
// "}". No shell and no re-splitting: one argument in, one argument out. Errors (kUsage) name the
// argument and the unknown, empty or unterminated placeholder.
Result<std::vector<std::string>> substitute_placeholders(const std::vector<std::string>& argv,
                                                         const PlaceholderValues& values);

}  // namespace hostfit
