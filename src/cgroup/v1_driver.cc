// cgroup v1 (and hybrid: v1 controllers, the group also tracked in the unified tree).
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "cgroup_files.h"
#include "driver.h"

namespace hostfit::cgroup_internal {
namespace {

bool has(const Hierarchy& h, std::string_view controller) {
  return std::find(h.controllers.begin(), h.controllers.end(), controller) != h.controllers.end();
}

// v1 memory OOM notification: an eventfd registered through cgroup.event_control as
// "<eventfd> <fd of memory.oom_control>". The kernel signals it when a task of the group enters
// OOM (and when the group is removed).
class V1OomWatch : public OomWatch {
 public:
  V1OomWatch(int event_fd, int control_fd) : event_fd_(event_fd), control_fd_(control_fd) {}
  ~V1OomWatch() override {
    ::close(event_fd_);
    ::close(control_fd_);
  }
  int fd() const override { return event_fd_; }
  void drain() override {
    uint64_t count;
    while (::read(event_fd_, &count, sizeof count) == sizeof count) {
    }
  }

 private:
  int event_fd_;
  int control_fd_;
};

class V1Driver : public HierarchyDriver {
 public:
  using HierarchyDriver::HierarchyDriver;

  CgroupMode mode() const override {
    const bool unified = std::any_of(hierarchies_.begin(), hierarchies_.end(),
                                     [](const Hierarchy& h) { return h.v2; });
    return unified ? CgroupMode::kHybrid : CgroupMode::kV1;
  }

  Result<std::unique_ptr<OomWatch>> watch_oom(const Cgroup& group) const override {
    const CgroupDir* d = group.dir_of("memory");
    if (!d) return fail(ErrorKind::kUnsupported, "no memory cgroup controller is mounted");
    const std::string control = root_.path(join_path(d->dir, cgfile::kV1OomControl)).string();
    const int control_fd = ::open(control.c_str(), O_RDONLY | O_CLOEXEC);
    if (control_fd < 0) return fail(Error::from_errno(errno, "open", control));
    const int event_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (event_fd < 0) {
      const int err = errno;
      ::close(control_fd);
      return fail(Error::from_errno(err, "create", "an eventfd"));
    }
    auto watch = std::make_unique<V1OomWatch>(event_fd, control_fd);
    const std::string command = std::to_string(event_fd) + " " + std::to_string(control_fd);
    if (auto st = root_.write(join_path(d->dir, cgfile::kV1EventControl), command); !st) {
      return fail(st.error().wrap("cannot register for OOM notifications"));
    }
    return std::unique_ptr<OomWatch>(std::move(watch));
  }

 protected:
  Status prepare_hierarchy(const Hierarchy& h, const std::vector<std::string>& made) override {
    if (h.v2) return enable_v2_controllers(h);
    if (!has(h, "cpuset")) return {};
    // A new v1 cpuset has no CPUs and no memory nodes, and a process cannot join it until it has.
    for (const auto& cgroup : made) {
      if (auto st = copy_cpuset_from_parent(h, cgroup); !st) return st;
    }
    return copy_cpuset_from_parent(h, h.parent);
  }

  Status init_group_dir(const Hierarchy& h, const CgroupDir& dir) override {
    if (h.v2 || !has(h, "cpuset")) return {};
    return copy_cpuset_from_parent(h, dir.cgroup);
  }
};

}  // namespace

std::unique_ptr<CgroupDriver> make_v1_driver(Sysroot root, std::vector<Hierarchy> hierarchies,
                                             pid_t self_pid) {
  return std::make_unique<V1Driver>(std::move(root), std::move(hierarchies), self_pid);
}

}  // namespace hostfit::cgroup_internal
