// SlotPool: tier fallback at creation, then acquire / grow / release over one reservation (pool,
// small) or one mapping per slot (on-demand).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "hostfit/pool.h"
#include "mapping.h"

namespace hostfit {
namespace {

namespace detail = pool_detail;

uint64_t round_up(uint64_t value, uint64_t page) {
  return (value + page - 1) / page * page;
}

uint64_t reservation_for(const TierPlan& plan, uint64_t slots) {
  return plan.guard_bytes + slots * (plan.slot_bytes + plan.guard_bytes);
}

// "4 GiB" -> "4GiB", for the key=value log line.
std::string compact_bytes(uint64_t bytes) {
  std::string s = format_bytes(bytes);
  std::erase(s, ' ');
  return s;
}

// The probe of a plan's reservation: its first and last slot, at the pool's page size.
detail::ProbeRequest probe_request(const TierPlan& plan, uint64_t page) {
  detail::ProbeRequest request;
  request.reservation_bytes = plan.reservation_bytes;
  request.first_slot_offset = plan.guard_bytes;
  request.last_slot_offset =
      plan.guard_bytes + uint64_t{plan.slot_count - 1} * (plan.slot_bytes + plan.guard_bytes);
  request.page_bytes = page;
  request.strict_overcommit = plan.strict_overcommit;
  return request;
}

PoolError pool_error(PoolErrorKind kind, std::string message, int sys_errno = 0) {
  return PoolError{kind, std::move(message), sys_errno};
}

// What a kernel ENOMEM on mprotect means here, for the error text.
constexpr std::string_view kCommitEnomemHint =
    " (the kernel refused: RLIMIT_DATA, strict overcommit or vm.max_map_count)";

}  // namespace

const char* to_string(PoolErrorKind kind) {
  switch (kind) {
    case PoolErrorKind::kPoolExhausted:
      return "PoolExhausted";
    case PoolErrorKind::kCommitFailed:
      return "CommitFailed";
    case PoolErrorKind::kTooLarge:
      return "TooLarge";
    case PoolErrorKind::kInvalidSlot:
      return "InvalidSlot";
  }
  return "PoolError";
}

Error PoolError::to_error() const {
  const ErrorKind k = kind == PoolErrorKind::kTooLarge || kind == PoolErrorKind::kInvalidSlot
                          ? ErrorKind::kUsage
                          : ErrorKind::kResource;
  return Error{k, std::string(to_string(kind)) + ": " + message, sys_errno};
}

struct SlotState {
  std::byte* base = nullptr;  // first usable byte (on-demand: set while the slot is mapped)
  uint64_t accessible_bytes = 0;
  uint64_t kept_bytes = 0;  // zeroed pages from base that stay resident across release
  bool in_use = false;

  uint64_t charge() const { return std::max(accessible_bytes, kept_bytes); }
};

struct SlotPool::State {
  std::byte* reservation = nullptr;  // pool and small tiers
  uint64_t page_bytes = 4096;
  mutable std::mutex mu;
  std::vector<SlotState> slots;  // sized once: owners hold references without the lock
  std::vector<uint32_t> free;    // stack of free ids: O(1) reuse, the warmest slot first
  uint64_t committed_bytes = 0;
  uint32_t in_use = 0;

