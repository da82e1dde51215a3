// cgroup v1: the kernel wakes the controller through memory usage thresholds
// (cgroup.event_control, one eventfd per threshold) and the controller reclaims by lowering
// memory.limit_in_bytes for the moment of one write, as docs/cache.md explains.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <thread>

#include "cache_files.h"
#include "containment.h"

namespace hostfit::cache_internal {
namespace {

// A v1 limit that could not be restored is retried this often before the step gives up (and
// every later sample retries it before anything else).
constexpr int kRestoreAttempts = 5;
// Registering a threshold waits for an RCU grace period (milliseconds, tens of them on a busy
// host), during which the controller cannot react: the threshold moves only when the ceiling
// moved by more than this (or a sixteenth of the budget, if larger).
constexpr uint64_t kMinRearmSlackBytes = uint64_t{1} << 20;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

class V1Containment : public Containment {
 public:
  V1Containment(const Sysroot& root, std::string dir, const CacheLimitOptions& options,
                std::string limit_text, Fd usage_fd)
      : root_(root),
        dir_(std::move(dir)),
        options_(options),
        limit_text_(std::move(limit_text)),
        usage_fd_(std::move(usage_fd)),
        rearm_slack_bytes_(std::max(kMinRearmSlackBytes, options.limit_bytes.value_or(0) / 16)) {}

  std::string_view method() const override { return cgfile::kV1MemoryLimit; }

  std::vector<int> fds() const override {
    if (!threshold_) return {};
    return {threshold_->get()};
  }

  void drain() override {
    uint64_t count;
    if (!threshold_) return;
    while (::read(threshold_->get(), &count, sizeof count) == sizeof count) {
    }
  }

  Result<bool> hold(const MemoryBreakdown&, uint64_t ceiling_bytes,
                    CacheLimiterStats& stats) override {
    const uint64_t moved =
        ceiling_bytes > armed_bytes_ ? ceiling_bytes - armed_bytes_ : armed_bytes_ - ceiling_bytes;
    if (!threshold_ || moved > rearm_slack_bytes_) {
      if (auto st = arm(ceiling_bytes); !st) return fail(st.error());
      ++stats.holds;
    }
    // Thresholds fire on crossings: usage already above the ceiling would go unnoticed.
    auto usage = root_.read_value(join_path(dir_, cgfile::kV1MemoryUsage));
    if (!usage) return fail(usage.error());
    const auto bytes = parse_u64(*usage);
    return bytes && *bytes > armed_bytes_;
  }

  Result<bool> reclaim(const MemoryBreakdown& now, uint64_t want_bytes,
                       CacheLimiterStats& stats) override {
    if (lowered_) {
      // Never lower again before the limit is back.
      if (auto st = restore_limit(); !st) return fail(st.error());
    }
    // Everything but clean cache stays, plus a margin of clean cache, so any allocation of the
    // workload while the limit is low can be met by dropping cache.
    const uint64_t floor =
        page_round_up(minus(now.usage_bytes, clean_cache(now)) + v1_margin(options_));
    const uint64_t target = std::max(page_round_down(minus(now.usage_bytes, want_bytes)), floor);
    const auto original = parse_u64(trim(limit_text_));
    if (original && *original < kUnlimitedThreshold && *original <= target) return false;

    const std::string limit_file = join_path(dir_, cgfile::kV1MemoryLimit);
    uint64_t current = now.usage_bytes;
    bool stepped = false;
    while (current > target) {
      const uint64_t next = page_round_up(std::max(target, minus(current, options_.step_bytes)));
      if (next >= current) break;
      ++stats.reclaims;
      // The kernel reclaims down to `next` before it takes the new limit and answers EBUSY,
      // leaving the limit unchanged, when it cannot; the low limit lives only until the restore.
      lowered_ = true;
      const Status lowered = root_.write(limit_file, std::to_string(next));
      if (auto st = restore_limit(); !st) return fail(st.error());
      if (!lowered) {
        if (lowered.error().sys_errno != EBUSY) return fail(lowered.error());
        break;
      }
      stepped = true;
      current = next;
    }
    return stepped;
  }

  Status restore() override {
    threshold_.reset();
    if (!lowered_) return {};
    auto st = restore_limit();
    // A group that is gone has no limit left to restore.
    if (!st && !root_.is_dir(dir_)) {
      lowered_ = false;
      return {};
    }
    return st;
  }

 private:
  // Registers an eventfd for usage crossing `level`, then drops the old one (closing an eventfd
  // unregisters its threshold).
  Status arm(uint64_t level) {
    Fd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (event.get() < 0) return fail(Error::from_errno(errno, "create", "an eventfd"));
    const std::string command = std::to_string(event.get()) + " " +
                                std::to_string(usage_fd_.get()) + " " + std::to_string(level);
    if (auto st = root_.write(join_path(dir_, cgfile::kV1EventControl), command); !st)
      return fail(st.error().wrap("cannot register a memory usage threshold"));
    threshold_ = std::move(event);
    armed_bytes_ = level;
    return {};
  }

  Status restore_limit() {
    const std::string limit_file = join_path(dir_, cgfile::kV1MemoryLimit);
    Status restored = root_.write(limit_file, limit_text_);
    for (int attempt = 1; !restored && attempt < kRestoreAttempts; ++attempt) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      restored = root_.write(limit_file, limit_text_);
    }
    if (!restored) {
      return fail(restored.error().wrap("cannot restore memory.limit_in_bytes to " +
                                        std::string(trim(limit_text_)) +
                                        " after reclaim (retried on the next sample)"));
    }
    lowered_ = false;
    return {};
  }

  Sysroot root_;
  std::string dir_;
  CacheLimitOptions options_;
  std::string limit_text_;       // memory.limit_in_bytes exactly as read at open
  Fd usage_fd_;                  // memory.usage_in_bytes, the file thresholds are registered on
  std::optional<Fd> threshold_;  // the eventfd of the threshold armed at armed_bytes_
  uint64_t armed_bytes_ = 0;
  uint64_t rearm_slack_bytes_;
  bool lowered_ = false;  // a lowered limit may still be in place (a restore failed)
};

}  // namespace

Result<std::unique_ptr<Containment>> open_v1_containment(const Sysroot& root,
                                                         const std::string& memory_dir,
                                                         const CacheLimitOptions& options) {
  // The limit every lowering is undone to, read once: a lowered value read back later (after a
  // failed restore) must never become the new "original".
  const std::string limit_file = join_path(memory_dir, cgfile::kV1MemoryLimit);
  // Kept as read, newline and all, so the restore writes back exactly what was there.
  auto text = root.read(limit_file);
  if (!text) return fail(text.error().wrap("--cache-limit needs memory.limit_in_bytes"));
  if (auto limit = parse_kernel_limit(trim(*text)); !limit)
    return fail(limit.error().wrap("--cache-limit needs memory.limit_in_bytes"));
  const std::string usage = root.path(join_path(memory_dir, cgfile::kV1MemoryUsage)).string();
  Fd usage_fd(::open(usage.c_str(), O_RDONLY | O_CLOEXEC));
  if (usage_fd.get() < 0) return fail(Error::from_errno(errno, "open", usage));
  return std::unique_ptr<Containment>(
      new V1Containment(root, memory_dir, options, *text, std::move(usage_fd)));
}

}  // namespace hostfit::cache_internal
