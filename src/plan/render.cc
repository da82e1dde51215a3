// The plan as JSON and as environment variables for the workload.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "hostfit/plan.h"

namespace hostfit {
namespace {

using nlohmann::json;

// Effective CPUs as a plain decimal: "4", "2.5", "0.333".
std::string cpus_text(double cpus) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", cpus);
  std::string s = buf;
  while (s.ends_with('0'))
    s.pop_back();
  if (s.ends_with('.')) s.pop_back();
  return s;
}

json optional_json(const std::optional<uint64_t>& v) {
  return v ? json(*v) : json(nullptr);
}

json budget_json(const Budget& b) {
  json j;
  j["state"] = to_string(b.state);
  j["instances"] = b.state == Budget::State::kKnown ? json(b.instances) : json(nullptr);
  j["unit"] = b.unit;
  if (b.state == Budget::State::kKnown) {
    j["capacity"] = b.capacity;
    j["used"] = b.used;
    j["headroom"] = b.headroom;
    j["per_instance"] = b.per_instance;
    j["source"] = b.source;
  }
  j["explain"] = b.explanation;
  return j;
}

bool shell_safe(std::string_view v) {
  if (v.empty()) return false;
  for (char c : v) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

json to_json(const Plan& plan) {
  json j;
  j["workers"] = plan.workers;
  j["instances"] = plan.instances;
  j["instances_per_worker"] = plan.instances_per_worker;
  j["cpus"] = std::round(plan.cpus * 1000) / 1000;
  j["binding"] = plan.binding;
  j["binding_kind"] = to_string(plan.binding_kind);
  j["instance_budget"] = optional_json(plan.instance_budget);
  j["runtime"] = {
      {"name", plan.runtime},
      {"label", plan.runtime_label},
      {"source", plan.runtime_source},
      {"reserve_bytes", plan.reserve_bytes},
      {"resident_bytes", plan.resident_bytes},
      {"maps", plan.maps_per_instance},
      {"instance_cap", optional_json(plan.instance_cap)},
  };
  json budgets = json::object();
  budgets["cpu"] = {
      {"state", "known"},
      {"cpus", std::round(plan.cpus * 1000) / 1000},
      {"rounding", to_string(plan.rounding)},
      {"workers", plan.cpu_workers},
      {"explain", plan.cpu_explanation},
  };
  for (const auto& b : plan.budgets)
    budgets[to_string(b.constraint)] = budget_json(b);
  j["budgets"] = std::move(budgets);
  j["cpuset"] = plan.cpuset.to_list();
  j["mems"] = plan.mems ? json(plan.mems->to_list()) : json(nullptr);
  j["memory_limit_bytes"] =
      plan.memory_limit.is_unlimited() ? json(nullptr) : json(*plan.memory_limit.value);
  j["warnings"] = plan.warnings;
  return j;
}

std::vector<std::pair<std::string, std::string>> plan_environment(const Plan& plan) {
  const std::string workers = std::to_string(plan.workers);
  // libuv rejects thread pools above 1024 threads and clamps to that.
  const std::string uv_pool = std::to_string(std::min<uint64_t>(plan.workers, 1024));
  return {
      {"HOSTFIT_WORKERS", workers},
      {"HOSTFIT_CPUS", cpus_text(plan.cpus)},
      {"HOSTFIT_INSTANCES", std::to_string(plan.instances)},
      {"GOMAXPROCS", workers},
      {"UV_THREADPOOL_SIZE", uv_pool},
      {"TOKIO_WORKER_THREADS", workers},
      {"RAYON_NUM_THREADS", workers},
      {"OMP_NUM_THREADS", workers},
  };
}

std::string render_env(const std::vector<std::pair<std::string, std::string>>& env) {
  std::string out;
  for (const auto& [key, value] : env) {
    out += key + "=";
    if (shell_safe(value)) {
      out += value;
    } else {
      // Single quotes keep everything literal in sh; a quote itself is closed, escaped, reopened.
      out += "'";
      for (char c : value) {
        if (c == '\'') {
          out += "'\\''";
        } else {
          out += c;
        }
      }
      out += "'";
    }
    out += "\n";
  }
  return out;
}

PlaceholderValues placeholder_values(const Plan& plan) {
  PlaceholderValues v;
  v.workers = std::to_string(plan.workers);
  v.cpus = cpus_text(plan.cpus);
  v.instances = std::to_string(plan.instances);
  v.cpuset = plan.cpuset.to_list();
  v.mems = plan.mems ? plan.mems->to_list() : std::string();
  v.memory_limit =
      plan.memory_limit.is_unlimited() ? "max" : std::to_string(*plan.memory_limit.value);
  return v;
}

}  // namespace hostfit
