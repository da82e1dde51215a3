// hostfit probe: what a process or a cgroup can really use on this machine.
//
//   hostfit::Sysroot root("/");
//   hostfit::HostFacts facts = hostfit::probe_host(root, hostfit::ProbeTarget::self());
//   facts.cpu.effective         // e.g. 1.5: min(affinity ∩ cpuset ∩ online, quota over the chain)
//   facts.cpu.binding           // "limited by cpu.max of /l0: 1.5 CPUs"
//
// A probe never fails as a whole: each fact is known with its source, or unknown with the reason.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hostfit/core.h"

namespace hostfit {

// Whose view of the machine to probe.
struct ProbeTarget {
  enum class Kind { kSelf, kPid, kCgroup };
  Kind kind = Kind::kSelf;
  pid_t pid = 0;            // kPid
  std::string cgroup_path;  // kCgroup: path inside each hierarchy, e.g. "/kubepods/pod1"

  static ProbeTarget self() { return {}; }
  static ProbeTarget process(pid_t pid) { return {Kind::kPid, pid, {}}; }
  static ProbeTarget cgroup(std::string path) { return {Kind::kCgroup, 0, std::move(path)}; }
  // "/proc/self" or "/proc/PID"; empty for a cgroup target.
  std::string proc_dir() const;
};

// ---------------------------------------------------------------------------------------------
// CPUs

// One cgroup's CPU bandwidth limit (v1 cpu.cfs_quota_us / cpu.cfs_period_us, v2 cpu.max).
struct CpuQuota {
  std::string cgroup{};             // path inside the hierarchy, "/" for the root
  std::string source{};             // file read, e.g. "/sys/fs/cgroup/l0/cpu.max"
  std::string raw{};                // its contents
  std::optional<int64_t> quota_us;  // nullopt: no quota at this level (or unreadable)
  int64_t period_us = 100000;
  std::string unknown_reason{};  // set when the file could not be read or understood
  bool v2 = false;               // cpu.max (v2) or cpu.cfs_quota_us (v1)
  double cpus() const;           // quota / period, or +inf when unlimited or unknown
};

// Which constraint decides the effective CPU count.
enum class CpuBinding { kOnline, kAffinity, kCpuset, kQuota, kUnknown };

struct CpuFacts {
  Fact<CpuSet> online;
  Fact<CpuSet> possible;
  Fact<CpuSet> offline;
  Fact<CpuSet> isolated;
  Fact<CpuSet> affinity;         // sched_getaffinity, or Cpus_allowed_list of /proc/PID/status
  Fact<CpuSet> cpuset;           // effective cpuset of the target's cgroup
  Fact<CpuSet> cpuset_mems;      // effective cpuset.mems of the target's cgroup
  std::vector<CpuQuota> quotas;  // the ancestor chain, root first; empty when no cpu controller
  CpuSet usable;                 // affinity ∩ cpuset ∩ online (unknown parts are left out)
  double effective = 0;          // min(|usable|, min over quotas of quota/period)
  int effective_integer = 1;     // max(1, floor(effective))
  CpuBinding binding_kind = CpuBinding::kUnknown;
  std::string binding;  // "limited by cpu.max of /l0: 4.0 CPUs"
};

// ---------------------------------------------------------------------------------------------
// Topology (from hwloc)

struct NumaNode {
  int id = 0;   // OS index (may be sparse: 0,1,2,33,...)
  CpuSet cpus;  // empty for a CPU-less (memory-only) node
  uint64_t memory_bytes = 0;
  int package = -1;            // OS index of the package that holds its CPUs, -1 when none/unknown
  std::vector<int> distances;  // relative distance to each node of Topology::numa_nodes, in order
};

struct Core {
  int package = -1;    // OS index of its package
  int numa_node = -1;  // OS index of the node holding its CPUs, -1 when none
  int core_id = -1;    // OS index of the core inside its package (not unique machine-wide)
  CpuSet cpus;         // its hardware threads (SMT siblings)
};

struct Package {
  int id = 0;
  CpuSet cpus;
};

struct Topology {
  std::vector<Package> packages;
  std::vector<NumaNode> numa_nodes;  // ascending id
  std::vector<Core> cores;           // ascending first CPU
  std::vector<CpuSet> l3_groups;     // CPUs sharing an L3 cache
  int threads_per_core = 1;          // the most common SMT width
  std::string source;                // "hwloc 2.9.0 on /"
  std::string unknown_reason;        // set when hwloc could not load anything

