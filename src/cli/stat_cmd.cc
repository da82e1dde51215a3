// hostfit stat: the honest memory breakdown of one cgroup: working set, page cache, shmem.
#include <poll.h>
#include <signal.h>

#include <chrono>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "hostfit/cache.h"
#include "hostfit/cgroup.h"
#include "hostfit/probe.h"

namespace hostfit::cli {
namespace {

struct StatOptions {
  std::string sysroot = "/";
  std::string target;  // NAME or /PATH
  std::string cgroup_parent;
  Format format = Format::kTable;
  std::string watch;  // "" = print once
};

// Where one cgroup's memory files are.
struct MemoryGroup {
  std::string cgroup;  // path inside the hierarchy, "/a/hostfit/web"
  std::string dir;     // target path of its directory
  bool v2 = false;
  std::string pressure_file;  // memory.pressure in the unified hierarchy, "" when none
};

bool has_dot_dot(std::string_view path) {
  for (std::string_view part : split(path, '/')) {
    if (part == "..") return true;
  }
  return false;
}

Result<MemoryGroup> resolve(const Sysroot& root, const StatOptions& opts) {
  const CgroupFacts facts = probe_cgroups(root, ProbeTarget::self());
  const ControllerPath* memory = facts.find("memory");
  if (memory == nullptr) {
    return fail(ErrorKind::kUnsupported, "no memory cgroup controller is mounted under " +
                                             root.path("/sys/fs/cgroup").string() + " (mode " +
                                             to_string(facts.mode) + ")");
  }
  MemoryGroup g;
  g.v2 = memory->v2;
  if (opts.target.starts_with('/')) {
    if (has_dot_dot(opts.target)) {
      return fail(ErrorKind::kUsage, "bad cgroup path '" + opts.target + "': '..' is not allowed");
    }
    g.cgroup = opts.target;
  } else {
    if (auto st = validate_cgroup_name(opts.target); !st) {
      return fail(ErrorKind::kUsage,
                  st.error().message + ", or give a cgroup path starting with '/'");
    }
    const std::string parent =
        opts.cgroup_parent.empty() ? join_path(memory->cgroup, "hostfit") : opts.cgroup_parent;
    g.cgroup = join_path(parent, opts.target);
  }
  const CgroupMount* mount = nullptr;
  const CgroupMount* unified = nullptr;
  for (const auto& m : facts.mounts) {
    if (m.mount_point == memory->mount_point) mount = &m;
    if (m.v2 && (m.primary || unified == nullptr)) unified = &m;
  }
  if (mount == nullptr) return fail(ErrorKind::kInternal, "no mount for " + memory->mount_point);
  auto below = mount->locate(g.cgroup);
  if (!below) return fail(below.error());
  g.dir = join_path(memory->mount_point, *below);
  if (!root.is_dir(g.dir)) {
    return fail(ErrorKind::kNotFound,
                "no memory cgroup " + g.cgroup + " (" + root.path(g.dir).string() + ")" +
                    (opts.target.starts_with('/')
                         ? ""
                         : "; a NAME is looked up under " +
                               (opts.cgroup_parent.empty() ? join_path(memory->cgroup, "hostfit")
                                                           : opts.cgroup_parent) +
                               ", or give the cgroup's path starting with '/'"));
  }
  // PSI lives in the unified hierarchy: the group itself on v2, its twin there on hybrid hosts.
  if (unified != nullptr) {
    if (auto twin = unified->locate(g.cgroup)) {
      const std::string file = join_path(join_path(unified->mount_point, *twin), "memory.pressure");
      if (root.exists(file)) g.pressure_file = file;
    }
  }
  return g;
}

struct Sample {
  MemoryBreakdown memory;
  std::optional<uint64_t> limit_bytes;
  std::optional<MemoryPressure> pressure;
  std::chrono::system_clock::time_point at;
};

Result<Sample> sample(const Sysroot& root, const MemoryGroup& g) {
  Sample s;
  s.at = std::chrono::system_clock::now();
  auto m = read_breakdown(root, g.dir, g.v2);
  if (!m) return fail(m.error());
  s.memory = std::move(*m);
  if (auto text =
          root.read_value(join_path(g.dir, g.v2 ? "memory.max" : "memory.limit_in_bytes"))) {
    if (auto limit = parse_kernel_limit(*text); limit && !limit->is_unlimited()) {
      s.limit_bytes = *limit->value;
    }
  }
  if (!g.pressure_file.empty()) {
    if (auto p = read_pressure(root, g.pressure_file)) s.pressure = *p;
  }
  return s;
}

nlohmann::json to_json(const MemoryGroup& g, const Sample& s) {
  nlohmann::json pressure = nullptr;
  if (s.pressure) {
    pressure = {{"some_avg10", s.pressure->some_avg10}, {"full_avg10", s.pressure->full_avg10}};
  }
  return {{"cgroup", g.cgroup},
          {"dir", g.dir},
          {"version", g.v2 ? "v2" : "v1"},
          {"time", format_utc(s.at)},
          {"limit_bytes", s.limit_bytes ? nlohmann::json(*s.limit_bytes) : nlohmann::json(nullptr)},
          {"memory", hostfit::to_json(s.memory)},
          {"pressure", pressure}};
}

void print_table(const MemoryGroup& g, const Sample& s) {
  const MemoryBreakdown& m = s.memory;
  Table t(false);
  t.add({"cgroup", g.cgroup + " (" + (g.v2 ? "v2" : "v1") + ", " + g.dir + ")"});
  t.add({"usage", format_bytes(m.usage_bytes) +
                      (s.limit_bytes ? " of " + format_bytes(*s.limit_bytes) + " limit" : "")});
  t.add({"working set", format_bytes(m.working_set_bytes) + "  (usage - inactive file)"});
  t.add({"unreclaimable", format_bytes(m.unreclaimable_bytes) +
                              "  (anon + shmem + kernel: what reclaim cannot take)"});
  t.add({"anonymous", format_bytes(m.anon_bytes)});
  t.add({"file cache", format_bytes(m.file_bytes) + "  (reclaimable " +
                           format_bytes(m.reclaimable_file_bytes) + ", shmem/tmpfs " +
                           format_bytes(m.shmem_bytes) + ")"});
  t.add({"  active/inactive",
         format_bytes(m.active_file_bytes) + " / " + format_bytes(m.inactive_file_bytes)});
  t.add({"  mapped", format_bytes(m.mapped_file_bytes)});
  t.add(
      {"  dirty/writeback", format_bytes(m.dirty_bytes) + " / " + format_bytes(m.writeback_bytes)});
  t.add({"kernel and other", format_bytes(m.other_bytes)});
  if (s.pressure) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "some %.2f%%, full %.2f%% (avg10)", s.pressure->some_avg10,
                  s.pressure->full_avg10);
    t.add({"pressure", buf});
  }
  t.print(std::cout);
}

