// CPU facts: what the kernel has online, what the target may run on (affinity, cpuset) and how
// much time it may use (CPU bandwidth quota over every ancestor), combined into effective CPUs.
#include <sched.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "hostfit/probe.h"
#include "kernel_files.h"

namespace hostfit {
namespace {

Fact<CpuSet> read_cpu_list(const Sysroot& root, std::string_view file) {
  auto raw = root.read(file, 64 << 10);
  if (!raw) return Fact<CpuSet>::unknown(std::string(file), raw.error().message);
  auto set = CpuSet::parse_list(*raw);
  if (!set) return Fact<CpuSet>::unknown(std::string(file), set.error().message);
  return Fact<CpuSet>::of(std::move(*set), std::string(file), std::string(trim(*raw)));
}

Fact<CpuSet> read_affinity(const Sysroot& root, const ProbeTarget& target) {
  if (target.kind == ProbeTarget::Kind::kCgroup) {
    return Fact<CpuSet>::unknown("", "probing a cgroup, not a process: no affinity applies");
  }
  if (root.is_host()) {
    cpu_set_t mask;
    CPU_ZERO(&mask);
    const pid_t pid = target.kind == ProbeTarget::Kind::kPid ? target.pid : 0;
    if (::sched_getaffinity(pid, sizeof mask, &mask) == 0) {
      CpuSet set;
      for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &mask)) set.set(cpu);
      }
      return Fact<CpuSet>::of(set, "sched_getaffinity(" + std::to_string(pid) + ")", set.to_list());
    }
  }
  // A capture (or a process we may not query): the kernel's own account in /proc/PID/status.
  const std::string status_file = join_path(target.proc_dir(), kfile::kPidStatus);
  auto status = root.read(status_file);
  if (!status) return Fact<CpuSet>::unknown(status_file, status.error().message);
  for (std::string_view line : split(*status, '\n')) {
    if (!line.starts_with("Cpus_allowed_list:")) continue;
    const std::string_view value = trim(line.substr(line.find(':') + 1));
    auto set = CpuSet::parse_list(value);
    if (!set) return Fact<CpuSet>::unknown(status_file, set.error().message);
    return Fact<CpuSet>::of(std::move(*set), status_file + " Cpus_allowed_list",
                            std::string(value));
  }
  return Fact<CpuSet>::unknown(status_file, "no Cpus_allowed_list line in " + status_file);
}

// The effective cpuset (CPUs or mems) of the target's cpuset cgroup. Effective values are
// inherited, so when the leaf lacks the file the nearest visible ancestor that has it answers.
Fact<CpuSet> read_cpuset(const Sysroot& root, const CgroupFacts& cgroups, bool mems) {
  const ControllerPath* cpuset = cgroups.find("cpuset");
  if (!cpuset) {
    const auto it = cgroups.unknown_controllers.find("cpuset");
    return Fact<CpuSet>::unknown("", it != cgroups.unknown_controllers.end()
                                         ? it->second
                                         : "no cpuset cgroup controller is mounted");
  }
  std::vector<std::string_view> names;
  if (cpuset->legacy_cpuset_fs) {
    names = mems ? std::vector<std::string_view>{"effective_mems", "mems"}
                 : std::vector<std::string_view>{"effective_cpus", "cpus"};
  } else if (cpuset->v2) {
    names = {mems ? kfile::kV2MemsEffective : kfile::kV2CpusEffective};
  } else {
    names = mems ? std::vector<std::string_view>{kfile::kV1MemsEffective, kfile::kV1Mems}
                 : std::vector<std::string_view>{kfile::kV1CpusEffective, kfile::kV1Cpus};
  }
  std::string last_error = "the cpuset cgroup " + cpuset->dir + " has no " + std::string(names[0]);
  const auto chain = cpuset->visible_chain();
  for (auto level = chain.rbegin(); level != chain.rend(); ++level) {
    for (auto name : names) {
      const std::string file = join_path(level->dir, name);
      if (!root.exists(file)) continue;
      auto fact = read_cpu_list(root, file);
      // An empty effective set only happens transiently (or in broken captures): not a limit.
      if (fact.known() && fact->empty()) {
        last_error = file + " is empty";
        continue;
      }
      if (fact.known()) return fact;
      last_error = fact.unknown_reason;
    }
  }
  return Fact<CpuSet>::unknown(cpuset->dir, last_error);
}

