// cgroup mounts: the one parser of /proc/PID/mountinfo and /proc/mounts for cgroup file systems,
// and where a cgroup path lies below a mount's root (kernel rules: proc(5) mountinfo,
// Documentation/admin-guide/cgroup-v2.rst "Namespace").
#include "mounts.h"

#include <algorithm>
#include <array>

namespace hostfit {
namespace {

constexpr std::array<std::string_view, 15> kV1Controllers = {
    "cpu",     "cpuacct",  "cpuset",     "memory",  "pids", "blkio", "devices", "freezer",
    "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc",  "io"};
// d_path() appends this to a mount point whose directory was removed.
constexpr std::string_view kDeletedSuffix = " (deleted)";
constexpr size_t kMaxCgroupPath = 4096;  // PATH_MAX

bool is_octal(char c) {
  return c >= '0' && c <= '7';
}

std::vector<std::string> v1_controllers_in(std::string_view options) {
  std::vector<std::string> out;
  for (std::string_view opt : split(options, ',')) {
    if (std::find(kV1Controllers.begin(), kV1Controllers.end(), opt) != kV1Controllers.end() ||
        opt.starts_with("name=")) {
      out.emplace_back(opt);
    }
  }
  return out;
}

bool has_option(std::string_view options, std::string_view name) {
  const auto opts = split(options, ',');
  return std::find(opts.begin(), opts.end(), name) != opts.end();
}

// One cgroup mount, or nullopt for other file systems and for mount points that were deleted.
std::optional<CgroupMount> mount_from(std::string_view fstype, std::string_view mount_point,
                                      std::string_view root, std::string_view super_options) {
  CgroupMount m;
  m.mount_point = unescape_mount_field(mount_point);
  m.root = root.empty() ? "/" : unescape_mount_field(root);
  if (m.mount_point.empty() || m.mount_point.ends_with(kDeletedSuffix)) return std::nullopt;
  if (fstype == "cgroup2") {
    m.v2 = true;
  } else if (fstype == "cgroup") {
    m.controllers = v1_controllers_in(super_options);
    // The kernel allows noprefix only on a hierarchy that holds cpuset alone.
    m.legacy_cpuset_fs = has_option(super_options, "noprefix");
  } else if (fstype == "cpuset") {
    // "mount -t cpuset": the pre-cgroup cpuset file system, a noprefix cpuset hierarchy today.
    m.legacy_cpuset_fs = true;
    m.controllers = {"cpuset"};
  } else {
    return std::nullopt;
  }
  return m;
}

// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
// Fields are separated by exactly one space (spaces inside are escaped), so an empty SOURCE, as
// kernels before 5.1 print for cgroup ("- cgroup  rw,cpu"), is an empty field.
std::optional<CgroupMount> mountinfo_line(std::string_view line) {
  const auto fields = split(trim(line), ' ');
  if (fields.size() < 8) return std::nullopt;
  const auto dash = std::find(fields.begin() + 6, fields.end(), "-");
  if (dash == fields.end() || dash + 1 == fields.end()) return std::nullopt;
  const size_t after = static_cast<size_t>(fields.end() - dash - 1);
  // FSTYPE SOURCE SUPER, or FSTYPE SUPER when the source is missing altogether.
  const std::string_view super = after >= 3 ? dash[3] : after == 2 ? dash[2] : "";
  return mount_from(dash[1], fields[4], fields[3], super);
}

// SOURCE MOUNTPOINT FSTYPE OPTIONS DUMP PASS
std::optional<CgroupMount> proc_mounts_line(std::string_view line) {
  const auto fields = split(trim(line), ' ');
  if (fields.size() < 4) return std::nullopt;
  return mount_from(fields[2], fields[1], "/", fields[3]);
}

bool starts_with(const std::vector<std::string>& path, const std::vector<std::string>& prefix) {
  return path.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), path.begin());
}

}  // namespace

