// hostfit ui: where the daemon's page is, and with --serve a loopback port that serves it.
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>  // before Boost 1.74's Asio, which uses std::exchange without including it

#include "cli.h"
#include "client.h"
#include "hostfit/api.h"
#include "hostfit/web.h"

namespace hostfit::cli {
namespace {

struct UiOptions {
  ClientFlags client;
  bool serve = false;
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: any free port
};

std::string host_name() {
  char name[256] = {};
  return ::gethostname(name, sizeof name - 1) == 0 && name[0] ? name : "HOST";
}

// The page is on the daemon's socket; a browser reaches a socket through a tunnel.
int print_directions(const UiOptions& o) {
  const std::string socket = o.client.socket_path();
  const std::string url = "http://127.0.0.1:8080/";
  const std::string ssh = "ssh -N -L 8080:" + socket + " " + host_name();
  if (o.client.format == Format::kJson) {
    print_json(std::cout, {{"url", url}, {"ssh", ssh}, {"socket", socket}});
    return kExitOk;
  }
  std::cout << url << "\n"
            << "  the daemon serves its page on " << socket << "; from a workstation run\n"
            << "    " << ssh << "\n"
            << "  and open the URL, or on this machine run 'hostfit ui --serve'.\n";
  return kExitOk;
}

// A loopback port with a token of its own, so only whoever reads this output gets in.
int serve(const UiOptions& o) {
  const std::string socket = o.client.socket_path();
  auto token = web::random_token();
  if (!token) return report(token.error());
  boost::asio::io_context io;
  api::Router router;
  web::add_page_routes(router);
  web::add_socket_proxy_routes(router, io, socket);
  api::Server server(io, router);
  if (auto st = server.listen_tcp(o.address, o.port, *token); !st) {
    web::close_socket_proxy();
    return report(st.error());
  }
  const std::string url =
      "http://" + (o.address.find(':') == std::string::npos ? o.address : "[" + o.address + "]") +
      ":" + std::to_string(server.tcp_port()) + "/?token=" + *token;
  if (o.client.format == Format::kJson) {
    print_json(std::cout, {{"url", url}, {"socket", socket}});
  } else {
    std::cout << url << "\n";
  }
  std::cout.flush();
  std::cerr << "hostfit ui: serving the page of the daemon at " << socket
            << " (read-only) until Ctrl-C\n";
  ::signal(SIGPIPE, SIG_IGN);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    server.close();
    web::close_socket_proxy();
    io.stop();
  });
  io.run();
  web::close_socket_proxy();
  return kExitOk;
}

int run_ui(const UiOptions& o) {
  // The daemon first: a page that cannot load anything helps no one.
  if (auto node = call_daemon(o.client, "GET", "/v1/node", {}, std::chrono::seconds(5)); !node) {
    return report(node.error());
  }
  return o.serve ? serve(o) : print_directions(o);
}

bool loopback(const std::string& address) {
  return address.starts_with("127.") || address == "::1";
}

}  // namespace

void add_ui_command(CLI::App& app, Commands& commands) {
  auto opts = std::make_shared<UiOptions>();
  CLI::App* cmd = app.add_subcommand(
      "ui", "Print the URL of the daemon's web page; --serve serves it on a loopback port");
  add_client_flags(*cmd, opts->client);
  cmd->add_flag("--serve", opts->serve,
                "Serve the page and the API it reads (GET only) on a loopback TCP port, behind a "
                "fresh token that only the printed URL carries; runs until Ctrl-C");
  cmd->add_option("--port", opts->port, "Port for --serve (default: any free port)");
  cmd->add_option("--address", opts->address, "Loopback address for --serve (default 127.0.0.1)")
      ->check(CLI::Validator(
          [](std::string& value) {
            return loopback(value) ? std::string()
                                   : value +
                                         " is not a loopback address: hostfit ui serves "
                                         "127.0.0.1 or ::1 only";
          },
          "LOOPBACK", "loopback"));
  cmd->footer(
      "The daemon serves its page at GET / on its socket (and on --listen with its token).\n" +
      std::string(kNoDaemonFooter));
  commands.push_back({cmd, [opts] { return run_ui(*opts); }});
}

}  // namespace hostfit::cli
