// hostfit cgroup: create a group for one workload, limit it, put processes in it, read what it
// used, watch for OOM kills, and remove it. One interface, two drivers: cgroup v1 (with hybrid
// systems' unified tree tracked alongside) and cgroup v2.
//
//   hostfit::Sysroot root("/");
//   auto driver = hostfit::open_cgroup_driver(root, hostfit::probe_cgroups(root, self), {});
//   auto group = (*driver)->create("etl");            // <own cgroup>/hostfit/etl per hierarchy
//   (*driver)->set_limits(*group, {.memory_max_bytes = 64 << 20});
//   (*driver)->attach(*group, pid);  ...  (*driver)->remove(*group);
//
// hostfit manages only the subtree it was given, as a delegate under systemd does: by default a
// "hostfit" child of its own cgroup in each hierarchy. All file access goes through the Sysroot,
// so the drivers run for real on "/" and on generated trees in tests.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hostfit/core.h"
#include "hostfit/probe.h"

namespace hostfit {

// Workload group names: 1..64 characters of [A-Za-z0-9._-], not starting with '.' or '_' (those are
// hostfit's own), so never "/", "." or "..", and never the name of a file the kernel puts in a
// cgroup directory ("tasks", "notify_on_release", "release_agent", "<controller>.<file>" such as
// "cgroup.procs" or "memory.max"). The error names the bad name and what is accepted.
Status validate_cgroup_name(std::string_view name);

// What to limit. Unset fields are left as the kernel made them (unlimited, or for v1 cpusets a
// copy of the parent's CPUs and memory nodes).
struct CgroupLimits {
  std::optional<int64_t> cpu_quota_us{};  // with cpu_period_us: quota/period CPUs
  int64_t cpu_period_us = 100000;
  std::optional<CpuSet> cpus{};                 // cpuset.cpus
  std::optional<CpuSet> mems{};                 // cpuset.mems (NUMA nodes)
  std::optional<uint64_t> memory_max_bytes{};   // hard limit; also caps swap (memsw / swap.max 0)
  std::optional<uint64_t> memory_high_bytes{};  // v2 memory.high; v1 has none (kUnsupported)
  std::optional<uint64_t> pids_max{};
};

// One directory of a group: where it is in one hierarchy.
struct CgroupDir {
  std::string hierarchy;                 // "memory", "cpu", "unified", ...: the mount's name
  std::vector<std::string> controllers;  // controllers hostfit uses through it; {} = tracking only
  std::string cgroup;                    // path inside the hierarchy: "/a/hostfit/etl"
  std::string dir;                       // its target path: "/sys/fs/cgroup/memory/a/hostfit/etl"
  bool v2 = false;
  // The directory create() made (zero when unknown): remove() kills and removes only while the
  // path still names it, never a group of the same name made since by someone else.
  FileId id{};
};

// A created group. Plain data: removing it is the driver's job (see CgroupGuard for RAII).
struct Cgroup {
  std::string name;
  std::vector<CgroupDir> dirs;
  // The directory whose files belong to `controller`, nullptr when no hierarchy carries it.
  const CgroupDir* dir_of(std::string_view controller) const;
};

// The OOM killer's record for a group (v1 memory.oom_control, v2 memory.events).
struct OomCounters {
  uint64_t oom_kill = 0;       // processes of the group killed by the OOM killer
  bool oom_kill_known = true;  // false on v1 kernels before 4.13 (no "oom_kill" line)
  uint64_t oom = 0;            // v2 "oom": times the limit was hit and reclaim failed
  uint64_t limit_hits = 0;     // v1 memory.failcnt / v2 "max": allocations that hit the limit
  bool under_oom = false;      // v1: a task is waiting for memory right now
  bool kill_disabled = false;  // v1 oom_kill_disable: the kernel pauses tasks instead of killing
  std::string source;          // the file read
};

// Usage counters; each is nullopt when the kernel does not offer it.
struct CgroupUsage {
  std::optional<uint64_t> memory_bytes;       // memory.current / memory.usage_in_bytes
  std::optional<uint64_t> memory_peak_bytes;  // memory.peak (v2, Linux 5.19+) / max_usage_in_bytes
  std::optional<uint64_t> cpu_usage_us;       // cpu.stat usage_usec / cpuacct.usage (ns / 1000)
  std::optional<uint64_t> pids;               // pids.current
  std::map<std::string, uint64_t, std::less<>> memory_stat;  // memory.stat
};

// A file descriptor that becomes readable when the group's OOM state may have changed (v1: an
// eventfd registered on memory.oom_control; v2: inotify on memory.events). Owns its descriptors.
class OomWatch {
 public:
  virtual ~OomWatch() = default;
  virtual int fd() const = 0;  // for poll(2), POLLIN
  virtual void drain() = 0;    // consumes pending notifications so the fd is quiet again
};

class CgroupDriver {
 public:
  virtual ~CgroupDriver() = default;

