// choose_tier and pool_facts_from on constructed facts: no system calls.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "hostfit/pool.h"

namespace hostfit {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kMiB = uint64_t{1} << 20;

// An x86-64 host with nothing in the way: 48-bit addresses, few mappings, no limits.
PoolFacts open_host() {
  PoolFacts f;
  f.virtual_address_bits = 48;
  f.overcommit_memory = 0;
  f.commit_headroom_bytes = 12 * kGiB;
  f.max_map_count = 65530;
  f.map_count = 100;
  f.page_size_bytes = 4096;
  return f;
}

PoolOptions wasm_options() {
  PoolOptions o;
  o.slot_count = 1000;
  o.max_slot_bytes = 4 * kGiB;
  o.guard_bytes = 32 * kMiB;
  return o;
}

TEST(ChooseTier, OpenHostGetsFullPoolOf1000Slots) {
  auto plan = choose_tier(open_host(), wasm_options());
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->tier, PoolTier::kPool);
  EXPECT_EQ(plan->slot_count, 1000u);
  EXPECT_EQ(plan->reservation_bytes, 32 * kMiB + 1000 * (4 * kGiB + 32 * kMiB));
  EXPECT_FALSE(plan->commit_budget_bytes.has_value());
  EXPECT_THAT(plan->reason, HasSubstr("fits"));
}

TEST(ChooseTier, RlimitAs8GiBFallsToOnDemandAndNamesRlimitAs) {
  PoolFacts f = open_host();
  f.rlimit_as = Limit::of(8 * kGiB);
  auto plan = choose_tier(f, wasm_options());
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kOnDemand);
  EXPECT_EQ(plan->reservation_bytes, 0u);
  EXPECT_EQ(plan->slot_count, 1000u);  // the cap on live instances
  EXPECT_THAT(plan->reason, HasSubstr("exceeds RLIMIT_AS (8 GiB)"));
}

TEST(ChooseTier, RlimitAs64GiBGivesSmallPoolOf13Slots) {
  PoolFacts f = open_host();
  f.rlimit_as = Limit::of(64 * kGiB);
  auto plan = choose_tier(f, wasm_options());
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kSmall);
  // 64 GiB less the 8 GiB margin holds 13 slots of 4 GiB + 32 MiB guard.
  EXPECT_EQ(plan->slot_count, 13u);
  EXPECT_LE(plan->reservation_bytes, 56 * kGiB);
  EXPECT_THAT(plan->reason, HasSubstr("RLIMIT_AS (64 GiB)"));
  EXPECT_THAT(plan->reason, HasSubstr("13 slots"));
}

TEST(ChooseTier, MeasuredAddressSpaceReplacesTheGuessedMargin) {
  PoolFacts f = open_host();
  f.rlimit_as = Limit::of(64 * kGiB);
  f.address_space_used_bytes = 2 * kGiB;
  auto plan = choose_tier(f, wasm_options());
  ASSERT_TRUE(plan);
  // 64 GiB less 2 GiB in use and 256 MiB of slack holds 15 slots of 4 GiB + 32 MiB guard.
  EXPECT_EQ(plan->slot_count, 15u);
  EXPECT_LE(plan->reservation_bytes + 2 * kGiB, 64 * kGiB);
  EXPECT_THAT(plan->reason, HasSubstr("RLIMIT_AS (64 GiB, 2 GiB in use)"));
}

TEST(ChooseTier, FewFreeMappingsGiveFewerSlotsAndNameMaxMapCount) {
  PoolFacts f = open_host();
  f.map_count = 65530 - 700;
  auto plan = choose_tier(f, wasm_options());
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kSmall);
  // 700 free, 256 kept for the process, 1 for the reservation, 2 per slot.
  EXPECT_EQ(plan->slot_count, (700u - 256 - 1) / 2);
  EXPECT_THAT(plan->reason, HasSubstr("vm.max_map_count"));
}

TEST(ChooseTier, MapCountOverTheLimitFallsToOnDemand) {
  PoolFacts f = open_host();
  f.map_count = 70000;
  auto plan = choose_tier(f, wasm_options());
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kOnDemand);
  EXPECT_THAT(plan->reason, HasSubstr("vm.max_map_count"));
  EXPECT_THAT(plan->reason, HasSubstr("not one slot fits"));
}

TEST(ChooseTier, ThirtyNineBitAddressesGiveSmallPoolWithinThreeQuartersOfUserSpace) {
  PoolFacts f = open_host();
  f.virtual_address_bits = 39;
  auto plan = choose_tier(f, wasm_options());
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kSmall);
  // User space 2^38 = 256 GiB, 3/4 of it 192 GiB.
  EXPECT_EQ(plan->slot_count, (192 * kGiB - 32 * kMiB) / (4 * kGiB + 32 * kMiB));
  EXPECT_LE(plan->reservation_bytes, 192 * kGiB);
  EXPECT_THAT(plan->reason, HasSubstr("38-bit user address space"));
}

