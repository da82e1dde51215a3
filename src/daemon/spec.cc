// The workload JSON shape, checked strictly once for config files and the API alike.
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "daemon_impl.h"
#include "hostfit/cgroup.h"
#include "hostfit/daemon.h"
#include "hostfit/plan.h"

namespace hostfit {
namespace {

using nlohmann::json;

constexpr const char* kKeys[] = {"name",
                                 "argv",
                                 "env",
                                 "user",
                                 "cpus",
                                 "cpuset",
                                 "placement",
                                 "memory",
                                 "memory_high",
                                 "pids",
                                 "cache_limit",
                                 "runtime",
                                 "plugins",
                                 "restart",
                                 "restart_limit",
                                 "restart_backoff_ms",
                                 "stop_timeout_ms",
                                 "start"};
constexpr int64_t kMaxBackoffMs = 60'000;
constexpr int64_t kMaxStopTimeoutMs = 3'600'000;

std::unexpected<Error> bad(std::string_view key, std::string what) {
  return fail(ErrorKind::kUsage, "bad \"" + std::string(key) + "\": " + what);
}

// A size: "64Mi", "1.5G" or a whole number of bytes, at least `min`.
Result<uint64_t> size_of(const json& v, std::string_view key, uint64_t min) {
  uint64_t bytes = 0;
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    bytes = v.get<uint64_t>();
  } else if (v.is_string()) {
    auto parsed = parse_bytes(v.get<std::string>());
    if (!parsed) return bad(key, parsed.error().message);
    bytes = *parsed;
  } else {
    return bad(key, "give a size such as \"64Mi\" or a number of bytes");
  }
  if (bytes < min) {
    return bad(key, format_bytes(bytes) + " is below the minimum of " + format_bytes(min));
  }
  return bytes;
}

Result<int64_t> int_in(const json& v, std::string_view key, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) return bad(key, "give a whole number");
  const int64_t n = v.get<int64_t>();
  if (n < lo || n > hi) {
    return bad(key, std::to_string(n) + " is out of range " + std::to_string(lo) + ".." +
                        std::to_string(hi));
  }
  return n;
}

Result<std::string> string_of(const json& v, std::string_view key) {
  if (!v.is_string()) return bad(key, "give a string");
  return v.get<std::string>();
}

Status parse_argv(const json& v, WorkloadSpec& s) {
  if (!v.is_array() || v.empty()) return bad("argv", "give a non-empty list of strings");
  for (const auto& a : v) {
    if (!a.is_string()) return bad("argv", "every element must be a string, not " + a.dump());
    s.argv.push_back(a.get<std::string>());
  }
  if (s.argv[0].empty()) return bad("argv", "the command (first element) is empty");
  return {};
}

Status parse_env(const json& v, WorkloadSpec& s) {
  if (!v.is_object()) return bad("env", "give an object of strings, {\"KEY\": \"value\"}");
  for (const auto& [k, val] : v.items()) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos) {
      return bad("env", "variable name '" + escape_bytes(k) + "' is empty or holds '='");
    }
    if (!val.is_string()) return bad("env", "the value of " + k + " must be a string");
    s.env[k] = val.get<std::string>();
  }
  return {};
}

Status parse_restart(const json& v, WorkloadSpec& s) {
  auto text = string_of(v, "restart");
  if (!text) return fail(text.error());
  if (*text == "never") {
    s.restart = RestartPolicy::kNever;
  } else if (*text == "on-failure") {
    s.restart = RestartPolicy::kOnFailure;
  } else if (*text == "always") {
    s.restart = RestartPolicy::kAlways;
  } else {
    return bad("restart", "'" + escape_bytes(*text) + "': give never, on-failure or always");
  }
  return {};
}

