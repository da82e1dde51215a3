// SlotPool on real mappings: acquire, grow, release, zeroing, guards, errors, tier fallback, the
// environment override, the log line and concurrent use.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "hostfit/pool.h"

namespace hostfit {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = kKiB * 1024;
constexpr uint64_t kGiB = kMiB * 1024;

PoolFacts open_host() {
  PoolFacts f;
  f.virtual_address_bits = 48;
  f.overcommit_memory = 0;
  f.max_map_count = 65530;
  f.map_count = 100;
  f.page_size_bytes = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return f;
}

PoolOptions small_slots(uint32_t count = 8) {
  PoolOptions o;
  o.slot_count = count;
  o.max_slot_bytes = 1 * kMiB;
  o.guard_bytes = 64 * kKiB;
  o.read_environment = false;
  return o;
}

std::unique_ptr<SlotPool> make_pool(const PoolOptions& o, const PoolFacts& f = open_host()) {
  auto pool = SlotPool::create(o, f);
  EXPECT_TRUE(pool) << (pool ? "" : pool.error().message);
  return pool ? std::move(*pool) : nullptr;
}

bool all_zero(const std::byte* p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    if (p[i] != std::byte{0}) return false;
  }
  return true;
}

bool mapped(const void* p) {
  unsigned char vec = 0;
  return ::mincore(const_cast<void*>(p), static_cast<size_t>(::sysconf(_SC_PAGESIZE)), &vec) == 0;
}

// Sets an environment variable for one test and restores the old value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(SlotPool, AcquiredSlotIsZeroWritableAndRoundedToPages) {
  auto pool = make_pool(small_slots());
  ASSERT_TRUE(pool);
  EXPECT_EQ(pool->tier(), PoolTier::kPool);
  auto slot = pool->acquire(10000);
  ASSERT_TRUE(slot) << slot.error().message;
  EXPECT_EQ(slot->size_bytes, 12288u);
  EXPECT_TRUE(all_zero(slot->base, slot->size_bytes));
  std::memset(slot->base, 0x7F, slot->size_bytes);
  EXPECT_EQ(slot->base[slot->size_bytes - 1], std::byte{0x7F});
  EXPECT_EQ(pool->stats().slots_in_use, 1u);
  EXPECT_EQ(pool->stats().committed_bytes, 12288u);
  ASSERT_TRUE(pool->release(*slot));
  EXPECT_EQ(pool->stats().slots_in_use, 0u);
  EXPECT_EQ(pool->stats().committed_bytes, 0u);
}

TEST(SlotPool, SlotsDoNotOverlapAndSitBetweenGuards) {
  auto pool = make_pool(small_slots(4));
  ASSERT_TRUE(pool);
  std::vector<Slot> slots;
  for (int i = 0; i < 4; ++i) {
    auto s = pool->acquire(1 * kMiB);
    ASSERT_TRUE(s);
    slots.push_back(*s);
  }
  std::sort(slots.begin(), slots.end(),
            [](const Slot& a, const Slot& b) { return a.base < b.base; });
  for (size_t i = 1; i < slots.size(); ++i) {
    EXPECT_EQ(slots[i].base - slots[i - 1].base, static_cast<ptrdiff_t>(1 * kMiB + 64 * kKiB));
  }
  for (auto& s : slots)
    ASSERT_TRUE(pool->release(s));
}

TEST(SlotPool, ReleasedSlotIsZeroForTheNextOwner) {
  for (uint64_t keep : {uint64_t{0}, 64 * kKiB, 1 * kMiB}) {
    PoolOptions o = small_slots(1);
    o.keep_resident_bytes = keep;
    auto pool = make_pool(o);
    ASSERT_TRUE(pool);
    auto first = pool->acquire(256 * kKiB);
    ASSERT_TRUE(first);
    ASSERT_TRUE(pool->grow(*first, 1 * kMiB));
    std::memset(first->base, 0xEE, first->size_bytes);
    std::byte* const base = first->base;
    ASSERT_TRUE(pool->release(*first));
    auto second = pool->acquire(1 * kMiB);  // the only slot: the same memory
    ASSERT_TRUE(second);
    EXPECT_EQ(second->base, base);
    EXPECT_TRUE(all_zero(second->base, second->size_bytes)) << "keep_resident_bytes=" << keep;
    ASSERT_TRUE(pool->release(*second));
  }
}

