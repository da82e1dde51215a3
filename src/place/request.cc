// The words of a placement request and the machine-readable form of a placement.
#include <nlohmann/json.hpp>

#include "hostfit/place.h"

namespace hostfit {

Result<PlacementPolicy> parse_policy(std::string_view text, std::vector<int>* nodes) {
  const std::string_view t = trim(text);
  if (t == "balanced") return PlacementPolicy::kBalanced;
  if (t == "compact") return PlacementPolicy::kCompact;
  if (t == "spread") return PlacementPolicy::kSpread;
  if (t.starts_with("nodes:")) {
    auto list = CpuSet::parse_list(t.substr(6));
    if (!list || list->empty()) {
      return fail(ErrorKind::kUsage, "invalid policy '" + std::string(t) +
                                         "': expected nodes:LIST with node ids like nodes:0-2,5");
    }
    if (nodes) *nodes = list->ids();
    return PlacementPolicy::kNodes;
  }
  return fail(ErrorKind::kUsage, "unknown policy '" + std::string(t) +
                                     "': expected balanced, compact, spread or nodes:LIST");
}

Result<SmtMode> parse_smt(std::string_view text) {
  const std::string_view t = trim(text);
  if (t == "full-cores") return SmtMode::kFullCores;
  if (t == "any") return SmtMode::kAny;
  if (t == "auto") return SmtMode::kAuto;
  return fail(ErrorKind::kUsage,
              "unknown --smt '" + std::string(t) + "': expected full-cores, any or auto");
}

Result<MemsMode> parse_mems(std::string_view text, CpuSet* list) {
  const std::string_view t = trim(text);
  if (t == "follow") return MemsMode::kFollow;
  if (t == "near") return MemsMode::kNear;
  if (t == "all") return MemsMode::kAll;
  auto ids = CpuSet::parse_list(t);
  if (!ids || ids->empty()) {
    return fail(ErrorKind::kUsage, "invalid --mems '" + std::string(t) +
                                       "': expected follow, near, all or a node list like 0-1,4");
  }
  if (list) *list = *ids;
  return MemsMode::kList;
}

std::string to_string(PlacementPolicy policy) {
  switch (policy) {
    case PlacementPolicy::kBalanced:
      return "balanced";
    case PlacementPolicy::kCompact:
      return "compact";
    case PlacementPolicy::kSpread:
      return "spread";
    case PlacementPolicy::kNodes:
      return "nodes";
  }
  return "unknown";
}

std::string to_string(SmtMode mode) {
  switch (mode) {
    case SmtMode::kAuto:
      return "auto";
    case SmtMode::kFullCores:
      return "full-cores";
    case SmtMode::kAny:
      return "any";
  }
  return "unknown";
}

nlohmann::json to_json(const Placement& p) {
  nlohmann::json per_node = nlohmann::json::object();
  for (const auto& [id, n] : p.per_node)
    per_node[std::to_string(id)] = n;
  return {
      {"cpus", p.cpus.to_list()},
      {"count", p.cpus.count()},
      {"mems", p.mems.to_list()},
      {"nodes", p.nodes},
      {"per_node", per_node},
      {"distance_score", p.distance_score},
      {"mean_distance", p.mean_distance},
      {"split_cores", p.split_cores},
      {"smt", p.full_cores ? "full-cores" : "any"},
      {"policy", to_string(p.policy)},
      {"warnings", p.warnings},
  };
}

}  // namespace hostfit
