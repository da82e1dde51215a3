// Accounting: memory.stat of both cgroup versions to working set, cache and shmem.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "hostfit/cache.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

TEST(BreakdownTest, V1UsesHierarchicalTotalsNotTheGroupsOwnCounters) {
  // The group itself holds little; its child read 900 MiB of files.
  const std::string stat =
      "cache 4096\nrss 8192\nshmem 0\nmapped_file 0\ninactive_file 4096\nactive_file 0\n"
      "hierarchical_memory_limit 9223372036854771712\n"
      "total_cache 943718400\ntotal_rss 52428800\ntotal_shmem 10485760\n"
      "total_mapped_file 2097152\ntotal_inactive_file 838860800\ntotal_active_file 94371840\n"
      "total_dirty 4096\ntotal_writeback 0\n";
  const MemoryBreakdown m = parse_breakdown(stat, 1000 * kMiB, /*v2=*/false);
  EXPECT_EQ(m.file_bytes, 900 * kMiB);
  EXPECT_EQ(m.anon_bytes, 50 * kMiB);
  EXPECT_EQ(m.shmem_bytes, 10 * kMiB);
  EXPECT_EQ(m.reclaimable_file_bytes, 890 * kMiB);
  EXPECT_EQ(m.mapped_file_bytes, 2 * kMiB);
  EXPECT_EQ(m.inactive_file_bytes, 800 * kMiB);
  EXPECT_EQ(m.active_file_bytes, 90 * kMiB);
  EXPECT_EQ(m.working_set_bytes, 200 * kMiB);
  EXPECT_EQ(m.unreclaimable_bytes, 110 * kMiB);  // anon 50 + shmem 10 + kernel 50
  EXPECT_EQ(m.dirty_bytes, 4096u);
  EXPECT_EQ(m.other_bytes, 50 * kMiB);
  EXPECT_FALSE(m.v2);
}

TEST(BreakdownTest, V1WithoutTotalKeysFallsBackToTheGroupsOwn) {
  const MemoryBreakdown m =
      parse_breakdown("cache 3000\nrss 2000\nshmem 1000\ninactive_file 1500\n", 6000, false);
  EXPECT_EQ(m.file_bytes, 3000u);
  EXPECT_EQ(m.anon_bytes, 2000u);
  EXPECT_EQ(m.reclaimable_file_bytes, 2000u);
  EXPECT_EQ(m.working_set_bytes, 4500u);
}

TEST(BreakdownTest, V2FileIncludesShmemWhichIsNotReclaimable) {
  const std::string stat =
      "anon 104857600\nfile 314572800\nkernel 8388608\nshmem 209715200\nfile_mapped 1048576\n"
      "file_dirty 0\nfile_writeback 0\ninactive_anon 314572800\nactive_anon 0\n"
      "inactive_file 83886080\nactive_file 20971520\n";
  const MemoryBreakdown m = parse_breakdown(stat, 430 * kMiB, /*v2=*/true);
  EXPECT_EQ(m.anon_bytes, 100 * kMiB);
  EXPECT_EQ(m.file_bytes, 300 * kMiB);
  EXPECT_EQ(m.shmem_bytes, 200 * kMiB);
  EXPECT_EQ(m.reclaimable_file_bytes, 100 * kMiB);
  // tmpfs sits on the anon LRU, so the working set keeps it: only inactive file is subtracted.
  EXPECT_EQ(m.working_set_bytes, 350 * kMiB);
  EXPECT_EQ(m.unreclaimable_bytes, 330 * kMiB);  // anon 100 + shmem 200 + kernel 30
  EXPECT_EQ(m.other_bytes, 30 * kMiB);
  EXPECT_TRUE(m.v2);
}

TEST(BreakdownTest, WorkingSetNeverGoesBelowZero) {
  // The counters are read at different instants; inactive_file may exceed usage for a moment.
  const MemoryBreakdown m = parse_breakdown("file 5000\ninactive_file 5000\n", 4000, true);
  EXPECT_EQ(m.working_set_bytes, 0u);
  EXPECT_EQ(m.other_bytes, 0u);
}

TEST(BreakdownTest, GarbageAndMissingKeysCountAsZero) {
  const MemoryBreakdown m =
      parse_breakdown(std::string("anon x\n\0\nfile\n???\nshmem 12 13\n\n", 31), 77, true);
  EXPECT_EQ(m.anon_bytes, 0u);
  EXPECT_EQ(m.file_bytes, 0u);
  EXPECT_EQ(m.shmem_bytes, 12u);
  EXPECT_EQ(m.reclaimable_file_bytes, 0u);
  EXPECT_EQ(m.usage_bytes, 77u);
  EXPECT_EQ(m.working_set_bytes, 77u);
}

