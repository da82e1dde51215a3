// make_plan: workers from effective CPUs, an instance budget from memory, address space, mappings
// and the runtime's cap, and the worker count that satisfies both. Pure: reads only its inputs.
#include "hostfit/plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <tuple>

namespace hostfit {
namespace {

// Fractions within this of a whole number count as that number (4.0000001 CPUs is 4).
constexpr double kCpuEpsilon = 1e-6;

std::string format_cpus(double cpus) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", cpus);
  std::string s = buf;
  if (s.ends_with('0')) s.pop_back();  // "4.0", "2.5", "0.25"
  return s;
}

std::string count(uint64_t n, std::string_view singular, std::string_view plural) {
  return std::to_string(n) + " " + std::string(n == 1 ? singular : plural);
}

std::string instances_text(uint64_t n) {
  return count(n, "instance", "instances");
}

// The last component of a target path: "/sys/fs/cgroup/l0/memory.max" -> "memory.max".
std::string file_name(std::string_view path) {
  const auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

// "/proc/self/limits Max address space" -> "/proc/self/limits".
std::string first_word(std::string_view s) {
  return std::string(s.substr(0, s.find(' ')));
}

std::string amount(uint64_t value, std::string_view unit) {
  if (unit == "bytes") return format_bytes(value);
  if (unit == "maps") return count(value, "map", "maps");
  return instances_text(value);
}

// Finishes a budget whose capacity, used, headroom and per_instance are set.
void settle(Budget& b, std::string_view headroom_note = {}) {
  const uint64_t taken = b.used + b.headroom;
  const uint64_t left = b.capacity > taken ? b.capacity - taken : 0;
  b.state = Budget::State::kKnown;
  b.instances = b.per_instance ? left / b.per_instance : 0;
  std::string text = b.source + ": " + amount(b.capacity, b.unit);
  if (b.used) text += " - " + amount(b.used, b.unit) + " in use";
  if (b.headroom)
    text += " - " + amount(b.headroom, b.unit) + " headroom" + std::string(headroom_note);
  if (taken) text += " = " + amount(left, b.unit);
  text += " / " + amount(b.per_instance, b.unit) + " per instance = " + instances_text(b.instances);
  b.explanation = std::move(text);
}

Budget unknown(Budget b, std::string why, std::vector<std::string>& warnings) {
  b.state = Budget::State::kUnknown;
  b.explanation = "unknown: " + why;
  warnings.push_back(std::string("the ") + to_string(b.constraint) +
                     " budget is unknown and was not applied: " + why);
  return b;
}

Budget not_applicable(Constraint c, std::string unit, std::string why) {
  Budget b;
  b.constraint = c;
  b.unit = std::move(unit);
  b.state = Budget::State::kNotApplicable;
  b.explanation = std::move(why);
  return b;
}

Budget memory_budget(const HostFacts& f, const WorkloadShape& shape, uint64_t resident,
                     std::vector<std::string>& warnings) {
  if (resident == 0) {
    return not_applicable(Constraint::kMemory, "bytes", "no resident size per instance given");
  }
  Budget b;
  b.constraint = Constraint::kMemory;
  b.unit = "bytes";
  b.per_instance = resident;
  std::optional<uint64_t> capacity;
  const auto offer = [&](uint64_t value, std::string source) {
    if (!capacity || value < *capacity) {
      capacity = value;
      b.source = std::move(source);
    }
  };
  const CgroupFacts& cg = f.cgroup;
  if (cg.memory_limit.known() && !cg.memory_limit->is_unlimited()) {
    offer(*cg.memory_limit->value,
          file_name(cg.memory_limit.source) + " of " +
              (cg.memory_limit_cgroup.empty() ? cg.memory_limit.source : cg.memory_limit_cgroup));
  }
  if (cg.memory_high.known() && !cg.memory_high->is_unlimited()) {
    offer(*cg.memory_high->value, "memory.high over the chain of " + cg.memory_high.source);
  }
  if (f.memory.available.known()) {
    offer(*f.memory.available, "MemAvailable of " + first_word(f.memory.available.source));
  }
  if (!capacity) {
    std::string why = !f.memory.available.known()
                          ? "MemAvailable: " + f.memory.available.unknown_reason
                          : "no memory figure could be read";
    if (!cg.memory_limit.known()) why += "; cgroup memory limit: " + cg.memory_limit.unknown_reason;
    return unknown(std::move(b), std::move(why), warnings);
  }
  if (!cg.memory_limit.known()) {
    warnings.push_back("the cgroup memory limit is unknown (" + cg.memory_limit.unknown_reason +
                       "); the memory budget uses " + b.source);
  }
  b.capacity = *capacity;
  b.headroom = shape.memory_headroom.of(b.capacity);
  settle(b, shape.memory_headroom.percent ? " (" + shape.memory_headroom.to_string() + ")" : "");
  return b;
}

Budget address_budget(const HostFacts& f, uint64_t reserve, std::vector<std::string>& warnings) {
  if (reserve == 0) {
    return not_applicable(Constraint::kAddressSpace, "bytes",
                          "no address-space reservation per instance given");
  }
  Budget b;
  b.constraint = Constraint::kAddressSpace;
  b.unit = "bytes";
  b.per_instance = reserve;
  std::optional<uint64_t> capacity;
  const MemoryFacts& m = f.memory;
  if (m.virtual_address_bits.known() && *m.virtual_address_bits > 1 &&
      *m.virtual_address_bits <= 64) {
    // User space gets the lower half of the virtual address space (47 bits of 48 on x86-64), and
    // no more than 47 bits without an mmap hint even with 5-level paging.
    const int bits = user_address_bits(*m.virtual_address_bits);
    capacity = uint64_t{1} << bits;
    b.source =
        bits + 1 < *m.virtual_address_bits
            ? "the 47-bit default mmap window of " + std::to_string(*m.virtual_address_bits) +
                  "-bit virtual addresses (" + first_word(m.virtual_address_bits.source) + ")"
            : "the user half of " + std::to_string(*m.virtual_address_bits) +
                  "-bit virtual addresses (" + first_word(m.virtual_address_bits.source) + ")";
  }
  if (m.rlimit_as.known()) {
    const Limit& soft = m.rlimit_as->soft;
    if (!soft.is_unlimited() && (!capacity || *soft.value < *capacity)) {
      capacity = *soft.value;
      b.source = "RLIMIT_AS of " + first_word(m.rlimit_as.source);
    }
  } else {
    if (!capacity) {
      return unknown(std::move(b),
                     "RLIMIT_AS: " + m.rlimit_as.unknown_reason +
                         "; virtual address bits: " + m.virtual_address_bits.unknown_reason,
                     warnings);
    }
    warnings.push_back("RLIMIT_AS is unknown (" + m.rlimit_as.unknown_reason +
                       "); the address-space budget uses only the virtual address width");
  }
  if (!capacity) {
    return unknown(std::move(b),
                   "RLIMIT_AS is unlimited and the virtual address width is unknown (" +
                       m.virtual_address_bits.unknown_reason + ")",
                   warnings);
  }
  b.capacity = *capacity;
  settle(b);
  return b;
}

// "vm.max_map_count: 65530 maps - 120 in use - 1000 headroom = 64410 maps / ~19 per V8 instance
// = 3390 instances": the process's maps are its current count, or the runtime's measured base when
// that is larger (a process that has not loaded the runtime yet has fewer maps than it will).
Budget mappings_budget(const HostFacts& f, const WorkloadShape& shape, uint64_t maps,
                       std::vector<std::string>& warnings) {
  if (maps == 0) {
    return not_applicable(Constraint::kMappings, "maps", "no memory mappings per instance given");
  }
  Budget b;
  b.constraint = Constraint::kMappings;
  b.unit = "maps";
  b.per_instance = maps;
  const MemoryFacts& m = f.memory;
  if (!m.max_map_count.known()) {
    return unknown(std::move(b), "vm.max_map_count: " + m.max_map_count.unknown_reason, warnings);
  }
  b.source = "vm.max_map_count of " + m.max_map_count.source;
  b.capacity = *m.max_map_count;
  std::string used_note;
  if (m.map_count.known()) {
    b.used = *m.map_count;
    used_note = " (" + first_word(m.map_count.source) + ")";
  } else {
    warnings.push_back("the target's current map count is unknown (" + m.map_count.unknown_reason +
                       "); the mappings budget counts it as 0");
  }
  const uint64_t base = shape.runtime.base_maps;
  if (base > b.used) {
    b.used = base;
    used_note = " (the " + shape.runtime.label + " process before its first instance, measured)";
  }
  b.headroom = shape.map_headroom;
  settle(b);
  const uint64_t taken = b.used + b.headroom;
  const uint64_t left = b.capacity > taken ? b.capacity - taken : 0;
  const std::string label =
      shape.runtime.label.empty() || shape.runtime.name == "none" ? "" : shape.runtime.label + " ";
  std::string text = "vm.max_map_count: " + amount(b.capacity, "maps");
  if (b.used) text += " - " + std::to_string(b.used) + " in use" + used_note;
  if (b.headroom) text += " - " + std::to_string(b.headroom) + " headroom";
  if (taken) text += " = " + amount(left, "maps");
  b.explanation = text + " / ~" + std::to_string(maps) + " per " + label +
                  "instance = " + instances_text(b.instances);
  return b;
}

Budget cap_budget(const WorkloadShape& shape, std::optional<uint64_t> cap) {
  if (!cap) return not_applicable(Constraint::kRuntimeCap, "instances", "the runtime has no cap");
  Budget b;
  b.constraint = Constraint::kRuntimeCap;
  b.unit = "instances";
  b.state = Budget::State::kKnown;
  b.capacity = *cap;
  b.per_instance = 1;
  b.instances = *cap;
  const bool explicit_cap = shape.instance_cap.has_value();
  b.source = explicit_cap ? "--instance-cap" : "the " + shape.runtime.name + " instance cap";
  b.explanation =
      b.source + ": " + instances_text(*cap) + " per process" +
      (explicit_cap || shape.runtime.cap_source.empty() ? ""
                                                        : " (" + shape.runtime.cap_source + ")");
  return b;
}

std::string hint(Constraint c) {
  switch (c) {
    case Constraint::kMemory:
      return "raise the memory limit, or lower --headroom, --instance-resident or --plugins";
    case Constraint::kAddressSpace:
      return "raise RLIMIT_AS (ulimit -v), or lower --instance-reserve or --plugins";
    case Constraint::kMappings:
      return "raise vm.max_map_count (sysctl vm.max_map_count=N), or lower --plugins";
    case Constraint::kRuntimeCap:
      return "split the instances over more processes, or lower --plugins";
    default:
      return "lower --plugins";
  }
}

// A shape's reservation, resident size and maps per instance: given, or its runtime's.
std::tuple<uint64_t, uint64_t, uint64_t> per_instance_costs(const WorkloadShape& shape) {
  return {shape.instance_reserve_bytes.value_or(shape.runtime.reserve_bytes),
          shape.instance_resident_bytes.value_or(shape.runtime.resident_bytes),
          shape.instance_maps.value_or(shape.runtime.maps)};
}

}  // namespace

const char* to_string(Constraint constraint) {
  switch (constraint) {
    case Constraint::kCpu:
      return "cpu";
    case Constraint::kMinWorkers:
      return "min_workers";
    case Constraint::kMaxWorkers:
      return "max_workers";
    case Constraint::kMemory:
      return "memory";
    case Constraint::kAddressSpace:
      return "address_space";
    case Constraint::kMappings:
      return "mappings";
    case Constraint::kRuntimeCap:
      return "runtime_cap";
  }
  return "cpu";
}

const char* to_string(Budget::State state) {
  switch (state) {
    case Budget::State::kKnown:
      return "known";
    case Budget::State::kUnknown:
      return "unknown";
    case Budget::State::kNotApplicable:
      return "not_applicable";
  }
  return "unknown";
}

const Budget* Plan::budget(Constraint constraint) const {
  for (const auto& b : budgets) {
    if (b.constraint == constraint) return &b;
  }
  return nullptr;
}

bool needs_memory_facts(const WorkloadShape& shape) {
  const auto [reserve, resident, maps] = per_instance_costs(shape);
  return reserve > 0 || resident > 0 || maps > 0;
}

Result<Plan> make_plan(const HostFacts& facts, const WorkloadShape& shape) {
  if (shape.min_workers < 1) {
    return fail(ErrorKind::kUsage, "--min-workers must be at least 1");
  }
  if (shape.max_workers && *shape.max_workers < shape.min_workers) {
    return fail(ErrorKind::kUsage, "--max-workers " + std::to_string(*shape.max_workers) +
                                       " is below --min-workers " +
                                       std::to_string(shape.min_workers));
  }

  Plan plan;
  plan.runtime = shape.runtime.name.empty() ? "none" : shape.runtime.name;
  std::tie(plan.reserve_bytes, plan.resident_bytes, plan.maps_per_instance) =
      per_instance_costs(shape);
  plan.instance_cap = shape.instance_cap ? shape.instance_cap : shape.runtime.instance_cap;
  plan.runtime_label = shape.runtime.label.empty() ? plan.runtime : shape.runtime.label;
  plan.runtime_source = shape.runtime.source;
  plan.instances_per_worker = shape.instances_per_worker;
  plan.rounding = shape.rounding;
  if (shape.instances_per_worker > 0 && !needs_memory_facts(shape) && !plan.instance_cap) {
    return fail(ErrorKind::kUsage,
                std::to_string(shape.instances_per_worker) +
                    " instances per worker need a per-instance cost to budget: give --runtime "
                    "v8|wasmtime|wamr, or --instance-reserve, --instance-resident or "
                    "--instance-maps");
  }

  // Where the workload runs, for placeholders and the report.
  plan.cpuset = facts.cpu.usable;
  if (facts.cpu.cpuset_mems.known()) plan.mems = *facts.cpu.cpuset_mems;
  if (facts.cgroup.memory_limit.known()) plan.memory_limit = *facts.cgroup.memory_limit;

  // Workers from CPUs.
  const CpuFacts& cpu = facts.cpu;
  plan.cpus = cpu.effective;
  uint64_t rounded = 1;
  std::string cpu_text = cpu.binding;
  if (cpu.binding_kind == CpuBinding::kUnknown || cpu.effective <= 0) {
    plan.warnings.push_back("the effective CPU count is unknown (" + cpu.binding +
                            "); planning from --min-workers");
    rounded = shape.min_workers;
  } else {
    const double r = shape.rounding == Rounding::kCeil ? std::ceil(cpu.effective - kCpuEpsilon)
                                                       : std::floor(cpu.effective + kCpuEpsilon);
    rounded = std::max<uint64_t>(1, static_cast<uint64_t>(std::max(0.0, r)));
    if (std::fabs(cpu.effective - static_cast<double>(rounded)) > kCpuEpsilon) {
      cpu_text += "; " + format_cpus(cpu.effective) + " rounded (" + to_string(shape.rounding) +
                  ") to " + count(rounded, "worker", "workers");
    }
  }
  plan.cpu_workers = rounded;
  plan.binding_kind = Constraint::kCpu;
  plan.binding = cpu_text;
  if (shape.max_workers && plan.cpu_workers > *shape.max_workers) {
    plan.cpu_workers = *shape.max_workers;
    plan.binding_kind = Constraint::kMaxWorkers;
    plan.binding = "limited by --max-workers " + std::to_string(*shape.max_workers) +
                   " (the CPUs allow " + std::to_string(rounded) + ": " + cpu_text + ")";
  }
  if (plan.cpu_workers < shape.min_workers) {
    plan.cpu_workers = shape.min_workers;
    plan.binding_kind = Constraint::kMinWorkers;
    plan.binding = "raised to --min-workers " + std::to_string(shape.min_workers) +
                   " (the CPUs allow " + std::to_string(rounded) + ": " + cpu_text + ")";
    plan.warnings.push_back("--min-workers " + std::to_string(shape.min_workers) +
                            " is above what the CPUs allow (" + std::to_string(rounded) +
                            "); workers will share CPUs");
  }
  plan.cpu_explanation = cpu_text;
  plan.workers = plan.cpu_workers;

  // The instance budget.
  plan.budgets.push_back(memory_budget(facts, shape, plan.resident_bytes, plan.warnings));
  plan.budgets.push_back(address_budget(facts, plan.reserve_bytes, plan.warnings));
  plan.budgets.push_back(mappings_budget(facts, shape, plan.maps_per_instance, plan.warnings));
  plan.budgets.push_back(cap_budget(shape, plan.instance_cap));
  const Budget* tightest = nullptr;
  for (const auto& b : plan.budgets) {
    if (b.state == Budget::State::kKnown && (!tightest || b.instances < tightest->instances)) {
      tightest = &b;
    }
  }
  if (tightest) plan.instance_budget = tightest->instances;

  const uint64_t per_worker = shape.instances_per_worker;
  if (per_worker > 0 && tightest && plan.workers * per_worker > tightest->instances) {
    const uint64_t fit = tightest->instances / per_worker;
    if (fit < shape.min_workers) {
      const uint64_t needed = shape.min_workers * per_worker;
      const uint64_t short_by = needed - tightest->instances;
      std::string who = shape.min_workers == 1 ? "1 worker: it needs "
                                               : std::to_string(shape.min_workers) +
                                                     " workers (--min-workers): "
                                                     "they need ";
      std::string shortfall = instances_text(short_by);
      if (tightest->unit != "instances") {
        shortfall += " = " + amount(short_by * tightest->per_instance, tightest->unit);
      }
      return fail(ErrorKind::kResource, "cannot fit " + who + instances_text(needed) + " but the " +
                                            to_string(tightest->constraint) + " budget allows " +
                                            instances_text(tightest->instances) + " (" +
                                            tightest->explanation + "); short by " + shortfall +
                                            " (" + hint(tightest->constraint) + ")");
    }
    plan.warnings.push_back(
        "lowered workers from " + std::to_string(plan.workers) + " to " + std::to_string(fit) +
        ": " + std::to_string(plan.workers) + " x " + std::to_string(per_worker) + " = " +
        instances_text(plan.workers * per_worker) + " exceed the " +
        to_string(tightest->constraint) + " budget of " + instances_text(tightest->instances));
    plan.workers = fit;
    plan.binding_kind = tightest->constraint;
    plan.binding = "limited by " + tightest->explanation;
  }
  plan.instances = plan.workers * per_worker;
  return plan;
}

}  // namespace hostfit
