// The parts of the cgroup drivers that do not depend on the version: names, where groups go,
// creating and removing directories, limits and counters per directory.
#include "driver.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "cgroup_files.h"

namespace hostfit {
namespace {

using cgroup_internal::Hierarchy;

constexpr size_t kMaxNameLength = 64;
// The v1 controllers hostfit limits or reads; others (devices, freezer, ...) are left alone.
constexpr std::array<std::string_view, 5> kUsedControllers = {"cpu", "cpuacct", "cpuset", "memory",
                                                              "pids"};
// How long remove() waits for SIGKILLed processes to leave a group before giving up.
constexpr auto kRemoveWait = std::chrono::seconds(5);

bool is_used(std::string_view controller) {
  return std::find(kUsedControllers.begin(), kUsedControllers.end(), controller) !=
         kUsedControllers.end();
}

std::string normalize_cgroup(std::string path) {
  if (path.empty() || path.front() != '/') path.insert(path.begin(), '/');
  while (path.size() > 1 && path.back() == '/')
    path.pop_back();
  return path;
}

std::string join_cgroup(const std::string& base, std::string_view name) {
  return base == "/" ? "/" + std::string(name) : base + "/" + std::string(name);
}

Status write_file(const Sysroot& root, const std::string& dir, std::string_view file,
                  std::string_view value) {
  return root.write(join_path(dir, file), value);
}

std::optional<uint64_t> read_u64(const Sysroot& root, const std::string& dir,
                                 std::string_view file) {
  auto text = root.read_value(join_path(dir, file));
  if (!text) return std::nullopt;
  return parse_u64(*text);
}

// hostfit's own cgroup below a mount's root, as the probe placed it. When the mount does not show
// it, a --cgroup-parent still says where groups go; without one there is no safe default.
Result<std::string> own_cgroup(const CgroupMount& m, const CgroupDriverOptions& options) {
  if (m.target) return normalize_cgroup(*m.target);
  if (!options.parent.empty()) return std::string("/");
  return fail(ErrorKind::kUnsupported, "cannot tell where hostfit's own cgroup is in " +
                                           m.mount_point + " (" + m.target_unknown_reason +
                                           "); pass --cgroup-parent");
}

// Marks the hierarchies that carry a wanted controller (or are wanted by name) as used; leaves
// all in use when nothing is asked, or nothing asked for is mounted.
void mark_used(std::vector<Hierarchy>& hierarchies, const std::vector<std::string>& wanted) {
  const auto has = [&](std::string_view name) {
    return std::find(wanted.begin(), wanted.end(), name) != wanted.end();
  };
  const auto wants = [&](const Hierarchy& h) {
    return has(h.name) || std::any_of(h.controllers.begin(), h.controllers.end(), has);
  };
  if (std::none_of(hierarchies.begin(), hierarchies.end(), wants)) return;
  for (auto& h : hierarchies)
    h.used = wants(h);
}

}  // namespace

Status validate_cgroup_name(std::string_view name) {
  const auto bad = [&](const std::string& why) {
    return fail(ErrorKind::kUsage, "bad workload name '" + std::string(name.substr(0, 80)) +
                                       "': " + why +
                                       " (use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with "
                                       "'.' or '_')");
  };
  if (name.empty()) return bad("it is empty");
  if (name.size() > kMaxNameLength) return bad("it is longer than 64 characters");
  if (name.front() == '.' || name.front() == '_')
    return bad("names starting with '.' or '_' are reserved");
  const std::string_view prefix = name.substr(0, name.find('.'));
  const bool control_file =
      name == cgfile::kV1Tasks || name == cgfile::kV1NotifyOnRelease ||
      name == cgfile::kV1ReleaseAgent ||
      (prefix.size() < name.size() &&
       std::find(cgfile::kControlFilePrefixes.begin(), cgfile::kControlFilePrefixes.end(),
                 prefix) != cgfile::kControlFilePrefixes.end());
  if (control_file) return bad("it is the name of a cgroup control file");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      if (c == '/') return bad("it contains '/'");
      return bad("it contains a character other than A-Z a-z 0-9 . _ -");
    }
  }
  return {};
}

