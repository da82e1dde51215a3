// Spawning a workload into its cgroup, waiting on it, forwarding signals and classifying its end.
#include "hostfit/supervise.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

namespace hostfit {
namespace {

using Clock = std::chrono::steady_clock;

// The signals a person or an orchestrator uses to stop hostfit; they go on to the workload.
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
// After the main process died of SIGKILL with no rise yet, how long to re-read the counter: the
// kernel sends SIGKILL before it counts the kill, and the victim may be reaped in between.
constexpr auto kCounterGrace = std::chrono::milliseconds(100);
// Without the kernel log, how long an OOM wake-up waits to see whether the main process is the
// victim (it then dies within milliseconds) before reporting a kill of another process.
constexpr int kVictimGraceMs = 100;
// After an OOM wake-up without a counted kill, re-read the counters this often for this long.
constexpr int kRecheckPollMs = 2;
constexpr auto kRecheckWindow = std::chrono::milliseconds(250);
// The first SuperviseHooks::on_tick after the start, as the cache controller's thread sampled.
constexpr auto kFirstTick = std::chrono::milliseconds(1);

// Descriptors closed on scope exit.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Milliseconds from now until `t`, rounded up (a poll never wakes early), at least 0.
int ms_until(Clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::max<int64_t>(0, ms + 1));
}

uint64_t monotonic_us() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

// Blocks the forwarded signals for this thread and restores the old mask on destruction.
class SignalBlock {
 public:
  SignalBlock() {
    sigemptyset(&set_);
    for (int s : kForwarded)
      sigaddset(&set_, s);
    ::pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~SignalBlock() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  const sigset_t& set() const { return set_; }
  const sigset_t& old() const { return old_; }

 private:
  sigset_t set_, old_;
};

std::vector<char*> c_strings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v)
    out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// What the child of spawn_in_group needs, prepared before the clone: it shares the parent's
// memory until exec and may only make raw system calls.
struct ChildArgs {
  const std::vector<Fd>* procs;
  int out_fd, err_fd;
  const SpawnSpec* spec;
  char* const* argv;
  char* const* envp;
  // Written by the child before it exits: errno of a failed exec, -errno of a failed step before.
  int error = 0;
};

// The cloned child: join the group in every hierarchy ("0" is the writer), drop credentials,
// redirect, restore signals, exec. Credentials go through raw system calls: glibc's setuid()
// would signal every thread of the parent, whose memory the child still shares.
int child_main(void* p) {
  auto* a = static_cast<ChildArgs*>(p);
  const auto fail_with = [&](int err) {
    a->error = err;
    ::_exit(err == ENOENT ? 127 : 126);
  };
  for (const auto& fd : *a->procs) {
    if (::write(fd.fd, "0", 1) != 1) fail_with(-errno);
  }
  const SpawnSpec& spec = *a->spec;
  if (spec.gid) {
    const gid_t gid = *spec.gid;
    if (::syscall(SYS_setgroups, 1, &gid) != 0 || ::syscall(SYS_setgid, gid) != 0)
      fail_with(-errno);
  }
  if (spec.uid && ::syscall(SYS_setuid, *spec.uid) != 0) fail_with(-errno);
  if (a->out_fd >= 0 && ::dup2(a->out_fd, STDOUT_FILENO) < 0) fail_with(-errno);
  if (a->err_fd >= 0 && ::dup2(a->err_fd, STDERR_FILENO) < 0) fail_with(-errno);
  if (spec.close_other_fds &&
      ::syscall(SYS_close_range, 3U, ~0U, static_cast<unsigned>(CLOSE_RANGE_CLOEXEC)) != 0) {
    for (int fd = 3; fd < 65536; ++fd)  // kernels before 5.11
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  // Every signal is blocked (by the parent) until no handler of the parent's is left to run here.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig)
    ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execvpe(a->argv[0], a->argv, a->envp);
  fail_with(errno);
  return 0;
}

// The child's stack: execvpe's PATH search and script fallback live on it (glibc's posix_spawn
// sizes its own from argv plus 32 KiB).
constexpr size_t kChildStackBytes = 256 << 10;

}  // namespace

const char* to_string(RunState state) {
  switch (state) {
    case RunState::kPending:
      return "PENDING";
    case RunState::kStarting:
      return "STARTING";
    case RunState::kRunning:
      return "RUNNING";
    case RunState::kExited:
      return "EXITED";
    case RunState::kFailed:
      return "FAILED";
    case RunState::kKilled:
      return "KILLED";
  }
  return "PENDING";
}

const char* to_string(KillReason reason) {
  switch (reason) {
    case KillReason::kNone:
      return "";
    case KillReason::kOom:
      return "OOM";
    case KillReason::kSignal:
      return "SIGNAL";
    case KillReason::kTimeout:
      return "TIMEOUT";
  }
  return "";
}

double RunRecord::duration_s() const {
  return std::chrono::duration<double>(ended_at - started_at).count();
}

int RunRecord::shell_exit_code() const {
  switch (state) {
    case RunState::kExited:
      return exit_code;
    case RunState::kKilled:
      return 128 + signal;
    case RunState::kFailed:
      return failure_errno == ENOENT ? 127 : 126;
    default:
      return 1;
  }
}

std::string RunRecord::state_text() const {
  switch (state) {
    case RunState::kExited:
      return "EXITED(" + std::to_string(exit_code) + ")";
    case RunState::kKilled:
      if (reason == KillReason::kSignal) return "KILLED(SIGNAL " + std::to_string(signal) + ")";
      return std::string("KILLED(") + to_string(reason) + ")";
    default:
      return to_string(state);
  }
}

std::optional<KernelOomKill> parse_kmsg_killed_process(std::string_view record) {
  const auto semicolon = record.find(';');
  if (semicolon == std::string_view::npos) return std::nullopt;
  const auto header = split(record.substr(0, semicolon), ',');
  std::string_view message = record.substr(semicolon + 1);
  message = message.substr(0, message.find('\n'));
  constexpr std::string_view kMarker = ": Killed process ";
  const auto at = message.find(kMarker);
  const auto ts = header.size() >= 3 ? parse_u64(header[2]) : std::nullopt;
  if (at == std::string_view::npos || !ts) return std::nullopt;
  message.remove_prefix(at + kMarker.size());
  const auto open = message.find(" (");
  const auto close = message.find(')', open == std::string_view::npos ? 0 : open);
  if (open == std::string_view::npos || close == std::string_view::npos) return std::nullopt;
  const auto pid = parse_u64(message.substr(0, open));
  if (!pid || *pid == 0 || *pid >= (uint64_t{1} << 31)) return std::nullopt;
  return KernelOomKill{
      static_cast<pid_t>(*pid), std::string(message.substr(open + 2, close - open - 2)), {}, *ts};
}

std::optional<KernelOomKill> parse_kmsg_oom_kill(std::string_view record) {
  // "PRI,SEQ,TIMESTAMP_US,FLAGS;MESSAGE" then optional "\n KEY=VALUE" lines.
  const auto semicolon = record.find(';');
  if (semicolon == std::string_view::npos) return std::nullopt;
  const auto header = split(record.substr(0, semicolon), ',');
  std::string_view message = record.substr(semicolon + 1);
  message = message.substr(0, message.find('\n'));
  if (header.size() < 3 || !message.starts_with("oom-kill:")) return std::nullopt;
  KernelOomKill kill;
  const auto ts = parse_u64(header[2]);
  if (!ts) return std::nullopt;
  kill.time_us = *ts;
  bool have_pid = false;
  for (std::string_view field : split(message.substr(9), ',')) {
    const auto eq = field.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = field.substr(0, eq), value = field.substr(eq + 1);
    if (key == "task_memcg") kill.task_memcg = std::string(value);
    if (key == "task") kill.comm = std::string(value);
    if (key == "pid") {
      if (auto p = parse_u64(value); p && *p > 0 && *p < (uint64_t{1} << 31)) {
        kill.pid = static_cast<pid_t>(*p);
        have_pid = true;
      }
    }
  }
  if (!have_pid) return std::nullopt;
  return kill;
}

KernelLogReader::KernelLogReader(const Sysroot& root, const std::string& path, std::string memcg,
                                 bool from_start)
    : memcg_(std::move(memcg)) {
  if (path.empty() || memcg_.empty()) return;
  fd_ = ::open(root.path(path).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ >= 0 && !from_start) ::lseek(fd_, 0, SEEK_END);
}

KernelLogReader::~KernelLogReader() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<KernelOomKill> KernelLogReader::read_kills(pid_t main) {
  std::vector<KernelOomKill> kills;
  if (fd_ < 0) return kills;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EPIPE) continue;  // records were overwritten: go on with the next
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    const std::string_view record(buf, static_cast<size_t>(n));
    auto kill = parse_kmsg_oom_kill(record);
    if (kill && (kill->task_memcg == memcg_ || kill->task_memcg.starts_with(memcg_ + "/"))) {
      kills.push_back(std::move(*kill));
    } else if (auto victim = parse_kmsg_killed_process(record);
               victim && main != 0 && victim->pid == main) {
      kills.push_back(std::move(*victim));
    }
  }
  return kills;
}

