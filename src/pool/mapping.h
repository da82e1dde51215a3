// The system calls under SlotPool: reserve address space with no access, commit and decommit pages
// of it, and the time-bounded probe that tries a reservation in a child process first.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "hostfit/core.h"

namespace hostfit::pool_detail {

// mmap(PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE): address space, no memory. Without
// huge_pages the range is marked MADV_NOHUGEPAGE, so a small commit stays small.
Result<std::byte*> reserve(uint64_t bytes, bool huge_pages);
void unreserve(std::byte* base, uint64_t bytes);
// Makes [p, p+bytes) readable and writable; ENOMEM here is RLIMIT_DATA, strict overcommit or
// vm.max_map_count.
Status commit(std::byte* p, uint64_t bytes);
// Makes [p, p+bytes) inaccessible again, keeping its pages (they stay zero or as they were).
Status protect_none(std::byte* p, uint64_t bytes);
// Frees the pages of [p, p+bytes) and makes the range inaccessible. Under strict overcommit the
// range is replaced by a fresh no-access mapping, because only that returns the commit charge.
Status decommit(std::byte* p, uint64_t bytes, bool strict_overcommit, bool huge_pages);

struct ProbeRequest {
  uint64_t reservation_bytes = 0;
  uint64_t first_slot_offset = 0;  // where the first and last slot begin in the reservation
  uint64_t last_slot_offset = 0;
  uint64_t page_bytes = 4096;
  bool strict_overcommit = false;
};

struct ProbeOutcome {
  bool ok = false;
  bool zero_check_failed = false;  // MADV_DONTNEED left data behind (QEMU user mode before 7.1)
  bool timed_out = false;
  bool oom_killed = false;  // the OOM killer ended it at the memory bound hostfit set for it
  std::string failure;      // what failed, with the errno text
  double elapsed_ms = 0;
};

// Reserves the exact size, commits, writes and decommits a page at the first and last slot and
// checks it reads back zero, then releases everything. Runs in a forked child so that a hang (QEMU
// user mode walks every page of a reservation) is cut off at the deadline; when fork fails it runs
// in this process.
ProbeOutcome probe_reservation(const ProbeRequest& request,
                               std::chrono::steady_clock::time_point deadline);

}  // namespace hostfit::pool_detail
