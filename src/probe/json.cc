// HostFacts as JSON. Keys are stable and documented in docs/probe.md.
#include <cmath>
#include <nlohmann/json.hpp>

#include "hostfit/probe.h"

namespace hostfit {
namespace {

using nlohmann::json;

const char* to_string(CpuBinding b) {
  switch (b) {
    case CpuBinding::kOnline:
      return "online";
    case CpuBinding::kAffinity:
      return "affinity";
    case CpuBinding::kCpuset:
      return "cpuset";
    case CpuBinding::kQuota:
      return "quota";
    case CpuBinding::kUnknown:
      return "unknown";
  }
  return "unknown";
}

json limit_json(const Limit& l) {
  return l.is_unlimited() ? json(nullptr) : json(*l.value);
}

// Writes facts into nested objects by dotted key, recording sources and reasons on the side.
class Writer {
 public:
  explicit Writer(bool explain) : explain_(explain) {}

  template <class T, class F>
  void fact(std::string_view key, const Fact<T>& f, F&& convert) {
    slot(key) = f.known() ? json(convert(*f)) : json(nullptr);
    if (!f.known()) unknown_[std::string(key)] = f.unknown_reason;
    if (explain_) {
      json s = {{"source", f.source}};
      if (!f.raw.empty()) s["raw"] = f.raw;
      sources_[std::string(key)] = std::move(s);
    }
  }
  template <class T>
  void fact(std::string_view key, const Fact<T>& f) {
    fact(key, f, [](const T& v) { return v; });
  }
  void cpus(std::string_view key, const Fact<CpuSet>& f) {
    fact(key, f, [](const CpuSet& s) { return s.to_list(); });
  }
  void unknown(std::string_view key, std::string reason) {
    unknown_[std::string(key)] = std::move(reason);
  }
  json& slot(std::string_view dotted) {
    json* node = &root_;
    for (auto part : split(dotted, '.'))
      node = &(*node)[std::string(part)];
    return *node;
  }
  json finish() {
    root_["unknown"] = unknown_;
    if (explain_) root_["sources"] = sources_;
    return std::move(root_);
  }

