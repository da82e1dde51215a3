#include <exception>

#include "hostfit/api.h"

namespace hostfit::api {
namespace {

// "/v1/workloads/{name}" -> {"v1", "workloads", "{name}"}; "/" -> {}.
std::vector<std::string> segments_of(std::string_view path) {
  std::vector<std::string> out;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  if (path.empty()) return out;
  for (std::string_view s : split(path, '/'))
    out.emplace_back(s);
  return out;
}

bool is_param(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

// Whether `path` fits the route's pattern; fills params when it does.
bool matches(const std::vector<std::string>& pattern, const std::vector<std::string>& path,
             std::map<std::string, std::string>* params) {
  if (pattern.size() != path.size()) return false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (is_param(pattern[i])) {
      if (path[i].empty()) return false;
      if (params) (*params)[pattern[i].substr(1, pattern[i].size() - 2)] = path[i];
    } else if (pattern[i] != path[i]) {
      return false;
    }
  }
  return true;
}

std::string pattern_text(const std::vector<std::string>& segments) {
  std::string out;
  for (const auto& s : segments)
    out += "/" + s;
  return out.empty() ? "/" : out;
}

}  // namespace

Response error(int status, std::string message, nlohmann::json detail) {
  return json(status, nlohmann::json{{"error", std::move(message)}, {"detail", std::move(detail)}});
}

Response json(int status, const nlohmann::json& body) {
  Response r;
  r.status = status;
  // Names of cgroups, files and commands come from the machine and need not be UTF-8.
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

Result<nlohmann::json> parse_object(const Request& request) {
  if (trim(request.body).empty())
    return fail(ErrorKind::kUsage, "the request needs a JSON object as its body");
  nlohmann::json body;
  try {
    body = nlohmann::json::parse(request.body);
  } catch (const nlohmann::json::parse_error& e) {
    return fail(ErrorKind::kUsage,
                "the body is not JSON (byte " + std::to_string(e.byte) + "): " + e.what());
  }
  if (!body.is_object()) {
    return fail(ErrorKind::kUsage,
                std::string("the body must be a JSON object, not ") + body.type_name());
  }
  return body;
}

void Router::add(std::string method, std::string pattern, Handler handler) {
  routes_.push_back(Route{std::move(method), segments_of(pattern), std::move(handler)});
}

std::string Router::route_key(std::string_view method, std::string_view path) const {
  const auto segments = segments_of(path);
  for (const Route& route : routes_) {
    if (route.method == method && matches(route.segments, segments, nullptr))
      return route.method + " " + pattern_text(route.segments);
  }
  return {};
}

void Router::dispatch(Request request, Reply reply) const {
  const auto segments = segments_of(request.path);
  std::string allowed;
  for (const Route& route : routes_) {
    std::map<std::string, std::string> params;
    if (!matches(route.segments, segments, &params)) continue;
    if (route.method != request.method) {
      if (allowed.find(route.method) == std::string::npos)
        allowed += (allowed.empty() ? "" : ", ") + route.method;
      continue;
    }
    request.params = std::move(params);
    try {
      route.handler(request, reply);
    } catch (const std::exception& e) {
      // Handlers return errors as values; this keeps one bug from ending the daemon's loop.
      reply(error(500, "internal error in " + request.method + " " + request.path, e.what()));
    }
    return;
  }
  if (allowed.empty()) {
    reply(error(404, "no route for " + request.path, nlohmann::json{{"path", request.path}}));
    return;
  }
  Response r = error(405, request.method + " is not allowed on " + request.path,
                     nlohmann::json{{"allow", allowed}});
  r.headers["Allow"] = allowed;
  reply(std::move(r));
}

}  // namespace hostfit::api
