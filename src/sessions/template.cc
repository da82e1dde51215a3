// Engine templates: the strict JSON shape, names and keys.
#include <cctype>
#include <set>

#include "hostfit/sessions.h"
#include "placeholders.h"

namespace hostfit::sessions {
namespace {

using nlohmann::json;

const std::set<std::string, std::less<>> kKeys = {
    "name",         "argv",         "env",         "init",      "user",
    "memory",       "cpus",         "share_level", "readiness", "launch_timeout",
    "idle_timeout", "stop_timeout", "pool_size",   "on_oom"};

Status bad(std::string_view key, std::string_view what) {
  return fail(ErrorKind::kUsage,
              "engine template: \"" + std::string(key) + "\" " + std::string(what));
}

Result<std::string> string_of(const json& j, std::string_view key) {
  if (!j.is_string()) return fail(bad(key, "must be a string").error());
  return j.get<std::string>();
}

Result<std::vector<std::string>> argv_of(const json& j, std::string_view key, bool allow_empty) {
  if (!j.is_array()) return fail(bad(key, "must be a list of strings").error());
  if (j.empty() && !allow_empty) return fail(bad(key, "must not be empty").error());
  std::vector<std::string> out;
  for (const auto& a : j) {
    if (!a.is_string()) return fail(bad(key, "must be a list of strings").error());
    out.push_back(a.get<std::string>());
  }
  if (!out.empty() && out[0].empty())
    return fail(bad(key, "must name a program first, not \"\"").error());
  for (size_t i = 0; i < out.size(); ++i) {
    if (auto st = check_placeholders(out[i]); !st)
      return fail(st.error().wrap("engine template: \"" + std::string(key) + "\" argument " +
                                  std::to_string(i)));
  }
  return out;
}

Result<std::chrono::milliseconds> duration_of(const json& j, std::string_view key,
                                              bool allow_zero) {
  auto text = string_of(j, key);
  if (!text) return fail(text.error());
  auto d = parse_duration(*text);
  if (!d) return fail(d.error().wrap("engine template: \"" + std::string(key) + "\""));
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  if (ms.count() == 0 && !allow_zero)
    return fail(bad(key, "must be at least 1ms, e.g. \"60s\"").error());
  return ms;
}

Result<Readiness> readiness_of(const json& j) {
  constexpr std::string_view kAccepted =
      "must be one of {\"port\": true}, {\"socket\": \"PATH\"}, {\"line\": \"TEXT\"}";
  if (!j.is_object() || j.size() != 1) return fail(bad("readiness", kAccepted).error());
  const std::string kind = j.begin().key();
  const json& value = j.begin().value();
  Readiness r;
  if (kind == "port") {
    if (value != json(true)) return fail(bad("readiness", kAccepted).error());
    r.kind = ReadinessKind::kPort;
    return r;
  }
  if ((kind != "socket" && kind != "line") || !value.is_string() ||
      value.get<std::string>().empty())
    return fail(bad("readiness", kAccepted).error());
  r.kind = kind == "socket" ? ReadinessKind::kSocket : ReadinessKind::kLine;
  r.target = value.get<std::string>();
  if (r.kind == ReadinessKind::kSocket) {
    if (auto st = check_placeholders(r.target); !st)
      return fail(st.error().wrap("engine template: \"readiness\""));
  }
  return r;
}

Result<ShareLevel> level_of(std::string_view text) {
  if (text == "connection") return ShareLevel::kConnection;
  if (text == "user") return ShareLevel::kUser;
  if (text == "server") return ShareLevel::kServer;
  return fail(ErrorKind::kUsage, "engine template: \"share_level\" '" + std::string(text) +
                                     "' is not one of connection, user, server");
}

// Applies one key of the template object.
Status apply(EngineTemplate& t, const std::string& key, const json& v) {
  if (key == "name") {
    auto s = string_of(v, key);
    if (!s) return fail(s.error());
    t.name = *s;
    return check_name("engine template name", t.name, 32);
  }
  if (key == "argv" || key == "init") {
    auto a = argv_of(v, key, key == "init");
    if (!a) return fail(a.error());
    (key == "argv" ? t.argv : t.init) = std::move(*a);
    return {};
  }
  if (key == "env") {
    if (!v.is_object()) return bad(key, "must be an object of strings");
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string& name = it.key();
      const json& value = it.value();
      if (name.empty() || name.find('=') != std::string::npos || !value.is_string())
        return bad(key, "must be an object of strings with names without '='");
      if (auto st = check_placeholders(value.get<std::string>()); !st)
        return fail(st.error().wrap("engine template: \"env\" " + name));
      t.env[name] = value.get<std::string>();
    }
    return {};
  }
  if (key == "user") {
    auto s = string_of(v, key);
    if (!s) return fail(s.error());
    t.user = *s;
    return t.user.empty() ? Status{} : check_name("engine template user", t.user, 32);
  }
  if (key == "memory") {
    auto s = string_of(v, key);
    if (!s) return fail(s.error());
    auto bytes = parse_bytes(*s);
    if (!bytes) return fail(bytes.error().wrap("engine template: \"memory\""));
    if (*bytes < (uint64_t{4} << 20)) return bad(key, "must be at least 4Mi");
    t.memory_max_bytes = *bytes;
    return {};
  }
  if (key == "cpus") {
    if (!v.is_number() || v.get<double>() < 0.01 || v.get<double>() > 4096)
      return bad(key, "must be a number of CPUs from 0.01 to 4096");
    t.cpus = v.get<double>();
    return {};
  }
  if (key == "share_level") {
    auto s = string_of(v, key);
    if (!s) return fail(s.error());
    auto level = level_of(*s);
    if (!level) return fail(level.error());
    t.share_level = *level;
    return {};
  }
  if (key == "readiness") {
    auto r = readiness_of(v);
    if (!r) return fail(r.error());
    t.readiness = *r;
    return {};
  }
  if (key == "launch_timeout" || key == "idle_timeout" || key == "stop_timeout") {
    auto d = duration_of(v, key, key != "launch_timeout");
    if (!d) return fail(d.error());
    (key == "launch_timeout" ? t.launch_timeout
     : key == "idle_timeout" ? t.idle_timeout
                             : t.stop_timeout) = *d;
    return {};
  }
  if (key == "pool_size") {
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMaxPoolSize)
      return bad(key, "must be a whole number from 1 to " + std::to_string(kMaxPoolSize));
    t.pool_size = v.get<int>();
    return {};
  }
  // on_oom
  auto s = string_of(v, key);
  if (!s) return fail(s.error());
  if (*s != "fail" && *s != "ignore") return bad(key, "'" + *s + "' is not one of fail, ignore");
  t.on_oom = *s == "fail" ? OnOom::kFail : OnOom::kIgnore;
  return {};
}

