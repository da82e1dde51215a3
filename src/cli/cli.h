// Shared pieces of the hostfit command line: how commands register, exit codes, the one-line
// error format, output formats and a plain-text table.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "hostfit/core.h"
#include "hostfit/plan.h"
#include "hostfit/supervise.h"

namespace hostfit::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// A subcommand and what to run when it was chosen.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};
using Commands = std::vector<Command>;

// Each verb adds its subcommand in its own file (probe_cmd.cc, plan_cmd.cc, ...).
void add_probe_command(CLI::App& app, Commands& commands);
void add_plan_command(CLI::App& app, Commands& commands);
void add_place_command(CLI::App& app, Commands& commands);
void add_pool_command(CLI::App& app, Commands& commands);
void add_run_command(CLI::App& app, Commands& commands);
void add_stat_command(CLI::App& app, Commands& commands);
void add_attach_command(CLI::App& app, Commands& commands);
void add_calibrate_command(CLI::App& app, Commands& commands);
void add_daemon_command(CLI::App& app, Commands& commands);
void add_client_commands(CLI::App& app, Commands& commands);   // ps, start, stop, create, ...
void add_session_commands(CLI::App& app, Commands& commands);  // session, engine
void add_ui_command(CLI::App& app, Commands& commands);

// Prints "hostfit: MESSAGE" on stderr and returns the exit code for the error's kind.
int report(const Error& error);
// Prints "hostfit: MESSAGE" on stderr and returns kExitUsage.
int usage_error(const std::string& message);

enum class Format { kTable, kJson, kEnv };
// Adds "-o,--output" accepting the given formats (the first is the default).
CLI::Option* add_format_option(CLI::App& app, Format& format, std::vector<Format> accepted);
// Adds "--sysroot DIR".
CLI::Option* add_sysroot_option(CLI::App& app, std::string& sysroot);

// A validator that accepts what parse_bytes accepts, naming the value and the accepted form.
CLI::Validator size_validator();
// Adds "--pid PID": 1 to 4194304 (the kernel's PID_MAX_LIMIT).
CLI::Option* add_pid_option(CLI::App& app, pid_t& pid, const std::string& help);
// A validator that accepts what CpuSet::parse_list accepts.
CLI::Validator cpu_list_validator();

// Pretty JSON (print_json) or one line (print_json_line); bytes that are not UTF-8 are escaped as
// \ooo, so printing never throws.
void print_json(std::ostream& out, const nlohmann::json& j);
void print_json_line(std::ostream& out, const nlohmann::json& j);
// j[key] of a daemon's answer, or null when j is not an object or has no such key.
const nlohmann::json& json_at(const nlohmann::json& j, const char* key);
// A JSON value as a table cell: "-" for null, yes/no, strings escaped, the rest as JSON.
std::string json_cell(const nlohmann::json& j);

// What a workload may use, as `hostfit run` and `hostfit create` take it (strings as typed).
struct WorkloadFlags {
  std::string cpus;
  std::string cpuset;
  std::string placement;
  bool ignore_foreign = false;  // kForeground: --ignore-foreign
  std::string memory;
  std::string memory_high;
  std::string pids;
  std::string stop_timeout = "10";
  std::string cache_limit;
  std::string runtime;
  std::string profile;
  std::string plugins;
  std::vector<std::string> command;  // not added by add_workload_flags: each verb places it
};
// Which of them a verb takes: the daemon's workload shape has no memory.high and no sandbox
// runtime yet (docs/api.md), so `create` leaves out --memory-high, --runtime, --profile, --plugins.
enum class WorkloadFlagSet { kForeground, kDaemon };
// Adds --cpus --cpuset --placement --memory --memory-high --pids --stop-timeout --cache-limit
// --runtime --plugins, and for kForeground --ignore-foreign --profile.
void add_workload_flags(CLI::App& cmd, WorkloadFlags& flags, WorkloadFlagSet set);
// The flags checked and parsed (argv from command; name, env and cgroup parent left empty).
// kUsage errors name the flag, the value and what is accepted.
Result<WorkloadRequest> request_from_flags(const WorkloadFlags& flags);
// A size flag: nullopt when empty, else parse_bytes or a kUsage error naming flag and value.
Result<std::optional<uint64_t>> size_flag(const std::string& flag, const std::string& text);

// The sandbox runtime that --profile FILE (as `hostfit calibrate -o json` writes it) or else
// --runtime NAME names; "none" when neither is given. kUsage errors name the file or the name.
Result<RuntimeProfile> runtime_from_flags(const std::string& profile_file,
                                          const std::string& runtime);

// Left-aligned columns separated by two spaces; the first row is the header when has_header.
class Table {
 public:
  explicit Table(bool has_header = true) : has_header_(has_header) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::ostream& out, std::string_view indent = "") const;

 private:
  bool has_header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace hostfit::cli
