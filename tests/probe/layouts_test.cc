// The probe on the cgroup layouts that runtimes, systemd and older kernels leave, each built by the
// fixture generator from the lines those runtimes write: effective CPUs, the binding constraint,
// the memory limit and the directory of each controller.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <sstream>

#include "files.h"
#include "hostfit/probe.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using fixtures::CgroupLayout;
using fixtures::CgroupLevel;
using fixtures::CgroupMountCopy;
using fixtures::Shape;
using fixtures::slurp;

constexpr std::string_view kId = "8f4d5c9e2b7a1f3e6d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e";
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr std::string_view kUnknown = "unknown";  // a controller whose directory is not visible

struct Layout {
  std::string name;
  std::function<void(Shape&)> shape;
  std::vector<std::pair<std::string, std::string>> files{};  // replaced after generation
  std::string mountinfo_has{};       // an exact piece of the line the runtime writes
  double effective = 8;              // of 8 online CPUs
  std::string binding{};             // the whole binding text
  std::optional<uint64_t> memory{};  // nullopt: unlimited
  bool memory_unknown = false;
  std::map<std::string, std::string> dirs{};  // controller -> directory, or kUnknown
  std::string reason{};                       // a piece of the memory limit's unknown reason
};

void PrintTo(const Layout& layout, std::ostream* os) {
  *os << layout.name;
}

std::string id() {
  return std::string(kId);
}

CgroupLevel level(std::string name, std::optional<std::string> cpu = {},
                  std::optional<std::string> memory = {}) {
  return CgroupLevel{
      .name = std::move(name), .cpu_max = std::move(cpu), .memory_max = std::move(memory)};
}

// Docker on cgroup v1 (host cgroup namespace, the default there): each hierarchy is a read-only
// bind mount of the container's cgroup.
void docker_v1(Shape& s, std::vector<CgroupLevel> chain) {
  s.cgroup = CgroupLayout::kV1;
  s.cgroup_chain = std::move(chain);
  s.cgroup_view.mount_level = static_cast<int>(s.cgroup_chain.size());
  s.cgroup_view.mount_options = "ro,nosuid,nodev,noexec,relatime";
  s.cgroup_view.propagation = "master";
}

// Docker, containerd and Podman on cgroup v2: a private cgroup namespace rooted at the container's
// cgroup and a fresh cgroup2 mount inside it (source "cgroup").
void private_ns_v2(Shape& s, std::vector<CgroupLevel> chain, int extra_below = 0) {
  s.cgroup = CgroupLayout::kV2;
  s.cgroup_chain = std::move(chain);
  const int root = static_cast<int>(s.cgroup_chain.size()) - extra_below;
  s.cgroup_view.mount_level = root;
  s.cgroup_view.namespace_level = root;
  s.cgroup_view.source = "cgroup";
  s.cgroup_view.mount_options = "ro,nosuid,nodev,noexec,relatime";
  s.cgroup_view.propagation = "";
}

std::map<std::string, std::string> all_dirs(const std::string& dir) {
  return {{"cpu", dir}, {"cpuset", dir}, {"memory", dir}, {"pids", dir}};
}

std::map<std::string, std::string> v1_dirs(const std::string& base, const std::string& below) {
  return {{"cpu", base + "/cpu,cpuacct" + below},
          {"cpuset", base + "/cpuset" + below},
          {"memory", base + "/memory" + below},
          {"pids", base + "/pids" + below}};
}

const std::string kDockerScope = "/system.slice/docker-" + id() + ".scope";

