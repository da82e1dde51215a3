// Reservations, commits and the forked probe.
#include "mapping.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace hostfit::pool_detail {
namespace {

constexpr int kReserveFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
constexpr unsigned char kProbePattern = 0xA5;

// What the probe child reports through its pipe: the stage that failed (kOk when none) and errno.
enum ProbeStage : int {
  kOk = 0,
  kReserve,
  kCommit,
  kDiscard,
  kNonZero,
  kDecommit,
};

struct ProbeReport {
  int stage = kOk;
  int sys_errno = 0;
  int slot = 0;  // 0: first slot, 1: last slot
};

// Only system calls and plain loops: this runs in a child forked from a possibly multi-threaded
// process, where only async-signal-safe work is allowed.
ProbeReport run_probe(const ProbeRequest& r) {
  ProbeReport report;
  void* base = ::mmap(nullptr, r.reservation_bytes, PROT_NONE, kReserveFlags, -1, 0);
  if (base == MAP_FAILED) return {kReserve, errno, 0};
  const uint64_t offsets[2] = {r.first_slot_offset, r.last_slot_offset};
  for (int i = 0; i < 2 && report.stage == kOk; ++i) {
    auto* page = static_cast<unsigned char*>(base) + offsets[i];
    if (::mprotect(page, r.page_bytes, PROT_READ | PROT_WRITE) != 0) {
      report = {kCommit, errno, i};
      break;
    }
    for (uint64_t b = 0; b < r.page_bytes; ++b)
      page[b] = kProbePattern;
    if (::madvise(page, r.page_bytes, MADV_DONTNEED) != 0) {
      report = {kDiscard, errno, i};
      break;
    }
    for (uint64_t b = 0; b < r.page_bytes; ++b) {
      if (static_cast<volatile unsigned char*>(page)[b] != 0) {
        report = {kNonZero, 0, i};
        break;
      }
    }
    if (report.stage != kOk) break;
    const int rc =
        r.strict_overcommit
            ? (::mmap(page, r.page_bytes, PROT_NONE, kReserveFlags | MAP_FIXED, -1, 0) == MAP_FAILED
                   ? -1
                   : 0)
            : ::mprotect(page, r.page_bytes, PROT_NONE);
    if (rc != 0) report = {kDecommit, errno, i};
  }
  ::munmap(base, r.reservation_bytes);
  return report;
}

std::string describe(const ProbeRequest& r, const ProbeReport& report) {
  const std::string slot = report.slot == 0 ? "the first slot" : "the last slot";
  const std::string err =
      report.sys_errno ? std::string(": ") + std::strerror(report.sys_errno) : "";
  switch (report.stage) {
    case kReserve:
      return "reserving " + format_bytes(r.reservation_bytes) + err;
    case kCommit:
      return "committing a page of " + slot + err;
    case kDiscard:
      return "MADV_DONTNEED on " + slot + err;
    case kNonZero:
      return "a page of " + slot + " read back non-zero after MADV_DONTNEED";
    case kDecommit:
      return "decommitting a page of " + slot + err;
    default:
      return "unknown probe stage " + std::to_string(report.stage);
  }
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

ProbeOutcome outcome_of(const ProbeRequest& r, const ProbeReport& report) {
  ProbeOutcome out;
  out.ok = report.stage == kOk;
  out.zero_check_failed = report.stage == kNonZero;
  if (!out.ok) out.failure = describe(r, report);
  return out;
}

}  // namespace

Result<std::byte*> reserve(uint64_t bytes, bool huge_pages) {
  void* base = ::mmap(nullptr, bytes, PROT_NONE, kReserveFlags, -1, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    return fail(ErrorKind::kResource,
                "cannot reserve " + format_bytes(bytes) + ": " + std::strerror(err), err);
  }
  // Advice only: a kernel without THP rejects it, and nothing depends on it.
  if (!huge_pages) ::madvise(base, bytes, MADV_NOHUGEPAGE);
  return static_cast<std::byte*>(base);
}

void unreserve(std::byte* base, uint64_t bytes) {
  if (base != nullptr && bytes > 0) ::munmap(base, bytes);
}

Status commit(std::byte* p, uint64_t bytes) {
  if (bytes == 0) return {};
  if (::mprotect(p, bytes, PROT_READ | PROT_WRITE) != 0) {
    const int err = errno;
    return fail(ErrorKind::kResource,
                "cannot commit " + format_bytes(bytes) + ": mprotect: " + std::strerror(err), err);
  }
  return {};
}

Status protect_none(std::byte* p, uint64_t bytes) {
  if (bytes == 0) return {};
  if (::mprotect(p, bytes, PROT_NONE) != 0) {
    const int err = errno;
    return fail(ErrorKind::kResource,
                "cannot protect " + format_bytes(bytes) + ": mprotect: " + std::strerror(err), err);
  }
  return {};
}

Status decommit(std::byte* p, uint64_t bytes, bool strict_overcommit, bool huge_pages) {
  if (bytes == 0) return {};
  if (strict_overcommit) {
    if (::mmap(p, bytes, PROT_NONE, kReserveFlags | MAP_FIXED, -1, 0) == MAP_FAILED) {
      const int err = errno;
      return fail(ErrorKind::kResource,
                  "cannot decommit " + format_bytes(bytes) + ": mmap: " + std::strerror(err), err);
    }
    if (!huge_pages) ::madvise(p, bytes, MADV_NOHUGEPAGE);
    return {};
  }
  if (::madvise(p, bytes, MADV_DONTNEED) != 0) {
    const int err = errno;
    return fail(ErrorKind::kResource,
                "cannot decommit " + format_bytes(bytes) + ": madvise: " + std::strerror(err), err);
  }
  return protect_none(p, bytes);
}

ProbeOutcome probe_reservation(const ProbeRequest& request,
                               std::chrono::steady_clock::time_point deadline) {
  const auto start = std::chrono::steady_clock::now();
  if (start >= deadline) {
    ProbeOutcome out;
    out.timed_out = true;
    out.failure = "no time left for the probe";
    return out;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    ProbeOutcome out = outcome_of(request, run_probe(request));
    out.elapsed_ms = ms_since(start);
    return out;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    ProbeOutcome out = outcome_of(request, run_probe(request));
    out.elapsed_ms = ms_since(start);
    return out;
  }
  if (pid == 0) {
    ::close(fds[0]);
    const ProbeReport report = run_probe(request);
    const ssize_t written = ::write(fds[1], &report, sizeof report);
    ::_exit(written == static_cast<ssize_t>(sizeof report) ? 0 : 1);
  }
  ::close(fds[1]);

  ProbeReport report;
  size_t got = 0;
  bool timed_out = false;
  while (got < sizeof report) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) continue;  // the loop rechecks the deadline
    if (ready < 0) break;
    const ssize_t n = ::read(fds[0], reinterpret_cast<char*>(&report) + got, sizeof report - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  ProbeOutcome out;
  if (timed_out) {
    out.timed_out = true;
    out.failure = "the probe of a " + format_bytes(request.reservation_bytes) +
                  " reservation did not finish in time and was killed";
  } else if (got < sizeof report) {
    out.failure = WIFSIGNALED(status)
                      ? "the probe process died of signal " + std::to_string(WTERMSIG(status))
                      : "the probe process exited without a report";
  } else {
    out = outcome_of(request, report);
  }
  out.elapsed_ms = ms_since(start);
  return out;
}

}  // namespace hostfit::pool_detail
