// Workload runs on the loop: start, watch, stop, classify, restart, and adoption after a restart.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <set>

#include "daemon_impl.h"

namespace hostfit {
namespace {

using nlohmann::json;

// The kernel sends SIGKILL before it counts the kill: how long to re-read the counter after a
// main process died of SIGKILL with no rise yet (the same grace `hostfit run` gives).
constexpr auto kCounterGrace = std::chrono::milliseconds(100);
constexpr auto kRecheckEvery = std::chrono::milliseconds(2);
constexpr auto kRecheckWindow = std::chrono::milliseconds(250);
// Without the victim's name in the kernel log, how long a counted kill waits to see whether the
// main process dies of it (as `hostfit run` waits) before it is told as another process's.
constexpr auto kVictimGrace = std::chrono::milliseconds(100);
constexpr auto kMaxBackoff = std::chrono::milliseconds(60'000);
// How long an adopted process's new parent (init, a subreaper) may take to reap it before its
// exit status is given up on (EXITED(?)).
constexpr auto kReapGrace = std::chrono::milliseconds(500);
constexpr int64_t kPeriodUs = 100000;

int sys_pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}
int sys_pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// Linux 6.15's PIDFD_GET_INFO (include/uapi/linux/pidfd.h, spelled out: older headers lack it).
// With PIDFD_INFO_EXIT it returns the wait status of a process that exited while a pidfd to it
// was open, to any holder of that pidfd: how an adopted workload, not our child, ended.
struct PidfdInfo {
  uint64_t mask;
  uint64_t cgroupid;
  uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
  int32_t exit_code;
};
constexpr uint64_t kPidfdInfoExit = 1u << 3;
constexpr unsigned long kPidfdGetInfo = _IOWR(0xFF, 11, PidfdInfo);

struct ExitStatus {
  bool pending = false;  // the kernel has the call but not the status yet (not reaped yet)
  std::optional<std::pair<int, int>> code_status;  // si_code, si_status as waitid gives them
};
ExitStatus pidfd_exit_status(int pidfd) {
  PidfdInfo info{};
  info.mask = kPidfdInfoExit;
  if (::ioctl(pidfd, kPidfdGetInfo, &info) != 0) return {};  // before 6.13: ENOTTY
  if (!(info.mask & kPidfdInfoExit)) return {.pending = true, .code_status = std::nullopt};
  const int status = info.exit_code;
  if (WIFEXITED(status))
    return {.pending = false, .code_status = std::pair{CLD_EXITED, WEXITSTATUS(status)}};
  if (WIFSIGNALED(status))
    return {.pending = false, .code_status = std::pair{CLD_KILLED, WTERMSIG(status)}};
  return {};
}

std::string now_utc() {
  return format_utc(std::chrono::system_clock::now());
}

std::optional<OomCounters> counters_of(CgroupDriver& driver, const Cgroup& group) {
  auto c = driver.oom_counters(group);
  return c ? std::optional<OomCounters>(*c) : std::nullopt;
}

// Field 22 of /proc/PID/stat (starttime, in clock ticks since boot): with the pid, it names one
// process for good, as a pid alone does not after reuse.
std::optional<int64_t> start_ticks(const Sysroot& root, pid_t pid) {
  auto text = root.read("/proc/" + std::to_string(pid) + "/stat");
  if (!text) return std::nullopt;
  const auto close = text->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  const auto fields = split_whitespace(std::string_view(*text).substr(close + 1));
  // fields[0] is field 3 (state); starttime is field 22.
  if (fields.size() < 20) return std::nullopt;
  auto v = parse_u64(fields[19]);
  return v ? std::optional<int64_t>(static_cast<int64_t>(*v)) : std::nullopt;
}

struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home = "/";
};

// Looked up at each start, so a user made after the workload was defined still works.
Result<Credentials> credentials_of(const std::string& user) {
  passwd pw{}, *found = nullptr;
  std::vector<char> buf(16384);
  int rc = ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
  if (!found) {
    if (auto uid = parse_u64(user); uid && *uid < (uint64_t{1} << 31)) {
      rc = ::getpwuid_r(static_cast<uid_t>(*uid), &pw, buf.data(), buf.size(), &found);
      if (!found) return Credentials{static_cast<uid_t>(*uid), static_cast<gid_t>(*uid), "/"};
    }
  }
  if (!found) {
    return fail(ErrorKind::kNotFound, "no user '" + user + "' on this host" +
                                          (rc ? std::string(": ") + std::strerror(rc) : ""));
  }
  return Credentials{pw.pw_uid, pw.pw_gid, pw.pw_dir ? pw.pw_dir : "/"};
}

}  // namespace

const char* to_string(Phase phase) {
  switch (phase) {
    case Phase::kStopped:
      return "STOPPED";
    case Phase::kStarting:
      return "STARTING";
    case Phase::kRunning:
      return "RUNNING";
    case Phase::kStopping:
      return "STOPPING";
    case Phase::kBackoff:
      return "BACKOFF";
  }
  return "STOPPED";
}

void log_line(const std::string& line) {
  std::cerr << "hostfit daemon: " << line << std::endl;
}

json cgroup_to_json(const Cgroup& group) {
  json dirs = json::array();
  for (const auto& d : group.dirs) {
    dirs.push_back({{"hierarchy", d.hierarchy},
                    {"controllers", d.controllers},
                    {"cgroup", d.cgroup},
                    {"dir", d.dir},
                    {"v2", d.v2}});
  }
  return dirs;
}

std::optional<Cgroup> cgroup_from_json(const std::string& name, const std::string& text) {
  const json j = json::parse(text, nullptr, false);
  if (!j.is_array() || j.empty()) return std::nullopt;
  Cgroup g;
  g.name = name;
  try {
    for (const auto& d : j) {
      g.dirs.push_back({d.at("hierarchy").get<std::string>(),
                        d.at("controllers").get<std::vector<std::string>>(),
                        d.at("cgroup").get<std::string>(), d.at("dir").get<std::string>(),
                        d.at("v2").get<bool>()});
    }
  } catch (const json::exception&) {
    return std::nullopt;
  }
  return g;
}