std::string unescape_mount_field(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    // The kernel escapes space, tab, newline and backslash as \ooo (mangle() in
    // fs/proc_namespace.c).
    if (s[i] == '\\' && i + 3 < s.size() && is_octal(s[i + 1]) && is_octal(s[i + 2]) &&
        is_octal(s[i + 3])) {
      const int value = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
      if (value <= 0xff) {
        out += static_cast<char>(value);
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

std::vector<CgroupMount> parse_cgroup_mounts(std::string_view text, MountTable table) {
  std::vector<CgroupMount> mounts;
  for (std::string_view line : split(text, '\n')) {
    auto m = table == MountTable::kMountInfo ? mountinfo_line(line) : proc_mounts_line(line);
    if (m) mounts.push_back(std::move(*m));
  }
  return mounts;
}

std::optional<NsPath> parse_ns_path(std::string_view path) {
  if (path.empty() || path.front() != '/' || path.size() > kMaxCgroupPath ||
      path.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  NsPath p;
  for (std::string_view part : split(path.substr(1), '/')) {
    if (part.empty() || part == ".") continue;
    if (part != "..") {
      p.down.emplace_back(part);
    } else if (!p.down.empty()) {
      p.down.pop_back();
    } else {
      ++p.up;
    }
  }
  return p;
}

std::string to_string(const NsPath& p) {
  std::string out;
  for (int i = 0; i < p.up; ++i)
    out += "/..";
  for (const auto& name : p.down)
    out += "/" + name;
  return out.empty() ? "/" : out;
}

// Both the mount's root and the cgroup are named relative to the reader's namespace root N, and
// the kernel names each by the shortest way there (kernfs_path_from_node): up to the common
// ancestor with N, then down. So a path that climbs k levels and then descends into a name is in a
// different subtree from everything below N/..^(k-1).
MountPlacement place_below(std::string_view mount_root, std::string_view cgroup) {
  MountPlacement out;
  const auto root = parse_ns_path(mount_root);
  const auto path = parse_ns_path(cgroup);
  if (!path) {
    out.why = "'" + std::string(cgroup.substr(0, 200)) + "' is not a cgroup path";
    return out;
  }
  if (!root) {
    out.why =
        "the mount's root '" + std::string(mount_root.substr(0, 200)) + "' is not a cgroup path";
    return out;
  }
  const std::string shown = to_string(*path);
  const std::string mounted = to_string(*root);
  if (root->up == path->up) {
    if (!starts_with(path->down, root->down)) {
      out.why =
          "cgroup " + shown + " is outside " + mounted + ", the part of the hierarchy mounted";
      return out;
    }
    out.below.assign(path->down.begin() + static_cast<long>(root->down.size()), path->down.end());
  } else if (root->up < path->up) {
    out.why =
        "cgroup " + shown + " climbs above " + mounted + ", the part of the hierarchy mounted";
    return out;
  } else if (!root->down.empty()) {
    out.why = "cgroup " + shown + " is outside " + mounted + ", the part of the hierarchy mounted";
    return out;
  } else {
    // The mount shows an ancestor of the namespace root: the names between are not shown.
    out.hidden = root->up - path->up;
    out.below = path->down;
  }
  out.visible = true;
  return out;
}

Result<std::string> CgroupMount::locate(std::string_view cgroup) const {
  const MountPlacement p = place_below(root, cgroup);
  if (!p.visible) return fail(ErrorKind::kNotFound, p.why + " at " + mount_point);
  if (p.hidden > 0) {
    return fail(ErrorKind::kNotFound, "cgroup " + std::string(cgroup) + " lies " +
                                          std::to_string(p.hidden) + " level(s) below " + root +
                                          " (mounted at " + mount_point +
                                          ") under names its cgroup namespace does not show");
  }
  return to_string(NsPath{0, p.below});
}

Result<std::string> normalize_cgroup_path(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return fail(ErrorKind::kUsage,
                "bad cgroup path '" + std::string(text.substr(0, 200)) + "': " + std::string(why) +
                    " (give the path as /proc/PID/cgroup shows it, e.g. /kubepods/pod1)");
  };
  if (text.size() > kMaxCgroupPath) return bad("longer than 4096 bytes");
  if (text.find('\0') != std::string_view::npos) return bad("it contains a NUL byte");
  std::string out;
  for (std::string_view part : split(text, '/')) {
    if (part.empty()) continue;
    if (part == "..") return bad("'..' is not allowed");
    if (part == ".") return bad("'.' is not allowed");
    out += "/";
    out += part;
  }
  return out.empty() ? "/" : out;
}

}  // namespace hostfit