Result<Spawned> spawn_in_group(CgroupDriver& driver, const Cgroup& group, const SpawnSpec& spec) {
  if (spec.argv.empty()) return fail(ErrorKind::kUsage, "no command to run");
  // Everything the child needs is prepared before the clone: it may only make raw system calls.
  std::vector<Fd> procs;
  for (const auto& file : driver.join_files(group)) {
    Fd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.fd < 0) return fail(Error::from_errno(errno, "open", file));
    procs.push_back(std::move(fd));
  }
  Fd out, err;
  for (auto [path, fd] : {std::pair{&spec.stdout_path, &out}, std::pair{&spec.stderr_path, &err}}) {
    if (path->empty()) continue;
    *fd = Fd(::open(path->c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640));
    if (fd->fd < 0) return fail(Error::from_errno(errno, "open", *path));
  }
  const std::vector<char*> argv = c_strings(spec.argv);
  const std::vector<char*> envp = c_strings(spec.env);
  ChildArgs args{&procs, out.fd, err.fd, &spec, argv.data(), envp.data()};
  void* stack = ::mmap(nullptr, kChildStackBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return fail(Error::from_errno(errno, "map", "a stack for the child"));

  Spawned spawned;
  spawned.started_at = std::chrono::system_clock::now();
  // posix_spawn's way, with the group joined in between: the child borrows this process's memory
  // (CLONE_VM) and this thread waits (CLONE_VFORK) until it has exec'd or exited, so nothing of a
  // large process is copied for a child that replaces itself at once. CLONE_PIDFD hands over
  // the pidfd with the pid.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd_value = -1;
  const pid_t pid = ::clone(child_main, static_cast<char*>(stack) + kChildStackBytes,
                            CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &args, &pidfd_value);
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::munmap(stack, kChildStackBytes);
  if (pid < 0) {
    return fail(Error::from_errno(clone_errno, "start", spec.argv[0])
                    .wrap(clone_errno == EINVAL ? "needs Linux 5.3+ (CLONE_PIDFD)" : "clone"));
  }
  spawned.pid = pid;
  procs.clear();
  Fd pidfd(pidfd_value);

  // The child has exec'd (error 0) or exited, saying why.
  const int child_errno = args.error;
  if (child_errno != 0) {
    ::waitpid(pid, nullptr, 0);
    if (child_errno < 0) {
      // Not the command's fault: hostfit could not put it in its group (an empty cpuset, a
      // group removed under it, pids.max reached) or could not drop to its user.
      return fail(Error::from_errno(-child_errno, "join", "cgroup '" + group.name + "'")
                      .wrap("cannot start the workload in its cgroup as its user"));
    }
    spawned.exec_errno = child_errno;
    spawned.failure = "cannot execute '" + spec.argv[0] + "': " + std::strerror(child_errno);
    return spawned;
  }
  spawned.pidfd = std::exchange(pidfd.fd, -1);
  return spawned;
}

