// hostfit run: one workload in the foreground, in its own cgroup, and the truth about its end.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "cli.h"
#include "daemon_ledger.h"
#include "hostfit/cache.h"
#include "hostfit/supervise.h"

extern char** environ;

namespace hostfit::cli {
namespace {

struct RunOptions {
  std::optional<std::string> name;  // given but empty is an error, not the default
  WorkloadFlags w;
  std::string report_file;
  std::string cgroup_parent;
  std::string cache_interval = "50ms";
  bool no_env = false;
};

// Cache accounting for every run, and the --cache-limit budget when one is given.
Result<CacheLimitOptions> to_cache_options(const RunOptions& o, const WorkloadRequest& request) {
  CacheLimitOptions cache;
  auto limit = size_flag("--cache-limit", o.w.cache_limit);
  if (!limit) return fail(limit.error());
  cache.limit_bytes = *limit;
  if (cache.limit_bytes && request.memory_max_bytes &&
      *cache.limit_bytes > *request.memory_max_bytes) {
    return fail(ErrorKind::kUsage, "bad --cache-limit '" + o.w.cache_limit +
                                       "': more than --memory '" + o.w.memory +
                                       "'; the cache budget is part of the memory limit");
  }
  auto interval = parse_duration(o.cache_interval);
  if (!interval) return fail(interval.error().wrap("bad --cache-interval"));
  if (*interval < std::chrono::milliseconds(1) || *interval > std::chrono::seconds(60)) {
    return fail(ErrorKind::kUsage,
                "bad --cache-interval '" + o.cache_interval + "': give 1ms to 60s, e.g. 50ms");
  }
  cache.interval = std::chrono::duration_cast<std::chrono::milliseconds>(*interval);
  return cache;
}

// "memory of etl: peak 64 MiB (the kernel's); sampled every 50 ms (12 samples), the highest
// seen: usage 27 MiB, page cache ...". The peak is the kernel's own (memory.max_usage_in_bytes,
// memory.peak); the breakdown is sampled, and the line says so, since a sampler misses spikes.
std::string cache_line(const std::string& name, const CacheController& c,
                       const std::optional<uint64_t>& kernel_peak_bytes) {
  const MemoryBreakdown& p = c.peaks();
  std::string line = "memory of " + name + ": ";
  if (kernel_peak_bytes) line += "peak " + format_bytes(*kernel_peak_bytes) + " (the kernel's); ";
  line += "sampled every " + std::to_string(c.options().interval.count()) + " ms (" +
          std::to_string(c.stats().samples) + (c.stats().samples == 1 ? " sample" : " samples") +
          "), the highest seen: usage " + format_bytes(p.usage_bytes) + ", page cache " +
          format_bytes(p.file_bytes) + " (tmpfs/shmem " + format_bytes(p.shmem_bytes) + "), anon " +
          format_bytes(p.anon_bytes) + ", working set " + format_bytes(p.working_set_bytes) +
          ", unreclaimable " + format_bytes(p.unreclaimable_bytes);
  const CacheLimiterStats& s = c.stats();
  if (c.options().limit_bytes) {
    line += "; --cache-limit " + format_bytes(*c.options().limit_bytes) + ": " +
            std::to_string(s.reclaims) + " reclaims by " + s.method + " freed " +
            format_bytes(s.reclaimed_bytes);
    if (s.pressure_backoffs) {
      line += ", held back " + std::to_string(s.pressure_backoffs) + " times by memory pressure";
    }
    if (!s.last_error.empty()) line += "; last reclaim error: " + s.last_error;
  }
  return line;
}

Result<WorkloadRequest> to_request(const RunOptions& o) {
  auto r = request_from_flags(o.w);
  if (!r) return fail(r.error());
  if (o.name) {
    if (auto st = validate_cgroup_name(*o.name); !st) return fail(st.error().wrap("--name"));
    r->name = *o.name;
  }
  r->cgroup_parent = o.cgroup_parent;
  r->export_env = !o.no_env;
  for (char** e = environ; *e; ++e)
    r->env.emplace_back(*e);
  // `run` has no --ledger: $HOSTFIT_LEDGER names a file ledger, else a running daemon's wins.
  if (r->placement) {
    if (auto socket = daemon_ledger_socket("")) {
      r->hold_placement = [socket = *socket, ignore_foreign = r->ignore_foreign](
                              const PlacementRequest& req, const std::string& owner) {
        return daemon_hold(socket, req, owner, ignore_foreign);
      };
      r->release_placement = [socket = *socket](const std::string& owner) {
        (void)daemon_release(socket, owner);
      };
    }
  }
  return r;
}

// The --report file, opened before the workload starts so that a path that cannot be written is
// a usage-time error, not a report lost after the run. A file this run created is removed when
// the run does not get as far as writing it.
class ReportFile {
 public:
  static Result<ReportFile> open(const std::string& path) {
    ReportFile f;
    f.path_ = path;
    if (path.empty()) return f;
    f.fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f.fd_ >= 0) {
      f.created_ = true;
    } else if (errno == EEXIST) {
      f.fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    }
    if (f.fd_ < 0) return fail(Error::from_errno(errno, "open --report", path));
    return f;
  }
  ReportFile() = default;
  ReportFile(ReportFile&& o) noexcept
      : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), created_(o.created_) {}
  ReportFile& operator=(ReportFile&&) = delete;
  ~ReportFile() {
    if (fd_ < 0) return;
    ::close(fd_);
    if (created_ && !written_) ::unlink(path_.c_str());
  }
  // Replaces the file's contents with text; the error names the path.
  Status write(const std::string& text) {
    if (fd_ < 0) return {};
    if (::ftruncate(fd_, 0) != 0 && errno != EINVAL) {
      return fail(Error::from_errno(errno, "write the report to", path_));
    }
    for (size_t done = 0; done < text.size();) {
      const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail(Error::from_errno(n < 0 ? errno : EIO, "write the report to", path_));
      done += static_cast<size_t>(n);
    }
    written_ = true;
    return {};
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool created_ = false;
  bool written_ = false;
};

int run(const RunOptions& o) {
  auto request = to_request(o);
  if (!request) return report(request.error());
  auto cache_options = to_cache_options(o, *request);
  if (!cache_options) return report(cache_options.error());
  request->memory_pressure = cache_options->limit_bytes.has_value();
  const Sysroot root("/");
  // Only a placement needs the topology, and only sandbox sizing the memory facts; without them
  // the probe stays off hwloc and a dozen /proc files (issue 17 item 23). The environment
  // (virtualization, containers) is for `probe` to show, never used by a run.
  const HostFacts self = probe_host(root, ProbeTarget::self(),
                                    {.topology = request->placement.has_value(),
                                     .environment = false,
                                     .memory = needs_memory_facts(request->shape)});
  if (auto st = validate_request(self, *request); !st) return report(st.error());
  if (cache_options->limit_bytes) {
    if (auto st = check_cache_limit_support(root, self.cgroup); !st) return report(st.error());
  }
  auto report_file = ReportFile::open(o.report_file);
  if (!report_file) return report(report_file.error());

  std::string name;
  SuperviseHooks hooks;
  // The controller opens once the workload runs in its group. With --cache-limit it runs on a
  // thread of its own (which inherits the stop signals blocked by run_workload), to answer the
  // kernel's wake-ups at once; it ends by itself when the group is removed. Without one it only
  // samples, on the waiting thread between its waits: no thread to start and join for a run
  // shorter than a sample interval (issue 17 item 23).
  std::unique_ptr<CacheController> cache;
  hooks.on_running = [&](const Cgroup& workload, pid_t) {
    name = workload.name;  // for OOM event lines while it runs
    if (cache) return;
    auto group = cache_group_of(root, workload);
    if (!group) return;  // no memory controller: the report says cache null
    auto controller = CacheController::open(root, *group, *cache_options);
    if (!controller) {
      std::cerr << "hostfit: cache accounting is off: " << controller.error().message << "\n";
      return;
    }
    cache = std::move(*controller);
    if (cache_options->limit_bytes) cache->start();
  };
  if (!cache_options->limit_bytes) {
    hooks.tick_interval = cache_options->interval;
    hooks.on_tick = [&] {
      if (cache) (void)cache->tick();
    };
  }
  hooks.on_oom_event = [&](const OomEvent& e) {
    std::cerr << "hostfit: " << oom_event_line(name, e) << "\n";
  };
  hooks.on_notice = [](const std::string& notice) { std::cerr << "hostfit: " << notice << "\n"; };
  name = request->name;
  auto run = run_workload(root, self, *request, hooks);
  if (!run) return report(run.error());
  name = run->group.name;
  if (cache) (void)cache->stop();
  std::cerr << "hostfit: " << verdict_line(*run) << "\n";
  if (cache && cache->stats().samples > 0)
    std::cerr << "hostfit: " << cache_line(name, *cache, run->record.memory_peak_bytes) << "\n";
  if (!o.report_file.empty()) {
    nlohmann::json j = to_json(*run);
    j["cache"] = cache ? to_json(*cache) : nlohmann::json(nullptr);
    std::ostringstream text;
    print_json(text, j);
    // The workload's own code says how it ended; a lost report is hostfit's failure.
    if (auto st = report_file->write(text.str()); !st) return report(st.error());
  }
  return run->record.shell_exit_code();
}

}  // namespace

