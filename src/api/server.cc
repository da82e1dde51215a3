// The Beast server: one Session per connection, all on the caller's io_context thread.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <filesystem>
#include <optional>
#include <unordered_set>

#include "hostfit/api.h"
#include "metrics.h"
#include "wire.h"

namespace hostfit::api {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;
using Local = net::local::stream_protocol;
using Tcp = net::ip::tcp;

constexpr const char* kCookieName = "hostfit_token";
constexpr std::size_t kHeaderLimitBytes = 16 * 1024;
// After an answer that closes the connection, the rest of what the client sends is read and
// dropped for this long, so that closing does not reset the connection before it reads the answer.
constexpr std::chrono::seconds kDrainTime{2};
constexpr std::chrono::milliseconds kAcceptRetry{100};
constexpr std::chrono::seconds kLongPollGrace{1};
constexpr int kUnixSendBuffer = 1 << 20;

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void shut() = 0;
};

// What the server and its sessions share. Sessions hold it, so it outlives a Server that is
// destroyed while their handlers are still queued on the io_context.
struct Core {
  const Router* router = nullptr;
  ServerOptions options;
  std::string token;
  std::map<std::string, RouteStats> stats;
  std::unordered_set<SessionBase*> sessions;
  bool closed = false;
};

// Asio opens and accepts sockets without O_CLOEXEC. The daemon forks workloads from the loop's
// thread, so marking each descriptor right after it is made keeps them out of every child: a
// workload holding the listening socket would keep a dead daemon's socket "live" and queue clients
// there forever.
void close_on_exec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

