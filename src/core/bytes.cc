#include <cmath>
#include <cstdio>

#include "hostfit/core.h"

namespace hostfit {
namespace {

constexpr std::string_view kAcceptedSizes =
    "a whole or decimal number of bytes with an optional unit K, M, G, T, P or E (powers of 1024; "
    "'Ki', 'KiB' and 'KB' mean the same), e.g. 4096, 64Mi, 1.5G";

std::unexpected<Error> bad_size(std::string_view text, std::string_view why = {}) {
  std::string message = "invalid size '";
  message.append(text).append("'");
  if (!why.empty()) message.append(": ").append(why);
  message.append("; expected ").append(kAcceptedSizes);
  return fail(ErrorKind::kUsage, std::move(message));
}

// The power of 1024 a unit suffix stands for, or -1 when the suffix is not a unit.
int unit_power(std::string_view suffix) {
  if (suffix.empty() || suffix == "B" || suffix == "b") return 0;
  static constexpr std::string_view kLetters = "KMGTPE";
  const char letter = static_cast<char>(std::toupper(static_cast<unsigned char>(suffix[0])));
  const auto pos = kLetters.find(letter);
  if (pos == std::string_view::npos) return -1;
  std::string_view rest = suffix.substr(1);
  if (rest == "" || rest == "i" || rest == "iB" || rest == "B" || rest == "b" || rest == "ib")
    return static_cast<int>(pos) + 1;
  return -1;
}

}  // namespace

Limit min_limit(const Limit& a, const Limit& b) {
  if (a.is_unlimited()) return b;
  if (b.is_unlimited()) return a;
  return Limit::of(std::min(*a.value, *b.value));
}

Result<uint64_t> parse_bytes(std::string_view text) {
  const std::string_view s = trim(text);
  if (s.empty()) return bad_size(text, "empty");
  if (s.front() == '-') return bad_size(text, "sizes cannot be negative");
  size_t number_end = 0;
  while (number_end < s.size() &&
         (std::isdigit(static_cast<unsigned char>(s[number_end])) || s[number_end] == '.'))
    ++number_end;
  const std::string_view number = s.substr(0, number_end);
  const std::string_view suffix = trim(s.substr(number_end));
  if (number.empty()) return bad_size(text);
  const int power = unit_power(suffix);
  if (power < 0) return bad_size(text, "unknown unit '" + std::string(suffix) + "'");

  if (number.find('.') == std::string_view::npos) {
    const auto whole = parse_u64(number);
    if (!whole) return bad_size(text, "too large");
    uint64_t value = *whole;
    for (int i = 0; i < power; ++i) {
      if (value > UINT64_MAX / 1024) return bad_size(text, "too large");
      value *= 1024;
    }
    return value;
  }
  const auto fractional = parse_double(number);
  if (!fractional) return bad_size(text);
  const long double value = static_cast<long double>(*fractional) * std::pow(1024.0L, power);
  if (value >= 18446744073709551615.0L) return bad_size(text, "too large");
  return static_cast<uint64_t>(value);
}

Result<Limit> parse_byte_limit(std::string_view text) {
  const std::string_view s = trim(text);
  if (s == "max" || s == "unlimited" || s == "-1") return Limit::unlimited();
  auto bytes = parse_bytes(s);
  if (!bytes) {
    return fail(ErrorKind::kUsage, bytes.error().message + ", or 'max' for no limit");
  }
  return Limit::of(*bytes);
}

Result<Limit> parse_kernel_limit(std::string_view text) {
  const std::string_view s = trim(text);
  if (s == "max" || s == "-1" || s == "unlimited") return Limit::unlimited();
  const auto value = parse_u64(s);
  if (!value) {
    return fail(ErrorKind::kParse, "unexpected limit '" + std::string(s.substr(0, 64)) +
                                       "' (expected a number or 'max')");
  }
  if (*value >= kUnlimitedThreshold) return Limit::unlimited();
  return Limit::of(*value);
}

std::string format_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  long double value = static_cast<long double>(bytes);
  while (value >= 1024 && unit < 6) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return std::to_string(bytes) + " B";
  char buf[48];
  // One decimal, dropped when it is zero after rounding down (so 1.99 GiB never prints as 2 GiB).
  const long double tenths = std::floor(value * 10) / 10;
  if (tenths == std::floor(tenths)) {
    std::snprintf(buf, sizeof buf, "%.0Lf %s", tenths, kUnits[unit]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1Lf %s", tenths, kUnits[unit]);
  }
  return buf;
}

std::string format_limit(const Limit& limit) {
  return limit.is_unlimited() ? "max" : format_bytes(*limit.value);
}

}  // namespace hostfit