bool Sample::same_as(const Sample& o) const {
  const MemoryBreakdown &a = memory, &b = o.memory;
  return cpu_usage_us == o.cpu_usage_us && a.usage_bytes == b.usage_bytes &&
         a.working_set_bytes == b.working_set_bytes && a.anon_bytes == b.anon_bytes &&
         a.file_bytes == b.file_bytes && a.shmem_bytes == b.shmem_bytes &&
         a.other_bytes == b.other_bytes;
}

Sample sample_of(const MemoryBreakdown& memory, const CgroupDriver& driver, const Cgroup& group) {
  Sample s{std::chrono::system_clock::now(), memory, driver.cpu_usage_us(group)};
  s.memory.source = {};
  return s;
}

std::optional<Sample> take_sample(const Sysroot& root, const CgroupDriver& driver,
                                  const Cgroup& group) {
  const CgroupDir* memory = group.dir_of("memory");
  if (!memory) return std::nullopt;
  auto m = read_breakdown(root, memory->dir, memory->v2);
  if (!m) return std::nullopt;
  return sample_of(*m, driver, group);
}

std::filesystem::path Daemon::Impl::log_path(const std::string& name, const char* stream) const {
  return options.state_dir / "logs" / (name + "." + stream);
}

Result<int64_t> Daemon::Impl::event(const std::string& type, const std::string& workload,
                                    const std::string& message, json data) {
  log_line(type + (workload.empty() ? "" : " " + workload) + ": " + message);
  EventRow row;
  row.type = type;
  row.workload = workload;
  row.message = message;
  row.data = data.dump(-1, ' ', false, json::error_handler_t::replace);
  return store->append_event(row);
}

void Daemon::Impl::publish() {
  if (polls.empty()) return;
  auto polls_now = std::move(polls);
  polls.clear();
  for (auto& p : polls_now) {
    auto events = store->events_since(p->since);
    if (!events || events->empty()) {
      polls.push_back(p);
      continue;
    }
    p->timer->cancel();
    json list = json::array();
    for (const auto& e : *events)
      list.push_back(to_json(e));
    p->reply(api::json(200, {{"events", list}, {"next", events->back().seq}}));
  }
}

// The engine on the daemon's ledger (the placements table); nothing is held here.
Result<Placement> Daemon::Impl::place_request(PlacementRequest request, const std::string& owner,
                                              bool ignore_foreign) {
  auto held = store->holds();
  if (!held) return fail(held.error());
  Ledger ledger;
  for (const auto& h : *held) {
    auto cpus = CpuSet::parse_list(h.cpus);
    auto mems = CpuSet::parse_list(h.mems);
    if (cpus && mems) (void)ledger.hold(h.owner, *cpus, *mems);
  }
  if (ledger.find(owner)) {
    return fail(ErrorKind::kResource, "'" + owner + "' already holds CPUs " +
                                          ledger.find(owner)->cpus.to_list() +
                                          " (release it first)");
  }
  request.allowed_mems = placeable_mems(self);
  // As `hostfit place` does: never on CPUs other tools pinned exclusively, and their shared pins
  // counted as a cost. The daemon's own groups are its holds, left out of the pins.
  ForeignPins foreign;
  if (!ignore_foreign) foreign = read_foreign_pins(root, self, ledger.held());
  const CpuSet placeable = placeable_cpus(self);
  auto placed = engine->place(placeable - foreign.exclusive(), ledger, request, foreign.shared());
  if (!placed) {
    return fail(explain_exclusive_pins(placed.error(), foreign, placeable)
                    .wrap("cannot place '" + owner + "'"));
  }
  return placed;
}

Result<Placement> Daemon::Impl::place_for(const WorkloadSpec& spec) {
  PlacementRequest request;
  request.cpus = static_cast<int>(std::ceil(*spec.cpus - 1e-9));
  request.policy = *spec.placement;
  request.nodes = spec.placement_nodes;
  return place_request(request, spec.name);
}