std::string_view view(beast::string_view s) {
  return {s.data(), s.size()};
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool quiet_end(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == http::error::partial_message ||
         ec == net::error::eof || ec == net::error::operation_aborted ||
         ec == beast::error::timeout || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe || ec == net::error::bad_descriptor;
}

template <class Protocol>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Protocol>> {
 public:
  Session(std::shared_ptr<Core> core, typename Protocol::socket socket, bool over_tcp)
      : core_(std::move(core)),
        stream_(std::move(socket)),
        long_poll_timer_(stream_.get_executor()),
        over_tcp_(over_tcp) {
    core_->sessions.insert(this);
  }
  ~Session() override { core_->sessions.erase(this); }

  void start() { read_header(); }

  void shut() override {
    closing_ = true;
    waiting_ = false;
    long_poll_timer_.cancel();
    beast::error_code ec;
    stream_.socket().shutdown(net::socket_base::shutdown_both, ec);
    stream_.close();
  }

 private:
  void read_header() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimitBytes);
    parser_->body_limit(core_->options.max_body_bytes);
    stream_.expires_after(core_->options.header_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              self->on_header(ec);
                            });
  }

  void on_header(beast::error_code ec) {
    if (ec) return on_read_error(ec);
    const auto length = parser_->content_length();
    if (length && *length > core_->options.max_body_bytes) return refuse_too_large();
    const auto& msg = parser_->get();
    if (lower(view(msg[http::field::expect])) == "100-continue") {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(stream_, net::buffer(kContinue),
                       [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                         if (ec) return self->shut();
                         self->read_body();
                       });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec) return self->on_read_error(ec);
                       self->on_request();
                     });
  }

  void on_read_error(beast::error_code ec) {
    if (closing_ || quiet_end(ec)) return shut();
    if (ec == http::error::body_limit) return refuse_too_large();
    if (ec == http::error::header_limit) {
      return refuse(431, "the request's headers are larger than " +
                             std::to_string(kHeaderLimitBytes) + " bytes");
    }
    refuse(400, "malformed HTTP request: " + ec.message());
  }

  void refuse_too_large() {
    refuse(413, "the request body is larger than " + std::to_string(core_->options.max_body_bytes) +
                    " bytes");
  }

  // An answer before routing; the connection closes after it.
  void refuse(int status, std::string message) {
    record(core_->stats, "other", status, Clock::duration::zero());
    send(error(status, std::move(message)), false);
  }

  void on_request() {
    if (core_->closed) return shut();
    auto& msg = parser_->get();
    keep_alive_ = msg.keep_alive();
    auto request = request_of(msg);
    if (!request) return refuse(400, "bad request target '" + std::string(msg.target()) + "'");
    Request& r = *request;
    r.over_tcp = over_tcp_;
    if (over_tcp_ && !authorized(r)) return;
    dispatch(std::move(r));
  }

  bool has_token(const Request& r) const {
    auto header = r.headers.find("authorization");
    if (header != r.headers.end()) {
      auto token = bearer_token(header->second);
      if (token && equal_constant_time(*token, core_->token)) return true;
    }
    auto cookie = r.headers.find("cookie");
    if (cookie != r.headers.end()) {
      auto token = cookie_value(cookie->second, kCookieName);
      if (token && equal_constant_time(*token, core_->token)) return true;
    }
    return false;
  }

  // TCP requests carry the token; `GET /?token=TOKEN` trades it for a cookie, so that a browser
  // opening the link the daemon printed is signed in and the token leaves the address bar.
  bool authorized(const Request& r) {
    auto link_token = r.query.find("token");
    if (r.method == "GET" && r.path == "/" && link_token != r.query.end() &&
        equal_constant_time(link_token->second, core_->token)) {
      Response redirect;
      redirect.status = 302;
      redirect.content_type = "text/plain";
      redirect.body = "signed in\n";
      redirect.headers["Location"] = "/";
      redirect.headers["Set-Cookie"] =
          std::string(kCookieName) + "=" + core_->token + "; Path=/; HttpOnly; SameSite=Strict";
      redirect.headers["Cache-Control"] = "no-store";
      record(core_->stats, "other", 302, Clock::duration::zero());
      send(std::move(redirect), keep_alive_);
      return false;
    }
    if (has_token(r)) return true;
    Response denied = error(401, "this listener needs the daemon's token",
                            "send 'Authorization: Bearer TOKEN' or open /?token=TOKEN once");
    denied.headers["WWW-Authenticate"] = "Bearer realm=\"hostfit\"";
    record(core_->stats, "other", 401, Clock::duration::zero());
    send(std::move(denied), keep_alive_);
    return false;
  }

  void dispatch(Request r) {
    key_ = core_->router->route_key(r.method, r.path);
    if (key_.empty()) key_ = "other";
    started_ = Clock::now();
    const std::uint64_t seq = ++seq_;
    waiting_ = true;
    auto done = std::make_shared<bool>(false);
    std::weak_ptr<Session> weak = this->shared_from_this();
    Reply reply = [weak, seq, done](Response response) {
      if (*done) return;
      *done = true;
      if (auto self = weak.lock()) self->answer(seq, std::move(response));
    };
    core_->router->dispatch(std::move(r), std::move(reply));
    // Most handlers answer before they return; only one that answers later (a long poll) needs
    // the watch for a client that hangs up and the deadline.
    if (waiting_ && seq == seq_ && !closing_) wait_for_handler(seq);
  }

  void wait_for_handler(std::uint64_t seq) {
    handler_pending_ = true;
    watch_peer(seq);
    long_poll_timer_.expires_after(core_->options.max_long_poll + kLongPollGrace);
    long_poll_timer_.async_wait([self = this->shared_from_this(), seq](beast::error_code ec) {
      if (ec) return;
      self->answer(
          seq,
          error(504, "the handler did not answer in time",
                nlohmann::json{{"max_long_poll_ms", self->core_->options.max_long_poll.count()}}));
    });
  }

  // While a handler works, a client that hangs up is noticed: its request is dropped, and the
  // handler's reply, when it comes, goes nowhere.
  void watch_peer(std::uint64_t seq) {
    stream_.expires_never();
    stream_.socket().async_wait(
        net::socket_base::wait_read,
        [self = this->shared_from_this(), seq](beast::error_code ec) { self->on_peer(ec, seq); });
  }

  void on_peer(beast::error_code ec, std::uint64_t seq) {
    if (ec || !waiting_ || seq != seq_ || closing_) return;
    char byte;
    const ssize_t n = ::recv(stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return;  // a pipelined request, read after this answer
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return watch_peer(seq);
    waiting_ = false;
    record(core_->stats, key_, 499, Clock::now() - started_);  // nginx's "client closed request"
    shut();
  }

  void answer(std::uint64_t seq, Response response) {
    if (!waiting_ || seq != seq_ || closing_) return;
    waiting_ = false;
    if (handler_pending_) {
      handler_pending_ = false;
      long_poll_timer_.cancel();
      beast::error_code ec;
      stream_.socket().cancel(ec);  // the peer watch
    }
    record(core_->stats, key_, response.status, Clock::now() - started_);
    send(std::move(response), keep_alive_);
  }

  void send(Response response, bool keep_alive) {
    answer_ = std::move(response);
    auto& res = response_.emplace();
    res.version(11);
    res.result(static_cast<unsigned>(answer_.status));
    res.set(http::field::server, "hostfit");
    res.set(http::field::content_type, answer_.content_type);
    for (const auto& [name, value] : answer_.headers)
      res.set(name, value);
    const std::string_view payload = answer_.payload();  // answer_ keeps it alive until written
    res.body() = {payload.data(), payload.size()};
    res.keep_alive(keep_alive && !core_->closed);
    res.prepare_payload();
    // A client that does not read its answer is given as long as one that does not send.
    stream_.expires_after(core_->options.header_timeout);
    http::async_write(stream_, res,
                      [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                        self->on_written(ec);
                      });
  }

  void on_written(beast::error_code ec) {
    if (ec || closing_) return shut();
    if (!response_->keep_alive()) return drain();
    response_.reset();
    answer_ = {};
    read_header();
  }

  void drain() {
    beast::error_code ec;
    stream_.socket().shutdown(net::socket_base::shutdown_send, ec);
    stream_.expires_after(std::min<Clock::duration>(core_->options.header_timeout, kDrainTime));
    stream_.async_read_some(net::buffer(drain_buffer_),
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec) return self->shut();
                              self->drain();
                            });
  }

  std::shared_ptr<Core> core_;
  beast::basic_stream<Protocol> stream_;
  net::steady_timer long_poll_timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Response answer_;  // what response_'s body points into
  std::optional<http::response<http::span_body<const char>>> response_;
  std::array<char, 16 * 1024> drain_buffer_;
  std::string key_;
  Clock::time_point started_;
  std::uint64_t seq_ = 0;
  bool over_tcp_ = false;
  bool keep_alive_ = true;
  bool waiting_ = false;
  bool handler_pending_ = false;  // a handler answers later: peer watch and deadline are armed
  bool closing_ = false;
};

