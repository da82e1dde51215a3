// The cache-limit controller: sample memory.stat, arm the kernel so the group's page cache stays
// under a budget, reclaim what is over it, and never take memory the workload needs.
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "cache_files.h"
#include "containment.h"
#include "hostfit/cache.h"
#include "hostfit/probe.h"

namespace hostfit {
namespace {

using Clock = std::chrono::steady_clock;
using cache_internal::clean_cache;
using cache_internal::minus;

// A reclaim the kernel could not do (v1 EBUSY, v2 EAGAIN) makes the next one wait 2^level
// intervals, up to 2^kMaxBackoffLevel: pages that cannot be dropped are not worth hammering the
// kernel for.
constexpr int kMaxBackoffLevel = 1;
// Under memory pressure the controller waits this many intervals before reclaiming again.
constexpr int kPressureBackoffIntervals = 4;
// Reclaim goes this far under the budget (a quarter of it, at most 8 MiB), so a reader at full
// speed wakes the controller once per few MiB rather than once per page.
constexpr uint64_t kMaxHysteresisBytes = uint64_t{8} << 20;
// The controller thread's priority: SCHED_FIFO 1 where allowed, else this nice value.
constexpr int kRealTimePriority = 1;
constexpr int kNice = -10;
// Samples in a row when usage is already above a freshly armed ceiling.
constexpr int kMaxCatchUps = 4;

uint64_t thread_cpu_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

// f(), its CPU time on the calling thread added to `cpu_us`.
template <class F>
Result<MemoryBreakdown> counted(uint64_t& cpu_us, F f) {
  const uint64_t cpu_start = thread_cpu_us();
  auto now = f();
  cpu_us += thread_cpu_us() - cpu_start;
  return now;
}

// Raises the calling thread's scheduling priority for its lifetime, when it may.
class RealTime {
 public:
  explicit RealTime(bool wanted) {
    if (!wanted) return;
    const sched_param rt{.sched_priority = kRealTimePriority};
    raised_ = ::pthread_setschedparam(::pthread_self(), SCHED_FIFO, &rt) == 0;
    if (!raised_) (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kNice);
  }
  ~RealTime() {
    if (!raised_) return;
    const sched_param normal{.sched_priority = 0};
    (void)::pthread_setschedparam(::pthread_self(), SCHED_OTHER, &normal);
  }
  RealTime(const RealTime&) = delete;
  RealTime& operator=(const RealTime&) = delete;

