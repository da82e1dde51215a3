// Test helpers for examples/wasmgw: start it (directly or under `hostfit run`), wait for its
// "listening" line, send HTTP requests on loopback, stop it. Header-only so the qemu guest tests
// (tests/vm) use the same code.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace hostfit::testing {

// A child process with its stdout and stderr captured; killed and reaped on destruction.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return;
    std::vector<char*> args;
    for (const auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      execvp(args[0], args.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      wait_exit(std::chrono::seconds(10));
    }
    if (out_ >= 0) close(out_);
    if (err_ >= 0) close(err_);
  }
  pid_t pid() const { return pid_; }

  // Reads stdout and stderr until `pattern` appears in stdout or the child closes its stdout or
  // `limit` passes; true when it appeared.
  bool wait_for(const std::regex& pattern, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!std::regex_search(out, pattern)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      if (!pump(static_cast<int>(left.count()))) return std::regex_search(out, pattern);
    }
    return true;
  }

  // Waits for the exit (reading what is left of its output); the shell-style code, or nullopt
  // after `limit`.
  std::optional<int> wait_exit(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (pid_ > 0) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        while (pump(100)) {
        }
        pid_ = -1;
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
      pump(50);
    }
    return code_;
  }

  std::string out, err;

 private:
  // One poll round; false when both pipes are at end of file.
  bool pump(int timeout_ms) {
    pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
    if (poll(fds, 2, timeout_ms) <= 0) return true;
    bool open = false;
    char buf[8192];
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0) continue;
      if (fds[i].revents & (POLLIN | POLLHUP)) {
        const ssize_t n = read(fds[i].fd, buf, sizeof buf);
        if (n > 0) (i == 0 ? out : err).append(buf, static_cast<size_t>(n));
        if (n > 0) open = true;
      } else {
        open = true;
      }
    }
    return open;
  }

  pid_t pid_ = -1;
  int out_ = -1, err_ = -1;
  std::optional<int> code_;
};

// The port of "wasmgw: listening on 127.0.0.1:PORT" in `text`, or 0.
inline int listening_port(const std::string& text) {
  std::smatch m;
  static const std::regex re("listening on 127\\.0\\.0\\.1:([0-9]+)");
  return std::regex_search(text, m, re) ? std::stoi(m[1]) : 0;
}

// One keep-alive HTTP/1.1 connection to 127.0.0.1:port.
class HttpClient {
 public:
  explicit HttpClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~HttpClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return fd_ >= 0; }

  // GET path; the response body, or nullopt when the connection failed.
  std::optional<std::string> get(const std::string& path) {
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if (fd_ < 0 || ::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) < 0)
      return std::nullopt;
    size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return std::nullopt;
    }
    std::smatch m;
    const std::string head = buffer_.substr(0, head_end);
    static const std::regex length_re("Content-Length: ([0-9]+)");
    if (!std::regex_search(head, m, length_re)) return std::nullopt;
    const size_t length = std::stoul(m[1]);
    while (buffer_.size() < head_end + 4 + length) {
      if (!fill()) return std::nullopt;
    }
    std::string body = buffer_.substr(head_end + 4, length);
    buffer_.erase(0, head_end + 4 + length);
    return body;
  }

 private:
  bool fill() {
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  std::string buffer_;
};

// True when `body` is "plugins S1 ... SN" with N statuses, each in 200..203 (what the built-in
// plugin answers), i.e. the request went through every plugin.
inline bool through_all_plugins(const std::string& body, int plugins) {
  static const std::regex each("^plugins((?: 20[0-3])+)\n$");
  std::smatch m;
  if (!std::regex_match(body, m, each)) return false;
  return static_cast<int>(m[1].str().size()) == 4 * plugins;
}

}  // namespace hostfit::testing