bool oom_count_pending(int wait_code, int wait_status, const std::optional<OomCounters>& baseline,
                       const std::optional<OomCounters>& now, uint64_t other_kills) {
  const bool by_sigkill = wait_code != CLD_EXITED && wait_status == SIGKILL;
  return by_sigkill && baseline && now && now->oom_kill_known &&
         now->oom_kill - baseline->oom_kill <= other_kills;
}

void classify_exit(RunRecord& record, int wait_code, int wait_status,
                   const std::optional<OomCounters>& baseline,
                   const std::optional<OomCounters>& now, uint64_t other_kills, bool escalated,
                   bool main_named, const std::string& unnamed_why) {
  if (wait_code == CLD_EXITED) {
    record.exit_code = wait_status;
  } else {
    record.signal = wait_status;
  }
  const bool by_sigkill = wait_code != CLD_EXITED && record.signal == SIGKILL;
  if (now && baseline) {
    record.oom_kills = now->oom_kill - baseline->oom_kill;
    const std::string counted = now->source + ": oom_kill " + std::to_string(baseline->oom_kill) +
                                " -> " + std::to_string(now->oom_kill);
    if (by_sigkill && now->oom_kill_known && record.oom_kills > other_kills) {
      if (main_named) {
        record.reason = KillReason::kOom;
        record.oom_evidence = counted + "; the kernel log names pid " + std::to_string(record.pid);
      } else {
        // A kill nobody is named for, and a SIGKILL: the main process's OOM kill, or another
        // process's followed by someone's kill -9. Only the kernel log could tell them apart.
        record.oom_victim_unknown = true;
        record.oom_evidence = counted + "; the victim is unknown: " + unnamed_why;
      }
    } else if (by_sigkill && !now->oom_kill_known && !now->kill_disabled &&
               now->limit_hits > baseline->limit_hits) {
      // Kernels before 4.13 do not count kills; a SIGKILL after the limit was hit is the best
      // evidence they give.
      record.reason = KillReason::kOom;
      record.oom_evidence = "memory.failcnt rose " + std::to_string(baseline->limit_hits) + " -> " +
                            std::to_string(now->limit_hits) +
                            " (this kernel has no oom_kill counter)";
    }
  }
  if (record.reason != KillReason::kOom && wait_code != CLD_EXITED) {
    record.reason = escalated && by_sigkill ? KillReason::kTimeout : KillReason::kSignal;
  }
  record.state = wait_code == CLD_EXITED ? RunState::kExited : RunState::kKilled;
}

