// The cache-limit controller on generated trees (what it writes) and on this machine's real
// memory cgroup (what the kernel then does): cache held near the budget, tmpfs left alone, the
// limit restored, no OOM kill.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "hostfit/cache.h"
#include "scratch_group.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using namespace testing_cache;
using std::chrono::milliseconds;

// A generated v2 tree with one group whose memory.stat says `file` bytes of cache.
class GeneratedV2Group : public ::testing::Test {
 protected:
  void SetUp() override {
    fixtures::Shape shape;
    shape.cgroup = fixtures::CgroupLayout::kV2;
    shape.cgroup_chain = {{.name = "w", .memory_current = 512 * kMiB}};
    ASSERT_TRUE(fixtures::write_sysroot(dir_.path(), shape));
  }
  void set_stat(uint64_t file, uint64_t shmem, uint64_t dirty = 0) {
    ASSERT_TRUE(root_.write(kDir + "/memory.stat", "anon 104857600\nfile " + std::to_string(file) +
                                                       "\nshmem " + std::to_string(shmem) +
                                                       "\nfile_dirty " + std::to_string(dirty) +
                                                       "\ninactive_file 0\n"));
  }
  const std::string kDir = "/sys/fs/cgroup/w";
  fixtures::TempDir dir_;
  Sysroot root_{dir_.path()};
};

TEST_F(GeneratedV2Group, WithoutMemoryReclaimALimitIsUnsupported) {
  auto c = CacheController::open(root_, {kDir, true, {}, {}}, {.limit_bytes = 64 * kMiB});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().kind, ErrorKind::kUnsupported);
  EXPECT_NE(c.error().message.find("memory.reclaim"), std::string::npos);
  // Accounting alone needs no reclaim interface.
  EXPECT_TRUE(CacheController::open(root_, {kDir, true, {}, {}}, {}));
}

TEST_F(GeneratedV2Group, AsksMemoryReclaimForTheCleanExcessAndHoldsMemoryHigh) {
  ASSERT_TRUE(root_.write(kDir + "/memory.reclaim", ""));
  ASSERT_TRUE(root_.write(kDir + "/memory.max", std::to_string(1024 * kMiB)));
  set_stat(300 * kMiB, 100 * kMiB, 50 * kMiB);
  auto c = CacheController::open(root_, {kDir, true, {}, {}}, {.limit_bytes = 64 * kMiB});
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE((*c)->tick());
  // reclaimable 200 MiB; reclaim goes 8 MiB under the 64 MiB budget, so 144 MiB over it, all of
  // it within the 150 MiB of clean cache.
  EXPECT_EQ(*root_.read_value(kDir + "/memory.reclaim"), std::to_string(144 * kMiB));
  EXPECT_EQ((*c)->stats().reclaims, 1u);
  EXPECT_EQ((*c)->stats().method, "memory.high");
  // memory.high: usage 512 MiB - 150 MiB of clean cache + the 64 MiB budget; memory.max alone.
  EXPECT_EQ(*root_.read_value(kDir + "/memory.high"), std::to_string(426 * kMiB));
  EXPECT_EQ(*root_.read_value(kDir + "/memory.max"), std::to_string(1024 * kMiB));
}

TEST_F(GeneratedV2Group, MemoryHighFollowsAnonGrowthAndIsRestoredByteForByte) {
  ASSERT_TRUE(root_.write(kDir + "/memory.reclaim", ""));
  ASSERT_TRUE(root_.write(kDir + "/memory.high", "max\n"));
  set_stat(32 * kMiB, 0);
  auto c = CacheController::open(root_, {kDir, true, {}, {}}, {.limit_bytes = 64 * kMiB});
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE((*c)->tick());
  EXPECT_EQ(*root_.read_value(kDir + "/memory.high"), std::to_string((480 + 64) * kMiB));
  // 200 MiB more of other memory: memory.high rises with it.
  ASSERT_TRUE(root_.write(kDir + "/memory.current", std::to_string(712 * kMiB)));
  ASSERT_TRUE((*c)->tick());
  EXPECT_EQ(*root_.read_value(kDir + "/memory.high"), std::to_string((680 + 64) * kMiB));
  EXPECT_EQ((*c)->stats().holds, 2u);
  EXPECT_EQ((*c)->stats().reclaims, 0u);
  ASSERT_TRUE((*c)->stop());
  EXPECT_EQ(*root_.read("/sys/fs/cgroup/w/memory.high"), "max\n");
}

