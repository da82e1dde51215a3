// Names of the files and memory.stat keys only the cache module reads and writes.
#pragma once

#include <string_view>

#include "../cgroup/cgroup_files.h"

namespace hostfit::cachefile {

// The cgroupfs file names the cgroup driver uses (memory.stat, memory.usage_in_bytes,
// memory.limit_in_bytes, memory.current) come from there; these are the cache module's own.
inline constexpr std::string_view kMemoryPressure = "memory.pressure";  // PSI, unified hierarchy
inline constexpr std::string_view kHostPressure = "/proc/pressure/memory";
inline constexpr std::string_view kV2Reclaim = "memory.reclaim";  // Linux 5.19+

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
