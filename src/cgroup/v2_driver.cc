// cgroup v2: one unified tree, controllers delegated down with cgroup.subtree_control.
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>

#include "cgroup_files.h"
#include "driver.h"

namespace hostfit::cgroup_internal {
namespace {

// v2 OOM notification: the kernel raises a file-modified event on memory.events whenever one of
// its counters changes (cgroup_file_notify), which inotify reports as IN_MODIFY.
class V2OomWatch : public OomWatch {
 public:
  explicit V2OomWatch(int inotify_fd) : fd_(inotify_fd) {}
  ~V2OomWatch() override { ::close(fd_); }
  int fd() const override { return fd_; }
  void drain() override {
    alignas(inotify_event) char buf[4096];
    while (::read(fd_, buf, sizeof buf) > 0) {
    }
  }

 private:
  int fd_;
};

class V2Driver : public HierarchyDriver {
 public:
  using HierarchyDriver::HierarchyDriver;

  CgroupMode mode() const override { return CgroupMode::kV2; }

  Result<std::unique_ptr<OomWatch>> watch_oom(const Cgroup& group) const override {
    const CgroupDir* d = group.dir_of("memory");
    if (!d) return fail(ErrorKind::kUnsupported, "no memory controller in the unified tree");
    const std::string events = root_.path(join_path(d->dir, cgfile::kV2MemoryEvents)).string();
    const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return fail(Error::from_errno(errno, "create", "an inotify instance"));
    auto watch = std::make_unique<V2OomWatch>(fd);
    if (::inotify_add_watch(fd, events.c_str(), IN_MODIFY) < 0) {
      return fail(Error::from_errno(errno, "watch", events));
    }
    return std::unique_ptr<OomWatch>(std::move(watch));
  }

 protected:
  Status prepare_hierarchy(const Hierarchy& h, const std::vector<std::string>&) override {
    return enable_v2_controllers(h);
  }
  Status init_group_dir(const Hierarchy&, const CgroupDir&) override { return {}; }
};

}  // namespace

std::unique_ptr<CgroupDriver> make_v2_driver(Sysroot root, std::vector<Hierarchy> hierarchies,
                                             pid_t self_pid) {
  return std::make_unique<V2Driver>(std::move(root), std::move(hierarchies), self_pid);
}

}  // namespace hostfit::cgroup_internal
