// The pure tier decision: from cheap facts and options to a tier, a slot count, a commit budget and
// the reason, with no system calls.
#include <algorithm>
#include <bit>
#include <limits>

#include "hostfit/pool.h"

namespace hostfit {
namespace {

// The share of the user address space a pool may take: heap, stacks, libraries and ASLR gaps need
// the rest.
constexpr uint64_t kAddressSpaceShareNum = 3;
constexpr uint64_t kAddressSpaceShareDen = 4;
// RLIMIT_AS also covers what the process has mapped already. When VmSize is unknown, keep this
// much (or 1/8 of the limit, whichever is more) for it; when it is known, keep VmSize plus a
// slack for what the process maps next (thread stacks, malloc arenas).
constexpr uint64_t kAddressSpaceMarginBytes = uint64_t{1} << 30;
constexpr uint64_t kAddressSpaceSlackBytes = uint64_t{256} << 20;
// Mappings kept for the rest of the process (libraries, thread stacks, malloc arenas).
constexpr uint64_t kMapsKeptForProcess = 256;
// A partly committed slot splits its part of the reservation into three mappings: two more.
constexpr uint64_t kMapsPerSlot = 2;
// Commit budgets keep 1/8 of the room for the rest of the process.
constexpr uint64_t kCommitMarginDen = 8;
// Slots larger than this cannot be placed in any current address space (57-bit x86 has 64 PiB).
constexpr uint64_t kMaxSlotBytes = uint64_t{1} << 56;

uint64_t saturating_mul(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) {
    return std::numeric_limits<uint64_t>::max();
  }
  return a * b;
}

uint64_t saturating_add(uint64_t a, uint64_t b) {
  return b > std::numeric_limits<uint64_t>::max() - a ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

uint64_t round_up(uint64_t value, uint64_t page) {
  return saturating_mul((value + page - 1) / page, page);
}

uint64_t less_margin(uint64_t room) {
  return room - room / kCommitMarginDen;
}

std::string plural(uint64_t n, std::string_view one) {
  return std::to_string(n) + " " + std::string(one) + (n == 1 ? "" : "s");
}

// One fact that bounds how many slots fit.
struct Bound {
  uint64_t slots;
  std::string name;  // "RLIMIT_AS (8 GiB)"
};

}  // namespace

const char* to_string(PoolTier tier) {
  switch (tier) {
    case PoolTier::kPool:
      return "pool";
    case PoolTier::kSmall:
      return "small";
    case PoolTier::kOnDemand:
      return "on-demand";
  }
  return "pool";
}

const char* to_string(PoolMode mode) {
  switch (mode) {
    case PoolMode::kAuto:
      return "auto";
    case PoolMode::kPool:
      return "pool";
    case PoolMode::kSmall:
      return "small";
    case PoolMode::kOnDemand:
      return "on-demand";
  }
  return "auto";
}

Result<PoolMode> parse_pool_mode(std::string_view text) {
  const std::string_view t = trim(text);
  if (t == "auto") return PoolMode::kAuto;
  if (t == "pool") return PoolMode::kPool;
  if (t == "small") return PoolMode::kSmall;
  if (t == "on-demand") return PoolMode::kOnDemand;
  return fail(ErrorKind::kUsage, "pool mode '" + std::string(text.substr(0, 64)) +
                                     "' is not one of auto, pool, small, on-demand");
}

Result<TierPlan> choose_tier(const PoolFacts& facts, const PoolOptions& options) {
  if (options.slot_count == 0) {
    return fail(ErrorKind::kUsage, "slot count 0: a pool needs at least 1 slot");
  }
  if (options.max_slot_bytes == 0) {
    return fail(ErrorKind::kUsage, "slot size 0: a slot needs at least 1 byte");
  }
  if (options.max_slot_bytes > kMaxSlotBytes || options.guard_bytes > kMaxSlotBytes) {
    return fail(ErrorKind::kUsage, "slot size " + format_bytes(options.max_slot_bytes) +
                                       " or guard " + format_bytes(options.guard_bytes) +
                                       " is larger than any address space (at most " +
                                       format_bytes(kMaxSlotBytes) + ")");
  }
  const uint64_t page = std::has_single_bit(facts.page_size_bytes) ? facts.page_size_bytes : 4096;

  TierPlan plan;
  plan.slot_bytes = round_up(options.max_slot_bytes, page);
  plan.guard_bytes = round_up(options.guard_bytes, page);
  plan.strict_overcommit = facts.overcommit_memory == 2;
  const uint64_t stride = plan.slot_bytes + plan.guard_bytes;
  const uint64_t wanted = options.slot_count;
  const auto reservation = [&](uint64_t slots) {
    return saturating_add(plan.guard_bytes, saturating_mul(slots, stride));
  };
  const auto slots_within = [&](uint64_t bytes) {
    return bytes < plan.guard_bytes ? 0 : (bytes - plan.guard_bytes) / stride;
  };

  std::vector<Bound> bounds;
  std::vector<std::string> room;  // what the full pool fits within, for the reason
  if (!facts.rlimit_as.is_unlimited()) {
    const uint64_t limit = *facts.rlimit_as.value;
    const uint64_t margin =
        facts.address_space_used_bytes
            ? saturating_add(*facts.address_space_used_bytes, kAddressSpaceSlackBytes)
            : std::max(kAddressSpaceMarginBytes, limit / 8);
    std::string name = "RLIMIT_AS (" + format_bytes(limit);
    if (facts.address_space_used_bytes) {
      name += ", " + format_bytes(*facts.address_space_used_bytes) + " in use";
    }
    bounds.push_back({slots_within(limit > margin ? limit - margin : 0), name + ")"});
  } else {
    room.push_back("RLIMIT_AS unlimited");
  }
  if (facts.virtual_address_bits && *facts.virtual_address_bits >= 32 &&
      *facts.virtual_address_bits <= 64) {
    // The kernel gives user space the lower half of the virtual address space, and without an
    // mmap hint at most 47 bits of it (see user_address_bits).
    const int user_bits = user_address_bits(*facts.virtual_address_bits);
    const uint64_t user_bytes = uint64_t{1} << user_bits;
    const uint64_t usable = user_bytes / kAddressSpaceShareDen * kAddressSpaceShareNum;
    const std::string name = "3/4 of the " + std::to_string(user_bits) +
                             "-bit user address space (" + format_bytes(usable) + ")";
    bounds.push_back({slots_within(usable), name});
    room.push_back(name);
  }
  if (facts.max_map_count && facts.map_count) {
    const uint64_t free_maps =
        *facts.max_map_count > *facts.map_count ? *facts.max_map_count - *facts.map_count : 0;
    const uint64_t usable = free_maps > kMapsKeptForProcess ? free_maps - kMapsKeptForProcess : 0;
    const std::string name = "vm.max_map_count (" + std::to_string(*facts.max_map_count) + ", " +
                             std::to_string(*facts.map_count) + " mappings in use)";
    bounds.push_back({usable >= 1 ? (usable - 1) / kMapsPerSlot : 0, name});
    room.push_back(plural(free_maps, "free mapping") + " under " + name);
  }
  uint64_t fit = wanted;
  const Bound* binding = nullptr;
  for (const auto& b : bounds) {
    if (b.slots < fit) {
      fit = b.slots;
      binding = &b;
    }
  }

  // Commit budget: the tightest of the memory cgroup, RLIMIT_DATA, strict overcommit and the
  // caller.
  const auto offer_budget = [&](uint64_t bytes, std::string source) {
    if (!plan.commit_budget_bytes || bytes < *plan.commit_budget_bytes) {
      plan.commit_budget_bytes = bytes;
      plan.commit_budget_source = std::move(source);
    }
  };
  if (!facts.cgroup_memory_limit.is_unlimited()) {
    const uint64_t limit = *facts.cgroup_memory_limit.value;
    const uint64_t usage = facts.cgroup_memory_usage_bytes.value_or(0);
    offer_budget(less_margin(limit > usage ? limit - usage : 0),
                 "7/8 of the memory cgroup limit " + format_bytes(limit) +
                     (facts.cgroup_memory_limit_cgroup.empty()
                          ? ""
                          : " (set by " + facts.cgroup_memory_limit_cgroup + ")") +
                     " less usage " + format_bytes(usage));
  }
  if (!facts.rlimit_data.is_unlimited()) {
    offer_budget(less_margin(*facts.rlimit_data.value),
                 "7/8 of RLIMIT_DATA (" + format_bytes(*facts.rlimit_data.value) + ")");
  }
  if (plan.strict_overcommit && facts.commit_headroom_bytes) {
    offer_budget(less_margin(*facts.commit_headroom_bytes),
                 "7/8 of CommitLimit - Committed_AS (" +
                     format_bytes(*facts.commit_headroom_bytes) + ") under strict overcommit");
  }
  if (options.commit_budget_bytes) {
    offer_budget(*options.commit_budget_bytes, "the pool's commit_budget_bytes option");
  }

  const std::string full = "a " + format_bytes(reservation(wanted)) + " reservation for " +
                           plural(wanted, "slot") + " of " + format_bytes(plan.slot_bytes);
  const auto fits_text = [&] {
    std::string s;
    for (const auto& r : room)
      s += (s.empty() ? "" : ", ") + r;
    return s.empty() ? std::string("no limit is known") : s;
  };

  switch (options.mode) {
    case PoolMode::kPool:
      plan.tier = PoolTier::kPool;
      plan.slot_count = options.slot_count;
      plan.reason = "forced: " + full;
      break;
    case PoolMode::kSmall:
      plan.tier = PoolTier::kSmall;
      plan.slot_count = static_cast<uint32_t>(std::max<uint64_t>(1, fit));
      plan.reason = "forced: " + plural(plan.slot_count, "slot") +
                    (binding ? " fit " + binding->name : " requested");
      break;
    case PoolMode::kOnDemand:
      plan.tier = PoolTier::kOnDemand;
      plan.slot_count = options.slot_count;
      plan.reason = "forced: each acquire maps its own slot";
      break;
    case PoolMode::kAuto:
      if (fit == wanted) {
        plan.tier = PoolTier::kPool;
        plan.slot_count = options.slot_count;
        plan.reason = full + " fits: " + fits_text();
      } else if (fit >= kMinSmallPoolSlots) {
        plan.tier = PoolTier::kSmall;
        plan.slot_count = static_cast<uint32_t>(fit);
        plan.reason = full + " exceeds " + binding->name + ": " + plural(fit, "slot") + " (" +
                      format_bytes(reservation(fit)) + ") fit";
      } else {
        plan.tier = PoolTier::kOnDemand;
        plan.slot_count = options.slot_count;
        plan.reason =
            full + " exceeds " + binding->name + ": " +
            (fit == 0 ? std::string("not one slot fits, so acquire will fail")
                      : plural(fit, "slot") + (fit == 1 ? " fits" : " fit") + ", fewer than the " +
                            std::to_string(kMinSmallPoolSlots) + " a small pool needs");
      }
      break;
  }
  if (plan.tier != PoolTier::kOnDemand) plan.reservation_bytes = reservation(plan.slot_count);
  return plan;
}

}  // namespace hostfit
