// The blocking client: one request per connection, on a private io_context bounded by a timeout.
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "hostfit/api.h"

namespace hostfit::api {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Local = net::local::stream_protocol;

constexpr std::uint64_t kMaxAnswerBytes = std::uint64_t{1} << 30;

Error connect_error(const std::string& path, const beast::error_code& ec) {
  const int err = ec.value();
  if (ec.category() == net::error::get_system_category() &&
      (err == ENOENT || err == ECONNREFUSED || err == ENOTSOCK)) {
    return Error{ErrorKind::kNotFound, "no daemon at " + path + " (start one with hostfit daemon)",
                 err};
  }
  if (ec == beast::error::timeout) {
    return Error{ErrorKind::kIo, "the daemon at " + path + " does not accept connections", 0};
  }
  return Error::from_errno(err, "connect to the daemon at", path);
}

}  // namespace

nlohmann::json ClientResponse::json() const {
  auto parsed = nlohmann::json::parse(body, nullptr, false);
  return parsed.is_discarded() ? nlohmann::json(nullptr) : parsed;
}

Result<ClientResponse> request(const std::string& socket_path, std::string_view method,
                               std::string_view target, std::string_view body,
                               std::chrono::milliseconds timeout) {
  net::io_context io;
  beast::basic_stream<Local> stream(io);
  http::request<http::string_body> req;
  req.method_string(beast::string_view(method.data(), method.size()));
  req.target(beast::string_view(target.data(), target.size()));
  req.version(11);
  req.set(http::field::host, "localhost");
  req.set(http::field::user_agent, "hostfit");
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = std::string(body);
  req.keep_alive(false);
  req.prepare_payload();

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxAnswerBytes);
  std::optional<Error> failure;
  bool answered = false;

  stream.expires_after(timeout);
  stream.async_connect(Local::endpoint(socket_path), [&](beast::error_code ec) {
    if (ec) {
      failure = connect_error(socket_path, ec);
      return;
    }
    http::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
      if (ec) {
        failure = Error{ErrorKind::kIo,
                        "cannot send to the daemon at " + socket_path + ": " + ec.message()};
        return;
      }
      http::async_read(stream, buffer, parser, [&](beast::error_code ec, std::size_t) {
        if (ec == beast::error::timeout) {
          failure = Error{ErrorKind::kIo, "no answer from the daemon at " + socket_path +
                                              " within " + std::to_string(timeout.count()) + " ms"};
        } else if (ec) {
          failure = Error{ErrorKind::kIo,
                          "no answer from the daemon at " + socket_path + ": " + ec.message()};
        } else {
          answered = true;
        }
      });
    });
  });
  io.run();
  if (failure) return fail(*failure);
  if (!answered) return fail(ErrorKind::kIo, "no answer from the daemon at " + socket_path);
  ClientResponse out;
  out.status = static_cast<int>(parser.get().result_int());
  out.body = std::move(parser.get().body());
  return out;
}

}  // namespace hostfit::api
