// Memory and kernel facts: /proc/meminfo, vm sysctls, transparent huge pages, the target's map
// count and resource limits, page size and virtual address width.
#include <elf.h>
#include <unistd.h>

#include <cstring>

#include "hostfit/probe.h"
#include "kernel_files.h"

namespace hostfit {
namespace {

using Keyed = std::map<std::string, uint64_t, std::less<>>;

Fact<uint64_t> keyed(const Result<std::string>& text, const Keyed& values, std::string_view key,
                     std::string_view file) {
  if (!text) return Fact<uint64_t>::unknown(std::string(file), text.error().message);
  const auto it = values.find(key);
  if (it == values.end()) {
    return Fact<uint64_t>::unknown(std::string(file),
                                   "no " + std::string(key) + " in " + std::string(file));
  }
  return Fact<uint64_t>::of(it->second, std::string(file) + " " + std::string(key),
                            std::to_string(it->second));
}

template <class T>
Fact<T> number_file(const Sysroot& root, std::string_view file) {
  auto raw = root.read_value(file);
  if (!raw) return Fact<T>::unknown(std::string(file), raw.error().message);
  const auto value = parse_i64(*raw);
  if (!value || *value < 0) {
    return Fact<T>::unknown(std::string(file), "not a number: '" + raw->substr(0, 64) + "'");
  }
  return Fact<T>::of(static_cast<T>(*value), std::string(file), *raw);
}

// One row of /proc/PID/limits: "Max address space   unlimited   unlimited   bytes".
Fact<ResourceLimit> limit_row(const Result<std::string>& text, std::string_view name,
                              const std::string& file) {
  if (!text) return Fact<ResourceLimit>::unknown(file, text.error().message);
  for (std::string_view line : split(*text, '\n')) {
    if (!line.starts_with(name)) continue;
    const auto fields = split_whitespace(line.substr(name.size()));
    if (fields.size() < 2) break;
    const auto parse = [](std::string_view v) -> std::optional<Limit> {
      if (v == "unlimited") return Limit::unlimited();
      if (auto n = parse_u64(v)) return Limit::of(*n);
      return std::nullopt;
    };
    const auto soft = parse(fields[0]);
    const auto hard = parse(fields[1]);
    if (!soft || !hard) break;
    return Fact<ResourceLimit>::of(ResourceLimit{*soft, *hard}, file + " " + std::string(name),
                                   std::string(fields[0]) + " " + std::string(fields[1]));
  }
  return Fact<ResourceLimit>::unknown(file,
                                      "no readable '" + std::string(name) + "' row in " + file);
}

// The page size the kernel handed this process in its auxiliary vector (AT_PAGESZ): a file, so
// a capture keeps it. Entries are pairs of native unsigned longs (64-bit here).
Fact<uint64_t> page_size(const Sysroot& root) {
  const std::string file = join_path("/proc/self", kfile::kPidAuxv);
  if (auto auxv = root.read(file, 64 << 10)) {
    for (size_t i = 0; i + 2 * sizeof(uint64_t) <= auxv->size(); i += 2 * sizeof(uint64_t)) {
      uint64_t entry[2];
      std::memcpy(entry, auxv->data() + i, sizeof entry);
      if (entry[0] == AT_NULL) break;
      const uint64_t v = entry[1];
      if (entry[0] == AT_PAGESZ && v >= 4096 && v <= (uint64_t{1} << 30) && (v & (v - 1)) == 0) {
        return Fact<uint64_t>::of(v, file + " AT_PAGESZ", std::to_string(v));
      }
    }
  }
  if (root.is_host()) {
    const long page = ::sysconf(_SC_PAGESIZE);
    if (page > 0) {
      return Fact<uint64_t>::of(static_cast<uint64_t>(page), "sysconf(_SC_PAGESIZE)",
                                std::to_string(page));
    }
    return Fact<uint64_t>::unknown("sysconf(_SC_PAGESIZE)", "sysconf failed");
  }
  return Fact<uint64_t>::unknown(
      file, "a sysroot without " + file + " does not record its machine's page size");
}

}  // namespace

MemoryFacts probe_memory(const Sysroot& root, const ProbeTarget& target) {
  MemoryFacts m;
  const auto meminfo_text = root.read(kfile::kMemInfo);
  const Keyed meminfo = meminfo_text ? parse_keyed_numbers(*meminfo_text) : Keyed{};
  m.total = keyed(meminfo_text, meminfo, "MemTotal", kfile::kMemInfo);
  m.available = keyed(meminfo_text, meminfo, "MemAvailable", kfile::kMemInfo);
  m.commit_limit = keyed(meminfo_text, meminfo, "CommitLimit", kfile::kMemInfo);
  m.committed = keyed(meminfo_text, meminfo, "Committed_AS", kfile::kMemInfo);
  m.swap_total = keyed(meminfo_text, meminfo, "SwapTotal", kfile::kMemInfo);
  m.swap_free = keyed(meminfo_text, meminfo, "SwapFree", kfile::kMemInfo);
  m.hugepages_total = keyed(meminfo_text, meminfo, "HugePages_Total", kfile::kMemInfo);
  m.hugepage_size = keyed(meminfo_text, meminfo, "Hugepagesize", kfile::kMemInfo);

  m.overcommit_memory = number_file<int>(root, kfile::kOvercommitMemory);
  m.overcommit_ratio = number_file<int>(root, kfile::kOvercommitRatio);
  m.max_map_count = number_file<uint64_t>(root, kfile::kMaxMapCount);

  if (auto thp = root.read_value(kfile::kThpEnabled)) {
    // "always [madvise] never": the bracketed word is the mode in force.
    const auto open = thp->find('['), close = thp->find(']');
    if (open != std::string::npos && close != std::string::npos && close > open) {
      m.thp_enabled = Fact<std::string>::of(thp->substr(open + 1, close - open - 1),
                                            std::string(kfile::kThpEnabled), *thp);
    } else {
      m.thp_enabled = Fact<std::string>::unknown(std::string(kfile::kThpEnabled),
                                                 "no [mode] in '" + thp->substr(0, 64) + "'");
    }
  } else {
    m.thp_enabled =
        Fact<std::string>::unknown(std::string(kfile::kThpEnabled), thp.error().message);
  }

  // Resource limits and mappings belong to a process; for a cgroup target they are hostfit's own,
  // which is what a workload started from here would inherit.
  const std::string proc = target.proc_dir();
  const std::string maps_file = join_path(proc, kfile::kPidMaps);
  if (auto maps = root.read(maps_file, 64 << 20)) {
    uint64_t lines = 0;
    for (char c : *maps)
      lines += c == '\n';
    m.map_count = Fact<uint64_t>::of(lines, maps_file + " (lines)", std::to_string(lines));
  } else {
    m.map_count = Fact<uint64_t>::unknown(maps_file, maps.error().message);
  }
  const std::string status_file = join_path(proc, kfile::kPidStatus);
  const auto status = root.read(status_file);
  m.address_space_used =
      keyed(status, status ? parse_keyed_numbers(*status) : Keyed{}, "VmSize", status_file);
  const std::string limits_file = join_path(proc, kfile::kPidLimits);
  const auto limits = root.read(limits_file);
  m.rlimit_as = limit_row(limits, "Max address space", limits_file);
  m.rlimit_data = limit_row(limits, "Max data size", limits_file);
  m.rlimit_nofile = limit_row(limits, "Max open files", limits_file);
  m.rlimit_nproc = limit_row(limits, "Max processes", limits_file);

  m.page_size = page_size(root);

  if (auto cpuinfo = root.read(kfile::kCpuInfo)) {
    // x86: "address sizes	: 46 bits physical, 48 bits virtual"
    m.virtual_address_bits =
        Fact<int>::unknown(std::string(kfile::kCpuInfo), "no 'address sizes' line");
    for (std::string_view line : split(*cpuinfo, '\n')) {
      if (!line.starts_with("address sizes")) continue;
      const auto fields = split_whitespace(line.substr(line.find(':') + 1));
      for (size_t i = 0; i + 2 < fields.size(); ++i) {
        if (fields[i + 1] == "bits" && fields[i + 2].starts_with("virtual")) {
          if (auto bits = parse_u64(fields[i]); bits && *bits >= 32 && *bits <= 64) {
            m.virtual_address_bits = Fact<int>::of(static_cast<int>(*bits),
                                                   std::string(kfile::kCpuInfo) + " address sizes",
                                                   std::string(trim(line)));
          }
        }
      }
      break;
    }
  } else {
    m.virtual_address_bits =
        Fact<int>::unknown(std::string(kfile::kCpuInfo), cpuinfo.error().message);
  }

  if (auto release = root.read_value(kfile::kOsRelease)) {
    m.kernel_release = Fact<std::string>::of(*release, std::string(kfile::kOsRelease), *release);
  } else {
    m.kernel_release =
        Fact<std::string>::unknown(std::string(kfile::kOsRelease), release.error().message);
  }
  return m;
}

}  // namespace hostfit
