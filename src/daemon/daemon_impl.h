// The daemon's state: workloads, attachments and long polls, all owned by the one loop.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hostfit/api.h"
#include "hostfit/cache.h"
#include "hostfit/cgroup.h"
#include "hostfit/daemon.h"
#include "hostfit/place.h"
#include "hostfit/probe.h"
#include "hostfit/sessions.h"
#include "hostfit/store.h"
#include "hostfit/supervise.h"

namespace hostfit {

namespace asio = boost::asio;
using Steady = std::chrono::steady_clock;

// The latest sample of a workload or attachment. Only the latest is kept: the API serves no
// history (the web view draws its sparklines from its own polls), and 600 breakdowns a
// workload were 100 KB each, 100 MB for 1,000 workloads after ten minutes.
struct Sample {
  std::chrono::system_clock::time_point time;
  MemoryBreakdown memory;                // its `source` cleared: one path string less per group
  std::optional<uint64_t> cpu_usage_us;  // cumulative (cpuacct.usage / cpu.stat usage_usec)
  // Whether what clients see changed since the sample before (the time does not count).
  bool same_as(const Sample& other) const;
};

// What watches one cgroup's OOM kills: the kernel's wake-up fd on the loop, the counters, the
// kernel log for victims' names. Shared by workloads and attachments.
struct OomTracker {
  std::unique_ptr<OomWatch> watch;
  std::unique_ptr<asio::posix::stream_descriptor> fd;  // a dup of watch->fd()
  std::unique_ptr<KernelLogReader> kmsg;
  std::optional<OomCounters> baseline;
  uint64_t seen_kills = 0;
  uint64_t other_kills = 0;  // kills of processes other than the main one (workloads)
  bool main_victim_logged = false;
  bool kmsg_history = false;     // kmsg read from its start: only the main pid's records count
  uint64_t unnamed_pending = 0;  // counted kills the log has not named yet (workloads)
  std::optional<Steady::time_point> recheck_until;
  std::optional<Steady::time_point> woke, counted;  // first wake-up, first counted kill
};

// A workload's status on the loop, besides its runs in the store.
enum class Phase { kStopped, kStarting, kRunning, kStopping, kBackoff };
const char* to_string(Phase phase);

// The loop's watch on a cache controller's wake-up descriptor (cgroup v1's usage threshold), so
// that cache growing past its budget is answered when the kernel says so, not at the next
// interval. The descriptor is the controller's: borrowed, never closed, and let go of around
// every step because the controller replaces it when it re-arms.
class CacheWake {
 public:
  explicit CacheWake(asio::io_context& io) : fd_(io) {}
  ~CacheWake() { let_go(); }
  CacheWake(const CacheWake&) = delete;
  CacheWake& operator=(const CacheWake&) = delete;

  // cache.step(woken); then on_wake runs on the loop when the kernel reports the next crossing.
  Result<MemoryBreakdown> step(CacheController& cache, bool woken, std::function<void()> on_wake);
  // Before the controller stops or goes away.
  void let_go();
  // let_go(), then stops `cache` (it restores the limits it lowered), if there is one.
  void stop(CacheController* cache);

 private:
  asio::posix::stream_descriptor fd_;
};

struct Workload {
  explicit Workload(asio::io_context& io)
      : cache_wake(io),
        restart_timer(io),
        stop_timer(io),
        recheck_timer(io),
        sample_timer(io),
        exit_timer(io),
        victim_timer(io) {}
  WorkloadSpec spec;
  std::string source = "api";
  bool wanted = false;
  int64_t restarts = 0;
  Phase phase = Phase::kStopped;
  std::optional<RunRow> run;  // the open run, or the last one that ended
  uint64_t generation = 0;    // bumped per run: handlers of an older run do nothing
  bool deleted = false;

  std::optional<Cgroup> group;
  pid_t pid = 0;
  bool is_child = false;      // adopted runs are not: their exit status is not ours to read
  bool status_known = false;  // exit_info holds the status all the same (pidfd_exit_status)
  std::unique_ptr<asio::posix::stream_descriptor> pidfd;
  OomTracker oom;
  std::unique_ptr<CacheController> cache;
  CacheWake cache_wake;  // after cache: lets go of its descriptor before the controller closes it
  bool stopping = false, escalated = false;
  std::optional<Steady::time_point> exit_seen;
  siginfo_t exit_info{};
  std::vector<api::Reply> on_ended;  // stop/restart/delete answered with the verdict
  bool restart_after_stop = false;
  bool delete_after_stop = false;
  std::optional<Sample> sample;
  // Its element of GET /v1/workloads, serialized when it last changed (Impl::changed).
  std::string list_entry;
  bool list_entry_stale = true;

