// hostfit cache: page cache that is not a leak. Tell a workload's working set from the file cache
// the kernel charged to its cgroup, have the kernel keep that cache under a budget (for any
// cgroup), and stream files without leaving cache behind.
//
//   hostfit::Sysroot root("/");
//   auto m = hostfit::read_breakdown(root, "/sys/fs/cgroup/memory/hostfit/mirror", /*v2=*/false);
//   m->unreclaimable_bytes // anon + shmem + kernel: what the workload really holds
//   m->file_bytes          // page cache charged to it, reclaimable except shmem_bytes
//
//   hostfit::stream_file(client_fd, file_fd, 0, size);  // sendfile, then drop what it cached
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hostfit/cgroup.h"
#include "hostfit/core.h"
#include "hostfit/probe.h"

namespace hostfit {

namespace cache_internal {
class Containment;
}

// ---------------------------------------------------------------------------------------------
// Accounting

// One cgroup's memory, split the way a person needs it. Bytes; hierarchical (the group and
// everything below it). From v1 memory.stat's total_* keys or v2 memory.stat, and the usage file.
struct MemoryBreakdown {
  bool v2 = false;
  uint64_t usage_bytes = 0;  // memory.current / memory.usage_in_bytes
  // usage - inactive file (the kubelet's "working set"), >= 0. It counts active file pages, so
  // a file read twice is in it; unreclaimable_bytes is what the workload really holds.
  uint64_t working_set_bytes = 0;
  uint64_t unreclaimable_bytes = 0;     // usage - reclaimable file: anon + shmem + kernel
  uint64_t anon_bytes = 0;              // anonymous memory (heap, stacks); shmem not included
  uint64_t file_bytes = 0;              // page cache, including shmem/tmpfs
  uint64_t shmem_bytes = 0;             // tmpfs and shared memory: counted in file, but not
                                        // reclaimable without swap
  uint64_t reclaimable_file_bytes = 0;  // file - shmem: cache the kernel can drop
  uint64_t mapped_file_bytes = 0;       // file pages mapped into processes
  uint64_t active_file_bytes = 0;
  uint64_t inactive_file_bytes = 0;
  uint64_t dirty_bytes = 0;      // file pages waiting for writeback (cannot be dropped yet)
  uint64_t writeback_bytes = 0;  // file pages being written
  uint64_t other_bytes = 0;      // usage - anon - file: kernel memory (slab, stacks, sockets)
  std::string source;            // the memory.stat read, "" when built from numbers
};

// A breakdown from memory.stat's numbers and the usage file's value. v1 reads the hierarchical
// total_* keys (falling back to the local keys when absent); missing keys count as 0.
MemoryBreakdown breakdown_from_stat(const std::map<std::string, uint64_t, std::less<>>& stat,
                                    uint64_t usage_bytes, bool v2);
// The same from memory.stat text; garbage lines are skipped.
MemoryBreakdown parse_breakdown(std::string_view memory_stat_text, uint64_t usage_bytes, bool v2);
// Reads memory.stat and memory.current (v2) or memory.usage_in_bytes (v1) of a memory cgroup
// directory (a target path such as "/sys/fs/cgroup/memory/a/b"). Errors name the file.
Result<MemoryBreakdown> read_breakdown(const Sysroot& root, std::string_view memory_dir, bool v2);

// Raises each field of `peaks` to at least the sample's (usage, working set, anon, file, shmem,
// ...: each its own maximum over time, not one sample's values).
void raise_peaks(MemoryBreakdown& peaks, const MemoryBreakdown& sample);

// Keys: usage_bytes, working_set_bytes, unreclaimable_bytes, anon_bytes, file_bytes, shmem_bytes,
// reclaimable_file_bytes, mapped_file_bytes, active_file_bytes, inactive_file_bytes, dirty_bytes,
// writeback_bytes, other_bytes (docs/cache.md).
nlohmann::json to_json(const MemoryBreakdown& breakdown);

// Pressure stall information (PSI) of a cgroup or of the host (/proc/pressure/memory).
struct MemoryPressure {
  double some_avg10 = 0;  // % of the last 10 s in which some task waited for memory
  double full_avg10 = 0;  // % in which all non-idle tasks waited
  uint64_t some_total_us = 0;
  uint64_t full_total_us = 0;
};
// "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull ..."; nullopt when no "some" line parses.
std::optional<MemoryPressure> parse_pressure(std::string_view text);
// Reads a memory.pressure file (a target path). kNotFound when the kernel has no PSI there.
Result<MemoryPressure> read_pressure(const Sysroot& root, std::string_view pressure_file);

// ---------------------------------------------------------------------------------------------
// Keeping a workload's page cache under a budget

// Where one group's memory files are.
struct CacheGroup {
  std::string memory_dir;  // target path of its memory cgroup, "/sys/fs/cgroup/memory/a/hostfit/x"
  bool v2 = false;
  // Its own memory.pressure (PSI): the group on v2, its twin in the unified tree on hybrid hosts;
  // "" when the kernel keeps none for it.
  std::string pressure_file;
  std::string cgroup;  // its path inside the hierarchy, "/a/hostfit/x" ("" when not known)
};
// Whether --cache-limit can work for groups made under the memory cgroup that `facts` (from
// probe_cgroups of hostfit itself) describe: kUnsupported without a memory controller, or on v2
// without memory.reclaim (Linux 5.19+). Checked before a workload starts.
Status check_cache_limit_support(const Sysroot& root, const CgroupFacts& facts);
// The memory directory of a group hostfit made; its PSI file in the unified hierarchy when that
// exists (v2, or the group's twin in the unified tree of a hybrid host). kUnsupported when no
// hierarchy of the group carries the memory controller.
Result<CacheGroup> cache_group_of(const Sysroot& root, const Cgroup& group);
// Any memory cgroup by its path inside the hierarchy ("/system.slice/registry.service", as in
// /proc/PID/cgroup), on the mounts `facts` describe (probe_cgroups of hostfit itself). kUsage for
// a path that does not start with '/' or has a ".." part, kUnsupported without a memory
// controller, kNotFound when the group does not exist.
Result<CacheGroup> cache_group_at(const Sysroot& root, const CgroupFacts& facts,
                                  std::string_view cgroup);

struct CacheLimitOptions {
  // Budget for reclaimable page cache (file - shmem; tmpfs is never counted or reclaimed).
  // nullopt: account and record peaks only.
  std::optional<uint64_t> limit_bytes{};
  std::chrono::milliseconds interval{50};  // between samples (the kernel wakes it in between)
  // v1: a lowered memory.limit_in_bytes always leaves this much clean cache to reclaim (at most
  // half the budget, when the budget is above 0), above anonymous + shmem + kernel + dirty
  // memory, so an allocation that meets the briefly lowered limit is met by dropping cache.
  uint64_t margin_bytes = uint64_t{16} << 20;
  uint64_t step_bytes = uint64_t{64} << 20;  // v1: most the limit is lowered in one write
  double pressure_backoff_pct = 10;  // the group's own PSI "some avg10" at which reclaim waits
};

struct CacheLimiterStats {
  uint64_t samples = 0;
  uint64_t events = 0;                // wake-ups by the kernel (v1 thresholds, v2 memory.events)
  uint64_t reclaims = 0;              // v1: limit steps; v2: memory.reclaim writes
  uint64_t reclaimed_bytes = 0;       // fall of reclaimable cache across those operations
  uint64_t holds = 0;                 // v1: thresholds armed; v2: memory.high writes
  uint64_t pressure_backoffs = 0;     // samples over budget left alone because of PSI
  uint64_t ineffective_backoffs = 0;  // reclaims that freed under 1/8 of the ask (waits longer)
  uint64_t cpu_us = 0;                // CPU time of the controller's loop (user + system)
  uint64_t errors = 0;
  std::string method;      // "memory.high" (v2) or "memory.limit_in_bytes" (v1)
  std::string last_error;  // "" when none
};

// Holds a group's reclaimable page cache under options.limit_bytes with the kernel's help, and
// records the peaks of every breakdown field. v2: memory.high held at the group's other memory
// + the budget (raised as that grows, when memory.events says the group met it), memory.reclaim
// for any excess. v1: memory usage thresholds at other memory + the budget wake the controller
// the moment cache crosses it, and it reclaims by lowering memory.limit_in_bytes for one write
// (never below other memory + margin) and restoring it. Every limit it changed is restored to
// the exact text read at open() when it stops. Not thread-safe: after start() only stop() may
// be called until it returns.
class CacheController {
 public:
  // kUnsupported when a limit is asked of a v2 kernel without memory.reclaim (before 5.19).
  static Result<std::unique_ptr<CacheController>> open(const Sysroot& root, CacheGroup group,
                                                       CacheLimitOptions options);
  ~CacheController();  // stops and restores