  // kInvalidSlot unless `slot` is one this pool handed out and has not taken back.
  PoolStatus check_acquired(const Slot& slot, std::string_view operation) const {
    const std::lock_guard lock(mu);
    if (slot.id < slots.size() && slots[slot.id].in_use && slots[slot.id].base == slot.base)
      return {};
    return std::unexpected(pool_error(PoolErrorKind::kInvalidSlot,
                                      std::string(operation) + ": slot " + std::to_string(slot.id) +
                                          " is not an acquired slot of this pool"));
  }
};

SlotPool::SlotPool(TierPlan plan, PoolOptions options)
    : plan_(std::move(plan)), options_(std::move(options)), state_(std::make_unique<State>()) {}

SlotPool::~SlotPool() {
  if (plan_.tier == PoolTier::kOnDemand) {
    for (const SlotState& s : state_->slots) {
      if (s.in_use && s.base) {
        detail::unreserve(s.base - plan_.guard_bytes, plan_.slot_bytes + 2 * plan_.guard_bytes);
      }
    }
  } else {
    detail::unreserve(state_->reservation, plan_.reservation_bytes);
  }
}

Result<std::unique_ptr<SlotPool>> SlotPool::create(const PoolOptions& options) {
  return create(options, probe_pool_facts(Sysroot("/")));
}

Result<std::unique_ptr<SlotPool>> SlotPool::create(const PoolOptions& options,
                                                   const PoolFacts& facts) {
  PoolOptions opts = options;
  std::string forced_by = "PoolOptions::mode=" + std::string(to_string(opts.mode));
  if (opts.read_environment) {
    if (const char* env = std::getenv(std::string(kPoolEnvVar).c_str()); env && *env) {
      auto mode = parse_pool_mode(env);
      if (!mode) {
        return fail(ErrorKind::kUsage, std::string(kPoolEnvVar) + "='" +
                                           std::string(env).substr(0, 64) +
                                           "' is not one of auto, pool, small, on-demand");
      }
      opts.mode = *mode;
      forced_by = std::string(kPoolEnvVar) + "=" + env;
    }
  }
  auto chosen = choose_tier(facts, opts);
  if (!chosen) return fail(chosen.error());
  TierPlan plan = std::move(*chosen);
  const uint64_t page = std::has_single_bit(facts.page_size_bytes) ? facts.page_size_bytes : 4096;
  const bool forced = opts.mode != PoolMode::kAuto;
  // choose_tier says "forced: ..."; name what forced it.
  if (forced && plan.reason.starts_with("forced")) {
    plan.reason = "forced by " + forced_by + plan.reason.substr(std::strlen("forced"));
  }

  std::vector<ProbeAttempt> attempts;
  std::byte* reservation = nullptr;
  if (forced && plan.tier != PoolTier::kOnDemand) {
    // Forced means "no fallback", not "no bound": the reservation is tried first in a child with
    // a memory and time bound, so that one that would grow without end (an emulator's) is an
    // error here instead of the host's OOM killer's business.
    const detail::ProbeOutcome bounded = detail::probe_reservation(
        probe_request(plan, page), std::chrono::steady_clock::now() + opts.probe_timeout);
    if (bounded.oom_killed || bounded.timed_out) {
      return fail(ErrorKind::kResource, forced_by + " forces the " + to_string(plan.tier) +
                                            " tier, but " + bounded.failure + " (set " +
                                            std::string(kPoolEnvVar) + "=auto to fall back)");
    }
    auto r = detail::reserve(plan.reservation_bytes, opts.transparent_huge_pages);
    if (!r) {
      return fail(ErrorKind::kResource,
                  forced_by + " forces the " + to_string(plan.tier) + " tier, but " +
                      r.error().message + " (set " + std::string(kPoolEnvVar) +
                      "=auto to fall back)",
                  r.error().sys_errno);
    }
    reservation = *r;
  } else if (!forced) {
    const auto deadline = std::chrono::steady_clock::now() + opts.probe_timeout;
    std::string probe_notes;
    while (plan.tier != PoolTier::kOnDemand) {
      ProbeAttempt attempt{plan.tier, plan.slot_count, plan.reservation_bytes, false, {}, 0};
      const detail::ProbeOutcome outcome =
          detail::probe_reservation(probe_request(plan, page), deadline);
      attempt.elapsed_ms = outcome.elapsed_ms;
      std::string failure = outcome.failure;
      bool platform_failure = outcome.zero_check_failed || outcome.timed_out || outcome.oom_killed;
      if (outcome.ok) {
        auto r = detail::reserve(plan.reservation_bytes, opts.transparent_huge_pages);
        if (r) {
          reservation = *r;
          attempt.ok = true;
          attempts.push_back(std::move(attempt));
          break;
        }
        failure = r.error().message;
      }
      attempt.failure = failure;
      attempts.push_back(std::move(attempt));
      probe_notes += "; probe of " + std::string(to_string(plan.tier)) + " failed: " + failure;
      const uint32_t fewer = plan.slot_count / 2;
      if (platform_failure || fewer < kMinSmallPoolSlots) {
        plan.tier = PoolTier::kOnDemand;
        plan.slot_count = opts.slot_count;
        plan.reservation_bytes = 0;
      } else {
        plan.tier = PoolTier::kSmall;
        plan.slot_count = fewer;
        plan.reservation_bytes = reservation_for(plan, fewer);
      }
    }
    if (!probe_notes.empty()) {
      plan.reason +=
          probe_notes + "; using " + std::string(to_string(plan.tier)) +
          (plan.tier == PoolTier::kSmall ? " with " + std::to_string(plan.slot_count) + " slots"
                                         : "");
    }
  }

  std::unique_ptr<SlotPool> pool(new SlotPool(plan, opts));
  pool->attempts_ = std::move(attempts);
  pool->forced_ = forced;
  State& st = *pool->state_;
  st.reservation = reservation;
  st.page_bytes = page;
  st.slots.resize(plan.slot_count);
  st.free.reserve(plan.slot_count);
  for (uint32_t i = plan.slot_count; i-- > 0;) {
    st.free.push_back(i);
    if (reservation) {
      st.slots[i].base =
          reservation + plan.guard_bytes + uint64_t{i} * (plan.slot_bytes + plan.guard_bytes);
    }
  }

  std::string line = std::string("slot pool: tier=") + to_string(plan.tier) +
                     " slots=" + std::to_string(plan.slot_count) +
                     " slot=" + compact_bytes(plan.slot_bytes) +
                     " guard=" + compact_bytes(plan.guard_bytes);
  if (plan.tier != PoolTier::kOnDemand) {
    line += " reserved=" + compact_bytes(plan.reservation_bytes);
  }
  if (plan.tier != PoolTier::kPool || forced) line += ": " + plan.reason;
  spdlog::info("{}", line);
  return pool;
}

PoolResult<Slot> SlotPool::acquire(uint64_t initial_bytes) {
  if (initial_bytes > plan_.slot_bytes) {
    return std::unexpected(pool_error(
        PoolErrorKind::kTooLarge, "cannot acquire " + format_bytes(initial_bytes) +
                                      ": a slot holds at most " + format_bytes(plan_.slot_bytes)));
  }
  State& st = *state_;
  const uint64_t need = round_up(initial_bytes, st.page_bytes);
  uint32_t id = 0;
  uint64_t delta = 0;
  {
    std::lock_guard lock(st.mu);
    if (st.free.empty()) {
      return std::unexpected(pool_error(
          PoolErrorKind::kPoolExhausted,
          "all " + std::to_string(plan_.slot_count) + " slots of the " + to_string(plan_.tier) +
              " tier are in use (release one, or create the pool with more slots)"));
    }
    id = st.free.back();
    SlotState& s = st.slots[id];
    delta = std::max(need, s.kept_bytes) - s.charge();
    if (plan_.commit_budget_bytes && st.committed_bytes + delta > *plan_.commit_budget_bytes) {
      return std::unexpected(pool_error(
          PoolErrorKind::kCommitFailed,
          "committing " + format_bytes(need) + " would bring the pool to " +
              format_bytes(st.committed_bytes + delta) + ", over its commit budget of " +
              format_bytes(*plan_.commit_budget_bytes) + " (" + plan_.commit_budget_source + ")"));
    }
    st.free.pop_back();
    st.committed_bytes += delta;
    s.in_use = true;
    ++st.in_use;
  }
  SlotState& s = st.slots[id];
  const auto undo = [&](PoolError error) {
    std::lock_guard lock(st.mu);
    st.committed_bytes -= delta;
    s.in_use = false;
    --st.in_use;
    st.free.push_back(id);
    return std::unexpected(std::move(error));
  };

  if (plan_.tier == PoolTier::kOnDemand) {
    const uint64_t mapping = plan_.slot_bytes + 2 * plan_.guard_bytes;
    auto r = detail::reserve(mapping, options_.transparent_huge_pages);
    if (!r) {
      return undo(pool_error(PoolErrorKind::kPoolExhausted, "on-demand slot: " + r.error().message,
                             r.error().sys_errno));
    }
    s.base = *r + plan_.guard_bytes;
    s.accessible_bytes = 0;
  }
  Status changed;
  if (need > s.accessible_bytes) {
    changed = detail::commit(s.base + s.accessible_bytes, need - s.accessible_bytes);
  } else if (need < s.accessible_bytes) {
    // Kept pages past the new size stay resident and zero but must fault, like any guard.
    changed = detail::protect_none(s.base + need, s.accessible_bytes - need);
  }
  if (!changed) {
    if (plan_.tier == PoolTier::kOnDemand) {
      detail::unreserve(s.base - plan_.guard_bytes, plan_.slot_bytes + 2 * plan_.guard_bytes);
      s.base = nullptr;
    }
    return undo(pool_error(
        PoolErrorKind::kCommitFailed,
        "slot " + std::to_string(id) + ": " + changed.error().message +
            (changed.error().sys_errno == ENOMEM ? std::string(kCommitEnomemHint) : std::string()),
        changed.error().sys_errno));
  }
  s.accessible_bytes = need;
  return Slot{s.base, need, id};
}

PoolStatus SlotPool::grow(Slot& slot, uint64_t new_bytes) {
  State& st = *state_;
  if (auto ok = st.check_acquired(slot, "grow"); !ok) return ok;
  if (new_bytes > plan_.slot_bytes) {
    return std::unexpected(pool_error(PoolErrorKind::kTooLarge,
                                      "cannot grow slot " + std::to_string(slot.id) + " to " +
                                          format_bytes(new_bytes) + ": a slot holds at most " +
                                          format_bytes(plan_.slot_bytes)));
  }
  SlotState& s = st.slots[slot.id];
  const uint64_t need = round_up(new_bytes, st.page_bytes);
  if (need <= s.accessible_bytes) return {};
  const uint64_t delta = std::max(need, s.kept_bytes) - s.charge();
  {
    std::lock_guard lock(st.mu);
    if (plan_.commit_budget_bytes && st.committed_bytes + delta > *plan_.commit_budget_bytes) {
      return std::unexpected(
          pool_error(PoolErrorKind::kCommitFailed,
                     "growing slot " + std::to_string(slot.id) + " to " + format_bytes(need) +
                         " would bring the pool to " + format_bytes(st.committed_bytes + delta) +
                         ", over its commit budget of " + format_bytes(*plan_.commit_budget_bytes) +
                         " (" + plan_.commit_budget_source + ")"));
    }
    st.committed_bytes += delta;
  }
  auto committed = detail::commit(s.base + s.accessible_bytes, need - s.accessible_bytes);
  if (!committed) {
    std::lock_guard lock(st.mu);
    st.committed_bytes -= delta;
    return std::unexpected(
        pool_error(PoolErrorKind::kCommitFailed,
                   "growing slot " + std::to_string(slot.id) + " to " + format_bytes(need) + ": " +
                       committed.error().message +
                       (committed.error().sys_errno == ENOMEM ? std::string(kCommitEnomemHint)
                                                              : std::string()),
                   committed.error().sys_errno));
  }
  s.accessible_bytes = need;
  slot.size_bytes = need;
  return {};
}

PoolStatus SlotPool::release(Slot& slot) {
  State& st = *state_;
  if (auto ok = st.check_acquired(slot, "release"); !ok) return ok;
  SlotState& s = st.slots[slot.id];
  const uint64_t before = s.charge();
  const uint32_t id = slot.id;
  slot = Slot{};
  if (plan_.tier == PoolTier::kOnDemand) {
    detail::unreserve(s.base - plan_.guard_bytes, plan_.slot_bytes + 2 * plan_.guard_bytes);
    s.base = nullptr;
    s.accessible_bytes = 0;
    s.kept_bytes = 0;
  } else {
    const uint64_t keep =
        round_up(std::min(options_.keep_resident_bytes, plan_.slot_bytes), st.page_bytes);
    const uint64_t zero_end = std::min(s.accessible_bytes, keep);
    std::memset(s.base, 0, zero_end);
    if (s.accessible_bytes > keep) {
      auto dropped = detail::decommit(s.base + keep, s.accessible_bytes - keep,
                                      plan_.strict_overcommit, options_.transparent_huge_pages);
      if (!dropped) {
        // Its pages may still hold the last owner's data: never hand it out again.
        std::lock_guard lock(st.mu);
        --st.in_use;
        return std::unexpected(pool_error(PoolErrorKind::kCommitFailed,
                                          "release of slot " + std::to_string(id) + ": " +
                                              dropped.error().message + "; the slot is retired",
                                          dropped.error().sys_errno));
      }
    }
    s.kept_bytes = std::max(s.kept_bytes, zero_end);
    s.accessible_bytes = zero_end;
  }
  std::lock_guard lock(st.mu);
  st.committed_bytes -= before - s.charge();
  s.in_use = false;
  --st.in_use;
  st.free.push_back(id);
  return {};
}

PoolStats SlotPool::stats() const {
  std::lock_guard lock(state_->mu);
  return PoolStats{state_->in_use, state_->committed_bytes};
}

}  // namespace hostfit
