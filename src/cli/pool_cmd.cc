// hostfit pool-check: which SlotPool tier this process would get here, and why.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "hostfit/pool.h"

namespace hostfit::cli {
namespace {

// What pool-check acquires, touches and releases to show the chosen tier works: 64 KiB, or the
// whole slot when slots are smaller.
constexpr uint64_t kCheckBytes = 64 << 10;

struct PoolCheckOptions {
  uint32_t slots = 1000;
  std::string slot_size = "4GiB";
  std::string guard = "32MiB";
  int64_t probe_timeout_ms = 3000;
  Format format = Format::kTable;
};

struct CheckResult {
  bool ok = false;
  std::string error;
  uint64_t bytes = 0;  // acquired, written and released
};

// Acquire, write across, read back, release: the smallest proof that the tier works.
CheckResult check_pool(SlotPool& pool, uint64_t slot_bytes) {
  const uint64_t bytes = std::min(kCheckBytes, slot_bytes);
  auto slot = pool.acquire(bytes);
  if (!slot) return {false, slot.error().to_error().message};
  std::memset(slot->base, 0x5A, slot->size_bytes);
  for (uint64_t i = 0; i < slot->size_bytes; ++i) {
    if (slot->base[i] != std::byte{0x5A}) return {false, "slot memory did not hold a write"};
  }
  if (auto released = pool.release(*slot); !released) {
    return {false, released.error().to_error().message};
  }
  return {true, {}, bytes};
}

nlohmann::json limit_json(const Limit& limit) {
  return limit.is_unlimited() ? nlohmann::json("unlimited") : nlohmann::json(*limit.value);
}

template <class T>
nlohmann::json optional_json(const std::optional<T>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

nlohmann::json to_json(const SlotPool& pool, const PoolFacts& facts, uint32_t requested,
                       const CheckResult& check) {
  const TierPlan& plan = pool.plan();
  nlohmann::json attempts = nlohmann::json::array();
  double probe_ms = 0;
  for (const auto& a : pool.attempts()) {
    probe_ms += a.elapsed_ms;
    attempts.push_back({{"tier", to_string(a.tier)},
                        {"slots", a.slot_count},
                        {"reservation_bytes", a.reservation_bytes},
                        {"ok", a.ok},
                        {"failure", a.ok ? nlohmann::json(nullptr) : nlohmann::json(a.failure)},
                        {"elapsed_ms", a.elapsed_ms}});
  }
  return {{"tier", to_string(plan.tier)},
          {"reason", plan.reason},
          {"forced", pool.forced()},
          {"slots", plan.slot_count},
          {"requested_slots", requested},
          {"slot_bytes", plan.slot_bytes},
          {"guard_bytes", plan.guard_bytes},
          {"reservation_bytes", plan.reservation_bytes},
          {"commit_budget_bytes", optional_json(plan.commit_budget_bytes)},
          {"commit_budget_source", plan.commit_budget_source},
          {"strict_overcommit", plan.strict_overcommit},
          {"probe", attempts},
          {"probe_ms", probe_ms},
          {"check",
           {{"acquired_bytes", check.bytes},
            {"ok", check.ok},
            {"error", check.ok ? nlohmann::json(nullptr) : nlohmann::json(check.error)}}},
          {"facts",
           {{"rlimit_as", limit_json(facts.rlimit_as)},
            {"rlimit_data", limit_json(facts.rlimit_data)},
            {"virtual_address_bits", optional_json(facts.virtual_address_bits)},
            {"overcommit_memory", optional_json(facts.overcommit_memory)},
            {"commit_headroom_bytes", optional_json(facts.commit_headroom_bytes)},
            {"cgroup_memory_limit", limit_json(facts.cgroup_memory_limit)},
            {"cgroup_memory_usage_bytes", optional_json(facts.cgroup_memory_usage_bytes)},
            {"max_map_count", optional_json(facts.max_map_count)},
            {"map_count", optional_json(facts.map_count)},
            {"page_size_bytes", facts.page_size_bytes},
            {"unknown", facts.unknown}}}};
}

void print_table(const SlotPool& pool, const PoolFacts& facts, uint32_t requested,
                 const CheckResult& check) {
  const TierPlan& plan = pool.plan();
  Table t(false);
  t.add({"tier", std::string(to_string(plan.tier)) + (pool.forced() ? " (forced)" : "")});
  t.add({"reason", plan.reason});
  t.add({"slots", std::to_string(plan.slot_count) + " of " + std::to_string(requested) +
                      " requested" +
                      (plan.tier == PoolTier::kOnDemand ? " (live instances)" : "")});
  t.add({"slot", format_bytes(plan.slot_bytes) + ", guard " + format_bytes(plan.guard_bytes)});
  if (plan.tier != PoolTier::kOnDemand) t.add({"reserved", format_bytes(plan.reservation_bytes)});
  t.add({"commit budget", plan.commit_budget_bytes ? format_bytes(*plan.commit_budget_bytes) +
                                                         " (" + plan.commit_budget_source + ")"
                                                   : std::string("none beyond the kernel's")});
  for (const auto& a : pool.attempts()) {
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.1f ms", a.elapsed_ms);
    t.add({"probe", std::string(to_string(a.tier)) + " " + std::to_string(a.slot_count) +
                        " slots (" + format_bytes(a.reservation_bytes) +
                        "): " + (a.ok ? "ok" : a.failure) + ", " + ms});
  }
  t.add({"check", check.ok ? "acquired, wrote and released " + format_bytes(check.bytes)
                           : "failed: " + check.error});
  for (const auto& u : facts.unknown)
    t.add({"unknown", u});
  t.print(std::cout);
}

}  // namespace

void add_pool_command(CLI::App& app, Commands& commands) {
  auto opts = std::make_shared<PoolCheckOptions>();
  CLI::App* cmd = app.add_subcommand(
      "pool-check",
      "Show which SlotPool tier (pool, small, on-demand) this process would get here and why: "
      "RLIMIT_AS, RLIMIT_DATA, address bits, overcommit, the memory cgroup limit and "
      "vm.max_map_count, confirmed by a real reservation probe. HOSTFIT_POOL forces a tier.");
  cmd->add_option("--slots", opts->slots, "Slots wanted, 1 to 16777216 (default 1000)")
      ->type_name("N")
      ->check(CLI::Range(1u, 1u << 24).description(""));
  cmd->add_option("--slot-size", opts->slot_size, "Largest size of one slot (default 4GiB)")
      ->type_name("SIZE")
      ->check(size_validator());
  cmd->add_option("--guard", opts->guard,
                  "No-access guard before and after each slot (default 32MiB)")
      ->type_name("SIZE")
      ->check(size_validator());
  cmd->add_option("--probe-timeout-ms", opts->probe_timeout_ms,
                  "Bound on the reservation probe, in ms (default 3000)")
      ->type_name("MS")
      ->check(CLI::Range(int64_t{1}, int64_t{600000}).description(""));
  add_format_option(*cmd, opts->format, {Format::kTable, Format::kJson});
  cmd->footer(
      "Examples:\n"
      "  hostfit pool-check                          1,000 x 4 GiB slots\n"
      "  prlimit --as=68719476736 hostfit pool-check -o json | jq .tier,.reason   (64 GiB: "
      "util-linux\n"
      "                                  2.38 reads --as=64G as 64 bytes; give bytes)\n"
      "  HOSTFIT_POOL=on-demand hostfit pool-check   force a tier");

  commands.push_back({cmd, [opts]() {
                        PoolOptions options;
                        options.slot_count = opts->slots;
                        const auto slot_bytes = parse_bytes(opts->slot_size);
                        if (!slot_bytes) return usage_error(slot_bytes.error().message);
                        if (*slot_bytes == 0) return usage_error("--slot-size must not be 0");
                        const auto guard_bytes = parse_bytes(opts->guard);
                        if (!guard_bytes) return usage_error(guard_bytes.error().message);
                        options.max_slot_bytes = *slot_bytes;
                        options.guard_bytes = *guard_bytes;
                        options.probe_timeout = std::chrono::milliseconds(opts->probe_timeout_ms);

                        // The pool's INFO line goes to stderr so that stdout stays one document.
                        // One line like every other message of hostfit's: "hostfit: slot pool:
                        // ...".
                        auto logger = spdlog::stderr_logger_st("hostfit-pool");
                        logger->set_pattern("hostfit: %v");
                        spdlog::set_default_logger(logger);

                        const PoolFacts facts = probe_pool_facts(Sysroot("/"));
                        auto pool = SlotPool::create(options, facts);
                        if (!pool) return report(pool.error());
                        const CheckResult check = check_pool(**pool, *slot_bytes);
                        if (opts->format == Format::kJson) {
                          print_json(std::cout, to_json(**pool, facts, opts->slots, check));
                        } else {
                          print_table(**pool, facts, opts->slots, check);
                        }
                        if (!check.ok) {
                          return report(
                              Error{ErrorKind::kResource,
                                    std::string("the ") + to_string((*pool)->tier()) +
                                        " tier was chosen but does not work: " + check.error,
                                    0});
                        }
                        return kExitOk;
                      }});
}

}  // namespace hostfit::cli