Status parse_field(const std::string& key, const json& v, WorkloadSpec& s) {
  if (key == "name") {
    auto name = string_of(v, key);
    if (!name) return fail(name.error());
    if (auto st = validate_cgroup_name(*name); !st) return bad(key, st.error().message);
    s.name = *name;
  } else if (key == "argv") {
    return parse_argv(v, s);
  } else if (key == "env") {
    return parse_env(v, s);
  } else if (key == "user") {
    auto user = string_of(v, key);
    if (!user) return fail(user.error());
    if (user->empty() || user->find_first_of("/:\n") != std::string::npos) {
      return bad(key, "give a user name or a numeric uid");
    }
    s.user = *user;
  } else if (key == "cpus") {
    if (!v.is_number()) return bad(key, "give a number of CPUs, such as 1.5");
    const double c = v.get<double>();
    if (!std::isfinite(c) || c < 0.01 || c > 65536) return bad(key, "give 0.01 to 65536 CPUs");
    s.cpus = c;
  } else if (key == "cpuset") {
    auto text = string_of(v, key);
    if (!text) return fail(text.error());
    auto set = CpuSet::parse_list(*text);
    if (!set) return bad(key, set.error().message);
    if (set->empty()) return bad(key, "the CPU list is empty");
    s.cpuset = *set;
  } else if (key == "placement") {
    auto text = string_of(v, key);
    if (!text) return fail(text.error());
    auto policy = parse_policy(*text, &s.placement_nodes);
    if (!policy) return bad(key, policy.error().message);
    s.placement = *policy;
  } else if (key == "memory") {
    auto bytes = size_of(v, key, kMinWorkloadMemoryBytes);
    if (!bytes) return fail(bytes.error());
    s.memory_max_bytes = *bytes;
  } else if (key == "memory_high") {
    auto bytes = size_of(v, key, kMinWorkloadMemoryBytes);
    if (!bytes) return fail(bytes.error());
    s.memory_high_bytes = *bytes;
  } else if (key == "runtime") {
    auto name = string_of(v, key);
    if (!name) return fail(name.error());
    auto runtime = find_runtime(*name);  // the names `hostfit run --runtime` takes
    if (!runtime) return bad(key, runtime.error().message);
    s.runtime = runtime->name == "none" ? "" : runtime->name;
  } else if (key == "plugins") {
    auto n = int_in(v, key, 1, 1000000);
    if (!n) return fail(n.error());
    s.plugins = static_cast<uint64_t>(*n);
  } else if (key == "pids") {
    auto n = int_in(v, key, 1, 4194304);
    if (!n) return fail(n.error());
    s.pids_max = static_cast<uint64_t>(*n);
  } else if (key == "cache_limit") {
    auto bytes = size_of(v, key, kMinCacheLimitBytes);
    if (!bytes) return fail(bytes.error());
    s.cache_limit_bytes = *bytes;
  } else if (key == "restart") {
    return parse_restart(v, s);
  } else if (key == "restart_limit") {
    auto n = int_in(v, key, 0, 1000);
    if (!n) return fail(n.error());
    s.restart_limit = static_cast<int>(*n);
  } else if (key == "restart_backoff_ms") {
    auto n = int_in(v, key, 10, kMaxBackoffMs);
    if (!n) return fail(n.error());
    s.restart_backoff = std::chrono::milliseconds(*n);
  } else if (key == "stop_timeout_ms") {
    auto n = int_in(v, key, 0, kMaxStopTimeoutMs);
    if (!n) return fail(n.error());
    s.stop_timeout = std::chrono::milliseconds(*n);
  } else if (key == "start") {
    if (!v.is_boolean()) return bad(key, "give true or false");
    s.autostart = v.get<bool>();
  }
  return {};
}

// The 1-based line of byte offset `pos` in text.
int line_at(const std::string& text, size_t pos) {
  pos = std::min(pos, text.size());
  return 1 +
         static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(pos), '\n'));
}

}  // namespace

const char* to_string(RestartPolicy policy) {
  switch (policy) {
    case RestartPolicy::kNever:
      return "never";
    case RestartPolicy::kOnFailure:
      return "on-failure";
    case RestartPolicy::kAlways:
      return "always";
  }
  return "never";
}

