// Counting requests per route for Server::stats() and /metrics.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "hostfit/api.h"

namespace hostfit::api {

void record(std::map<std::string, RouteStats>& stats, const std::string& key, int status,
            std::chrono::steady_clock::duration latency);
// Prometheus text format 0.0.4: requests by route and status, a latency histogram per route,
// and the number of open connections.
std::string format_metrics(const std::map<std::string, RouteStats>& stats,
                           std::size_t open_connections);

}  // namespace hostfit::api