void add_run_command(CLI::App& app, Commands& commands) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "Run one workload in the foreground inside a cgroup hostfit creates, limited and sized "
      "for it, and say what really ended it (exit code, signal, or the kernel OOM killer).");
  cmd->add_option("--name", o->name, "Name of the workload and its cgroup (default CMD-PID)");
  add_workload_flags(*cmd, o->w, WorkloadFlagSet::kForeground);
  cmd->add_option("--report", o->report_file, "Write the run's JSON record to FILE at the end")
      ->type_name("FILE");
  cmd->add_option("--cgroup-parent", o->cgroup_parent,
                  "Create the group under PATH in every hierarchy instead of the default")
      ->type_name("PATH");
  cmd->add_option("--cache-interval", o->cache_interval,
                  "How often memory is sampled for the report and to re-arm --cache-limit (the "
                  "kernel wakes hostfit in between), e.g. 50ms, 1s (default 50ms)")
      ->type_name("DURATION");
  cmd->add_flag("--no-env", o->no_env, "Do not export HOSTFIT_* variables to the workload");
  cmd->add_option("command", o->w.command, "The command and its arguments, after --")
      ->type_name("CMD ARGS...");
  cmd->footer(
      "Where the group goes: hostfit manages only its own subtree, a 'hostfit' child of its own\n"
      "cgroup in each hierarchy (see /proc/self/cgroup), e.g. <own memory cgroup>/hostfit/NAME;\n"
      "--cgroup-parent PATH puts it at PATH/NAME instead. The --report records each path.\n"
      "\n"
      "Placeholders in ARGS: {workers} {cpus} {instances} {cpuset} {mems} {memory_limit}, from\n"
      "'hostfit plan' for the group hostfit creates ({{ and }} are literal braces). Exported "
      "unless\n"
      "--no-env: the variables of 'hostfit plan -o env' (HOSTFIT_WORKERS, HOSTFIT_CPUS,\n"
      "GOMAXPROCS, ...) and HOSTFIT_NAME HOSTFIT_CGROUP HOSTFIT_CPUSET HOSTFIT_MEMS\n"
      "HOSTFIT_MEMORY_LIMIT.\n"
      "\n"
      "Memory: the verdict's peak is the kernel's (memory.max_usage_in_bytes, memory.peak);\n"
      "hostfit also samples the group every --cache-interval and prints the highest page cache,\n"
      "tmpfs, anon, working set and unreclaimable memory it saw, labelled as sampled\n"
      "(docs/cache.md); --report has them under \"cache\".\n"
      "\n"
      "Exit code: the workload's, or 128 + signal (137 for an OOM kill), 127 when the command\n"
      "cannot be executed; 2 for a usage error (nothing is created).\n"
      "\n"
      "Examples:\n"
      "  hostfit run --memory 64Mi -- python3 -c 'bytearray(512 << 20)'\n"
      "  hostfit run --cpus 2 -- nginx -p \"$PWD\" -c examples/nginx/nginx.conf \\\n"
      "      -g 'daemon off; worker_processes {workers};'\n"
      "  hostfit run --name etl --memory 1G --report etl.json -- ./etl --threads {workers}\n"
      "  hostfit run --memory 2Gi --cache-limit 64Mi -- python3 -m http.server 8080");
  commands.push_back({cmd, [o]() { return run(*o); }});
}

}  // namespace hostfit::cli
