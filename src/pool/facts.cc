// The pool's cheap facts, picked out of the probe's memory and cgroup facts.
#include "hostfit/pool.h"

namespace hostfit {
namespace {

template <class T>
void note_unknown(const Fact<T>& fact, std::string_view name, std::vector<std::string>& unknown) {
  if (!fact.known()) unknown.push_back(std::string(name) + ": " + fact.unknown_reason);
}

}  // namespace

PoolFacts pool_facts_from(const MemoryFacts& memory, const CgroupFacts& cgroups) {
  PoolFacts f;
  if (memory.rlimit_as.known()) f.rlimit_as = memory.rlimit_as->soft;
  note_unknown(memory.rlimit_as, "RLIMIT_AS", f.unknown);
  if (memory.rlimit_data.known()) f.rlimit_data = memory.rlimit_data->soft;
  note_unknown(memory.rlimit_data, "RLIMIT_DATA", f.unknown);
  if (memory.virtual_address_bits.known()) f.virtual_address_bits = *memory.virtual_address_bits;
  note_unknown(memory.virtual_address_bits, "virtual address bits", f.unknown);
  if (memory.overcommit_memory.known()) f.overcommit_memory = *memory.overcommit_memory;
  note_unknown(memory.overcommit_memory, "vm.overcommit_memory", f.unknown);
  if (memory.commit_limit.known() && memory.committed.known()) {
    f.commit_headroom_bytes =
        *memory.commit_limit > *memory.committed ? *memory.commit_limit - *memory.committed : 0;
  }
  note_unknown(memory.commit_limit, "CommitLimit", f.unknown);
  note_unknown(memory.committed, "Committed_AS", f.unknown);
  if (cgroups.memory_limit.known()) {
    f.cgroup_memory_limit = *cgroups.memory_limit;
    f.cgroup_memory_limit_cgroup = cgroups.memory_limit_cgroup;
  }
  note_unknown(cgroups.memory_limit, "memory cgroup limit", f.unknown);
  if (cgroups.memory_usage.known()) f.cgroup_memory_usage_bytes = *cgroups.memory_usage;
  if (memory.max_map_count.known()) f.max_map_count = *memory.max_map_count;
  note_unknown(memory.max_map_count, "vm.max_map_count", f.unknown);
  if (memory.map_count.known()) f.map_count = *memory.map_count;
  note_unknown(memory.map_count, "map count", f.unknown);
  if (memory.address_space_used.known()) f.address_space_used_bytes = *memory.address_space_used;
  if (memory.page_size.known() && *memory.page_size > 0) f.page_size_bytes = *memory.page_size;
  return f;
}

PoolFacts probe_pool_facts(const Sysroot& root) {
  const ProbeTarget self = ProbeTarget::self();
  return pool_facts_from(probe_memory(root, self), probe_cgroups(root, self));
}

}  // namespace hostfit
