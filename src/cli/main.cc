// hostfit: find out what a workload can really use on this machine, and act on it.
#include <cctype>
#include <iostream>
#include <optional>
#include <string>

#include "cli.h"

namespace {

// The first flag on the command line (before "--") that neither hostfit nor the chosen command
// knows. CLI11 would otherwise blame a later argument ("argument not expected: x") when a
// misspelt flag is taken for the start of the command.
std::optional<std::string> unknown_flag(const CLI::App& app, int argc, char** argv) {
  const CLI::App* scope = &app;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    if (scope == &app && !arg.starts_with("-")) {
      for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
        if (sub->check_name(arg)) scope = sub;
      }
      continue;
    }
    if (!arg.starts_with("-") || arg == "-" ||
        (arg.size() > 1 && std::isdigit(static_cast<unsigned char>(arg[1]))))
      continue;
    // "--name=value" and "-ojson" are the flag "--name" and "-o".
    const std::string flag =
        arg.starts_with("--") ? arg.substr(0, arg.find('=')) : arg.substr(0, 2);
    if (!scope->get_option_no_throw(flag) && !app.get_option_no_throw(flag) && flag != "-h" &&
        flag != "--help") {
      return flag;
    }
  }
  return std::nullopt;
}

// What `hostfit` alone prints: how to call it and the commands, not every command's help.
std::string short_usage(const CLI::App& app) {
  std::string out =
      "usage: hostfit COMMAND [FLAGS] (hostfit COMMAND --help for its flags)\ncommands:";
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    out += " " + sub->get_name();
  return out + "\n";
}

using AddCommand = void (*)(CLI::App&, hostfit::cli::Commands&);
struct Verb {
  std::string_view name;  // "" for adders of several subcommands
  AddCommand add;
};
// Every verb, in the order `hostfit --help` lists them.
constexpr Verb kVerbs[] = {
    {"probe", hostfit::cli::add_probe_command},
    {"plan", hostfit::cli::add_plan_command},
    {"place", hostfit::cli::add_place_command},
    {"pool", hostfit::cli::add_pool_command},
    {"stat", hostfit::cli::add_stat_command},
    {"run", hostfit::cli::add_run_command},
    {"attach", hostfit::cli::add_attach_command},
    {"calibrate", hostfit::cli::add_calibrate_command},
    {"daemon", hostfit::cli::add_daemon_command},
    {"", hostfit::cli::add_client_commands},
    {"", hostfit::cli::add_session_commands},
    {"ui", hostfit::cli::add_ui_command},
};

// The verbs to build: only the one named first when it is a single subcommand (`hostfit run
// ...`), else all. Building every verb's flags and help cost 0.4 ms of CPU per invocation (issue
// 17 item 23); a command line that names its verb first parses the same.
void add_commands(CLI::App& app, hostfit::cli::Commands& commands, int argc, char** argv) {
  if (argc > 1) {
    const std::string_view first = argv[1];
    for (const Verb& v : kVerbs) {
      if (!v.name.empty() && v.name == first) return v.add(app, commands);
    }
  }
  for (const Verb& v : kVerbs)
    v.add(app, commands);
}

}  // namespace

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
  add_commands(app, commands, argc, argv);

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
    if (auto flag = unknown_flag(app, argc, argv)) {
      return usage_error("unknown option " + *flag + " (see '" + help + "')");
    }
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
  std::cerr << short_usage(app);
  return kExitUsage;
}