  asio::steady_timer restart_timer, stop_timer, recheck_timer, sample_timer, exit_timer,
      victim_timer;
};

struct Attachment {
  explicit Attachment(asio::io_context& io) : cache_wake(io), sample_timer(io), recheck_timer(io) {}
  AttachmentRow row;
  Cgroup group;
  OomTracker oom;
  std::unique_ptr<CacheController> cache;
  CacheWake cache_wake;  // after cache: lets go of its descriptor before the controller closes it
  std::optional<Sample> sample;
  bool detached = false;
  asio::steady_timer sample_timer, recheck_timer;
};

struct LongPoll {
  int64_t since = 0;
  api::Reply reply;
  std::shared_ptr<asio::steady_timer> timer;
};

// A client waiting for a session to change state (?wait=SECONDS): answered once, by whichever
// comes first of the change, the timer and daemon shutdown.
struct SessionWait {
  api::Reply reply;
  std::function<api::Response()> answer;
  std::unique_ptr<asio::steady_timer> timer;
  bool done = false;
  void finish();
};

// spec.cc: the bodies of POST /v1/placements, /v1/attachments and /v1/sessions, checked in full
// before a handler touches any state (tests/fuzz/api_request drives them without a daemon).
struct PlacementBody {
  PlacementRequest request;
  std::string owner;
  bool ignore_foreign = false;  // place over other tools' cpuset pins too
};
Result<PlacementBody> parse_placement_body(const nlohmann::json& body);
Result<AttachmentRow> parse_attachment_body(const nlohmann::json& body);
Result<sessions::OpenRequest> parse_session_body(const nlohmann::json& body);

class DaemonEngineHost;

struct Daemon::Impl {
  Impl(asio::io_context& io_, DaemonOptions options_)
      : io(io_), options(std::move(options_)), root(options.sysroot) {}

  asio::io_context& io;
  DaemonOptions options;
  Sysroot root;
  HostFacts self;
  std::unique_ptr<CgroupDriver> driver;
  std::unique_ptr<Store> store;
  std::unique_ptr<PlacementEngine> engine;
  std::map<std::string, std::shared_ptr<Workload>> workloads;
  std::map<std::string, std::shared_ptr<Attachment>> attachments;
  std::vector<std::shared_ptr<LongPoll>> polls;
  const api::Server* server = nullptr;
  std::chrono::system_clock::time_point started_at = std::chrono::system_clock::now();
  bool shut_down = false;
  // engines.cc: engines are workloads of source "engine" run for the sessions module.
  std::unique_ptr<sessions::EngineHost> engine_host;
  DaemonEngineHost* engine_runner = nullptr;     // engine_host, as what it is
  std::unique_ptr<sessions::Sessions> sessions;  // after engine_host: destroyed first
  std::vector<std::shared_ptr<SessionWait>> session_waits;
  // GET /v1/workloads answers from memory: each workload's element is serialized when it
  // changes, the body joined again only when some element or the set of workloads changed.
  uint64_t list_version = 1;
  uint64_t list_body_version = 0;
  std::shared_ptr<const std::string> list_body;  // answers being written hold older ones