  // Samples the group once, reclaims the excess when over budget and allowed, and re-arms the
  // kernel, in the calling thread, counting its CPU time. Errors are those of reading the group
  // (kNotFound once it is gone); reclaim failures are in stats().
  Result<MemoryBreakdown> tick();
  // What run() does at each wake-up, for a caller with its own loop: after the kernel's report
  // (`woken`: a descriptor of wake_fds() was readable) counts and clears it; then tick()s until
  // usage is back under the ceiling it armed (a few times at most), counting its CPU time.
  // Returns the last tick().
  Result<MemoryBreakdown> step(bool woken);
  // The descriptors that become readable (POLLIN) when cache grows past the budget (v1's usage
  // threshold; none on v2). Owned by the controller and replaced when it re-arms: ask again
  // after every step(), and never close them.
  std::vector<int> wake_fds() const;
  // Samples every interval and whenever the kernel reports a crossing, in the calling thread,
  // until `stop_fd` becomes readable or the group is gone; then restores. Counts its CPU time.
  void run(int stop_fd);
  // run() on a thread of its own, stopped by stop(). The thread inherits the caller's signal
  // mask (start it where signals are blocked).
  void start();
  // Stops the thread (if any) and restores every limit changed; the error names what could not
  // be restored (it is also in stats().last_error).
  Status stop();