template <class Protocol>
void accept_next(std::shared_ptr<Core> core, std::shared_ptr<typename Protocol::acceptor> acceptor,
                 bool over_tcp) {
  acceptor->async_accept(
      [core, acceptor, over_tcp](beast::error_code ec, typename Protocol::socket socket) {
        if (core->closed || ec == net::error::operation_aborted || !acceptor->is_open()) return;
        if (ec) {
          // Out of descriptors or memory: try again shortly instead of spinning.
          auto timer = std::make_shared<net::steady_timer>(acceptor->get_executor(), kAcceptRetry);
          timer->async_wait([core, acceptor, over_tcp, timer](beast::error_code) {
            accept_next<Protocol>(core, acceptor, over_tcp);
          });
          return;
        }
        close_on_exec(socket.native_handle());
        if constexpr (std::is_same_v<Protocol, Local>) {
          // A Unix socket's answer waits in the sender's buffer (wmem_default, 208 KiB here):
          // a larger one takes a list of 1,000 workloads in one write instead of several
          // rounds through the loop. The kernel caps the request at net.core.wmem_max.
          beast::error_code ignored;
          socket.set_option(net::socket_base::send_buffer_size(kUnixSendBuffer), ignored);
        }
        if (core->sessions.size() >= core->options.max_connections) {
          beast::error_code ignored;
          socket.close(ignored);
        } else {
          std::make_shared<Session<Protocol>>(core, std::move(socket), over_tcp)->start();
        }
        accept_next<Protocol>(core, acceptor, over_tcp);
      });
}

// Whether someone accepts connections on the socket at `path` (a live daemon).
Result<bool> socket_is_live(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(Error::from_errno(errno, "create", "a Unix socket"));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  ::close(fd);
  if (rc == 0) return true;
  if (err == ECONNREFUSED) return false;
  return fail(Error::from_errno(err, "connect to", path));
}

}  // namespace

struct Server::Impl {
  explicit Impl(net::io_context& context) : io(context) {}
  net::io_context& io;
  std::shared_ptr<Core> core = std::make_shared<Core>();
  std::shared_ptr<Local::acceptor> unix_acceptor;
  std::shared_ptr<Tcp::acceptor> tcp_acceptor;
  std::string socket_path;
  ino_t socket_inode = 0;
};

