// The server on real sockets: the io_context runs on a thread of its own, the test talks to it
// with raw sockets (to send what a real client would not) and with api::request.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "command.h"
#include "hostfit/api.h"

namespace hostfit::api {
namespace {

namespace net = boost::asio;

// A connected socket the test drives by hand. Reads give up after 10 s so a bug fails the test
// instead of hanging it.
class Raw {
 public:
  explicit Raw(int fd) : fd_(fd) {}
  ~Raw() {
    if (fd_ >= 0) ::close(fd_);
  }
  static Raw unix_socket(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof addr.sun_path - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << path;
    return Raw(fd);
  }
  static Raw tcp(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << port;
    return Raw(fd);
  }
  Raw(Raw&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Reads one response: headers, then Content-Length bytes of body. Empty when the server
  // closed first.
  std::string response() {
    while (true) {
      const size_t end = pending_.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t length = 0;
        const size_t at = lower(pending_.substr(0, end)).find("content-length:");
        if (at != std::string::npos) length = std::stoul(pending_.substr(at + 15));
        if (pending_.size() >= end + 4 + length) {
          std::string out = pending_.substr(0, end + 4 + length);
          pending_.erase(0, end + 4 + length);
          return out;
        }
      }
      if (!fill()) return {};
    }
  }
  // True when the server closed the connection (reads end) before sending anything more.
  bool closed_by_server() {
    while (fill()) {
    }
    return pending_.empty();
  }
  void close() {
    ::close(fd_);
    fd_ = -1;
  }

 private:
  static std::string lower(std::string s) {
    for (char& c : s)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  bool fill() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 10'000) != 1) return false;
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    pending_.append(buf, static_cast<size_t>(n));
    return true;
  }
  int fd_;
  std::string pending_;
};

int status_of(const std::string& response) {
  return response.size() > 12 ? std::stoi(response.substr(9, 3)) : 0;
}
std::string body_of(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

class ServerTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hostfit-api-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    socket_ = dir_ + "/api.sock";
    router_.add("GET", "/v1/workloads", [](const Request& r, Reply reply) {
      reply(json(200, {{"query", r.query}, {"over_tcp", r.over_tcp}}));
    });
    router_.add("GET", "/v1/workloads/{name}", [](const Request& r, Reply reply) {
      reply(json(200, {{"name", r.params.at("name")}, {"path", r.path}}));
    });
    router_.add("POST", "/v1/echo", [](const Request& r, Reply reply) {
      auto body = parse_object(r);
      if (!body) return reply(error(400, body.error().message));
      reply(json(200, {{"got", *body}, {"content_type", r.headers.count("content-type")}}));
    });
    router_.add("GET", "/v1/wait",
                [this](const Request&, Reply reply) { waiting_.push_back(std::move(reply)); });
  }

  void start(ServerOptions options = {}) {
    server_ = std::make_unique<Server>(io_, router_, options);
    auto listening = server_->listen_unix(socket_, 0600);
    ASSERT_TRUE(listening) << listening.error().message;
    thread_ = std::thread([this] { io_.run(); });
  }

  // Runs f on the loop's thread and waits for its result.
  template <class F>
  auto on_loop(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    net::post(io_, [&task] { task(); });
    return result.get();
  }

