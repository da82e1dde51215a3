// stream_file: sendfile(2) in chunks, leaving the page cache as it found it.
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include "hostfit/cache.h"

namespace hostfit {
namespace {

using Clock = std::chrono::steady_clock;

// Readahead may cache pages past the requested range; the snapshot covers this much more (the
// kernel's largest default readahead window is well below it) so the final drop takes them too.
constexpr uint64_t kReadaheadSlackBytes = uint64_t{8} << 20;
// mincore needs a mapping; map at most this much address space at a time.
constexpr uint64_t kMincoreWindowBytes = uint64_t{1} << 30;
// Pages still referenced by a socket (a loopback peer's receive queue) are not dropped by
// POSIX_FADV_DONTNEED; the final drop retries for this long while the peer reads them.
constexpr auto kFinalDropRetry = std::chrono::milliseconds(100);
constexpr auto kRetryStep = std::chrono::milliseconds(2);
// A page still referenced when it is dropped (a loopback peer's socket buffers point into the page
// cache until they are freed) stays resident; every drop behind the cursor covers this much of
// what was dropped before once more, so such pages go as soon as the peer lets them go.
constexpr uint64_t kRedropWindowBytes = uint64_t{32} << 20;

uint64_t page_bytes() {
  static const uint64_t bytes = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return bytes;
}

// One byte per page of [first_page, first_page + count): bit 0 set when the page is resident.
Result<std::vector<unsigned char>> mincore_pages(int fd, uint64_t first_page, uint64_t count) {
  const uint64_t page = page_bytes();
  std::vector<unsigned char> resident(count, 0);
  const uint64_t window_pages = kMincoreWindowBytes / page;
  for (uint64_t done = 0; done < count;) {
    const uint64_t n = std::min(window_pages, count - done);
    const off_t map_offset = static_cast<off_t>((first_page + done) * page);
    void* map = ::mmap(nullptr, n * page, PROT_READ, MAP_SHARED, fd, map_offset);
    if (map == MAP_FAILED) return fail(Error::from_errno(errno, "mmap", "the file to stream"));
    const int rc = ::mincore(map, n * page, resident.data() + done);
    const int err = errno;
    ::munmap(map, n * page);
    if (rc != 0) return fail(Error::from_errno(err, "mincore", "the file to stream"));
    done += n;
  }
  return resident;
}

// Bytes written to a socket and not yet acknowledged by the peer; 0 for anything else.
uint64_t unacked_bytes(int fd) {
  int queued = 0;
  if (::ioctl(fd, SIOCOUTQ, &queued) != 0 || queued < 0) return 0;
  return static_cast<uint64_t>(queued);
}

bool is_socket(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

// The pages of the streamed range (plus readahead slack) that were not in the cache when the
// stream began: only those are ours to drop.
class DropPlan {
 public:
  DropPlan(int fd, uint64_t first_page, std::vector<unsigned char> resident_at_start)
      : fd_(fd), first_page_(first_page), was_resident_(std::move(resident_at_start)) {}

  uint64_t end_page() const { return first_page_ + was_resident_.size(); }

  // POSIX_FADV_DONTNEED on each run of pages in [from, to) that was not resident at start.
  void drop(uint64_t from_page, uint64_t to_page) const {
    from_page = std::max(from_page, first_page_);
    to_page = std::min(to_page, end_page());
    const uint64_t page = page_bytes();
    uint64_t p = from_page;
    while (p < to_page) {
      if (was_resident(p)) {
        ++p;
        continue;
      }
      const uint64_t run_start = p;
      while (p < to_page && !was_resident(p))
        ++p;
      (void)::posix_fadvise(fd_, static_cast<off_t>(run_start * page),
                            static_cast<off_t>((p - run_start) * page), POSIX_FADV_DONTNEED);
    }
  }

  // Whether any page we should have dropped is still resident (a failed mincore counts as no).
  bool leftovers() const {
    auto now = mincore_pages(fd_, first_page_, was_resident_.size());
    if (!now) return false;
    for (size_t i = 0; i < now->size(); ++i) {
      if (((*now)[i] & 1) && !(was_resident_[i] & 1)) return true;
    }
    return false;
  }

 private:
  bool was_resident(uint64_t page) const { return was_resident_[page - first_page_] & 1; }

  int fd_;
  uint64_t first_page_;
  std::vector<unsigned char> was_resident_;
};

// Waits until out_fd is writable. false on timeout.
Result<bool> wait_writable(int out_fd, int timeout_ms) {
  pollfd p{out_fd, POLLOUT, 0};
  for (;;) {
    const int rc = ::poll(&p, 1, timeout_ms);
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return fail(Error::from_errno(errno, "poll", "the output descriptor"));
  }
}

Error send_error(int err, uint64_t sent) {
  Error e = Error::from_errno(err, "sendfile", "to the output descriptor");
  e.message += " after " + std::to_string(sent) + " bytes";
  if (err == EPIPE || err == ECONNRESET) e.message += " (the peer closed the connection)";
  return e;
}

}  // namespace

Result<Residency> file_residency(int file_fd, uint64_t offset, uint64_t length) {
  struct stat st;
  if (::fstat(file_fd, &st) != 0) return fail(Error::from_errno(errno, "fstat", "the file"));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (offset >= size || length == 0) return Residency{};
  const uint64_t end = length > size - offset ? size : offset + length;
  const uint64_t page = page_bytes();
  const uint64_t first = offset / page;
  const uint64_t count = (end + page - 1) / page - first;
  auto pages = mincore_pages(file_fd, first, count);
  if (!pages) return fail(pages.error());
  Residency r;
  r.total_pages = count;
  for (unsigned char c : *pages)
    r.resident_pages += c & 1;
  return r;
}

Result<uint64_t> stream_file(int out_fd, int file_fd, uint64_t offset, uint64_t length,
                             const StreamOptions& options) {
  struct stat st;
  if (::fstat(file_fd, &st) != 0) {
    return fail(Error::from_errno(errno, "fstat", "the file to stream"));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(ErrorKind::kUsage,
                "stream_file needs a regular file to send (sendfile(2) and "
                "the page cache snapshot work on regular files only)");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (offset >= size || length == 0) return uint64_t{0};
  const uint64_t end = length > size - offset ? size : offset + length;
  const uint64_t chunk = std::clamp<uint64_t>(options.chunk_bytes, page_bytes(), 0x7ffff000);

  std::optional<DropPlan> plan;
  if (options.drop_behind) {
    const uint64_t page = page_bytes();
    const uint64_t first = offset / page;
    const uint64_t last = (std::min(size, end + kReadaheadSlackBytes) + page - 1) / page;
    // Without a snapshot nothing is known to be ours, so nothing is dropped.
    if (auto resident = mincore_pages(file_fd, first, last - first)) {
      plan.emplace(file_fd, first, std::move(*resident));
    }
  }
  const bool socket = is_socket(out_fd);

  uint64_t pos = offset;
  uint64_t dropped_upto_page = offset / page_bytes();
  std::optional<Error> error;
  while (pos < end) {
    off_t file_offset = static_cast<off_t>(pos);
    const ssize_t n = ::sendfile(out_fd, file_fd, &file_offset, std::min(chunk, end - pos));
    if (n > 0) {
      pos += static_cast<uint64_t>(n);
      if (plan) {
        // Bytes the peer has not acknowledged may still be read from these pages.
        const uint64_t done = pos - std::min(pos - offset, socket ? unacked_bytes(out_fd) : 0);
        const uint64_t upto_page = done / page_bytes();
        if (upto_page > dropped_upto_page) {
          const uint64_t redrop_pages = kRedropWindowBytes / page_bytes();
          const uint64_t from =
              dropped_upto_page > redrop_pages ? dropped_upto_page - redrop_pages : 0;
          plan->drop(from, upto_page);
          dropped_upto_page = upto_page;
        }
      }
      continue;
    }
    if (n == 0) break;  // the file shrank under us: end of file comes early
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      auto writable = wait_writable(out_fd, options.timeout_ms);
      if (!writable) {
        error = writable.error();
        break;
      }
      if (!*writable) {
        error = Error{ErrorKind::kIo,
                      "timed out after " + std::to_string(options.timeout_ms) +
                          " ms waiting to send to the output descriptor after " +
                          std::to_string(pos - offset) + " bytes",
                      ETIMEDOUT};
        break;
      }
      continue;
    }
    error = send_error(errno, pos - offset);
    break;
  }

  if (plan) {
    if (socket && !error) {
      const auto deadline =
          Clock::now() + std::chrono::milliseconds(std::max(0, options.timeout_ms));
      while (unacked_bytes(out_fd) > 0 && (options.timeout_ms < 0 || Clock::now() < deadline))
        std::this_thread::sleep_for(kRetryStep);
    }
    plan->drop(0, plan->end_page());
    if (socket && !error) {
      const auto deadline = Clock::now() + kFinalDropRetry;
      while (Clock::now() < deadline && plan->leftovers()) {
        std::this_thread::sleep_for(kRetryStep);
        plan->drop(0, plan->end_page());
      }
    }
  }
  if (error) return fail(*error);
  return pos - offset;
}

}  // namespace hostfit