 private:
  bool raised_ = false;
};

}  // namespace

struct CacheController::Runner {
  int stop_fd = -1;
  std::thread thread;
};

Status check_cache_limit_support(const Sysroot& root, const CgroupFacts& facts) {
  const ControllerPath* memory = facts.find("memory");
  if (memory == nullptr) {
    return fail(ErrorKind::kUnsupported,
                "--cache-limit needs the memory cgroup controller, which is not mounted (cgroup "
                "mode " +
                    std::string(to_string(facts.mode)) + ")");
  }
  const std::string_view needed = memory->v2 ? cachefile::kV2Reclaim : cgfile::kV1MemoryLimit;
  if (!root.exists(join_path(memory->dir, needed))) {
    return fail(ErrorKind::kUnsupported, "--cache-limit needs " + std::string(needed) +
                                             " (cgroup v2: Linux 5.19+), which " +
                                             root.path(memory->dir).string() + " does not have");
  }
  return {};
}

Result<CacheGroup> cache_group_of(const Sysroot& root, const Cgroup& group) {
  const CgroupDir* memory = group.dir_of("memory");
  if (memory == nullptr) {
    return fail(ErrorKind::kUnsupported,
                "no memory cgroup controller for group '" + group.name + "'");
  }
  CacheGroup cache{memory->dir, memory->v2, {}, memory->cgroup};
  // PSI is in the unified tree: the group itself on v2, its controller-less twin on hybrid hosts.
  for (const CgroupDir& dir : group.dirs) {
    const std::string pressure = join_path(dir.dir, cachefile::kMemoryPressure);
    if (dir.v2 && root.exists(pressure)) {
      cache.pressure_file = pressure;
      break;
    }
  }
  return cache;
}

Result<CacheGroup> cache_group_at(const Sysroot& root, const CgroupFacts& facts,
                                  std::string_view cgroup) {
  if (!cgroup.starts_with('/')) {
    return fail(ErrorKind::kUsage, "bad cgroup path '" + escape_bytes(cgroup, true) +
                                       "': give a path starting with '/', as in /proc/PID/cgroup");
  }
  auto normal = normalize_cgroup_path(cgroup);
  if (!normal) return fail(normal.error());
  const ControllerPath* memory = facts.find("memory");
  if (memory == nullptr) {
    return fail(ErrorKind::kUnsupported, "no memory cgroup controller is mounted under " +
                                             root.path("/sys/fs/cgroup").string() + " (mode " +
                                             to_string(facts.mode) + ")");
  }
  const CgroupMount* mount = nullptr;
  const CgroupMount* unified = nullptr;
  for (const auto& m : facts.mounts) {
    if (m.mount_point == memory->mount_point) mount = &m;
    if (m.v2 && (m.primary || unified == nullptr)) unified = &m;
  }
  if (mount == nullptr) return fail(ErrorKind::kInternal, "no mount for " + memory->mount_point);
  const std::string path = *normal;
  auto below = mount->locate(path);
  if (!below) return fail(below.error());
  CacheGroup g{join_path(memory->mount_point, *below), memory->v2, {}, path};
  if (!root.is_dir(g.memory_dir)) {
    return fail(ErrorKind::kNotFound,
                "no memory cgroup " + path + " (" + root.path(g.memory_dir).string() + ")");
  }
  // PSI lives in the unified hierarchy: the group itself on v2, its twin there on hybrid hosts.
  if (unified != nullptr) {
    if (auto twin = unified->locate(path)) {
      const std::string file =
          join_path(join_path(unified->mount_point, *twin), cachefile::kMemoryPressure);
      if (root.exists(file)) g.pressure_file = file;
    }
  }
  return g;
}

CacheController::CacheController(const Sysroot& root, CacheGroup group, CacheLimitOptions options)
    : root_(root), group_(std::move(group)), options_(options) {}

CacheController::~CacheController() {
  (void)stop();
}

Result<std::unique_ptr<CacheController>> CacheController::open(const Sysroot& root,
                                                               CacheGroup group,
                                                               CacheLimitOptions options) {
  if (options.interval <= std::chrono::milliseconds(0)) {
    return fail(ErrorKind::kUsage, "the cache controller's interval must be positive");
  }
  if (!root.is_dir(group.memory_dir)) {
    return fail(ErrorKind::kNotFound,
                "no memory cgroup at " + root.path(group.memory_dir).string());
  }
  std::unique_ptr<cache_internal::Containment> containment;
  if (options.limit_bytes) {
    auto opened = group.v2 ? cache_internal::open_v2_containment(root, group.memory_dir, options)
                           : cache_internal::open_v1_containment(root, group.memory_dir, options);
    if (!opened) return fail(opened.error());
    containment = std::move(*opened);
  }
  std::unique_ptr<CacheController> c(new CacheController(root, std::move(group), options));
  if (containment) c->stats_.method = std::string(containment->method());
  c->containment_ = std::move(containment);
  return c;
}

Result<MemoryBreakdown> CacheController::sample() {
  auto now = read_breakdown(root_, group_.memory_dir, group_.v2);
  if (!now) {
    // A group that is gone has ended; that is not a failure of the controller.
    if (now.error().kind != ErrorKind::kNotFound) {
      ++stats_.errors;
      stats_.last_error = now.error().message;
    }
    return now;
  }
  ++stats_.samples;
  raise_peaks(peaks_, *now);
  last_ = *now;
  return now;
}

bool CacheController::reclaim_allowed() {
  if (Clock::now() < next_reclaim_) return false;
  // Only the group's own pressure counts: the host's may be anybody's, and must not lift a
  // budget the group was given.
  if (group_.pressure_file.empty()) return true;
  auto p = read_pressure(root_, group_.pressure_file);
  if (p && p->some_avg10 >= options_.pressure_backoff_pct) {
    // Tasks are already stalling on memory: reclaiming more would only add refaults.
    ++stats_.pressure_backoffs;
    next_reclaim_ = Clock::now() + options_.interval * kPressureBackoffIntervals;
    return false;
  }
  return true;
}

Result<MemoryBreakdown> CacheController::tick() {
  return counted(stats_.cpu_us, [this] { return tick_uncounted(); });
}

Result<MemoryBreakdown> CacheController::step(bool woken) {
  return counted(stats_.cpu_us, [this, woken] { return catch_up(woken); });
}

Result<MemoryBreakdown> CacheController::tick_uncounted() {
  over_ceiling_ = false;
  auto now = sample();
  if (!now || !containment_) return now;
  const uint64_t budget = *options_.limit_bytes;
  if (now->reclaimable_file_bytes <= budget) {
    backoff_level_ = 0;
  } else if (reclaim_allowed()) {
    // Dirty and writeback pages cannot be dropped without waiting for the disk: leave them.
    const uint64_t keep = budget - std::min(budget / 4, kMaxHysteresisBytes);
    // v1 never lowers the limit into the last margin of clean cache: asking for it would only
    // look like a reclaim that did not help.
    const uint64_t room = group_.v2 ? clean_cache(*now)
                                    : minus(clean_cache(*now), cache_internal::v1_margin(options_));
    const uint64_t want = std::min(now->reclaimable_file_bytes - keep, room);
    if (want > 0) {
      reclaim(*now, want);
      if (auto after = read_breakdown(root_, group_.memory_dir, group_.v2)) *now = *after;
    }
  }
  // The ceiling: everything that is not clean cache, plus the budget.
  const uint64_t ceiling = minus(now->usage_bytes, clean_cache(*now)) + budget;
  auto over = containment_->hold(*now, ceiling, stats_);
  if (over) {
    over_ceiling_ = *over;
  } else if (!root_.is_dir(group_.memory_dir)) {
    return fail(ErrorKind::kNotFound, "the group " + group_.memory_dir + " is gone");
  } else {
    ++stats_.errors;
    stats_.last_error = over.error().message;
  }
  return now;
}

void CacheController::reclaim(const MemoryBreakdown& now, uint64_t want_bytes) {
  auto done = containment_->reclaim(now, want_bytes, stats_);
  if (!done) {
    ++stats_.errors;
    stats_.last_error = done.error().message;
  }
  if (auto after = read_breakdown(root_, group_.memory_dir, group_.v2)) {
    stats_.reclaimed_bytes += minus(now.reclaimable_file_bytes, after->reclaimable_file_bytes);
    last_ = *after;
  }
  // Judged by the kernel's answer, not by the fall of cache: a fast reader refills between the
  // reclaim and the next read, which would make every reclaim look useless.
  if (!done || !*done) {
    ++stats_.ineffective_backoffs;
    backoff_level_ = std::min(backoff_level_ + 1, kMaxBackoffLevel);
    next_reclaim_ = Clock::now() + options_.interval * (1 << backoff_level_);
  } else {
    backoff_level_ = 0;
  }
}

Result<MemoryBreakdown> CacheController::catch_up(bool woken) {
  if (woken && containment_) {
    ++stats_.events;
    containment_->drain();
  }
  auto s = tick_uncounted();
  for (int i = 1; i < kMaxCatchUps && s && over_ceiling_; ++i)
    s = tick_uncounted();
  return s;
}

std::vector<int> CacheController::wake_fds() const {
  return containment_ ? containment_->fds() : std::vector<int>{};
}

void CacheController::run(int stop_fd) {
  // How soon this thread runs after the kernel wakes it is the bound's slack on v1, and it
  // sleeps nearly always, doing a bounded amount of work per wake-up: it asks for the lowest
  // real-time priority (root only; the kernel's RT throttling still caps it), else nice -10.
  const RealTime real_time(containment_ != nullptr);
  const uint64_t cpu_start = thread_cpu_us();
  auto next_sample = Clock::now();
  for (;;) {
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(next_sample - Clock::now());
    std::vector<pollfd> fds = {{stop_fd, POLLIN, 0}};
    if (containment_) {
      for (int fd : containment_->fds())
        fds.push_back({fd, POLLIN, 0});
    }
    const int ready =
        ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(0, wait.count() + 1)));
    if (ready < 0 && errno != EINTR) break;
    if (fds[0].revents != 0) break;
    bool woken = false;
    for (size_t i = 1; i < fds.size(); ++i)
      woken = woken || fds[i].revents != 0;
    if (!woken && Clock::now() < next_sample) continue;
    if (!woken) next_sample = Clock::now() + options_.interval;
    const auto s = catch_up(woken);
    if (!s && s.error().kind == ErrorKind::kNotFound) break;  // the group is gone
  }
  if (auto st = restore(); !st) {
    ++stats_.errors;
    stats_.last_error = st.error().message;
  }
  stats_.cpu_us += thread_cpu_us() - cpu_start;
}

