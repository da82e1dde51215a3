// wasmgw: a small multi-threaded WebAssembly gateway on Debian's V8, shaped like the gateway of
// the first incident in DESIGN.md. N worker threads each instantiate the M plugin modules in their
// own isolates, as a proxy-wasm host does, and every request runs through all M plugins of the
// worker that accepted it.
//
//   wasmgw --concurrency 4 --plugins 8 --port 0     GET /anything -> the plugins' answers
//                                                   GET /stats    -> maps, RSS, requests (JSON)
//
// Like Envoy, --concurrency defaults to the host's CPU count. Once every worker holds its plugins
// it prints one line with its port, map count and resident memory. When V8 fails it exits with
// V8's own error: a fatal error aborts the process (as V8 does for every embedder), and a
// JavaScript error from instantiation is printed and ends the process with exit code 1.
// HTTP/1.1 on loopback with keep-alive; SIGTERM or SIGINT ends it with exit code 0.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "hostfit/core.h"
#include "v8_host.h"

namespace {

constexpr size_t kMaxRequestHeadBytes = 16384;

std::atomic<uint64_t> g_requests{0};
int g_workers = 0, g_plugins = 0;

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// The process's own map count and resident memory, read through hostfit's Sysroot.
std::pair<uint64_t, uint64_t> maps_and_rss() {
  const hostfit::Sysroot root("/");
  uint64_t maps = 0, rss = 0;
  if (auto text = root.read("/proc/self/maps", 64 << 20))
    maps = static_cast<uint64_t>(std::count(text->begin(), text->end(), '\n'));
  if (auto status = root.read("/proc/self/status")) {
    const auto keyed = hostfit::parse_keyed_numbers(*status);
    if (auto it = keyed.find("VmRSS"); it != keyed.end()) rss = it->second;
  }
  return {maps, rss};
}

std::string response(int code, std::string_view type, const std::string& body, bool close) {
  return "HTTP/1.1 " + std::to_string(code) + (code == 200 ? " OK" : " Bad Request") +
         "\r\nContent-Type: " + std::string(type) +
         "\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nx-wasmgw-plugins: " + std::to_string(g_plugins) +
         (close ? "\r\nConnection: close" : "") + "\r\n\r\n" + body;
}

// Serves one connection: requests in order, each through every plugin of this worker.
void serve(int fd, std::vector<std::unique_ptr<hostfit::v8host::PluginInstance>>& plugins) {
  std::string buffer;
  char chunk[4096];
  for (;;) {
    size_t end;
    while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
      if (buffer.size() > kMaxRequestHeadBytes) return;
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      buffer.append(chunk, static_cast<size_t>(n));
    }
    const std::string head = buffer.substr(0, end + 4);
    buffer.erase(0, end + 4);
    const bool close = head.find("\r\nConnection: close") != std::string::npos;
    std::string reply;
    if (head.starts_with("GET /stats ")) {
      const auto [maps, rss] = maps_and_rss();
      reply = response(200, "application/json",
                       "{\"workers\":" + std::to_string(g_workers) + ",\"plugins\":" +
                           std::to_string(g_plugins) + ",\"maps\":" + std::to_string(maps) +
                           ",\"rss_bytes\":" + std::to_string(rss) +
                           ",\"requests\":" + std::to_string(g_requests.load()) + "}\n",
                       close);
    } else {
      // Every plugin sees the request head; its answer (200..203) goes into the body.
      std::string body = "plugins";
      const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(head.data()),
                                           head.size());
      bool failed = false;
      for (auto& plugin : plugins) {
        const int32_t status = plugin->on_request(bytes);
        failed |= status < 0;
        body += " " + std::to_string(status);
      }
      g_requests.fetch_add(1, std::memory_order_relaxed);
      reply = response(failed ? 500 : 200, "text/plain", body + "\n", close);
    }
    if (!send_all(fd, reply) || close) return;
  }
}

struct Options {
  int concurrency = static_cast<int>(std::thread::hardware_concurrency());
  int plugins = 8;
  int port = 0;
  std::string module;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"wasmgw: a multi-threaded WebAssembly gateway on V8 (hostfit example)", "wasmgw"};
  app.add_option("--concurrency", o.concurrency, "Worker threads (default: the host's CPUs)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--plugins", o.plugins, "Plugin isolates per worker")->check(CLI::Range(1, 1000));
  app.add_option("--port", o.port, "TCP port on 127.0.0.1 (0: any free port)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--module", o.module, "Plugin .wasm (default: the built-in plugin)");
  CLI11_PARSE(app, argc, argv);
  g_workers = o.concurrency;
  g_plugins = o.plugins;

  std::vector<uint8_t> file_bytes;
  std::span<const uint8_t> module = hostfit::v8host::builtin_plugin();
  if (!o.module.empty()) {
    std::ifstream in(o.module, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "wasmgw: cannot read --module %s\n", o.module.c_str());
      return 2;
    }
    file_bytes.assign(std::istreambuf_iterator<char>(in), {});
    module = file_bytes;
  }

  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 1024) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::fprintf(stderr, "wasmgw: cannot listen on 127.0.0.1:%d: %s\n", o.port,
                 std::strerror(errno));
    return 1;
  }

  // Stop signals are taken by the main thread only (sigwait below).
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  hostfit::v8host::V8Runtime runtime(argv[0]);
  std::latch ready(o.concurrency);
  for (int w = 0; w < o.concurrency; ++w) {
    std::thread([w, &o, &ready, module, listener] {
      std::vector<std::unique_ptr<hostfit::v8host::PluginInstance>> plugins;
      for (int p = 0; p < o.plugins; ++p) {
        std::string error;
        auto plugin = std::make_unique<hostfit::v8host::PluginInstance>(module, error);
        if (!plugin->ok()) {
          std::fprintf(stderr, "wasmgw: worker %d, plugin %d: %s\n", w, p, error.c_str());
          std::fflush(stderr);
          std::_Exit(1);
        }
        plugins.push_back(std::move(plugin));
      }
      ready.count_down();
      for (;;) {
        const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        serve(fd, plugins);
        ::close(fd);
      }
    }).detach();
  }
  ready.wait();
  const auto [maps, rss] = maps_and_rss();
  std::printf(
      "wasmgw: listening on 127.0.0.1:%d, %d workers x %d plugins = %d V8 instances (V8 %s), "
      "maps %llu, VmRSS %s\n",
      ntohs(addr.sin_port), o.concurrency, o.plugins, o.concurrency * o.plugins,
      hostfit::v8host::V8Runtime::version().c_str(), static_cast<unsigned long long>(maps),
      hostfit::format_bytes(rss).c_str());
  std::fflush(stdout);

  int signal = 0;
  sigwait(&stop, &signal);
  std::printf("wasmgw: %s, served %llu requests\n", strsignal(signal),
              static_cast<unsigned long long>(g_requests.load()));
  std::fflush(stdout);
  // Workers are blocked in accept(); the process ends without unwinding them or V8.
  std::_Exit(0);
}
