// What V1Driver and V2Driver share: the hierarchies a group spans, and per-directory file access
// that follows each directory's own version (a hybrid host mixes both).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hostfit/cgroup.h"

namespace hostfit::cgroup_internal {

// One mounted hierarchy hostfit uses.
struct Hierarchy {
  std::string name;                      // "memory", "cpu,cpuacct", "unified"
  std::string mount_point;               // "/sys/fs/cgroup/memory"
  std::vector<std::string> controllers;  // used through it; {} for the tracking-only unified tree
  bool v2 = false;
  std::string own;             // hostfit's own cgroup in it: "/a"
  std::string parent;          // where groups go: "/a/hostfit"
  bool default_parent = true;  // parent is "<own>/hostfit", not a --cgroup-parent
  // Groups are made in it. An unused hierarchy is only swept of a killed run's leftovers
  // (CgroupDriverOptions::controllers).
  bool used = true;

  CgroupDir dir(const std::string& cgroup) const;
};

// The name of the v2 leaf hostfit moves itself into, under the parent (names starting with '_'
// are refused for workloads, so it never collides).
inline constexpr std::string_view kSupervisorLeaf = "_supervisor";

// A flock(2) on a cgroup directory. A parent is locked shared while groups are created in it and
// exclusive while it is swept; every group directory is locked shared by the hostfit that made it
// until remove(), and the sweep takes only groups whose lock it can take exclusive. So a sweep
// never removes a group another live hostfit made, empty or not. Released on destruction.
class DirLock {
 public:
  // Blocks for a shared lock; with exclusive, tries once (held() is false when it is busy).
  DirLock(const std::string& real_dir, bool exclusive);
  bool held() const { return fd_ >= 0; }
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

// The base both drivers build on. Version-specific steps are the virtual ones.
class HierarchyDriver : public CgroupDriver {
 public:
  HierarchyDriver(Sysroot root, std::vector<Hierarchy> hierarchies, pid_t self_pid);

  const std::vector<CgroupDir>& parents() const override { return parents_; }
  Result<std::vector<std::string>> prepare() override;
  Result<Cgroup> create(std::string_view name) override;
  Status set_limits(const Cgroup& group, const CgroupLimits& limits) override;
  Status attach(const Cgroup& group, pid_t pid) override;
  std::vector<std::string> join_files(const Cgroup& group) const override;
  Result<std::vector<pid_t>> processes(const Cgroup& group) const override;
  Result<CgroupUsage> usage(const Cgroup& group) const override;
  std::optional<uint64_t> cpu_usage_us(const Cgroup& group) const override;
  Result<OomCounters> oom_counters(const Cgroup& group) const override;
  Status remove(const Cgroup& group) override;
  void settle(const Cgroup& group) override;
  void release_parents() override;

 protected:
  // Version-specific set-up of one hierarchy's parent chain, after its directories exist.
  // `made` lists the cgroups created by this call, root first.
  virtual Status prepare_hierarchy(const Hierarchy& h, const std::vector<std::string>& made) = 0;
  // Called on each new group directory before anything is attached to it.
  virtual Status init_group_dir(const Hierarchy& h, const CgroupDir& dir) = 0;

  // A new v1 cpuset starts empty: give it the parent's CPUs and nodes, less those that
  // siblings hold exclusively (which the kernel refuses to it).
  Status copy_cpuset_from_parent(const Hierarchy& h, const std::string& cgroup);
  CpuSet exclusive_to_siblings(const std::string& parent, const std::string& dir, bool mems) const;
  // v2: enables the hierarchy's controllers from hostfit's own cgroup down to the parent, first
  // moving hostfit into a leaf under the parent when its own cgroup would otherwise hold a process
  // while delegating controllers (the no-internal-processes rule).
  Status enable_v2_controllers(const Hierarchy& h);
  Result<std::vector<pid_t>> procs_of(const std::string& dir) const;
  // The hierarchies groups are made in, in mount order.
  std::vector<const Hierarchy*> used() const;
  Status make_group_dir(const std::string& dir);
  std::vector<std::string> sweep();
  Status kill_and_remove(const CgroupDir& dir);
  // Why an existing group directory may not be taken over ("" when it may): processes, child
  // groups, or another live hostfit's lock on it.
  std::string busy_reason(const std::string& dir) const;
  // Whether `dir` still names the directory create() made (when its id is unknown: whether it is
  // a directory).
  bool still_ours(const CgroupDir& dir) const;

  Sysroot root_;
  std::vector<Hierarchy> hierarchies_;
  // group name -> shared locks on its directories, held from create() until remove()/settle()
  std::map<std::string, std::vector<std::unique_ptr<DirLock>>> held_;
  std::vector<CgroupDir> parents_;
  pid_t self_pid_;
};

std::unique_ptr<CgroupDriver> make_v1_driver(Sysroot root, std::vector<Hierarchy> hierarchies,
                                             pid_t self_pid);
std::unique_ptr<CgroupDriver> make_v2_driver(Sysroot root, std::vector<Hierarchy> hierarchies,
                                             pid_t self_pid);

// Parses cgroup.procs: one pid per line, garbage lines skipped.
std::vector<pid_t> parse_procs(std::string_view text);

}  // namespace hostfit::cgroup_internal