TEST(SlotPool, KeepResidentBytesStayCountedUntilTheSlotIsReusedSmaller) {
  PoolOptions o = small_slots(1);
  o.keep_resident_bytes = 64 * kKiB;
  auto pool = make_pool(o);
  ASSERT_TRUE(pool);
  auto slot = pool->acquire(512 * kKiB);
  ASSERT_TRUE(slot);
  ASSERT_TRUE(pool->release(*slot));
  EXPECT_EQ(pool->stats().committed_bytes, 64 * kKiB);
  slot = pool->acquire(4 * kKiB);
  ASSERT_TRUE(slot);
  EXPECT_EQ(slot->size_bytes, 4 * kKiB);
  EXPECT_EQ(pool->stats().committed_bytes, 64 * kKiB);
  ASSERT_TRUE(pool->release(*slot));
}

TEST(SlotPool, StrictOvercommitDecommitsByRemappingAndStillZeroes) {
  PoolFacts f = open_host();
  f.overcommit_memory = 2;
  f.commit_headroom_bytes = 1 * kGiB;
  auto pool = make_pool(small_slots(1), f);
  ASSERT_TRUE(pool);
  EXPECT_TRUE(pool->plan().strict_overcommit);
  auto slot = pool->acquire(1 * kMiB);
  ASSERT_TRUE(slot);
  std::memset(slot->base, 0x11, slot->size_bytes);
  ASSERT_TRUE(pool->release(*slot));
  slot = pool->acquire(1 * kMiB);
  ASSERT_TRUE(slot);
  EXPECT_TRUE(all_zero(slot->base, slot->size_bytes));
  ASSERT_TRUE(pool->release(*slot));
}

TEST(SlotPool, GrowCommitsInPlace) {
  auto pool = make_pool(small_slots(2));
  ASSERT_TRUE(pool);
  auto slot = pool->acquire(4 * kKiB);
  ASSERT_TRUE(slot);
  std::byte* const base = slot->base;
  slot->base[0] = std::byte{1};
  ASSERT_TRUE(pool->grow(*slot, 900 * kKiB));
  EXPECT_EQ(slot->base, base);
  EXPECT_EQ(slot->size_bytes, 900 * kKiB);
  EXPECT_EQ(slot->base[0], std::byte{1});
  EXPECT_TRUE(all_zero(slot->base + 4 * kKiB, 896 * kKiB));
  slot->base[900 * kKiB - 1] = std::byte{2};
  ASSERT_TRUE(pool->grow(*slot, 8 * kKiB));  // smaller: no change
  EXPECT_EQ(slot->size_bytes, 900 * kKiB);
  ASSERT_TRUE(pool->release(*slot));
}

TEST(SlotPoolDeathTest, AccessPastTheSlotSizeOrIntoTheGuardFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto pool = make_pool(small_slots(2));
  ASSERT_TRUE(pool);
  auto slot = pool->acquire(64 * kKiB);
  ASSERT_TRUE(slot);
  volatile std::byte* past = slot->base + 64 * kKiB;
  volatile std::byte* before = slot->base - 1;
  EXPECT_EXIT(*past = std::byte{1}, testing::KilledBySignal(SIGSEGV), "");
  EXPECT_EXIT(*before = std::byte{1}, testing::KilledBySignal(SIGSEGV), "");
  ASSERT_TRUE(pool->release(*slot));
}

TEST(SlotPool, FullPoolReturnsPoolExhaustedAndReusesAReleasedSlot) {
  auto pool = make_pool(small_slots(2));
  ASSERT_TRUE(pool);
  auto a = pool->acquire(4 * kKiB);
  auto b = pool->acquire(4 * kKiB);
  ASSERT_TRUE(a && b);
  auto c = pool->acquire(4 * kKiB);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().kind, PoolErrorKind::kPoolExhausted);
  EXPECT_THAT(c.error().message, HasSubstr("all 2 slots"));
  const uint32_t freed = b->id;
  ASSERT_TRUE(pool->release(*b));
  c = pool->acquire(4 * kKiB);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->id, freed);
  ASSERT_TRUE(pool->release(*a));
  ASSERT_TRUE(pool->release(*c));
}

