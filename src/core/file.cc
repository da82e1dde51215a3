// Reading files that a person or another program could have replaced with something that is not
// a file: a FIFO (open blocks until a writer comes), a device (/dev/zero never ends), a symlink.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "hostfit/core.h"

namespace hostfit {
namespace {

const char* kind_of(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Result<std::string> read_regular_file(const std::filesystem::path& path, const ReadLimits& limits) {
  const std::string real = path.string();
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  const int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | (limits.follow_symlinks ? 0 : O_NOFOLLOW);
  const Fd fd(::open(real.c_str(), flags));
  if (fd.get() < 0) {
    if (errno == ELOOP && !limits.follow_symlinks) {
      return fail(ErrorKind::kIo, "cannot read " + real + ": it is a symbolic link", ELOOP);
    }
    return fail(Error::from_errno(errno, "read", real));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return fail(Error::from_errno(errno, "stat", real));
  if (S_ISDIR(st.st_mode)) return fail(Error::from_errno(EISDIR, "read", real));
  if (!S_ISREG(st.st_mode)) {
    return fail(ErrorKind::kIo,
                "cannot read " + real + ": it is " + kind_of(st.st_mode) + ", not a regular file");
  }
  // Back to blocking reads: kernel files (procfs, sysfs, cgroupfs) are read as they expect.
  (void)::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  std::string out;
  char buf[16384];
  // One byte past the cap tells "exactly max_bytes" from "longer".
  const size_t want = limits.truncate ? limits.max_bytes : limits.max_bytes + 1;
  while (out.size() < want) {
    const ssize_t n = ::read(fd.get(), buf, std::min(sizeof buf, want - out.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Error::from_errno(errno, "read", real));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  if (out.size() > limits.max_bytes) {
    return fail(ErrorKind::kResource,
                "cannot read " + real + ": it is larger than " + format_bytes(limits.max_bytes));
  }
  return out;
}

}  // namespace hostfit
