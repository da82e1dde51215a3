// blobd: serves the files of one directory over HTTP/1.1 by name, with hostfit::stream_file, so
// that serving a large blob leaves the page cache as it found it. The registry-mirror incident in
// docs/cache.md is the reason it exists; `--plain` serves with plain sendfile(2) for comparison.
//
//   blobd --dir /srv/layers --port 8080      GET /NAME -> the file DIR/NAME
//
// One thread per connection, one request per connection (Connection: close). Names are single
// path components of [A-Za-z0-9._-] not starting with '.', opened with O_NOFOLLOW under the
// directory: no traversal, no symlinks out of it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

#include "hostfit/cache.h"

namespace {

constexpr size_t kMaxRequestHeadBytes = 8192;
constexpr size_t kMaxNameBytes = 255;

struct Config {
  std::string dir;
  std::string bind = "127.0.0.1";
  int port = 8080;
  bool plain = false;
  int dir_fd = -1;
};

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void send_status(int fd, int code, std::string_view reason) {
  const std::string body = std::to_string(code) + " " + std::string(reason) + "\n";
  (void)send_all(fd, "HTTP/1.1 " + std::to_string(code) + " " + std::string(reason) +
                         "\r\nContent-Type: text/plain\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
}

// The request head up to the blank line; empty when the client sent none.
std::string read_head(int fd) {
  std::string head;
  char buf[1024];
  while (head.size() < kMaxRequestHeadBytes && head.find("\r\n\r\n") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    head.append(buf, static_cast<size_t>(n));
  }
  return head;
}

// A blob name: one path component, no dot files (so never "." or ".."), nothing to decode.
bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes || name.front() == '.') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void serve(const Config& config, int client) {
  const std::string head = read_head(client);
  const size_t line_end = head.find("\r\n");
  if (line_end == std::string::npos) return send_status(client, 400, "Bad Request");
  const std::string_view line(head.data(), line_end);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = line.find(' ', sp1 == std::string_view::npos ? 0 : sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
    return send_status(client, 400, "Bad Request");
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (method != "GET" && method != "HEAD") return send_status(client, 405, "Method Not Allowed");
  if (const size_t q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  if (!target.starts_with('/') || !valid_name(target.substr(1))) {
    return send_status(client, 400, "Bad Request");
  }
  const std::string name(target.substr(1));
  const int file = ::openat(config.dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (file < 0) return send_status(client, 404, "Not Found");
  struct stat st;
  if (::fstat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(file);
    return send_status(client, 404, "Not Found");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const bool headers_sent = send_all(client,
                                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                     "Content-Length: " +
                                         std::to_string(size) + "\r\nConnection: close\r\n\r\n");
  if (headers_sent && method == "GET") {
    hostfit::StreamOptions options;
    options.drop_behind = !config.plain;
    auto sent = hostfit::stream_file(client, file, 0, size, options);
    if (!sent) {
      std::fprintf(stderr, "blobd: %s: %s\n", name.c_str(), sent.error().message.c_str());
    } else if (*sent != size) {
      std::fprintf(stderr, "blobd: %s: the file shrank while it was sent\n", name.c_str());
    }
  }
  ::close(file);
}

int listen_on(const Config& config) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(config.port));
  if (::inet_pton(AF_INET, config.bind.c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "blobd: --bind '%s' is not an IPv4 address\n", config.bind.c_str());
    return -1;
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0) {
    std::fprintf(stderr, "blobd: cannot listen on %s:%d: %s\n", config.bind.c_str(), config.port,
                 std::strerror(errno));
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  CLI::App app{"blobd: serve the files of a directory over HTTP, leaving no page cache behind",
               "blobd"};
  app.add_option("--dir", config.dir, "Directory whose files are served by name")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--port", config.port, "TCP port; 0 picks a free one (printed on stdout)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--bind", config.bind, "IPv4 address to listen on");
  app.add_flag("--plain", config.plain,
               "Plain sendfile(2) with no cache drops: the baseline blobd is measured against");
  CLI11_PARSE(app, argc, argv);

  ::signal(SIGPIPE, SIG_IGN);
  config.dir_fd = ::open(config.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (config.dir_fd < 0) {
    std::fprintf(stderr, "blobd: cannot open --dir %s: %s\n", config.dir.c_str(),
                 std::strerror(errno));
    return 1;
  }
  const int listener = listen_on(config);
  if (listener < 0) return 1;
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len);
  std::printf("blobd: serving %s on http://%s:%d/ (%s)\n", config.dir.c_str(), config.bind.c_str(),
              ntohs(bound.sin_port), config.plain ? "plain sendfile" : "stream_file");
  std::fflush(stdout);

  for (;;) {
    const int client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {  // out of descriptors: let connections finish
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      std::fprintf(stderr, "blobd: accept: %s\n", std::strerror(errno));
      return 1;
    }
    std::thread([&config, client] {
      serve(config, client);
      ::shutdown(client, SHUT_WR);
      ::close(client);
    }).detach();
  }
}
