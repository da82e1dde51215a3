// Names of the cgroupfs files the drivers read and write, in one place (oomd's Fs:: constants).
#pragma once

#include <array>
#include <string_view>

namespace hostfit::cgfile {

// Both versions
inline constexpr std::string_view kProcs = "cgroup.procs";
inline constexpr std::string_view kPidsMax = "pids.max";
inline constexpr std::string_view kPidsCurrent = "pids.current";
inline constexpr std::string_view kMemoryStat = "memory.stat";
inline constexpr std::string_view kCpusetCpus = "cpuset.cpus";
inline constexpr std::string_view kCpusetMems = "cpuset.mems";

// Files of every v1 cgroup directory whose names have no "<controller>." prefix
inline constexpr std::string_view kV1Tasks = "tasks";
inline constexpr std::string_view kV1NotifyOnRelease = "notify_on_release";
inline constexpr std::string_view kV1ReleaseAgent = "release_agent";
// The prefixes of "<prefix>.<file>" control files, v1 and v2 ("cgroup" for the core files).
inline constexpr std::array<std::string_view, 16> kControlFilePrefixes = {
    "blkio", "cgroup", "cpu",  "cpuacct", "cpuset",   "devices",    "freezer", "hugetlb",
    "io",    "memory", "misc", "net_cls", "net_prio", "perf_event", "pids",    "rdma"};

// cgroup v1
inline constexpr std::string_view kV1CfsQuota = "cpu.cfs_quota_us";
inline constexpr std::string_view kV1CfsPeriod = "cpu.cfs_period_us";
inline constexpr std::string_view kV1CpuacctUsage = "cpuacct.usage";  // nanoseconds
inline constexpr std::string_view kV1MemoryLimit = "memory.limit_in_bytes";
inline constexpr std::string_view kV1MemswLimit = "memory.memsw.limit_in_bytes";
inline constexpr std::string_view kV1MemoryUsage = "memory.usage_in_bytes";
inline constexpr std::string_view kV1MemoryMaxUsage = "memory.max_usage_in_bytes";
inline constexpr std::string_view kV1MemoryFailcnt = "memory.failcnt";
inline constexpr std::string_view kV1OomControl = "memory.oom_control";
inline constexpr std::string_view kV1EventControl = "cgroup.event_control";
inline constexpr std::string_view kV1CpuExclusive = "cpuset.cpu_exclusive";
inline constexpr std::string_view kV1MemExclusive = "cpuset.mem_exclusive";

// memory.oom_control keys
inline constexpr std::string_view kOomKillDisable = "oom_kill_disable";
inline constexpr std::string_view kUnderOom = "under_oom";
inline constexpr std::string_view kOomKill = "oom_kill";  // Linux 4.13+

// cgroup v2
inline constexpr std::string_view kV2Controllers = "cgroup.controllers";
inline constexpr std::string_view kV2SubtreeControl = "cgroup.subtree_control";
inline constexpr std::string_view kV2CpuMax = "cpu.max";
inline constexpr std::string_view kV2CpuStat = "cpu.stat";
inline constexpr std::string_view kV2MemoryMax = "memory.max";
inline constexpr std::string_view kV2MemoryHigh = "memory.high";
inline constexpr std::string_view kV2MemorySwapMax = "memory.swap.max";
inline constexpr std::string_view kV2MemoryCurrent = "memory.current";
inline constexpr std::string_view kV2MemoryPeak = "memory.peak";  // Linux 5.19+
inline constexpr std::string_view kV2MemoryEvents = "memory.events";

// memory.events / cpu.stat keys
inline constexpr std::string_view kEventOom = "oom";
inline constexpr std::string_view kEventMax = "max";
inline constexpr std::string_view kCpuUsageUsec = "usage_usec";

}  // namespace hostfit::cgfile
