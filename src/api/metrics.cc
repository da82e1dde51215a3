#include "metrics.h"

#include <cstdio>
#include <iterator>

namespace hostfit::api {
namespace {

constexpr std::size_t kBucketCount = std::size(kLatencyBoundsSeconds);

// A label value as the exposition format wants it: backslash, quote and newline escaped.
std::string label(std::string_view value) {
  std::string out;
  for (char c : escape_bytes(value)) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string number(double v) {
  char text[64];
  std::snprintf(text, sizeof text, "%.9g", v);
  return text;
}

}  // namespace

void record(std::map<std::string, RouteStats>& stats, const std::string& key, int status,
            std::chrono::steady_clock::duration latency) {
  RouteStats& s = stats[key];
  if (s.latency_buckets.size() != kBucketCount) s.latency_buckets.assign(kBucketCount, 0);
  const double seconds = std::chrono::duration<double>(latency).count();
  ++s.count;
  ++s.by_status[status];
  s.latency_sum_seconds += seconds;
  for (std::size_t i = 0; i < kBucketCount; ++i) {
    if (seconds <= kLatencyBoundsSeconds[i]) ++s.latency_buckets[i];
  }
}

std::string format_metrics(const std::map<std::string, RouteStats>& stats,
                           std::size_t open_connections) {
  std::string out =
      "# HELP hostfit_api_requests_total API requests answered, by route and status.\n"
      "# TYPE hostfit_api_requests_total counter\n";
  for (const auto& [route, s] : stats) {
    for (const auto& [status, n] : s.by_status) {
      out += "hostfit_api_requests_total{route=\"" + label(route) + "\",status=\"" +
             std::to_string(status) + "\"} " + std::to_string(n) + "\n";
    }
  }
  out +=
      "# HELP hostfit_api_request_duration_seconds Time from a request read in full to its "
      "answer.\n"
      "# TYPE hostfit_api_request_duration_seconds histogram\n";
  for (const auto& [route, s] : stats) {
    const std::string name = "hostfit_api_request_duration_seconds";
    const std::string l = "route=\"" + label(route) + "\"";
    for (std::size_t i = 0; i < kBucketCount && i < s.latency_buckets.size(); ++i) {
      out += name + "_bucket{" + l + ",le=\"" + number(kLatencyBoundsSeconds[i]) + "\"} " +
             std::to_string(s.latency_buckets[i]) + "\n";
    }
    out += name + "_bucket{" + l + ",le=\"+Inf\"} " + std::to_string(s.count) + "\n";
    out += name + "_sum{" + l + "} " + number(s.latency_sum_seconds) + "\n";
    out += name + "_count{" + l + "} " + std::to_string(s.count) + "\n";
  }
  out +=
      "# HELP hostfit_api_connections Open API connections.\n"
      "# TYPE hostfit_api_connections gauge\n"
      "hostfit_api_connections " +
      std::to_string(open_connections) + "\n";
  return out;
}

}  // namespace hostfit::api