TEST_F(GeneratedV2Group, TheGroupsOwnMemoryHighIsNeverRaised) {
  ASSERT_TRUE(root_.write(kDir + "/memory.reclaim", ""));
  ASSERT_TRUE(root_.write(kDir + "/memory.high", std::to_string(300 * kMiB)));
  set_stat(32 * kMiB, 0);
  auto c = CacheController::open(root_, {kDir, true, {}, {}}, {.limit_bytes = 64 * kMiB});
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE((*c)->tick());
  EXPECT_EQ(*root_.read_value(kDir + "/memory.high"), std::to_string(300 * kMiB));
  EXPECT_EQ((*c)->stats().holds, 0u);
}

TEST_F(GeneratedV2Group, ShmemOverBudgetIsNeverReclaimed) {
  ASSERT_TRUE(root_.write(kDir + "/memory.reclaim", "untouched"));
  set_stat(400 * kMiB, 390 * kMiB);
  auto c = CacheController::open(root_, {kDir, true, {}, {}}, {.limit_bytes = 64 * kMiB});
  ASSERT_TRUE(c);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE((*c)->tick());
  EXPECT_EQ(*root_.read_value(kDir + "/memory.reclaim"), "untouched");
  EXPECT_EQ((*c)->stats().reclaims, 0u);
  EXPECT_EQ((*c)->peaks().shmem_bytes, 390 * kMiB);
}

TEST_F(GeneratedV2Group, HighPressureHoldsReclaimBack) {
  ASSERT_TRUE(root_.write(kDir + "/memory.reclaim", "untouched"));
  ASSERT_TRUE(root_.write(kDir + "/memory.pressure",
                          "some avg10=45.00 avg60=10.00 avg300=1.00 total=99\n"
                          "full avg10=20.00 avg60=5.00 avg300=1.00 total=50\n"));
  set_stat(300 * kMiB, 0);
  auto c = CacheController::open(root_, {kDir, true, kDir + "/memory.pressure", {}},
                                 {.limit_bytes = 64 * kMiB});
  ASSERT_TRUE(c);
  ASSERT_TRUE((*c)->tick());
  EXPECT_EQ(*root_.read_value(kDir + "/memory.reclaim"), "untouched");
  EXPECT_EQ((*c)->stats().pressure_backoffs, 1u);
}

