// hostfit attach: hold the page cache of a cgroup hostfit did not create under a budget. With a
// daemon (its socket exists) the daemon does it and keeps doing it; otherwise in the foreground,
// until the group is gone or SIGINT/SIGTERM, and every limit changed is restored.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "client.h"
#include "hostfit/cache.h"
#include "hostfit/probe.h"

namespace hostfit::cli {
namespace {

struct AttachOptions {
  std::string sysroot = "/";
  std::string cgroup;
  std::string cache_limit;
  std::string cache_interval = "50ms";
  std::string report_file;
  std::string name;
  bool foreground = false;
  ClientFlags client;
  // Flags only the foreground controller has; any of them keeps attach in the foreground.
  std::vector<CLI::Option*> foreground_only;
};

bool wants_foreground(const AttachOptions& o) {
  if (o.foreground) return true;
  for (const CLI::Option* flag : o.foreground_only) {
    if (flag->count() > 0) return true;
  }
  struct stat st {};
  return ::stat(o.client.socket_path().c_str(), &st) != 0;
}

// The daemon holds the group from now on (and after its own restarts): POST /v1/attachments.
int attach_to_daemon(const AttachOptions& o) {
  nlohmann::json body = {{"cgroup", o.cgroup}};
  if (!o.name.empty()) body["name"] = o.name;
  if (!o.cache_limit.empty()) {
    auto limit = parse_bytes(o.cache_limit);
    if (!limit) {
      return usage_error("bad --cache-limit '" + o.cache_limit + "': " + limit.error().message);
    }
    body["cache_limit"] = *limit;
  }
  auto answer = call_daemon(o.client, "POST", "/v1/attachments", body.dump());
  if (!answer) return report(answer.error());
  if (o.client.format == Format::kJson) {
    print_json(std::cout, *answer);
    return kExitOk;
  }
  const auto& limit = (*answer)["cache_limit_bytes"];
  std::cout << "the daemon at " << o.client.socket_path() << " now watches " << o.cgroup << " as '"
            << answer->value("name", o.name) << "'"
            << (limit.is_number_unsigned()
                    ? ", page cache held under " + format_bytes(limit.get<uint64_t>())
                    : ", memory accounting only")
            << "\n";
  return kExitOk;
}

// The group's own hard limit (v1 memory.limit_in_bytes, v2 memory.max), nullopt when none.
std::optional<uint64_t> group_limit(const Sysroot& root, const CacheGroup& g) {
  auto text =
      root.read_value(join_path(g.memory_dir, g.v2 ? "memory.max" : "memory.limit_in_bytes"));
  if (!text) return std::nullopt;
  auto limit = parse_kernel_limit(*text);
  if (!limit || limit->is_unlimited()) return std::nullopt;
  return *limit->value;
}

Result<CacheLimitOptions> to_options(const AttachOptions& o) {
  CacheLimitOptions options;
  auto limit = parse_bytes(o.cache_limit);
  if (!limit) {
    return fail(ErrorKind::kUsage,
                "bad --cache-limit '" + o.cache_limit + "': " + limit.error().message);
  }
  options.limit_bytes = *limit;
  auto interval = parse_duration(o.cache_interval);
  if (!interval) return fail(interval.error().wrap("bad --cache-interval"));
  if (*interval < std::chrono::milliseconds(1) || *interval > std::chrono::seconds(60)) {
    return fail(ErrorKind::kUsage,
                "bad --cache-interval '" + o.cache_interval + "': give 1ms to 60s, e.g. 50ms");
  }
  options.interval = std::chrono::duration_cast<std::chrono::milliseconds>(*interval);
  return options;
}

std::string summary(const CacheController& c, const std::string& why) {
  const CacheLimiterStats& s = c.stats();
  char cpu[32];
  std::snprintf(cpu, sizeof cpu, "%.1f", static_cast<double>(s.cpu_us) / 1000.0);
  std::string line = "detached from " + c.group().cgroup + " (" + why + "): page cache peaked at " +
                     format_bytes(c.peaks().reclaimable_file_bytes) + " reclaimable (budget " +
                     format_bytes(*c.options().limit_bytes) + "); " + std::to_string(s.events) +
                     " kernel wake-ups, " + std::to_string(s.reclaims) + " reclaims freed " +
                     format_bytes(s.reclaimed_bytes) + ", controller CPU " + cpu + " ms";
  if (!s.last_error.empty()) line += "; last error: " + s.last_error;
  return line;
}

int run_attach(const AttachOptions& o) {
  if (!wants_foreground(o)) return attach_to_daemon(o);
  if (o.cache_limit.empty()) {
    return usage_error("attach in the foreground needs --cache-limit SIZE (no daemon at " +
                       o.client.socket_path() + ")");
  }
  if (o.sysroot.empty()) return usage_error("--sysroot needs a directory");
  auto options = to_options(o);
  if (!options) return report(options.error());
  const Sysroot root(o.sysroot);
  const CgroupFacts facts = probe_cgroups(root, ProbeTarget::self());
  auto group = cache_group_at(root, facts, o.cgroup);
  if (!group) return report(group.error().wrap("--cgroup"));
  if (auto limit = group_limit(root, *group); limit && *options->limit_bytes > *limit) {
    return usage_error("bad --cache-limit '" + o.cache_limit + "': more than the memory limit of " +
                       o.cgroup + " (" + format_bytes(*limit) +
                       "); the cache budget is part of that limit");
  }
  auto controller = CacheController::open(root, *group, *options);
  if (!controller) return report(controller.error());

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
  const int signal_fd = ::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) return report(Error::from_errno(errno, "create", "a signalfd"));

