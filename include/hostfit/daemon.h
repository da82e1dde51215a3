// hostfit daemon: the node agent. One Boost.Asio io_context runs everything: each workload's
// pidfd, its OOM watch (v1 eventfd on memory.oom_control, v2 inotify on memory.events), its
// restart back-off and stop timers, attachments to foreign cgroups, config reloads on SIGHUP and
// the API's connections. Every state change is written to the store in the same handler, before
// the next one runs; a daemon killed with -9 finds its running workloads again when it restarts
// (docs/daemon.md).
//
//   boost::asio::io_context io;
//   auto daemon = hostfit::Daemon::open(io, {.state_dir = "/var/lib/hostfit"});
//   hostfit::api::Router router;
//   (*daemon)->add_routes(router);
//   hostfit::api::Server server(io, router);  server.listen_unix(...);
//   (*daemon)->set_server(&server);  io.run();
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hostfit/core.h"
#include "hostfit/place.h"

namespace boost::asio {
class io_context;
}

namespace hostfit {

namespace api {
class Router;
class Server;
}  // namespace api

// ---------------------------------------------------------------------------------------------
// Workloads: one JSON shape for config files and POST /v1/workloads (docs/daemon.md).

enum class RestartPolicy { kNever, kOnFailure, kAlways };
const char* to_string(RestartPolicy policy);  // "never", "on-failure", "always"

inline constexpr uint64_t kMinWorkloadMemoryBytes = uint64_t{4} << 20;  // "memory" >= 4Mi
inline constexpr uint64_t kMinCacheLimitBytes = uint64_t{1} << 20;      // "cache_limit" >= 1Mi

struct WorkloadSpec {
  std::string name;               // a cgroup name: [A-Za-z0-9._-], 1..64, no leading '.' or '_'
  std::vector<std::string> argv;  // exec'd as given after {placeholder} substitution; no shell
  std::map<std::string, std::string> env;    // added to a minimal PATH/HOME/LANG environment
  std::string user;                          // run as this user (and its primary group); "" = root
  std::optional<double> cpus;                // CPU quota
  std::optional<CpuSet> cpuset;              // explicit CPUs
  std::optional<PlacementPolicy> placement;  // or ceil(cpus) CPUs placed through the ledger
  std::vector<int> placement_nodes;          // "nodes:1,3"
  std::optional<uint64_t> memory_max_bytes;
  std::optional<uint64_t> memory_high_bytes;  // memory.high (cgroup v2 only)
  std::optional<uint64_t> pids_max;
  std::optional<uint64_t> cache_limit_bytes;  // page-cache budget (the cache controller)
  std::string runtime;   // sandbox runtime sizing {workers}/{instances} (find_runtime); "" = none
  uint64_t plugins = 0;  // its instances per worker; 0 = one per worker with a runtime
  RestartPolicy restart = RestartPolicy::kNever;
  int restart_limit = 5;                            // restarts in a row before giving up
  std::chrono::milliseconds restart_backoff{1000};  // first delay; doubles, at most 60 s
  std::chrono::milliseconds stop_timeout{10000};    // SIGTERM -> SIGKILL after this
  bool autostart = true;                            // start when created or loaded
};

// Strict: unknown keys, wrong types, bad names (empty, '/', '..'), argv not a non-empty list of
// strings and sizes below the minimums are kUsage errors naming the key and what is accepted.
Result<WorkloadSpec> parse_workload_spec(const nlohmann::json& j);
nlohmann::json to_json(const WorkloadSpec& spec);  // the same shape, normalized

// One config file that did not load.
struct ConfigError {
  std::string file;
  int line = 0;  // 0 when the problem is not at one place in the text
  std::string message;
};
// Every DIR/*.json (a file holds one workload object), sorted by file name. A file that does
// not parse or validate is in `errors` with its line; the others still load. Two files with one
// name: the second is an error.
struct ConfigLoad {
  std::vector<std::pair<std::string, WorkloadSpec>> workloads;  // file, spec
  std::vector<ConfigError> errors;
};
ConfigLoad load_config_dir(const std::filesystem::path& dir);

// ---------------------------------------------------------------------------------------------
// The agent

struct DaemonOptions {
  std::filesystem::path state_dir = "/var/lib/hostfit";  // hostfit.db and logs/NAME.{out,err}
  std::filesystem::path config_dir;                      // "" = none
  std::string cgroup_parent;  // --cgroup-parent: where workload groups go ("" = own/hostfit)
  std::string sysroot = "/";
  std::chrono::milliseconds sample_interval{1000};  // memory breakdown samples
};

class Daemon {
 public:
  // Opens the store, the cgroup driver and the placement engine, adopts the runs a previous
  // daemon left (or records how they ended), loads the config dir and starts what should run.
  static Result<std::unique_ptr<Daemon>> open(boost::asio::io_context& io, DaemonOptions options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Registers every route of docs/daemon.md on `router`. The one place routes are added.
  void add_routes(api::Router& router);
  // For /metrics: the server's request metrics are appended to the daemon's own.
  void set_server(const api::Server* server);
  // Re-reads the config dir (SIGHUP): new files start, changed specs apply at the next start,
  // removed files' workloads stop and go. Returns the errors, which are also events.
  std::vector<ConfigError> reload();
  // Stops watching (timers, descriptors) without touching the workloads, which keep running
  // for the next daemon to adopt; answers pending long polls.
  void shutdown();

  struct Impl;

 private:
  explicit Daemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// `hostfit daemon`: the above plus the API on a Unix socket (and TCP with a token), SIGHUP for
// reload, SIGTERM/SIGINT to leave (workloads keep running), sd_notify READY=1 when serving.
struct DaemonServeOptions {
  DaemonOptions daemon;
  std::string socket_path = "/run/hostfit/hostfit.sock";
  std::string listen;      // "ADDR:PORT" or ""
  std::string token_file;  // required with listen
};
Status serve_daemon(const DaemonServeOptions& options);

// Sends "READY=1" (or any state) to $NOTIFY_SOCKET as systemd's sd_notify does; no-op when it
// is unset. Written here (a datagram on an AF_UNIX socket) rather than linking libsystemd.
Status notify_systemd(std::string_view state);

// The default socket: $HOSTFIT_SOCKET when set, else /run/hostfit/hostfit.sock. `hostfit place`
// and `run --placement` use the daemon's ledger when this socket exists.
std::string default_socket_path();

}  // namespace hostfit
