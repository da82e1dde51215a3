// Test helpers on this machine's real memory cgroup: a scratch group under the test's own, a
// process in it, and files to read or write.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "hostfit/cache.h"
#include "hostfit/probe.h"

namespace hostfit::testing_cache {

constexpr uint64_t kMiB = uint64_t{1} << 20;

// A scratch memory cgroup under the test's own, removed on destruction (after its process left).
class ScratchGroup {
 public:
  ScratchGroup() {
    const CgroupFacts facts = probe_cgroups(root_, ProbeTarget::self());
    const ControllerPath* memory = facts.find("memory");
    if (memory == nullptr || ::geteuid() != 0) return;
    v2_ = memory->v2;
    dir_ = join_path(memory->dir, "hostfit-cache-test-" + std::to_string(::getpid()));
    if (!root_.make_dir(dir_)) dir_.clear();
  }
  ~ScratchGroup() {
    if (!dir_.empty()) (void)root_.remove_dir(dir_);
  }
  bool ok() const { return !dir_.empty(); }
  bool v2() const { return v2_; }
  const std::string& dir() const { return dir_; }
  const Sysroot& root() const { return root_; }

  // Runs `work` in a forked child that first joins the group; returns its exit code.
  template <class F>
  int run_inside(F work) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      const std::string procs = join_path(dir_, "cgroup.procs");
      if (!root_.write(procs, "0")) ::_exit(90);
      ::_exit(work());
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  MemoryBreakdown breakdown() const {
    auto m = read_breakdown(root_, dir_, v2_);
    EXPECT_TRUE(m) << m.error().message;
    return m ? *m : MemoryBreakdown{};
  }

 private:
  Sysroot root_{"/"};
  std::string dir_;
  bool v2_ = false;
};

// Writes `bytes` to `path` from the calling process; 0 on success.
inline int write_file(const std::string& path, uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return 1;
  std::vector<char> buf(kMiB, 'x');
  for (uint64_t done = 0; done < bytes; done += buf.size()) {
    if (::write(fd, buf.data(), buf.size()) != static_cast<ssize_t>(buf.size())) return 2;
  }
  ::fsync(fd);
  ::close(fd);
  return 0;
}

inline int read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 3;
  std::vector<char> buf(kMiB);
  while (::read(fd, buf.data(), buf.size()) > 0) {
  }
  ::close(fd);
  return 0;
}

inline void drop_cache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

}  // namespace hostfit::testing_cache