  bool known() const { return unknown_reason.empty(); }
  const NumaNode* node(int id) const;
  // Distance between two nodes by id; -1 when unknown.
  int distance(int from_id, int to_id) const;
};

// ---------------------------------------------------------------------------------------------
// cgroups

enum class CgroupMode { kNone, kV1, kV2, kHybrid };
const char* to_string(CgroupMode mode);  // "none" | "v1" | "v2" | "hybrid"

// One mount of a cgroup hierarchy, from /proc/PID/mountinfo (or /proc/mounts).
struct CgroupMount {
  std::string mount_point;  // "/sys/fs/cgroup/memory", octal escapes decoded
  // The cgroup mounted there, named as the reader's cgroup namespace names it (mountinfo field 4):
  // "/" on a host, "/docker/<id>" for a container's bind mount, "/.." when the namespace root lies
  // below it. "/" when only /proc/mounts was read.
  std::string root;
  bool v2 = false;                       // cgroup2 (unified)
  bool legacy_cpuset_fs = false;         // cpuset files without the "cpuset." prefix ("cpus",
                                         // "mems"): the cpuset file system or a noprefix mount
  std::vector<std::string> controllers;  // v1: from the mount options; v2: cgroup.controllers

  // Set by probe_cgroups for its target:
  std::optional<std::string> target;  // the target's cgroup below `root` ("/" = the root itself)
  std::string target_unknown_reason;  // why `target` is empty: outside the root, hidden, ...
  bool primary = false;  // the mount read for this hierarchy (one per hierarchy; a visible one,
                         // then one under /sys/fs/cgroup, then the first listed)

  // `cgroup`, named as /proc/PID/cgroup names it, below this mount's root: "/x" for
  // "/docker/c/x" under "/docker/c", "/" for the root itself. An error says why the mount does not
  // show it: outside the root, climbing above it with "..", or below names the namespace hides.
  Result<std::string> locate(std::string_view cgroup) const;
};

// One cgroup level of a controller's chain: its name (as /proc/PID/cgroup would show it) and
// directory.
struct ChainLevel {
  std::string cgroup;  // "/kubepods/pod1"; ".." components above the namespace root
  std::string dir;     // "/sys/fs/cgroup/memory/kubepods/pod1"
};

// Where one controller's files are for the target.
struct ControllerPath {
  std::string controller;   // "memory", "cpu", "cpuset", "pids"
  std::string cgroup;       // the target's cgroup as /proc/PID/cgroup names it, "/a/b"
  std::string mount_point;  // where the hierarchy is mounted, "/sys/fs/cgroup/memory"
  std::string relative;     // the target below the mount's root ("/" when it is the root)
  std::string dir;          // the target path of its directory, "/sys/fs/cgroup/memory/a/b"
  bool v2 = false;
  bool legacy_cpuset_fs = false;  // files named "cpus"/"mems" instead of "cpuset.cpus"/...

  // The levels hostfit can see, the mount's root first and the target last. Ancestors above the
  // mount's root are not mounted and so not visible.
  std::vector<ChainLevel> visible_chain() const;
};

// A cgroup and its ancestors, root first: "/a/b" -> {"/", "/a", "/a/b"}.
std::vector<std::string> cgroup_ancestors(std::string_view cgroup);

// A cgroup path given by a person (--cgroup): "/kubepods/pod1" ("kubepods/pod1" and a trailing
// "/" are accepted). kUsage error for ".." or "." components, a NUL or more than 4096 bytes.
Result<std::string> normalize_cgroup_path(std::string_view text);

struct CgroupFacts {
  CgroupMode mode = CgroupMode::kNone;
  std::string mode_source;
  std::vector<CgroupMount> mounts;
  std::map<std::string, std::string> paths;  // controller ("" for v2) -> path from /proc/PID/cgroup
  std::vector<ControllerPath> controllers;   // resolved directories for cpu, cpuset, memory, pids
  std::map<std::string, std::string> unknown_controllers;  // mounted, but the target's directory
                                                           // is not visible: controller -> why
  std::vector<std::string> memory_chain;  // the visible memory cgroups, the mount's root first
  Fact<Limit> memory_limit;         // min over the chain of memory.max / memory.limit_in_bytes
  std::string memory_limit_cgroup;  // which ancestor sets it ("" when unlimited)
  Fact<Limit> memory_high;          // v2 memory.high (min over the chain)
  Fact<uint64_t> memory_usage;      // memory.current / memory.usage_in_bytes of the leaf
  Fact<Limit> pids_max;             // min over the chain

