#include "hostfit/probe.h"

#include <cmath>

namespace hostfit {
namespace {

constexpr std::string_view kNotProbed = "not probed (not needed here)";

MemoryFacts memory_not_probed() {
  MemoryFacts m;
  const auto skip = [](auto&... facts) { ((facts.unknown_reason = kNotProbed), ...); };
  skip(m.total, m.available, m.commit_limit, m.committed, m.swap_total, m.swap_free,
       m.overcommit_memory, m.overcommit_ratio, m.thp_enabled, m.hugepages_total, m.hugepage_size,
       m.max_map_count, m.map_count, m.address_space_used, m.page_size, m.virtual_address_bits,
       m.rlimit_as, m.rlimit_data, m.rlimit_nofile, m.rlimit_nproc, m.kernel_release);
  return m;
}

}  // namespace

bool HostFacts::nothing_known() const {
  return !cpu.online.known() && !cpu.possible.known() && !cpu.affinity.known() &&
         !cpu.cpuset.known() && !memory.total.known() && !topology.known() && cgroup.mounts.empty();
}

HostFacts probe_host(const Sysroot& root, const ProbeTarget& target, const ProbeParts& parts) {
  HostFacts facts;
  facts.target = target;
  facts.sysroot = root.root().string();
  if (!root.is_dir("/")) {
    facts.warnings.push_back("sysroot " + facts.sysroot + " is not a directory");
  }
  facts.cgroup = probe_cgroups(root, target);
  facts.cpu = probe_cpus(root, target, facts.cgroup);
  if (!parts.topology) {
    facts.topology.unknown_reason = kNotProbed;
  } else if (root.is_dir("/")) {
    facts.topology = load_topology(root);
  } else {
    facts.topology.unknown_reason = "sysroot " + facts.sysroot + " does not exist";
  }
  if (!facts.cpu.online.known() && !facts.cpu.possible.known() && facts.topology.known()) {
    // Old kernels and some captures lack the online list: the CPUs hwloc found are the best
    // account.
    CpuSet found;
    for (const auto& core : facts.topology.cores)
      found |= core.cpus;
    facts.cpu.online = Fact<CpuSet>::of(
        found, "hwloc topology (" + facts.cpu.online.unknown_reason + ")", found.to_list());
    compute_effective_cpus(facts.cpu);
  }
  facts.memory = parts.memory ? probe_memory(root, target) : memory_not_probed();
  if (parts.environment) {
    facts.environment = probe_environment(root, facts.cgroup);
  } else {
    facts.environment.virtualization.unknown_reason = kNotProbed;
  }

  for (const auto& n : facts.topology.numa_nodes)
    facts.memory.numa_memory_sum += n.memory_bytes;
  if (facts.memory.total.known() && facts.memory.numa_memory_sum > 0) {
    const double total = static_cast<double>(*facts.memory.total);
    const double sum = static_cast<double>(facts.memory.numa_memory_sum);
    if (std::abs(total - sum) > 0.01 * total) {
      facts.memory.numa_memory_mismatch = true;
      facts.warnings.push_back("NUMA nodes hold " + format_bytes(facts.memory.numa_memory_sum) +
                               " but MemTotal is " + format_bytes(*facts.memory.total) +
                               " (offline or hot-pluggable memory, or an incomplete capture)");
    }
  }
  for (const auto& [controller, why] : facts.cgroup.unknown_controllers) {
    facts.warnings.push_back("the " + controller + " cgroup is not visible: " + why);
  }
  for (const auto& q : facts.cpu.quotas) {
    // An invisible cpu cgroup was warned about above; this is a quota file that could not be read.
    if (!q.unknown_reason.empty() && !q.source.empty())
      facts.warnings.push_back("CPU quota unknown: " + q.unknown_reason);
  }
  if (facts.cpu.affinity.known() && facts.cpu.online.known() &&
      (*facts.cpu.affinity & *facts.cpu.online).empty()) {
    facts.warnings.push_back("the affinity " + facts.cpu.affinity->to_list() +
                             " has no online CPU");
  }
  return facts;
}

}  // namespace hostfit
