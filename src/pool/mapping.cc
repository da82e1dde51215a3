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
#include <utility>

#include "../probe/kernel_files.h"
#include "hostfit/probe.h"

namespace hostfit::pool_detail {
namespace {

// The most memory the probe child may use: a few pages natively. Under qemu-user the emulator's
// bookkeeping for a terabyte reservation grew to 23.7 GB and set off the host's OOM killer; qemu
// ignores RLIMIT_AS and RLIMIT_DATA (it will not limit itself), so the bound is a memory cgroup.
constexpr uint64_t kProbeMemoryBytes = uint64_t{256} << 20;

// A memory cgroup of its own for the probe child, below hostfit's own (best effort: none without
// write access, or on cgroup v2 when hostfit's group cannot delegate the memory controller).
// Removed on destruction, after the child is gone.
class ProbeCage {
 public:
  ProbeCage() {
    const Sysroot root("/");
    const CgroupFacts facts = probe_cgroups(root, ProbeTarget::self());
    const ControllerPath* memory = facts.find("memory");
    if (memory == nullptr) return;
    v2_ = memory->v2;
    dir_ = join_path(memory->dir, "hostfit-probe-" + std::to_string(::getpid()));
    if (!root.make_dir(dir_)) {
      dir_.clear();
      return;
    }
    const std::string limit = std::to_string(kProbeMemoryBytes);
    limit_file_ = join_path(dir_, v2_ ? kfile::kV2MemoryMax : kfile::kV1MemoryLimit);
    if (!root.write(limit_file_, limit)) {
      discard();
      return;
    }
    // No swap either: the bound is on memory, not a slower road to the same growth.
    (void)root.write(join_path(dir_, v2_ ? kfile::kV2MemorySwapMax : kfile::kV1MemswLimit),
                     v2_ ? "0" : limit);
    procs_ = ::open(root.path(join_path(dir_, kfile::kProcs)).c_str(), O_WRONLY | O_CLOEXEC);
    if (procs_ < 0) discard();
  }
  ProbeCage(const ProbeCage&) = delete;
  ProbeCage& operator=(const ProbeCage&) = delete;
  ~ProbeCage() { discard(); }

  // cgroup.procs of the cage, for the child to write "0" into; -1 when there is no cage.
  int procs_fd() const { return procs_; }
  // "a 256 MiB memory cgroup (memory.limit_in_bytes of DIR)", or "" without a cage.
  std::string bound() const {
    if (procs_ < 0) return {};
    return "a " + format_bytes(kProbeMemoryBytes) + " memory cgroup (" + limit_file_ + ")";
  }
  // Whether the kernel's OOM killer killed in the cage (its oom_kill counter).
  bool oom_killed() const {
    if (procs_ < 0) return false;
    const auto text =
        Sysroot("/").read(join_path(dir_, v2_ ? kfile::kV2MemoryEvents : kfile::kV1OomControl));
    if (!text) return false;
    const auto keyed = parse_keyed_numbers(*text);
    const auto it = keyed.find("oom_kill");
    return it != keyed.end() && it->second > 0;
  }

 private:
  void discard() {
    if (procs_ >= 0) ::close(std::exchange(procs_, -1));
    if (!dir_.empty()) (void)Sysroot("/").remove_dir(std::exchange(dir_, {}));
  }
  std::string dir_;
  std::string limit_file_;
  bool v2_ = false;
  int procs_ = -1;
};

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
    ProbeOutcome out;
    out.failure = "cannot create the probe's pipe: " + std::string(std::strerror(errno));
    out.elapsed_ms = ms_since(start);
    return out;
  }
  const ProbeCage cage;
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    ProbeOutcome out;
    out.failure = "cannot fork the probe: " + std::string(std::strerror(errno));
    out.elapsed_ms = ms_since(start);
    return out;
  }
  if (pid == 0) {
    ::close(fds[0]);
    // Into the cage before anything is reserved; a probe that cannot be bounded does not run.
    if (cage.procs_fd() >= 0 && ::write(cage.procs_fd(), "0", 1) != 1) ::_exit(3);
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
  } else if (got < sizeof report && WIFSIGNALED(status) && cage.oom_killed()) {
    out.oom_killed = true;
    out.failure = "the probe of a " + format_bytes(request.reservation_bytes) +
                  " reservation was killed by the OOM killer at the bound hostfit set for it, " +
                  cage.bound() + " (under qemu-user the emulator's bookkeeping grows with it)";
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
