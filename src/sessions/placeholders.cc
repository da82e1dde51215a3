#include "placeholders.h"

#include <array>

#include "hostfit/sessions.h"

namespace hostfit::sessions {
namespace {

constexpr std::array<std::string_view, 6> kRunnerNames = {"workers", "cpus", "instances",
                                                          "cpuset",  "mems", "memory_limit"};

bool is_ours(std::string_view name) {
  const std::string braced = "{" + std::string(name) + "}";
  return kPlaceholders.find(braced) != std::string_view::npos;
}

bool is_runners(std::string_view name) {
  for (auto n : kRunnerNames)
    if (n == name) return true;
  return false;
}

// Walks `text`, calling out(piece) for literal pieces and name(n) for each placeholder.
template <class Literal, class Name>
Status walk(std::string_view text, Literal&& literal, Name&& name) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '{') {
      literal(text.substr(i, 1));
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '{') {
      literal(text.substr(i, 2));
      ++i;
      continue;
    }
    const size_t close = text.find('}', i + 1);
    if (close == std::string_view::npos)
      return fail(ErrorKind::kUsage, "'" + escape_bytes(text, true) +
                                         "': unterminated placeholder (write {{ for a literal {)");
    const std::string_view n = text.substr(i + 1, close - i - 1);
    if (!is_ours(n) && !is_runners(n))
      return fail(ErrorKind::kUsage, "'" + escape_bytes(text, true) + "': unknown placeholder '{" +
                                         escape_bytes(n, true) +
                                         "}' (known: " + std::string(kPlaceholders) +
                                         " and the run's {workers} {cpus} {instances} {cpuset} "
                                         "{mems} {memory_limit})");
    name(n);
    i = close;
  }
  return {};
}

}  // namespace

Status check_placeholders(std::string_view text) {
  return walk(
      text, [](std::string_view) {}, [](std::string_view) {});
}

Result<std::string> substitute(std::string_view text, const PlaceholderMap& values) {
  std::string out;
  auto st = walk(
      text, [&](std::string_view piece) { out.append(piece); },
      [&](std::string_view n) {
        auto it = values.find(n);
        if (it != values.end() && is_ours(n)) {
          out += it->second;
        } else {
          out.append("{").append(n).append("}");
        }
      });
  if (!st) return fail(st.error());
  return out;
}

}  // namespace hostfit::sessions