 private:
  bool explain_;
  json root_ = json::object();
  json unknown_ = json::object();
  json sources_ = json::object();
};

}  // namespace

json to_json(const HostFacts& facts, bool explain) {
  Writer w(explain);
  switch (facts.target.kind) {
    case ProbeTarget::Kind::kSelf:
      w.slot("target") = {{"kind", "self"}};
      break;
    case ProbeTarget::Kind::kPid:
      w.slot("target") = {{"kind", "pid"}, {"pid", facts.target.pid}};
      break;
    case ProbeTarget::Kind::kCgroup:
      w.slot("target") = {{"kind", "cgroup"}, {"cgroup", facts.target.cgroup_path}};
      break;
  }
  w.slot("sysroot") = facts.sysroot;

  const CpuFacts& cpu = facts.cpu;
  w.slot("cpu.effective") = std::round(cpu.effective * 1000) / 1000;
  w.slot("cpu.effective_integer") = cpu.effective_integer;
  w.slot("cpu.binding") = cpu.binding;
  w.slot("cpu.binding_kind") = to_string(cpu.binding_kind);
  w.slot("cpu.usable") = cpu.usable.to_list();
  w.cpus("cpu.online", cpu.online);
  w.cpus("cpu.possible", cpu.possible);
  w.cpus("cpu.offline", cpu.offline);
  w.cpus("cpu.isolated", cpu.isolated);
  w.cpus("cpu.affinity", cpu.affinity);
  w.cpus("cpu.cpuset", cpu.cpuset);
  w.cpus("cpu.cpuset_mems", cpu.cpuset_mems);
  json quotas = json::array();
  for (const auto& q : cpu.quotas) {
    json j = {{"cgroup", q.cgroup},
              {"source", q.source},
              {"raw", q.raw},
              {"quota_us", q.quota_us ? json(*q.quota_us) : json(nullptr)},
              {"period_us", q.period_us},
              {"cpus", q.quota_us ? json(q.cpus()) : json(nullptr)}};
    if (!q.unknown_reason.empty()) j["error"] = q.unknown_reason;
    quotas.push_back(std::move(j));
  }
  w.slot("cpu.quotas") = std::move(quotas);

  const Topology& topo = facts.topology;
  json nodes = json::array();
  json cpuless = json::array();
  for (const auto& n : topo.numa_nodes) {
    nodes.push_back({{"id", n.id},
                     {"cpus", n.cpus.to_list()},
                     {"memory_bytes", n.memory_bytes},
                     {"package", n.package < 0 ? json(nullptr) : json(n.package)},
                     {"distances", n.distances}});
    if (n.cpus.empty()) cpuless.push_back(n.id);
  }
  json packages = json::array();
  for (const auto& p : topo.packages)
    packages.push_back({{"id", p.id}, {"cpus", p.cpus.to_list()}});
  json cores = json::array();
  for (const auto& c : topo.cores) {
    cores.push_back({{"package", c.package},
                     {"node", c.numa_node},
                     {"core_id", c.core_id},
                     {"cpus", c.cpus.to_list()}});
  }
  json l3 = json::array();
  for (const auto& g : topo.l3_groups)
    l3.push_back(g.to_list());
  w.slot("topology") = {
      {"source", topo.source},          {"packages", std::move(packages)},
      {"numa_nodes", std::move(nodes)}, {"cpuless_nodes", std::move(cpuless)},
      {"cores", std::move(cores)},      {"threads_per_core", topo.threads_per_core},
      {"l3_groups", std::move(l3)}};
  if (!topo.known()) w.unknown("topology", topo.unknown_reason);

  const CgroupFacts& cg = facts.cgroup;
  w.slot("cgroup.mode") = to_string(cg.mode);
  w.slot("cgroup.mode_source") = cg.mode_source;
  json paths = json::object();
  for (const auto& [controller, path] : cg.paths)
    paths[controller.empty() ? "unified" : controller] = path;
  w.slot("cgroup.paths") = std::move(paths);
  json controllers = json::object();
  for (const auto& c : cg.controllers) {
    controllers[c.controller] = {{"cgroup", c.cgroup},
                                 {"dir", c.dir},
                                 {"mount_point", c.mount_point},
                                 {"relative", c.relative},
                                 {"version", c.v2 ? "v2" : "v1"}};
  }
  for (const auto& [controller, why] : cg.unknown_controllers) {
    controllers[controller] = nullptr;
    w.unknown("cgroup.controllers." + controller, why);
  }
  w.slot("cgroup.controllers") = std::move(controllers);
  json mounts = json::array();
  for (const auto& m : cg.mounts) {
    json j = {
        {"mount_point", m.mount_point},  {"root", m.root},
        {"version", m.v2 ? "v2" : "v1"}, {"controllers", m.controllers},
        {"primary", m.primary},          {"target", m.target ? json(*m.target) : json(nullptr)}};
    if (!m.target) j["target_unknown"] = m.target_unknown_reason;
    mounts.push_back(std::move(j));
  }
  w.slot("cgroup.mounts") = std::move(mounts);
  w.slot("cgroup.memory_chain") = cg.memory_chain;
  w.fact("cgroup.pids_max", cg.pids_max, limit_json);

  const MemoryFacts& m = facts.memory;
  w.fact("memory.limit_bytes", cg.memory_limit, limit_json);
  w.slot("memory.limit_cgroup") =
      cg.memory_limit_cgroup.empty() ? json(nullptr) : json(cg.memory_limit_cgroup);
  w.fact("memory.high_bytes", cg.memory_high, limit_json);
  w.fact("memory.cgroup_usage_bytes", cg.memory_usage);
  w.fact("memory.total_bytes", m.total);
  w.fact("memory.available_bytes", m.available);
  w.fact("memory.commit_limit_bytes", m.commit_limit);
  w.fact("memory.committed_bytes", m.committed);
  w.fact("memory.swap_total_bytes", m.swap_total);
  w.fact("memory.swap_free_bytes", m.swap_free);
  w.fact("memory.overcommit_memory", m.overcommit_memory);
  w.fact("memory.overcommit_ratio", m.overcommit_ratio);
  w.fact("memory.transparent_hugepages", m.thp_enabled);
  w.fact("memory.hugepages_total", m.hugepages_total);
  w.fact("memory.hugepage_size_bytes", m.hugepage_size);
  w.fact("memory.max_map_count", m.max_map_count);
  w.fact("memory.map_count", m.map_count);
  w.fact("memory.address_space_used_bytes", m.address_space_used);
  w.fact("memory.page_size_bytes", m.page_size);
  w.fact("memory.virtual_address_bits", m.virtual_address_bits);
  w.slot("memory.numa_memory_bytes") = m.numa_memory_sum;
  w.slot("memory.numa_memory_mismatch") = m.numa_memory_mismatch;
  const auto rlimit = [](const ResourceLimit& r) {
    return json{{"soft", limit_json(r.soft)}, {"hard", limit_json(r.hard)}};
  };
  w.fact("limits.as", m.rlimit_as, rlimit);
  w.fact("limits.data", m.rlimit_data, rlimit);
  w.fact("limits.nofile", m.rlimit_nofile, rlimit);
  w.fact("limits.nproc", m.rlimit_nproc, rlimit);
  w.fact("kernel.release", m.kernel_release);

  w.fact("environment.virtualization", facts.environment.virtualization);
  w.slot("environment.virtualization_evidence") = facts.environment.virtualization_evidence;
  w.slot("environment.container_hints") = facts.environment.container_hints;
  w.slot("warnings") = facts.warnings;
  return w.finish();
}

}  // namespace hostfit
