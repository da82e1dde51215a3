// Parsing the workload's shape as a person gives it: rounding modes, headroom, counts.
#include <cmath>
#include <cstdio>

#include "hostfit/plan.h"

namespace hostfit {

const char* to_string(Rounding rounding) {
  return rounding == Rounding::kCeil ? "ceil" : "floor";
}

Result<Rounding> parse_rounding(std::string_view text) {
  if (text == "floor") return Rounding::kFloor;
  if (text == "ceil") return Rounding::kCeil;
  return fail(ErrorKind::kUsage,
              "'" + std::string(text) + "' is not a rounding mode (accepted: floor|ceil)");
}

Result<WorkloadShape> sandbox_shape(const RuntimeProfile& runtime, uint64_t plugins) {
  WorkloadShape shape;
  shape.runtime = runtime;
  const bool sandbox = !runtime.name.empty() && runtime.name != "none";
  if (plugins > 0 && !sandbox) {
    return fail(ErrorKind::kUsage,
                std::to_string(plugins) +
                    " plugins need a sandbox runtime: its per-instance costs to budget with");
  }
  shape.instances_per_worker = plugins > 0 ? plugins : (sandbox ? 1 : 0);
  return shape;
}

uint64_t Headroom::of(uint64_t capacity_bytes) const {
  if (percent) {
    const long double share = static_cast<long double>(capacity_bytes) * (*percent / 100.0L);
    const auto held = static_cast<uint64_t>(std::ceil(share));
    return std::min(held, capacity_bytes);
  }
  return std::min(bytes, capacity_bytes);
}

std::string Headroom::to_string() const {
  if (!percent) return format_bytes(bytes);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g%%", *percent);
  return buf;
}

Result<Headroom> parse_headroom(std::string_view text) {
  const std::string_view t = trim(text);
  const std::string accepted = " (accepted: a share of memory like 10% or a size like 256Mi)";
  if (t.ends_with('%')) {
    const auto value = parse_double(t.substr(0, t.size() - 1));
    if (!value || *value < 0 || *value > kMaxHeadroomPercent) {
      return fail(ErrorKind::kUsage, "'" + std::string(text) +
                                         "' is not a headroom share from 0% to 99.9%" + accepted);
    }
    return Headroom{*value, 0};
  }
  auto bytes = parse_bytes(t);
  if (!bytes) {
    return fail(ErrorKind::kUsage, "'" + std::string(text) + "' is not a headroom" + accepted);
  }
  return Headroom{std::nullopt, *bytes};
}

Result<uint64_t> parse_count(std::string_view text, std::string_view flag, uint64_t min,
                             uint64_t max) {
  const auto value = parse_u64(trim(text));
  if (!value || *value < min || *value > max) {
    return fail(ErrorKind::kUsage, std::string(flag) + (flag.empty() ? "'" : " '") +
                                       std::string(text) + "' is not a whole number from " +
                                       std::to_string(min) + " to " + std::to_string(max));
  }
  return *value;
}

}  // namespace hostfit
