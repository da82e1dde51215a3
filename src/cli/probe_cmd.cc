// hostfit probe: print what the target can really use.
#include <unistd.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "hostfit/probe.h"

namespace hostfit::cli {
namespace {

struct ProbeOptions {
  std::string sysroot = "/";
  pid_t pid = 0;
  std::string cgroup;
  Format format = Format::kTable;
  bool explain = false;
  std::string capture;
};

// Rows of "label  value  [source]" where an unknown fact prints its reason.
class FactTable {
 public:
  explicit FactTable(bool explain) : explain_(explain), table_(false) {}

  template <class T, class F>
  void add(const std::string& label, const Fact<T>& fact, F&& show) {
    if (fact.known()) {
      row(label, show(*fact), fact.source + (fact.raw.empty() ? "" : " = '" + fact.raw + "'"));
    } else {
      row(label, "unknown: " + fact.unknown_reason, fact.source);
    }
  }
  void add_cpus(const std::string& label, const Fact<CpuSet>& fact) {
    add(label, fact, [](const CpuSet& s) { return s.empty() ? "(none)" : s.to_list(); });
  }
  void add_bytes(const std::string& label, const Fact<uint64_t>& fact) {
    add(label, fact, [](uint64_t b) { return format_bytes(b); });
  }
  void row(const std::string& label, const std::string& value, const std::string& source = {}) {
    if (explain_ && !source.empty()) {
      table_.add({"  " + label, value, source});
    } else {
      table_.add({"  " + label, value});
    }
  }
  void section(const std::string& title) { table_.add({title}); }
  void print(std::ostream& out) const { table_.print(out); }

