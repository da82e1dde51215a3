// hostfit-loadgen SOCKET TARGET CLIENTS SECONDS: CLIENTS threads, each on its own keep-alive
// connection to the Unix socket, send `GET TARGET` back to back for SECONDS and time each answer.
// Prints one line: "requests=N seconds=S rps=R p50_us=A p99_us=B errors=E bytes=B".
// hostfit-loadgen --wait SOCKET SECONDS: tries `GET /healthz` every 0.2 ms until it answers 200
// (exit 0) or SECONDS pass (exit 1), for timing a restart without a process per attempt.
// Plain blocking sockets and threads: the load generator should cost less than what it measures.
// One request in flight per connection, so an answer is never followed by the next one's bytes.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int connect_to(const char* path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// Reads one response with a Content-Length body; its status, or -1 when the connection ended.
// Only the header is kept and searched; the body is received into a scratch buffer and counted,
// so a 256 KiB answer costs the load generator one copy out of the socket and nothing more.
int read_response(int fd, std::string& header, size_t* bytes) {
  static thread_local std::vector<char> scratch(1 << 20);
  size_t end = std::string::npos;
  while (end == std::string::npos) {
    const ssize_t n = ::recv(fd, scratch.data(), scratch.size(), 0);
    if (n <= 0) return -1;
    const size_t scanned = header.size();
    header.append(scratch.data(), static_cast<size_t>(n));
    end = header.find("\r\n\r\n", scanned > 3 ? scanned - 3 : 0);
  }
  size_t length = 0;
  for (size_t at = header.find('\n'); at < end; at = header.find('\n', at + 1)) {
    if (strncasecmp(header.c_str() + at + 1, "content-length:", 15) == 0)
      length = std::strtoul(header.c_str() + at + 16, nullptr, 10);
  }
  const int status = std::atoi(header.c_str() + 9);
  size_t have = header.size() - (end + 4);  // body bytes that came with the header
  while (have < length) {
    const ssize_t n = ::recv(fd, scratch.data(), std::min(scratch.size(), length - have), 0);
    if (n <= 0) return -1;
    have += static_cast<size_t>(n);
  }
  *bytes += end + 4 + length;
  header.clear();  // one request at a time: nothing follows this answer
  return status;
}

struct Client {
  std::vector<uint32_t> latencies_us;
  size_t errors = 0;
  size_t bytes = 0;
};

}  // namespace

int wait_healthy(const char* socket_path, double seconds) {
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n";
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(seconds));
  while (Clock::now() < deadline) {
    const int fd = connect_to(socket_path);
    if (fd >= 0) {
      std::string buffer;
      size_t bytes = 0;
      const bool sent = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
                        static_cast<ssize_t>(request.size());
      const int status = sent ? read_response(fd, buffer, &bytes) : -1;
      ::close(fd);
      if (status == 200) return 0;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return 1;
}

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "--wait") == 0)
    return wait_healthy(argv[2], std::atof(argv[3]));
  if (argc != 5) {
    std::fprintf(stderr, "usage: hostfit-loadgen SOCKET TARGET CLIENTS SECONDS\n");
    return 2;
  }
  const char* socket_path = argv[1];
  const std::string request = std::string("GET ") + argv[2] + " HTTP/1.1\r\nHost: bench\r\n\r\n";
  const int clients = std::atoi(argv[3]);
  const double seconds = std::atof(argv[4]);
  if (clients < 1 || clients > 10000 || seconds <= 0) {
    std::fprintf(stderr, "hostfit-loadgen: give 1..10000 clients and a positive duration\n");
    return 2;
  }
  std::vector<Client> results(static_cast<size_t>(clients));
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  Clock::time_point deadline;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      Client& me = results[static_cast<size_t>(i)];
      int fd = connect_to(socket_path);
      std::string buffer;
      ++ready;
      while (!go.load())
        std::this_thread::yield();
      while (Clock::now() < deadline) {
        if (fd < 0 && (fd = connect_to(socket_path)) < 0) {
          ++me.errors;
          continue;
        }
        const auto start = Clock::now();
        if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(request.size())) {
          ++me.errors;
          ::close(fd);
          fd = -1;
          continue;
        }
        const int status = read_response(fd, buffer, &me.bytes);
        if (status != 200) {
          ++me.errors;
          if (status < 0) {
            ::close(fd);
            fd = -1;
            buffer.clear();
          }
          continue;
        }
        me.latencies_us.push_back(static_cast<uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()));
      }
      if (fd >= 0) ::close(fd);
    });
  }
  while (ready.load() < clients)
    std::this_thread::yield();
  const auto started = Clock::now();
  deadline =
      started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  go = true;
  for (auto& t : threads)
    t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  std::vector<uint32_t> all;
  size_t errors = 0;
  size_t bytes = 0;
  for (const Client& c : results) {
    all.insert(all.end(), c.latencies_us.begin(), c.latencies_us.end());
    errors += c.errors;
    bytes += c.bytes;
  }
  std::sort(all.begin(), all.end());
  const auto pct = [&](double p) -> uint32_t {
    return all.empty() ? 0 : all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))];
  };
  std::printf("requests=%zu seconds=%.2f rps=%.0f p50_us=%u p99_us=%u errors=%zu bytes=%zu\n",
              all.size(), elapsed, all.size() / elapsed, pct(0.50), pct(0.99), errors, bytes);
  return 0;
}