Server::Server(net::io_context& io, const Router& router, ServerOptions options)
    : impl_(std::make_unique<Impl>(io)) {
  impl_->core->router = &router;
  impl_->core->options = options;
}

Server::~Server() {
  close();
}

Status Server::listen_unix(const std::string& path, unsigned mode) {
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return fail(ErrorKind::kUsage, "bad socket path '" + path + "': give a path of 1 to " +
                                       std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                                       " bytes");
  }
  if (impl_->unix_acceptor) return fail(ErrorKind::kUsage, "already listening on a Unix socket");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return fail(ErrorKind::kUsage, path +
                                         " exists and is not a socket; remove it or choose "
                                         "another socket path");
    }
    auto live = socket_is_live(path);
    if (!live) return fail(live.error());
    if (*live) {
      return fail(ErrorKind::kResource,
                  "another daemon is listening on " + path + "; stop it or choose another socket");
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return fail(Error::from_errno(errno, "remove the stale socket", path));
  }
  std::error_code dir_ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, dir_ec);
  if (dir_ec)
    return fail(Error::from_errno(dir_ec.value(), "create the directory", parent.string()));

  auto acceptor = std::make_shared<Local::acceptor>(impl_->io);
  beast::error_code ec;
  acceptor->open(Local(), ec);
  if (!ec) close_on_exec(acceptor->native_handle());
  if (!ec) acceptor->bind(Local::endpoint(path), ec);
  if (ec) return fail(Error::from_errno(ec.value(), "bind", path));
  // Before listen(), so no one connects through a mode wider than asked.
  if (::chmod(path.c_str(), mode) != 0) return fail(Error::from_errno(errno, "chmod", path));
  acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return fail(Error::from_errno(ec.value(), "listen on", path));
  if (::lstat(path.c_str(), &st) == 0) impl_->socket_inode = st.st_ino;
  impl_->socket_path = path;
  impl_->unix_acceptor = acceptor;
  impl_->core->closed = false;
  accept_next<Local>(impl_->core, acceptor, false);
  return {};
}

Status Server::listen_tcp(const std::string& address, std::uint16_t port, std::string token) {
  if (token.empty()) {
    return fail(ErrorKind::kUsage, "a TCP listener needs a token: requests over TCP must carry it");
  }
  if (impl_->tcp_acceptor) return fail(ErrorKind::kUsage, "already listening on TCP");
  beast::error_code ec;
  const auto ip = net::ip::make_address(address, ec);
  if (ec) {
    return fail(ErrorKind::kUsage, "bad listen address '" + address +
                                       "': give an IPv4 or IPv6 address such as 127.0.0.1");
  }
  const Tcp::endpoint endpoint(ip, port);
  const std::string where = address + ":" + std::to_string(port);
  auto acceptor = std::make_shared<Tcp::acceptor>(impl_->io);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) close_on_exec(acceptor->native_handle());
  if (!ec) acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return fail(Error::from_errno(ec.value(), "listen on", where));
  impl_->core->token = std::move(token);
  impl_->tcp_acceptor = acceptor;
  impl_->core->closed = false;
  accept_next<Tcp>(impl_->core, acceptor, true);
  return {};
}

std::uint16_t Server::tcp_port() const {
  if (!impl_->tcp_acceptor) return 0;
  beast::error_code ec;
  const auto endpoint = impl_->tcp_acceptor->local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

void Server::close() {
  Core& core = *impl_->core;
  core.closed = true;
  beast::error_code ec;
  if (impl_->unix_acceptor) impl_->unix_acceptor->close(ec);
  if (impl_->tcp_acceptor) impl_->tcp_acceptor->close(ec);
  impl_->unix_acceptor.reset();
  impl_->tcp_acceptor.reset();
  const std::vector<SessionBase*> open(core.sessions.begin(), core.sessions.end());
  for (SessionBase* session : open)
    session->shut();
  // Only our own socket: another daemon may have replaced it since.
  struct stat st {};
  if (!impl_->socket_path.empty() && ::lstat(impl_->socket_path.c_str(), &st) == 0 &&
      st.st_ino == impl_->socket_inode) {
    ::unlink(impl_->socket_path.c_str());
  }
  impl_->socket_path.clear();
}

const std::map<std::string, RouteStats>& Server::stats() const {
  return impl_->core->stats;
}

std::string Server::metrics_text() const {
  return format_metrics(impl_->core->stats, impl_->core->sessions.size());
}

}  // namespace hostfit::api
