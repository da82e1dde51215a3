// The sessions verbs: `hostfit session open|ls|close` and `hostfit engine add|ls|kill`, each one
// request to the daemon (docs/sessions.md).
#include <pwd.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "client.h"

namespace hostfit::cli {
namespace {

using nlohmann::json;

// The daemon caps a wait at 60 s; the request itself gets a little longer.
constexpr int kMaxWaitSeconds = 60;

std::string endpoint_cell(const json& e) {
  if (json_at(e, "port").is_number())
    return json_cell(json_at(e, "host")) + ":" + json_cell(json_at(e, "port"));
  return json_at(e, "socket").is_string() ? json_cell(json_at(e, "socket")) : "-";
}

std::string verdict_cell(const json& j) {
  return json_at(j, "verdict").is_object() ? json_cell(json_at(json_at(j, "verdict"), "verdict"))
                                           : "-";
}

std::string current_user() {
  if (const passwd* pw = ::getpwuid(::geteuid())) return pw->pw_name;
  return "root";
}

struct OpenOptions {
  ClientFlags client;
  std::string template_name;
  std::string owner;
  std::string subdomain = "default";
  int wait = kMaxWaitSeconds;
};

int run_open(const OpenOptions& o) {
  if (o.wait < 0 || o.wait > kMaxWaitSeconds) {
    return usage_error("bad --wait '" + std::to_string(o.wait) + "': give 0 to " +
                       std::to_string(kMaxWaitSeconds) + " seconds");
  }
  const json body = {{"template", o.template_name},
                     {"owner", o.owner.empty() ? current_user() : o.owner},
                     {"subdomain", o.subdomain}};
  auto answer = call_daemon(o.client, "POST", "/v1/sessions?wait=" + std::to_string(o.wait),
                            body.dump(), std::chrono::seconds(o.wait + 10));
  if (!answer) return report(answer.error());
  if (o.client.format == Format::kJson) {
    print_json(std::cout, *answer);
    return kExitOk;
  }
  const json& s = *answer;
  std::cout << json_cell(json_at(s, "id")) << "  " << json_cell(json_at(s, "state")) << "  engine "
            << json_cell(json_at(s, "engine")) << "  " << endpoint_cell(json_at(s, "endpoint"))
            << "\n";
  return kExitOk;
}

int run_ls(const ClientFlags& f, const std::string& engine) {
  auto answer = call_daemon(
      f, "GET", "/v1/sessions" + (engine.empty() ? "" : "?engine=" + path_segment(engine)));
  if (!answer) return report(answer.error());
  const json& list = json_at(*answer, "sessions");
  if (f.format == Format::kJson) {
    print_json(std::cout, list.is_array() ? list : json::array());
    return kExitOk;
  }
  Table table;
  table.add({"ID", "STATE", "KEY", "ENGINE", "ENDPOINT", "VERDICT"});
  if (list.is_array()) {
    for (const json& s : list) {
      table.add({json_cell(json_at(s, "id")), json_cell(json_at(s, "state")),
                 json_cell(json_at(s, "key")), json_cell(json_at(s, "engine")),
                 endpoint_cell(json_at(s, "endpoint")), verdict_cell(s)});
    }
  }
  table.print(std::cout);
  return kExitOk;
}

int run_close(const ClientFlags& f, const std::string& id) {
  auto answer = call_daemon(f, "DELETE", "/v1/sessions/" + path_segment(id));
  if (!answer) return report(answer.error());
  if (f.format == Format::kJson) {
    print_json(std::cout, *answer);
  } else {
    std::cout << id << ": " << json_cell(json_at(*answer, "state")) << "\n";
  }
  return kExitOk;
}

int run_engine_add(const ClientFlags& f, const std::string& file) {
  std::string text;
  if (file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    std::ifstream in(file);
    if (!in) return report(Error::from_errno(errno, "open", file));
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto answer = call_daemon(f, "POST", "/v1/engines", text);
  if (!answer) return report(answer.error());
  if (f.format == Format::kJson) {
    print_json(std::cout, *answer);
  } else {
    std::cout << "engine template " << json_cell(json_at(*answer, "name")) << " ("
              << json_cell(json_at(*answer, "share_level")) << " level, pool "
              << json_cell(json_at(*answer, "pool_size")) << ")\n";
  }
  return kExitOk;
}

int run_engine_ls(const ClientFlags& f) {
  auto answer = call_daemon(f, "GET", "/v1/engines");
  if (!answer) return report(answer.error());
  if (f.format == Format::kJson) {
    print_json(std::cout, *answer);
    return kExitOk;
  }
  Table table;
  table.add({"ENGINE", "KEY", "STATE", "SESSIONS", "ENDPOINT", "VERDICT"});
  const json& engines = json_at(*answer, "engines");
  if (engines.is_array()) {
    for (const json& e : engines) {
      table.add({json_cell(json_at(e, "id")), json_cell(json_at(e, "key")),
                 json_cell(json_at(e, "state")), std::to_string(json_at(e, "sessions").size()),
                 endpoint_cell(json_at(e, "endpoint")), verdict_cell(e)});
    }
  }
  table.print(std::cout);
  return kExitOk;
}

int run_engine_kill(const ClientFlags& f, const std::string& target) {
  auto answer = call_daemon(f, "DELETE", "/v1/engines?target=" + path_segment(target));
  if (!answer) return report(answer.error());
  if (f.format == Format::kJson) {
    print_json(std::cout, *answer);
  } else {
    for (const json& id : json_at(*answer, "killed"))
      std::cout << "killed " << json_cell(id) << "\n";
  }
  return kExitOk;
}

}  // namespace

void add_session_commands(CLI::App& app, Commands& commands) {
  CLI::App* session = app.add_subcommand(
      "session", "Open, list and close sessions on engines the daemon launches from templates");
  session->require_subcommand(1);
  {
    auto o = std::make_shared<OpenOptions>();
    CLI::App* cmd = session->add_subcommand(
        "open", "Open a session: on a ready engine of its key, or on one launched for it");
    cmd->add_option("template", o->template_name, "The engine template's name")
        ->required()
        ->type_name("TEMPLATE");
    cmd->add_option("--owner", o->owner, "Whose session it is (default: the current user)")
        ->type_name("USER");
    cmd->add_option("--subdomain", o->subdomain, "Splits the engines of one level further")
        ->type_name("NAME");
    cmd->add_option("--wait", o->wait,
                    "Seconds to wait for the engine to be ready, 0 to 60 (default 60)")
        ->type_name("SECONDS");
    add_client_flags(*cmd, o->client);
    cmd->footer(
        "Prints the session's id, state (OPEN, or PENDING while its engine still launches) and\n"
        "endpoint. A session whose engine fails to launch exits 1 with the engine's verdict.\n" +
        std::string(kNoDaemonFooter));
    commands.push_back({cmd, [o] { return run_open(*o); }});
  }
  {
    auto f = std::make_shared<ClientFlags>();
    auto engine = std::make_shared<std::string>();
    CLI::App* cmd = session->add_subcommand("ls", "List sessions, live and recently ended");
    cmd->add_option("--engine", *engine, "Only the sessions of this engine")->type_name("ID");
    add_client_flags(*cmd, *f);
    cmd->footer(kNoDaemonFooter);
    commands.push_back({cmd, [f, engine] { return run_ls(*f, *engine); }});
  }
  {
    auto f = std::make_shared<ClientFlags>();
    auto id = std::make_shared<std::string>();
    CLI::App* cmd = session->add_subcommand("close", "Close a session");
    cmd->add_option("id", *id, "The session's id")->required()->type_name("ID");
    add_client_flags(*cmd, *f);
    cmd->footer(kNoDaemonFooter);
    commands.push_back({cmd, [f, id] { return run_close(*f, *id); }});
  }

  CLI::App* engine = app.add_subcommand("engine", "Engine templates and the engines launched");
  engine->require_subcommand(1);
  {
    auto f = std::make_shared<ClientFlags>();
    auto file = std::make_shared<std::string>();
    CLI::App* cmd = engine->add_subcommand(
        "add",
        "Give the daemon an engine template (JSON, docs/sessions.md); replaces one of the "
        "same name");
    cmd->add_option("file", *file, "The template file, - for stdin")->required()->type_name("FILE");
    add_client_flags(*cmd, *f);
    cmd->footer(kNoDaemonFooter);
    commands.push_back({cmd, [f, file] { return run_engine_add(*f, *file); }});
  }
  {
    auto f = std::make_shared<ClientFlags>();
    CLI::App* cmd = engine->add_subcommand("ls", "List engines, live and recently ended");
    add_client_flags(*cmd, *f);
    cmd->footer("-o json also lists the templates.\n" + std::string(kNoDaemonFooter));
    commands.push_back({cmd, [f] { return run_engine_ls(*f); }});
  }
  {
    auto f = std::make_shared<ClientFlags>();
    auto target = std::make_shared<std::string>();
    CLI::App* cmd = engine->add_subcommand(
        "kill", "Stop an engine (by id) or every engine of a key; their sessions fail at once");
    cmd->add_option("target", *target, "An engine id (pg-3) or key (pg/user/alice/default)")
        ->required()
        ->type_name("ID|KEY");
    add_client_flags(*cmd, *f);
    cmd->footer(kNoDaemonFooter);
    commands.push_back({cmd, [f, target] { return run_engine_kill(*f, *target); }});
  }
}

}  // namespace hostfit::cli