CpuQuota read_v2_quota(const Sysroot& root, const std::string& level, const std::string& dir) {
  CpuQuota q;
  q.cgroup = level;
  q.v2 = true;
  q.source = join_path(dir, kfile::kV2CpuMax);
  auto raw = root.read_value(q.source);
  if (!raw) {
    q.unknown_reason = raw.error().message;
    return q;
  }
  q.raw = *raw;
  const auto fields = split_whitespace(*raw);
  const auto period = fields.size() == 2 ? parse_i64(fields[1]) : std::nullopt;
  const auto quota = fields.size() == 2 ? parse_i64(fields[0]) : std::nullopt;
  if (fields.size() != 2 || !period || *period <= 0 ||
      (fields[0] != "max" && (!quota || *quota <= 0))) {
    q.unknown_reason = "cannot parse " + q.source + " '" + raw->substr(0, 64) +
                       "' (expected '<quota_us> <period_us>' or 'max <period_us>')";
    return q;
  }
  q.period_us = *period;
  if (fields[0] != "max") q.quota_us = *quota;
  return q;
}

CpuQuota read_v1_quota(const Sysroot& root, const std::string& level, const std::string& dir) {
  CpuQuota q;
  q.cgroup = level;
  q.source = join_path(dir, kfile::kV1CfsQuota);
  auto quota_raw = root.read_value(q.source);
  auto period_raw = root.read_value(join_path(dir, kfile::kV1CfsPeriod));
  if (!quota_raw || !period_raw) {
    q.unknown_reason = (!quota_raw ? quota_raw.error() : period_raw.error()).message;
    return q;
  }
  q.raw = *quota_raw + " " + *period_raw;
  const auto quota = parse_i64(*quota_raw);
  const auto period = parse_i64(*period_raw);
  // cgroup v1 reports "-1" for no quota.
  if (!quota || !period || *period <= 0 || (*quota <= 0 && *quota != -1)) {
    q.unknown_reason = "cannot parse " + q.source + " '" + q.raw.substr(0, 64) +
                       "' (expected a quota in microseconds or -1, and a positive period)";
    return q;
  }
  q.period_us = *period;
  if (*quota != -1) q.quota_us = *quota;
  return q;
}

std::string format_cpus(double cpus) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", cpus);
  std::string s = buf;
  // Keep one decimal ("4.0", "1.5") but no noise ("0.25" stays).
  if (s.ends_with('0')) s.pop_back();
  return s;
}

std::string plural_cpus(int n) {
  return std::to_string(n) + (n == 1 ? " CPU" : " CPUs");
}

}  // namespace

constexpr double kMostCpus = CpuSet::kMaxId + 1;

double CpuQuota::cpus() const {
  if (!quota_us || period_us <= 0) return std::numeric_limits<double>::infinity();
  return static_cast<double>(*quota_us) / static_cast<double>(period_us);
}