Result<RunRecord> supervise(const Sysroot& root, CgroupDriver& driver, const Cgroup& group,
                            const SpawnSpec& spec, const SuperviseHooks& hooks) {
  RunRecord record;
  if (spec.argv.empty()) return fail(ErrorKind::kUsage, "no command to run");
  const auto state = [&](RunState s) {
    record.state = s;
    if (hooks.on_state) hooks.on_state(s, record.pid);
  };

  // The counters and the kernel log are read from before the start, so the verdict sees every kill;
  // the OOM wake-up is armed once the workload runs (below), off the path to its start.
  const auto baseline = driver.oom_counters(group);
  const CgroupDir* memory_dir = group.dir_of("memory");
  KernelLogReader kmsg(root, spec.kmsg_path, memory_dir ? memory_dir->cgroup : "");

  SignalBlock blocked;
  Fd signal_fd(::signalfd(-1, &blocked.set(), SFD_CLOEXEC | SFD_NONBLOCK));
  if (signal_fd.fd < 0) return fail(Error::from_errno(errno, "create", "a signalfd"));

  state(RunState::kStarting);
  auto spawned = spawn_in_group(driver, group, spec);
  if (!spawned) return fail(spawned.error());
  record.started_at = spawned->started_at;
  record.pid = spawned->pid;
  const pid_t pid = spawned->pid;
  if (spawned->exec_errno != 0) {
    record.ended_at = std::chrono::system_clock::now();
    record.failure_errno = spawned->exec_errno;
    record.failure = spawned->failure;
    state(RunState::kFailed);
    return record;
  }
  Fd pidfd(spawned->pidfd);
  state(RunState::kRunning);
  // A kill in the microseconds before this wakes nobody: the main process's exit still does, and
  // the counters and the log classify it; another process's kill is told at the next wake-up or
  // at the end. v1 signals at once a group already under OOM when the eventfd is registered.
  std::unique_ptr<OomWatch> watch;
  if (auto w = driver.watch_oom(group)) watch = std::move(*w);
  if (hooks.on_running) hooks.on_running(group, record.pid);

  uint64_t seen_kills = baseline ? baseline->oom_kill : 0;
  uint64_t other_kills = 0;  // kills attributed to processes other than the main one
  bool main_victim_logged = false;
  std::optional<Clock::time_point> first_wakeup;
  std::optional<uint64_t> main_kill_kernel_us;
  std::optional<Clock::time_point> stop_deadline;
  bool escalated = false;
  bool paused_noticed = false;
  std::optional<Clock::time_point> recheck_until;

  const auto note_kernel_kills = [&](std::vector<KernelOomKill> kills) {
    for (auto& k : kills) {
      if (k.pid == pid) {
        // Both records of the kill name it; the first one's time is the kill's.
        main_victim_logged = true;
        if (!main_kill_kernel_us) main_kill_kernel_us = k.time_us;
      } else {
        ++other_kills;
        OomEvent e{k.pid, k.comm, k.time_us};
        record.events.push_back(e);
        if (hooks.on_oom_event) hooks.on_oom_event(e);
      }
    }
  };
  const auto main_has_ended = [&](int timeout_ms) {
    pollfd p{pidfd.fd, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) > 0;
  };

  const bool ticking = hooks.on_tick && hooks.tick_interval.count() > 0;
  Clock::time_point next_tick = Clock::now() + kFirstTick;

  siginfo_t exit_info{};
  for (;;) {
    pollfd fds[3] = {{pidfd.fd, POLLIN, 0}, {signal_fd.fd, POLLIN, 0}, {-1, POLLIN, 0}};
    if (watch) fds[2].fd = watch->fd();
    int timeout_ms = -1;  // the soonest of what is due, or no timeout
    const auto due_in = [&](int ms) {
      timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
    };
    if (stop_deadline && !escalated) due_in(ms_until(*stop_deadline));
    if (recheck_until) due_in(kRecheckPollMs);
    if (ticking) due_in(ms_until(next_tick));
    const int n = ::poll(fds, 3, timeout_ms);
    if (n < 0 && errno != EINTR) return fail(Error::from_errno(errno, "poll", "the workload"));

    if (fds[2].revents & POLLIN) {
      if (!first_wakeup) first_wakeup = Clock::now();
      watch->drain();
      // v1 signals when the group enters OOM, before the victim is chosen and counted: keep
      // looking for a short while.
      recheck_until = Clock::now() + kRecheckWindow;
    }
    if (recheck_until && Clock::now() <= *recheck_until) {
      auto counters = driver.oom_counters(group);
      if (counters && counters->oom_kill > seen_kills) {
        recheck_until.reset();
        const uint64_t new_kills = counters->oom_kill - seen_kills;
        seen_kills = counters->oom_kill;
        const uint64_t before = other_kills + (main_victim_logged ? 1 : 0);
        note_kernel_kills(kmsg.read_kills(pid));
        const uint64_t attributed = other_kills + (main_victim_logged ? 1 : 0) - before;
        // Kills the kernel log did not name: another process's while the main one lives on;
        // when it ends, they are settled at exit from how it ended (below).
        for (uint64_t i = attributed; i < new_kills; ++i) {
          if (main_has_ended(kVictimGraceMs)) break;
          ++other_kills;
          OomEvent e;
          record.events.push_back(e);
          if (hooks.on_oom_event) hooks.on_oom_event(e);
        }
      } else if (counters && counters->under_oom && counters->kill_disabled && !paused_noticed) {
        paused_noticed = true;
        if (hooks.on_notice) {
          hooks.on_notice("'" + group.name +
                          "' is paused at its memory limit: oom_kill_disable is set in " +
                          counters->source + ", so the kernel waits instead of killing");
        }
      }
    } else {
      recheck_until.reset();
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (::read(signal_fd.fd, &si, sizeof si) == sizeof si) {
        // A terminal's ^C reaches the whole foreground process group, the workload included:
        // forwarding it again would deliver it twice.
        if (si.ssi_code != SI_KERNEL) ::kill(pid, static_cast<int>(si.ssi_signo));
        if (!stop_deadline) {
          stop_deadline = Clock::now() + spec.stop_timeout;
          record.forwarded_signal = static_cast<int>(si.ssi_signo);
        }
      }
    }
    if (stop_deadline && !escalated && Clock::now() >= *stop_deadline) {
      escalated = true;
      ::kill(pid, SIGKILL);
      for (pid_t p : driver.processes(group).value_or(std::vector<pid_t>{}))
        ::kill(p, SIGKILL);
    }
    if (ticking && !(fds[0].revents & POLLIN) && Clock::now() >= next_tick) {
      hooks.on_tick();
      next_tick = Clock::now() + hooks.tick_interval;
    }
    if (fds[0].revents & POLLIN) {
      if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd.fd), &exit_info,
                   WEXITED) == 0) {
        break;
      }
      if (errno != EINTR) return fail(Error::from_errno(errno, "wait for", spec.argv[0]));
    }
  }
  record.ended_at = std::chrono::system_clock::now();

  // Classify. OOM needs both: death by SIGKILL and a rise of the group's oom_kill counter that
  // is not accounted for by kills of other processes.
  const bool by_sigkill = exit_info.si_code != CLD_EXITED && exit_info.si_status == SIGKILL;
  auto counters = driver.oom_counters(group);
  const auto opt = [](const Result<OomCounters>& c) {
    return c ? std::optional<OomCounters>(*c) : std::nullopt;
  };
  if (by_sigkill && counters && baseline) {
    const auto grace_end = Clock::now() + kCounterGrace;
    while (oom_count_pending(exit_info.si_code, exit_info.si_status, opt(baseline), opt(counters),
                             other_kills) &&
           Clock::now() < grace_end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      counters = driver.oom_counters(group);
    }
  }
  note_kernel_kills(kmsg.read_kills(pid));
  if (counters && baseline && counters->oom_kill_known) {
    // Kills nobody has been named for: one is the main process's when it died of SIGKILL and the
    // log did not name it; the others were of other processes (say so now, unnamed).
    uint64_t unaccounted = counters->oom_kill - baseline->oom_kill;
    unaccounted -= std::min(unaccounted, other_kills + (main_victim_logged ? 1 : 0));
    if (by_sigkill && !main_victim_logged && unaccounted > 0) --unaccounted;
    for (; unaccounted > 0; --unaccounted) {
      ++other_kills;
      record.events.push_back(OomEvent{});
      if (hooks.on_oom_event) hooks.on_oom_event(record.events.back());
    }
  }
  classify_exit(record, exit_info.si_code, exit_info.si_status, opt(baseline), opt(counters),
                other_kills, escalated, main_victim_logged,
                kmsg.readable() ? "the kernel log did not name it"
                                : "the kernel log (" + spec.kmsg_path + ") is not readable");
  if (record.reason == KillReason::kOom) {
    const auto verdict = Clock::now();
    const uint64_t verdict_us = monotonic_us();
    if (first_wakeup) {
      record.wakeup_to_verdict_us =
          std::chrono::duration<double, std::micro>(verdict - *first_wakeup).count();
    }
    if (main_kill_kernel_us && verdict_us >= *main_kill_kernel_us) {
      record.kernel_to_verdict_us = static_cast<double>(verdict_us - *main_kill_kernel_us);
    }
  }
  if (auto usage = driver.usage(group)) {
    record.memory_peak_bytes = usage->memory_peak_bytes;
    record.cpu_usage_us = usage->cpu_usage_us;
  }
  state(record.state);
  return record;
}

}  // namespace hostfit
