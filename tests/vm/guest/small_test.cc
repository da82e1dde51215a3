// Small guests and sysctls that cannot be changed on a shared machine: a 1 GiB guest, strict
// overcommit (vm.overcommit_memory=2) and a lowered vm.max_map_count. hostfit pool-check and
// SlotPool must pick a tier that really works, a forced tier that cannot be had must fail with its
// error (never take the guest down), and plan and SlotPool must stay inside vm.max_map_count.
#include <sys/mman.h>
#include <sys/wait.h>

#include <cstring>

#include "guest.h"
#include "hostfit/pool.h"

namespace hostfit::vm {
namespace {

uint64_t proc_sys(const std::string& key) {
  return std::stoull(slurp("/proc/sys/" + key));
}

class SmallGuest : public ::testing::Test {
 protected:
  void SetUp() override { HOSTFIT_REQUIRE_GUEST(); }
};

TEST_F(SmallGuest, PoolCheckPicksATierThatWorksAndSlotPoolStartsInIt) {
  const auto check = hostfit_json({"pool-check"});
  ASSERT_TRUE(check.contains("tier")) << check.dump();
  PoolOptions options;
  options.read_environment = false;
  auto pool = SlotPool::create(options);
  ASSERT_TRUE(pool.has_value()) << pool.error().message;
  EXPECT_EQ(to_string((*pool)->tier()), check["tier"].get<std::string>()) << check.dump();
  // Every slot of the chosen size works: acquire, write all of it, release.
  std::vector<Slot> slots;
  for (int i = 0; i < 8; ++i) {
    auto slot = (*pool)->acquire(uint64_t{1} << 20);
    ASSERT_TRUE(slot.has_value()) << slot.error().message;
    std::memset(slot->base, 0x5a, slot->size_bytes);
    slots.push_back(*slot);
  }
  for (auto& s : slots)
    EXPECT_TRUE((*pool)->release(s).has_value());
}

// Under strict overcommit and 1 GiB the full pool still works: its reservation is PROT_NONE, which
// the kernel does not charge to the commit limit even with vm.overcommit_memory=2. What takes the
// pool away on such guests is an address-space limit, as a hosting platform sets one: there the
// forced tier must fail with its error, and the automatic choice must still start.
TEST_F(SmallGuest, ForcedPoolTierFailsWithItsErrorAndTheGuestStaysUp) {
  const auto unlimited = hostfit({"pool-check"}, {"HOSTFIT_POOL=pool"});
  EXPECT_EQ(unlimited.exit_code, 0) << unlimited.err;
  const std::vector<std::string> limited = {"prlimit", "--as=17179869184", "--", HOSTFIT_BIN,
                                            "pool-check"};
  const auto forced = fixtures::run_command(limited, {"HOSTFIT_POOL=pool"});
  EXPECT_EQ(forced.exit_code, 1) << forced.err;
  ASSERT_TRUE(forced.err.starts_with("hostfit: ")) << forced.err;
  EXPECT_EQ(std::count(forced.err.begin(), forced.err.end(), '\n'), 1) << forced.err;
  EXPECT_NE(forced.err.find("HOSTFIT_POOL=pool forces the pool tier, but cannot reserve"),
            std::string::npos)
      << forced.err;
  // The guest is still fine, and the automatic choice under the same limit starts a smaller tier.
  const auto automatic = fixtures::run_command(limited);
  EXPECT_EQ(automatic.exit_code, 0) << automatic.err;
  EXPECT_NE(automatic.out.find("on-demand"), std::string::npos) << automatic.out;
  EXPECT_FALSE(slurp("/proc/meminfo").empty());
}

// What plan counts as address space is what mmap really gives: half of it can be reserved, twice
// it cannot. With -cpu max the guest has 5-level paging (57-bit addresses), where an unhinted mmap
// still stops at 128 TiB.
TEST_F(SmallGuest, AddressSpaceBudgetIsWhatMmapReallyGives) {
  const auto plan = hostfit_json({"plan", "--runtime", "v8"});
  const auto& as = plan["budgets"]["address_space"];
  ASSERT_EQ(as["state"], "known") << as.dump();
  const uint64_t capacity = as["capacity"].get<uint64_t>();
  const auto reserve = [](uint64_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    ::munmap(p, bytes);
    return true;
  };
  EXPECT_TRUE(reserve(capacity / 2)) << as.dump();
  EXPECT_FALSE(reserve(capacity * 2)) << as.dump();
}

class Sysctl : public ::testing::Test {
 protected:
  void SetUp() override {
    HOSTFIT_REQUIRE_GUEST();
    if (env_or("HOSTFIT_VM_SYSCTLS").find("vm.max_map_count") == std::string::npos)
      GTEST_SKIP() << "shape " << shape() << " keeps the default vm.max_map_count";
  }
};

TEST_F(Sysctl, PlanCountsMappingsAgainstTheLoweredMaxMapCount) {
  const uint64_t max_maps = proc_sys("vm/max_map_count");
  const auto plan = hostfit_json({"plan", "--runtime", "v8", "--plugins", "8"});
  ASSERT_TRUE(plan.contains("budgets")) << plan.dump();
  const auto& maps = plan["budgets"]["mappings"];
  EXPECT_EQ(maps["state"], "known") << maps.dump();
  EXPECT_EQ(maps["capacity"], max_maps) << maps.dump();
  EXPECT_NE(maps["source"].get<std::string>().find("vm.max_map_count"), std::string::npos);
  // The instances planned fit in the mappings budget.
  EXPECT_LE(plan["instances"].get<uint64_t>(), maps["instances"].get<uint64_t>()) << plan.dump();
  // A request the mappings cannot hold is refused, naming the sysctl, instead of planned anyway.
  const auto too_many =
      hostfit({"plan", "--runtime", "v8", "--plugins", "1000", "--instance-resident", "64Ki"});
  EXPECT_EQ(too_many.exit_code, 1) << too_many.out;
  EXPECT_NE(too_many.err.find("vm.max_map_count"), std::string::npos) << too_many.err;
}

TEST_F(Sysctl, SlotPoolStaysInsideTheLoweredMaxMapCount) {
  const uint64_t max_maps = proc_sys("vm/max_map_count");
  PoolOptions options;
  options.read_environment = false;
  options.max_slot_bytes = uint64_t{64} << 20;
  options.guard_bytes = uint64_t{64} << 10;
  options.slot_count = static_cast<uint32_t>(max_maps);  // more slots than mappings allow
  auto pool = SlotPool::create(options);
  ASSERT_TRUE(pool.has_value()) << pool.error().message;
  const uint32_t slot_count = (*pool)->plan().slot_count;
  EXPECT_LT(slot_count, max_maps) << (*pool)->plan().reason;
  EXPECT_NE((*pool)->plan().reason.find("vm.max_map_count"), std::string::npos)
      << (*pool)->plan().reason;
  // Every slot the pool promised can be held at once, even with each one split into its own
  // mapping by mprotect.
  std::vector<Slot> slots;
  for (uint32_t i = 0; i < slot_count; ++i) {
    auto slot = (*pool)->acquire(4096);
    ASSERT_TRUE(slot.has_value()) << "slot " << i << " of " << slot_count << ": "
                                  << slot.error().message;
    slot->base[0] = std::byte{1};
    slots.push_back(*slot);
  }
  for (auto& s : slots)
    EXPECT_TRUE((*pool)->release(s).has_value());
}

}  // namespace
}  // namespace hostfit::vm
