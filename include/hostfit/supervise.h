// hostfit supervise: run one workload in its cgroup, in the foreground, and say what really ended
// it. The child joins the group before exec (no shell), hostfit waits on a pidfd, forwards
// SIGINT/SIGTERM/SIGHUP/SIGQUIT and escalates to SIGKILL after the stop timeout. An OOM kill is
// KILLED(OOM) only when the main process died of SIGKILL, the group's oom_kill counter rose, and
// the kernel log names the main process as the victim: never from exit code 137 alone, never from
// the order of events.
//
//   hostfit::RunRecord r = hostfit::supervise(*driver, group, {.argv = {"python3", "-c", "..."}});
//   r.state == hostfit::RunState::kKilled && r.reason == hostfit::KillReason::kOom
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hostfit/cgroup.h"
#include "hostfit/core.h"
#include "hostfit/place.h"
#include "hostfit/plan.h"
#include "hostfit/probe.h"

namespace hostfit {

// Lifecycle of a workload, shared with the daemon: PENDING -> STARTING -> RUNNING -> one of
// EXITED(code), FAILED(could not start), KILLED(OOM | SIGNAL n | TIMEOUT).
enum class RunState { kPending, kStarting, kRunning, kExited, kFailed, kKilled };
enum class KillReason { kNone, kOom, kSignal, kTimeout };
const char* to_string(RunState state);     // "PENDING", ..., "KILLED"
const char* to_string(KillReason reason);  // "", "OOM", "SIGNAL", "TIMEOUT"

// A process of the workload killed by the OOM killer while the main process lived.
struct OomEvent {
  pid_t pid = 0;                           // 0 when the kernel log could not be read
  std::string comm;                        // its command name, from the kernel log
  std::optional<uint64_t> kernel_time_us;  // the kill's timestamp in the kernel log (monotonic)
};

// What happened to one run. Times are wall-clock for people and monotonic for latencies.
struct RunRecord {
  RunState state = RunState::kPending;
  KillReason reason = KillReason::kNone;
  int exit_code = 0;         // EXITED: the workload's code
  int signal = 0;            // KILLED: the signal that ended the main process
  int forwarded_signal = 0;  // the first stop signal hostfit passed on, 0 when none
  std::string failure;       // FAILED: "cannot execute 'x': No such file or directory"
  int failure_errno = 0;     // FAILED: errno of exec (ENOENT -> shell code 127)
  pid_t pid = 0;             // the main process
  std::chrono::system_clock::time_point started_at, ended_at;
  uint64_t oom_kills = 0;  // rise of the group's oom_kill counter over the run
  std::string
      oom_evidence;  // how an OOM verdict was reached, e.g. "memory.oom_control oom_kill 0 -> 1"
  std::vector<OomEvent> events;  // OOM kills of other processes of the workload
  // The main process died of SIGKILL while the group's oom_kill counter rose, but the kernel log
  // (unreadable, or silent about it) cannot say whether the main process was the victim: the
  // verdict stays KILLED(SIGNAL 9), never a guessed KILLED(OOM).
  bool oom_victim_unknown = false;
  std::optional<uint64_t> memory_peak_bytes;
  std::optional<uint64_t> cpu_usage_us;
  std::optional<uint64_t> memory_limit_bytes;  // the group's limit, for the verdict line
  // Latencies of an OOM verdict, in microseconds: from the first OOM wake-up (eventfd/inotify)
  // and from the kill's timestamp in the kernel log (when /dev/kmsg is readable).
  std::optional<double> wakeup_to_verdict_us;
  std::optional<double> kernel_to_verdict_us;

