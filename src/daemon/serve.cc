// `hostfit daemon`: the agent, the API server and the process's signals on one io_context.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/signal_set.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "daemon_impl.h"

namespace hostfit {
namespace {

Result<std::string> read_token(const std::string& file) {
  std::ifstream in(file);
  if (!in) return fail(Error::from_errno(errno, "read", file));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string token(trim(buffer.str()));
  if (token.empty()) {
    return fail(ErrorKind::kUsage, "--token-file " + file + " is empty: put a secret in it");
  }
  return token;
}

Result<std::pair<std::string, uint16_t>> split_listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  const auto port = colon == std::string::npos ? std::nullopt : parse_u64(listen.substr(colon + 1));
  if (!port || *port == 0 || *port > 65535 || colon == 0) {
    return fail(ErrorKind::kUsage,
                "bad --listen '" + listen + "': give ADDRESS:PORT, such as 127.0.0.1:7070");
  }
  std::string address = listen.substr(0, colon);
  if (address.starts_with('[') && address.ends_with(']'))
    address = address.substr(1, address.size() - 2);
  return std::pair{address, static_cast<uint16_t>(*port)};
}

}  // namespace

std::string default_socket_path() {
  const char* env = std::getenv("HOSTFIT_SOCKET");
  return env && *env ? env : "/run/hostfit/hostfit.sock";
}

Status notify_systemd(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return {};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof addr.sun_path) return fail(ErrorKind::kUsage, "NOTIFY_SOCKET is too long");
  std::memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // an abstract socket
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(Error::from_errno(errno, "create", "a notify socket"));
  const auto size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  const ssize_t sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(&addr), size);
  const int err = errno;
  ::close(fd);
  if (sent < 0) return fail(Error::from_errno(err, "notify", path));
  return {};
}

Status serve_daemon(const DaemonServeOptions& o) {
  std::string token;
  std::pair<std::string, uint16_t> tcp;
  if (!o.listen.empty()) {
    if (o.token_file.empty()) {
      return fail(ErrorKind::kUsage,
                  "--listen needs --token-file: TCP is served only with a token");
    }
    auto t = read_token(o.token_file);
    if (!t) return fail(t.error());
    token = *t;
    auto l = split_listen(o.listen);
    if (!l) return fail(l.error());
    tcp = *l;
  } else if (!o.token_file.empty()) {
    return fail(ErrorKind::kUsage, "--token-file is for --listen ADDR:PORT");
  }
  if (!o.daemon.config_dir.empty() && !std::filesystem::is_directory(o.daemon.config_dir)) {
    return fail(ErrorKind::kUsage,
                "bad --config " + o.daemon.config_dir.string() + ": not a directory");
  }
  // The workloads' stop signals and the CLI's come to handlers on the loop, not to defaults.
  asio::io_context io;
  asio::signal_set signals(io, SIGTERM, SIGINT, SIGHUP);
  ::signal(SIGPIPE, SIG_IGN);
  DaemonOptions options = o.daemon;
  // Logs and the store are named by absolute paths in answers and in the store itself.
  options.state_dir = std::filesystem::absolute(options.state_dir);
  if (!options.config_dir.empty())
    options.config_dir = std::filesystem::absolute(options.config_dir);
  auto daemon = Daemon::open(io, options);
  if (!daemon) return fail(daemon.error());
  api::Router router;
  (*daemon)->add_routes(router);
  api::Server server(io, router);
  (*daemon)->set_server(&server);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(o.socket_path).parent_path(), ec);
  if (auto st = server.listen_unix(o.socket_path); !st) {
    (*daemon)->shutdown();
    return fail(st.error());
  }
  if (!o.listen.empty()) {
    if (auto st = server.listen_tcp(tcp.first, tcp.second, token); !st) {
      server.close();
      (*daemon)->shutdown();
      return fail(st.error());
    }
  }
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](const boost::system::error_code& e, int sig) {
      if (e) return;
      if (sig == SIGHUP) {
        log_line("SIGHUP: reloading " + o.daemon.config_dir.string());
        (void)notify_systemd("RELOADING=1");
        (*daemon)->reload();
        (void)notify_systemd("READY=1");
        return wait_signal();
      }
      log_line(std::string("SIG") + ::sigabbrev_np(sig) +
               ": leaving; workloads keep running for the next daemon");
      (void)notify_systemd("STOPPING=1");
      (*daemon)->shutdown();
      server.close();
      io.stop();
    });
  };
  wait_signal();
  log_line("serving on " + o.socket_path + (o.listen.empty() ? "" : " and " + o.listen) +
           ", state in " + o.daemon.state_dir.string());
  if (auto st = notify_systemd("READY=1"); !st) log_line(st.error().message);
  io.run();
  return {};
}

}  // namespace hostfit