TEST(SlotPool, MoreThanTheSlotSizeIsTooLarge) {
  auto pool = make_pool(small_slots(1));
  ASSERT_TRUE(pool);
  auto big = pool->acquire(1 * kMiB + 1);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().kind, PoolErrorKind::kTooLarge);
  EXPECT_THAT(big.error().message, HasSubstr("at most 1 MiB"));
  auto slot = pool->acquire(4 * kKiB);
  ASSERT_TRUE(slot);
  auto grown = pool->grow(*slot, 2 * kMiB);
  ASSERT_FALSE(grown);
  EXPECT_EQ(grown.error().kind, PoolErrorKind::kTooLarge);
  EXPECT_EQ(grown.error().to_error().kind, ErrorKind::kUsage);
  EXPECT_EQ(slot->size_bytes, 4 * kKiB);
  ASSERT_TRUE(pool->release(*slot));
}

TEST(SlotPool, CommitBeyondTheBudgetIsCommitFailedAndChangesNothing) {
  PoolOptions o = small_slots(4);
  o.commit_budget_bytes = 1 * kMiB;
  auto pool = make_pool(o);
  ASSERT_TRUE(pool);
  auto a = pool->acquire(768 * kKiB);
  ASSERT_TRUE(a);
  auto b = pool->acquire(512 * kKiB);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().kind, PoolErrorKind::kCommitFailed);
  EXPECT_THAT(b.error().message, HasSubstr("commit budget of 1 MiB"));
  EXPECT_EQ(b.error().to_error().kind, ErrorKind::kResource);
  auto grown = pool->grow(*a, 1 * kMiB + 0);
  ASSERT_TRUE(grown);  // exactly the budget
  EXPECT_EQ(pool->stats().committed_bytes, 1 * kMiB);
  EXPECT_EQ(pool->stats().slots_in_use, 1u);
  ASSERT_TRUE(pool->release(*a));
  b = pool->acquire(512 * kKiB);
  EXPECT_TRUE(b);
  ASSERT_TRUE(pool->release(*b));
}

TEST(SlotPool, ReleasingTwiceOrAForeignSlotIsInvalidSlot) {
  auto pool = make_pool(small_slots(2));
  ASSERT_TRUE(pool);
  auto slot = pool->acquire(4 * kKiB);
  ASSERT_TRUE(slot);
  Slot copy = *slot;
  ASSERT_TRUE(pool->release(*slot));
  EXPECT_EQ(slot->base, nullptr);  // the handle is reset
  auto again = pool->release(copy);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind, PoolErrorKind::kInvalidSlot);
  Slot foreign{nullptr, 4096, 99};
  EXPECT_EQ(pool->grow(foreign, 8192).error().kind, PoolErrorKind::kInvalidSlot);
}

TEST(SlotPool, OnDemandTierMapsEachSlotAndUnmapsItOnRelease) {
  PoolOptions o = small_slots(2);
  o.mode = PoolMode::kOnDemand;
  auto pool = make_pool(o);
  ASSERT_TRUE(pool);
  EXPECT_EQ(pool->tier(), PoolTier::kOnDemand);
  EXPECT_TRUE(pool->attempts().empty());
  auto slot = pool->acquire(64 * kKiB);
  ASSERT_TRUE(slot);
  std::byte* const base = slot->base;
  std::memset(base, 0x33, 64 * kKiB);
  ASSERT_TRUE(pool->grow(*slot, 128 * kKiB));
  EXPECT_TRUE(all_zero(base + 64 * kKiB, 64 * kKiB));
  auto second = pool->acquire(4 * kKiB);
  ASSERT_TRUE(second);
  EXPECT_FALSE(pool->acquire(4 * kKiB));  // slot_count caps live instances
  ASSERT_TRUE(pool->release(*slot));
  EXPECT_FALSE(mapped(base));
  ASSERT_TRUE(pool->release(*second));
}

TEST(SlotPool, PoolTierKeepsItsReservationMappedAfterRelease) {
  auto pool = make_pool(small_slots(1));
  ASSERT_TRUE(pool);
  auto slot = pool->acquire(4 * kKiB);
  ASSERT_TRUE(slot);
  std::byte* const base = slot->base;
  ASSERT_TRUE(pool->release(*slot));
  EXPECT_TRUE(mapped(base));
}

TEST(SlotPool, HostfitPoolEnvironmentForcesATier) {
  ScopedEnv env(std::string(kPoolEnvVar).c_str(), "on-demand");
  PoolOptions o = small_slots(2);
  o.read_environment = true;
  auto pool = make_pool(o);
  ASSERT_TRUE(pool);
  EXPECT_EQ(pool->tier(), PoolTier::kOnDemand);
  EXPECT_TRUE(pool->forced());
  EXPECT_THAT(pool->plan().reason, HasSubstr("forced by HOSTFIT_POOL=on-demand"));

  o.read_environment = false;  // the caller opted out
  pool = make_pool(o);
  ASSERT_TRUE(pool);
  EXPECT_EQ(pool->tier(), PoolTier::kPool);
}