  // daemon.cc: lifecycle of workload runs
  Status adopt_or_close(const RunRow& run);
  void start(const std::shared_ptr<Workload>& w);
  void stop(const std::shared_ptr<Workload>& w, bool force);
  void on_main_exit(const std::shared_ptr<Workload>& w, uint64_t generation);
  void finish_run(const std::shared_ptr<Workload>& w);
  void record_failed_start(const std::shared_ptr<Workload>& w, const std::string& message);
  void arm_pidfd(const std::shared_ptr<Workload>& w);
  void arm_oom(const std::shared_ptr<Workload>& w);
  void check_oom(const std::shared_ptr<Workload>& w, uint64_t generation);
  void read_victims(const std::shared_ptr<Workload>& w);
  void settle_unnamed(const std::shared_ptr<Workload>& w, uint64_t generation);
  void arm_samples(const std::shared_ptr<Workload>& w, bool woken = false);
  void schedule_restart(const std::shared_ptr<Workload>& w);
  Status create_workload(const WorkloadSpec& spec, const std::string& source, bool start_now);
  Status remove_workload(const std::string& name);
  std::vector<ConfigError> load_config(bool initial);
  Result<Placement> place_for(const WorkloadSpec& spec);
  // ignore_foreign: also on CPUs other tools pinned (`hostfit place --ignore-foreign`).
  Result<Placement> place_request(PlacementRequest request, const std::string& owner,
                                  bool ignore_foreign = false);

  // attach.cc
  Result<std::shared_ptr<Attachment>> attach(const AttachmentRow& row, bool record);
  void detach(const std::shared_ptr<Attachment>& a, const std::string& why);
  void arm_attachment(const std::shared_ptr<Attachment>& a);
  void arm_attachment_oom(const std::shared_ptr<Attachment>& a);
  void arm_attachment_samples(const std::shared_ptr<Attachment>& a, bool woken = false);
  void check_attachment_oom(const std::shared_ptr<Attachment>& a);
  Result<Cgroup> foreign_group(const std::string& cgroup_path) const;

  // engines.cc
  void open_sessions();
  void shutdown_sessions();
  static bool is_engine(const Workload& w);
  void engine_exit_seen(const std::shared_ptr<Workload>& w);
  void engine_run_ended(const std::shared_ptr<Workload>& w);
  void engine_oom_kill(const std::shared_ptr<Workload>& w, const OomEvent& e);
  void engine_main_oom_killed(const std::shared_ptr<Workload>& w, const OomEvent& e);
  void engine_oom_counted(const std::shared_ptr<Workload>& w);
  void adopt_sessions();
  void record_session_change(const sessions::Event& e);
  std::filesystem::path templates_dir() const;
  Status save_template(const sessions::EngineTemplate& t);
  void reply_when_leaves(const std::string& id, sessions::SessionState state, int wait,
                         std::function<api::Response()> answer, api::Reply reply);
  void add_session_routes(api::Router& router);

  // routes.cc
  void add_routes(api::Router& router);
  // Marks what GET /v1/workloads says of `w` (or of the set of workloads, w == nullptr) as
  // changed. Every change to a workload's phase, pid, run, restarts, spec or sample calls it.
  void changed(Workload* w);
  std::shared_ptr<const std::string> workloads_body();
  std::string metrics_text();

  // events
  // Appends an event in the current transaction (or its own) and answers waiting long polls.
  Result<int64_t> event(const std::string& type, const std::string& workload,
                        const std::string& message, nlohmann::json data = nlohmann::json::object());
  void publish();
  nlohmann::json workload_json(const Workload& w);  // reads the holds itself
  nlohmann::json workload_json(const Workload& w, const std::vector<HoldRow>& holds);
  // The compact element of GET /v1/workloads: what a list needs, not the spec or the logs.
  nlohmann::json list_entry_json(const Workload& w, const std::vector<HoldRow>& holds);
  CpuSet held_cpus();  // the CPUs of every hold in the store
  nlohmann::json attachment_json(const Attachment& a);
  std::filesystem::path log_path(const std::string& name, const char* stream) const;
};

nlohmann::json to_json(const RunRow& run);
nlohmann::json to_json(const EventRow& event);
nlohmann::json cgroup_to_json(const Cgroup& group);
std::optional<Cgroup> cgroup_from_json(const std::string& name, const std::string& text);
void log_line(const std::string& line);  // "hostfit daemon: LINE" on stderr
// The group's memory breakdown and CPU usage now; nullopt when its memory cannot be read.
std::optional<Sample> take_sample(const Sysroot& root, const CgroupDriver& driver,
                                  const Cgroup& group);
// A sample from the cache controller's last breakdown, with the group's CPU usage.
Sample sample_of(const MemoryBreakdown& memory, const CgroupDriver& driver, const Cgroup& group);

// A failed request's answer: 400 for the user's mistakes, 404, 409 for conflicts, else 500.
api::Response error_of(const Error& e);

}  // namespace hostfit