  const CacheGroup& group() const { return group_; }
  const CacheLimitOptions& options() const { return options_; }
  const MemoryBreakdown& peaks() const { return peaks_; }
  const std::optional<MemoryBreakdown>& last() const { return last_; }
  const CacheLimiterStats& stats() const { return stats_; }

 private:
  CacheController(const Sysroot& root, CacheGroup group, CacheLimitOptions options);
  // tick() and step() without counting CPU time (run() counts its thread's own).
  Result<MemoryBreakdown> tick_uncounted();
  Result<MemoryBreakdown> catch_up(bool woken);
  Result<MemoryBreakdown> sample();
  bool reclaim_allowed();
  void reclaim(const MemoryBreakdown& now, uint64_t want_bytes);
  Status restore();

  Sysroot root_;
  CacheGroup group_;
  CacheLimitOptions options_;
  MemoryBreakdown peaks_;
  std::optional<MemoryBreakdown> last_;
  CacheLimiterStats stats_;
  std::unique_ptr<cache_internal::Containment> containment_;  // null without a limit
  bool over_ceiling_ = false;  // the last tick() found usage above the ceiling it armed
  int backoff_level_ = 0;
  std::chrono::steady_clock::time_point next_reclaim_{};
  struct Runner;
  std::unique_ptr<Runner> runner_;
};

// Keys: limit_bytes, interval_ms, method, peak (a breakdown), last (a breakdown or null),
// samples, events, reclaims, reclaimed_bytes, holds, pressure_backoffs, ineffective_backoffs,
// cpu_ms, errors, last_error (docs/cache.md).
nlohmann::json to_json(const CacheController& controller);

// ---------------------------------------------------------------------------------------------
// Cache-neutral streaming

struct StreamOptions {
  uint64_t chunk_bytes = uint64_t{1} << 20;  // bytes per sendfile(2) call
  // Drop the pages this call brought into the cache (POSIX_FADV_DONTNEED behind the cursor and
  // once at the end). Pages that were resident when the call began are never dropped.
  bool drop_behind = true;
  // How long to wait for a non-blocking out_fd to become writable, and (with drop_behind) for a
  // socket's send queue to drain before the final drop; -1 waits forever.
  int timeout_ms = 30000;
};

// Sends bytes [offset, offset + length) of the regular file `file_fd` to `out_fd` (a socket,
// pipe or file; blocking or non-blocking) with sendfile(2), stopping early at end of file.
// Returns the bytes sent. Neither descriptor is closed and file_fd's offset is not moved. Errors:
// kUsage for a file_fd that is not a regular file, kIo for a failed send (EPIPE when the peer
// went away; the message says how many bytes had been sent) or a timeout.
Result<uint64_t> stream_file(int out_fd, int file_fd, uint64_t offset, uint64_t length,
                             const StreamOptions& options = {});

// How many of the pages of [offset, offset + length) of a file are in the page cache (mincore
// on a read-only mapping, which faults nothing in). For tests and benchmarks.
struct Residency {
  uint64_t resident_pages = 0;
  uint64_t total_pages = 0;
};
Result<Residency> file_residency(int file_fd, uint64_t offset, uint64_t length);

}  // namespace hostfit
