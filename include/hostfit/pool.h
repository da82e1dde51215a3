// hostfit pool: SlotPool, a slot allocator for sandbox memories (WebAssembly linear memories and
// the like) that starts on every host: a full pool where the address space allows it, a smaller
// pool where it does not, and one mapping per instance where nothing else works.
//
//   hostfit::PoolOptions options;                 // 1,000 slots of 4 GiB, 32 MiB guards
//   auto pool = hostfit::SlotPool::create(options);
//   if (!pool) return pool.error();               // an Error: bad options, or no tier at all
//   auto slot = (*pool)->acquire(64 << 10);       // 64 KiB accessible at slot->base
//   ...                                           // (*pool)->grow(*slot, 1 << 20)
//   (*pool)->release(*slot);                      // the next owner sees zeroes
//
// The tier is chosen from cheap facts (resource limits, address bits, overcommit, commit headroom,
// the memory cgroup limit, vm.max_map_count headroom) and confirmed by a real, time-bounded probe.
// HOSTFIT_POOL=auto|pool|small|on-demand overrides the choice. Creation logs one INFO line.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hostfit/core.h"
#include "hostfit/probe.h"

namespace hostfit {

// The environment variable that forces a tier.
inline constexpr std::string_view kPoolEnvVar = "HOSTFIT_POOL";
// A small pool of fewer slots than this saves too little over on-demand mappings to hold address
// space for; below it the choice falls to on-demand.
inline constexpr uint32_t kMinSmallPoolSlots = 8;

// Best first. kPool: every slot reserved up front. kSmall: fewer slots, all reserved up front.
// kOnDemand: each acquire maps (and each release unmaps) its own reservation.
enum class PoolTier { kPool, kSmall, kOnDemand };
const char* to_string(PoolTier tier);  // "pool" | "small" | "on-demand"

// What the caller (or HOSTFIT_POOL) asks for: kAuto picks the best tier that works here.
enum class PoolMode { kAuto, kPool, kSmall, kOnDemand };
const char* to_string(PoolMode mode);  // "auto" | "pool" | "small" | "on-demand"
// "auto", "pool", "small", "on-demand"; anything else is a kUsage error naming the value.
Result<PoolMode> parse_pool_mode(std::string_view text);

struct PoolOptions {
  uint32_t slot_count = 1000;                     // slots wanted (on-demand: live instances)
  uint64_t max_slot_bytes = uint64_t{4} << 30;    // the most one slot can grow to
  uint64_t guard_bytes = uint64_t{32} << 20;      // no-access bytes before and after each slot
  uint64_t keep_resident_bytes = 0;               // kept committed (and zeroed) across release
  PoolMode mode = PoolMode::kAuto;                // HOSTFIT_POOL, when set, overrides this
  bool read_environment = true;                   // honour HOSTFIT_POOL
  bool transparent_huge_pages = false;            // false: MADV_NOHUGEPAGE on every slot
  std::optional<uint64_t> commit_budget_bytes;    // a further cap on committed bytes
  std::chrono::milliseconds probe_timeout{3000};  // bound on the whole tier probe
};

// The cheap facts the tier is chosen from, taken from the probe. An unknown fact is left empty
// (and named in `unknown`); the real probe then has the last word.
struct PoolFacts {
  Limit rlimit_as;                                // soft RLIMIT_AS
  Limit rlimit_data;                              // soft RLIMIT_DATA
  std::optional<int> virtual_address_bits;        // e.g. 48 (x86-64), from /proc/cpuinfo
  std::optional<int> overcommit_memory;           // vm.overcommit_memory: 0, 1, 2 (strict)
  std::optional<uint64_t> commit_headroom_bytes;  // CommitLimit - Committed_AS (0 when over)
  Limit cgroup_memory_limit;                      // min over the memory cgroup chain
  std::string cgroup_memory_limit_cgroup;         // the cgroup that sets it
  std::optional<uint64_t> cgroup_memory_usage_bytes;
  std::optional<uint64_t> max_map_count;             // vm.max_map_count
  std::optional<uint64_t> map_count;                 // mappings this process has now
  std::optional<uint64_t> address_space_used_bytes;  // VmSize now: what RLIMIT_AS already counts
  uint64_t page_size_bytes = 4096;
  std::vector<std::string> unknown;  // "vm.max_map_count: <why>", for facts that could not be read
};

// Picks the pool's facts out of a probe's memory and cgroup facts.
PoolFacts pool_facts_from(const MemoryFacts& memory, const CgroupFacts& cgroups);
// probe_memory + probe_cgroups for this process, read through root.
PoolFacts probe_pool_facts(const Sysroot& root);

// What choose_tier decided, before any probe.
struct TierPlan {
  PoolTier tier = PoolTier::kPool;
  uint32_t slot_count = 0;         // slots in the pool; for kOnDemand the cap on live instances
  uint64_t slot_bytes = 0;         // max_slot_bytes rounded up to pages
  uint64_t guard_bytes = 0;        // rounded up to pages
  uint64_t reservation_bytes = 0;  // guard + slot_count * (slot + guard); 0 for kOnDemand
  std::optional<uint64_t> commit_budget_bytes;  // nullopt: no budget beyond the kernel's
  std::string commit_budget_source;             // "memory cgroup limit 256 MiB of /a minus ..."
  bool strict_overcommit = false;               // decommit by remapping (returns the charge)
  std::string reason;                           // why this tier, naming the binding fact
};

// The pure decision: the best tier and slot count the facts allow. The pool's reservation takes at
// most 3/4 of the user address space and RLIMIT_AS less a margin, and leaves 256 mappings of
// vm.max_map_count for the rest of the process; a small pool needs at least 8 slots. A forced mode
// is obeyed (kSmall still fits the budgets). Errors: kUsage for options that make no pool (zero
// slots, zero slot size).
Result<TierPlan> choose_tier(const PoolFacts& facts, const PoolOptions& options);

// Why a pool operation failed. kPoolExhausted: every slot is in use (or no mapping could be had for
// one). kCommitFailed: the commit budget or the kernel refused memory. kTooLarge: more than
// max_slot_bytes. kInvalidSlot: a slot this pool did not hand out, or one already released.
enum class PoolErrorKind { kPoolExhausted, kCommitFailed, kTooLarge, kInvalidSlot };
const char* to_string(PoolErrorKind kind);  // "PoolExhausted", "CommitFailed", ...

struct PoolError {
  PoolErrorKind kind = PoolErrorKind::kCommitFailed;
  std::string message;  // names the sizes, the budget or limit involved, and the errno text
  int sys_errno = 0;
  Error to_error() const;  // kResource (kUsage for kTooLarge and kInvalidSlot)
};
template <class T>
using PoolResult = std::expected<T, PoolError>;
using PoolStatus = std::expected<void, PoolError>;

// One acquired slot: size_bytes accessible bytes at base, zero on acquire; a fault past them until
// grown. The handle is a value: pass it back to grow and release.
struct Slot {
  std::byte* base = nullptr;
  uint64_t size_bytes = 0;
  uint32_t id = 0;  // index in the pool, below slot_count
};

// One tier tried while creating a pool, and what came of it.
struct ProbeAttempt {
  PoolTier tier = PoolTier::kPool;
  uint32_t slot_count = 0;
  uint64_t reservation_bytes = 0;
  bool ok = false;
  std::string failure;  // "reserving 3.97 TiB: Cannot allocate memory", "timed out", ...
  double elapsed_ms = 0;
};

struct PoolStats {
  uint32_t slots_in_use = 0;
  uint64_t committed_bytes = 0;  // accessible plus kept-resident bytes over all slots
};

// The allocator. All member functions are safe to call from several threads at once; a slot is
// used by one owner at a time. Acquire and release reuse a free slot in O(1).
class SlotPool {
 public:
  // Reads HOSTFIT_POOL and the host's facts, chooses a tier, probes it (bounded by
  // options.probe_timeout) and falls back tier by tier. Errors: kUsage for bad options or a bad
  // HOSTFIT_POOL; kResource when a forced tier cannot be had.
  static Result<std::unique_ptr<SlotPool>> create(const PoolOptions& options);
  // As create(options), with facts the caller already has (tests, or a caller that probed).
  static Result<std::unique_ptr<SlotPool>> create(const PoolOptions& options,
                                                  const PoolFacts& facts);
  // Unmaps everything, including slots still acquired.
  ~SlotPool();
  SlotPool(const SlotPool&) = delete;
  SlotPool& operator=(const SlotPool&) = delete;

  // A free slot with initial_bytes (rounded up to pages) accessible and zero.
  PoolResult<Slot> acquire(uint64_t initial_bytes);
  // Commits more of the slot in place (base does not move); a smaller size is a no-op.
  PoolStatus grow(Slot& slot, uint64_t new_bytes);
  // Decommits beyond keep_resident_bytes, zeroes the kept part and frees the slot; resets the
  // handle. On a decommit failure the slot is retired (never handed out again) and the error says
  // so.
  PoolStatus release(Slot& slot);

  const TierPlan& plan() const { return plan_; }  // tier, slot count, budget, reason
  PoolTier tier() const { return plan_.tier; }
  const std::vector<ProbeAttempt>& attempts() const { return attempts_; }
  bool forced() const { return forced_; }
  PoolStats stats() const;

 private:
  struct State;
  SlotPool(TierPlan plan, PoolOptions options);

  TierPlan plan_;
  PoolOptions options_;
  std::vector<ProbeAttempt> attempts_;
  bool forced_ = false;
  std::unique_ptr<State> state_;
};

}  // namespace hostfit
