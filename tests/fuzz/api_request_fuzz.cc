// One HTTP request as the daemon's listener reads it: Beast's parser with the server's limits,
// request_of (path, query, headers), the router over the daemon's route table, and the body
// parsers of the routes that take a body (workloads, placements, attachments, engine templates,
// sessions). No daemon runs: a route's handler stops where the daemon would touch state.
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>

#include "../../src/api/wire.h"
#include "../../src/daemon/daemon_impl.h"
#include "fuzz_input.h"
#include "hostfit/api.h"
#include "hostfit/daemon.h"
#include "hostfit/sessions.h"

namespace {

using namespace hostfit;
namespace http = boost::beast::http;
using nlohmann::json;

// The server's limits (src/api/server.cc): headers 16 KiB, body ServerOptions::max_body_bytes.
constexpr std::size_t kHeaderLimit = 16 * 1024;
constexpr std::size_t kBodyLimit = api::ServerOptions{}.max_body_bytes;

// A body that parses must say the same after its normal form is parsed again.
void check_workload(const json& body) {
  auto spec = parse_workload_spec(body);
  if (!spec) return;
  auto again = parse_workload_spec(to_json(*spec));
  FUZZ_CHECK(again && to_json(*again) == to_json(*spec));
}

void check_template(const json& body) {
  auto t = sessions::parse_template(body);
  if (!t) return;
  auto again = sessions::parse_template(sessions::to_json(*t));
  FUZZ_CHECK(again && sessions::to_json(*again) == sessions::to_json(*t));
}

void check_placement(const json& body) {
  auto p = parse_placement_body(body);
  if (!p) return;
  FUZZ_CHECK(!p->owner.empty() && (p->request.cpus > 0) != (p->request.cores > 0));
}

void check_attachment(const json& body) {
  auto row = parse_attachment_body(body);
  if (!row) return;
  FUZZ_CHECK(!row->cgroup.empty() && validate_cgroup_name(row->name).has_value());
  FUZZ_CHECK(!row->cache_limit_bytes || *row->cache_limit_bytes >= 0);
}

void check_session(const json& body) {
  (void)parse_session_body(body);
}

// Each route of Daemon::add_routes (src/daemon/routes.cc, engines.cc, the web view's), with the
// checks its handler makes before it touches the daemon's state.
const api::Router& daemon_routes() {
  static const api::Router router = [] {
    api::Router r;
    const auto body_route = [&r](std::string pattern, void (*check)(const json&)) {
      r.add("POST", std::move(pattern), [check](const api::Request& req, api::Reply reply) {
        auto body = api::parse_object(req);
        if (!body) return reply(api::error(400, body.error().message));
        check(*body);
        reply(api::json(200, *body));
      });
    };
    body_route("/v1/workloads", check_workload);
    body_route("/v1/placements", check_placement);
    body_route("/v1/attachments", check_attachment);
    body_route("/v1/engines", check_template);
    body_route("/v1/sessions", check_session);
    const auto echo = [](const api::Request& req, api::Reply reply) {
      for (const auto& [name, value] : req.params)
        FUZZ_CHECK(!value.empty());
      reply(api::json(200, {{"path", req.path}, {"params", req.params}, {"query", req.query}}));
    };
    for (const char* get :
         {"/", "/healthz", "/metrics", "/ui/{file}", "/v1/node", "/v1/node/topology",
          "/v1/workloads", "/v1/workloads/{name}", "/v1/workloads/{name}/runs", "/v1/events",
          "/v1/placements", "/v1/attachments", "/v1/engines", "/v1/sessions", "/v1/sessions/{id}"})
      r.add("GET", get, echo);
    for (const char* post : {"/v1/reload", "/v1/workloads/{name}/start",
                             "/v1/workloads/{name}/stop", "/v1/workloads/{name}/restart"})
      r.add("POST", post, echo);
    for (const char* del : {"/v1/workloads/{name}", "/v1/placements/{owner}",
                            "/v1/attachments/{name}", "/v1/engines", "/v1/sessions/{id}"})
      r.add("DELETE", del, echo);
    return r;
  }();
  return router;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::string_body> parser;
  parser.eager(true);
  parser.header_limit(kHeaderLimit);
  parser.body_limit(kBodyLimit);
  boost::beast::error_code ec;
  boost::asio::const_buffer input(data, size);
  while (input.size() > 0 && !parser.is_done()) {
    const std::size_t used = parser.put(input, ec);
    input += used;
    if (ec == http::error::need_more) {
      ec = {};
      if (used == 0) break;
    }
    if (ec) return 0;
  }
  if (!parser.is_done()) {
    parser.put_eof(ec);  // the client hung up: a body that runs to the end of the stream ends
    if (ec || !parser.is_done()) return 0;
  }
  auto request = api::request_of(parser.get());
  if (!request) return 0;
  FUZZ_CHECK(!request->path.empty() && request->path.front() == '/');
  int replies = 0;
  const auto& router = daemon_routes();
  (void)router.route_key(request->method, request->path);
  router.dispatch(std::move(*request), [&replies](api::Response response) {
    ++replies;
    FUZZ_CHECK(response.status >= 200 && response.status <= 599);
    // Every answer is JSON, whatever bytes the request held.
    FUZZ_CHECK(!json::parse(response.body, nullptr, false).is_discarded());
  });
  FUZZ_CHECK(replies == 1);
  return 0;
}
