#include "daemon_ledger.h"

#include <sys/stat.h>

#include <cctype>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "hostfit/api.h"
#include "hostfit/daemon.h"

namespace hostfit::cli {
namespace {

ErrorKind kind_of(int status) {
  switch (status) {
    case 400:
      return ErrorKind::kUsage;
    case 404:
      return ErrorKind::kNotFound;
    case 409:
      return ErrorKind::kResource;
    default:
      return ErrorKind::kIo;
  }
}

Error answer_error(const api::ClientResponse& r, const std::string& socket) {
  const auto j = r.json();
  const std::string message =
      j.is_object() && j.contains("error") && j["error"].is_string()
          ? j["error"].get<std::string>()
          : "the daemon at " + socket + " answered " + std::to_string(r.status);
  return Error{kind_of(r.status), message};
}

std::string mems_text(const PlacementRequest& r) {
  switch (r.mems) {
    case MemsMode::kNear:
      return "near";
    case MemsMode::kAll:
      return "all";
    case MemsMode::kList:
      return r.mems_list.to_list();
    default:
      return "follow";
  }
}

// A path segment: unreserved characters as they are, the rest percent-encoded.
std::string segment(std::string_view text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> daemon_ledger_socket(const std::string& ledger_flag) {
  const char* env = std::getenv("HOSTFIT_LEDGER");
  if (!ledger_flag.empty() || (env && *env)) return std::nullopt;
  const std::string socket = default_socket_path();
  struct stat st {};
  if (::stat(socket.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return std::nullopt;
  return socket;
}

Result<Placement> daemon_hold(const std::string& socket, const PlacementRequest& request,
                              const std::string& owner, bool ignore_foreign) {
  std::string policy = to_string(request.policy);
  if (request.policy == PlacementPolicy::kNodes) {
    policy += ":";
    for (size_t i = 0; i < request.nodes.size(); ++i)
      policy += (i ? "," : "") + std::to_string(request.nodes[i]);
  }
  nlohmann::json body = {{"owner", owner},
                         {"policy", policy},
                         {"smt", to_string(request.smt)},
                         {"mems", mems_text(request)}};
  if (ignore_foreign) body["ignore_foreign"] = true;
  if (request.cores > 0) {
    body["cores"] = request.cores;
  } else {
    body["cpus"] = request.cpus;
  }
  auto r = api::request(socket, "POST", "/v1/placements", body.dump());
  if (!r) return fail(r.error().wrap("cannot reach the daemon at " + socket));
  if (r->status != 201) return fail(answer_error(*r, socket));
  const auto j = r->json();
  Placement p;
  auto cpus = CpuSet::parse_list(j.value("cpus", ""));
  auto mems = CpuSet::parse_list(j.value("mems", ""));
  if (!cpus || !mems) return fail(ErrorKind::kParse, "the daemon's placement is not understood");
  p.cpus = *cpus;
  p.mems = *mems;
  p.nodes = j.value("nodes", std::vector<int>{});
  const nlohmann::json per_node = j.value("per_node", nlohmann::json::object());
  for (const auto& [node, n] : per_node.items())
    p.per_node[std::stoi(node)] = n.get<int>();
  p.distance_score = j.value("distance_score", 0);
  p.mean_distance = j.value("mean_distance", 0.0);
  p.split_cores = j.value("split_cores", 0);
  p.full_cores = j.value("smt", "") == "full-cores";
  p.policy = request.policy;
  p.warnings = j.value("warnings", std::vector<std::string>{});
  return p;
}

Result<Ledger> daemon_ledger(const std::string& socket) {
  auto r = api::request(socket, "GET", "/v1/placements");
  if (!r) return fail(r.error().wrap("cannot reach the daemon at " + socket));
  if (r->status != 200) return fail(answer_error(*r, socket));
  const auto j = r->json();
  if (!j.is_object() || !j.contains("holds") || !j["holds"].is_array()) {
    return fail(ErrorKind::kParse, "the daemon's placements are not understood");
  }
  Ledger ledger;
  for (const auto& h : j["holds"]) {
    auto cpus = CpuSet::parse_list(h.value("cpus", ""));
    auto mems = CpuSet::parse_list(h.value("mems", ""));
    if (!cpus || !mems)
      return fail(ErrorKind::kParse, "the daemon's placements are not understood");
    if (auto st = ledger.hold(h.value("owner", ""), *cpus, *mems); !st) return fail(st.error());
  }
  return ledger;
}

Status daemon_release(const std::string& socket, const std::string& owner) {
  auto r = api::request(socket, "DELETE", "/v1/placements/" + segment(owner));
  if (!r) return fail(r.error().wrap("cannot reach the daemon at " + socket));
  if (r->status != 200) return fail(answer_error(*r, socket));
  return {};
}

}  // namespace hostfit::cli