void Daemon::Impl::start(const std::shared_ptr<Workload>& w) {
  if (w->phase != Phase::kStopped && w->phase != Phase::kBackoff) return;
  w->restart_timer.cancel();
  ++w->generation;
  w->phase = Phase::kStarting;
  w->stopping = w->escalated = false;
  w->exit_seen.reset();
  w->oom = OomTracker{};
  w->is_child = true;
  w->status_known = false;
  const WorkloadSpec& spec = w->spec;
  RunRow run;
  run.workload = spec.name;
  run.state = "STARTING";
  run.started_at = now_utc();
  run.memory_limit_bytes =
      spec.memory_max_bytes ? std::optional<int64_t>(static_cast<int64_t>(*spec.memory_max_bytes))
                            : std::nullopt;
  w->run = run;

  auto group = driver->create(spec.name);
  if (!group) return record_failed_start(w, group.error().message);
  w->group = *group;
  w->run->cgroup = cgroup_to_json(*group).dump();
  CgroupLimits limits;
  if (spec.cpus) {
    limits.cpu_period_us = kPeriodUs;
    limits.cpu_quota_us = std::llround(*spec.cpus * kPeriodUs);
  }
  limits.cpus = spec.cpuset;
  std::optional<Placement> placed;
  if (spec.placement) {
    auto p = place_for(spec);
    if (!p) return record_failed_start(w, p.error().message);
    placed = *p;
    limits.cpus = p->cpus;
    if (!p->mems.empty()) limits.mems = p->mems;
  }
  limits.memory_max_bytes = spec.memory_max_bytes;
  limits.memory_high_bytes = spec.memory_high_bytes;
  limits.pids_max = spec.pids_max;
  if (auto st = driver->set_limits(*group, limits); !st) {
    return record_failed_start(w, st.error().wrap("cannot limit its cgroup").message);
  }
  Credentials creds;
  if (!spec.user.empty()) {
    auto c = credentials_of(spec.user);
    if (!c) return record_failed_start(w, c.error().message);
    creds = *c;
  }
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + creds.home};
  for (const auto& [k, v] : spec.env)
    env.push_back(k + "=" + v);
  // {workers} and {instances} sized as `hostfit run --runtime R --plugins N` sizes them.
  auto runtime = find_runtime(spec.runtime.empty() ? "none" : spec.runtime);
  if (!runtime) return record_failed_start(w, runtime.error().message);
  auto shape = sandbox_shape(*runtime, spec.plugins);
  if (!shape) return record_failed_start(w, shape.error().message);
  auto prepared = prepare_command(self, *group, limits, spec.name, spec.argv, env, *shape, true);
  if (!prepared) return record_failed_start(w, prepared.error().message);

  w->oom.baseline = counters_of(*driver, *group);
  w->oom.seen_kills = w->oom.baseline ? w->oom.baseline->oom_kill : 0;
  w->run->oom_kill_baseline = static_cast<int64_t>(w->oom.seen_kills);
  // The hold and the run are on record before the process exists: a daemon killed in between
  // finds a STARTING run and cleans its group up.
  auto recorded = store->transaction([&](Store& s) -> Status {
    if (placed) {
      if (auto st = s.hold({spec.name, placed->cpus.to_list(), placed->mems.to_list()}); !st) {
        return st;
      }
    }
    auto id = s.insert_run(*w->run);
    if (!id) return fail(id.error());
    w->run->id = *id;
    return {};
  });
  if (!recorded) return record_failed_start(w, recorded.error().message);

  SpawnSpec spawn;
  spawn.argv = prepared->argv;
  spawn.env = prepared->env;
  spawn.stop_timeout = spec.stop_timeout;
  spawn.close_other_fds = true;
  std::error_code ec;
  std::filesystem::create_directories(options.state_dir / "logs", ec);
  spawn.stdout_path = log_path(spec.name, "out");
  spawn.stderr_path = log_path(spec.name, "err");
  if (!spec.user.empty()) {
    spawn.uid = creds.uid;
    spawn.gid = creds.gid;
  }
  const CgroupDir* memory = group->dir_of("memory");
  w->oom.kmsg = std::make_unique<KernelLogReader>(root, "/dev/kmsg", memory ? memory->cgroup : "");
  auto spawned = spawn_in_group(*driver, *group, spawn);
  if (!spawned) return record_failed_start(w, spawned.error().message);
  if (spawned->exec_errno != 0) {
    return record_failed_start(
        w, spawned->failure + (spawned->exec_errno == ENOENT ? " (check argv and PATH)" : ""));
  }
  w->pid = spawned->pid;
  w->pidfd = std::make_unique<asio::posix::stream_descriptor>(io, spawned->pidfd);
  w->run->pid = spawned->pid;
  w->run->pid_start_ticks = start_ticks(root, spawned->pid);
  w->run->state = "RUNNING";
  w->phase = Phase::kRunning;
  (void)store->transaction([&](Store& s) -> Status {
    if (auto st = s.finish_run(*w->run); !st) return st;
    if (auto st = s.set_wanted(spec.name, w->wanted, w->restarts); !st) return st;
    auto e = event("run.started", spec.name,
                   "'" + spec.name + "' started: pid " + std::to_string(w->pid) +
                       (placed ? ", CPUs " + placed->cpus.to_list() : ""),
                   {{"pid", w->pid}, {"run", w->run->id}});
    return e ? Status{} : fail(e.error());
  });
  arm_pidfd(w);
  arm_oom(w);
  if (spec.cache_limit_bytes) {
    if (auto cg = cache_group_of(root, *group)) {
      auto c = CacheController::open(root, *cg, {.limit_bytes = spec.cache_limit_bytes});
      if (c) w->cache = std::move(*c);
    }
  }
  arm_samples(w);
  changed(w.get());
  publish();
}

void Daemon::Impl::record_failed_start(const std::shared_ptr<Workload>& w,
                                       const std::string& message) {
  w->run->state = "FAILED";
  w->run->verdict = "FAILED";
  w->run->message = message;
  w->run->ended_at = now_utc();
  finish_run(w);
}

void Daemon::Impl::arm_pidfd(const std::shared_ptr<Workload>& w) {
  const uint64_t generation = w->generation;
  w->pidfd->async_wait(asio::posix::stream_descriptor::wait_read,
                       [this, w, generation](const boost::system::error_code& ec) {
                         if (ec || w->generation != generation) return;
                         on_main_exit(w, generation);
                       });
}

