// Sandbox runtime profiles: what one instance costs a process. The numbers and where they come
// from are written out in docs/runtimes.md; keep the two in step.
#include "hostfit/plan.h"

namespace hostfit {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

std::vector<RuntimeProfile> make_profiles() {
  return {
      RuntimeProfile{
          .name = "v8",
          // V8 reserves kFullGuardSize32 = 8 GiB per 32-bit memory on 64-bit targets (older
          // releases: kFullGuardSize = 10 GiB); the cap is Envoy's measurement after envoy#19763.
          .reserve_bytes = 8 * kGiB,
          .resident_bytes = 16 * kMiB,
          // 65,530 default maps / 6,479 VMs: the measured cap matches about 10 maps per VM.
          .maps = 10,
          .instance_cap = 6479,
          .source = "V8 src/objects/backing-store.cc: kFullGuardSize32 = 8 GiB per 32-bit memory",
          .cap_source = "measured by Envoy with V8, envoyproxy/envoy#19763; 268 before it",
      },
      RuntimeProfile{
          .name = "wasmtime",
          // 4 GiB reservation plus a 32 MiB guard before and after (bytecodealliance/wasmtime#9606;
          // before it the guards were 2 GiB each, 8 GiB in all).
          .reserve_bytes = 4 * kGiB + 64 * kMiB,
          .resident_bytes = 8 * kMiB,
          .maps = 8,
          .instance_cap = std::nullopt,
          .source = "Wasmtime Config defaults: memory_reservation 4 GiB, memory_guard_size 32 MiB "
                    "before and after (bytecodealliance/wasmtime#9606)",
          .cap_source = "",
      },
      RuntimeProfile{
          .name = "wamr",
          // WAMR with hardware bounds checks (the default on 64-bit Linux) maps 8 GiB per memory.
          .reserve_bytes = 8 * kGiB,
          .resident_bytes = 4 * kMiB,
          .maps = 4,
          .instance_cap = std::nullopt,
          .source = "WAMR with hardware bounds checks: 8 GiB mapped per linear memory "
                    "(wasm-micro-runtime#3013)",
          .cap_source = "",
      },
      RuntimeProfile{
          .name = "none",
          .reserve_bytes = 0,
          .resident_bytes = 0,
          .maps = 0,
          .instance_cap = std::nullopt,
          .source = "no sandbox runtime",
          .cap_source = "",
      },
  };
}

}  // namespace

const std::vector<RuntimeProfile>& runtime_profiles() {
  static const std::vector<RuntimeProfile> profiles = make_profiles();
  return profiles;
}

Result<RuntimeProfile> find_runtime(std::string_view name) {
  std::string names;
  for (const auto& p : runtime_profiles()) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : "|") + p.name;
  }
  return fail(ErrorKind::kUsage,
              "'" + std::string(name) + "' is not a sandbox runtime (accepted: " + names + ")");
}

}  // namespace hostfit