void compute_effective_cpus(CpuFacts& cpu) {
  // The CPUs the target may run on: online ∩ affinity ∩ cpuset, leaving out what is unknown.
  CpuSet usable;
  if (cpu.online.known()) {
    usable = *cpu.online;
  } else if (cpu.possible.known()) {
    usable = *cpu.possible;
  } else if (cpu.cpuset.known()) {
    usable = *cpu.cpuset;
  } else if (cpu.affinity.known()) {
    usable = *cpu.affinity;
  }
  const CpuSet base = usable;
  const int online_n = base.count();
  if (cpu.affinity.known()) usable &= *cpu.affinity;
  if (cpu.cpuset.known()) usable &= *cpu.cpuset;
  cpu.usable = usable;
  const int set_n = usable.count();

  const CpuQuota* tightest = nullptr;
  for (const auto& q : cpu.quotas) {
    if (q.quota_us && (!tightest || q.cpus() < tightest->cpus())) tightest = &q;
  }

  if (set_n == 0 && !tightest) {
    cpu.effective = 0;
    cpu.effective_integer = 1;
    cpu.binding_kind = CpuBinding::kUnknown;
    cpu.binding = "unknown: neither the online CPUs, the affinity nor the cpuset could be read";
    return;
  }
  if (tightest && (set_n == 0 || tightest->cpus() < set_n)) {
    // A quota far above any machine (INT64_MAX over a 1 us period) with no CPU set known would
    // otherwise reach int and worker counts as it is: no Linux has more CPUs than CpuSet ids.
    cpu.effective = std::min(tightest->cpus(), kMostCpus);
    cpu.binding_kind = CpuBinding::kQuota;
    cpu.binding = "limited by " + std::string(tightest->v2 ? "cpu.max" : "cpu.cfs_quota_us") +
                  " of " + tightest->cgroup + ": " + format_cpus(cpu.effective) + " CPUs";
  } else {
    cpu.effective = set_n;
    const int affinity_n = cpu.affinity.known() ? (*cpu.affinity & base).count() : online_n;
    const int cpuset_n = cpu.cpuset.known() ? (*cpu.cpuset & base).count() : online_n;
    const bool affinity_narrows = cpu.affinity.known() && affinity_n < online_n;
    const bool cpuset_narrows = cpu.cpuset.known() && cpuset_n < online_n;
    if (cpuset_narrows && cpuset_n == set_n && (!affinity_narrows || affinity_n >= cpuset_n)) {
      // When affinity merely mirrors the cpuset, the cpuset is the cause.
      cpu.binding_kind = CpuBinding::kCpuset;
      cpu.binding = "limited by the cpuset of " + cpu.cpuset.source + " (" + cpu.cpuset->to_list() +
                    "): " + plural_cpus(set_n);
    } else if (affinity_narrows) {
      cpu.binding_kind = CpuBinding::kAffinity;
      cpu.binding = "limited by CPU affinity (" + cpu.affinity->to_list() + ")" +
                    (cpuset_narrows ? " within cpuset " + cpu.cpuset->to_list() : "") + ": " +
                    plural_cpus(set_n);
    } else {
      cpu.binding_kind = CpuBinding::kOnline;
      cpu.binding = "all " + plural_cpus(set_n) + " online; no affinity, cpuset or quota limit";
    }
  }
  cpu.effective_integer = std::max(1, static_cast<int>(std::floor(cpu.effective + 1e-9)));
}

CpuFacts probe_cpus(const Sysroot& root, const ProbeTarget& target, const CgroupFacts& cgroups) {
  CpuFacts cpu;
  cpu.online = read_cpu_list(root, kfile::kCpuOnline);
  cpu.possible = read_cpu_list(root, kfile::kCpuPossible);
  cpu.offline = read_cpu_list(root, kfile::kCpuOffline);
  cpu.isolated = read_cpu_list(root, kfile::kCpuIsolated);
  cpu.affinity = read_affinity(root, target);
  cpu.cpuset = read_cpuset(root, cgroups, false);
  cpu.cpuset_mems = read_cpuset(root, cgroups, true);

  if (const ControllerPath* cpuctl = cgroups.find("cpu")) {
    // Every visible level, the mount's root included when it has the file: inside a cgroup
    // namespace or a bind mount the root is the container's own cgroup. The host's true root has
    // no cpu.max (v2) and reports -1 (v1): neither limits anything.
    const auto chain = cpuctl->visible_chain();
    for (size_t i = 0; i < chain.size(); ++i) {
      const auto file = cpuctl->v2 ? kfile::kV2CpuMax : kfile::kV1CfsQuota;
      if (i == 0 && !root.exists(join_path(chain[i].dir, file))) continue;
      cpu.quotas.push_back(cpuctl->v2 ? read_v2_quota(root, chain[i].cgroup, chain[i].dir)
                                      : read_v1_quota(root, chain[i].cgroup, chain[i].dir));
    }
  } else if (auto it = cgroups.unknown_controllers.find("cpu");
             it != cgroups.unknown_controllers.end()) {
    CpuQuota q;
    for (const char* key : {"cpu", ""}) {
      if (q.cgroup.empty() && cgroups.paths.count(key)) q.cgroup = cgroups.paths.at(key);
    }
    q.unknown_reason = it->second;
    cpu.quotas.push_back(std::move(q));
  }
  compute_effective_cpus(cpu);
  return cpu;
}

}  // namespace hostfit