void CacheController::start() {
  if (runner_) return;
  runner_ = std::make_unique<Runner>();
  runner_->stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  runner_->thread = std::thread([this] { run(runner_->stop_fd); });
}

Status CacheController::restore() {
  if (!containment_) return {};
  return containment_->restore();
}

Status CacheController::stop() {
  if (runner_) {
    const uint64_t one = 1;
    if (::write(runner_->stop_fd, &one, sizeof one) < 0) {
      // An eventfd write fails only on overflow; the thread is being told to stop already.
    }
    if (runner_->thread.joinable()) runner_->thread.join();
    ::close(runner_->stop_fd);
    runner_.reset();
  }
  auto st = restore();
  if (!st) {
    ++stats_.errors;
    stats_.last_error = st.error().message;
  }
  return st;
}

nlohmann::json to_json(const CacheController& c) {
  const CacheLimiterStats& s = c.stats();
  const auto& limit = c.options().limit_bytes;
  return nlohmann::json{
      {"limit_bytes", limit ? nlohmann::json(*limit) : nlohmann::json(nullptr)},
      {"interval_ms", c.options().interval.count()},
      {"method", s.method.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.method)},
      {"peak", to_json(c.peaks())},
      {"last", c.last() ? to_json(*c.last()) : nlohmann::json(nullptr)},
      {"samples", s.samples},
      {"events", s.events},
      {"reclaims", s.reclaims},
      {"reclaimed_bytes", s.reclaimed_bytes},
      {"holds", s.holds},
      {"pressure_backoffs", s.pressure_backoffs},
      {"ineffective_backoffs", s.ineffective_backoffs},
      {"cpu_ms", static_cast<double>(s.cpu_us) / 1000.0},
      {"errors", s.errors},
      {"last_error", s.last_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.last_error)},
  };
}

}  // namespace hostfit
