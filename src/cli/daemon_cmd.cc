// hostfit daemon: the node agent in the foreground (systemd runs it as Type=notify).
#include "cli.h"
#include "hostfit/daemon.h"

namespace hostfit::cli {
namespace {

struct DaemonFlags {
  std::string socket;
  std::string state_dir = "/var/lib/hostfit";
  std::string config_dir;
  std::string listen;
  std::string token_file;
  std::string cgroup_parent;
};

}  // namespace

void add_daemon_command(CLI::App& app, Commands& commands) {
  auto flags = std::make_shared<DaemonFlags>();
  CLI::App* sub = app.add_subcommand(
      "daemon",
      "Run the node agent: workloads from --config DIR/*.json and the API, restart policies, OOM "
      "verdicts, attachments, all in one event loop. Workloads keep running when it stops, and "
      "the next daemon adopts them (docs/daemon.md).");
  sub->add_option("--socket", flags->socket,
                  "The API's Unix socket (default $HOSTFIT_SOCKET or /run/hostfit/hostfit.sock)");
  sub->add_option("--state-dir", flags->state_dir,
                  "The store (hostfit.db) and the workloads' logs (default /var/lib/hostfit)");
  sub->add_option("--config", flags->config_dir,
                  "A directory of workload files (*.json), re-read on SIGHUP");
  sub->add_option("--listen", flags->listen,
                  "Also serve the API on TCP ADDRESS:PORT (needs --token-file)");
  sub->add_option("--token-file", flags->token_file,
                  "The bearer token TCP clients must send (Authorization: Bearer TOKEN)");
  sub->add_option("--cgroup-parent", flags->cgroup_parent,
                  "Make workload groups under this cgroup path (default <own cgroup>/hostfit)");
  commands.push_back({sub, [flags] {
                        DaemonServeOptions o;
                        o.socket_path =
                            flags->socket.empty() ? default_socket_path() : flags->socket;
                        o.daemon.state_dir = flags->state_dir;
                        o.daemon.config_dir = flags->config_dir;
                        o.daemon.cgroup_parent = flags->cgroup_parent;
                        o.listen = flags->listen;
                        o.token_file = flags->token_file;
                        if (auto st = serve_daemon(o); !st) return report(st.error());
                        return kExitOk;
                      }});
}

}  // namespace hostfit::cli
