// Pins that hostfit did not make: cpuset cgroups whose CPUs differ from their parent's, and
// processes whose affinity leaves out CPUs hostfit may place on. Read through the Sysroot, so
// generated trees (tests, --sysroot) and the host are read by the same code.
#include <unistd.h>

#include <algorithm>

#include "../probe/kernel_files.h"
#include "hostfit/place.h"

namespace hostfit {
namespace {

// Bounds that keep a pathological tree from making `place` slow: deeper or larger trees are
// read up to the bound and the rest is named in a warning.
constexpr int kMaxDepth = 32;
constexpr size_t kMaxGroups = 20000;
constexpr size_t kMaxProcesses = 20000;

struct Hierarchy {
  std::string mount_point;
  bool v2 = false;
  std::string cpus_file, mems_file;  // v1: cpuset.cpus (or cpus on a cpuset fs); v2: effective
};

std::optional<CpuSet> read_set(const Sysroot& root, const std::string& path) {
  auto text = root.read(path);
  if (!text) return std::nullopt;
  auto set = CpuSet::parse_list(trim(*text));
  if (!set) return std::nullopt;
  return *set;
}

// v1 cpu_exclusive; v2 a valid partition root ("root", "isolated"; "root invalid (...)" is not)
// or CPUs given to cpuset.cpus.exclusive. Returns the CPUs held exclusively.
CpuSet exclusive_cpus(const Sysroot& root, const Hierarchy& h, const std::string& dir,
                      const CpuSet& cpus) {
  if (!h.v2) {
    auto flag = root.read_value(join_path(dir, kfile::kV1CpuExclusive));
    return flag && *flag == "1" ? cpus : CpuSet{};
  }
  if (auto partition = root.read_value(join_path(dir, kfile::kV2CpusPartition))) {
    if (*partition == "root" || *partition == "isolated") return cpus;
  }
  if (auto excl = read_set(root, join_path(dir, kfile::kV2CpusExclusive))) return *excl & cpus;
  return {};
}

bool is_ancestor_or_self(const std::string& maybe_ancestor, const std::string& path) {
  if (maybe_ancestor == "/" || maybe_ancestor == path) return true;
  return path.starts_with(maybe_ancestor + "/");
}

struct Walk {
  const Sysroot& root;
  const Hierarchy& h;
  const std::string& own;  // the probed process's cgroup in this hierarchy
  const CpuSet& held;
  ForeignPins& out;
  size_t groups = 0;

