// cgroup discovery: which hierarchies are mounted, where the target sits in each, and the memory
// and pids limits over its whole ancestor chain.
#include <algorithm>
#include <array>

#include "hostfit/probe.h"
#include "kernel_files.h"

namespace hostfit {
namespace {

constexpr std::array<std::string_view, 15> kV1Controllers = {
    "cpu",     "cpuacct",  "cpuset",     "memory",  "pids", "blkio", "devices", "freezer",
    "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc",  "io"};
constexpr std::array<std::string_view, 4> kProbedControllers = {"cpu", "cpuset", "memory", "pids"};

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mount_path(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string_view oct = s.substr(i + 1, 3);
      if (std::all_of(oct.begin(), oct.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out += static_cast<char>((oct[0] - '0') * 64 + (oct[1] - '0') * 8 + (oct[2] - '0'));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

std::vector<std::string> v1_controllers_in(std::string_view options) {
  std::vector<std::string> out;
  for (std::string_view opt : split(options, ',')) {
    if (std::find(kV1Controllers.begin(), kV1Controllers.end(), opt) != kV1Controllers.end()) {
      out.emplace_back(opt);
    } else if (opt.starts_with("name=")) {
      out.emplace_back(opt);
    }
  }
  return out;
}

// One cgroup-ish mount from a mountinfo or /proc/mounts line, or nullopt for other file systems.
std::optional<CgroupMount> mount_from(std::string_view fstype, std::string_view mount_point,
                                      std::string_view root, std::string_view super_options) {
  CgroupMount m;
  m.mount_point = unescape_mount_path(mount_point);
  m.root = unescape_mount_path(root);
  if (fstype == "cgroup2") {
    m.v2 = true;
  } else if (fstype == "cgroup") {
    m.controllers = v1_controllers_in(super_options);
  } else if (fstype == "cpuset") {
    // The pre-cgroup cpuset file system (mounted at /dev/cpuset): files are named "cpus", "mems".
    m.legacy_cpuset_fs = true;
    m.controllers = {"cpuset"};
  } else {
    return std::nullopt;
  }
  return m;
}

std::vector<CgroupMount> parse_mountinfo(std::string_view text) {
  std::vector<CgroupMount> mounts;
  for (std::string_view line : split(text, '\n')) {
    const auto fields = split_whitespace(line);
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
    const auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 6 || dash == fields.end() || fields.end() - dash < 3) continue;
    if (auto m = mount_from(dash[1], fields[4], fields[3], dash + 3 < fields.end() ? dash[3] : ""))
      mounts.push_back(std::move(*m));
  }
  return mounts;
}

std::vector<CgroupMount> parse_proc_mounts(std::string_view text) {
  std::vector<CgroupMount> mounts;
  for (std::string_view line : split(text, '\n')) {
    const auto fields = split_whitespace(line);
    // SOURCE MOUNTPOINT FSTYPE OPTIONS DUMP PASS
    if (fields.size() < 4) continue;
    if (auto m = mount_from(fields[2], fields[1], "/", fields[3])) mounts.push_back(std::move(*m));
  }
  return mounts;
}

bool has_controller(const CgroupMount& m, std::string_view controller) {
  return std::find(m.controllers.begin(), m.controllers.end(), controller) != m.controllers.end();
}

std::string level_dir(const std::string& mount_point, const std::string& cgroup) {
  return join_path(mount_point, cgroup);
}

}  // namespace

std::string CgroupMount::relative(const std::string& cgroup) const {
  if (root.empty() || root == "/") return cgroup;
  if (cgroup == root) return "/";
  if (cgroup.starts_with(root + "/")) return cgroup.substr(root.size());
  return cgroup;
}

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

  // Mounts: mountinfo of the target process, else /proc/mounts (older captures have only that).
  const std::string mountinfo_path = join_path(proc, kfile::kPidMountInfo);
  if (auto text = root.read(mountinfo_path)) {
    facts.mounts = parse_mountinfo(*text);
    facts.mode_source = mountinfo_path;
  } else if (auto mounts = root.read(kfile::kMounts)) {
    facts.mounts = parse_proc_mounts(*mounts);
    facts.mode_source = std::string(kfile::kMounts);
  } else {
    facts.mode_source = text.error().message;
  }
  // A controller bound to two v1 mounts (bind mounts) is counted once: keep the first.
  bool any_v1 = false, any_v2 = false;
  for (auto& m : facts.mounts) {
    if (m.v2) {
      any_v2 = true;
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

  // Where the target sits in each hierarchy.
  if (target.kind == ProbeTarget::Kind::kCgroup) {
    std::string path = target.cgroup_path.empty() ? "/" : target.cgroup_path;
    if (path.front() != '/') path.insert(path.begin(), '/');
    facts.paths[""] = path;
    for (auto c : kProbedControllers)
      facts.paths[std::string(c)] = path;
  } else if (auto text = root.read(join_path(proc, kfile::kPidCgroup))) {
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

  for (auto controller : kProbedControllers) {
    // A v1 hierarchy that carries the controller wins; otherwise the unified one, if it offers it.
    const CgroupMount* mount = nullptr;
    for (const auto& m : facts.mounts) {
      if (!m.v2 && has_controller(m, controller)) {
        mount = &m;
        break;
      }
    }
    if (!mount) {
      for (const auto& m : facts.mounts) {
        if (m.v2 && has_controller(m, controller)) {
          mount = &m;
          break;
        }
      }
    }
    if (!mount) continue;
    const auto it = facts.paths.find(mount->v2 ? "" : std::string(controller));
    if (it == facts.paths.end()) continue;
    ControllerPath cp;
    cp.controller = controller;
    cp.cgroup = mount->relative(it->second);
    cp.mount_point = mount->mount_point;
    cp.dir = level_dir(mount->mount_point, cp.cgroup);
    cp.v2 = mount->v2;
    cp.legacy_cpuset_fs = mount->legacy_cpuset_fs;
    facts.controllers.push_back(std::move(cp));
  }

  // Memory limit, memory.high and usage over the memory chain.
  const ControllerPath* memory = facts.find("memory");
  if (!memory) {
    const std::string why = "no memory cgroup controller is mounted";
    facts.memory_limit = Fact<Limit>::of(Limit::unlimited(), "no memory controller", {});
    facts.memory_high = Fact<Limit>::unknown("", why);
    facts.memory_usage = Fact<uint64_t>::unknown("", why);
  } else {
    const std::string& mount_point = memory->mount_point;
    facts.memory_chain = cgroup_ancestors(memory->cgroup);
    const std::string_view limit_file = memory->v2 ? kfile::kV2MemoryMax : kfile::kV1MemoryLimit;
    Limit limit = Limit::unlimited();
    Limit high = Limit::unlimited();
    std::string limit_source, limit_raw, unreadable;
    for (const auto& level : facts.memory_chain) {
      const std::string dir = level_dir(mount_point, level);
      // The v2 root has no memory.max; v1's root reports "unlimited". Neither limits anything.
      if (memory->v2 && level == "/") continue;
      const std::string file = join_path(dir, limit_file);
      auto raw = root.read_value(file);
      auto value = raw ? parse_kernel_limit(*raw) : std::unexpected(raw.error());
      if (!value) {
        unreadable = value.error().message;
        continue;
      }
      if (!value->is_unlimited() && (limit.is_unlimited() || *value->value < *limit.value)) {
        limit = *value;
        limit_source = file;
        limit_raw = *raw;
        facts.memory_limit_cgroup = level;
      }
      if (memory->v2) {
        if (auto h = root.read_value(join_path(dir, kfile::kV2MemoryHigh))) {
          if (auto hv = parse_kernel_limit(*h)) high = min_limit(high, *hv);
        }
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

  // pids.max over the chain.
  if (const ControllerPath* pids = facts.find("pids")) {
    const std::string& mount_point = pids->mount_point;
    Limit limit = Limit::unlimited();
    std::string source = pids->dir;
    for (const auto& level : cgroup_ancestors(pids->cgroup)) {
      if (level == "/") continue;  // the root has no pids.max
      const std::string file = join_path(level_dir(mount_point, level), kfile::kPidsMax);
      auto raw = root.read_value(file);
      if (!raw) continue;
      auto value = parse_kernel_limit(*raw);
      if (!value) continue;
      if (!value->is_unlimited() && (limit.is_unlimited() || *value->value < *limit.value)) {
        limit = *value;
        source = file;
      }
    }
    facts.pids_max = Fact<Limit>::of(limit, source);
  } else {
    facts.pids_max = Fact<Limit>::unknown("", "no pids cgroup controller is mounted");
  }
  return facts;
}

}  // namespace hostfit
