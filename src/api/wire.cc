#include "wire.h"

#include <cctype>

#include "hostfit/core.h"

namespace hostfit::api {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+' && plus_is_space) {
      out += ' ';
    } else if (c != '%') {
      out += c;
    } else {
      if (i + 2 >= text.size()) return std::nullopt;
      const int hi = hex_value(text[i + 1]);
      const int lo = hex_value(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    }
  }
  return out;
}

std::optional<std::map<std::string, std::string>> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  for (std::string_view pair : split(query, '&')) {
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    auto value = percent_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!key || !value) return std::nullopt;
    out[*key] = *value;
  }
  return out;
}

std::optional<std::string> cookie_value(std::string_view header, std::string_view name) {
  for (std::string_view part : split(header, ';')) {
    part = trim(part);
    const size_t eq = part.find('=');
    if (eq == std::string_view::npos || trim(part.substr(0, eq)) != name) continue;
    std::string_view value = trim(part.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    return std::string(value);
  }
  return std::nullopt;
}

std::optional<std::string> bearer_token(std::string_view header) {
  header = trim(header);
  const size_t space = header.find(' ');
  if (space == std::string_view::npos || !iequals(header.substr(0, space), "bearer"))
    return std::nullopt;
  return std::string(trim(header.substr(space + 1)));
}

std::optional<Request> request_of(
    boost::beast::http::request<boost::beast::http::string_body>& msg) {
  Request r;
  r.method = std::string(msg.method_string());
  r.target = std::string(msg.target());
  const std::size_t q = r.target.find('?');
  auto path = percent_decode(std::string_view(r.target).substr(0, q));
  auto query = parse_query(q == std::string::npos ? "" : std::string_view(r.target).substr(q + 1));
  if (!path || !query || path->empty() || path->front() != '/') return std::nullopt;
  r.path = std::move(*path);
  r.query = std::move(*query);
  for (const auto& field : msg) {
    const auto raw_name = field.name_string();
    const std::string name = lower({raw_name.data(), raw_name.size()});
    std::string& value = r.headers[name];
    if (!value.empty()) value += name == "cookie" ? "; " : ", ";
    value.append(field.value().data(), field.value().size());
  }
  r.body = std::move(msg.body());
  return r;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  // Every byte of the longer string is looked at, so the time says nothing about where the
  // first difference is; the lengths themselves are not secret enough to hide.
  const size_t n = a.size() > b.size() ? a.size() : b.size();
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  volatile unsigned char result = diff;
  return result == 0;
}

}  // namespace hostfit::api