const CgroupDir* Cgroup::dir_of(std::string_view controller) const {
  for (const auto& d : dirs) {
    if (std::find(d.controllers.begin(), d.controllers.end(), controller) != d.controllers.end())
      return &d;
  }
  return nullptr;
}

OomCounters parse_oom_counters(std::string_view text, bool v2) {
  OomCounters c;
  const auto keys = parse_keyed_numbers(text);
  const auto get = [&](std::string_view key) -> std::optional<uint64_t> {
    const auto it = keys.find(key);
    return it == keys.end() ? std::nullopt : std::optional<uint64_t>(it->second);
  };
  if (auto v = get(cgfile::kOomKill)) {
    c.oom_kill = *v;
  } else {
    c.oom_kill_known = false;
  }
  if (v2) {
    c.oom = get(cgfile::kEventOom).value_or(0);
    c.limit_hits = get(cgfile::kEventMax).value_or(0);
  } else {
    c.under_oom = get(cgfile::kUnderOom).value_or(0) != 0;
    c.kill_disabled = get(cgfile::kOomKillDisable).value_or(0) != 0;
  }
  return c;
}

namespace cgroup_internal {

CgroupDir Hierarchy::dir(const std::string& cgroup) const {
  return CgroupDir{name, controllers, cgroup, join_path(mount_point, cgroup), v2};
}

std::vector<pid_t> parse_procs(std::string_view text) {
  std::vector<pid_t> pids;
  for (std::string_view line : split(text, '\n')) {
    if (auto v = parse_u64(trim(line)); v && *v > 0 && *v < (uint64_t{1} << 31)) {
      pids.push_back(static_cast<pid_t>(*v));
    }
  }
  return pids;
}

DirLock::DirLock(const std::string& real_dir, bool exclusive) {
  fd_ = ::open(real_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd_ < 0) return;
  int rc;
  do {
    rc = ::flock(fd_, exclusive ? LOCK_EX | LOCK_NB : LOCK_SH);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);
}

HierarchyDriver::HierarchyDriver(Sysroot root, std::vector<Hierarchy> hierarchies, pid_t self_pid)
    : root_(std::move(root)), hierarchies_(std::move(hierarchies)), self_pid_(self_pid) {
  for (const auto& h : hierarchies_) {
    if (h.used) parents_.push_back(h.dir(h.parent));
  }
}

std::vector<const Hierarchy*> HierarchyDriver::used() const {
  std::vector<const Hierarchy*> out;
  for (const auto& h : hierarchies_) {
    if (h.used) out.push_back(&h);
  }
  return out;
}

Result<std::vector<std::string>> HierarchyDriver::prepare() {
  // Directories made by this call, removed again (deepest first) if any step fails.
  std::vector<std::string> made_dirs;
  const auto undo = [&](Error error) -> Result<std::vector<std::string>> {
    for (auto it = made_dirs.rbegin(); it != made_dirs.rend(); ++it)
      (void)root_.remove_dir(*it);
    return fail(std::move(error));
  };
  for (const Hierarchy* used_h : used()) {
    const Hierarchy& h = *used_h;
    // Make the chain from hostfit's own cgroup (or the hierarchy root for --cgroup-parent outside
    // it) down to the parent, remembering what was new.
    const std::string start = h.parent.starts_with(h.own == "/" ? "/" : h.own + "/") ? h.own : "/";
    std::vector<std::string> made;
    std::string current = start;
    const std::string rest = h.parent.substr(start == "/" ? 0 : start.size());
    for (std::string_view part : split(rest, '/')) {
      if (part.empty()) continue;
      current = join_cgroup(current, part);
      const std::string dir = join_path(h.mount_point, current);
      if (root_.is_dir(dir)) continue;
      if (auto st = root_.make_dir(dir); !st) {
        return undo(Error{st.error().kind,
                          "cannot create the cgroup parent " + root_.path(dir).string() + ": " +
                              std::strerror(st.error().sys_errno) +
                              " (run as root, or pass --cgroup-parent a writable delegated "
                              "subtree)",
                          st.error().sys_errno});
      }
      made.push_back(current);
      made_dirs.push_back(dir);
    }
    if (auto st = prepare_hierarchy(h, made); !st) return undo(st.error());
  }
  return sweep();
}

std::vector<std::string> HierarchyDriver::sweep() {
  std::set<std::string> removed;
  for (const auto& h : hierarchies_) {
    // Under a --cgroup-parent, empty groups may be anybody's (an idle service's): leave them.
    if (!h.default_parent) continue;
    const std::string parent_dir = join_path(h.mount_point, h.parent);
    const DirLock parent_lock(root_.path(parent_dir).string(), /*exclusive=*/true);
    if (!parent_lock.held()) continue;  // another hostfit is creating a group: sweep next time
    auto names = root_.list(parent_dir);
    if (!names) continue;
    for (const auto& name : *names) {
      // The name first: it rules out the control files without a stat each.
      if (name != kSupervisorLeaf && !validate_cgroup_name(name)) continue;
      const std::string dir = join_path(parent_dir, name);
      if (!root_.is_dir(dir)) continue;
      const DirLock group_lock(root_.path(dir).string(), /*exclusive=*/true);
      if (!group_lock.held()) continue;  // a live hostfit's group, even if empty right now
      auto procs = procs_of(dir);
      if (!procs || !procs->empty()) continue;
      // rmdir fails on a group with children or processes; that is the check we rely on.
      if (root_.remove_dir(dir)) {
        if (name != kSupervisorLeaf) removed.insert(name);
      }
    }
  }
  return {removed.begin(), removed.end()};
}

Status HierarchyDriver::make_group_dir(const std::string& dir) {
  auto st = root_.make_dir(dir);
  // A parent removed by hand since prepare() (or by an older hostfit, which removed empty
  // parents after each run): make it again.
  if (!st && st.error().sys_errno == ENOENT) {
    if (auto again = prepare(); !again) return fail(again.error());
    st = root_.make_dir(dir);
  }
  return st;
}

std::string HierarchyDriver::busy_reason(const std::string& dir) const {
  auto procs = procs_of(dir);
  if (!procs) return "its processes cannot be read: " + procs.error().message;
  if (!procs->empty()) return "it has processes (pid " + std::to_string(procs->front()) + ")";
  if (auto entries = root_.list(dir)) {
    for (const auto& entry : *entries) {
      if (root_.is_dir(join_path(dir, entry))) return "it has child groups (" + entry + ")";
    }
  }
  // Empty, but another live hostfit may hold it between its workload's end and remove().
  if (!DirLock(root_.path(dir).string(), /*exclusive=*/true).held())
    return "another hostfit is using it";
  return "";
}

Result<Cgroup> HierarchyDriver::create(std::string_view name) {
  if (auto st = validate_cgroup_name(name); !st) return fail(st.error());
  const std::vector<const Hierarchy*> hierarchies = used();
  if (hierarchies.empty()) return fail(ErrorKind::kUnsupported, "no cgroup hierarchy to use");
  // Parents stay locked shared while the group is made, so no sweep runs in between.
  std::vector<std::unique_ptr<DirLock>> parent_locks;
  for (const auto& p : parents_)
    parent_locks.push_back(std::make_unique<DirLock>(root_.path(p.dir).string(), false));
  Cgroup group;
  group.name = std::string(name);
  const auto busy = [&](const CgroupDir& dir, const std::string& why) {
    return fail(ErrorKind::kResource, "a cgroup named '" + group.name + "' is in use at " +
                                          root_.path(dir.dir).string() + ": " + why +
                                          "; hostfit changed nothing (pick another --name)");
  };
  // First look everywhere and change nothing: a group busy in one hierarchy is refused whole.
  std::vector<bool> leftover;
  for (const Hierarchy* h : hierarchies) {
    const CgroupDir dir = h->dir(join_cgroup(h->parent, name));
    leftover.push_back(root_.exists(dir.dir));
    if (!leftover.back()) continue;
    if (!root_.is_dir(dir.dir)) return busy(dir, "it is a file, not a group");
    if (const std::string why = busy_reason(dir.dir); !why.empty()) return busy(dir, why);
  }
  std::vector<std::unique_ptr<DirLock>>& locks = held_[group.name];
  for (size_t i = 0; i < hierarchies.size(); ++i) {
    const Hierarchy& h = *hierarchies[i];
    CgroupDir dir = h.dir(join_cgroup(h.parent, name));
    bool exists = false;
    if (leftover[i]) {
      // A leftover: start afresh so no old limit survives. rmdir fails if something moved in
      // since the look above: then it is busy after all. (A generated tree keeps its files, so
      // there the directory is reused; set_limits writes every limit it is given again.)
      auto st = root_.remove_dir(dir.dir);
      if (!st && root_.is_host()) {
        (void)remove(group);
        return busy(dir, st.error().message);
      }
      exists = !st;
    }
    if (auto st = exists ? Status{} : make_group_dir(dir.dir); !st) {
      (void)remove(group);
      return fail(st.error().kind,
                  "cannot create cgroup " + root_.path(dir.dir).string() + ": " +
                      std::strerror(st.error().sys_errno) +
                      " (run as root, or pass --cgroup-parent a writable delegated subtree)",
                  st.error().sys_errno);
    }
    if (auto id = root_.file_id(dir.dir)) dir.id = *id;
    group.dirs.push_back(dir);
    locks.push_back(std::make_unique<DirLock>(root_.path(dir.dir).string(), false));
    if (auto st = init_group_dir(h, dir); !st) {
      (void)remove(group);
      return fail(st.error());
    }
  }
  return group;
}

Status HierarchyDriver::enable_v2_controllers(const Hierarchy& h) {
  if (h.controllers.empty()) return {};  // tracking only: no controller, no placement rule
  // The levels that must delegate controllers: hostfit's own cgroup down to the parent. Above
  // its own cgroup is not hostfit's to change; it can only use what it was given.
  std::vector<std::string> levels;
  for (const auto& level : cgroup_ancestors(h.parent)) {
    if (level == h.own || level.starts_with(h.own == "/" ? "/" : h.own + "/")) {
      levels.push_back(level);
    }
  }
  if (levels.empty()) levels.push_back(h.parent);
  // No-internal-processes: a non-root cgroup that enables controllers for its children must
  // hold no process. hostfit may move itself out of the way; anyone else is not its to move.
  for (const auto& level : levels) {
    if (level == "/") continue;
    const std::string dir = join_path(h.mount_point, level);
    auto procs = procs_of(dir);
    if (!procs) return fail(procs.error().wrap("cannot check processes in a cgroup parent"));
    std::vector<pid_t> others;
    bool self_here = false;
    for (pid_t p : *procs) {
      if (p == self_pid_) {
        self_here = true;
      } else {
        others.push_back(p);
      }
    }
    if (!others.empty()) {
      return fail(ErrorKind::kResource,
                  "cannot enable controllers in " + root_.path(dir).string() + ": it holds " +
                      std::to_string(others.size()) + " other process(es) (pid " +
                      std::to_string(others.front()) +
                      "), and cgroup v2 allows processes only in leaves; pass --cgroup-parent a "
                      "delegated subtree");
    }
    if (self_here) {
      const std::string parent_dir = join_path(h.mount_point, h.parent);
      const std::string leaf = join_path(parent_dir, kSupervisorLeaf);
      // Shared, so that another hostfit's sweep leaves the leaf alone until this process is in it.
      const DirLock parent_lock(root_.path(parent_dir).string(), /*exclusive=*/false);
      if (auto st = root_.make_dir(leaf); !st) return st;
      if (auto st = write_file(root_, leaf, cgfile::kProcs, std::to_string(self_pid_)); !st)
        return fail(st.error().wrap("cannot move hostfit into its leaf cgroup"));
    }
  }
  for (const auto& level : levels) {
    const std::string dir = join_path(h.mount_point, level);
    auto offered = root_.read(join_path(dir, cgfile::kV2Controllers));
    auto enabled = root_.read(join_path(dir, cgfile::kV2SubtreeControl));
    const auto offered_list =
        offered ? split_whitespace(*offered) : std::vector<std::string_view>{};
    const auto enabled_list =
        enabled ? split_whitespace(*enabled) : std::vector<std::string_view>{};
    std::string add;
    for (const auto& c : h.controllers) {
      if (std::find(enabled_list.begin(), enabled_list.end(), c) != enabled_list.end()) continue;
      if (std::find(offered_list.begin(), offered_list.end(), c) == offered_list.end()) continue;
      add += (add.empty() ? "+" : " +") + c;
    }
    if (add.empty()) continue;
    if (auto st = write_file(root_, dir, cgfile::kV2SubtreeControl, add); !st) return st;
  }
  return {};
}

void HierarchyDriver::settle(const Cgroup& group) {
  held_.erase(group.name);
}

// The CPUs (or memory nodes) that siblings of `dir` under `parent` hold exclusively
// (cpuset.cpu_exclusive / mem_exclusive): the kernel refuses them to every other child.
CpuSet HierarchyDriver::exclusive_to_siblings(const std::string& parent, const std::string& dir,
                                              bool mems) const {
  CpuSet taken;
  auto entries = root_.list(parent);
  if (!entries) return taken;
  const std::string_view flag = mems ? cgfile::kV1MemExclusive : cgfile::kV1CpuExclusive;
  const std::string_view file = mems ? cgfile::kCpusetMems : cgfile::kCpusetCpus;
  for (const std::string& name : *entries) {
    const std::string sibling = join_path(parent, name);
    if (sibling == dir || !root_.is_dir(sibling)) continue;
    auto exclusive = root_.read_value(join_path(sibling, flag));
    if (!exclusive || *exclusive != "1") continue;
    auto set = root_.read_value(join_path(sibling, file));
    if (auto ids = set ? CpuSet::parse_list(*set) : Result<CpuSet>(CpuSet{})) taken |= *ids;
  }
  return taken;
}

Status HierarchyDriver::copy_cpuset_from_parent(const Hierarchy& h, const std::string& cgroup) {
  const std::string dir = join_path(h.mount_point, cgroup);
  const std::string parent =
      join_path(h.mount_point,
                cgroup_ancestors(cgroup).size() > 1 ? cgroup_ancestors(cgroup).rbegin()[1] : "/");
  for (bool mems : {false, true}) {
    const std::string_view file = mems ? cgfile::kCpusetMems : cgfile::kCpusetCpus;
    auto current = root_.read(join_path(dir, file));
    if (current && !trim(*current).empty()) continue;
    auto value = root_.read_value(join_path(parent, file));
    if (!value) return fail(value.error().wrap("cannot copy the parent's cpuset"));
    auto ids = CpuSet::parse_list(*value);
    if (!ids) return fail(ids.error().wrap("cannot copy the parent's cpuset"));
    const CpuSet usable = *ids - exclusive_to_siblings(parent, dir, mems);
    if (auto st = root_.write(join_path(dir, file), usable.to_list()); !st) return st;
  }
  return {};
}

Status HierarchyDriver::set_limits(const Cgroup& group, const CgroupLimits& limits) {
  const auto need = [&](std::string_view controller,
                        std::string_view flag) -> Result<const CgroupDir*> {
    const CgroupDir* d = group.dir_of(controller);
    if (!d) {
      return fail(ErrorKind::kUnsupported, "no " + std::string(controller) +
                                               " cgroup controller is mounted, so " +
                                               std::string(flag) + " cannot be applied");
    }
    return d;
  };
  if (limits.cpu_quota_us) {
    auto d = need("cpu", "a CPU quota");
    if (!d) return fail(d.error());
    if ((*d)->v2) {
      if (auto st = write_file(
              root_, (*d)->dir, cgfile::kV2CpuMax,
              std::to_string(*limits.cpu_quota_us) + " " + std::to_string(limits.cpu_period_us));
          !st)
        return st;
    } else {
      // The period first: the kernel checks quota against it.
      if (auto st = write_file(root_, (*d)->dir, cgfile::kV1CfsPeriod,
                               std::to_string(limits.cpu_period_us));
          !st)
        return st;
      if (auto st = write_file(root_, (*d)->dir, cgfile::kV1CfsQuota,
                               std::to_string(*limits.cpu_quota_us));
          !st)
        return st;
    }
  }
  for (bool mems : {false, true}) {
    const auto& set = mems ? limits.mems : limits.cpus;
    if (!set) continue;
    auto d = need("cpuset", mems ? "a memory-node set" : "a CPU set");
    if (!d) return fail(d.error());
    if (auto st = write_file(root_, (*d)->dir, mems ? cgfile::kCpusetMems : cgfile::kCpusetCpus,
                             set->to_list());
        !st)
      return st;
  }
  if (limits.memory_max_bytes) {
    auto d = need("memory", "a memory limit");
    if (!d) return fail(d.error());
    const std::string value = std::to_string(*limits.memory_max_bytes);
    if ((*d)->v2) {
      if (auto st = write_file(root_, (*d)->dir, cgfile::kV2MemoryMax, value); !st) return st;
      // No swapping around the limit: a workload over it is OOM-killed, as with Docker's
      // --memory without --memory-swap on a host without swap accounting.
      if (root_.exists(join_path((*d)->dir, cgfile::kV2MemorySwapMax))) {
        if (auto st = write_file(root_, (*d)->dir, cgfile::kV2MemorySwapMax, "0"); !st) return st;
      }
    } else {
      if (auto st = write_file(root_, (*d)->dir, cgfile::kV1MemoryLimit, value); !st) return st;
      // memory+swap at the same value: the limit covers swap too (memsw must be >= the limit,
      // so it is written second).
      if (root_.exists(join_path((*d)->dir, cgfile::kV1MemswLimit))) {
        if (auto st = write_file(root_, (*d)->dir, cgfile::kV1MemswLimit, value); !st) return st;
      }
    }
  }
  if (limits.memory_high_bytes) {
    auto d = need("memory", "memory.high");
    if (!d) return fail(d.error());
    if (!(*d)->v2) {
      return fail(ErrorKind::kUnsupported,
                  "--memory-high needs the cgroup v2 memory controller (memory.high); this "
                  "host's memory controller is cgroup v1 (use --memory for a hard limit)");
    }
    if (auto st = write_file(root_, (*d)->dir, cgfile::kV2MemoryHigh,
                             std::to_string(*limits.memory_high_bytes));
        !st)
      return st;
  }
  if (limits.pids_max) {
    auto d = need("pids", "a process limit");
    if (!d) return fail(d.error());
    if (auto st = write_file(root_, (*d)->dir, cgfile::kPidsMax, std::to_string(*limits.pids_max));
        !st)
      return st;
  }
  return {};
}

Status HierarchyDriver::attach(const Cgroup& group, pid_t pid) {
  const std::string value = std::to_string(pid);
  for (const auto& d : group.dirs) {
    if (auto st = write_file(root_, d.dir, cgfile::kProcs, value); !st) return st;
  }
  return {};
}

std::vector<std::string> HierarchyDriver::join_files(const Cgroup& group) const {
  std::vector<std::string> files;
  // v1: "tasks" moves the writing thread alone, which the kernel does without its global
  // threadgroup lock; cgroup.procs takes that lock, and its write waits for an RCU grace period
  // (6-15 ms per start on a busy 2-CPU host, issue 17 item 23). A just-cloned child has one thread,
  // so both move the same process. v2 domain groups accept processes only through cgroup.procs.
  for (const auto& d : group.dirs)
    files.push_back(
        root_.path(join_path(d.dir, d.v2 ? cgfile::kProcs : cgfile::kV1Tasks)).string());
  return files;
}

Result<std::vector<pid_t>> HierarchyDriver::procs_of(const std::string& dir) const {
  auto text = root_.read(join_path(dir, cgfile::kProcs));
  if (!text) {
    // A fixture directory without the file has no processes.
    if (text.error().sys_errno == ENOENT && !root_.is_host()) return std::vector<pid_t>{};
    return fail(text.error());
  }
  return parse_procs(*text);
}

Result<std::vector<pid_t>> HierarchyDriver::processes(const Cgroup& group) const {
  std::set<pid_t> all;
  for (const auto& d : group.dirs) {
    auto pids = procs_of(d.dir);
    if (!pids) return fail(pids.error());
    all.insert(pids->begin(), pids->end());
  }
  return std::vector<pid_t>(all.begin(), all.end());
}

Result<CgroupUsage> HierarchyDriver::usage(const Cgroup& group) const {
  CgroupUsage u;
  if (const CgroupDir* d = group.dir_of("memory")) {
    u.memory_bytes =
        read_u64(root_, d->dir, d->v2 ? cgfile::kV2MemoryCurrent : cgfile::kV1MemoryUsage);
    u.memory_peak_bytes =
        read_u64(root_, d->dir, d->v2 ? cgfile::kV2MemoryPeak : cgfile::kV1MemoryMaxUsage);
    if (auto stat = root_.read(join_path(d->dir, cgfile::kMemoryStat)))
      u.memory_stat = parse_keyed_numbers(*stat);
  }
  u.cpu_usage_us = cpu_usage_us(group);
  if (const CgroupDir* d = group.dir_of("pids"))
    u.pids = read_u64(root_, d->dir, cgfile::kPidsCurrent);
  return u;
}

std::optional<uint64_t> HierarchyDriver::cpu_usage_us(const Cgroup& group) const {
  if (const CgroupDir* d = group.dir_of("cpuacct"); d && !d->v2) {
    if (auto ns = read_u64(root_, d->dir, cgfile::kV1CpuacctUsage)) return *ns / 1000;
    return std::nullopt;
  }
  const auto unified =
      std::find_if(group.dirs.begin(), group.dirs.end(), [](const CgroupDir& d) { return d.v2; });
  if (unified == group.dirs.end()) return std::nullopt;
  // v2 keeps CPU usage in cpu.stat of every group, with or without the cpu controller.
  auto stat = root_.read(join_path(unified->dir, cgfile::kV2CpuStat));
  if (!stat) return std::nullopt;
  const auto keys = parse_keyed_numbers(*stat);
  if (auto it = keys.find(cgfile::kCpuUsageUsec); it != keys.end()) return it->second;
  return std::nullopt;
}

Result<OomCounters> HierarchyDriver::oom_counters(const Cgroup& group) const {
  const CgroupDir* d = group.dir_of("memory");
  if (!d) return fail(ErrorKind::kUnsupported, "no memory cgroup controller is mounted");
  const std::string file =
      join_path(d->dir, d->v2 ? cgfile::kV2MemoryEvents : cgfile::kV1OomControl);
  auto text = root_.read(file);
  if (!text) return fail(text.error());
  OomCounters c = parse_oom_counters(*text, d->v2);
  c.source = file;
  if (!d->v2) c.limit_hits = read_u64(root_, d->dir, cgfile::kV1MemoryFailcnt).value_or(0);
  return c;
}

bool HierarchyDriver::still_ours(const CgroupDir& dir) const {
  if (dir.id == FileId{}) return root_.is_dir(dir.dir);
  auto now = root_.file_id(dir.dir);
  return now && *now == dir.id;
}

Status HierarchyDriver::kill_and_remove(const CgroupDir& dir) {
  const auto deadline = std::chrono::steady_clock::now() + kRemoveWait;
  for (;;) {
    // A removed directory never comes back under its id: when the path names ours before and
    // after reading its processes, they were ours, and so is the empty group the rmdir removes.
    // Another hostfit's group of the same name, made after ours was removed behind our back, is
    // never killed nor removed.
    if (!still_ours(dir)) return {};
    auto procs = procs_of(dir.dir);
    if (!still_ours(dir)) return {};
    if (procs && !procs->empty() && root_.is_host()) {
      for (pid_t pid : *procs) {
        if (pid != self_pid_) ::kill(pid, SIGKILL);
      }
      if (!still_ours(dir)) return {};
    }
    auto st = root_.remove_dir(dir.dir);
    if (st) return st;
    // EBUSY while killed processes are still exiting; anything else is final.
    if (st.error().sys_errno != EBUSY || std::chrono::steady_clock::now() > deadline) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Status HierarchyDriver::remove(const Cgroup& group) {
  Status first_error;
  for (const auto& d : group.dirs) {
    if (auto st = kill_and_remove(d); !st && first_error) first_error = st;
  }
  settle(group);
  return first_error;
}

// Every hierarchy's, used or not: an earlier run may have made the parent. rmdir fails while a
// group is in it, as it should; the next group's create() makes it again (make_group_dir).
void HierarchyDriver::release_parents() {
  for (const auto& h : hierarchies_) {
    if (h.v2 || !h.default_parent) continue;
    if (std::find(h.controllers.begin(), h.controllers.end(), "cpuset") == h.controllers.end())
      continue;
    (void)root_.remove_dir(join_path(h.mount_point, h.parent));
  }
}

}  // namespace cgroup_internal

Result<std::unique_ptr<CgroupDriver>> open_cgroup_driver(const Sysroot& root,
                                                         const CgroupFacts& facts,
                                                         const CgroupDriverOptions& options) {
  using cgroup_internal::Hierarchy;
  std::vector<Hierarchy> hierarchies;
  std::set<std::string> taken;
  bool any_v1 = false;
  for (const auto& m : facts.mounts) {
    // The pre-cgroup "cpuset" file system (/dev/cpuset) is not driven; a cgroup cpuset is. A
    // hierarchy mounted twice is driven through the mount the probe reads.
    if (m.v2 || m.legacy_cpuset_fs || !m.primary) continue;
    Hierarchy h;
    h.mount_point = m.mount_point;
    for (const auto& c : m.controllers) {
      if (is_used(c) && !taken.contains(c)) h.controllers.push_back(c);
    }
    if (h.controllers.empty()) continue;
    for (const auto& c : h.controllers) {
      taken.insert(c);
      h.name += (h.name.empty() ? "" : ",") + c;
    }
    auto own = own_cgroup(m, options);
    if (!own) return fail(own.error());
    h.own = *own;
    any_v1 = true;
    hierarchies.push_back(std::move(h));
  }
  for (const auto& m : facts.mounts) {
    if (!m.v2 || !m.primary) continue;
    Hierarchy h;
    h.name = "unified";
    h.mount_point = m.mount_point;
    h.v2 = true;
    // On a hybrid host the unified tree carries what no v1 hierarchy does (often nothing: the
    // group is then tracked there only, as systemd does).
    for (const auto& c : m.controllers) {
      if (is_used(c) && c != "cpuacct" && !taken.contains(c)) h.controllers.push_back(c);
    }
    auto own = own_cgroup(m, options);
    if (!own) return fail(own.error());
    h.own = *own;
    hierarchies.push_back(std::move(h));
    break;  // one unified tree is enough
  }
  if (hierarchies.empty()) {
    return fail(ErrorKind::kUnsupported,
                "no cgroup hierarchy is mounted (" + facts.mode_source +
                    "); hostfit run needs cgroup v1 or v2 under /sys/fs/cgroup");
  }
  for (auto& h : hierarchies) {
    h.default_parent = options.parent.empty();
    if (h.default_parent) {
      h.parent = join_cgroup(h.own, "hostfit");
    } else {
      auto parent = normalize_cgroup_path(options.parent);
      if (!parent) return fail(parent.error().wrap("bad --cgroup-parent"));
      h.parent = *parent;
    }
  }
  mark_used(hierarchies, options.controllers);
  const pid_t self = options.self_pid > 0 ? options.self_pid : ::getpid();
  if (any_v1) return cgroup_internal::make_v1_driver(root, std::move(hierarchies), self);
  return cgroup_internal::make_v2_driver(root, std::move(hierarchies), self);
}

}  // namespace hostfit
