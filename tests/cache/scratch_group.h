// Test helpers on this machine's real memory cgroup: a scratch group under the test's own, a
// process in it, and files to read or write.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
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

// Writes `bytes` (a whole number of MiB) of pseudo-random data to path, no two blocks alike, and
// syncs it so that dropping its cache afterwards really empties it.
inline void write_random_file(const std::string& path, uint64_t bytes, uint64_t seed) {
  std::vector<char> block(kMiB);
  std::mt19937_64 rng(seed);
  std::ofstream out(path, std::ios::binary);
  for (uint64_t i = 0; i < bytes / kMiB; ++i) {
    for (size_t j = 0; j < block.size(); j += 8) {
      const uint64_t v = rng();
      std::memcpy(block.data() + j, &v, 8);
    }
    out.write(block.data(), static_cast<std::streamsize>(block.size()));
  }
  out.close();
  ::sync();
}

// Drops path's page cache. Empty when the file really left memory, else why it cannot stand for
// page cache in a test (a file on tmpfs stays resident); a file that cannot be read is a failure.
inline std::string drop_to_cold(const std::string& path, uint64_t bytes) {
  drop_cache(path);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ADD_FAILURE() << "cannot open " << path;
    return "cannot open " + path;
  }
  const auto r = file_residency(fd, 0, bytes);
  ::close(fd);
  if (!r) {
    ADD_FAILURE() << r.error().message;
    return r.error().message;
  }
  if (r->resident_pages > r->total_pages / 100)
    return path + " stays in memory when dropped (tmpfs?): it cannot be page cache";
  return "";
}

}  // namespace hostfit::testing_cache
