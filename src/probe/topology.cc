// Topology through hwloc: packages, NUMA nodes with memory and distances, cores with their SMT
// siblings, L3 groups. hostfit does not parse sysfs topology itself.
#include <hwloc.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>

#include "hostfit/probe.h"

namespace hostfit {
namespace {

// HWLOC_FSROOT is process-wide: one load at a time may change it.
std::mutex g_fsroot_mutex;

CpuSet to_cpuset(hwloc_const_bitmap_t bitmap) {
  CpuSet set;
  if (!bitmap) return set;
  for (int id = hwloc_bitmap_first(bitmap); id != -1 && id <= CpuSet::kMaxId;
       id = hwloc_bitmap_next(bitmap, id)) {
    set.set(id);
  }
  return set;
}

int ancestor_index(hwloc_topology_t topo, hwloc_obj_t obj, hwloc_obj_type_t type) {
  hwloc_obj_t a = hwloc_get_ancestor_obj_by_type(topo, type, obj);
  return a ? static_cast<int>(a->os_index) : -1;
}

// hwloc reads a sysroot itself, past Sysroot's checks: a FIFO there would block it in open(2) for
// ever and a device would feed it without end. The name of the first such file under /proc or
// /sys (links followed, not descended), or "" when there is none.
std::string special_file_in(const Sysroot& root) {
  namespace fs = std::filesystem;
  for (const char* top : {"/proc", "/sys"}) {
    std::error_code ec;
    fs::recursive_directory_iterator it(root.path(top), fs::directory_options::none, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      std::error_code status_ec;
      const fs::file_status st = fs::status(it->path(), status_ec);
      if (status_ec) continue;  // a dangling link reads as missing
      if (fs::is_fifo(st) || fs::is_character_file(st) || fs::is_block_file(st) ||
          fs::is_socket(st)) {
        return it->path().string();
      }
    }
  }
  return "";
}

// Loads with the environment pointing hwloc at the sysroot, then restores it.
int load_with_fsroot(hwloc_topology_t topo, const Sysroot& root) {
  if (root.is_host()) return hwloc_topology_load(topo);
  std::lock_guard lock(g_fsroot_mutex);
  const char* previous = std::getenv("HWLOC_FSROOT");
  const std::string saved = previous ? previous : "";
  ::setenv("HWLOC_FSROOT", root.root().c_str(), 1);
  const int rc = hwloc_topology_load(topo);
  if (previous) {
    ::setenv("HWLOC_FSROOT", saved.c_str(), 1);
  } else {
    ::unsetenv("HWLOC_FSROOT");
  }
  return rc;
}

}  // namespace

const NumaNode* Topology::node(int id) const {
  for (const auto& n : numa_nodes) {
    if (n.id == id) return &n;
  }
  return nullptr;
}

int Topology::distance(int from_id, int to_id) const {
  size_t to_index = numa_nodes.size();
  for (size_t i = 0; i < numa_nodes.size(); ++i) {
    if (numa_nodes[i].id == to_id) to_index = i;
  }
  const NumaNode* from = node(from_id);
  if (!from || to_index >= from->distances.size()) return -1;
  return from->distances[to_index];
}

namespace {

// hwloc gives a memory-only node the cpuset of the object it hangs from (its locality), so a CPU
// can be listed by several nodes. The kernel's has_cpu mask says which nodes own CPUs at all; a CPU
// listed by several of those belongs to the one with the smallest set (the nearest attachment).
void assign_node_cpus(const Sysroot& root, std::vector<NumaNode>& nodes) {
  std::optional<CpuSet> has_cpu;
  if (auto text = root.read_value("/sys/devices/system/node/has_cpu")) {
    if (auto set = CpuSet::parse_list(*text)) has_cpu = *set;
  }
  std::vector<CpuSet> owned(nodes.size());
  CpuSet all;
  for (const auto& n : nodes)
    all |= n.cpus;
  for (int cpu : all.ids()) {
    int best = -1;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (!nodes[i].cpus.contains(cpu) || (has_cpu && !has_cpu->contains(nodes[i].id))) continue;
      if (best < 0 || nodes[i].cpus.count() < nodes[best].cpus.count()) best = static_cast<int>(i);
    }
    if (best >= 0) owned[best].set(cpu);
  }
  for (size_t i = 0; i < nodes.size(); ++i)
    nodes[i].cpus = std::move(owned[i]);
}

}  // namespace