Result<WorkloadSpec> parse_workload_spec(const json& j) {
  if (!j.is_object()) return fail(ErrorKind::kUsage, "a workload is a JSON object");
  WorkloadSpec s;
  for (const auto& [key, value] : j.items()) {
    if (std::find(std::begin(kKeys), std::end(kKeys), key) == std::end(kKeys)) {
      std::string known;
      for (const char* k : kKeys)
        known += (known.empty() ? "" : ", ") + std::string(k);
      return fail(ErrorKind::kUsage,
                  "unknown key \"" + escape_bytes(key) + "\" (known: " + known + ")");
    }
    if (auto st = parse_field(key, value, s); !st) return fail(st.error());
  }
  if (s.name.empty()) return fail(ErrorKind::kUsage, "missing \"name\"");
  if (s.argv.empty()) return fail(ErrorKind::kUsage, "missing \"argv\" (a list of strings)");
  if (s.placement && s.cpuset) {
    return fail(ErrorKind::kUsage, "\"placement\" and \"cpuset\" exclude each other");
  }
  if (s.placement && !s.cpus) {
    return fail(ErrorKind::kUsage,
                "\"placement\" needs \"cpus\": it places ceil(cpus) CPUs and sets that quota");
  }
  if (s.plugins > 0 && s.runtime.empty()) {
    return bad("plugins",
               "needs a sandbox \"runtime\" (v8, envoy-v8, wasmtime, wasmer, wamr): "
               "its per-instance costs size {workers} and {instances}");
  }
  if (s.cpus && s.cpuset && *s.cpus > s.cpuset->count() + 1e-9) {
    return bad("cpus", "more than the " + std::to_string(s.cpuset->count()) + " CPUs of cpuset");
  }
  return s;
}

json to_json(const WorkloadSpec& s) {
  json j = {{"name", s.name},
            {"argv", s.argv},
            {"env", s.env},
            {"restart", to_string(s.restart)},
            {"restart_limit", s.restart_limit},
            {"restart_backoff_ms", s.restart_backoff.count()},
            {"stop_timeout_ms", s.stop_timeout.count()},
            {"start", s.autostart}};
  if (!s.user.empty()) j["user"] = s.user;
  if (s.cpus) j["cpus"] = *s.cpus;
  if (s.cpuset) j["cpuset"] = s.cpuset->to_list();
  if (s.placement) {
    std::string p = to_string(*s.placement);
    if (!s.placement_nodes.empty()) {
      p += ":";
      for (size_t i = 0; i < s.placement_nodes.size(); ++i)
        p += (i ? "," : "") + std::to_string(s.placement_nodes[i]);
    }
    j["placement"] = p;
  }
  if (s.memory_max_bytes) j["memory"] = *s.memory_max_bytes;
  if (s.memory_high_bytes) j["memory_high"] = *s.memory_high_bytes;
  if (s.pids_max) j["pids"] = *s.pids_max;
  if (s.cache_limit_bytes) j["cache_limit"] = *s.cache_limit_bytes;
  if (!s.runtime.empty()) j["runtime"] = s.runtime;
  if (s.plugins > 0) j["plugins"] = s.plugins;
  return j;
}

ConfigLoad load_config_dir(const std::filesystem::path& dir) {
  ConfigLoad out;
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  if (ec) {
    out.errors.push_back({dir.string(), 0, "cannot read the directory: " + ec.message()});
    return out;
  }
  std::sort(files.begin(), files.end());
  std::map<std::string, std::string> seen;  // name -> file
  for (const auto& file : files) {
    std::ifstream in(file);
    std::stringstream buffer;
    buffer << in.rdbuf();
    const std::string text = buffer.str();
    if (!in && !in.eof()) {
      out.errors.push_back({file.string(), 0, "cannot read the file"});
      continue;
    }
    json j;
    try {
      j = json::parse(text);
    } catch (const json::parse_error& e) {
      out.errors.push_back({file.string(), line_at(text, e.byte > 0 ? e.byte - 1 : 0),
                            "not JSON: " + std::string(e.what())});
      continue;
    }
    auto spec = parse_workload_spec(j);
    if (!spec) {
      // Point at the offending key when the message names one.
      int line = 1;
      const auto& m = spec.error().message;
      if (auto q = m.find('"'); q != std::string::npos) {
        const auto q2 = m.find('"', q + 1);
        const auto at = text.find(m.substr(q, q2 - q + 1));
        if (q2 != std::string::npos && at != std::string::npos) line = line_at(text, at);
      }
      out.errors.push_back({file.string(), line, m});
      continue;
    }
    if (auto it = seen.find(spec->name); it != seen.end()) {
      out.errors.push_back(
          {file.string(), 1, "workload '" + spec->name + "' is already defined in " + it->second});
      continue;
    }
    seen[spec->name] = file.string();
    out.workloads.emplace_back(file.string(), std::move(*spec));
  }
  return out;
}

