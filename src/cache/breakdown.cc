// Working set versus page cache, from memory.stat.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "cache_files.h"
#include "hostfit/cache.h"

namespace hostfit {
namespace {

using StatMap = std::map<std::string, uint64_t, std::less<>>;

uint64_t value_of(const StatMap& stat, std::string_view key) {
  const auto it = stat.find(key);
  return it == stat.end() ? 0 : it->second;
}

uint64_t minus(uint64_t a, uint64_t b) {
  return a > b ? a - b : 0;
}

}  // namespace

MemoryBreakdown breakdown_from_stat(const StatMap& stat, uint64_t usage_bytes, bool v2) {
  MemoryBreakdown m;
  m.v2 = v2;
  m.usage_bytes = usage_bytes;
  if (v2) {
    m.anon_bytes = value_of(stat, cachefile::kV2Anon);
    m.file_bytes = value_of(stat, cachefile::kV2File);
    m.shmem_bytes = value_of(stat, cachefile::kV2Shmem);
    m.mapped_file_bytes = value_of(stat, cachefile::kV2FileMapped);
    m.active_file_bytes = value_of(stat, cachefile::kV2ActiveFile);
    m.inactive_file_bytes = value_of(stat, cachefile::kV2InactiveFile);
    m.dirty_bytes = value_of(stat, cachefile::kV2FileDirty);
    m.writeback_bytes = value_of(stat, cachefile::kV2FileWriteback);
  } else {
    // A v1 group without the total_ keys (a kernel without hierarchy support) has only its own.
    const bool hierarchical = stat.contains(cachefile::kV1Hierarchical.cache) ||
                              stat.contains(cachefile::kV1Hierarchical.rss);
    const cachefile::V1Keys& k = hierarchical ? cachefile::kV1Hierarchical : cachefile::kV1Local;
    m.anon_bytes = value_of(stat, k.rss);
    m.file_bytes = value_of(stat, k.cache);
    m.shmem_bytes = value_of(stat, k.shmem);
    m.mapped_file_bytes = value_of(stat, k.mapped_file);
    m.active_file_bytes = value_of(stat, k.active_file);
    m.inactive_file_bytes = value_of(stat, k.inactive_file);
    m.dirty_bytes = value_of(stat, k.dirty);
    m.writeback_bytes = value_of(stat, k.writeback);
  }
  // shmem sits on the anon LRU lists, so inactive_file never holds it; the subtraction is the
  // kubelet's and cAdvisor's working set.
  m.working_set_bytes = minus(m.usage_bytes, m.inactive_file_bytes);
  m.reclaimable_file_bytes = minus(m.file_bytes, m.shmem_bytes);
  m.unreclaimable_bytes = minus(m.usage_bytes, m.reclaimable_file_bytes);
  m.other_bytes = minus(m.usage_bytes, m.anon_bytes + m.file_bytes);
  return m;
}

MemoryBreakdown parse_breakdown(std::string_view memory_stat_text, uint64_t usage_bytes, bool v2) {
  return breakdown_from_stat(parse_keyed_numbers(memory_stat_text), usage_bytes, v2);
}

Result<MemoryBreakdown> read_breakdown(const Sysroot& root, std::string_view memory_dir, bool v2) {
  const std::string usage_file =
      join_path(memory_dir, v2 ? cgfile::kV2MemoryCurrent : cgfile::kV1MemoryUsage);
  auto usage_text = root.read_value(usage_file);
  if (!usage_text) return fail(usage_text.error().wrap("cannot read the memory usage"));
  const auto usage = parse_u64(*usage_text);
  if (!usage) {
    return fail(ErrorKind::kParse, root.path(usage_file).string() + " holds '" + *usage_text +
                                       "', not a number of bytes");
  }
  const std::string stat_file = join_path(memory_dir, cgfile::kMemoryStat);
  auto stat_text = root.read(stat_file);
  if (!stat_text) return fail(stat_text.error().wrap("cannot read the memory breakdown"));
  MemoryBreakdown m = parse_breakdown(*stat_text, *usage, v2);
  m.source = root.path(stat_file).string();
  return m;
}

void raise_peaks(MemoryBreakdown& peaks, const MemoryBreakdown& sample) {
  peaks.v2 = sample.v2;
  if (peaks.source.empty()) peaks.source = sample.source;
  for (auto field : {&MemoryBreakdown::usage_bytes, &MemoryBreakdown::working_set_bytes,
                     &MemoryBreakdown::unreclaimable_bytes, &MemoryBreakdown::anon_bytes,
                     &MemoryBreakdown::file_bytes, &MemoryBreakdown::shmem_bytes,
                     &MemoryBreakdown::reclaimable_file_bytes, &MemoryBreakdown::mapped_file_bytes,
                     &MemoryBreakdown::active_file_bytes, &MemoryBreakdown::inactive_file_bytes,
                     &MemoryBreakdown::dirty_bytes, &MemoryBreakdown::writeback_bytes,
                     &MemoryBreakdown::other_bytes}) {
    peaks.*field = std::max(peaks.*field, sample.*field);
  }
}

nlohmann::json to_json(const MemoryBreakdown& m) {
  return nlohmann::json{
      {"usage_bytes", m.usage_bytes},
      {"working_set_bytes", m.working_set_bytes},
      {"unreclaimable_bytes", m.unreclaimable_bytes},
      {"anon_bytes", m.anon_bytes},
      {"file_bytes", m.file_bytes},
      {"shmem_bytes", m.shmem_bytes},
      {"reclaimable_file_bytes", m.reclaimable_file_bytes},
      {"mapped_file_bytes", m.mapped_file_bytes},
      {"active_file_bytes", m.active_file_bytes},
      {"inactive_file_bytes", m.inactive_file_bytes},
      {"dirty_bytes", m.dirty_bytes},
      {"writeback_bytes", m.writeback_bytes},
      {"other_bytes", m.other_bytes},
  };
}

std::optional<MemoryPressure> parse_pressure(std::string_view text) {
  MemoryPressure p;
  bool some_seen = false;
  for (std::string_view line : split(text, '\n')) {
    const auto fields = split_whitespace(line);
    if (fields.empty() || (fields[0] != "some" && fields[0] != "full")) continue;
    const bool some = fields[0] == "some";
    bool avg_seen = false;
    for (size_t i = 1; i < fields.size(); ++i) {
      const std::string_view f = fields[i];
      if (f.starts_with("avg10=")) {
        const auto v = parse_double(f.substr(6));
        if (!v) continue;
        (some ? p.some_avg10 : p.full_avg10) = *v;
        avg_seen = true;
      } else if (f.starts_with("total=")) {
        const auto v = parse_u64(f.substr(6));
        if (v) (some ? p.some_total_us : p.full_total_us) = *v;
      }
    }
    if (some && avg_seen) some_seen = true;
  }
  if (!some_seen) return std::nullopt;
  return p;
}

Result<MemoryPressure> read_pressure(const Sysroot& root, std::string_view pressure_file) {
  auto text = root.read(pressure_file);
  if (!text) return fail(text.error().wrap("cannot read memory pressure"));
  auto p = parse_pressure(*text);
  if (!p) {
    return fail(ErrorKind::kParse, root.path(pressure_file).string() +
                                       " has no 'some avg10=' line (a kernel without PSI?)");
  }
  return *p;
}

}  // namespace hostfit
