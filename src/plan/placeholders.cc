// {placeholder} substitution in an argv vector: each argument stays one argument, no shell.
#include "hostfit/plan.h"

namespace hostfit {
namespace {

constexpr std::string_view kNames = "{workers} {cpus} {instances} {cpuset} {mems} {memory_limit}";

const std::string* lookup(const PlaceholderValues& v, std::string_view name) {
  if (name == "workers") return &v.workers;
  if (name == "cpus") return &v.cpus;
  if (name == "instances") return &v.instances;
  if (name == "cpuset") return &v.cpuset;
  if (name == "mems") return &v.mems;
  if (name == "memory_limit") return &v.memory_limit;
  return nullptr;
}

Result<std::string> substitute_one(std::string_view arg, size_t index,
                                   const PlaceholderValues& values) {
  const auto where = [&] {
    return "argument " + std::to_string(index) + " '" + std::string(arg) + "'";
  };
  std::string out;
  out.reserve(arg.size());
  for (size_t i = 0; i < arg.size(); ++i) {
    const char c = arg[i];
    if (c == '}') {
      // "}}" is a literal "}"; a lone "}" is kept as written.
      if (i + 1 < arg.size() && arg[i + 1] == '}') ++i;
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < arg.size() && arg[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = arg.find('}', i + 1);
    if (close == std::string_view::npos) {
      return fail(ErrorKind::kUsage, where() + ": unterminated placeholder '" +
                                         std::string(arg.substr(i)) +
                                         "' (write {{ for a literal {)");
    }
    const std::string_view name = arg.substr(i + 1, close - i - 1);
    const std::string* value = lookup(values, name);
    if (!value) {
      return fail(ErrorKind::kUsage, where() + ": unknown placeholder '{" + std::string(name) +
                                         "}' (known: " + std::string(kNames) +
                                         "; write {{ for a literal {)");
    }
    if (value->empty()) {
      return fail(ErrorKind::kUsage,
                  where() + ": placeholder '{" + std::string(name) + "}' has no value here");
    }
    out += *value;
    i = close;
  }
  return out;
}

}  // namespace

Result<std::vector<std::string>> substitute_placeholders(const std::vector<std::string>& argv,
                                                         const PlaceholderValues& values) {
  std::vector<std::string> out;
  out.reserve(argv.size());
  for (size_t i = 0; i < argv.size(); ++i) {
    auto arg = substitute_one(argv[i], i, values);
    if (!arg) return fail(arg.error());
    out.push_back(std::move(*arg));
  }
  return out;
}

}  // namespace hostfit
