// Inside the probe: the cgroup mount parser and the kernel's path rules, shared by the cgroup
// discovery (cgroups.cc) and the capture.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hostfit/probe.h"

namespace hostfit {

enum class MountTable { kMountInfo, kProcMounts };

// The cgroup, cgroup2 and cpuset mounts listed in a mountinfo or /proc/mounts text. Lines the
// kernel never writes are skipped; so are mount points ending in " (deleted)".
std::vector<CgroupMount> parse_cgroup_mounts(std::string_view text, MountTable table);

// Decodes the kernel's \ooo escapes (space \040, tab \011, newline \012, backslash \134).
std::string unescape_mount_field(std::string_view s);

// A cgroup path as the kernel prints it relative to a cgroup namespace root: `up` times "..",
// then names. "/../../init.scope" -> {2, {"init.scope"}}.
struct NsPath {
  int up = 0;
  std::vector<std::string> down;
};
// nullopt unless it starts with '/' (and is at most 4096 bytes without NUL). "." and empty parts
// are dropped; ".." after a name removes it.
std::optional<NsPath> parse_ns_path(std::string_view path);
std::string to_string(const NsPath& p);

// Where a cgroup lies below a mount's root.
struct MountPlacement {
  bool visible = false;
  int hidden = 0;                  // names between the root and `below` that are not shown
  std::vector<std::string> below;  // the known names after the hidden ones
  std::string why;                 // set when not visible
};
MountPlacement place_below(std::string_view mount_root, std::string_view cgroup);

}  // namespace hostfit
