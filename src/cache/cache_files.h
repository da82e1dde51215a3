// Names of the cgroupfs and procfs files and memory.stat keys the cache module reads and writes,
// in one place.
#pragma once

#include <string_view>

namespace hostfit::cachefile {

inline constexpr std::string_view kMemoryStat = "memory.stat";
inline constexpr std::string_view kMemoryPressure = "memory.pressure";  // PSI, unified hierarchy
inline constexpr std::string_view kHostPressure = "/proc/pressure/memory";

// cgroup v1
inline constexpr std::string_view kV1Usage = "memory.usage_in_bytes";
inline constexpr std::string_view kV1Limit = "memory.limit_in_bytes";
inline constexpr std::string_view kV1MemswLimit = "memory.memsw.limit_in_bytes";
inline constexpr std::string_view kV1OomControl = "memory.oom_control";

// cgroup v2
inline constexpr std::string_view kV2Current = "memory.current";
inline constexpr std::string_view kV2Reclaim = "memory.reclaim";  // Linux 5.19+
inline constexpr std::string_view kV2Events = "memory.events";

// v1 memory.stat: "cache" is page cache including shmem, "rss" anonymous memory without shmem.
// The total_ forms include the descendants (with use_hierarchy, always on since Linux 5.x).
struct V1Keys {
  std::string_view cache, rss, shmem, mapped_file, active_file, inactive_file, dirty, writeback;
};
inline constexpr V1Keys kV1Hierarchical{
    "total_cache",       "total_rss",           "total_shmem", "total_mapped_file",
    "total_active_file", "total_inactive_file", "total_dirty", "total_writeback"};
inline constexpr V1Keys kV1Local{"cache",       "rss",           "shmem", "mapped_file",
                                 "active_file", "inactive_file", "dirty", "writeback"};

// v2 memory.stat: "file" includes shmem; "anon" does not. Always hierarchical.
inline constexpr std::string_view kV2Anon = "anon";
inline constexpr std::string_view kV2File = "file";
inline constexpr std::string_view kV2Shmem = "shmem";
inline constexpr std::string_view kV2FileMapped = "file_mapped";
inline constexpr std::string_view kV2ActiveFile = "active_file";
inline constexpr std::string_view kV2InactiveFile = "inactive_file";
inline constexpr std::string_view kV2FileDirty = "file_dirty";
inline constexpr std::string_view kV2FileWriteback = "file_writeback";

}  // namespace hostfit::cachefile