Topology load_topology(const Sysroot& root) {
  Topology topology;
  hwloc_topology_t topo;
  if (hwloc_topology_init(&topo) != 0) {
    topology.unknown_reason = "hwloc_topology_init failed";
    return topology;
  }
  hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_NONE);
  // Whole-machine view: hostfit intersects with affinity and cpusets itself.
  hwloc_topology_set_flags(topo, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
  if (!root.is_host()) {
    // The x86 CPUID backend would describe the machine hostfit runs on, not the sysroot's.
    hwloc_topology_set_components(topo, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "x86");
  }
  if (!root.is_host()) {
    if (const std::string special = special_file_in(root); !special.empty()) {
      topology.unknown_reason = "hwloc was not run on " + root.root().string() + ": " + special +
                                " is a FIFO, device or socket, not a kernel file";
      hwloc_topology_destroy(topo);
      return topology;
    }
  }
  if (load_with_fsroot(topo, root) != 0) {
    topology.unknown_reason = "hwloc could not load the topology of " + root.root().string();
    hwloc_topology_destroy(topo);
    return topology;
  }
  topology.source = "hwloc " + std::string(HWLOC_VERSION) + " on " + root.root().string();

  for (hwloc_obj_t obj = nullptr;
       (obj = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PACKAGE, obj));) {
    topology.packages.push_back(Package{static_cast<int>(obj->os_index), to_cpuset(obj->cpuset)});
  }

  std::vector<hwloc_obj_t> node_objs;
  for (hwloc_obj_t obj = nullptr;
       (obj = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, obj));) {
    node_objs.push_back(obj);
  }
  std::sort(node_objs.begin(), node_objs.end(),
            [](hwloc_obj_t a, hwloc_obj_t b) { return a->os_index < b->os_index; });
  for (hwloc_obj_t obj : node_objs) {
    NumaNode node;
    node.id = static_cast<int>(obj->os_index);
    node.cpus = to_cpuset(obj->cpuset);
    node.memory_bytes = obj->attr ? obj->attr->numanode.local_memory : 0;
    node.package = node.cpus.empty() ? -1 : ancestor_index(topo, obj, HWLOC_OBJ_PACKAGE);
    topology.numa_nodes.push_back(std::move(node));
  }
  assign_node_cpus(root, topology.numa_nodes);
  // A machine without NUMA information is one node holding everything.
  if (topology.numa_nodes.empty()) {
    hwloc_obj_t machine = hwloc_get_root_obj(topo);
    topology.numa_nodes.push_back(
        NumaNode{0, to_cpuset(machine->cpuset), machine->total_memory, -1, {10}});
  }

  // Distances: hwloc reports matrices over objects; map them onto our node order.
  unsigned nr = 1;
  hwloc_distances_s* dist = nullptr;
  if (hwloc_distances_get_by_type(topo, HWLOC_OBJ_NUMANODE, &nr, &dist, 0, 0) == 0 && nr >= 1 &&
      dist) {
    std::map<unsigned, size_t> index_of;
    for (unsigned i = 0; i < dist->nbobjs; ++i)
      index_of[dist->objs[i]->os_index] = i;
    for (auto& from : topology.numa_nodes) {
      const auto fi = index_of.find(static_cast<unsigned>(from.id));
      from.distances.clear();
      for (const auto& to : topology.numa_nodes) {
        const auto ti = index_of.find(static_cast<unsigned>(to.id));
        if (fi == index_of.end() || ti == index_of.end()) {
          from.distances.push_back(-1);
        } else {
          from.distances.push_back(
              static_cast<int>(dist->values[fi->second * dist->nbobjs + ti->second]));
        }
      }
    }
    hwloc_distances_release(topo, dist);
  }
  for (auto& from : topology.numa_nodes) {
    if (from.distances.size() == topology.numa_nodes.size()) continue;
    // No distance matrix: local 10, remote 20, as the kernel assumes without an ACPI SLIT.
    from.distances.clear();
    for (const auto& to : topology.numa_nodes)
      from.distances.push_back(to.id == from.id ? 10 : 20);
  }

  const auto node_of_cpu = [&](int cpu) {
    for (const auto& n : topology.numa_nodes) {
      if (n.cpus.contains(cpu)) return n.id;
    }
    return -1;
  };
  std::map<int, int> width_count;
  for (hwloc_obj_t obj = nullptr; (obj = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_CORE, obj));) {
    Core core;
    core.cpus = to_cpuset(obj->cpuset);
    if (core.cpus.empty()) continue;
    core.core_id = static_cast<int>(obj->os_index);
    core.package = ancestor_index(topo, obj, HWLOC_OBJ_PACKAGE);
    core.numa_node = node_of_cpu(core.cpus.first());
    ++width_count[core.cpus.count()];
    topology.cores.push_back(std::move(core));
  }
  if (topology.cores.empty()) {
    // Some platforms expose PUs without cores: each PU is its own core.
    for (hwloc_obj_t obj = nullptr; (obj = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PU, obj));) {
      const int cpu = static_cast<int>(obj->os_index);
      topology.cores.push_back(Core{ancestor_index(topo, obj, HWLOC_OBJ_PACKAGE), node_of_cpu(cpu),
                                    cpu, CpuSet::of({cpu})});
      ++width_count[1];
    }
  }
  std::sort(topology.cores.begin(), topology.cores.end(),
            [](const Core& a, const Core& b) { return a.cpus.first() < b.cpus.first(); });
  int best = 0;
  for (const auto& [width, count] : width_count) {
    if (count > best) {
      best = count;
      topology.threads_per_core = width;
    }
  }

  for (hwloc_obj_t obj = nullptr;
       (obj = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_L3CACHE, obj));) {
    topology.l3_groups.push_back(to_cpuset(obj->cpuset));
  }
  hwloc_topology_destroy(topo);
  return topology;
}

}  // namespace hostfit