// Sleeps up to `period`; false when SIGINT or SIGTERM arrived (the caller stops watching).
bool wait_or_stop(std::chrono::microseconds period, const sigset_t& stop_signals) {
  const auto us = period.count();
  timespec ts{static_cast<time_t>(us / 1000000), static_cast<long>(us % 1000000) * 1000};
  siginfo_t info;
  return ::sigtimedwait(&stop_signals, &info, &ts) < 0;
}

int run_stat(const StatOptions& opts) {
  if (opts.sysroot.empty()) return usage_error("--sysroot needs a directory");
  std::chrono::microseconds period{0};
  if (!opts.watch.empty()) {
    auto d = parse_duration(opts.watch);
    if (!d) return report(d.error().wrap("bad --watch"));
    if (*d < std::chrono::milliseconds(1)) {
      return usage_error("bad --watch '" + opts.watch + "': give at least 1ms, e.g. 1 or 0.5s");
    }
    period = *d;
  }
  const bool watching = period.count() > 0;
  const Sysroot root(opts.sysroot);
  auto group = resolve(root, opts);
  if (!group) return report(group.error());

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (watching) ::sigprocmask(SIG_BLOCK, &stop_signals, nullptr);

  for (bool first = true;; first = false) {
    auto s = sample(root, *group);
    if (!s) {
      if (!first && s.error().kind == ErrorKind::kNotFound) {
        std::cerr << "hostfit: " << group->cgroup << " is gone\n";
        return kExitOk;
      }
      return report(s.error());
    }
    if (opts.format == Format::kJson) {
      // One object; with --watch one per line, for jq and log shippers.
      if (watching) {
        std::cout << to_json(*group, *s).dump() << std::endl;
      } else {
        print_json(std::cout, to_json(*group, *s));
      }
    } else {
      if (watching) std::cout << (first ? "" : "\n") << format_utc(s->at) << "\n";
      print_table(*group, *s);
      std::cout.flush();
    }
    if (!watching || !wait_or_stop(period, stop_signals)) return kExitOk;
  }
}

}  // namespace

void add_stat_command(CLI::App& app, Commands& commands) {
  auto opts = std::make_shared<StatOptions>();
  CLI::App* cmd = app.add_subcommand(
      "stat",
      "Show a cgroup's memory honestly: working set (usage - inactive file), anonymous memory, "
      "page cache (reclaimable and shmem/tmpfs), mapped, dirty, kernel, and memory pressure.");
  cmd->add_option("group", opts->target,
                  "A workload NAME (a group hostfit run made under <own cgroup>/hostfit) or a "
                  "cgroup PATH starting with '/' (as in /proc/PID/cgroup)")
      ->required()
      ->type_name("NAME|PATH");
  add_format_option(*cmd, opts->format, {Format::kTable, Format::kJson});
  cmd->add_option("--watch", opts->watch,
                  "Print again every DURATION (seconds, or with a unit: 0.05, 1, 500ms) until "
                  "interrupted or the group is gone (JSON: one object per line)")
      ->type_name("DURATION");
  cmd->add_option("--cgroup-parent", opts->cgroup_parent,
                  "Where NAME is looked up, as given to hostfit run --cgroup-parent")
      ->type_name("PATH");
  add_sysroot_option(*cmd, opts->sysroot);
  cmd->footer(
      "Examples:\n"
      "  hostfit stat mirror                 the group of 'hostfit run --name mirror'\n"
      "  hostfit stat /kubepods/pod1 -o json (keys in docs/cache.md)\n"
      "  hostfit stat mirror --watch 1");
  commands.push_back({cmd, [opts]() { return run_stat(*opts); }});
}

}  // namespace hostfit::cli
