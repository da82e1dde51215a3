// hostfit api: HTTP/1.1 + JSON on Boost.Beast, on the caller's one Boost.Asio io_context.
//
// The module knows nothing about workloads: it owns transport (a Unix socket, and a TCP listener
// only with a bearer token), routing, request limits, error shapes, its own request metrics and a
// small blocking client for the CLI. The daemon registers the routes.
//
// This header is the contract between the api module (its implementation) and its users (daemon,
// web view, CLI client verbs). Change it only together with every user.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "hostfit/core.h"

namespace boost::asio {
class io_context;
}

namespace hostfit::api {

struct Request {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // as sent: "/v1/events?since=3&wait=10"
  std::string path;                            // "/v1/events" (percent-decoded)
  std::map<std::string, std::string> query;    // {"since": "3", "wait": "10"}
  std::map<std::string, std::string> params;   // from the route pattern: {"name": "etl"}
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool over_tcp = false;  // arrived on the TCP listener (token checked)
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // When set, sent instead of `body`, without a copy: a large answer a handler keeps cached and
  // hands to many clients at once (the server holds it until the answer is written).
  std::shared_ptr<const std::string> shared_body;
  std::map<std::string, std::string> headers;  // extra headers (Set-Cookie, Cache-Control, ...)

  std::string_view payload() const { return shared_body ? *shared_body : body; }
};

// {"error": message, "detail": detail} with the given status. Every API error has this shape.
Response error(int status, std::string message, nlohmann::json detail = nullptr);
// A JSON body (dump()ed; never throws on non-UTF-8: invalid bytes are replaced).
Response json(int status, const nlohmann::json& body);
// Parses a request body as a JSON object, or answers why not (400 with the parser's position).
Result<nlohmann::json> parse_object(const Request& request);

// Called exactly once per request, on the io_context's thread. A handler may keep it and call it
// later (a long poll); if the client went away meanwhile the call is a no-op.
using Reply = std::function<void(Response)>;
using Handler = std::function<void(const Request&, Reply)>;

// Routes by method and path pattern. Patterns are literal segments and `{name}` segments, which
// match one non-empty segment and land in Request::params: "/v1/workloads/{name}/runs".
// Unknown path: 404; known path, other method: 405 with an Allow header.
class Router {
 public:
  void add(std::string method, std::string pattern, Handler handler);
  void dispatch(Request request, Reply reply) const;
  // The key the route for METHOD PATH counts under in Server::stats(), the method and the pattern
  // ("GET /v1/workloads/{name}"); "" when no route takes it.
  std::string route_key(std::string_view method, std::string_view path) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    Handler handler;
  };
  std::vector<Route> routes_;
};

struct ServerOptions {
  std::size_t max_body_bytes = 1 << 20;              // larger: 413, connection closed
  std::chrono::milliseconds header_timeout{10'000};  // idle or slow client: closed
  // A handler's wait is capped by this: a request still unanswered max_long_poll + 1 s after it
  // arrived gets 504 (and the handler's late reply is dropped). Long polls wait less than this.
  std::chrono::milliseconds max_long_poll{60'000};
  std::size_t max_connections = 1024;  // more: accepted and closed at once
};

// Request counts and latency histograms per route pattern, for /metrics. Latency is from the
// request read in full to the handler's reply. Requests no route takes (404, 405) and requests
// refused before routing (401, 400, 413) count under "other".
struct RouteStats {
  std::map<int, std::uint64_t> by_status;
  // For each bound of kLatencyBoundsSeconds, the requests that took at most that long
  // (cumulative, as Prometheus histograms count).
  std::vector<std::uint64_t> latency_buckets;
  double latency_sum_seconds = 0;
  std::uint64_t count = 0;
};
inline constexpr double kLatencyBoundsSeconds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                   0.05,   0.1,   0.25,   1,     5};

class Server {
 public:
  Server(boost::asio::io_context& io, const Router& router, ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens; replaces a stale socket file (no one listening), refuses a live one.
  Status listen_unix(const std::string& path, unsigned mode = 0660);
  // TCP needs a non-empty token: "Authorization: Bearer TOKEN" or the `hostfit_token` cookie.
  Status listen_tcp(const std::string& address, std::uint16_t port, std::string token);
  // The port the TCP listener is bound to (what port 0 became), 0 when there is none.
  std::uint16_t tcp_port() const;
  void close();  // stops accepting, closes open connections, removes the socket file

  const std::map<std::string, RouteStats>& stats() const;  // keyed by "GET /v1/workloads/{name}"
  std::string metrics_text() const;                        // Prometheus text for the stats above

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A blocking client over a Unix socket, for the CLI verbs and tests. One request per connection.
struct ClientResponse {
  int status = 0;
  std::string body;
  nlohmann::json json() const;  // parsed body, or null when it is not JSON
};
Result<ClientResponse> request(const std::string& socket_path, std::string_view method,
                               std::string_view target, std::string_view body = {},
                               std::chrono::milliseconds timeout = std::chrono::seconds(70));

}  // namespace hostfit::api