TEST_F(GeneratedV2Group, AGroupThatIsGoneIsNotFound) {
  auto c = CacheController::open(root_, {kDir + "/nosuch", true, {}, {}}, {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().kind, ErrorKind::kNotFound);
}

// A generated v1 group: 500 MiB used, 300 MiB of it clean page cache, and a memory limit.
class GeneratedV1Group : public ::testing::Test {
 protected:
  void SetUp() override {
    fixtures::Shape shape;
    shape.cgroup = fixtures::CgroupLayout::kV1;
    shape.cgroup_chain = {{.name = "w"}};
    ASSERT_TRUE(fixtures::write_sysroot(dir_.path(), shape));
    ASSERT_TRUE(root_.write(kDir + "/memory.usage_in_bytes", std::to_string(500 * kMiB)));
    ASSERT_TRUE(root_.write(kDir + "/memory.stat", "total_cache " + std::to_string(300 * kMiB) +
                                                       "\ntotal_rss " + std::to_string(200 * kMiB) +
                                                       "\n"));
  }
  const std::string kDir = "/sys/fs/cgroup/memory/w";
  fixtures::TempDir dir_;
  Sysroot root_{dir_.path()};
};

TEST_F(GeneratedV1Group, AnUnalignedBudgetLowersInWholeStepsAndRestoresTheLimitSeenAtOpen) {
  ASSERT_TRUE(root_.write(kDir + "/memory.limit_in_bytes", "9223372036854771712"));
  // 100000000 is not a multiple of the page size: the target is rounded to a page, so the steps
  // end (500 MiB -> 309714944 in 64 MiB steps is 4 of them) instead of rewriting one value.
  auto c = CacheController::open(root_, {kDir, false, {}, {}}, {.limit_bytes = 100000000});
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE((*c)->tick());
  EXPECT_EQ((*c)->stats().reclaims, 4u);
  EXPECT_EQ((*c)->stats().method, "memory.limit_in_bytes");
  EXPECT_EQ((*c)->stats().errors, 0u) << (*c)->stats().last_error;
  // Restored byte for byte: the text read at open, not an equivalent.
  EXPECT_EQ(*root_.read_value(kDir + "/memory.limit_in_bytes"), "9223372036854771712");
}

TEST_F(GeneratedV1Group, ALimitAlreadyAtTheTargetIsLeftAlone) {
  ASSERT_TRUE(root_.write(kDir + "/memory.limit_in_bytes", std::to_string(256 * kMiB)));
  auto c = CacheController::open(root_, {kDir, false, {}, {}}, {.limit_bytes = 64 * kMiB});
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE((*c)->tick());
  EXPECT_EQ((*c)->stats().reclaims, 0u);
  EXPECT_EQ(*root_.read_value(kDir + "/memory.limit_in_bytes"), std::to_string(256 * kMiB));
}

TEST_F(GeneratedV1Group, ABudgetOfZeroStillKeepsTheMarginAndRestoresTheLimit) {
  ASSERT_TRUE(root_.write(kDir + "/memory.limit_in_bytes", std::to_string(1024 * kMiB)));
  // Target: 200 MiB that is not clean cache + the 16 MiB margin = 216 MiB, from 500 MiB in steps
  // of 64 MiB: 436, 372, 308, 244, 216.
  auto c = CacheController::open(root_, {kDir, false, {}, {}}, {.limit_bytes = 0});
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE((*c)->tick());
  EXPECT_EQ((*c)->stats().reclaims, 5u);
  EXPECT_EQ(*root_.read_value(kDir + "/memory.limit_in_bytes"), std::to_string(1024 * kMiB));
}

uint64_t oom_kills(const ScratchGroup& group) {
  auto text = group.root().read(join_path(group.dir(), "memory.oom_control"));
  if (!text) text = group.root().read(join_path(group.dir(), "memory.events"));
  const auto keys = parse_keyed_numbers(text ? *text : "");
  const auto it = keys.find("oom_kill");
  return it == keys.end() ? 0 : it->second;
}

// Samples the group's reclaimable cache every `period` until stopped; keeps the maximum.
class CacheSampler {
 public:
  CacheSampler(const ScratchGroup& group, milliseconds period)
      : thread_([this, &group, period] {
          while (!stop_) {
            if (auto m = read_breakdown(group.root(), group.dir(), group.v2())) {
              max_ = std::max<uint64_t>(max_, m->reclaimable_file_bytes);
            }
            std::this_thread::sleep_for(period);
          }
        }) {}
  uint64_t stop() {
    stop_ = true;
    thread_.join();
    return max_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> max_{0};
  std::thread thread_;
};

TEST(CacheControllerRealTest, KeepsCacheNearTheBudgetWhileAFileIsReadWithoutOomKills) {
  ScratchGroup group;
  if (!group.ok())
    GTEST_SKIP() << "no writable memory cgroup here (needs root and a memory controller)";
  const std::string limit_file =
      join_path(group.dir(), group.v2() ? "memory.max" : "memory.limit_in_bytes");
  ASSERT_TRUE(group.root().write(limit_file, std::to_string(512 * kMiB)));
  fixtures::TempDir tmp;
  const std::string file = (tmp.path() / "data").string();
  constexpr uint64_t kFileBytes = 256 * kMiB;
  ASSERT_EQ(write_file(file, kFileBytes), 0);
  drop_cache(file);

  constexpr uint64_t kBudget = 32 * kMiB;
  constexpr milliseconds kInterval{20};
  auto c = CacheController::open(group.root(), {group.dir(), group.v2(), {}, {}},
                                 {.limit_bytes = kBudget, .interval = kInterval});
  ASSERT_TRUE(c) << c.error().message;
  (*c)->start();
  CacheSampler sampler(group, milliseconds(5));
  const auto began = std::chrono::steady_clock::now();
  const int code = group.run_inside([&] { return read_file(file); });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  std::this_thread::sleep_for(kInterval * 3);  // the controller's last word after the reader
  const uint64_t max_seen = sampler.stop();
  (*c)->stop();
  const MemoryBreakdown end = group.breakdown();
  drop_cache(file);

  EXPECT_EQ(code, 0);
  EXPECT_EQ(oom_kills(group), 0u);
  EXPECT_EQ(*group.root().read_value(limit_file), std::to_string(512 * kMiB)) << "limit restored";
  EXPECT_GT((*c)->stats().reclaims, 0u);
  EXPECT_LE(end.reclaimable_file_bytes, kBudget + 8 * kMiB);
  // The bound: the budget plus what the reader adds in one interval and in the reclaim that
  // follows it. The reader's own rate sets the growth; the test allows two intervals' worth
  // (and one v1 step) so a busy machine does not fail it.
  const double rate = static_cast<double>(kFileBytes) / seconds;
  const uint64_t bound = kBudget + static_cast<uint64_t>(rate * 2 * 0.020) + 64 * kMiB;
  EXPECT_LE(max_seen, bound) << "max " << max_seen / kMiB << " MiB, read at " << rate / kMiB
                             << " MiB/s, " << (*c)->stats().reclaims << " reclaims";
  std::cout << "max cache " << max_seen / kMiB << " MiB (budget " << kBudget / kMiB
            << " MiB), read at " << static_cast<int>(rate / kMiB) << " MiB/s, "
            << (*c)->stats().reclaims << " reclaim steps, method " << (*c)->stats().method << "\n";
}

TEST(CacheControllerRealTest, TmpfsIsShmemAndIsNeitherReclaimedNorThrashedOver) {
  ScratchGroup group;
  if (!group.ok())
    GTEST_SKIP() << "no writable memory cgroup here (needs root and a memory controller)";
  const std::string file = "/dev/shm/hostfit-controller-test-" + std::to_string(::getpid());
  auto c = CacheController::open(group.root(), {group.dir(), group.v2(), {}, {}},
                                 {.limit_bytes = 16 * kMiB, .interval = milliseconds(10)});
  ASSERT_TRUE(c) << c.error().message;
  (*c)->start();
  const int code = group.run_inside([&] { return write_file(file, 96 * kMiB); });
  std::this_thread::sleep_for(milliseconds(100));
  (*c)->stop();
  const auto size = std::filesystem::file_size(file);
  std::filesystem::remove(file);

  EXPECT_EQ(code, 0);
  EXPECT_EQ(size, 96 * kMiB);
  EXPECT_GE((*c)->peaks().shmem_bytes, 90 * kMiB);
  EXPECT_EQ((*c)->stats().reclaims, 0u);
  EXPECT_GE((*c)->stats().samples, 5u);
  EXPECT_EQ(oom_kills(group), 0u);
}

TEST(CacheControllerRealTest, JsonCarriesPeaksAndCounters) {
  ScratchGroup group;
  if (!group.ok()) GTEST_SKIP() << "no writable memory cgroup here";
  auto c = CacheController::open(group.root(), {group.dir(), group.v2(), {}, {}}, {});
  ASSERT_TRUE(c);
  ASSERT_TRUE((*c)->tick());
  const nlohmann::json j = to_json(**c);
  EXPECT_TRUE(j["limit_bytes"].is_null());
  EXPECT_TRUE(j["peak"].contains("file_bytes"));
  EXPECT_EQ(j["samples"], 1);
  EXPECT_EQ(j["reclaims"], 0);
}

}  // namespace
}  // namespace hostfit
