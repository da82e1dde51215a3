#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "hostfit/core.h"

namespace hostfit {

std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\f\v";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(kSpace);
  return s.substr(first, last - first + 1);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::vector<std::string_view> split_whitespace(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])))
      ++i;
    const size_t start = i;
    while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i])))
      ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return value;
}

std::optional<int64_t> parse_i64(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return value;
}

std::optional<double> parse_double(std::string_view s) {
  if (s.empty()) return std::nullopt;
  for (char c : s) {
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '-')) return std::nullopt;
  }
  double value = 0;
  const auto [ptr, ec] =
      std::from_chars(s.data(), s.data() + s.size(), value, std::chars_format::fixed);
  if (ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

namespace {

// Length of the valid UTF-8 sequence starting at s[i], 0 when there is none (overlong forms,
// surrogates and code points above U+10FFFF are not valid).
size_t utf8_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  uint32_t cp = 0;
  if ((c & 0xe0) == 0xc0) {
    n = 2, cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3, cp = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4, cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

}  // namespace

std::string escape_bytes(std::string_view s, bool controls) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_length(s, i);
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (n == 0 || (controls && n == 1 && (c < 0x20 || c == 0x7f))) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\%03o", c);
      out += buf;
      ++i;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

Result<std::chrono::microseconds> parse_duration(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    std::string message = "invalid duration '";
    message.append(text).append("'");
    if (!why.empty()) message.append(": ").append(why);
    message.append(
        "; expected a number with a unit us, ms, s, m or h, e.g. 50ms or 1.5s (a bare "
        "number is seconds)");
    return fail(ErrorKind::kUsage, std::move(message));
  };
  const std::string_view s = trim(text);
  if (s.empty()) return bad("empty");
  if (s.front() == '-') return bad("durations cannot be negative");
  size_t number_end = 0;
  while (number_end < s.size() &&
         (std::isdigit(static_cast<unsigned char>(s[number_end])) || s[number_end] == '.'))
    ++number_end;
  const auto number = parse_double(s.substr(0, number_end));
  if (!number) return bad("");
  const std::string_view unit = trim(s.substr(number_end));
  double us_per_unit = 0;
  if (unit == "us") {
    us_per_unit = 1;
  } else if (unit == "ms") {
    us_per_unit = 1e3;
  } else if (unit.empty() || unit == "s") {
    us_per_unit = 1e6;
  } else if (unit == "m" || unit == "min") {
    us_per_unit = 60e6;
  } else if (unit == "h") {
    us_per_unit = 3600e6;
  } else {
    return bad("unknown unit '" + std::string(unit) + "'");
  }
  const double us = *number * us_per_unit;
  if (us > 7 * 24 * 3600e6) return bad("longer than a week");
  return std::chrono::microseconds(static_cast<int64_t>(us));
}

std::string format_utc(std::chrono::system_clock::time_point t) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

std::optional<std::chrono::system_clock::time_point> parse_utc(const std::string& text) {
  std::tm tm{};
  int ms = 0;
  char z = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &z) != 8 ||
      z != 'Z') {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return std::chrono::system_clock::from_time_t(::timegm(&tm)) + std::chrono::milliseconds(ms);
}

std::map<std::string, uint64_t, std::less<>> parse_keyed_numbers(std::string_view text) {
  std::map<std::string, uint64_t, std::less<>> out;
  for (std::string_view line : split(text, '\n')) {
    const auto fields = split_whitespace(line);
    if (fields.size() < 2) continue;
    std::string_view key = fields[0];
    if (key.ends_with(':')) key.remove_suffix(1);
    if (key.empty()) continue;
    auto value = parse_u64(fields[1]);
    if (!value) continue;
    if (fields.size() >= 3 && fields[2] == "kB") {
      if (*value > UINT64_MAX / 1024) continue;
      *value *= 1024;
    }
    out.emplace(std::string(key), *value);
  }
  return out;
}

}  // namespace hostfit