  double duration_s() const;
  // The code a shell would report: the exit code, 128 + signal, 127 (not found) or 126.
  int shell_exit_code() const;
  // "EXITED(0)", "KILLED(OOM)", "KILLED(SIGNAL 9)", "KILLED(TIMEOUT)", "FAILED"
  std::string state_text() const;
};

struct SpawnSpec {
  std::vector<std::string> argv;                  // argv[0] is looked up in PATH; no shell
  std::vector<std::string> env;                   // the whole environment, "KEY=value"
  std::chrono::milliseconds stop_timeout{10000};  // SIGTERM/SIGINT forwarded -> SIGKILL after
  std::string kmsg_path = "/dev/kmsg";            // the kernel log under the Sysroot; "" = none
  // The daemon's additions. Credentials are dropped after joining the group, before exec.
  std::optional<uid_t> uid{};
  std::optional<gid_t> gid{};  // also the only supplementary group
  std::string stdout_path{};   // appended to (made 0640); "" = inherited
  std::string stderr_path{};
  // Every descriptor above stderr is closed at exec: a daemon's listening sockets and watches
  // must not live on in its workloads (they would outlive a killed daemon).
  bool close_other_fds = false;
};

// One OOM-kill record of the kernel log, as /dev/kmsg gives it:
// "3,1234,5678901,-;oom-kill:constraint=CONSTRAINT_MEMCG,...,task_memcg=/a/b,task=python3,pid=42,uid=0"
struct KernelOomKill {
  pid_t pid = 0;
  std::string comm;
  std::string task_memcg;  // the victim's memory cgroup path
  uint64_t time_us = 0;    // the record's timestamp (CLOCK_MONOTONIC-like, microseconds)
};
// The kill described by one kmsg record, or nullopt for any other (or garbled) record.
std::optional<KernelOomKill> parse_kmsg_oom_kill(std::string_view record);
// The victim of the other record every OOM kill writes, "...: Killed process PID (COMM) ...",
// which the kernel never rate-limits (the "oom-kill:" summary is rate-limited with the rest of
// the OOM report); task_memcg is empty. nullopt for any other record.
std::optional<KernelOomKill> parse_kmsg_killed_process(std::string_view record);

// ---------------------------------------------------------------------------------------------
// The pieces of a run that `supervise` and the daemon share: spawning into the group, reading
// OOM kills from the kernel log and classifying the end.

// A child started in its group. exec_errno != 0: it could not execute (already reaped).
struct Spawned {
  pid_t pid = 0;
  int pidfd = -1;  // owned by the caller; -1 when exec failed
  int exec_errno = 0;
  std::string failure;  // "cannot execute 'x': No such file or directory"
  std::chrono::system_clock::time_point started_at;
};
// Starts a child (clone with CLONE_VM | CLONE_VFORK, as posix_spawn does: no copy of this
// process's memory), joins `group` in every hierarchy, drops to spec.uid/gid, redirects output,
// restores the default signal dispositions and an empty signal mask, and execs spec.argv. Errors
// are hostfit's own (no clone, no pidfd, cannot join the group); nothing is left running on error.
Result<Spawned> spawn_in_group(CgroupDriver& driver, const Cgroup& group, const SpawnSpec& spec);

// The kernel log from now on, filtered to OOM kills in one memory cgroup (or below), read
// without blocking. Unreadable (no /dev/kmsg, no permission): readable() is false.
class KernelLogReader {
 public:
  // From now on, or from the oldest record the kernel still keeps (`from_start`).
  KernelLogReader(const Sysroot& root, const std::string& path, std::string memcg,
                  bool from_start = false);
  ~KernelLogReader();
  KernelLogReader(const KernelLogReader&) = delete;
  KernelLogReader& operator=(const KernelLogReader&) = delete;
  bool readable() const { return fd_ >= 0; }
  // New kills in the group since the last call, and any kill of `main` (named by its pid alone
  // when the summary record was rate-limited away).
  std::vector<KernelOomKill> read_kills(pid_t main = 0);