std::string duration_text(std::chrono::milliseconds d) {
  if (d.count() % 60'000 == 0 && d.count() != 0) return std::to_string(d.count() / 60'000) + "m";
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

}  // namespace

const char* to_string(ShareLevel level) {
  switch (level) {
    case ShareLevel::kConnection:
      return "connection";
    case ShareLevel::kUser:
      return "user";
    case ShareLevel::kServer:
      return "server";
  }
  return "user";
}

Status check_name(std::string_view what, std::string_view name, size_t max_length, bool allow_at) {
  const auto accepted = [&] {
    return std::string(what) + " '" + escape_bytes(name, true) + "' is not a safe name: use 1.." +
           std::to_string(max_length) + " letters, digits, '.', '_', '-'" +
           (allow_at ? ", '@'" : "") + ", starting with a letter or digit";
  };
  if (name.empty() || name.size() > max_length ||
      !std::isalnum(static_cast<unsigned char>(name[0])))
    return fail(ErrorKind::kUsage, accepted());
  for (char c : name) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                    c == '-' || (allow_at && c == '@');
    if (!ok) return fail(ErrorKind::kUsage, accepted());
  }
  return {};
}

Result<EngineTemplate> parse_template(const json& j) {
  if (!j.is_object()) return fail(ErrorKind::kUsage, "engine template: must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (!kKeys.contains(key)) {
      std::string known;
      for (const auto& k : kKeys)
        known += (known.empty() ? "" : ", ") + k;
      return fail(ErrorKind::kUsage, "engine template: unknown key \"" + escape_bytes(key, true) +
                                         "\" (known: " + known + ")");
    }
  }
  for (const char* required : {"name", "argv"}) {
    if (!j.contains(required))
      return fail(ErrorKind::kUsage,
                  std::string("engine template: \"") + required + "\" is required");
  }
  EngineTemplate t;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (auto st = apply(t, it.key(), it.value()); !st) return fail(st.error());
  }
  return t;
}

json to_json(const EngineTemplate& t) {
  json j = {{"name", t.name},
            {"argv", t.argv},
            {"env", t.env},
            {"share_level", to_string(t.share_level)},
            {"launch_timeout", duration_text(t.launch_timeout)},
            {"idle_timeout", duration_text(t.idle_timeout)},
            {"stop_timeout", duration_text(t.stop_timeout)},
            {"pool_size", t.pool_size},
            {"on_oom", t.on_oom == OnOom::kFail ? "fail" : "ignore"}};
  if (!t.init.empty()) j["init"] = t.init;
  if (!t.user.empty()) j["user"] = t.user;
  if (t.memory_max_bytes) j["memory"] = std::to_string(*t.memory_max_bytes);
  if (t.cpus) j["cpus"] = *t.cpus;
  switch (t.readiness.kind) {
    case ReadinessKind::kPort:
      j["readiness"] = {{"port", true}};
      break;
    case ReadinessKind::kSocket:
      j["readiness"] = {{"socket", t.readiness.target}};
      break;
    case ReadinessKind::kLine:
      j["readiness"] = {{"line", t.readiness.target}};
      break;
  }
  return j;
}

std::string EngineKey::text() const {
  return template_name + "/" + to_string(level) + "/" + owner + "/" + subdomain;
}

Result<EngineKey> parse_key(std::string_view text) {
  const auto parts = split(text, '/');
  const auto bad_key = [&] {
    return fail(ErrorKind::kUsage, "engine key '" + escape_bytes(text, true) +
                                       "' is not TEMPLATE/LEVEL/OWNER/SUBDOMAIN, e.g. "
                                       "pg/user/alice/default");
  };
  if (parts.size() != 4) return bad_key();
  EngineKey key;
  key.template_name = std::string(parts[0]);
  auto level = level_of(parts[1]);
  if (!level) return bad_key();
  key.level = *level;
  key.owner = std::string(parts[2]);
  key.subdomain = std::string(parts[3]);
  if (!check_name("template", key.template_name, 32) ||
      (key.owner != "*" && !check_name("owner", key.owner, 64, true)) ||
      !check_name("subdomain", key.subdomain))
    return bad_key();
  return key;
}

}  // namespace hostfit::sessions