 private:
  bool explain_;
  Table table_;
};

std::string limit_text(const Limit& l) {
  return l.is_unlimited() ? "unlimited" : std::to_string(*l.value);
}

void print_table(const HostFacts& f, bool explain) {
  FactTable t(explain);
  const CpuFacts& cpu = f.cpu;
  char effective[32];
  std::snprintf(effective, sizeof effective, "%.2f", cpu.effective);
  t.section("CPU");
  t.row("effective",
        std::string(effective) + " (use " + std::to_string(cpu.effective_integer) + ")",
        "min(|affinity ∩ cpuset ∩ online|, quota/period over the chain)");
  t.row("binding", cpu.binding);
  t.row("usable", cpu.usable.to_list() + " (" + std::to_string(cpu.usable.count()) + ")");
  t.add_cpus("online", cpu.online);
  t.add_cpus("possible", cpu.possible);
  t.add_cpus("offline", cpu.offline);
  t.add_cpus("isolated", cpu.isolated);
  t.add_cpus("affinity", cpu.affinity);
  t.add_cpus("cpuset", cpu.cpuset);
  t.add_cpus("cpuset mems", cpu.cpuset_mems);
  for (const auto& q : cpu.quotas) {
    std::string value = !q.unknown_reason.empty() ? "unknown: " + q.unknown_reason
                        : q.quota_us
                            ? std::to_string(*q.quota_us) + "/" + std::to_string(q.period_us) +
                                  " us = " + std::to_string(q.cpus()).substr(0, 5) + " CPUs"
                            : "no quota";
    t.row("quota " + q.cgroup, value, q.source + " = '" + q.raw + "'");
  }

  const Topology& topo = f.topology;
  t.section("Topology");
  if (!topo.known()) {
    t.row("hwloc", "unknown: " + topo.unknown_reason);
  } else {
    t.row("machine",
          std::to_string(topo.packages.size()) + " packages, " +
              std::to_string(topo.numa_nodes.size()) + " NUMA nodes, " +
              std::to_string(topo.cores.size()) + " cores, " +
              std::to_string(topo.threads_per_core) + " threads per core, " +
              std::to_string(topo.l3_groups.size()) + " L3 groups",
          topo.source);
    for (const auto& n : topo.numa_nodes) {
      std::string distances;
      for (int d : n.distances)
        distances += (distances.empty() ? "" : " ") + std::to_string(d);
      t.row("node " + std::to_string(n.id),
            (n.cpus.empty() ? std::string("no CPUs") : "CPUs " + n.cpus.to_list()) + ", " +
                format_bytes(n.memory_bytes) +
                (n.package >= 0 ? ", package " + std::to_string(n.package) : "") + ", distances " +
                distances);
    }
  }

  const CgroupFacts& cg = f.cgroup;
  t.section("cgroups");
  t.row("mode", to_string(cg.mode), cg.mode_source);
  for (const auto& c : cg.controllers) {
    t.row(c.controller, c.cgroup + " (" + (c.v2 ? "v2" : "v1") + ", " + c.dir + ")");
  }
  t.add("memory limit", cg.memory_limit, [&](const Limit& l) {
    return l.is_unlimited() ? std::string("none")
                            : format_bytes(*l.value) + " (set by " + cg.memory_limit_cgroup + ")";
  });
  t.add("memory.high", cg.memory_high, [](const Limit& l) { return format_limit(l); });
  t.add_bytes("memory usage", cg.memory_usage);
  t.add("pids.max", cg.pids_max, limit_text);

  const MemoryFacts& m = f.memory;
  t.section("Memory and kernel");
  t.add_bytes("MemTotal", m.total);
  t.add_bytes("MemAvailable", m.available);
  t.add_bytes("CommitLimit", m.commit_limit);
  t.add_bytes("Committed_AS", m.committed);
  t.add_bytes("swap total", m.swap_total);
  t.add("overcommit", m.overcommit_memory, [](int v) {
    return std::to_string(v) + (v == 0   ? " (heuristic)"
                                : v == 1 ? " (always)"
                                : v == 2 ? " (strict)"
                                         : "");
  });
  t.add("overcommit ratio", m.overcommit_ratio, [](int v) { return std::to_string(v) + "%"; });
  t.add("THP", m.thp_enabled, [](const std::string& s) { return s; });
  t.add("huge pages", m.hugepages_total, [](uint64_t v) { return std::to_string(v); });
  t.add("max_map_count", m.max_map_count, [](uint64_t v) { return std::to_string(v); });
  t.add("map count", m.map_count, [](uint64_t v) { return std::to_string(v); });
  t.add_bytes("address space used", m.address_space_used);
  t.add_bytes("page size", m.page_size);
  t.add("virtual address bits", m.virtual_address_bits, [](int v) { return std::to_string(v); });
  const auto rlimit = [](const ResourceLimit& r) {
    const auto show = [](const Limit& l) {
      return l.is_unlimited() ? std::string("unlimited") : std::to_string(*l.value);
    };
    return show(r.soft) + " (hard " + show(r.hard) + ")";
  };
  t.add("RLIMIT_AS", m.rlimit_as, rlimit);
  t.add("RLIMIT_DATA", m.rlimit_data, rlimit);
  t.add("RLIMIT_NOFILE", m.rlimit_nofile, rlimit);
  t.add("RLIMIT_NPROC", m.rlimit_nproc, rlimit);
  t.add("kernel", m.kernel_release, [](const std::string& s) { return s; });

  t.section("Environment");
  t.add("virtualization", f.environment.virtualization, [](const std::string& s) { return s; });
  for (const auto& hint : f.environment.container_hints)
    t.row("container hint", hint);
  t.print(std::cout);
  for (const auto& w : f.warnings)
    std::cout << "warning: " << escape_bytes(w, true) << "\n";
}

int run_probe(const ProbeOptions& opts) {
  if (opts.sysroot.empty()) return usage_error("--sysroot needs a directory");
  Sysroot root(opts.sysroot);
  ProbeTarget target = ProbeTarget::self();
  if (opts.pid > 0) target = ProbeTarget::process(opts.pid);
  if (!opts.cgroup.empty()) {
    auto path = normalize_cgroup_path(opts.cgroup);
    if (!path) return report(path.error());
    target = ProbeTarget::cgroup(*path);
  }
  if (!opts.capture.empty()) root.start_recording();
  HostFacts facts = probe_host(root, target);
  if (facts.nothing_known()) {
    std::string why = root.is_dir("/") ? "nothing under " + opts.sysroot + " could be read"
                                       : "sysroot " + opts.sysroot + " does not exist";
    return report(Error{ErrorKind::kNotFound, "cannot probe: " + why, 0});
  }
  if (auto st = check_target(root, facts); !st) return report(st.error());
  std::optional<CaptureSummary> captured;
  if (!opts.capture.empty()) {
    auto summary = write_capture(root, opts.capture);
    if (!summary) return report(summary.error());
    captured = *summary;
  }
  if (opts.format == Format::kJson) {
    auto j = to_json(facts, opts.explain);
    if (captured) {
      j["capture"] = {
          {"dir", captured->dir}, {"files", captured->files}, {"bytes", captured->bytes}};
    }
    print_json(std::cout, j);
  } else {
    print_table(facts, opts.explain);
    if (captured) {
      std::cout << "captured " << captured->files << " files (" << format_bytes(captured->bytes)
                << ") into " << escape_bytes(captured->dir, true) << "; replay with --sysroot "
                << escape_bytes(captured->dir, true) << "\n";
    }
  }
  return kExitOk;
}

}  // namespace

void add_probe_command(CLI::App& app, Commands& commands) {
  auto opts = std::make_shared<ProbeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "probe",
      "Show what this process (or --pid, or --cgroup) can really use: effective CPUs and what "
      "binds them, NUMA topology, cgroup limits over the whole ancestor chain, memory and kernel "
      "limits, virtualization.");
  add_sysroot_option(*cmd, opts->sysroot);
  auto* pid = add_pid_option(*cmd, opts->pid, "Probe the process PID instead of hostfit itself");
  cmd->add_option("--cgroup", opts->cgroup,
                  "Probe a cgroup by its path inside the hierarchy (e.g. /kubepods/pod1), with no "
                  "process in it")
      ->excludes(pid);
  add_format_option(*cmd, opts->format, {Format::kTable, Format::kJson});
  cmd->add_flag("--explain", opts->explain, "Show where each fact came from (file and raw value)");
  cmd->add_option("--capture", opts->capture,
                  "Also write the files this probe read (and the topology files hwloc reads) "
                  "into DIR, a new or empty directory; --sysroot DIR gives the same answer")
      ->type_name("DIR");
  cmd->footer(
      "Examples:\n"
      "  hostfit probe                     this process on this host\n"
      "  hostfit probe -o json | jq .cpu   machine-readable (keys in docs/probe.md)\n"
      "  hostfit probe --cgroup /system.slice --explain   a cgroup of this host (see "
      "/proc/*/cgroup)\n"
      "  hostfit probe --capture /tmp/cap       ...and keep what it read, to send or replay\n"
      "  hostfit probe --sysroot /tmp/cap       a captured /sys and /proc tree");

  commands.push_back({cmd, [opts]() { return run_probe(*opts); }});
}

}  // namespace hostfit::cli