TEST(SlotPool, InvalidHostfitPoolIsAUsageErrorNamingTheValue) {
  ScopedEnv env(std::string(kPoolEnvVar).c_str(), "huge");
  PoolOptions o = small_slots(2);
  o.read_environment = true;
  auto pool = SlotPool::create(o, open_host());
  ASSERT_FALSE(pool);
  EXPECT_EQ(pool.error().kind, ErrorKind::kUsage);
  EXPECT_THAT(pool.error().message, HasSubstr("HOSTFIT_POOL='huge'"));
}

TEST(SlotPool, CreationLogsOneInfoLineWithTierAndSizes) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("pool-test", sink));
  {
    PoolOptions o = small_slots(3);
    auto pool = make_pool(o);
    ASSERT_TRUE(pool);
    PoolFacts f = open_host();
    f.rlimit_as = Limit::of(2 * kGiB);
    o.max_slot_bytes = 1 * kGiB;
    pool = make_pool(o, f);
    ASSERT_TRUE(pool);
  }
  spdlog::set_default_logger(previous);
  const std::string log = out.str();
  EXPECT_THAT(log, HasSubstr("[info] slot pool: tier=pool slots=3 slot=1MiB guard=64KiB "
                             "reserved=3.2MiB\n"));
  EXPECT_THAT(log, HasSubstr("[info] slot pool: tier=on-demand slots=3 slot=1GiB guard=64KiB: "
                             "a 3 GiB reservation for 3 slots of 1 GiB exceeds RLIMIT_AS (2 GiB)"));
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 2);
}

TEST(SlotPool, ThisHostGetsTheFullPoolFor1000SlotsOf4GiB) {
  PoolOptions o;
  o.read_environment = false;
  const PoolFacts facts = probe_pool_facts(Sysroot("/"));
  if (!facts.rlimit_as.is_unlimited() || (facts.virtual_address_bits.value_or(48) < 47)) {
    GTEST_SKIP() << "this machine limits the address space (RLIMIT_AS or address bits)";
  }
  auto pool = SlotPool::create(o, facts);
  ASSERT_TRUE(pool) << pool.error().message;
  EXPECT_EQ((*pool)->tier(), PoolTier::kPool) << (*pool)->plan().reason;
  EXPECT_EQ((*pool)->plan().slot_count, 1000u);
  ASSERT_EQ((*pool)->attempts().size(), 1u);
  EXPECT_TRUE((*pool)->attempts()[0].ok);
  auto slot = (*pool)->acquire(64 * kKiB);
  ASSERT_TRUE(slot);
  ASSERT_TRUE((*pool)->grow(*slot, 4 * kGiB));  // reserved for; committing is not touching
  slot->base[4 * kGiB - 1] = std::byte{9};
  ASSERT_TRUE((*pool)->release(*slot));
}

// The facts say the pool fits, but a 64 GiB RLIMIT_AS set behind their back makes the real probe
// fail: creation halves the slot count until a reservation works.
TEST(SlotPool, FailedProbeFallsBackToASmallPoolThatReallyReserves) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit limit{64 * kGiB, 64 * kGiB};
    if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(10);
    PoolOptions o;
    o.read_environment = false;
    auto pool = SlotPool::create(o, open_host());
    if (!pool) ::_exit(11);
    const auto& attempts = (*pool)->attempts();
    if ((*pool)->tier() != PoolTier::kSmall) ::_exit(12);
    if (attempts.size() < 2 || attempts.front().ok || !attempts.back().ok) ::_exit(13);
    if (attempts.front().failure.find("Cannot allocate memory") == std::string::npos) ::_exit(14);
    if ((*pool)->plan().reason.find("probe of pool failed") == std::string::npos) ::_exit(15);
    if ((*pool)->plan().reservation_bytes > 64 * kGiB) ::_exit(16);
    auto slot = (*pool)->acquire(64 * kKiB);
    if (!slot || !(*pool)->release(*slot)) ::_exit(17);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's check that failed (see the test)";
}

