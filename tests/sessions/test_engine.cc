// A tiny engine for the sessions tests: after an optional delay it listens on a TCP port and/or a
// Unix socket and prints a line, answers every connection with "engine PID\n", and can exit on
// its own, ignore SIGTERM or never become ready. It stops by itself after --lifetime seconds so a
// failed test never leaves it behind for long.
//
//   test-engine --port 20001 [--socket PATH] [--print TEXT] [--delay-ms N] [--exit-after-ms N
//               --exit-code C] [--ignore-term] [--lifetime S] [--write FILE]
//               [--hog-when FILE --hog-mb N [--hog-in-child]]
//
// --hog-when: once FILE exists, touch N MiB (in a forked child with --hog-in-child), which in a
// memory-limited cgroup ends in the OOM killer.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

int listen_tcp(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 128) != 0) {
    std::perror("test-engine: tcp");
    std::exit(70);
  }
  return fd;
}

int listen_unix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 128) != 0) {
    std::perror("test-engine: unix");
    std::exit(70);
  }
  return fd;
}

void hog(int mb) {
  std::vector<char*> chunks;
  for (int i = 0; i < mb; ++i) {
    char* c = static_cast<char*>(std::malloc(1 << 20));
    if (!c) break;
    std::memset(c, i + 1, 1 << 20);
    chunks.push_back(c);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0, delay_ms = 0, exit_after_ms = -1, exit_code = 0, lifetime_s = 120;
  std::string socket_path, print, write_file, hog_when;
  bool ignore_term = false, hog_in_child = false;
  int hog_mb = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--port")
      port = std::atoi(next().c_str());
    else if (a == "--socket")
      socket_path = next();
    else if (a == "--print")
      print = next();
    else if (a == "--delay-ms")
      delay_ms = std::atoi(next().c_str());
    else if (a == "--exit-after-ms")
      exit_after_ms = std::atoi(next().c_str());
    else if (a == "--exit-code")
      exit_code = std::atoi(next().c_str());
    else if (a == "--ignore-term")
      ignore_term = true;
    else if (a == "--lifetime")
      lifetime_s = std::atoi(next().c_str());
    else if (a == "--write")
      write_file = next();
    else if (a == "--hog-when")
      hog_when = next();
    else if (a == "--hog-mb")
      hog_mb = std::atoi(next().c_str());
    else if (a == "--hog-in-child")
      hog_in_child = true;
    else {
      std::fprintf(stderr, "test-engine: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);  // readiness checks connect and hang up at once
  if (ignore_term) ::signal(SIGTERM, SIG_IGN);
  if (!write_file.empty()) std::ofstream(write_file) << ::getpid() << "\n";
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 start)
        .count();
  };
  const auto maybe_exit = [&] {
    if (exit_after_ms >= 0 && elapsed_ms() >= exit_after_ms) std::exit(exit_code);
    if (elapsed_ms() >= lifetime_s * 1000LL) std::exit(0);
  };
  while (elapsed_ms() < delay_ms) {
    maybe_exit();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::vector<pollfd> fds;
  if (port > 0) fds.push_back({listen_tcp(port), POLLIN, 0});
  if (!socket_path.empty()) fds.push_back({listen_unix(socket_path), POLLIN, 0});
  if (!print.empty()) {
    std::printf("starting up\n%s\n", print.c_str());
    std::fflush(stdout);
  }
  const std::string hello = "engine " + std::to_string(::getpid()) + "\n";
  for (;;) {
    maybe_exit();
    if (!hog_when.empty() && ::access(hog_when.c_str(), F_OK) == 0) {
      hog_when.clear();
      if (!hog_in_child) {
        hog(hog_mb);
      } else if (::fork() == 0) {
        hog(hog_mb);
        ::_exit(0);
      }
    }
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (fds.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    if (::poll(fds.data(), fds.size(), 5) <= 0) continue;
    for (auto& p : fds) {
      if (!(p.revents & POLLIN)) continue;
      const int c = ::accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      (void)!::write(c, hello.data(), hello.size());
      ::close(c);
    }
  }
}
