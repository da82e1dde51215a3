// `hostfit ui --serve`: a read-only loopback front for the daemon's Unix socket.
#include <sys/random.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <memory>
#include <mutex>
#include <thread>

#include "hostfit/web.h"

namespace hostfit::web {
namespace {

// The io_context that forwarding threads post their replies to, cleared by close_socket_proxy()
// so that a thread finishing late (a long poll) finds no io_context instead of a destroyed one.
struct Target {
  std::mutex mutex;
  boost::asio::io_context* io = nullptr;
};
std::shared_ptr<Target>& target() {
  static auto instance = std::make_shared<Target>();
  return instance;
}

constexpr const char* kForwarded[] = {
    "/v1/node",       "/v1/node/topology", "/v1/workloads", "/v1/workloads/{name}",
    "/v1/placements", "/v1/events",        "/v1/engines",   "/v1/sessions",
    "/metrics"};

api::Response forward(const std::string& socket_path, const api::Request& request) {
  auto answer = api::request(socket_path, "GET", request.target);
  if (!answer) {
    return api::error(502,
                      "cannot reach the daemon at " + socket_path + ": " + answer.error().message,
                      "is `hostfit daemon` running? `hostfit ui --socket PATH` names its socket");
  }
  api::Response response;
  response.status = answer->status;
  response.body = std::move(answer->body);
  // The blocking client keeps no headers; these two are the only kinds the routes answer with.
  response.content_type =
      request.path == "/metrics" ? "text/plain; version=0.0.4; charset=utf-8" : "application/json";
  response.headers["Cache-Control"] = "no-store";
  return response;
}

}  // namespace

void add_socket_proxy_routes(api::Router& router, boost::asio::io_context& io,
                             std::string socket_path) {
  {
    std::lock_guard lock(target()->mutex);
    target()->io = &io;
  }
  auto socket = std::make_shared<const std::string>(std::move(socket_path));
  for (const char* pattern : kForwarded) {
    router.add("GET", pattern, [socket](const api::Request& request, api::Reply reply) {
      std::thread([socket, request, reply = std::move(reply), shared = target()]() mutable {
        api::Response response = forward(*socket, request);
        std::lock_guard lock(shared->mutex);
        if (shared->io == nullptr) return;
        boost::asio::post(*shared->io, [reply = std::move(reply), response = std::move(response)] {
          reply(std::move(response));
        });
      }).detach();
    });
  }
}

void close_socket_proxy() {
  std::lock_guard lock(target()->mutex);
  target()->io = nullptr;
}

Result<std::string> random_token() {
  unsigned char bytes[16];
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    return fail(Error::from_errno(errno, "getrandom", "16 bytes"));
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token += kHex[b >> 4];
    token += kHex[b & 15];
  }
  return token;
}

}  // namespace hostfit::web