  // The resolved directory of a controller, or nullptr when it is not mounted / not visible.
  const ControllerPath* find(std::string_view controller) const;
};

// ---------------------------------------------------------------------------------------------
// Memory and kernel

struct ResourceLimit {
  Limit soft;
  Limit hard;
};

// A fact added here is also named in memory_not_probed() (probe.cc), with why it is unknown.
struct MemoryFacts {
  Fact<uint64_t> total;         // MemTotal, bytes
  Fact<uint64_t> available;     // MemAvailable
  Fact<uint64_t> commit_limit;  // CommitLimit
  Fact<uint64_t> committed;     // Committed_AS
  Fact<uint64_t> swap_total;
  Fact<uint64_t> swap_free;
  Fact<int> overcommit_memory;        // vm.overcommit_memory: 0 heuristic, 1 always, 2 strict
  Fact<int> overcommit_ratio;         // vm.overcommit_ratio
  Fact<std::string> thp_enabled;      // the bracketed mode of transparent_hugepage/enabled
  Fact<uint64_t> hugepages_total;     // HugePages_Total
  Fact<uint64_t> hugepage_size;       // Hugepagesize, bytes
  Fact<uint64_t> max_map_count;       // vm.max_map_count
  Fact<uint64_t> map_count;           // lines of /proc/PID/maps
  Fact<uint64_t> address_space_used;  // VmSize of /proc/PID/status: what RLIMIT_AS already counts
  Fact<uint64_t> page_size;           // bytes
  Fact<int> virtual_address_bits;     // cpuinfo "address sizes: ... N bits virtual"
  Fact<ResourceLimit> rlimit_as;      // from /proc/PID/limits ("unlimited" -> Limit::unlimited())
  Fact<ResourceLimit> rlimit_data;
  Fact<ResourceLimit> rlimit_nofile;
  Fact<ResourceLimit> rlimit_nproc;
  Fact<std::string> kernel_release;   // /proc/sys/kernel/osrelease
  uint64_t numa_memory_sum = 0;       // sum of the NUMA nodes' memory, bytes
  bool numa_memory_mismatch = false;  // nodes' memory differs from MemTotal by more than 1%
};

// The address bits an mmap(2) without a hint can use: the lower half of the virtual address space,
// and at most 47 bits. With 5-level paging (57 bits, cpuinfo flag "la57") x86-64 Linux still maps
// below 128 TiB unless the caller passes a hint above it (DEFAULT_MAP_WINDOW), as a qemu guest
// with -cpu max showed: a 128 TiB reservation fails there.
int user_address_bits(int virtual_address_bits);

struct EnvironmentFacts {
  Fact<std::string> virtualization;  // "none", "kvm", "qemu", "vmware", "hyper-v", "xen", ...
  std::vector<std::string> virtualization_evidence;
  std::vector<std::string> container_hints;  // "/.dockerenv exists", "cgroup namespace root", ...
};

struct HostFacts {
  ProbeTarget target;
  std::string sysroot;
  CpuFacts cpu;
  Topology topology;
  CgroupFacts cgroup;
  MemoryFacts memory;
  EnvironmentFacts environment;
  std::vector<std::string> warnings;

  // True when not a single fact could be read (e.g. the sysroot does not exist).
  bool nothing_known() const;
};

// Which parts of a probe to run. The topology (hwloc) is the costly one: on x86 hwloc binds
// itself to every CPU in turn to read cpuid, milliseconds that `hostfit run` need not pay unless
// it places the workload.
struct ProbeParts {
  bool topology = true;
  bool environment = true;  // virtualization and container hints: shown by `probe` only
  // MemoryFacts (meminfo, vm sysctls, the target's limits and maps, address width): what sizes
  // sandbox instances. A plain run needs only the CPU and cgroup facts (see needs_memory_facts).
  bool memory = true;
};

// Probes everything (but what `parts` leaves out: then unknown, saying so). Never fails as a
// whole: unreadable parts are unknown with their reason.
HostFacts probe_host(const Sysroot& root, const ProbeTarget& target, const ProbeParts& parts = {});

// `hostfit probe --capture DIR`: after probing through `root` with recording on
// (Sysroot::start_recording), writes every file the probe read, and the sysfs files hwloc reads
// for the topology, under dir (new or empty), so that a probe with --sysroot dir gives the same
// answer. Nothing outside that read set; at most 20000 files and 64 MiB (kResource beyond, and
// nothing is left behind).
struct CaptureSummary {
  std::string dir;
  size_t files = 0;
  uint64_t bytes = 0;
};
Result<CaptureSummary> write_capture(const Sysroot& root, const std::filesystem::path& dir);

// kNotFound for a target that is not there: a process without /proc/PID, or a cgroup that no
// mounted hierarchy has (the message lists the hierarchies looked in). The self target: ok.
Status check_target(const Sysroot& root, const HostFacts& facts);

// The pieces, for callers that need only one part (all read through the Sysroot).
CgroupFacts probe_cgroups(const Sysroot& root, const ProbeTarget& target);
CpuFacts probe_cpus(const Sysroot& root, const ProbeTarget& target, const CgroupFacts& cgroups);
MemoryFacts probe_memory(const Sysroot& root, const ProbeTarget& target);
EnvironmentFacts probe_environment(const Sysroot& root, const CgroupFacts& cgroups);
// Topology through hwloc with I/O discovery off; for a sysroot other than "/", hwloc reads it
// through HWLOC_FSROOT (set and restored under a lock, so concurrent calls are safe).
Topology load_topology(const Sysroot& root);

// The machine-readable form, with the stable keys documented in docs/probe.md. Unknown facts are
// null, with their reason under "unknown"; with explain, "sources" maps each fact to file and raw
// text.
nlohmann::json to_json(const HostFacts& facts, bool explain = false);

// Effective CPUs from their inputs, exposed for plan and tests: min(|usable|, min quota), the
// integer default max(1, floor), and the binding constraint in words.
void compute_effective_cpus(CpuFacts& cpu);

}  // namespace hostfit