 private:
  int fd_ = -1;
  std::string memcg_;
};

// OOM truth: sets record.exit_code/signal, state, reason, oom_kills and oom_evidence from how
// the main process ended (waitid's si_code and si_status) and the group's counters at the start
// and now. KILLED(OOM) only for a death by SIGKILL with a rise of oom_kill that kills of other
// processes (other_kills) do not account for. `escalated`: hostfit sent the SIGKILL itself after
// a stop timeout (KILLED(TIMEOUT)). OOM is never inferred from order: unless the kernel log named
// the main process (`main_named`), such a death stays KILLED(SIGNAL 9) with oom_victim_unknown
// set and `unnamed_why` (why the log could not tell) in the evidence.
void classify_exit(RunRecord& record, int wait_code, int wait_status,
                   const std::optional<OomCounters>& baseline,
                   const std::optional<OomCounters>& now, uint64_t other_kills, bool escalated,
                   bool main_named, const std::string& unnamed_why);
// True when the main process died of SIGKILL but the counter has not risen (yet): the kernel
// sends SIGKILL before it counts the kill, so a caller re-reads for a short grace period.
bool oom_count_pending(int wait_code, int wait_status, const std::optional<OomCounters>& baseline,
                       const std::optional<OomCounters>& now, uint64_t other_kills);

struct SuperviseHooks {
  std::function<void(RunState, pid_t)> on_state;         // STARTING, RUNNING (with the pid)
  std::function<void(const Cgroup&, pid_t)> on_running;  // the workload runs in its group now
  std::function<void(const OomEvent&)> on_oom_event;     // another process was OOM-killed
  std::function<void(const std::string&)> on_notice;     // e.g. paused at the limit, no OOM killer
  // Called on the supervising thread 1 ms after the workload starts and then every tick_interval
  // until it ends (never when tick_interval is zero): periodic work that needs no thread of its
  // own, such as `run`'s memory samples without --cache-limit.
  std::chrono::milliseconds tick_interval{0};
  std::function<void()> on_tick;
};

// Runs spec.argv inside `group` and blocks until the main process ends. Signals listed above are
// blocked for the calling thread while it runs (call from the main thread of a single-threaded
// program). A command that cannot be executed is a RunRecord in state FAILED, not an Error;
// Errors are for hostfit's own failures (no pidfd, no fork). Leaves the group in place: the
// caller removes it (which kills any process the workload left behind).
Result<RunRecord> supervise(const Sysroot& root, CgroupDriver& driver, const Cgroup& group,
                            const SpawnSpec& spec, const SuperviseHooks& hooks = {});

// ---------------------------------------------------------------------------------------------
// A whole `hostfit run`: validate, create and limit the group, size the workload, supervise it,
// release everything.

struct WorkloadRequest {
  std::string name;                            // "" = "<command>-<pid>"
  std::optional<double> cpus{};                // CPU quota in CPUs (quota over a 100 ms period)
  std::optional<CpuSet> cpuset{};              // explicit CPUs
  std::optional<PlacementPolicy> placement{};  // or CPUs chosen by `place` for ceil(cpus)
  std::vector<int> placement_nodes{};          // PlacementPolicy::kNodes
  bool ignore_foreign = false;                 // place over other tools' cpuset pins too
  std::filesystem::path ledger_path{};         // "" = default_ledger_path()
  std::chrono::milliseconds ledger_wait = kLedgerLockWait;  // for another hostfit's ledger lock
  std::optional<uint64_t> memory_max_bytes{};
  std::optional<uint64_t> memory_high_bytes{};
  std::optional<uint64_t> pids_max{};
  std::string cgroup_parent{};      // --cgroup-parent, "" = default
  bool export_env = true;           // HOSTFIT_* variables
  std::vector<std::string> argv{};  // with {placeholders}
  WorkloadShape shape{};            // sandbox runtime and instances per worker for the plan
  std::vector<std::string> env{};   // the environment to start from
  std::chrono::milliseconds stop_timeout{10000};
  bool memory_pressure = false;  // the group's PSI files are read (--cache-limit backs off by them)
  // Where --placement holds and releases CPUs: the file ledger when unset; the CLI sets them to
  // the daemon's ledger (its API) when a daemon runs.
  std::function<Result<Placement>(const PlacementRequest&, const std::string& owner)>
      hold_placement{};
  std::function<void(const std::string& owner)> release_placement{};
};

// What the workload got, resolved before it starts.
struct WorkloadSizing {
  Plan plan;  // make_plan for the group: workers, cpus, cpuset, mems, memory limit, binding
  std::optional<Placement> placement;  // when --placement chose the CPUs
};

struct WorkloadRun {
  RunRecord record;
  Cgroup group;
  CgroupLimits limits;
  WorkloadSizing sizing;
  std::vector<std::string> argv;   // after placeholder substitution
  std::vector<std::string> swept;  // leftover groups removed at start
  CgroupMode mode = CgroupMode::kNone;
  double stop_timeout_s = 0;
};

// The smallest --memory and --memory-high hostfit accepts, as Docker refuses limits below 6 MiB:
// less is a forgotten unit, and the workload would be OOM-killed at once.
inline constexpr uint64_t kMinMemoryBytes = uint64_t{6} << 20;

// The command a workload runs in its group: sized by make_plan for the group's limits (the
// sizing line and plan warnings go to notices), {placeholders} substituted in `command`, and
// `env` with plan_environment() and HOSTFIT_NAME/CGROUP/CPUSET/MEMS/MEMORY_LIMIT added when
// export_env. Shared by run_workload and the daemon.
struct PreparedCommand {
  Plan plan;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::vector<std::string> notices;
};
Result<PreparedCommand> prepare_command(const HostFacts& self, const Cgroup& group,
                                        const CgroupLimits& limits, const std::string& name,
                                        const std::vector<std::string>& command,
                                        const std::vector<std::string>& env,
                                        const WorkloadShape& shape, bool export_env);

// kUsage when memory.high is asked of a host whose memory controller is cgroup v1. `setting`
// names it as the caller's input does ("--memory-high", "\"memory_high\""), `hard_limit` the
// setting to use instead.
Status check_memory_high_supported(const CgroupFacts& cgroup, std::string_view setting,
                                   std::string_view hard_limit);

// Checks a request against what hostfit itself may use (`self`, from probe_host of "/proc/self")
// before anything is created. kUsage errors name the flag, the value and what is accepted.
Status validate_request(const HostFacts& self, const WorkloadRequest& request);

// Runs the request: prepare the parents (sweeping leftovers and the placements their runs made),
// create the
// group, place it (--placement, through the place ledger), limit it, size it with make_plan
// (request.shape; its warnings, such as lowered workers, go to hooks.on_notice),
// substitute {workers} {cpus} {instances} {cpuset} {mems} {memory_limit} in argv, export
// plan_environment() plus HOSTFIT_NAME/CGROUP/CPUSET/MEMS/MEMORY_LIMIT, supervise, and release
// the group and the placement on every path. Blocks until the workload
// ends. A command that cannot be executed is a FAILED record, not an Error. A SIGINT, SIGTERM,
// SIGHUP or SIGQUIT before the workload starts cancels the run: the group made so far is
// removed and the error (kResource, errno EINTR) names the signal; nothing is forwarded later.
Result<WorkloadRun> run_workload(const Sysroot& root, const HostFacts& self,
                                 const WorkloadRequest& request, const SuperviseHooks& hooks = {});

// The one line a person can act on, without the "hostfit: " prefix.
std::string verdict_line(const WorkloadRun& run);
std::string oom_event_line(const std::string& name, const OomEvent& event);
// The --report record: state, reason, exit_code, signal, started_at, ended_at, limits, cgroup,
// memory.peak_bytes, oom_kills, cpu_usage_us (keys in docs/run.md).
nlohmann::json to_json(const WorkloadRun& run);

}  // namespace hostfit
