// cgroup v2: memory.high held at the group's own memory plus the budget, so the kernel reclaims
// page cache synchronously on every charge above it; memory.events (inotify) says when the
// group met it, and memory.reclaim takes the rest. memory.max is never touched.
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>

#include "cache_files.h"
#include "containment.h"

namespace hostfit::cache_internal {
namespace {

class V2Containment : public Containment {
 public:
  V2Containment(const Sysroot& root, std::string dir, std::string high_text, int inotify_fd)
      : root_(root),
        dir_(std::move(dir)),
        high_text_(std::move(high_text)),
        written_(high_text_),
        fd_(inotify_fd) {
    const auto limit = parse_kernel_limit(trim(high_text_));
    if (limit && !limit->is_unlimited()) own_high_ = *limit->value;
  }
  ~V2Containment() override {
    if (fd_ >= 0) ::close(fd_);
  }

  std::string_view method() const override { return cgfile::kV2MemoryHigh; }
  std::vector<int> fds() const override { return {fd_}; }
  void drain() override {
    alignas(inotify_event) char buf[4096];
    while (::read(fd_, buf, sizeof buf) > 0) {
    }
  }

  Result<bool> hold(const MemoryBreakdown&, uint64_t ceiling_bytes,
                    CacheLimiterStats& stats) override {
    // Never above the group's own memory.high: the budget only ever tightens it.
    const uint64_t high = page_round_up(ceiling_bytes);
    const bool own = own_high_ && *own_high_ <= high;
    const std::string text = own ? high_text_ : std::to_string(high);
    if (text == written_) return false;
    // Below the current usage the kernel reclaims in this write before it returns.
    if (auto st = root_.write(join_path(dir_, cgfile::kV2MemoryHigh), text); !st)
      return fail(st.error().wrap("cannot hold memory.high"));
    ++stats.holds;
    written_ = text;
    changed_ = !own;
    return false;
  }

  Result<bool> reclaim(const MemoryBreakdown&, uint64_t want_bytes,
                       CacheLimiterStats& stats) override {
    ++stats.reclaims;
    auto done = root_.write(join_path(dir_, cachefile::kV2Reclaim),
                            std::to_string(page_round_up(want_bytes)));
    // EAGAIN: the kernel reclaimed less than asked. The next sample shows how much.
    if (!done && done.error().sys_errno == EAGAIN) return false;
    if (!done) return fail(done.error());
    return true;
  }

  Status restore() override {
    if (!changed_) return {};
    auto st = root_.write(join_path(dir_, cgfile::kV2MemoryHigh), high_text_);
    if (!st && !root_.is_dir(dir_)) st = {};  // a group that is gone has nothing to restore
    if (st) {
      changed_ = false;
      written_ = high_text_;
    }
    return st;
  }

 private:
  Sysroot root_;
  std::string dir_;
  std::string high_text_;  // memory.high exactly as read at open ("max" or bytes)
  std::optional<uint64_t> own_high_;
  std::string written_;  // what memory.high holds now, as far as hold() knows
  bool changed_ = false;
  int fd_;
};

}  // namespace

Result<std::unique_ptr<Containment>> open_v2_containment(const Sysroot& root,
                                                         const std::string& memory_dir,
                                                         const CacheLimitOptions&) {
  for (std::string_view needed : {cachefile::kV2Reclaim, cgfile::kV2MemoryHigh}) {
    if (!root.exists(join_path(memory_dir, needed))) {
      return fail(ErrorKind::kUnsupported, "--cache-limit needs " + std::string(needed) +
                                               " (Linux 5.19+), which " +
                                               root.path(memory_dir).string() + " does not have");
    }
  }
  // Kept as read, newline and all, so the restore writes back exactly what was there.
  auto high = root.read(join_path(memory_dir, cgfile::kV2MemoryHigh));
  if (!high) return fail(high.error().wrap("--cache-limit needs memory.high"));
  if (auto limit = parse_kernel_limit(trim(*high)); !limit)
    return fail(limit.error().wrap("--cache-limit needs memory.high"));
  // The kernel notifies a change of any memory.events counter, "high" among them, as IN_MODIFY.
  const std::string events = root.path(join_path(memory_dir, cgfile::kV2MemoryEvents)).string();
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return fail(Error::from_errno(errno, "create", "an inotify instance"));
  auto containment = std::make_unique<V2Containment>(root, memory_dir, *high, fd);
  if (::inotify_add_watch(fd, events.c_str(), IN_MODIFY) < 0)
    return fail(Error::from_errno(errno, "watch", events));
  return std::unique_ptr<Containment>(std::move(containment));
}

}  // namespace hostfit::cache_internal
