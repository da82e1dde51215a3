// `hostfit probe --capture DIR`: the files a probe read, plus the sysfs files hwloc reads for the
// topology, written as a tree that `--sysroot DIR` reads back with the same answer.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <regex>

#include "hostfit/probe.h"
#include "kernel_files.h"

namespace hostfit {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxCaptureBytes = uint64_t{64} << 20;
constexpr size_t kMaxCaptureFiles = 20000;

// What hwloc's Linux backend reads with I/O discovery off and the x86 backend left out: CPU
// topology and caches, NUMA nodes with memory and distances, huge pages (as hwloc-gather-topology
// keeps them).
struct TopologyFiles {
  std::string_view dir;
  std::regex pattern;  // matched against the path below dir
};

const std::vector<TopologyFiles>& topology_files() {
  static const std::vector<TopologyFiles> files = {
      {"/sys/devices/system/cpu",
       std::regex(R"((online|possible|present|offline|isolated|kernel_max)|)"
                  R"(cpu[0-9]+/(online|topology/[a-z_]+|cache/index[0-9]+/[a-z_]+))")},
      {"/sys/devices/system/node",
       std::regex(R"((online|possible|has_cpu|has_memory|has_normal_memory)|)"
                  R"(node[0-9]+/(cpumap|cpulist|meminfo|distance|)"
                  R"(hugepages/hugepages-[0-9]+kB/(nr|free)_hugepages))")},
      {"/sys/kernel/mm/hugepages", std::regex(R"(hugepages-[0-9]+kB/(nr|free)_hugepages)")},
  };
  return files;
}

// Reads through `root` every file below `dir` (at most `depth` levels) whose relative path
// matches; the reads land in root's log.
void read_matching(const Sysroot& root, const std::string& dir, const std::string& below,
                   const std::regex& pattern, int depth) {
  auto names = root.list(join_path(dir, below));
  if (!names) return;
  for (const auto& name : *names) {
    const std::string rel = below.empty() ? name : below + "/" + name;
    const std::string target = join_path(dir, rel);
    // Walking is not reading: the directory test stays out of the log (symlinks are not
    // followed, so cpuN/node0 and subsystem links do not lead elsewhere).
    std::error_code ec;
    if (fs::is_directory(fs::symlink_status(root.path(target), ec))) {
      if (depth > 0) read_matching(root, dir, rel, pattern, depth - 1);
    } else if (std::regex_match(rel, pattern)) {
      (void)root.read(target, 1 << 20);
    }
  }
}

bool safe_target(const std::string& target) {
  if (target.empty() || target.front() != '/') return false;
  for (std::string_view part : split(target, '/')) {
    if (part == "..") return false;
  }
  return true;
}

Status write_file(const fs::path& path, const std::string& data) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec)
    return fail(Error::from_errno(ec.value(), "create directory", path.parent_path().string()));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return fail(Error::from_errno(errno, "write", path.string()));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return fail(Error::from_errno(err, "write", path.string()));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return {};
}

Status write_log(const SysrootLog& log, const fs::path& dir, CaptureSummary& summary) {
  for (const auto& [target, data] : log.files)
    summary.bytes += data.size();
  if (summary.bytes > kMaxCaptureBytes || log.files.size() > kMaxCaptureFiles) {
    return fail(ErrorKind::kResource, "the capture would hold " + std::to_string(log.files.size()) +
                                          " files and " + format_bytes(summary.bytes) +
                                          ", more than the bound of " +
                                          std::to_string(kMaxCaptureFiles) + " files and " +
                                          format_bytes(kMaxCaptureBytes));
  }
  std::error_code ec;
  for (const auto& [target, is_dir] : log.present) {
    if (!safe_target(target)) continue;
    const fs::path path = dir / target.substr(1);
    if (is_dir) {
      fs::create_directories(path, ec);
    } else if (!log.files.contains(target)) {
      // A file only tested for existence (/.dockerenv): present and empty.
      if (auto st = write_file(path, ""); !st) return st;
    }
  }
  for (const auto& [target, data] : log.files) {
    if (!safe_target(target)) continue;
    if (auto st = write_file(dir / target.substr(1), data); !st) return st;
    ++summary.files;
  }
  return {};
}

Status prepare_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec) || !fs::is_empty(dir, ec)) {
      return fail(ErrorKind::kUsage, "bad --capture " + dir.string() +
                                         ": it exists and is not an empty directory (give a new "
                                         "directory)");
    }
    return {};
  }
  if (::mkdir(dir.c_str(), 0755) != 0) {
    return fail(Error::from_errno(errno, "create capture directory", dir.string()));
  }
  return {};
}

}  // namespace

Result<CaptureSummary> write_capture(const Sysroot& root, const fs::path& dir) {
  CaptureSummary summary;
  summary.dir = dir.string();
  if (auto st = prepare_dir(dir); !st) return fail(st.error());
  for (const auto& t : topology_files())
    read_matching(root, std::string(t.dir), "", t.pattern, 3);
  // hwloc reads these too; a second read would replace what the probe saw with a later value.
  const SysrootLog before = root.recorded();
  for (auto file : {kfile::kCpuInfo, kfile::kMemInfo}) {
    if (!before.files.contains(std::string(file))) (void)root.read(file);
  }
  if (auto st = write_log(root.recorded(), dir, summary); !st) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    return fail(st.error());
  }
  return summary;
}

}  // namespace hostfit