TEST(SlotPool, ProbeWithNoTimeLeftFallsToOnDemand) {
  PoolOptions o = small_slots(8);
  o.probe_timeout = std::chrono::milliseconds(0);
  auto pool = make_pool(o);
  ASSERT_TRUE(pool);
  EXPECT_EQ(pool->tier(), PoolTier::kOnDemand);
  ASSERT_EQ(pool->attempts().size(), 1u);
  EXPECT_FALSE(pool->attempts()[0].ok);
  EXPECT_THAT(pool->plan().reason, HasSubstr("no time left"));
  auto slot = pool->acquire(4 * kKiB);
  ASSERT_TRUE(slot);
  ASSERT_TRUE(pool->release(*slot));
}

// Two threads take slots, fill them with their id, check nobody else wrote there and that the slot
// came back zeroed, and release.
struct RoundCounts {
  int overlaps = 0, stale = 0, torn = 0, errors = 0;
};

RoundCounts race_two_threads(SlotPool& pool, uint32_t slot_count, uint64_t slot_bytes,
                             int rounds_per_thread) {
  std::vector<std::atomic<int>> owner(slot_count);
  std::atomic<int> overlaps{0}, stale{0}, torn{0}, errors{0};
  const auto work = [&](int me) {
    const std::byte mark{static_cast<unsigned char>(me)};
    for (int round = 0; round < rounds_per_thread; ++round) {
      auto slot = pool.acquire(slot_bytes);
      if (!slot) {
        ++errors;
        continue;
      }
      int expected = 0;
      if (!owner[slot->id].compare_exchange_strong(expected, me)) ++overlaps;
      if (!all_zero(slot->base, slot->size_bytes)) ++stale;
      std::memset(slot->base, static_cast<int>(mark), slot->size_bytes);
      for (uint64_t i = 0; i < slot->size_bytes; i += 256) {
        if (slot->base[i] != mark) {
          ++torn;
          break;
        }
      }
      owner[slot->id].store(0);
      if (!pool.release(*slot)) ++errors;
    }
  };
  std::thread a(work, 1), b(work, 2);
  a.join();
  b.join();
  return {overlaps.load(), stale.load(), torn.load(), errors.load()};
}

// 10^6 rounds in all. The slots are kept resident, so release zeroes them with a store and the
// rounds are bounded by the pool's own locking, not by page-table changes.
TEST(SlotPool, TwoThreadsMillionRoundsNeverShareASlotOrSeeStaleData) {
  PoolOptions o;
  o.slot_count = 4;
  o.max_slot_bytes = 8 * kKiB;
  o.guard_bytes = 4 * kKiB;
  o.keep_resident_bytes = 8 * kKiB;
  o.read_environment = false;
  auto pool = make_pool(o);
  ASSERT_TRUE(pool);
  const RoundCounts c = race_two_threads(*pool, o.slot_count, 8 * kKiB, 500'000);
  EXPECT_EQ(c.overlaps, 0);
  EXPECT_EQ(c.stale, 0);
  EXPECT_EQ(c.torn, 0);
  EXPECT_EQ(c.errors, 0);
  EXPECT_EQ(pool->stats().slots_in_use, 0u);
}

// The same race where every release decommits a page (MADV_DONTNEED + PROT_NONE) and every acquire
// commits it again; each round changes page tables, so fewer rounds.
TEST(SlotPool, TwoThreadsDecommittingSlotsNeverShareASlotOrSeeStaleData) {
  PoolOptions o;
  o.slot_count = 4;
  o.max_slot_bytes = 8 * kKiB;
  o.guard_bytes = 4 * kKiB;
  o.keep_resident_bytes = 4 * kKiB;
  o.read_environment = false;
  auto pool = make_pool(o);
  ASSERT_TRUE(pool);
  const RoundCounts c = race_two_threads(*pool, o.slot_count, 8 * kKiB, 20'000);
  EXPECT_EQ(c.overlaps, 0);
  EXPECT_EQ(c.stale, 0);
  EXPECT_EQ(c.torn, 0);
  EXPECT_EQ(c.errors, 0);
  // Only the kept first page of each slot that was used stays committed.
  EXPECT_GE(pool->stats().committed_bytes, 4 * kKiB);
  EXPECT_LE(pool->stats().committed_bytes, 4 * 4 * kKiB);
  EXPECT_EQ(pool->stats().committed_bytes % (4 * kKiB), 0u);
}

}  // namespace
}  // namespace hostfit