std::vector<Layout> layouts() {
  std::vector<Layout> out;
  // --- hosts
  out.push_back({.name = "HostV2SystemdSession",
                 .shape =
                     [](Shape& s) {
                       s.cgroup_chain = {level("user.slice", {}, "4294967296"),
                                         level("user-1000.slice"), level("session-2.scope")};
                     },
                 .mountinfo_has = " / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:",
                 .binding = "all 8 CPUs online; no affinity, cpuset or quota limit",
                 .memory = 4096 * kMiB,
                 .dirs = all_dirs("/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope")});
  out.push_back(
      {.name = "HostV2ServiceQuota",
       .shape =
           [](Shape& s) {
             s.cgroup_chain = {level("system.slice"), level("nginx.service", "150000 100000")};
           },
       .effective = 1.5,
       .binding = "limited by cpu.max of /system.slice/nginx.service: 1.5 CPUs",
       .dirs = all_dirs("/sys/fs/cgroup/system.slice/nginx.service")});
  out.push_back(
      {.name = "HostV1Debian",
       .shape =
           [](Shape& s) {
             s.cgroup = CgroupLayout::kV1;
             s.cgroup_chain = {level("system.slice", {}, "1073741824"),
                               level("app.service", "200000 100000")};
           },
       .mountinfo_has = " / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:",
       .effective = 2,
       .binding = "limited by cpu.cfs_quota_us of /system.slice/app.service: 2.0 CPUs",
       .memory = 1024 * kMiB,
       .dirs = v1_dirs("/sys/fs/cgroup", "/system.slice/app.service")});
  out.push_back({.name = "HostHybrid",
                 .shape =
                     [](Shape& s) {
                       s.cgroup = CgroupLayout::kHybrid;
                       s.cgroup_chain = {level("system.slice", "300000 100000", "2147483648")};
                     },
                 .effective = 3,
                 .binding = "limited by cpu.cfs_quota_us of /system.slice: 3.0 CPUs",
                 .memory = 2048 * kMiB,
                 .dirs = v1_dirs("/sys/fs/cgroup", "/system.slice")});
  // --- Docker, containerd, Kubernetes and systemd containers on cgroup v2
  out.push_back({.name = "DockerV2PrivateNamespace",
                 .shape =
                     [](Shape& s) {
                       private_ns_v2(
                           s, {level("system.slice"),
                               level("docker-" + id() + ".scope", "200000 100000", "536870912")});
                     },
                 .mountinfo_has = " / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 "
                                  "cgroup rw,nsdelegate\n",
                 .effective = 2,
                 .binding = "limited by cpu.max of /: 2.0 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = all_dirs("/sys/fs/cgroup")});
  out.push_back(
      {.name = "DockerV2CgroupfsDriver",
       .shape =
           [](Shape& s) {
             private_ns_v2(s, {level("docker"), level(id(), "50000 100000", "268435456")});
           },
       .effective = 0.5,
       .binding = "limited by cpu.max of /: 0.5 CPUs",
       .memory = 256 * kMiB,
       .dirs = all_dirs("/sys/fs/cgroup")});
  out.push_back(
      {.name = "ContainerdKubernetesV2",
       .shape =
           [](Shape& s) {
             private_ns_v2(
                 s, {level("kubepods.slice"), level("kubepods-burstable.slice"),
                     level("kubepods-burstable-pod1a2b.slice", "400000 100000", "2147483648"),
                     level("cri-containerd-" + id() + ".scope", "100000 100000", "268435456")});
           },
       .effective = 1,
       .binding = "limited by cpu.max of /: 1.0 CPUs",
       .memory = 256 * kMiB,
       .dirs = all_dirs("/sys/fs/cgroup")});
  // The pod's limits sit above the namespace root: not mounted, so not visible (as for Go).
  out.push_back({.name = "ContainerdKubernetesV2PodLimitAboveTheRoot",
                 .shape =
                     [](Shape& s) {
                       private_ns_v2(
                           s, {level("kubepods.slice"),
                               level("kubepods-pod1a2b.slice", "400000 100000", "2147483648"),
                               level("cri-containerd-" + id() + ".scope")});
                     },
                 .binding = "all 8 CPUs online; no affinity, cpuset or quota limit",
                 .dirs = all_dirs("/sys/fs/cgroup")});
  out.push_back({.name = "NspawnV2ProcessBelowTheRoot",
                 .shape =
                     [](Shape& s) {
                       private_ns_v2(s,
                                     {level("machine.slice"),
                                      level("machine-c1.scope", "300000 100000", "1073741824"),
                                      level("init.scope", "max 100000")},
                                     1);
                     },
                 .effective = 3,
                 .binding = "limited by cpu.max of /: 3.0 CPUs",
                 .memory = 1024 * kMiB,
                 .dirs = all_dirs("/sys/fs/cgroup/init.scope")});
  // --- Docker and Kubernetes on cgroup v1: bind mounts of the container's cgroup
  out.push_back({.name = "DockerV1BindMount",
                 .shape =
                     [](Shape& s) {
                       docker_v1(s, {level("docker"), level(id(), "150000 100000", "536870912")});
                     },
                 .mountinfo_has = " /docker/" + id() +
                                  " /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:",
                 .effective = 1.5,
                 .binding = "limited by cpu.cfs_quota_us of /docker/" + id() + ": 1.5 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = v1_dirs("/sys/fs/cgroup", "")});
  out.push_back({.name = "DockerV1SystemdDriver",
                 .shape =
                     [](Shape& s) {
                       docker_v1(s, {level("system.slice"), level("docker-" + id() + ".scope",
                                                                  "250000 100000", "1073741824")});
                     },
                 .effective = 2.5,
                 .binding = "limited by cpu.cfs_quota_us of " + kDockerScope + ": 2.5 CPUs",
                 .memory = 1024 * kMiB,
                 .dirs = v1_dirs("/sys/fs/cgroup", "")});
  out.push_back({.name = "KubernetesV1Docker",
                 .shape =
                     [](Shape& s) {
                       docker_v1(s, {level("kubepods"), level("burstable"), level("pod1a2b"),
                                     level(id(), "100000 100000", "134217728")});
                     },
                 .effective = 1,
                 .binding = "limited by cpu.cfs_quota_us of /kubepods/burstable/pod1a2b/" + id() +
                            ": 1.0 CPUs",
                 .memory = 128 * kMiB,
                 .dirs = v1_dirs("/sys/fs/cgroup", "")});
  out.push_back({.name = "DockerV1PrivateNamespace",
                 .shape =
                     [](Shape& s) {
                       docker_v1(s, {level("docker"), level(id(), "150000 100000", "536870912")});
                       s.cgroup_view.namespace_level = 2;
                     },
                 .effective = 1.5,
                 .binding = "limited by cpu.cfs_quota_us of /: 1.5 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = v1_dirs("/sys/fs/cgroup", "")});
  out.push_back({.name = "DockerHybridBindMount",
                 .shape =
                     [](Shape& s) {
                       docker_v1(s, {level("docker"), level(id(), "200000 100000", "536870912")});
                       s.cgroup = CgroupLayout::kHybrid;
                     },
                 .effective = 2,
                 .binding = "limited by cpu.cfs_quota_us of /docker/" + id() + ": 2.0 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = v1_dirs("/sys/fs/cgroup", "")});
  // --- cgroups outside what is mounted: unknown with the reason, never another directory
  out.push_back({.name = "V2BindMountOfAChild",
                 .shape =
                     [](Shape& s) {
                       s.cgroup_chain = {level("a", "100000 100000", "268435456"),
                                         level("b", "50000 100000", "134217728")};
                       s.cgroup_view.mount_level = 2;
                       s.cgroup_view.process_level = 1;
                     },
                 .memory_unknown = true,
                 .dirs = {{"cpu", std::string(kUnknown)}, {"memory", std::string(kUnknown)}},
                 .reason = "cgroup /a is outside /a/b"});
  out.push_back({.name = "V1ProcessAboveTheBindMount",
                 .shape =
                     [](Shape& s) {
                       docker_v1(s, {level("docker"), level(id(), "150000 100000", "536870912")});
                       s.cgroup_view.process_level = 1;
                     },
                 .memory_unknown = true,
                 .dirs = {{"cpu", std::string(kUnknown)}, {"memory", std::string(kUnknown)}},
                 .reason = "cgroup /docker is outside /docker/" + id()});
  out.push_back({.name = "NamespacePathClimbsOutOfTheMount",
                 .shape =
                     [](Shape& s) {
                       private_ns_v2(
                           s, {level("system.slice"),
                               level("docker-" + id() + ".scope", "200000 100000", "536870912")});
                     },
                 .files = {{"/proc/self/cgroup", "0::/../../init.scope\n"}},
                 .memory_unknown = true,
                 .dirs = {{"cpu", std::string(kUnknown)}, {"memory", std::string(kUnknown)}},
                 .reason = "cgroup /../../init.scope climbs above /"});
  // --- unshare --cgroup without a new mount: mountinfo's root climbs, the process is at "/"
  out.push_back({.name = "UnshareV2NamesHiddenByTheNamespace",
                 .shape =
                     [](Shape& s) {
                       s.cgroup_chain = {level("user.slice"), level("user-0.slice"),
                                         level("session-1.scope", "150000 100000", "268435456")};
                       s.cgroup_view.namespace_level = 3;
                     },
                 .mountinfo_has = " /../../.. /sys/fs/cgroup rw,",
                 .effective = 1.5,
                 .binding = "limited by cpu.max of /: 1.5 CPUs",
                 .memory = 256 * kMiB,
                 .dirs = all_dirs("/sys/fs/cgroup/user.slice/user-0.slice/session-1.scope")});
  out.push_back({.name = "UnshareV1NamesHiddenByTheNamespace",
                 .shape =
                     [](Shape& s) {
                       s.cgroup = CgroupLayout::kV1;
                       s.cgroup_chain = {level("grp", "150000 100000", "268435456")};
                       s.cgroup_view.namespace_level = 1;
                     },
                 .mountinfo_has = " /.. /sys/fs/cgroup/cpu,cpuacct rw,",
                 .effective = 1.5,
                 .binding = "limited by cpu.cfs_quota_us of /: 1.5 CPUs",
                 .memory = 256 * kMiB,
                 .dirs = v1_dirs("/sys/fs/cgroup", "/grp")});
  out.push_back({.name = "UnshareProcessBelowTheNamespaceRoot",
                 .shape =
                     [](Shape& s) {
                       s.cgroup_chain = {level("ns", "300000 100000", "1073741824"),
                                         level("worker", "100000 100000")};
                       s.cgroup_view.namespace_level = 1;
                     },
                 .effective = 1,
                 .binding = "limited by cpu.max of /worker: 1.0 CPUs",
                 .memory = 1024 * kMiB,
                 .dirs = all_dirs("/sys/fs/cgroup/ns/worker")});
  out.push_back({.name = "UnshareNoCgroupListsThePid",
                 .shape =
                     [](Shape& s) {
                       s.cgroup_chain = {level("grp", "150000 100000", "268435456")};
                       s.cgroup_view.namespace_level = 1;
                     },
                 .files = {{"/sys/fs/cgroup/grp/cgroup.procs", "1\n2\n"}},
                 .memory_unknown = true,
                 .dirs = {{"memory", std::string(kUnknown)}},
                 .reason = "no cgroup there lists pid 4242"});
  // --- the same hierarchy mounted twice
  out.push_back({.name = "DuplicateMountsPreferSysFsCgroup",
                 .shape =
                     [](Shape& s) {
                       s.cgroup_chain = {level("app", "200000 100000", "536870912")};
                       s.cgroup_view.copies = {
                           CgroupMountCopy{.base = "/host/cgroup", .listed_first = true}};
                     },
                 .effective = 2,
                 .binding = "limited by cpu.max of /app: 2.0 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = all_dirs("/sys/fs/cgroup/app")});
  out.push_back({.name = "DuplicateMountsFirstListedDoesNotShowTheProcess",
                 .shape =
                     [](Shape& s) {
                       s.cgroup = CgroupLayout::kV1;
                       s.cgroup_chain = {level("a", "150000 100000", "536870912"), level("b")};
                       s.cgroup_view.process_level = 1;
                       s.cgroup_view.copies = {
                           CgroupMountCopy{.base = "/run/other", .level = 2, .listed_first = true}};
                     },
                 .effective = 1.5,
                 .binding = "limited by cpu.cfs_quota_us of /a: 1.5 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = v1_dirs("/sys/fs/cgroup", "/a")});
  out.push_back({.name = "DuplicateMountsOnlyTheOtherShowsTheProcess",
                 .shape =
                     [](Shape& s) {
                       s.cgroup = CgroupLayout::kV1;
                       s.cgroup_chain = {level("a", "150000 100000", "536870912"), level("b")};
                       s.cgroup_view.mount_level = 2;
                       s.cgroup_view.process_level = 1;
                       s.cgroup_view.copies = {CgroupMountCopy{.base = "/host/cgroup"}};
                     },
                 .effective = 1.5,
                 .binding = "limited by cpu.cfs_quota_us of /a: 1.5 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = v1_dirs("/host/cgroup", "/a")});
  // --- odd mountinfo: escapes, (deleted), empty source, /proc/mounts only
  out.push_back({.name = "EscapedSpaceAndBackslashInTheMountPoint",
                 .shape =
                     [](Shape& s) {
                       s.cgroup_chain = {level("app", "200000 100000", "536870912")};
                       s.cgroup_view.mount_base = "/run/cgroup root\\x";
                     },
                 .mountinfo_has = " / /run/cgroup\\040root\\134x rw,",
                 .effective = 2,
                 .binding = "limited by cpu.max of /app: 2.0 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = all_dirs("/run/cgroup root\\x/app")});
  out.push_back({.name = "EscapedTabAndNewlineInV1MountPoints",
                 .shape =
                     [](Shape& s) {
                       s.cgroup = CgroupLayout::kV1;
                       s.cgroup_chain = {level("app", "200000 100000", "536870912")};
                       s.cgroup_view.mount_base = "/run/cg\tnew\nline";
                     },
                 .mountinfo_has = " / /run/cg\\011new\\012line/memory rw,",
                 .effective = 2,
                 .binding = "limited by cpu.cfs_quota_us of /app: 2.0 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = v1_dirs("/run/cg\tnew\nline", "/app")});
  out.push_back({.name = "NonUtf8MountPoint",
                 .shape =
                     [](Shape& s) {
                       s.cgroup_chain = {level("app", "200000 100000", "536870912")};
                       s.cgroup_view.mount_base = "/sys/fs/cgroup\xff";
                     },
                 .effective = 2,
                 .binding = "limited by cpu.max of /app: 2.0 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = all_dirs("/sys/fs/cgroup\xff/app")});
  out.push_back({.name = "DeletedV2MountIsSkipped",
                 .shape =
                     [](Shape& s) {
                       s.cgroup_chain = {level("app", "200000 100000", "536870912")};
                       s.cgroup_view.copies = {CgroupMountCopy{
                           .base = "/sys/fs/cgroup", .listed_first = true, .deleted = true}};
                     },
                 .mountinfo_has = " / /sys/fs/cgroup\\040(deleted) rw,",
                 .effective = 2,
                 .binding = "limited by cpu.max of /app: 2.0 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = all_dirs("/sys/fs/cgroup/app")});
  out.push_back({.name = "DeletedV1MountsAreSkipped",
                 .shape =
                     [](Shape& s) {
                       s.cgroup = CgroupLayout::kV1;
                       s.cgroup_chain = {level("app", "200000 100000", "536870912")};
                       s.cgroup_view.copies = {CgroupMountCopy{
                           .base = "/sys/fs/cgroup", .listed_first = true, .deleted = true}};
                     },
                 .mountinfo_has = " / /sys/fs/cgroup/memory\\040(deleted) rw,",
                 .effective = 2,
                 .binding = "limited by cpu.cfs_quota_us of /app: 2.0 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = v1_dirs("/sys/fs/cgroup", "/app")});
  out.push_back({.name = "EmptySourceV1BeforeLinux51",
                 .shape =
                     [](Shape& s) {
                       s.cgroup = CgroupLayout::kV1;
                       s.cgroup_chain = {level("app", "200000 100000", "536870912")};
                       s.cgroup_view.empty_source = true;
                     },
                 .mountinfo_has = " - cgroup  rw,memory\n",
                 .effective = 2,
                 .binding = "limited by cpu.cfs_quota_us of /app: 2.0 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = v1_dirs("/sys/fs/cgroup", "/app")});
  out.push_back({.name = "EmptySourceV2",
                 .shape =
                     [](Shape& s) {
                       s.cgroup_chain = {level("app", "200000 100000", "536870912")};
                       s.cgroup_view.empty_source = true;
                     },
                 .mountinfo_has = " - cgroup2  rw,nsdelegate\n",
                 .effective = 2,
                 .binding = "limited by cpu.max of /app: 2.0 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = all_dirs("/sys/fs/cgroup/app")});
  out.push_back({.name = "ProcMountsOnlyV1",
                 .shape =
                     [](Shape& s) {
                       s.cgroup = CgroupLayout::kV1;
                       s.cgroup_chain = {level("app", "200000 100000", "536870912")};
                       s.cgroup_view.mountinfo = false;
                     },
                 .effective = 2,
                 .binding = "limited by cpu.cfs_quota_us of /app: 2.0 CPUs",
                 .memory = 512 * kMiB,
                 .dirs = v1_dirs("/sys/fs/cgroup", "/app")});
  // --- legacy cpusets: /dev/cpuset with files "cpus" and "mems"
  const auto cpuset_job = [](Shape& s) {
    s.cgroup = CgroupLayout::kCpusetFs;
    s.cgroup_chain = {CgroupLevel{.name = "job", .cpuset_cpus = "2-3"}};
  };
  out.push_back({.name = "CpusetFileSystem",
                 .shape = cpuset_job,
                 .mountinfo_has = " / /dev/cpuset rw,nosuid,nodev,noexec,relatime shared:",
                 .effective = 2,
                 .binding = "limited by the cpuset of /dev/cpuset/job/cpus (2-3): 2 CPUs",
                 .dirs = {{"cpuset", "/dev/cpuset/job"}}});
  out.push_back({.name = "CpusetNoprefixCgroupMount",
                 .shape =
                     [&](Shape& s) {
                       cpuset_job(s);
                       s.cgroup_view.cpuset_fstype = "cgroup";
                     },
                 .mountinfo_has = " - cgroup cgroup rw,cpuset,noprefix\n",
                 .effective = 2,
                 .binding = "limited by the cpuset of /dev/cpuset/job/cpus (2-3): 2 CPUs",
                 .dirs = {{"cpuset", "/dev/cpuset/job"}}});
  out.push_back({.name = "CpusetOldKernelProcMountsAndProcSelfCpuset",
                 .shape =
                     [&](Shape& s) {
                       cpuset_job(s);
                       s.cgroup_view.mountinfo = false;
                       s.cgroup_view.proc_cgroup = false;
                     },
                 .effective = 2,
                 .binding = "limited by the cpuset of /dev/cpuset/job/cpus (2-3): 2 CPUs",
                 .dirs = {{"cpuset", "/dev/cpuset/job"}}});
  // --- limits other than CPU and memory at the mount root
  out.push_back(
      {.name = "CpusetAtTheMountRootInANamespace",
       .shape =
           [](Shape& s) {
             private_ns_v2(s, {level("docker"), CgroupLevel{.name = id(), .cpuset_cpus = "0-1"}});
           },
       .effective = 2,
       .binding = "limited by the cpuset of /sys/fs/cgroup/cpuset.cpus.effective (0-1): "
                  "2 CPUs",
       .dirs = all_dirs("/sys/fs/cgroup")});
  // --- input the kernel never writes
  out.push_back({.name = "CgroupPathWithoutSlash",
                 .shape = [](Shape& s) { s.cgroup_chain = {level("app", "200000 100000")}; },
                 .files = {{"/proc/self/cgroup", "0::a\n"}},
                 .memory_unknown = true,
                 .dirs = {{"cpu", std::string(kUnknown)}, {"memory", std::string(kUnknown)}},
                 .reason = "'a' is not a cgroup path"});
  out.push_back({.name = "TruncatedMountinfoLine",
                 .shape = [](Shape& s) { s.cgroup_chain = {level("app", "200000 100000")}; },
                 .files = {{"/proc/self/mountinfo",
                            "21 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
                            "30 22 0:25 / /sys/fs/cgroup rw,nosuid - cgr"}},
                 .binding = "all 8 CPUs online; no affinity, cpuset or quota limit",
                 .dirs = {}});
  return out;
}

class LayoutTest : public ::testing::TestWithParam<Layout> {};

TEST_P(LayoutTest, EffectiveCpusBindingMemoryLimitAndDirectories) {
  const Layout& layout = GetParam();
  Shape s;
  s.cores_per_node = 8;
  layout.shape(s);
  fixtures::TempDir dir;
  auto written = fixtures::write_sysroot(dir.path(), s);
  ASSERT_TRUE(written) << written.error().message;
  for (const auto& [path, text] : layout.files)
    std::ofstream(dir.path() / path.substr(1), std::ios::trunc) << text;
  if (!layout.mountinfo_has.empty()) {
    EXPECT_NE(slurp(dir.path() / "proc/self/mountinfo").find(layout.mountinfo_has),
              std::string::npos)
        << layout.mountinfo_has;
  }
  const HostFacts f = probe_host(Sysroot(dir.path()), ProbeTarget::self());
  EXPECT_DOUBLE_EQ(f.cpu.effective, layout.effective) << f.cpu.binding;
  if (!layout.binding.empty()) {
    EXPECT_EQ(f.cpu.binding, layout.binding);
  }
  if (layout.memory_unknown) {
    EXPECT_FALSE(f.cgroup.memory_limit.known());
    EXPECT_NE(f.cgroup.memory_limit.unknown_reason.find(layout.reason), std::string::npos)
        << f.cgroup.memory_limit.unknown_reason;
  } else {
    ASSERT_TRUE(f.cgroup.memory_limit.known()) << f.cgroup.memory_limit.unknown_reason;
    EXPECT_EQ(f.cgroup.memory_limit->value, layout.memory);
  }
  for (const auto& [controller, expected] : layout.dirs) {
    const ControllerPath* c = f.cgroup.find(controller);
    if (expected == kUnknown) {
      EXPECT_EQ(c, nullptr) << controller << " at " << c->dir;
      EXPECT_TRUE(f.cgroup.unknown_controllers.contains(controller)) << controller;
    } else {
      ASSERT_NE(c, nullptr) << controller << ": "
                            << (f.cgroup.unknown_controllers.contains(controller)
                                    ? f.cgroup.unknown_controllers.at(controller)
                                    : "not mounted");
      EXPECT_EQ(c->dir, expected) << controller;
      EXPECT_TRUE(std::filesystem::is_directory(dir.path() / c->dir.substr(1))) << c->dir;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Runtimes, LayoutTest, ::testing::ValuesIn(layouts()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace hostfit
