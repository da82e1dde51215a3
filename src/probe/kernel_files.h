// Names of the kernel files the probe reads, in one place (as oomd keeps its Fs:: constants).
#pragma once

#include <string_view>

namespace hostfit::kfile {

inline constexpr std::string_view kCpuOnline = "/sys/devices/system/cpu/online";
inline constexpr std::string_view kCpuPossible = "/sys/devices/system/cpu/possible";
inline constexpr std::string_view kCpuOffline = "/sys/devices/system/cpu/offline";
inline constexpr std::string_view kCpuIsolated = "/sys/devices/system/cpu/isolated";
inline constexpr std::string_view kCpuInfo = "/proc/cpuinfo";
inline constexpr std::string_view kMemInfo = "/proc/meminfo";
inline constexpr std::string_view kMounts = "/proc/mounts";
inline constexpr std::string_view kMaxMapCount = "/proc/sys/vm/max_map_count";
inline constexpr std::string_view kOvercommitMemory = "/proc/sys/vm/overcommit_memory";
inline constexpr std::string_view kOvercommitRatio = "/proc/sys/vm/overcommit_ratio";
inline constexpr std::string_view kOsRelease = "/proc/sys/kernel/osrelease";
inline constexpr std::string_view kThpEnabled = "/sys/kernel/mm/transparent_hugepage/enabled";
inline constexpr std::string_view kDmiSysVendor = "/sys/class/dmi/id/sys_vendor";
inline constexpr std::string_view kDmiProductName = "/sys/class/dmi/id/product_name";
inline constexpr std::string_view kHypervisorType = "/sys/hypervisor/type";
inline constexpr std::string_view kProcCmdline = "/proc/cmdline";
inline constexpr std::string_view kDockerEnv = "/.dockerenv";
inline constexpr std::string_view kContainerEnv = "/run/.containerenv";

// Per-process files, relative to /proc/PID.
inline constexpr std::string_view kPidCgroup = "cgroup";
inline constexpr std::string_view kPidCpuset = "cpuset";
inline constexpr std::string_view kPidMountInfo = "mountinfo";
inline constexpr std::string_view kPidStatus = "status";
inline constexpr std::string_view kPidLimits = "limits";
inline constexpr std::string_view kPidMaps = "maps";
inline constexpr std::string_view kPidSmapsRollup = "smaps_rollup";
inline constexpr std::string_view kPidAuxv = "auxv";

// cgroup v2
inline constexpr std::string_view kV2Controllers = "cgroup.controllers";
inline constexpr std::string_view kV2CpuMax = "cpu.max";
inline constexpr std::string_view kV2MemoryMax = "memory.max";
inline constexpr std::string_view kV2MemorySwapMax = "memory.swap.max";
inline constexpr std::string_view kV2MemoryEvents = "memory.events";  // "oom_kill N"
inline constexpr std::string_view kV2MemoryHigh = "memory.high";
inline constexpr std::string_view kV2MemoryCurrent = "memory.current";
inline constexpr std::string_view kV2CpusEffective = "cpuset.cpus.effective";
inline constexpr std::string_view kV2MemsEffective = "cpuset.mems.effective";
inline constexpr std::string_view kV2CpusPartition = "cpuset.cpus.partition";  // member|root|...
inline constexpr std::string_view kV2CpusExclusive = "cpuset.cpus.exclusive";  // Linux 6.7+

// cgroup v1
inline constexpr std::string_view kV1CfsQuota = "cpu.cfs_quota_us";
inline constexpr std::string_view kV1CfsPeriod = "cpu.cfs_period_us";
inline constexpr std::string_view kV1MemoryLimit = "memory.limit_in_bytes";
inline constexpr std::string_view kV1MemswLimit = "memory.memsw.limit_in_bytes";
inline constexpr std::string_view kV1OomControl = "memory.oom_control";  // "oom_kill N" (4.13+)
inline constexpr std::string_view kV1MemoryUsage = "memory.usage_in_bytes";
inline constexpr std::string_view kV1CpusEffective = "cpuset.effective_cpus";
inline constexpr std::string_view kV1Cpus = "cpuset.cpus";
inline constexpr std::string_view kV1MemsEffective = "cpuset.effective_mems";
inline constexpr std::string_view kV1Mems = "cpuset.mems";
inline constexpr std::string_view kV1CpuExclusive = "cpuset.cpu_exclusive";

// Both
inline constexpr std::string_view kPidsMax = "pids.max";
inline constexpr std::string_view kProcs = "cgroup.procs";

}  // namespace hostfit::kfile