// Found in a qemu guest with 5-level paging (tests/vm): cpuinfo says 57 bits virtual, yet mmap
// without a hint stays below 128 TiB, so the pool must plan within 47 bits, not 56.
TEST(ChooseTier, FiveLevelPagingStillPlansWithinTheDefault47BitMmapWindow) {
  PoolFacts f = open_host();
  f.virtual_address_bits = 57;
  PoolOptions o = wasm_options();
  o.slot_count = 30000;  // 30000 x (4 GiB + 32 MiB) = 118 TiB > 3/4 of 128 TiB
  auto plan = choose_tier(f, o);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kSmall);
  EXPECT_LE(plan->reservation_bytes, 96 * 1024 * kGiB);
  EXPECT_THAT(plan->reason, HasSubstr("47-bit user address space"));
}

TEST(ChooseTier, TightestConstraintBinds) {
  PoolFacts f = open_host();
  f.rlimit_as = Limit::of(64 * kGiB);  // 13 slots
  f.virtual_address_bits = 39;         // 47 slots
  auto plan = choose_tier(f, wasm_options());
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->slot_count, 13u);
  EXPECT_THAT(plan->reason, HasSubstr("RLIMIT_AS"));
  EXPECT_THAT(plan->reason, testing::Not(HasSubstr("address space (")));
}

TEST(ChooseTier, MemoryCgroupLimitSetsCommitBudgetButNotSlotCount) {
  PoolFacts f = open_host();
  f.cgroup_memory_limit = Limit::of(256 * kMiB);
  f.cgroup_memory_limit_cgroup = "/pool-test";
  f.cgroup_memory_usage_bytes = 16 * kMiB;
  auto plan = choose_tier(f, wasm_options());
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kPool);
  ASSERT_TRUE(plan->commit_budget_bytes);
  EXPECT_EQ(*plan->commit_budget_bytes, 240 * kMiB - 30 * kMiB);
  EXPECT_THAT(plan->commit_budget_source, HasSubstr("memory cgroup limit 256 MiB"));
  EXPECT_THAT(plan->commit_budget_source, HasSubstr("/pool-test"));
}

TEST(ChooseTier, TightestCommitBudgetWins) {
  PoolFacts f = open_host();
  f.cgroup_memory_limit = Limit::of(4 * kGiB);
  f.rlimit_data = Limit::of(1 * kGiB);
  auto plan = choose_tier(f, wasm_options());
  ASSERT_TRUE(plan);
  ASSERT_TRUE(plan->commit_budget_bytes);
  EXPECT_EQ(*plan->commit_budget_bytes, kGiB - kGiB / 8);
  EXPECT_THAT(plan->commit_budget_source, HasSubstr("RLIMIT_DATA"));

  PoolOptions capped = wasm_options();
  capped.commit_budget_bytes = 100 * kMiB;
  plan = choose_tier(f, capped);
  ASSERT_TRUE(plan);
  EXPECT_EQ(*plan->commit_budget_bytes, 100 * kMiB);
}

TEST(ChooseTier, StrictOvercommitBudgetsCommitHeadroomAndDecommitsByRemapping) {
  PoolFacts f = open_host();
  f.overcommit_memory = 2;
  f.commit_headroom_bytes = 800 * kMiB;
  auto plan = choose_tier(f, wasm_options());
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kPool);  // no-access reservations are not charged
  EXPECT_TRUE(plan->strict_overcommit);
  EXPECT_EQ(*plan->commit_budget_bytes, 700 * kMiB);
  EXPECT_THAT(plan->commit_budget_source, HasSubstr("strict overcommit"));
}

TEST(ChooseTier, HeuristicOvercommitHasNoCommitBudget) {
  auto plan = choose_tier(open_host(), wasm_options());
  ASSERT_TRUE(plan);
  EXPECT_FALSE(plan->strict_overcommit);
  EXPECT_FALSE(plan->commit_budget_bytes);
}

TEST(ChooseTier, ForcedModesAreObeyed) {
  PoolFacts f = open_host();
  f.rlimit_as = Limit::of(8 * kGiB);
  PoolOptions o = wasm_options();
  o.mode = PoolMode::kPool;
  auto plan = choose_tier(f, o);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kPool);
  EXPECT_EQ(plan->slot_count, 1000u);
  EXPECT_THAT(plan->reason, HasSubstr("forced"));

  o.mode = PoolMode::kSmall;
  plan = choose_tier(f, o);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kSmall);
  EXPECT_EQ(plan->slot_count, 1u);  // what fits RLIMIT_AS, never zero

  o.mode = PoolMode::kOnDemand;
  plan = choose_tier(open_host(), o);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kOnDemand);
  EXPECT_EQ(plan->reservation_bytes, 0u);
}

