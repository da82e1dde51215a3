// hostfit: find out what a workload can really use on this machine, and act on it.
#include <iostream>

#include "cli.h"

int main(int argc, char** argv) {
  using namespace hostfit::cli;
  CLI::App app{
      "hostfit: what can this workload really use here? Reads CPU affinity, cpusets, CPU quota "
      "over "
      "the whole cgroup chain, NUMA topology, memory and kernel limits, and sizes, places and runs "
      "workloads to fit.",
      "hostfit"};
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", "hostfit 0.1.0");
  app.footer(
      "Every command takes -o table|json. Exit codes: 0 success, 1 runtime failure, 2 usage "
      "error.\n"
      "Run 'hostfit COMMAND --help' for a command's flags.");

  Commands commands;
  add_probe_command(app, commands);
  add_plan_command(app, commands);
  add_place_command(app, commands);
  add_pool_command(app, commands);
  add_stat_command(app, commands);
  add_run_command(app, commands);
  add_attach_command(app, commands);
  add_calibrate_command(app, commands);
  add_daemon_command(app, commands);
  add_client_commands(app, commands);
  add_ui_command(app, commands);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return kExitOk;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return kExitOk;
  } catch (const CLI::CallForVersion&) {
    std::cout << "hostfit 0.1.0\n";
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    // Point at the help of the command being parsed when there is one.
    const auto chosen = app.get_subcommands();
    const std::string help =
        chosen.empty() ? "hostfit --help" : "hostfit " + chosen.front()->get_name() + " --help";
    return usage_error(std::string(e.what()) + " (see '" + help + "')");
  }

  for (const auto& command : commands) {
    if (!command.app->parsed()) continue;
    try {
      return command.run();
    } catch (const std::exception& e) {
      // Errors are values everywhere; this only keeps a bug (or JSON of text that is not UTF-8)
      // from ending in an abort without a word.
      std::cerr << "hostfit: internal error: " << e.what() << "\n";
      return kExitFailure;
    }
  }
  std::cerr << app.help();
  return kExitUsage;
}