  virtual CgroupMode mode() const = 0;
  // The parent directory of workload groups in each hierarchy ("<own>/hostfit" by default).
  virtual const std::vector<CgroupDir>& parents() const = 0;

  // Creates the parents in the hierarchies in use (copying v1 cpusets down, enabling v2
  // controllers, moving hostfit into a leaf first when v2's no-internal-processes rule needs it)
  // and removes empty groups left by an earlier hostfit that was killed, in every hierarchy.
  // Returns the names of the groups removed.
  virtual Result<std::vector<std::string>> prepare() = 0;
  // Makes <parent>/<name> in every hierarchy in use, afresh: an empty leftover of that name is
  // removed first. kResource, with nothing changed, when a group of that name is busy in any
  // hierarchy: it has processes or child groups, or belongs to another live hostfit; on any error
  // nothing is left behind. Until remove() or settle() the group is shielded (a shared flock on its
  // directories) from the sweep of any other hostfit's prepare(), even while it is empty between
  // its workload's end and remove().
  virtual Result<Cgroup> create(std::string_view name) = 0;
  // Drops the shield and leaves the group in place, as a killed hostfit would.
  virtual void settle(const Cgroup& group) = 0;
  virtual Status set_limits(const Cgroup& group, const CgroupLimits& limits) = 0;
  // Moves process `pid` (0: the caller) and its threads into the group in every hierarchy.
  virtual Status attach(const Cgroup& group, pid_t pid) = 0;
  // The real paths of the files a just-forked, single-threaded child writes "0" to, to join the
  // group in every hierarchy before exec (v1 "tasks", v2 "cgroup.procs").
  virtual std::vector<std::string> join_files(const Cgroup& group) const = 0;

  virtual Result<std::vector<pid_t>> processes(const Cgroup& group) const = 0;
  virtual Result<CgroupUsage> usage(const Cgroup& group) const = 0;
  // The group's cumulative CPU time in microseconds alone (one small file, for samplers);
  // nullopt when the kernel offers no counter for it.
  virtual std::optional<uint64_t> cpu_usage_us(const Cgroup& group) const = 0;
  virtual Result<OomCounters> oom_counters(const Cgroup& group) const = 0;
  virtual Result<std::unique_ptr<OomWatch>> watch_oom(const Cgroup& group) const = 0;

  // SIGKILLs what is left in the group and removes its directories. Idempotent. A directory whose
  // path names another directory now (Cgroup::dirs[i].id changed) is not ours and left alone.
  virtual Status remove(const Cgroup& group) = 0;
  // The default "<own>/hostfit" parents stay for the next group, but for a v1 cpuset one, removed
  // here when no group is left in it: the kernel refuses to shrink a v1 cpuset below what a child
  // holds, so an idle parent would stop `docker update --cpuset-cpus` or the kubelet's CPU manager
  // from narrowing hostfit's own cpuset. Best effort; a --cgroup-parent stays.
  virtual void release_parents() = 0;
};

struct CgroupDriverOptions {
  // --cgroup-parent: the path inside every hierarchy under which groups are made; empty means
  // "<hostfit's own cgroup>/hostfit" in each.
  std::string parent{};
  pid_t self_pid = 0;  // the process moved into a leaf on v2 when needed; 0: getpid()
  // The controllers groups need ("memory", "cpu", ...) or hierarchies by name ("unified": the
  // controller-less tree of a hybrid host, for its PSI files). Groups are made only in the
  // hierarchies that carry one: each other one costs a mkdir and an rmdir, and a v1 cpuset a
  // rebuild of the kernel's scheduling domains. Empty, or nothing of it mounted: all of them.
  std::vector<std::string> controllers{};
};

// A driver for the mounted hierarchies in `facts` (from probe_cgroups of hostfit itself): V2Driver
// when only cgroup2 is mounted, V1Driver otherwise (on hybrid systems it also tracks the group in
// the unified tree). kUnsupported when no usable hierarchy is mounted.
Result<std::unique_ptr<CgroupDriver>> open_cgroup_driver(const Sysroot& root,
                                                         const CgroupFacts& facts,
                                                         const CgroupDriverOptions& options);

// Parses memory.events / memory.oom_control text ("key value" lines; garbage tolerated).
OomCounters parse_oom_counters(std::string_view text, bool v2);

// Removes a group when it goes out of scope, unless release()d. Errors on removal are dropped;
// call remove() on the driver when the caller needs them.
class CgroupGuard {
 public:
  CgroupGuard(CgroupDriver& driver, Cgroup group) : driver_(&driver), group_(std::move(group)) {}
  ~CgroupGuard() {
    if (driver_) (void)driver_->remove(group_);
  }
  CgroupGuard(const CgroupGuard&) = delete;
  CgroupGuard& operator=(const CgroupGuard&) = delete;
  const Cgroup& group() const { return group_; }
  void release() { driver_ = nullptr; }

 private:
  CgroupDriver* driver_;
  Cgroup group_;
};

}  // namespace hostfit