TEST(ChooseTier, SlotAndGuardRoundUpToPages) {
  PoolFacts f = open_host();
  f.page_size_bytes = 65536;
  PoolOptions o;
  o.slot_count = 4;
  o.max_slot_bytes = 100000;
  o.guard_bytes = 1;
  auto plan = choose_tier(f, o);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->slot_bytes, 131072u);
  EXPECT_EQ(plan->guard_bytes, 65536u);
  EXPECT_EQ(plan->reservation_bytes, 65536u + 4 * (131072u + 65536u));
}

TEST(ChooseTier, UnknownFactsDoNotShrinkThePool) {
  PoolFacts f;  // nothing known: the real probe decides
  auto plan = choose_tier(f, wasm_options());
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->tier, PoolTier::kPool);
  EXPECT_THAT(plan->reason, HasSubstr("RLIMIT_AS unlimited"));
}

TEST(ChooseTier, ZeroSlotsOrZeroSlotSizeIsAUsageError) {
  PoolOptions o = wasm_options();
  o.slot_count = 0;
  auto plan = choose_tier(open_host(), o);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().kind, ErrorKind::kUsage);
  EXPECT_THAT(plan.error().message, HasSubstr("slot count 0"));

  o = wasm_options();
  o.max_slot_bytes = 0;
  plan = choose_tier(open_host(), o);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().kind, ErrorKind::kUsage);

  o = wasm_options();
  o.max_slot_bytes = ~uint64_t{0};
  plan = choose_tier(open_host(), o);
  ASSERT_FALSE(plan);
  EXPECT_THAT(plan.error().message, HasSubstr("larger than any address space"));
}

TEST(ParsePoolMode, AcceptsTheFourModesAndNamesABadValue) {
  EXPECT_EQ(parse_pool_mode("auto").value(), PoolMode::kAuto);
  EXPECT_EQ(parse_pool_mode("pool").value(), PoolMode::kPool);
  EXPECT_EQ(parse_pool_mode("small").value(), PoolMode::kSmall);
  EXPECT_EQ(parse_pool_mode("on-demand").value(), PoolMode::kOnDemand);
  auto bad = parse_pool_mode("ondemand");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind, ErrorKind::kUsage);
  EXPECT_THAT(bad.error().message, HasSubstr("'ondemand'"));
  EXPECT_THAT(bad.error().message, HasSubstr("auto, pool, small, on-demand"));
}

TEST(PoolFactsFrom, TakesSoftLimitsHeadroomAndCgroupLimitFromTheProbe) {
  MemoryFacts m;
  m.rlimit_as = Fact<ResourceLimit>::of({Limit::of(8 * kGiB), Limit::unlimited()}, "limits");
  m.rlimit_data = Fact<ResourceLimit>::of({Limit::unlimited(), Limit::unlimited()}, "limits");
  m.virtual_address_bits = Fact<int>::of(39, "cpuinfo");
  m.overcommit_memory = Fact<int>::of(2, "overcommit_memory");
  m.commit_limit = Fact<uint64_t>::of(10 * kGiB, "meminfo");
  m.committed = Fact<uint64_t>::of(12 * kGiB, "meminfo");
  m.max_map_count = Fact<uint64_t>::of(65530, "max_map_count");
  m.map_count = Fact<uint64_t>::unknown("maps", "Permission denied");
  m.page_size = Fact<uint64_t>::of(16384, "sysconf");
  CgroupFacts c;
  c.memory_limit = Fact<Limit>::of(Limit::of(256 * kMiB), "memory.limit_in_bytes");
  c.memory_limit_cgroup = "/a";
  c.memory_usage = Fact<uint64_t>::of(kMiB, "memory.usage_in_bytes");

  const PoolFacts f = pool_facts_from(m, c);
  EXPECT_EQ(f.rlimit_as, Limit::of(8 * kGiB));
  EXPECT_TRUE(f.rlimit_data.is_unlimited());
  EXPECT_EQ(f.virtual_address_bits, 39);
  EXPECT_EQ(f.overcommit_memory, 2);
  EXPECT_EQ(f.commit_headroom_bytes, 0u);  // over the limit already
  EXPECT_EQ(f.cgroup_memory_limit, Limit::of(256 * kMiB));
  EXPECT_EQ(f.cgroup_memory_limit_cgroup, "/a");
  EXPECT_EQ(f.cgroup_memory_usage_bytes, kMiB);
  EXPECT_EQ(f.max_map_count, 65530u);
  EXPECT_FALSE(f.map_count);
  EXPECT_EQ(f.page_size_bytes, 16384u);
  EXPECT_THAT(f.unknown, testing::Contains(HasSubstr("map count: Permission denied")));
}

}  // namespace
}  // namespace hostfit