TEST(BreakdownTest, PeaksAreEachFieldsOwnMaximum) {
  MemoryBreakdown peaks;
  raise_peaks(peaks, parse_breakdown("anon 500\nfile 100\n", 700, true));
  raise_peaks(peaks, parse_breakdown("anon 100\nfile 900\ninactive_file 800\n", 1000, true));
  EXPECT_EQ(peaks.anon_bytes, 500u);
  EXPECT_EQ(peaks.file_bytes, 900u);
  EXPECT_EQ(peaks.usage_bytes, 1000u);
  EXPECT_EQ(peaks.working_set_bytes, 700u);  // from the first sample
}

TEST(BreakdownTest, JsonHasTheDocumentedKeys) {
  const nlohmann::json j = to_json(parse_breakdown("anon 1\nfile 2\nshmem 1\n", 10, true));
  for (const char* key :
       {"usage_bytes", "working_set_bytes", "unreclaimable_bytes", "anon_bytes", "file_bytes",
        "shmem_bytes", "reclaimable_file_bytes", "mapped_file_bytes", "active_file_bytes",
        "inactive_file_bytes", "dirty_bytes", "writeback_bytes", "other_bytes"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["reclaimable_file_bytes"], 1);
}

TEST(PressureTest, ParsesSomeAndFull) {
  const auto p = parse_pressure(
      "some avg10=12.50 avg60=3.00 avg300=0.10 total=123456\n"
      "full avg10=4.25 avg60=1.00 avg300=0.00 total=789\n");
  ASSERT_TRUE(p);
  EXPECT_DOUBLE_EQ(p->some_avg10, 12.5);
  EXPECT_DOUBLE_EQ(p->full_avg10, 4.25);
  EXPECT_EQ(p->some_total_us, 123456u);
  EXPECT_EQ(p->full_total_us, 789u);
}

TEST(PressureTest, GarbageIsNotPressure) {
  EXPECT_FALSE(parse_pressure(""));
  EXPECT_FALSE(parse_pressure("some avg10=abc\n"));
  EXPECT_FALSE(parse_pressure("full avg10=1.00 total=3\n"));
}

fixtures::Shape shape_with_pod(fixtures::CgroupLayout layout) {
  fixtures::Shape shape;
  shape.cgroup = layout;
  shape.cgroup_chain = {{.name = "pod", .memory_current = 200 * kMiB}};
  return shape;
}

TEST(ReadBreakdownTest, ReadsAGeneratedV1Tree) {
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), shape_with_pod(fixtures::CgroupLayout::kV1)));
  const Sysroot root(dir.path());
  auto m = read_breakdown(root, "/sys/fs/cgroup/memory/pod", false);
  ASSERT_TRUE(m) << m.error().message;
  // The generator charges 40% of a v1 group to page cache, half of it inactive.
  EXPECT_EQ(m->usage_bytes, 200 * kMiB);
  EXPECT_EQ(m->file_bytes, 80 * kMiB);
  EXPECT_EQ(m->anon_bytes, 120 * kMiB);
  EXPECT_EQ(m->working_set_bytes, 160 * kMiB);
  EXPECT_NE(m->source.find("/sys/fs/cgroup/memory/pod/memory.stat"), std::string::npos);
}

TEST(ReadBreakdownTest, ReadsAGeneratedV2Tree) {
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), shape_with_pod(fixtures::CgroupLayout::kV2)));
  const Sysroot root(dir.path());
  auto m = read_breakdown(root, "/sys/fs/cgroup/pod", true);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->usage_bytes, 200 * kMiB);
  EXPECT_EQ(m->file_bytes, 80 * kMiB);
  EXPECT_EQ(m->anon_bytes, 110 * kMiB);
  EXPECT_EQ(m->working_set_bytes, 160 * kMiB);
}

TEST(ReadBreakdownTest, MissingGroupIsNotFoundAndNamesTheFile) {
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), shape_with_pod(fixtures::CgroupLayout::kV2)));
  auto m = read_breakdown(Sysroot(dir.path()), "/sys/fs/cgroup/nosuch", true);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().kind, ErrorKind::kNotFound);
  EXPECT_NE(m.error().message.find("/sys/fs/cgroup/nosuch/memory.current"), std::string::npos);
}

TEST(ReadBreakdownTest, UsageThatIsNotANumberIsAParseError) {
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), shape_with_pod(fixtures::CgroupLayout::kV2)));
  const Sysroot root(dir.path());
  ASSERT_TRUE(root.write("/sys/fs/cgroup/pod/memory.current", "lots\n"));
  auto m = read_breakdown(root, "/sys/fs/cgroup/pod", true);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().kind, ErrorKind::kParse);
  EXPECT_NE(m.error().message.find("lots"), std::string::npos);
}

}  // namespace
}  // namespace hostfit
