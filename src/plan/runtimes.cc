// Sandbox runtime profiles: what one instance costs a process. The numbers and where they come
// from are written out in docs/runtimes.md; keep the two in step. `v8` is measured here with
// `hostfit calibrate` (bench/calibrate regenerates it); the others come from documentation.
#include <nlohmann/json.hpp>

#include "hostfit/plan.h"

namespace hostfit {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

std::vector<RuntimeProfile> make_profiles() {
  return {
      RuntimeProfile{
          .name = "v8",
          .label = "V8",
          // Measured on Debian 12's libnode108 (Node.js 18.20.4, V8 10.2) with the built-in
          // gateway plugin at its steady state, 100,000 requests each: bench/calibrate regenerates
          // these numbers. Fresh instances cost 14 maps; tiered-up code and a grown new space bring
          // it to 23.1 (rounded up, as every measured profile is). The reservation is V8 10.2's
          // kFullGuardSize (10 GiB) per 32-bit memory plus about 130 MiB of the isolate's own
          // (mostly its code range).
          .reserve_bytes = 10372 * kMiB,
          .resident_bytes = 3 * kMiB,
          .maps = 24,
          .base_maps = 119,
          .instance_cap = std::nullopt,
          .measured = true,
          .version = "10.2.154.26-node.37",
          .source = "measured 2026-11-29 by `hostfit calibrate --runtime v8 --plugins 8 "
                    "--instances 64 --requests 100000` (bench/calibrate) on Debian 12 libnode108 "
                    "18.20.4",
          .cap_source = "",
      },
      RuntimeProfile{
          .name = "envoy-v8",
          .label = "Envoy's V8",
          // Envoy's own V8 build cannot be measured here. kFullGuardSize32 = 8 GiB per 32-bit
          // memory; the cap is Envoy's measurement after envoy#19763; maps are inferred from it.
          .reserve_bytes = 8 * kGiB,
          .resident_bytes = 16 * kMiB,
          .maps = 10,
          .base_maps = 0,
          .instance_cap = 6479,
          .measured = false,
          .version = "",
          .source = "documentation: V8 src/objects/backing-store.cc (kFullGuardSize32 = 8 GiB per "
                    "32-bit memory); maps inferred from envoyproxy/envoy#19763 (65,530 / 6,479)",
          .cap_source = "measured by Envoy with V8, envoyproxy/envoy#19763; 268 before it",
      },
      RuntimeProfile{
          .name = "wasmtime",
          .label = "Wasmtime",
          // 4 GiB reservation plus a 32 MiB guard before and after (bytecodealliance/wasmtime#9606;
          // before it the guards were 2 GiB each, 8 GiB in all).
          .reserve_bytes = 4 * kGiB + 64 * kMiB,
          .resident_bytes = 8 * kMiB,
          .maps = 8,
          .base_maps = 0,
          .instance_cap = std::nullopt,
          .measured = false,
          .version = "",
          .source = "documentation: Wasmtime Config defaults: memory_reservation 4 GiB, "
                    "memory_guard_size 32 MiB before and after (bytecodealliance/wasmtime#9606)",
          .cap_source = "",
      },
      RuntimeProfile{
          .name = "wasmer",
          .label = "Wasmer",
          // BaseTunables::for_target on 64-bit hosts: static memories of 4 GiB with a 2 GiB guard.
          .reserve_bytes = 6 * kGiB,
          .resident_bytes = 8 * kMiB,
          .maps = 8,
          .base_maps = 0,
          .instance_cap = std::nullopt,
          .measured = false,
          .version = "",
          .source = "documentation: Wasmer BaseTunables::for_target (64-bit): static_memory_bound "
                    "4 GiB, static_memory_offset_guard_size 2 GiB",
          .cap_source = "",
      },
      RuntimeProfile{
          .name = "wamr",
          .label = "WAMR",
          // WAMR with hardware bounds checks (the default on 64-bit Linux) maps 8 GiB per memory.
          .reserve_bytes = 8 * kGiB,
          .resident_bytes = 4 * kMiB,
          .maps = 4,
          .base_maps = 0,
          .instance_cap = std::nullopt,
          .measured = false,
          .version = "",
          .source = "documentation: WAMR with hardware bounds checks: 8 GiB mapped per linear "
                    "memory (wasm-micro-runtime#3013)",
          .cap_source = "",
      },
      RuntimeProfile{
          .name = "none",
          .label = "none",
          .reserve_bytes = 0,
          .resident_bytes = 0,
          .maps = 0,
          .base_maps = 0,
          .instance_cap = std::nullopt,
          .measured = false,
          .version = "",
          .source = "no sandbox runtime",
          .cap_source = "",
      },
  };
}

// A whole number at `key`, or an error naming the file and the key.
Result<uint64_t> number_at(const nlohmann::json& j, const char* key, std::string_view where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number_unsigned()) {
    return fail(ErrorKind::kUsage, std::string(where) + ": \"" + key +
                                       "\" must be a whole number (a profile from `hostfit "
                                       "calibrate -o json`)");
  }
  return it->get<uint64_t>();
}

std::string text_at(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
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

Result<RuntimeProfile> profile_from_json(const nlohmann::json& json, std::string_view where) {
  const nlohmann::json& j = json.is_object() && json.contains("profile") ? json["profile"] : json;
  if (!j.is_object()) {
    return fail(ErrorKind::kUsage, std::string(where) +
                                       ": not a profile (give the JSON of `hostfit calibrate -o "
                                       "json`)");
  }
  RuntimeProfile p;
  p.name = text_at(j, "name");
  if (p.name.empty()) return fail(ErrorKind::kUsage, std::string(where) + ": \"name\" is missing");
  p.label = text_at(j, "label");
  if (p.label.empty()) p.label = p.name;
  for (auto [key, field] : {std::pair{"reserve_bytes", &p.reserve_bytes},
                            std::pair{"resident_bytes", &p.resident_bytes},
                            std::pair{"maps", &p.maps}, std::pair{"base_maps", &p.base_maps}}) {
    auto v = number_at(j, key, where);
    if (!v) return fail(v.error());
    *field = *v;
  }
  if (j.contains("instance_cap") && !j["instance_cap"].is_null()) {
    auto cap = number_at(j, "instance_cap", where);
    if (!cap) return fail(cap.error());
    p.instance_cap = *cap;
  }
  p.measured = j.value("measured", false);
  p.version = text_at(j, "version");
  p.source = text_at(j, "source");
  p.cap_source = text_at(j, "cap_source");
  return p;
}

nlohmann::json to_json(const RuntimeProfile& p) {
  return {{"name", p.name},
          {"label", p.label},
          {"reserve_bytes", p.reserve_bytes},
          {"resident_bytes", p.resident_bytes},
          {"maps", p.maps},
          {"base_maps", p.base_maps},
          {"instance_cap", p.instance_cap ? nlohmann::json(*p.instance_cap) : nlohmann::json()},
          {"measured", p.measured},
          {"version", p.version},
          {"source", p.source},
          {"cap_source", p.cap_source}};
}

}  // namespace hostfit
