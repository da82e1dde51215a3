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

Result<CacheGroup> resolve(const Sysroot& root, const StatOptions& opts) {
  const CgroupFacts facts = probe_cgroups(root, ProbeTarget::self());
  if (opts.target.starts_with('/')) return cache_group_at(root, facts, opts.target);
  if (auto st = validate_cgroup_name(opts.target); !st) {
    return fail(ErrorKind::kUsage,
                st.error().message + ", or give a cgroup path starting with '/'");
  }
  std::string parent;
  if (!opts.cgroup_parent.empty()) {
    auto given = normalize_cgroup_path(opts.cgroup_parent);
    if (!given) return fail(given.error().wrap("bad --cgroup-parent"));
    parent = *given;
  }
  const ControllerPath* memory = facts.find("memory");
  if (memory == nullptr) return cache_group_at(root, facts, "/");  // says there is none
  if (parent.empty()) parent = join_path(memory->cgroup, "hostfit");
  auto group = cache_group_at(root, facts, join_path(parent, opts.target));
  if (!group && group.error().kind == ErrorKind::kNotFound) {
    return fail(group.error().wrap("no workload named '" + opts.target + "' under " + parent +
                                   " (or give the cgroup's path starting with '/')"));
  }
  return group;
}

// PSI for the group where the kernel keeps it, else the whole system's, said which it is.
struct Pressure {
  MemoryPressure psi;
  bool system = false;  // /proc/pressure/memory
  std::string source;
};

struct Sample {
  MemoryBreakdown memory;
  std::optional<uint64_t> limit_bytes;
  std::optional<Pressure> pressure;
  std::chrono::system_clock::time_point at;
};

Result<Sample> sample(const Sysroot& root, const CacheGroup& g) {
  Sample s;
  s.at = std::chrono::system_clock::now();
  auto m = read_breakdown(root, g.memory_dir, g.v2);
  if (!m) return fail(m.error());
  s.memory = std::move(*m);
  if (auto text =
          root.read_value(join_path(g.memory_dir, g.v2 ? "memory.max" : "memory.limit_in_bytes"))) {
    if (auto limit = parse_kernel_limit(*text); limit && !limit->is_unlimited()) {
      s.limit_bytes = *limit->value;
    }
  }
  const bool own = !g.pressure_file.empty();
  const std::string file = own ? g.pressure_file : "/proc/pressure/memory";
  if (auto p = read_pressure(root, file)) s.pressure = Pressure{*p, !own, file};
  return s;
}

nlohmann::json to_json(const CacheGroup& g, const Sample& s) {
  nlohmann::json pressure = nullptr;
  if (s.pressure) {
    pressure = {{"some_avg10", s.pressure->psi.some_avg10},
                {"full_avg10", s.pressure->psi.full_avg10},
                {"scope", s.pressure->system ? "system" : "cgroup"},
                {"source", s.pressure->source}};
  }
  return {{"cgroup", g.cgroup},
          {"dir", g.memory_dir},
          {"version", g.v2 ? "v2" : "v1"},
          {"time", format_utc(s.at)},
          {"limit_bytes", s.limit_bytes ? nlohmann::json(*s.limit_bytes) : nlohmann::json(nullptr)},
          {"memory", hostfit::to_json(s.memory)},
          {"pressure", pressure}};
}

// "1 GiB used: 1012 MiB is file cache the kernel reclaims under pressure, 12 MiB is the
// workload's own"
std::string in_words(const Sample& s) {
  const MemoryBreakdown& m = s.memory;
  std::string line = format_bytes(m.usage_bytes) + " used" +
                     (s.limit_bytes ? " of a " + format_bytes(*s.limit_bytes) + " limit" : "") +
                     ": " + format_bytes(m.reclaimable_file_bytes) +
                     " is file cache the kernel reclaims under pressure, " +
                     format_bytes(m.unreclaimable_bytes) + " is the workload's own";
  if (m.shmem_bytes > 0) line += " (" + format_bytes(m.shmem_bytes) + " of it tmpfs/shmem)";
  return line;
}

std::string pressure_words(const Sample& s, bool short_form) {
  if (!s.pressure) return short_form ? "pressure unknown" : "memory pressure: unknown (no PSI)";
  char pct[64];
  std::snprintf(pct, sizeof pct, "some %.2f%%, full %.2f%%", s.pressure->psi.some_avg10,
                s.pressure->psi.full_avg10);
  if (short_form) {
    return std::string("pressure ") + pct + (s.pressure->system ? " (system)" : " (group)");
  }
  return std::string("memory pressure: ") + pct + " of the last 10 s" +
         (s.pressure->system
              ? ", system-wide (" + s.pressure->source + "): the kernel keeps none for this group"
              : ", this group's (" + s.pressure->source + ")");
}

void print_table(const CacheGroup& g, const Sample& s) {
  const MemoryBreakdown& m = s.memory;
  std::cout << g.cgroup << ": " << in_words(s) << "\n" << pressure_words(s, false) << "\n\n";
  Table t(false);
  t.add({"cgroup", g.cgroup + " (" + (g.v2 ? "v2" : "v1") + ", " + g.memory_dir + ")"});
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
  t.print(std::cout);
}

// One line per --watch sample.
void print_line(const Sample& s) {
  const MemoryBreakdown& m = s.memory;
  std::cout << format_utc(s.at) << "  used " << format_bytes(m.usage_bytes) << "  cache "
            << format_bytes(m.reclaimable_file_bytes) << " reclaimable  own "
            << format_bytes(m.unreclaimable_bytes) << "  " << pressure_words(s, true) << std::endl;
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
        print_json_line(std::cout, to_json(*group, *s));
      } else {
        print_json(std::cout, to_json(*group, *s));
      }
    } else if (watching) {
      print_line(*s);
    } else {
      print_table(*group, *s);
    }
    if (!watching || !wait_or_stop(period, stop_signals)) return kExitOk;
  }
}

}  // namespace

void add_stat_command(CLI::App& app, Commands& commands) {
  auto opts = std::make_shared<StatOptions>();
  CLI::App* cmd = app.add_subcommand(
      "stat",
      "Show a cgroup's memory honestly: how much of it is page cache the kernel takes back under "
      "pressure and how much is the workload's own, then working set, anonymous memory, page "
      "cache (reclaimable and shmem/tmpfs), mapped, dirty, kernel, and memory pressure (the "
      "group's where the kernel keeps it, else the system's, said so).");
  cmd->add_option("group", opts->target,
                  "A workload NAME (a group hostfit run made under <own cgroup>/hostfit) or a "
                  "cgroup PATH starting with '/' (as in /proc/PID/cgroup)")
      ->required()
      ->type_name("NAME|PATH");
  add_format_option(*cmd, opts->format, {Format::kTable, Format::kJson});
  cmd->add_option("--watch", opts->watch,
                  "Print one line every DURATION (seconds, or with a unit: 0.05, 1, 500ms) until "
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
