// cgroup discovery: which hierarchies are mounted, where the target sits in each (translated by
// each mount's root, as the kernel names both), and the memory and pids limits over every level of
// its chain that is visible, the mount's root included.
#include <algorithm>
#include <array>
#include <set>

#include "hostfit/probe.h"
#include "kernel_files.h"
#include "mounts.h"

namespace hostfit {
namespace {

constexpr std::array<std::string_view, 4> kProbedControllers = {"cpu", "cpuset", "memory", "pids"};
// At most this many directories are looked at to find names a cgroup namespace hides.
constexpr size_t kMaxHiddenSearch = 4096;

constexpr std::string_view kSysFsCgroup = "/sys/fs/cgroup";

bool has_controller(const CgroupMount& m, std::string_view controller) {
  return std::find(m.controllers.begin(), m.controllers.end(), controller) != m.controllers.end();
}

bool under_sys_fs_cgroup(const CgroupMount& m) {
  return m.mount_point == kSysFsCgroup ||
         m.mount_point.starts_with(std::string(kSysFsCgroup) + "/");
}

// Mounts of the same hierarchy carry the same controllers (a v1 controller lives in one hierarchy;
// there is one unified hierarchy).
std::string hierarchy_key(const CgroupMount& m) {
  if (m.v2) return "cgroup2";
  std::vector<std::string> sorted = m.controllers;
  std::sort(sorted.begin(), sorted.end());
  std::string key;
  for (const auto& c : sorted)
    key += c + ",";
  return key;
}

void read_mounts(const Sysroot& root, const std::string& proc, CgroupFacts& facts) {
  // mountinfo of the target process, else /proc/mounts (older captures have only that).
  const std::string mountinfo_path = join_path(proc, kfile::kPidMountInfo);
  if (auto text = root.read(mountinfo_path)) {
    facts.mounts = parse_cgroup_mounts(*text, MountTable::kMountInfo);
    facts.mode_source = mountinfo_path;
  } else if (auto mounts = root.read(kfile::kMounts)) {
    facts.mounts = parse_cgroup_mounts(*mounts, MountTable::kProcMounts);
    facts.mode_source = std::string(kfile::kMounts);
  } else {
    facts.mode_source = text.error().message;
  }
  bool any_v1 = false, any_v2 = false;
  for (auto& m : facts.mounts) {
    if (m.v2) {
      any_v2 = true;
      // Each mount's root lists what is enabled for it: inside a container, its own cgroup.
      if (auto list = root.read_value(join_path(m.mount_point, kfile::kV2Controllers))) {
        for (auto c : split_whitespace(*list))
          m.controllers.emplace_back(c);
      }
    } else if (std::any_of(m.controllers.begin(), m.controllers.end(),
                           [](const std::string& c) { return !c.starts_with("name="); })) {
      any_v1 = true;
    }
  }
  facts.mode = any_v1 && any_v2 ? CgroupMode::kHybrid
               : any_v1         ? CgroupMode::kV1
               : any_v2         ? CgroupMode::kV2
                                : CgroupMode::kNone;
}

// "ID:CONTROLLERS:PATH" lines; the path is everything after the second ':' (names may hold ':').
void read_process_paths(const Sysroot& root, const std::string& proc, CgroupFacts& facts) {
  if (auto text = root.read(join_path(proc, kfile::kPidCgroup))) {
    for (std::string_view line : split(*text, '\n')) {
      const auto first = line.find(':');
      const auto second = first == std::string_view::npos ? first : line.find(':', first + 1);
      if (second == std::string_view::npos) continue;
      const std::string path(trim(line.substr(second + 1)));
      const std::string_view controllers = line.substr(first + 1, second - first - 1);
      if (controllers.empty()) {
        facts.paths[""] = path;
      } else {
        for (auto c : split(controllers, ','))
          facts.paths[std::string(c)] = path;
      }
    }
  } else if (auto cpuset = root.read_value(join_path(proc, kfile::kPidCpuset))) {
    // Kernels without /proc/PID/cgroup (and captures that kept only this file): the cpuset path.
    facts.paths["cpuset"] = *cpuset;
    facts.paths[""] = *cpuset;
  }
}

// The target's path in a mount's hierarchy, from /proc/PID/cgroup (v2: the "0::" line).
const std::string* path_for(const CgroupFacts& facts, const CgroupMount& m) {
  if (m.v2) {
    const auto it = facts.paths.find("");
    return it == facts.paths.end() ? nullptr : &it->second;
  }
  for (const auto& c : m.controllers) {
    if (const auto it = facts.paths.find(c); it != facts.paths.end()) return &it->second;
  }
  return nullptr;
}

std::string describe(const CgroupMount& m) {
  if (m.v2) return "the unified hierarchy at " + m.mount_point;
  std::string names;
  for (const auto& c : m.controllers)
    names += (names.empty() ? "" : ",") + c;
  return "the " + (names.empty() ? std::string("unnamed") : names) + " hierarchy at " +
         m.mount_point;
}

std::optional<std::string> pid_of(const Sysroot& root, const ProbeTarget& target) {
  if (target.kind == ProbeTarget::Kind::kCgroup) return std::nullopt;
  auto status = root.read(join_path(target.proc_dir(), kfile::kPidStatus));
  if (status) {
    for (std::string_view line : split(*status, '\n')) {
      if (line.starts_with("Pid:")) return std::string(trim(line.substr(4)));
    }
  }
  if (target.kind == ProbeTarget::Kind::kPid) return std::to_string(target.pid);
  return std::nullopt;
}

bool lists_pid(const Sysroot& root, const std::string& dir, const std::string& pid) {
  auto procs = root.read(join_path(dir, kfile::kProcs));
  if (!procs) return false;
  for (std::string_view line : split(*procs, '\n')) {
    if (trim(line) == pid) return true;
  }
  return false;
}

// The names a cgroup namespace hides between a mount's root and the target (after "unshare
// --cgroup" the mounts still show the old root: mountinfo says "/.." and /proc/self/cgroup "/").
// The kernel's own account decides: the one directory at that depth whose cgroup.procs lists the
// target's pid.
Result<std::string> find_hidden(const Sysroot& root, const CgroupMount& m, const MountPlacement& p,
                                const std::optional<std::string>& pid) {
  const std::string known = to_string(NsPath{0, p.below});
  const std::string what = "cgroup " + known + " lies " + std::to_string(p.hidden) +
                           " level(s) below " + m.root + " (mounted at " + m.mount_point +
                           ") under names its cgroup namespace does not show";
  if (!pid)
    return fail(ErrorKind::kNotFound, what + ", and a cgroup target has no pid to find them");
  std::vector<std::string> frontier = {""};
  size_t looked = 0;
  for (int depth = 0; depth < p.hidden; ++depth) {
    std::vector<std::string> next;
    for (const auto& prefix : frontier) {
      auto names = root.list(join_path(m.mount_point, prefix));
      if (!names) continue;
      for (const auto& name : *names) {
        if (++looked > kMaxHiddenSearch) {
          return fail(ErrorKind::kNotFound, what + "; more than " +
                                                std::to_string(kMaxHiddenSearch) +
                                                " directories to search for pid " + *pid);
        }
        const std::string candidate = prefix + "/" + name;
        if (root.is_dir(join_path(m.mount_point, candidate))) next.push_back(candidate);
      }
    }
    frontier = std::move(next);
  }
  for (const auto& prefix : frontier) {
    const std::string relative = prefix + (known == "/" ? "" : known);
    if (lists_pid(root, join_path(m.mount_point, relative), *pid)) return relative;
  }
  return fail(ErrorKind::kNotFound,
              what + "; no cgroup there lists pid " + *pid + " in " + std::string(kfile::kProcs));
}

// Where the target sits in every mount, and which mount of each hierarchy is read.
void place_target(const Sysroot& root, const ProbeTarget& target, CgroupFacts& facts) {
  std::vector<MountPlacement> placements;
  for (auto& m : facts.mounts) {
    const std::string* path = path_for(facts, m);
    MountPlacement p;
    if (path) {
      p = place_below(m.root, *path);
    } else {
      p.why = "no line for " + describe(m) + " in " + join_path(target.proc_dir(), "cgroup");
    }
    placements.push_back(std::move(p));
  }
  // One primary mount per hierarchy: visible, under /sys/fs/cgroup, fewest hidden names, first.
  std::map<std::string, size_t> best;
  const auto better = [&](size_t a, size_t b) {
    const MountPlacement &pa = placements[a], &pb = placements[b];
    if (pa.visible != pb.visible) return pa.visible;
    const bool sa = under_sys_fs_cgroup(facts.mounts[a]), sb = under_sys_fs_cgroup(facts.mounts[b]);
    if (sa != sb) return sa;
    return pa.hidden < pb.hidden;
  };
  for (size_t i = 0; i < facts.mounts.size(); ++i) {
    const auto [it, fresh] = best.try_emplace(hierarchy_key(facts.mounts[i]), i);
    if (!fresh && better(i, it->second)) it->second = i;
  }
  for (const auto& [key, index] : best)
    facts.mounts[index].primary = true;

  const auto pid = pid_of(root, target);
  for (size_t i = 0; i < facts.mounts.size(); ++i) {
    CgroupMount& m = facts.mounts[i];
    const MountPlacement& p = placements[i];
    if (!p.visible) {
      m.target_unknown_reason = p.why + " at " + m.mount_point;
    } else if (p.hidden == 0) {
      m.target = to_string(NsPath{0, p.below});
    } else if (!m.primary) {
      m.target_unknown_reason = "not searched: another mount of this hierarchy is read";
    } else if (auto found = find_hidden(root, m, p, pid)) {
      m.target = *found;
    } else {
      m.target_unknown_reason = found.error().message;
    }
  }
}

void resolve_controllers(CgroupFacts& facts) {
  for (auto controller : kProbedControllers) {
    // A v1 hierarchy that carries the controller wins; otherwise the unified one, if it offers it.
    const CgroupMount* mount = nullptr;
    for (bool v2 : {false, true}) {
      for (const auto& m : facts.mounts) {
        if (!mount && m.primary && m.v2 == v2 && has_controller(m, controller)) mount = &m;
      }
    }
    if (!mount) continue;
    if (!mount->target) {
      facts.unknown_controllers[std::string(controller)] = mount->target_unknown_reason;
      continue;
    }
    ControllerPath cp;
    cp.controller = controller;
    cp.cgroup = *path_for(facts, *mount);
    cp.mount_point = mount->mount_point;
    cp.relative = *mount->target;
    cp.dir = join_path(mount->mount_point, cp.relative);
    cp.v2 = mount->v2;
    cp.legacy_cpuset_fs = mount->legacy_cpuset_fs;
    facts.controllers.push_back(std::move(cp));
  }
}

// A limit file at one level: absent at the mount's root means the hierarchy's true root, which has
// no such file (v2) and limits nothing.
struct LevelLimit {
  bool skip = false;
  Result<Limit> value = Limit::unlimited();
  std::string raw;
};

LevelLimit read_level_limit(const Sysroot& root, const std::string& file, bool mount_root) {
  LevelLimit out;
  if (mount_root && !root.exists(file)) {
    out.skip = true;
    return out;
  }
  auto raw = root.read_value(file);
  if (!raw) {
    out.value = std::unexpected(raw.error());
    return out;
  }
  out.raw = *raw;
  out.value = parse_kernel_limit(*raw);
  return out;
}

void probe_memory_limits(const Sysroot& root, CgroupFacts& facts) {
  const ControllerPath* memory = facts.find("memory");
  if (!memory) {
    if (auto it = facts.unknown_controllers.find("memory"); it != facts.unknown_controllers.end()) {
      facts.memory_limit = Fact<Limit>::unknown("", it->second);
      facts.memory_high = Fact<Limit>::unknown("", it->second);
      facts.memory_usage = Fact<uint64_t>::unknown("", it->second);
      return;
    }
    const std::string why = "no memory cgroup controller is mounted";
    facts.memory_limit = Fact<Limit>::of(Limit::unlimited(), "no memory controller", {});
    facts.memory_high = Fact<Limit>::unknown("", why);
    facts.memory_usage = Fact<uint64_t>::unknown("", why);
    return;
  }
  const std::string_view limit_file = memory->v2 ? kfile::kV2MemoryMax : kfile::kV1MemoryLimit;
  Limit limit = Limit::unlimited();
  Limit high = Limit::unlimited();
  std::string limit_source, limit_raw, unreadable;
  const auto chain = memory->visible_chain();
  for (size_t i = 0; i < chain.size(); ++i) {
    facts.memory_chain.push_back(chain[i].cgroup);
    const std::string file = join_path(chain[i].dir, limit_file);
    const LevelLimit level = read_level_limit(root, file, i == 0);
    if (level.skip) continue;
    if (!level.value) {
      unreadable = level.value.error().message;
    } else if (!level.value->is_unlimited() &&
               (limit.is_unlimited() || *level.value->value < *limit.value)) {
      limit = *level.value;
      limit_source = file;
      limit_raw = level.raw;
      facts.memory_limit_cgroup = chain[i].cgroup;
    }
    if (memory->v2) {
      const LevelLimit h =
          read_level_limit(root, join_path(chain[i].dir, kfile::kV2MemoryHigh), i == 0);
      if (!h.skip && h.value) high = min_limit(high, *h.value);
    }
  }
  if (!root.is_dir(memory->dir)) {
    facts.memory_limit = Fact<Limit>::unknown(
        memory->dir, "the memory cgroup " + memory->cgroup + " does not exist at " + memory->dir);
  } else if (limit_source.empty() && !unreadable.empty()) {
    facts.memory_limit = Fact<Limit>::unknown(std::string(limit_file), unreadable);
  } else {
    facts.memory_limit =
        Fact<Limit>::of(limit, limit_source.empty() ? memory->dir : limit_source, limit_raw);
  }
  if (memory->v2) {
    facts.memory_high = Fact<Limit>::of(high, join_path(memory->dir, kfile::kV2MemoryHigh));
  } else {
    facts.memory_high = Fact<Limit>::unknown("", "cgroup v1 has no memory.high");
  }
  const std::string usage_file =
      join_path(memory->dir, memory->v2 ? kfile::kV2MemoryCurrent : kfile::kV1MemoryUsage);
  auto usage = root.read_value(usage_file);
  auto usage_value = usage ? parse_u64(*usage) : std::nullopt;
  facts.memory_usage = usage_value
                           ? Fact<uint64_t>::of(*usage_value, usage_file, *usage)
                           : Fact<uint64_t>::unknown(usage_file, usage ? "not a number: " + *usage
                                                                       : usage.error().message);
}

void probe_pids_limit(const Sysroot& root, CgroupFacts& facts) {
  const ControllerPath* pids = facts.find("pids");
  if (!pids) {
    const auto it = facts.unknown_controllers.find("pids");
    facts.pids_max = Fact<Limit>::unknown("", it != facts.unknown_controllers.end()
                                                  ? it->second
                                                  : "no pids cgroup controller is mounted");
    return;
  }
  Limit limit = Limit::unlimited();
  std::string source = pids->dir;
  const auto chain = pids->visible_chain();
  for (size_t i = 0; i < chain.size(); ++i) {
    const std::string file = join_path(chain[i].dir, kfile::kPidsMax);
    const LevelLimit level = read_level_limit(root, file, i == 0);
    if (level.skip || !level.value) continue;
    if (!level.value->is_unlimited() &&
        (limit.is_unlimited() || *level.value->value < *limit.value)) {
      limit = *level.value;
      source = file;
    }
  }
  facts.pids_max = Fact<Limit>::of(limit, source);
}

}  // namespace

std::vector<std::string> cgroup_ancestors(std::string_view cgroup) {
  std::vector<std::string> chain{"/"};
  std::string current;
  for (std::string_view part : split(cgroup, '/')) {
    if (part.empty()) continue;
    current += "/";
    current += part;
    chain.push_back(current);
  }
  return chain;
}

std::vector<ChainLevel> ControllerPath::visible_chain() const {
  // Names: the target's own, then each parent by the kernel's naming ("/" -> "/..").
  std::vector<std::string> names;
  for (std::string_view part : split(relative, '/')) {
    if (!part.empty()) names.emplace_back(part);
  }
  std::vector<ChainLevel> chain(names.size() + 1);
  NsPath name = parse_ns_path(cgroup).value_or(NsPath{});
  std::string dir = mount_point;
  for (size_t i = chain.size(); i-- > 0;) {
    chain[i].cgroup = to_string(name);
    if (name.down.empty()) {
      ++name.up;
    } else {
      name.down.pop_back();
    }
  }
  chain[0].dir = mount_point;
  for (size_t i = 0; i < names.size(); ++i) {
    dir = join_path(dir, names[i]);
    chain[i + 1].dir = dir;
  }
  return chain;
}

const char* to_string(CgroupMode mode) {
  switch (mode) {
    case CgroupMode::kNone:
      return "none";
    case CgroupMode::kV1:
      return "v1";
    case CgroupMode::kV2:
      return "v2";
    case CgroupMode::kHybrid:
      return "hybrid";
  }
  return "none";
}

std::string ProbeTarget::proc_dir() const {
  switch (kind) {
    case Kind::kSelf:
      return "/proc/self";
    case Kind::kPid:
      return "/proc/" + std::to_string(pid);
    case Kind::kCgroup:
      return "/proc/self";
  }
  return "/proc/self";
}

const ControllerPath* CgroupFacts::find(std::string_view controller) const {
  for (const auto& c : controllers) {
    if (c.controller == controller) return &c;
  }
  return nullptr;
}

CgroupFacts probe_cgroups(const Sysroot& root, const ProbeTarget& target) {
  CgroupFacts facts;
  const std::string proc = target.proc_dir();
  read_mounts(root, proc, facts);
  if (target.kind == ProbeTarget::Kind::kCgroup) {
    // The same path in every hierarchy, named as /proc/PID/cgroup would name it.
    std::string path = target.cgroup_path.empty() ? "/" : target.cgroup_path;
    if (path.front() != '/') path.insert(path.begin(), '/');
    facts.paths[""] = path;
    for (const auto& m : facts.mounts) {
      for (const auto& c : m.controllers)
        facts.paths[c] = path;
    }
    for (auto c : kProbedControllers)
      facts.paths[std::string(c)] = path;
  } else {
    read_process_paths(root, proc, facts);
  }
  place_target(root, target, facts);
  resolve_controllers(facts);
  probe_memory_limits(root, facts);
  probe_pids_limit(root, facts);
  return facts;
}

Status check_target(const Sysroot& root, const HostFacts& facts) {
  if (facts.target.kind == ProbeTarget::Kind::kPid) {
    // Without this, a probe of a gone process reads nothing and answers for a host without limits.
    if (root.is_dir(facts.target.proc_dir())) return {};
    return fail(ErrorKind::kNotFound, "no process " + std::to_string(facts.target.pid) + ": " +
                                          root.path(facts.target.proc_dir()).string() +
                                          " does not exist");
  }
  if (facts.target.kind != ProbeTarget::Kind::kCgroup) return {};
  const CgroupFacts& cg = facts.cgroup;
  const std::string path = cg.paths.count("") ? cg.paths.at("") : facts.target.cgroup_path;
  std::string looked;
  std::set<std::string> seen;
  for (const auto& m : cg.mounts) {
    if (m.target && root.is_dir(join_path(m.mount_point, *m.target))) return {};
    if (seen.insert(m.mount_point).second) looked += (looked.empty() ? "" : ", ") + m.mount_point;
  }
  if (looked.empty()) {
    return fail(
        ErrorKind::kNotFound,
        "no cgroup " + path + ": no cgroup hierarchy is mounted (read " + cg.mode_source + ")");
  }
  return fail(ErrorKind::kNotFound,
              "no cgroup " + path + " in any mounted hierarchy (looked in " + looked + ")");
}

}  // namespace hostfit