  void TearDown() override {
    if (thread_.joinable()) {
      on_loop([this] {
        server_->close();
        waiting_.clear();
      });
      guard_.reset();
      thread_.join();
    }
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::uint64_t count_of(const std::string& key, int status) {
    return on_loop([&] {
      auto it = server_->stats().find(key);
      if (it == server_->stats().end()) return std::uint64_t{0};
      auto s = it->second.by_status.find(status);
      return s == it->second.by_status.end() ? std::uint64_t{0} : s->second;
    });
  }

  // Polls the loop until pred() holds there, for at most 10 s.
  template <class P>
  bool eventually(P pred) {
    for (int i = 0; i < 1000; ++i) {
      if (on_loop(pred)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::string dir_;
  std::string socket_;
  net::io_context io_;
  net::executor_work_guard<net::io_context::executor_type> guard_ = net::make_work_guard(io_);
  Router router_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::vector<Reply> waiting_;
};

TEST_F(ServerTest, AnswersOverTheUnixSocketWithParamsAndQuery) {
  start();
  auto r = request(socket_, "GET", "/v1/workloads/etl%2D1?x=1");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->json()["name"], "etl-1");
  r = request(socket_, "GET", "/v1/workloads?since=3&wait=0");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->json()["query"]["since"], "3");
  EXPECT_EQ(r->json()["over_tcp"], false);
}

TEST_F(ServerTest, SocketHasTheModeAskedFor) {
  start();
  struct stat st {};
  ASSERT_EQ(::lstat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ServerTest, UnknownPathIs404AndOtherMethodIs405WithAllow) {
  start();
  Raw c = Raw::unix_socket(socket_);
  c.send("DELETE /v1/workloads HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string res = c.response();
  EXPECT_EQ(status_of(res), 405);
  EXPECT_NE(res.find("Allow: GET"), std::string::npos) << res;
  c.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  res = c.response();
  EXPECT_EQ(status_of(res), 404);
  auto body = nlohmann::json::parse(body_of(res));
  EXPECT_TRUE(body.contains("error"));
  EXPECT_TRUE(body.contains("detail"));
}

TEST_F(ServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  start();
  Raw c = Raw::unix_socket(socket_);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.send("GET /v1/workloads/w" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    const std::string res = c.response();
    ASSERT_EQ(status_of(res), 200) << res;
    EXPECT_EQ(nlohmann::json::parse(body_of(res))["name"], "w" + std::to_string(i));
  }
}

TEST_F(ServerTest, PostedJsonReachesTheHandler) {
  start();
  auto r = request(socket_, "POST", "/v1/echo", R"({"name":"etl","cpus":2})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->json()["got"]["cpus"], 2);
  r = request(socket_, "POST", "/v1/echo", "{not json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->json()["error"].get<std::string>().find("not JSON"), std::string::npos);
}

TEST_F(ServerTest, ExpectContinueGetsA100BeforeTheBody) {
  start();
  Raw c = Raw::unix_socket(socket_);
  const std::string body = R"({"a":1})";
  c.send("POST /v1/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n");
  EXPECT_EQ(status_of(c.response()), 100);
  c.send(body);
  EXPECT_EQ(status_of(c.response()), 200);
}

TEST_F(ServerTest, ClientThatSendsNothingIsClosedAfterTheHeaderTimeout) {
  ServerOptions options;
  options.header_timeout = std::chrono::milliseconds(200);
  start(options);
  Raw idle = Raw::unix_socket(socket_);
  Raw slow = Raw::unix_socket(socket_);
  slow.send("GET /v1/work");  // never finishes its request line
  EXPECT_TRUE(idle.closed_by_server());
  EXPECT_TRUE(slow.closed_by_server());
  auto r = request(socket_, "GET", "/v1/workloads");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, TenMegabyteBodyIs413AndTheServerCarriesOn) {
  start();  // default cap: 1 MiB
  Raw c = Raw::unix_socket(socket_);
  const std::string body(10 << 20, 'x');
  std::thread writer([&] {
    c.send("POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n");
    c.send(body);  // may fail part way once the server has answered and closed
  });
  const std::string res = c.response();
  writer.join();
  EXPECT_EQ(status_of(res), 413) << res.substr(0, 200);
  EXPECT_NE(body_of(res).find("larger than 1048576 bytes"), std::string::npos);
  EXPECT_EQ(count_of("other", 413), 1u);
  auto r = request(socket_, "GET", "/v1/workloads");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, ChunkedBodyOverTheCapIs413) {
  ServerOptions options;
  options.max_body_bytes = 1000;
  start(options);
  Raw c = Raw::unix_socket(socket_);
  c.send("POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  const std::string chunk(600, 'y');
  c.send("258\r\n" + chunk + "\r\n258\r\n" + chunk + "\r\n0\r\n\r\n");
  EXPECT_EQ(status_of(c.response()), 413);
}

TEST_F(ServerTest, MalformedRequestsGet400Or431AndAClosedConnection) {
  start();
  const std::vector<std::pair<std::string, int>> cases = {
      {"HELLO\r\n\r\n", 400},
      {"GET /v1/workloads HTTP/9.9\r\n\r\n", 400},
      {"GET /v1/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET v1/workloads HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"POST /v1/echo HTTP/1.1\r\nContent-Length: nope\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n", 431},
      {std::string("GET /\x01 HTTP/1.1\r\n\r\n"), 400},
  };
  for (const auto& [text, status] : cases) {
    Raw c = Raw::unix_socket(socket_);
    c.send(text);
    const std::string res = c.response();
    EXPECT_EQ(status_of(res), status) << text.substr(0, 60);
    auto body = nlohmann::json::parse(body_of(res), nullptr, false);
    EXPECT_TRUE(body.contains("error")) << text.substr(0, 60);
    EXPECT_TRUE(c.closed_by_server()) << text.substr(0, 60);
  }
}

TEST_F(ServerTest, LongPollReplyAfterTheClientLeftGoesNowhere) {
  start();
  {
    Raw c = Raw::unix_socket(socket_);
    c.send("GET /v1/wait HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(eventually([this] { return waiting_.size() == 1; }));
    c.close();
  }
  // The server notices the hang-up while the handler still holds the reply.
  EXPECT_TRUE(eventually([this] {
    auto it = server_->stats().find("GET /v1/wait");
    return it != server_->stats().end() && it->second.by_status.count(499) == 1;
  }));
  on_loop([this] {
    waiting_[0](json(200, {{"late", true}}));
    waiting_[0](json(200, {{"twice", true}}));
    return 0;
  });
  EXPECT_EQ(count_of("GET /v1/wait", 200), 0u);
  auto r = request(socket_, "GET", "/v1/workloads");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, LongPollReplyReachesAClientThatWaited) {
  start();
  auto pending =
      std::async(std::launch::async, [this] { return request(socket_, "GET", "/v1/wait"); });
  ASSERT_TRUE(eventually([this] { return waiting_.size() == 1; }));
  on_loop([this] {
    waiting_[0](json(200, {{"event", 7}}));
    return 0;
  });
  auto r = pending.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->json()["event"], 7);
  EXPECT_EQ(count_of("GET /v1/wait", 200), 1u);
}

TEST_F(ServerTest, HandlerThatNeverAnswersGets504AfterTheLongPollCap) {
  ServerOptions options;
  options.max_long_poll = std::chrono::milliseconds(50);
  start(options);
  auto r = request(socket_, "GET", "/v1/wait");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 504);
  EXPECT_EQ(r->json()["detail"]["max_long_poll_ms"], 50);
}

TEST_F(ServerTest, ClientTimesOutWhenNoAnswerComes) {
  start();
  auto r = request(socket_, "GET", "/v1/wait", {}, std::chrono::milliseconds(100));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no answer from the daemon at " + socket_), std::string::npos)
      << r.error().message;
}

TEST_F(ServerTest, ConnectionsOverTheCapAreClosedAtOnce) {
  ServerOptions options;
  options.max_connections = 2;
  start(options);
  Raw a = Raw::unix_socket(socket_);
  Raw b = Raw::unix_socket(socket_);
  ASSERT_TRUE(eventually([this] {
    return server_->metrics_text().find("hostfit_api_connections 2") != std::string::npos;
  }));
  Raw c = Raw::unix_socket(socket_);
  c.send("GET /v1/workloads HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(c.closed_by_server());
  a.send("GET /v1/workloads HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status_of(a.response()), 200);
}

TEST_F(ServerTest, StaleSocketIsReplacedLiveOneIsRefused) {
  // A socket file nobody listens on, as a killed daemon leaves it.
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socket_.copy(addr.sun_path, sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);
  }
  start();
  ASSERT_TRUE(request(socket_, "GET", "/v1/workloads"));

  net::io_context other_io;
  Server second(other_io, router_);
  auto refused = second.listen_unix(socket_);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("another daemon is listening on " + socket_),
            std::string::npos);
  second.close();  // must not remove the first server's socket
  auto r = request(socket_, "GET", "/v1/workloads");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, RegularFileAtTheSocketPathIsLeftAlone) {
  { std::ofstream(socket_) << "precious"; }
  Server server(io_, router_);
  auto st = server.listen_unix(socket_);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().kind, ErrorKind::kUsage);
  std::ifstream in(socket_);
  std::string text;
  in >> text;
  EXPECT_EQ(text, "precious");
}

TEST_F(ServerTest, ChildProcessesInheritNoSocketOfTheServer) {
  start();
  auto st = on_loop([this] { return server_->listen_tcp("127.0.0.1", 0, "t"); });
  ASSERT_TRUE(st);
  Raw open_connection = Raw::unix_socket(socket_);
  ASSERT_TRUE(eventually([this] {
    return server_->metrics_text().find("hostfit_api_connections 1") != std::string::npos;
  }));
  // What a workload forked by the daemon would hold: no listener, no client connection.
  const auto r = fixtures::run_command({"ls", "-l", "/proc/self/fd"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("socket:"), std::string::npos) << r.out;
}

TEST_F(ServerTest, CloseRemovesTheSocketFile) {
  start();
  on_loop([this] {
    server_->close();
    return 0;
  });
  EXPECT_FALSE(std::filesystem::exists(socket_));
  auto r = request(socket_, "GET", "/v1/workloads");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "no daemon at " + socket_ + " (start one with hostfit daemon)");
}

TEST(Client, NoDaemonSaysSoAndHowToStartOne) {
  auto r = request("/tmp/hostfit-api-test-nothing-here.sock", "GET", "/v1/workloads");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(r.error().message,
            "no daemon at /tmp/hostfit-api-test-nothing-here.sock (start one with hostfit daemon)");
}

TEST_F(ServerTest, StatsAndMetricsCountEachRoutePatternAndStatus) {
  start();
  for (const char* name : {"a", "b", "c"})
    ASSERT_TRUE(request(socket_, "GET", std::string("/v1/workloads/") + name));
  ASSERT_TRUE(request(socket_, "GET", "/missing"));
  EXPECT_EQ(count_of("GET /v1/workloads/{name}", 200), 3u);
  EXPECT_EQ(count_of("other", 404), 1u);
  const std::string text = on_loop([this] { return server_->metrics_text(); });
  EXPECT_NE(text.find("# TYPE hostfit_api_requests_total counter"), std::string::npos);
  EXPECT_NE(
      text.find("hostfit_api_requests_total{route=\"GET /v1/workloads/{name}\",status=\"200\"} 3"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("hostfit_api_request_duration_seconds_bucket{route=\"GET "
                      "/v1/workloads/{name}\",le=\"+Inf\"} 3"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("hostfit_api_request_duration_seconds_count{route=\"other\"} 1"),
            std::string::npos);
  const auto buckets =
      on_loop([this] { return server_->stats().at("GET /v1/workloads/{name}").latency_buckets; });
  ASSERT_EQ(buckets.size(), std::size(kLatencyBoundsSeconds));
  EXPECT_EQ(buckets.back(), 3u);  // every request took under 5 s
  for (size_t i = 1; i < buckets.size(); ++i)
    EXPECT_LE(buckets[i - 1], buckets[i]);
}

class TcpTest : public ServerTest {
 protected:
  void start_tcp() {
    start();
    auto st = on_loop([this] { return server_->listen_tcp("127.0.0.1", 0, "s3cret"); });
    ASSERT_TRUE(st) << st.error().message;
    port_ = on_loop([this] { return server_->tcp_port(); });
    ASSERT_NE(port_, 0);
  }
  std::string get(const std::string& target, const std::string& headers = "") {
    Raw c = Raw::tcp(port_);
    c.send("GET " + target + " HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n");
    return c.response();
  }
  std::uint16_t port_ = 0;
};

TEST_F(TcpTest, TcpNeedsAToken) {
  start();
  auto st = on_loop([this] { return server_->listen_tcp("127.0.0.1", 0, ""); });
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().kind, ErrorKind::kUsage);
  st = on_loop([this] { return server_->listen_tcp("not-an-address", 0, "t"); });
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("not-an-address"), std::string::npos);
}

TEST_F(TcpTest, RequestsWithoutTheTokenAre401) {
  start_tcp();
  std::string res = get("/v1/workloads");
  EXPECT_EQ(status_of(res), 401);
  EXPECT_NE(res.find("WWW-Authenticate: Bearer"), std::string::npos);
  EXPECT_EQ(status_of(get("/v1/workloads", "Authorization: Bearer s3cre\r\n")), 401);
  EXPECT_EQ(status_of(get("/v1/workloads", "Authorization: Bearer s3cret0\r\n")), 401);
  EXPECT_EQ(status_of(get("/v1/workloads", "Cookie: hostfit_token=wrong\r\n")), 401);
  EXPECT_EQ(status_of(get("/?token=wrong")), 401);
  EXPECT_EQ(count_of("other", 401), 5u);
}

TEST_F(TcpTest, BearerHeaderOrCookieLetsTheRequestThrough) {
  start_tcp();
  std::string res = get("/v1/workloads", "Authorization: Bearer s3cret\r\n");
  ASSERT_EQ(status_of(res), 200);
  EXPECT_EQ(nlohmann::json::parse(body_of(res))["over_tcp"], true);
  EXPECT_EQ(status_of(get("/v1/workloads", "Cookie: theme=dark; hostfit_token=s3cret\r\n")), 200);
}

TEST_F(TcpTest, TokenLinkSetsAStrictHttpOnlyCookieAndRedirects) {
  start_tcp();
  const std::string res = get("/?token=s3cret");
  EXPECT_EQ(status_of(res), 302);
  EXPECT_NE(res.find("Location: /\r\n"), std::string::npos) << res;
  const size_t cookie = res.find("Set-Cookie: hostfit_token=s3cret");
  ASSERT_NE(cookie, std::string::npos) << res;
  const std::string line = res.substr(cookie, res.find("\r\n", cookie) - cookie);
  EXPECT_NE(line.find("HttpOnly"), std::string::npos);
  EXPECT_NE(line.find("SameSite=Strict"), std::string::npos);
}

}  // namespace
}  // namespace hostfit::api