  void visit(const std::string& cgroup, const CpuSet& parent_cpus, int depth) {
    const std::string dir = join_path(h.mount_point, cgroup);
    auto names = root.list(dir);
    if (!names) return;
    for (const std::string& name : *names) {
      const std::string child = cgroup == "/" ? "/" + name : cgroup + "/" + name;
      const std::string child_dir = join_path(h.mount_point, child);
      if (!root.is_dir(child_dir)) continue;
      if (++groups > kMaxGroups || depth >= kMaxDepth) {
        out.warnings.push_back("stopped reading cpusets under " + h.mount_point + " at " + child +
                               " (more than " + std::to_string(kMaxGroups) + " groups or " +
                               std::to_string(kMaxDepth) + " levels)");
        return;
      }
      const std::string cpus_path = join_path(child_dir, h.cpus_file);
      auto cpus = read_set(root, cpus_path);
      // A v1 group whose cpuset.cpus was never written holds no task and pins nothing.
      if (!cpus || cpus->empty()) continue;
      const bool own_chain = is_ancestor_or_self(child, own);
      if (!own_chain && *cpus != parent_cpus && !cpus->is_subset_of(held)) {
        ForeignPin pin;
        pin.holder = "(" + child + ")";
        pin.source = cpus_path;
        pin.cpus = *cpus;
        pin.mems = read_set(root, join_path(child_dir, h.mems_file)).value_or(CpuSet{});
        pin.exclusive = false;
        const CpuSet excl = exclusive_cpus(root, h, child_dir, *cpus);
        if (!excl.empty()) {
          pin.exclusive = true;
          pin.cpus = excl;
        }
        out.pins.push_back(std::move(pin));
      }
      visit(child, *cpus, depth + 1);
    }
  }
};

std::vector<Hierarchy> cpuset_hierarchies(const CgroupFacts& cgroups) {
  std::vector<Hierarchy> out;
  for (const CgroupMount& m : cgroups.mounts) {
    const bool has =
        std::find(m.controllers.begin(), m.controllers.end(), "cpuset") != m.controllers.end();
    if (!has) continue;
    Hierarchy h{m.mount_point, m.v2, {}, {}};
    if (m.v2) {
      h.cpus_file = kfile::kV2CpusEffective;
      h.mems_file = kfile::kV2MemsEffective;
    } else if (m.legacy_cpuset_fs) {
      h.cpus_file = "cpus";
      h.mems_file = "mems";
    } else {
      h.cpus_file = kfile::kV1Cpus;
      h.mems_file = kfile::kV1Mems;
    }
    out.push_back(std::move(h));
  }
  return out;
}

// "Name:", "PPid:" and "Cpus_allowed_list:" of /proc/PID/status.
struct ProcessView {
  std::string name;
  long ppid = -1;
  std::optional<CpuSet> affinity;
};

ProcessView read_status(std::string_view text) {
  ProcessView v;
  for (std::string_view line : split(text, '\n')) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (key == "Name") {
      v.name = std::string(value);
    } else if (key == "PPid") {
      v.ppid = parse_i64(value).value_or(-1);
    } else if (key == "Cpus_allowed_list") {
      if (auto set = CpuSet::parse_list(value)) v.affinity = *set;
    }
  }
  return v;
}

void read_process_pins(const Sysroot& root, const CpuSet& placeable, ForeignPins& out) {
  if (placeable.empty()) return;
  auto entries = root.list("/proc");
  if (!entries) return;
  std::vector<long> pids;
  for (const std::string& e : *entries) {
    if (auto pid = parse_u64(e)) pids.push_back(static_cast<long>(*pid));
  }
  std::sort(pids.begin(), pids.end());
  if (pids.size() > kMaxProcesses) {
    out.warnings.push_back("read the affinity of the first " + std::to_string(kMaxProcesses) +
                           " of " + std::to_string(pids.size()) + " processes only");
    pids.resize(kMaxProcesses);
  }
  const long self = root.is_host() ? static_cast<long>(::getpid()) : -1;
  const size_t cgroup_pins = out.pins.size();
  for (long pid : pids) {
    // Kernel threads (pid 2 and its children) are bound per CPU by the kernel, not by a user.
    if (pid == self || pid == 2) continue;
    const std::string status = "/proc/" + std::to_string(pid) + "/status";
    auto text = root.read(status);
    if (!text) continue;  // it exited meanwhile, or we may not read it
    const ProcessView v = read_status(*text);
    if (v.ppid == 2 || !v.affinity) continue;
    const CpuSet mine = *v.affinity & placeable;
    if (mine.empty() || mine == placeable) continue;
    // A process inside a pinned cgroup only repeats its group's pin.
    const bool repeats = std::any_of(out.pins.begin(), out.pins.begin() + cgroup_pins,
                                     [&](const ForeignPin& p) { return p.cpus == *v.affinity; });
    if (repeats) continue;
    ForeignPin pin;
    pin.holder = "(pid " + std::to_string(pid) + " " + v.name + ")";
    pin.source = status + " Cpus_allowed_list";
    pin.cpus = *v.affinity;
    out.pins.push_back(std::move(pin));
  }
}

}  // namespace

CpuSet ForeignPins::exclusive() const {
  CpuSet all;
  for (const ForeignPin& p : pins) {
    if (p.exclusive) all |= p.cpus;
  }
  return all;
}

CpuSet ForeignPins::shared() const {
  CpuSet all;
  for (const ForeignPin& p : pins) {
    if (!p.exclusive) all |= p.cpus;
  }
  return all - exclusive();
}

ForeignPins read_foreign_pins(const Sysroot& root, const HostFacts& facts, const CpuSet& held) {
  ForeignPins out;
  const ControllerPath* own = facts.cgroup.find("cpuset");
  for (const Hierarchy& h : cpuset_hierarchies(facts.cgroup)) {
    const std::string own_path = own && own->mount_point == h.mount_point ? own->cgroup : "/";
    auto top = read_set(root, join_path(h.mount_point, h.cpus_file));
    if (!top) {
      out.warnings.push_back("cannot read " + join_path(h.mount_point, h.cpus_file) +
                             ": the cpusets under it were not read");
      continue;
    }
    Walk walk{root, h, own_path, held, out};
    walk.visit("/", *top, 0);
  }
  read_process_pins(root, placeable_cpus(facts), out);
  return out;
}

ForeignPins read_foreign_pins(const Sysroot& root, const HostFacts& facts,
                              const std::filesystem::path& ledger_path) {
  auto ledger = Ledger::load(ledger_path);
  return read_foreign_pins(root, facts, ledger ? ledger->held() : CpuSet{});
}

Error explain_exclusive_pins(Error error, const ForeignPins& foreign, const CpuSet& placeable) {
  const CpuSet pinned = foreign.exclusive() & placeable;
  if (error.kind != ErrorKind::kResource || pinned.empty()) return error;
  const bool one = pinned.count() == 1;
  error.message += "; CPU" + std::string(one ? " " : "s ") + pinned.to_list() +
                   (one ? " is" : " are") +
                   " pinned exclusively by other tools (hostfit place --show names them)";
  return error;
}

}  // namespace hostfit