Result<PlacementBody> parse_placement_body(const json& body) {
  PlacementBody out;
  PlacementRequest& request = out.request;
  for (const auto& [k, v] : body.items()) {
    const auto positive = [&](int& n) {
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 65536) return false;
      n = static_cast<int>(v.get<int64_t>());
      return true;
    };
    if (k == "owner" && v.is_string() && !v.get<std::string>().empty()) {
      out.owner = v.get<std::string>();
    } else if (k == "cpus" && positive(request.cpus)) {
    } else if (k == "cores" && positive(request.cores)) {
    } else if (k == "ignore_foreign" && v.is_boolean()) {
      out.ignore_foreign = v.get<bool>();
    } else if (k == "policy" && v.is_string()) {
      auto p = parse_policy(v.get<std::string>(), &request.nodes);
      if (!p) return fail(ErrorKind::kUsage, "bad \"policy\": " + p.error().message);
      request.policy = *p;
    } else if (k == "smt" && v.is_string()) {
      auto p = parse_smt(v.get<std::string>());
      if (!p) return fail(ErrorKind::kUsage, "bad \"smt\": " + p.error().message);
      request.smt = *p;
    } else if (k == "mems" && v.is_string()) {
      auto p = parse_mems(v.get<std::string>(), &request.mems_list);
      if (!p) return fail(ErrorKind::kUsage, "bad \"mems\": " + p.error().message);
      request.mems = *p;
    } else {
      return fail(ErrorKind::kUsage, "bad or unknown key \"" + escape_bytes(k) +
                                         "\" (known: owner, a string; cpus or cores, 1 or more; "
                                         "policy, smt, mems, strings as for hostfit place; "
                                         "ignore_foreign, a boolean)");
    }
  }
  if (out.owner.empty()) return fail(ErrorKind::kUsage, "missing \"owner\"");
  if ((request.cpus > 0) == (request.cores > 0))
    return fail(ErrorKind::kUsage, "give exactly one of \"cpus\" and \"cores\"");
  return out;
}

Result<AttachmentRow> parse_attachment_body(const json& body) {
  AttachmentRow row;
  for (const auto& [k, v] : body.items()) {
    if (k == "name" && v.is_string()) {
      row.name = v.get<std::string>();
    } else if (k == "cgroup" && v.is_string()) {
      row.cgroup = v.get<std::string>();
    } else if (k == "cache_limit" &&
               (v.is_string() || (v.is_number_integer() && v.get<int64_t>() >= 0))) {
      auto bytes =
          v.is_string() ? parse_bytes(v.get<std::string>()) : Result<uint64_t>(v.get<uint64_t>());
      if (!bytes) return fail(ErrorKind::kUsage, "bad \"cache_limit\": " + bytes.error().message);
      if (*bytes < kMinCacheLimitBytes) {
        return fail(ErrorKind::kUsage, "bad \"cache_limit\": below the minimum of " +
                                           format_bytes(kMinCacheLimitBytes));
      }
      // The store keeps it as a signed 64-bit number: "9Ei" would come back negative.
      if (*bytes > static_cast<uint64_t>(INT64_MAX)) {
        return fail(ErrorKind::kUsage, "bad \"cache_limit\": " + format_bytes(*bytes) +
                                           " is above the maximum of " +
                                           format_bytes(static_cast<uint64_t>(INT64_MAX)));
      }
      row.cache_limit_bytes = static_cast<int64_t>(*bytes);
    } else {
      return fail(ErrorKind::kUsage,
                  "bad or unknown key \"" + escape_bytes(k) +
                      "\" (known: name and cgroup, strings; cache_limit, a size)");
    }
  }
  if (row.cgroup.empty()) return fail(ErrorKind::kUsage, "missing \"cgroup\"");
  if (row.name.empty()) row.name = row.cgroup.substr(row.cgroup.rfind('/') + 1);
  if (auto st = validate_cgroup_name(row.name); !st)
    return fail(ErrorKind::kUsage, "bad \"name\": " + st.error().message);
  return row;
}

Result<sessions::OpenRequest> parse_session_body(const json& body) {
  sessions::OpenRequest open;
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& key = it.key();
    if ((key != "template" && key != "owner" && key != "subdomain") || !it.value().is_string()) {
      return fail(ErrorKind::kUsage,
                  "bad session key \"" + escape_bytes(key) +
                      "\": give \"template\", \"owner\" and optionally \"subdomain\", as strings");
    }
    (key == "template" ? open.template_name
     : key == "owner"  ? open.owner
                       : open.subdomain) = it.value().get<std::string>();
  }
  return open;
}

}  // namespace hostfit