void Daemon::Impl::arm_oom(const std::shared_ptr<Workload>& w) {
  if (!w->oom.fd) {
    auto watch = driver->watch_oom(*w->group);
    if (!watch) return;
    w->oom.watch = std::move(*watch);
    const int fd = ::fcntl(w->oom.watch->fd(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return;
    w->oom.fd = std::make_unique<asio::posix::stream_descriptor>(io, fd);
  }
  const uint64_t generation = w->generation;
  w->oom.fd->async_wait(asio::posix::stream_descriptor::wait_read,
                        [this, w, generation](const boost::system::error_code& ec) {
                          if (ec || w->generation != generation) return;
                          w->oom.watch->drain();
                          if (!w->oom.woke) w->oom.woke = Steady::now();
                          // v1 wakes when the group enters OOM, before the victim is counted.
                          w->oom.recheck_until = Steady::now() + kRecheckWindow;
                          check_oom(w, generation);
                          arm_oom(w);
                        });
}

// Why the kernel log could not name a workload's OOM victim, for its verdict's evidence.
static std::string unnamed_why(const Workload& w) {
  return w.oom.kmsg && w.oom.kmsg->readable() ? "the kernel log did not name it"
                                              : "the kernel log (/dev/kmsg) is not readable";
}

// Victims the kernel log names: the main process (its verdict comes with its exit) or another
// process of the workload (an event now; the run goes on).
void Daemon::Impl::read_victims(const std::shared_ptr<Workload>& w) {
  if (!w->oom.kmsg) return;
  for (const auto& k : w->oom.kmsg->read_kills(w->pid)) {
    if (w->oom.unnamed_pending > 0) --w->oom.unnamed_pending;
    if (k.pid == w->pid) {
      w->oom.main_victim_logged = true;
      // An engine's sessions fail now, not when the victim has exited and its verdict settled.
      if (is_engine(*w) && !w->oom.kmsg_history) {
        engine_main_oom_killed(w, OomEvent{k.pid, k.comm, k.time_us});
      }
      continue;
    }
    if (w->oom.kmsg_history) continue;  // an earlier run's kill, read from the log's start
    ++w->oom.other_kills;
    const OomEvent e{k.pid, k.comm, k.time_us};
    (void)event("oom.kill", w->spec.name, oom_event_line(w->spec.name, e),
                {{"pid", k.pid}, {"comm", k.comm}, {"main", false}, {"run", w->run->id}});
    if (is_engine(*w)) engine_oom_kill(w, e);
  }
}

// Kills the counters show and the log has not named: if the main process still lives after a
// grace period (the victim, when it is the main process, dies within milliseconds), they were
// of other processes. Once the main process has ended, its exit settles them instead.
void Daemon::Impl::settle_unnamed(const std::shared_ptr<Workload>& w, uint64_t generation) {
  if (w->generation != generation || w->exit_seen || w->oom.unnamed_pending == 0) return;
  read_victims(w);
  pollfd p{w->pidfd->native_handle(), POLLIN, 0};
  if (::poll(&p, 1, 0) != 0) return;  // it ended: on_main_exit decides
  for (; w->oom.unnamed_pending > 0 && !w->oom.main_victim_logged; --w->oom.unnamed_pending) {
    ++w->oom.other_kills;
    (void)event("oom.kill", w->spec.name, oom_event_line(w->spec.name, OomEvent{}),
                {{"pid", nullptr}, {"main", false}, {"run", w->run->id}});
    if (is_engine(*w)) engine_oom_kill(w, OomEvent{});
  }
  w->oom.unnamed_pending = 0;
  publish();
}

void Daemon::Impl::check_oom(const std::shared_ptr<Workload>& w, uint64_t generation) {
  if (w->generation != generation || !w->group || w->exit_seen) return;
  auto counters = counters_of(*driver, *w->group);
  if (counters && counters->oom_kill > w->oom.seen_kills) {
    w->oom.recheck_until.reset();
    if (!w->oom.counted) w->oom.counted = Steady::now();
    w->oom.unnamed_pending += counters->oom_kill - w->oom.seen_kills;
    w->oom.seen_kills = counters->oom_kill;
    read_victims(w);
    if (w->oom.unnamed_pending > 0 && is_engine(*w)) engine_oom_counted(w);
    publish();
    if (w->oom.unnamed_pending > 0) {
      w->victim_timer.expires_after(kVictimGrace);
      w->victim_timer.async_wait([this, w, generation](const boost::system::error_code& ec) {
        if (!ec) settle_unnamed(w, generation);
      });
    }
    return;
  }
  if (w->oom.recheck_until && Steady::now() < *w->oom.recheck_until) {
    w->recheck_timer.expires_after(kRecheckEvery);
    w->recheck_timer.async_wait([this, w, generation](const boost::system::error_code& ec) {
      if (!ec) check_oom(w, generation);
    });
  }
}

Result<MemoryBreakdown> CacheWake::step(CacheController& cache, bool woken,
                                        std::function<void()> on_wake) {
  // The interval's step can come first when both are due: a report waiting on the descriptor
  // is the kernel's all the same, and counted as such.
  pollfd pending{fd_.is_open() ? fd_.native_handle() : -1, POLLIN, 0};
  woken = woken || (pending.fd >= 0 && ::poll(&pending, 1, 0) == 1);
  let_go();
  auto now = cache.step(woken);
  const auto fds = cache.wake_fds();
  if (fds.empty()) return now;
  boost::system::error_code ec;
  fd_.assign(fds.front(), ec);
  if (ec) return now;  // the interval still paces it
  fd_.async_wait(asio::posix::stream_descriptor::wait_read,
                 [on_wake = std::move(on_wake)](const boost::system::error_code& ec) {
                   if (!ec) on_wake();
                 });
  return now;
}

void CacheWake::stop(CacheController* cache) {
  let_go();
  if (cache) (void)cache->stop();
}

void CacheWake::let_go() {
  if (!fd_.is_open()) return;
  boost::system::error_code ec;
  fd_.cancel(ec);
  (void)fd_.release();
}

void Daemon::Impl::arm_samples(const std::shared_ptr<Workload>& w, bool woken) {
  const uint64_t generation = w->generation;
  std::optional<Sample> now;
  if (w->cache) {
    (void)w->cache_wake.step(*w->cache, woken, [this, w, generation] {
      if (w->generation != generation || w->phase == Phase::kStopped) return;
      w->sample_timer.cancel();
      arm_samples(w, true);
    });
    if (w->cache->last() && w->group) now = sample_of(*w->cache->last(), *driver, *w->group);
  } else if (w->group) {
    now = take_sample(root, *driver, *w->group);
  }
  if (now) {
    // An idle workload's numbers stay put: its list element is not serialized again.
    if (!w->sample || !now->same_as(*w->sample)) changed(w.get());
    w->sample = std::move(now);
  }
  // The cache controller needs its own pace (50 ms by default); samples for people, one a second.
  const auto every = w->cache ? w->cache->options().interval : options.sample_interval;
  w->sample_timer.expires_after(every);
  w->sample_timer.async_wait([this, w, generation](const boost::system::error_code& ec) {
    if (ec || w->generation != generation || w->phase == Phase::kStopped) return;
    arm_samples(w);
  });
}

void Daemon::Impl::on_main_exit(const std::shared_ptr<Workload>& w, uint64_t generation) {
  if (!w->exit_seen) {
    if (w->is_child) {
      siginfo_t info{};
      int rc;
      do {
        rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(w->pidfd->native_handle()),
                      &info, WEXITED | WNOHANG);
      } while (rc != 0 && errno == EINTR);
      if (rc == 0 && info.si_pid == 0) return arm_pidfd(w);  // not ended after all
      w->exit_info = info;
    }
    w->exit_seen = Steady::now();
    if (is_engine(*w)) engine_exit_seen(w);  // not handed out while its verdict settles
  }
  // Adopted: the kernel may keep the status for the pidfd we hold once the new parent reaped it.
  if (!w->is_child && !w->status_known && w->pidfd) {
    const ExitStatus status = pidfd_exit_status(w->pidfd->native_handle());
    if (status.code_status) {
      std::tie(w->exit_info.si_code, w->exit_info.si_status) = *status.code_status;
      w->status_known = true;
    } else if (status.pending && Steady::now() - *w->exit_seen < kReapGrace) {
      w->exit_timer.expires_after(kRecheckEvery);
      w->exit_timer.async_wait([this, w, generation](const boost::system::error_code& ec) {
        if (!ec && w->generation == generation) on_main_exit(w, generation);
      });
      return;
    }
  }
  auto counters = counters_of(*driver, *w->group);
  const bool status_known = w->is_child || w->status_known;
  if (status_known &&
      oom_count_pending(w->exit_info.si_code, w->exit_info.si_status, w->oom.baseline, counters,
                        w->oom.other_kills) &&
      Steady::now() - *w->exit_seen < kCounterGrace) {
    w->exit_timer.expires_after(kRecheckEvery);
    w->exit_timer.async_wait([this, w, generation](const boost::system::error_code& ec) {
      if (!ec && w->generation == generation) on_main_exit(w, generation);
    });
    return;
  }

  RunRecord rec;
  rec.pid = w->pid;
  rec.started_at = parse_utc(w->run->started_at).value_or(std::chrono::system_clock::now());
  rec.ended_at = std::chrono::system_clock::now();
  rec.memory_limit_bytes = w->spec.memory_max_bytes;
  if (w->stopping) rec.forwarded_signal = SIGTERM;  // the verdict says who sent it
  read_victims(w);
  // Kills nobody has named beyond the main process's own were of other processes: say so now.
  if (counters && w->oom.baseline && counters->oom_kill_known) {
    uint64_t unaccounted = counters->oom_kill - w->oom.baseline->oom_kill;
    unaccounted -= std::min(unaccounted, w->oom.other_kills + (w->oom.main_victim_logged ? 1 : 0));
    const bool by_sigkill =
        !status_known || (w->exit_info.si_code != CLD_EXITED && w->exit_info.si_status == SIGKILL);
    if (by_sigkill && !w->oom.main_victim_logged && unaccounted > 0) --unaccounted;
    for (; unaccounted > 0; --unaccounted) {
      ++w->oom.other_kills;
      (void)event("oom.kill", w->spec.name, oom_event_line(w->spec.name, OomEvent{}),
                  {{"pid", nullptr}, {"main", false}, {"run", w->run->id}});
    }
  }
  if (status_known) {
    classify_exit(rec, w->exit_info.si_code, w->exit_info.si_status, w->oom.baseline, counters,
                  w->oom.other_kills, w->escalated, w->oom.main_victim_logged, unnamed_why(*w));
  } else if (counters && w->oom.baseline &&
             counters->oom_kill - w->oom.baseline->oom_kill > w->oom.other_kills) {
    // Adopted: not our child, so no exit status; the group's counter still tells an OOM kill.
    classify_exit(rec, CLD_KILLED, SIGKILL, w->oom.baseline, counters, w->oom.other_kills, false,
                  w->oom.main_victim_logged, unnamed_why(*w));
  } else {
    rec.state = RunState::kExited;
  }
  if (auto usage = driver->usage(*w->group)) rec.memory_peak_bytes = usage->memory_peak_bytes;
  WorkloadRun view;
  view.record = rec;
  view.group = *w->group;
  view.stop_timeout_s = std::chrono::duration<double>(w->spec.stop_timeout).count();
  RunRow& run = *w->run;
  run.state = to_string(rec.state);
  run.reason = to_string(rec.reason);
  run.verdict = rec.state_text();
  run.message = verdict_line(view);
  if (!status_known && rec.reason != KillReason::kOom) {
    // An adopted process that ended while hostfit was away or not its parent.
    run.reason = "UNKNOWN";
    run.verdict = "EXITED(?)";
    run.message = "'" + w->spec.name + "' " +
                  (w->stopping ? "stopped on SIGTERM, sent by hostfit" : "ended") +
                  "; its exit status is unknown (it was adopted after a daemon restart, and only "
                  "a parent can read it); not by the OOM killer (oom_kill counter unchanged)";
  } else if (rec.state == RunState::kExited) {
    run.exit_code = rec.exit_code;
  }
  if (rec.signal) run.signal = rec.signal;
  if (rec.memory_peak_bytes) run.memory_peak_bytes = static_cast<int64_t>(*rec.memory_peak_bytes);
  if (w->cache) run.cache_peak_bytes = static_cast<int64_t>(w->cache->peaks().file_bytes);
  run.oom_kills = static_cast<int64_t>(rec.oom_kills);
  run.ended_at = format_utc(rec.ended_at);
  if (rec.reason == KillReason::kOom) {
    (void)event("oom.kill", w->spec.name, run.message,
                {{"pid", w->pid}, {"main", true}, {"run", run.id}, {"evidence", rec.oom_evidence}});
  }
  finish_run(w);
}

// Records the verdict (or a failed start), releases the hold in the same transaction, removes
// the group and decides about a restart.
void Daemon::Impl::finish_run(const std::shared_ptr<Workload>& w) {
  RunRow& run = *w->run;
  const bool success = run.state == "EXITED" && run.exit_code && *run.exit_code == 0;
  const bool policy_says = w->spec.restart == RestartPolicy::kAlways ||
                           (w->spec.restart == RestartPolicy::kOnFailure && !success);
  const bool restart = w->wanted && !w->stopping && !w->deleted && policy_says &&
                       w->restarts < w->spec.restart_limit;
  if (!restart && !w->restart_after_stop) w->wanted = false;
  json data = {{"run", run.id},
               {"state", run.state},
               {"reason", run.reason},
               {"verdict", run.verdict},
               {"exit_code", run.exit_code ? json(*run.exit_code) : json(nullptr)},
               {"signal", run.signal ? json(*run.signal) : json(nullptr)},
               {"restart", restart}};
  // When the kernel's signs reached the loop (CLOCK_MONOTONIC, µs, the kernel log's clock):
  // for measuring how long an OOM kill takes to reach a client (bench/sessions).
  json timeline = json::object();
  const auto mono_us = [](Steady::time_point t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  };
  if (w->oom.woke) timeline["oom_wake"] = mono_us(*w->oom.woke);
  if (w->oom.counted) timeline["oom_counted"] = mono_us(*w->oom.counted);
  if (w->exit_seen) timeline["exit_seen"] = mono_us(*w->exit_seen);
  timeline["verdict"] = mono_us(Steady::now());
  data["timeline_us"] = timeline;
  const auto recorded = store->transaction([&](Store& s) -> Status {
    if (run.id == 0) {
      auto id = s.insert_run(run);
      if (!id) return fail(id.error());
      run.id = *id;
      data["run"] = run.id;
    }
    if (auto st = s.finish_run(run); !st) return st;
    if (auto st = s.release_hold(w->spec.name); !st) return st;
    if (auto st = s.set_wanted(w->spec.name, w->wanted, w->restarts); !st) return st;
    auto e = event("run.ended", w->spec.name, run.message, data);
    return e ? Status{} : fail(e.error());
  });
  if (!recorded)
    log_line("cannot record the end of '" + w->spec.name + "': " + recorded.error().message);

  ++w->generation;  // handlers of this run do nothing from here on
  for (auto* t :
       {&w->stop_timer, &w->recheck_timer, &w->sample_timer, &w->exit_timer, &w->victim_timer})
    t->cancel();
  if (w->pidfd) w->pidfd->close();
  w->pidfd.reset();
  if (w->oom.fd) w->oom.fd->close();
  w->oom = OomTracker{};
  w->cache_wake.stop(w->cache.get());
  w->cache.reset();
  if (w->group) (void)driver->remove(*w->group);
  w->group.reset();
  w->pid = 0;
  w->phase = Phase::kStopped;
  changed(w.get());
  publish();
  if (is_engine(*w)) engine_run_ended(w);  // its sessions fail in this turn

  auto replies = std::move(w->on_ended);
  w->on_ended.clear();
  if (w->delete_after_stop) {
    (void)remove_workload(w->spec.name);
  } else if (w->restart_after_stop) {
    w->restart_after_stop = false;
    w->wanted = true;
    w->restarts = 0;
    start(w);
  } else if (restart) {
    schedule_restart(w);
  }
  for (auto& reply : replies)
    reply(api::json(200, workload_json(*w)));
}

void Daemon::Impl::schedule_restart(const std::shared_ptr<Workload>& w) {
  auto delay = w->spec.restart_backoff;
  for (int64_t i = 0; i < w->restarts && delay < kMaxBackoff; ++i)
    delay *= 2;
  delay = std::min(delay, kMaxBackoff);
  w->phase = Phase::kBackoff;
  changed(w.get());
  (void)event("run.restart_scheduled", w->spec.name,
              "'" + w->spec.name + "' restarts in " + std::to_string(delay.count()) +
                  " ms (restart " + std::to_string(w->restarts + 1) + " of " +
                  std::to_string(w->spec.restart_limit) + ")",
              {{"delay_ms", delay.count()}, {"restart", w->restarts + 1}});
  publish();
  w->restart_timer.expires_after(delay);
  w->restart_timer.async_wait([this, w](const boost::system::error_code& ec) {
    if (ec || w->phase != Phase::kBackoff || w->deleted) return;
    ++w->restarts;
    w->phase = Phase::kStopped;
    changed(w.get());
    start(w);
  });
}

void Daemon::Impl::stop(const std::shared_ptr<Workload>& w, bool force) {
  w->wanted = false;
  changed(w.get());
  (void)store->set_wanted(w->spec.name, false, w->restarts);
  if (w->phase == Phase::kBackoff) {
    w->restart_timer.cancel();
    w->phase = Phase::kStopped;
    return;
  }
  if (w->phase != Phase::kRunning && w->phase != Phase::kStopping) return;
  const bool first = !w->stopping;
  w->stopping = true;
  w->phase = Phase::kStopping;
  const int fd = w->pidfd->native_handle();
  const auto kill_all = [this, w, fd] {
    w->escalated = true;
    (void)sys_pidfd_send_signal(fd, SIGKILL);
    for (pid_t p : driver->processes(*w->group).value_or(std::vector<pid_t>{}))
      ::kill(p, SIGKILL);
  };
  if (force || w->spec.stop_timeout.count() == 0) return kill_all();
  if (!first) return;
  (void)sys_pidfd_send_signal(fd, SIGTERM);
  const uint64_t generation = w->generation;
  w->stop_timer.expires_after(w->spec.stop_timeout);
  w->stop_timer.async_wait([w, generation, kill_all](const boost::system::error_code& ec) {
    if (!ec && w->generation == generation) kill_all();
  });
}

// A run the previous daemon left open: adopt it when its main process still lives (same pid,
// same start time, still in the group), else record how it ended from the group's counters.
Status Daemon::Impl::adopt_or_close(const RunRow& open_run) {
  auto it = workloads.find(open_run.workload);
  if (it == workloads.end()) return {};
  auto w = it->second;
  changed(w.get());
  w->run = open_run;
  w->group = cgroup_from_json(open_run.workload, open_run.cgroup);
  w->oom = OomTracker{};
  OomCounters base;
  base.oom_kill = static_cast<uint64_t>(open_run.oom_kill_baseline);
  w->oom.baseline = base;
  w->oom.seen_kills = base.oom_kill;
  w->is_child = false;
  w->status_known = false;
  ++w->generation;
  if (!w->group) {
    w->run->state = "FAILED";
    w->run->verdict = "FAILED";
    w->run->message = "its cgroup was not recorded; hostfit stopped while starting it";
    w->run->ended_at = now_utc();
    finish_run(w);
    return {};
  }
  int fd = -1;
  bool alive = false;
  if (open_run.state == "RUNNING" && open_run.pid && open_run.pid_start_ticks) {
    const pid_t pid = static_cast<pid_t>(*open_run.pid);
    fd = sys_pidfd_open(pid);
    const auto procs = driver->processes(*w->group).value_or(std::vector<pid_t>{});
    alive = fd >= 0 && start_ticks(root, pid) == open_run.pid_start_ticks &&
            std::find(procs.begin(), procs.end(), pid) != procs.end();
    if (alive) w->pid = pid;
  }
  if (!alive) {
    if (fd >= 0) ::close(fd);
    if (open_run.state == "STARTING") {
      (void)driver->remove(*w->group);
      w->run->state = "FAILED";
      w->run->verdict = "FAILED";
      w->run->message = "hostfit stopped while starting '" + open_run.workload + "'";
      w->run->ended_at = now_utc();
      finish_run(w);
      return {};
    }
    // Ended while no daemon watched: the counters kept the truth, and the kernel log (read
    // from its start) may still name the main process as the OOM victim.
    w->pid = static_cast<pid_t>(open_run.pid.value_or(0));
    const CgroupDir* memory = w->group->dir_of("memory");
    w->oom.kmsg =
        std::make_unique<KernelLogReader>(root, "/dev/kmsg", memory ? memory->cgroup : "", true);
    w->oom.kmsg_history = true;
    w->exit_seen = Steady::now();
    on_main_exit(w, w->generation);
    return {};
  }
  w->pidfd = std::make_unique<asio::posix::stream_descriptor>(io, fd);
  w->phase = Phase::kRunning;
  const CgroupDir* memory = w->group->dir_of("memory");
  w->oom.kmsg = std::make_unique<KernelLogReader>(root, "/dev/kmsg", memory ? memory->cgroup : "");
  // Kills counted while no daemon watched, with the main process alive, were of others.
  if (auto now = counters_of(*driver, *w->group); now && now->oom_kill > base.oom_kill) {
    w->oom.other_kills = now->oom_kill - base.oom_kill;
    w->oom.seen_kills = now->oom_kill;
  }
  (void)event("run.adopted", w->spec.name,
              "'" + w->spec.name + "' adopted: pid " + std::to_string(w->pid) + " still runs",
              {{"pid", w->pid}, {"run", open_run.id}});
  arm_pidfd(w);
  arm_oom(w);
  if (w->spec.cache_limit_bytes) {
    if (auto cg = cache_group_of(root, *w->group)) {
      auto c = CacheController::open(root, *cg, {.limit_bytes = w->spec.cache_limit_bytes});
      if (c) w->cache = std::move(*c);
    }
  }
  arm_samples(w);
  // If it ended between the checks above and the watch, the pidfd is readable already.
  return {};
}

Status Daemon::Impl::create_workload(const WorkloadSpec& spec, const std::string& source,
                                     bool start_now) {
  // What parses but this host cannot do is refused now, not found out at every start.
  if (spec.memory_high_bytes) {
    if (auto st = check_memory_high_supported(self.cgroup, "\"memory_high\"", "\"memory\""); !st)
      return st;
  }
  auto w = std::make_shared<Workload>(io);
  w->spec = spec;
  w->source = source;
  w->wanted = start_now;
  auto recorded = store->transaction([&](Store& s) -> Status {
    if (auto st = s.put_workload({spec.name, to_json(spec).dump(), source, start_now, 0, ""});
        !st) {
      return st;
    }
    auto e = event("workload.created", spec.name, "'" + spec.name + "' created from " + source,
                   {{"source", source}});
    return e ? Status{} : fail(e.error());
  });
  if (!recorded) return recorded;
  workloads[spec.name] = w;
  changed(nullptr);
  publish();
  if (start_now) start(w);
  return {};
}

Status Daemon::Impl::remove_workload(const std::string& name) {
  auto it = workloads.find(name);
  if (it == workloads.end()) return {};
  auto w = it->second;
  w->deleted = true;
  w->restart_timer.cancel();
  auto recorded = store->transaction([&](Store& s) -> Status {
    if (auto st = s.delete_workload(name); !st) return st;
    if (auto st = s.release_hold(name); !st) return st;
    auto e = event("workload.deleted", name, "'" + name + "' deleted");
    return e ? Status{} : fail(e.error());
  });
  if (!recorded) return recorded;
  workloads.erase(it);
  changed(nullptr);
  publish();
  return {};
}

std::vector<ConfigError> Daemon::Impl::load_config(bool initial) {
  if (options.config_dir.empty()) return {};
  ConfigLoad load = load_config_dir(options.config_dir);
  for (const auto& e : load.errors) {
    (void)event("config.error", "",
                e.file + (e.line ? ":" + std::to_string(e.line) : "") + ": " + e.message,
                {{"file", e.file}, {"line", e.line}});
  }
  std::set<std::string> named;
  for (auto& [file, spec] : load.workloads) {
    named.insert(spec.name);
    auto it = workloads.find(spec.name);
    if (it == workloads.end()) {
      if (auto st = create_workload(spec, file, spec.autostart); !st) {
        load.errors.push_back({file, 0, st.error().message});
      }
      continue;
    }
    auto& w = it->second;
    if (to_json(w->spec) != to_json(spec) || w->source != file) {
      // A changed spec applies from the next start; the running process is left alone.
      w->spec = spec;
      w->source = file;
      changed(w.get());
      (void)store->put_workload(
          {spec.name, to_json(spec).dump(), file, w->wanted, w->restarts, ""});
      (void)event("workload.updated", spec.name, "'" + spec.name + "' changed in " + file);
    }
  }
  // A config workload whose file is gone goes too (stopped first, when it runs). Errors in a
  // file keep the workload it defined: a typo must not stop a service.
  std::set<std::string> errored;
  for (const auto& e : load.errors)
    errored.insert(e.file);
  std::vector<std::shared_ptr<Workload>> gone;
  for (auto& [name, w] : workloads) {
    if (w->source == "api" || named.contains(name) || errored.contains(w->source)) continue;
    if (!initial || w->phase == Phase::kStopped) gone.push_back(w);
  }
  for (auto& w : gone) {
    if (w->phase == Phase::kRunning || w->phase == Phase::kStopping) {
      w->delete_after_stop = true;
      stop(w, false);
    } else {
      (void)remove_workload(w->spec.name);
    }
  }
  publish();
  return load.errors;
}

Daemon::Daemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Daemon::~Daemon() {
  shutdown();
}

Result<std::unique_ptr<Daemon>> Daemon::open(asio::io_context& io, DaemonOptions options) {
  auto impl = std::make_unique<Impl>(io, std::move(options));
  Impl& d = *impl;
  d.self = probe_host(d.root, ProbeTarget::self());
  auto driver = open_cgroup_driver(d.root, d.self.cgroup, {.parent = d.options.cgroup_parent});
  if (!driver) return fail(driver.error());
  d.driver = std::move(*driver);
  auto store = Store::open(d.options.state_dir / "hostfit.db");
  if (!store) return fail(store.error());
  d.store = std::move(*store);
  d.engine = std::make_unique<PlacementEngine>(d.self.topology);

  auto rows = d.store->workloads();
  if (!rows) return fail(rows.error());
  for (const auto& row : *rows) {
    auto spec = parse_workload_spec(nlohmann::json::parse(row.spec, nullptr, false));
    if (!spec) {
      log_line("workload '" + row.name +
               "' in the store is not valid any more: " + spec.error().message);
      continue;
    }
    auto w = std::make_shared<Workload>(io);
    w->spec = *spec;
    w->source = row.source;
    w->wanted = row.wanted;
    w->restarts = row.restarts;
    d.workloads[row.name] = w;
  }
  // Adopt before prepare(): prepare sweeps empty groups, and an ended run's group still holds
  // the counters its verdict needs.
  auto open_runs = d.store->open_runs();
  if (!open_runs) return fail(open_runs.error());
  for (const auto& run : *open_runs) {
    if (auto st = d.adopt_or_close(run); !st) return fail(st.error());
  }
  auto swept = d.driver->prepare();
  if (!swept) return fail(swept.error());
  // Holds of workloads that are not running (left by a crash between steps) are stale.
  if (auto holds = d.store->holds()) {
    for (const auto& h : *holds) {
      auto it = d.workloads.find(h.owner);
      if (it != d.workloads.end() && it->second->phase == Phase::kStopped) {
        (void)d.store->release_hold(h.owner);
      }
    }
  }
  if (auto rows = d.store->attachments()) {
    for (const auto& row : *rows) {
      if (auto a = d.attach(row, false); !a) {
        (void)d.store->delete_attachment(row.name);
        (void)d.event("attachment.detached", row.name,
                      "'" + row.name + "' detached: " + a.error().message,
                      {{"cgroup", row.cgroup}});
      }
    }
  }
  d.load_config(true);
  d.open_sessions();
  for (auto& [name, w] : d.workloads) {
    if (w->wanted && w->phase == Phase::kStopped) d.start(w);
  }
  d.publish();
  return std::unique_ptr<Daemon>(new Daemon(std::move(impl)));
}

void Daemon::add_routes(api::Router& router) {
  impl_->add_routes(router);
}
void Daemon::set_server(const api::Server* server) {
  impl_->server = server;
}
std::vector<ConfigError> Daemon::reload() {
  return impl_->load_config(false);
}

void Daemon::shutdown() {
  if (!impl_ || impl_->shut_down) return;
  impl_->shut_down = true;
  for (auto& p : impl_->polls) {
    p->timer->cancel();
    p->reply(api::json(200, {{"events", nlohmann::json::array()}, {"next", p->since}}));
  }
  impl_->polls.clear();
  impl_->shutdown_sessions();
  for (auto& [name, w] : impl_->workloads) {
    ++w->generation;
    for (auto* t : {&w->restart_timer, &w->stop_timer, &w->recheck_timer, &w->sample_timer,
                    &w->exit_timer, &w->victim_timer})
      t->cancel();
    if (w->pidfd) w->pidfd->close();
    if (w->oom.fd) w->oom.fd->close();
    // The cache controller restores the limits it lowered; the next daemon takes over.
    w->cache_wake.stop(w->cache.get());
    // Groups stay: their workloads keep running for the next daemon.
    if (w->group) impl_->driver->settle(*w->group);
  }
  impl_->driver->release_parents();
  for (auto& [name, a] : impl_->attachments) {
    a->sample_timer.cancel();
    a->recheck_timer.cancel();
    if (a->oom.fd) a->oom.fd->close();
    a->cache_wake.stop(a->cache.get());
  }
}

}  // namespace hostfit
