// How the kernel is made to hold a group's page cache under a budget, one implementation per
// cgroup version. The controller (controller.cc) samples and decides; a Containment arms the
// kernel and undoes what it changed.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hostfit/cache.h"

namespace hostfit::cache_internal {

class Containment {
 public:
  virtual ~Containment() = default;

  // "memory.limit_in_bytes" (v1) or "memory.high" (v2): what the kernel is made to reclaim by.
  virtual std::string_view method() const = 0;
  // Descriptors that become readable (POLLIN) when the kernel reports that the group crossed
  // what hold() set. They change at each hold(); read them again before every poll.
  virtual std::vector<int> fds() const = 0;
  virtual void drain() = 0;
  // Keeps the group's usage at or under `ceiling_bytes` (its memory other than clean page cache,
  // plus the budget). v1: a usage threshold at the ceiling (moved only when the ceiling moved
  // by more than a slack), so the controller wakes the moment cache grows past the budget; v2:
  // memory.high at the ceiling (never above the group's own memory.high). Counts re-arms in
  // stats.holds. Returns true when usage is above the ceiling already (v1 thresholds fire on
  // crossings only, so the caller samples again).
  virtual Result<bool> hold(const MemoryBreakdown& now, uint64_t ceiling_bytes,
                            CacheLimiterStats& stats) = 0;
  // Reclaims about `want_bytes` of clean page cache now. v1: lowers memory.limit_in_bytes
  // toward usage - want (never below usage - clean cache + margin) and restores it after every
  // step; v2: memory.reclaim. Counts operations in stats.reclaims. False when the kernel could
  // not do what was asked (v1 EBUSY at the first step, v2 EAGAIN).
  virtual Result<bool> reclaim(const MemoryBreakdown& now, uint64_t want_bytes,
                               CacheLimiterStats& stats) = 0;
  // Undoes every change: each limit file back to the exact text read at open, every
  // registration dropped. Idempotent; a group that is gone has nothing to restore.
  virtual Status restore() = 0;
};

// kUnsupported / kNotFound / the read error when the group's files are missing.
Result<std::unique_ptr<Containment>> open_v1_containment(const Sysroot& root,
                                                         const std::string& memory_dir,
                                                         const CacheLimitOptions& options);
Result<std::unique_ptr<Containment>> open_v2_containment(const Sysroot& root,
                                                         const std::string& memory_dir,
                                                         const CacheLimitOptions& options);

inline uint64_t minus(uint64_t a, uint64_t b) {
  return a > b ? a - b : 0;
}
inline uint64_t page_round_up(uint64_t bytes) {
  return (bytes + 4095) / 4096 * 4096;
}
inline uint64_t page_round_down(uint64_t bytes) {
  return bytes / 4096 * 4096;
}
// The clean cache a lowered v1 limit always leaves: options.margin_bytes, but at most half a
// budget (above 0), so reclaim can reach below the budget and the threshold is not re-crossed
// at once.
inline uint64_t v1_margin(const CacheLimitOptions& options) {
  const uint64_t budget = options.limit_bytes.value_or(0);
  return budget == 0 ? options.margin_bytes : std::min(options.margin_bytes, budget / 2);
}
// Clean page cache: reclaimable file pages that need no writeback to be dropped.
inline uint64_t clean_cache(const MemoryBreakdown& m) {
  return minus(m.reclaimable_file_bytes, m.dirty_bytes + m.writeback_bytes);
}

}  // namespace hostfit::cache_internal
