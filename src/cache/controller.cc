// The cache-limit controller: sample memory.stat, reclaim reclaimable page cache above a budget,
// and never take memory the workload needs.
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cache_files.h"
#include "hostfit/cache.h"
#include "hostfit/probe.h"

namespace hostfit {
namespace {

using Clock = std::chrono::steady_clock;

// A reclaim that frees less than 1/kIneffectiveDivisor of its ask makes the next one wait
// 2^level intervals, up to 2^kMaxBackoffLevel: dirty pages, a workload refilling as fast as we
// drop, or tmpfs growth are not worth hammering the kernel for.
constexpr uint64_t kIneffectiveDivisor = 8;
constexpr int kMaxBackoffLevel = 4;
// Under memory pressure the controller waits this many intervals before looking again.
constexpr int kPressureBackoffIntervals = 4;
// A v1 limit that could not be restored is retried this often before giving up loudly.
constexpr int kRestoreAttempts = 5;

uint64_t minus(uint64_t a, uint64_t b) {
  return a > b ? a - b : 0;
}

uint64_t page_round_up(uint64_t bytes) {
  return (bytes + 4095) / 4096 * 4096;
}

uint64_t page_round_down(uint64_t bytes) {
  return bytes / 4096 * 4096;
}

}  // namespace

struct CacheController::Runner {
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
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
  CacheGroup cache{memory->dir, memory->v2, {}};
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

CacheController::CacheController(const Sysroot& root, CacheGroup group, CacheLimitOptions options)
    : root_(root), group_(std::move(group)), options_(options) {}

CacheController::~CacheController() {
  stop();
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
  std::string method;
  std::string v1_limit;
  if (options.limit_bytes) {
    if (group.v2) {
      method = std::string(cachefile::kV2Reclaim);
      if (!root.exists(join_path(group.memory_dir, cachefile::kV2Reclaim))) {
        return fail(ErrorKind::kUnsupported,
                    "--cache-limit needs memory.reclaim (Linux 5.19+), which " +
                        root.path(group.memory_dir).string() + " does not have");
      }
    } else {
      method = std::string(cgfile::kV1MemoryLimit);
      // The limit every lowering is undone to, read once: a lowered value read back later (after
      // a failed restore) must never become the new "original".
      auto text = root.read_value(join_path(group.memory_dir, method));
      if (!text) return fail(text.error().wrap("--cache-limit needs " + method));
      auto limit = parse_kernel_limit(*text);
      if (!limit) return fail(limit.error().wrap("--cache-limit needs " + method));
      v1_limit = limit->is_unlimited() ? std::string("-1") : std::to_string(*limit->value);
    }
  }
  std::unique_ptr<CacheController> c(new CacheController(root, std::move(group), options));
  c->stats_.method = std::move(method);
  c->v1_limit_ = std::move(v1_limit);
  return c;
}

Result<MemoryBreakdown> CacheController::tick() {
  if (v1_lowered_) {
    if (auto st = restore_v1_limit(); !st) {
      ++stats_.errors;
      stats_.last_error = st.error().message;
    }
  }
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
  if (!options_.limit_bytes || now->reclaimable_file_bytes <= *options_.limit_bytes) {
    backoff_level_ = 0;
    return now;
  }
  if (Clock::now() < next_reclaim_) return now;
  // Dirty and writeback pages cannot be dropped without waiting for the disk: leave them.
  const uint64_t clean =
      minus(now->reclaimable_file_bytes, now->dirty_bytes + now->writeback_bytes);
  const uint64_t want = std::min(now->reclaimable_file_bytes - *options_.limit_bytes, clean);
  if (want == 0) return now;
  if (!group_.pressure_file.empty() || root_.exists(cachefile::kHostPressure)) {
    auto p =
        read_pressure(root_, group_.pressure_file.empty() ? std::string(cachefile::kHostPressure)
                                                          : group_.pressure_file);
    if (p && p->some_avg10 >= options_.pressure_backoff_pct) {
      // Tasks are already stalling on memory: reclaiming more would only add refaults.
      ++stats_.pressure_backoffs;
      next_reclaim_ = Clock::now() + options_.interval * kPressureBackoffIntervals;
      return now;
    }
  }
  reclaim(*now, want);
  return now;
}

void CacheController::reclaim(const MemoryBreakdown& now, uint64_t want_bytes) {
  Status done;
  if (group_.v2) {
    ++stats_.reclaims;
    done = root_.write(join_path(group_.memory_dir, cachefile::kV2Reclaim),
                       std::to_string(want_bytes));
    // EAGAIN: the kernel reclaimed less than asked. The next sample shows how much.
    if (!done && done.error().sys_errno == EAGAIN) done = {};
  } else {
    done = reclaim_v1_limit(now, want_bytes);
  }
  if (!done) {
    ++stats_.errors;
    stats_.last_error = done.error().message;
  }
  uint64_t freed = 0;
  if (auto after = read_breakdown(root_, group_.memory_dir, group_.v2)) {
    freed = minus(now.reclaimable_file_bytes, after->reclaimable_file_bytes);
    last_ = *after;
  }
  stats_.reclaimed_bytes += freed;
  if (freed < want_bytes / kIneffectiveDivisor) {
    ++stats_.ineffective_backoffs;
    backoff_level_ = std::min(backoff_level_ + 1, kMaxBackoffLevel);
    next_reclaim_ = Clock::now() + options_.interval * (1 << backoff_level_);
  } else {
    backoff_level_ = 0;
  }
}

Status CacheController::restore_v1_limit() {
  const std::string limit_file = join_path(group_.memory_dir, cgfile::kV1MemoryLimit);
  Status restored = root_.write(limit_file, v1_limit_);
  for (int attempt = 1; !restored && attempt < kRestoreAttempts; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    restored = root_.write(limit_file, v1_limit_);
  }
  v1_lowered_ = !restored;
  if (!restored) {
    return fail(restored.error().wrap("cannot restore memory.limit_in_bytes to " + v1_limit_ +
                                      " after reclaim (retried on the next sample)"));
  }
  return {};
}

Status CacheController::reclaim_v1_limit(const MemoryBreakdown& now, uint64_t want_bytes) {
  if (v1_lowered_) return {};  // never lower again before the limit is back (tick() retries)
  const std::string limit_file = join_path(group_.memory_dir, cgfile::kV1MemoryLimit);
  // Everything but clean reclaimable cache stays, plus a margin of clean cache, so allocations
  // of the workload while the limit is low can always be met by dropping cache: no OOM.
  const uint64_t clean = minus(now.reclaimable_file_bytes, now.dirty_bytes + now.writeback_bytes);
  const uint64_t floor = page_round_up(minus(now.usage_bytes, clean) + options_.margin_bytes);
  const uint64_t target = std::max(page_round_down(minus(now.usage_bytes, want_bytes)), floor);
  const auto original = parse_u64(v1_limit_);  // nullopt: "-1", no limit
  if (original && *original <= target) return {};

  uint64_t current = now.usage_bytes;
  Status result;
  while (current > target) {
    const uint64_t next = page_round_up(std::max(target, minus(current, options_.step_bytes)));
    if (next >= current) break;
    ++stats_.reclaims;
    // The kernel reclaims down to `next` before it takes the new limit; when it cannot, the
    // write fails with EBUSY and the limit is unchanged.
    Status lowered = root_.write(limit_file, std::to_string(next));
    if (auto restored = restore_v1_limit(); !restored) return restored;
    if (!lowered) {
      if (lowered.error().sys_errno != EBUSY) result = fail(lowered.error());
      break;
    }
    current = next;
  }
  return result;
}

void CacheController::start() {
  if (runner_) return;
  runner_ = std::make_unique<Runner>();
  runner_->thread = std::thread([this] {
    std::unique_lock lock(runner_->mutex);
    while (!runner_->stopping) {
      lock.unlock();
      const auto sample = tick();
      lock.lock();
      if (!sample && sample.error().kind == ErrorKind::kNotFound) break;
      runner_->wake.wait_for(lock, options_.interval, [this] { return runner_->stopping; });
    }
  });
}

void CacheController::stop() {
  if (!runner_) return;
  {
    const std::lock_guard lock(runner_->mutex);
    runner_->stopping = true;
  }
  runner_->wake.notify_all();
  if (runner_->thread.joinable()) runner_->thread.join();
  runner_.reset();
  if (v1_lowered_) (void)restore_v1_limit();
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
      {"reclaims", s.reclaims},
      {"reclaimed_bytes", s.reclaimed_bytes},
      {"pressure_backoffs", s.pressure_backoffs},
      {"ineffective_backoffs", s.ineffective_backoffs},
      {"errors", s.errors},
      {"last_error", s.last_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.last_error)},
  };
}

}  // namespace hostfit
