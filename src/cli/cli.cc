#include "cli.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

namespace hostfit::cli {
namespace {

const char* name_of(Format f) {
  switch (f) {
    case Format::kTable:
      return "table";
    case Format::kJson:
      return "json";
    case Format::kEnv:
      return "env";
  }
  return "table";
}

}  // namespace

int report(const Error& error) {
  std::cerr << "hostfit: " << escape_bytes(error.message, true) << "\n";
  return error.kind == ErrorKind::kUsage ? kExitUsage : kExitFailure;
}

int usage_error(const std::string& message) {
  std::cerr << "hostfit: " << escape_bytes(message, true) << "\n";
  return kExitUsage;
}

CLI::Option* add_format_option(CLI::App& app, Format& format, std::vector<Format> accepted) {
  std::string names;
  for (Format f : accepted)
    names += std::string(names.empty() ? "" : "|") + name_of(f);
  format = accepted.front();
  auto* opt = app.add_option_function<std::string>(
      "-o,--output",
      [&format, accepted](const std::string& value) {
        for (Format f : accepted) {
          if (value == name_of(f)) format = f;
        }
      },
      "Output format: " + names + " (default " + name_of(accepted.front()) + ")");
  opt->type_name(names);
  opt->check(CLI::Validator(
      [accepted, names](std::string& value) -> std::string {
        for (Format f : accepted) {
          if (value == name_of(f)) return {};
        }
        return "'" + value + "' is not an output format (accepted: " + names + ")";
      },
      "", "format"));
  return opt;
}

CLI::Option* add_sysroot_option(CLI::App& app, std::string& sysroot) {
  return app
      .add_option("--sysroot", sysroot,
                  "Read /proc, /sys and cgroupfs under DIR instead of / (a captured or "
                  "generated machine tree)")
      ->type_name("DIR");
}

CLI::Validator size_validator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        auto parsed = parse_bytes(value);
        return parsed ? std::string() : parsed.error().message;
      },
      "", "size");
}

CLI::Validator cpu_list_validator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        auto parsed = CpuSet::parse_list(value);
        return parsed ? std::string() : parsed.error().message;
      },
      "", "cpu list");
}

CLI::Option* add_pid_option(CLI::App& app, pid_t& pid, const std::string& help) {
  return app.add_option("--pid", pid, help)
      ->type_name("PID")
      ->check(CLI::Validator(
          [](std::string& value) -> std::string {
            const auto n = parse_u64(value);
            if (n && *n >= 1 && *n <= 4194304) return {};
            return "'" + value + "' is not a process id (give a PID from 1 to 4194304)";
          },
          "", "pid"));
}

namespace {

// A copy whose strings (keys too) are valid UTF-8: dump() throws on anything else, and one mount
// point with a byte like \377 must not make the whole output fail.
nlohmann::json valid_utf8(const nlohmann::json& j) {
  if (j.is_string()) return escape_bytes(j.get_ref<const std::string&>());
  if (j.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& item : j)
      out.push_back(valid_utf8(item));
    return out;
  }
  if (j.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [key, value] : j.items())
      out[escape_bytes(key)] = valid_utf8(value);
    return out;
  }
  return j;
}

}  // namespace

void print_json(std::ostream& out, const nlohmann::json& j) {
  out << valid_utf8(j).dump(2) << "\n";
}

void print_json_line(std::ostream& out, const nlohmann::json& j) {
  out << valid_utf8(j).dump() << std::endl;
}

const nlohmann::json& json_at(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

std::string json_cell(const nlohmann::json& j) {
  if (j.is_null()) return "-";
  if (j.is_string()) return escape_bytes(j.get<std::string>(), true);
  if (j.is_boolean()) return j.get<bool>() ? "yes" : "no";
  return j.dump();
}

void Table::print(std::ostream& out, std::string_view indent) const {
  // Cells as a terminal can show them: bytes that are not UTF-8 and control characters as \ooo.
  std::vector<std::vector<std::string>> rows;
  for (const auto& row : rows_) {
    rows.emplace_back();
    for (const auto& cell : row)
      rows.back().push_back(escape_bytes(cell, true));
  }
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i)
      widths[i] = std::max(widths[i], row[i].size());
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string line(indent);
    for (size_t i = 0; i < rows[r].size(); ++i) {
      line += rows[r][i];
      if (i + 1 < rows[r].size()) line += std::string(widths[i] - rows[r][i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ')
      line.pop_back();
    out << line << "\n";
    (void)has_header_;
  }
}

namespace {

Result<RuntimeProfile> load_profile(const std::string& file) {
  std::ifstream in(file);
  if (!in) {
    return fail(ErrorKind::kUsage, "--profile " + file + ": cannot read it (" +
                                       std::strerror(errno) +
                                       "); give the output of `hostfit calibrate -o json`");
  }
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return fail(ErrorKind::kUsage,
                "--profile " + file + ": not JSON; give the output of `hostfit calibrate -o json`");
  }
  return profile_from_json(json, "--profile " + file);
}

}  // namespace

Result<RuntimeProfile> runtime_from_flags(const std::string& profile_file,
                                          const std::string& runtime) {
  if (!profile_file.empty()) return load_profile(profile_file);
  auto found = find_runtime(runtime.empty() ? "none" : runtime);
  if (!found) return fail(found.error().wrap("bad --runtime"));
  return *found;
}

}  // namespace hostfit::cli