  std::cout << "holding the page cache of " << group->cgroup << " (" << (group->v2 ? "v2" : "v1")
            << ", " << group->memory_dir << ") under " << format_bytes(*options->limit_bytes)
            << " by " << (*controller)->stats().method
            << "; stops when the group is gone or on SIGINT/SIGTERM" << std::endl;
  (*controller)->run(signal_fd);
  pollfd pending{signal_fd, POLLIN, 0};
  const bool signalled = ::poll(&pending, 1, 0) > 0;
  ::close(signal_fd);
  const Status restored = (*controller)->stop();
  std::cerr << "hostfit: "
            << summary(**controller, signalled ? "stopped by a signal" : "the group is gone")
            << "\n";
  if (!o.report_file.empty()) {
    nlohmann::json j = to_json(**controller);
    j["cgroup"] = group->cgroup;
    j["dir"] = group->memory_dir;
    j["restored"] = static_cast<bool>(restored);
    std::ofstream out(o.report_file);
    if (out) print_json(out, j);
    if (!out) std::cerr << "hostfit: cannot write the report to " << o.report_file << "\n";
  }
  if (!restored) return report(restored.error());
  return kExitOk;
}

}  // namespace

void add_attach_command(CLI::App& app, Commands& commands) {
  auto o = std::make_shared<AttachOptions>();
  CLI::App* cmd = app.add_subcommand(
      "attach",
      "Hold the page cache of an existing cgroup (one hostfit did not create) under a budget, "
      "with the same controller as 'hostfit run --cache-limit': through the daemon when its "
      "socket exists, else in the foreground until the group is gone or SIGINT/SIGTERM, "
      "restoring every limit it changed.");
  cmd->add_option("--cgroup", o->cgroup,
                  "The group's path inside the hierarchy, e.g. /system.slice/registry.service "
                  "(as in /proc/PID/cgroup)")
      ->required()
      ->type_name("PATH");
  cmd->add_option("--cache-limit", o->cache_limit,
                  "Budget for the group's reclaimable page cache, e.g. 64Mi (tmpfs is never "
                  "counted or reclaimed)")
      ->type_name("SIZE");
  cmd->add_option("--name", o->name,
                  "The attachment's name in the daemon (default the group's last path segment)")
      ->type_name("NAME");
  cmd->add_flag("--foreground", o->foreground,
                "Run the controller here even when a daemon is there");
  o->foreground_only.push_back(
      cmd->add_option("--cache-interval", o->cache_interval,
                      "How often memory is sampled between the kernel's wake-ups (default 50ms; "
                      "foreground only)")
          ->type_name("DURATION"));
  o->foreground_only.push_back(
      cmd->add_option("--report", o->report_file,
                      "Write the controller's JSON record (peaks, counters) to FILE at the end "
                      "(foreground only)")
          ->type_name("FILE"));
  o->foreground_only.push_back(add_sysroot_option(*cmd, o->sysroot));
  add_client_flags(*cmd, o->client);
  cmd->footer(
      "Where it runs: when the daemon's socket exists (--socket, default $HOSTFIT_SOCKET, else\n"
      "/run/hostfit/hostfit.sock) the daemon attaches the group, keeps it under the budget across\n"
      "its own restarts and reports its memory (GET /v1/attachments; DELETE\n"
      "/v1/attachments/NAME detaches it); --cache-limit is then optional (memory accounting\n"
      "only). Otherwise, or with --foreground, --cache-interval, --report or --sysroot, this\n"
      "process runs the controller until the group is gone or SIGINT/SIGTERM; --cache-limit is\n"
      "required.\n"
      "\n"
      "Examples:\n"
      "  hostfit attach --cgroup /system.slice/registry.service --cache-limit 64Mi\n"
      "  hostfit attach --foreground --cgroup /kubepods/burstable/pod<UID> --cache-limit 96Mi "
      "(docs/cache.md)");
  commands.push_back({cmd, [o]() { return run_attach(*o); }});
}

}  // namespace hostfit::cli
