// hostfit store: the daemon's memory across restarts, in one SQLite file in WAL mode.
//
//   auto store = hostfit::Store::open("/var/lib/hostfit/hostfit.db");
//   (*store)->transaction([&](hostfit::Store& s) -> hostfit::Status {
//     if (auto st = s.finish_run(run); !st) return st;   // the verdict ...
//     return s.release_hold("etl");                       // ... and the hold, together
//   });
//
// Tables: workloads, runs (with verdicts), placements (the daemon's ledger), attachments,
// engines and sessions (schema 2), and events (a sequence that only grows). The schema version is
// SQLite's user_version; open() applies the migrations it lacks, in one transaction each. WAL with
// synchronous=NORMAL: a process killed mid-write loses at most the transaction it was writing,
// never a committed one, and never leaves a half-applied one. Not thread-safe: one Store per thread
// (the daemon's loop).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hostfit/core.h"

struct sqlite3;

namespace hostfit {

// A workload the daemon knows: its spec as given (JSON text), where it came from and whether
// the user wants it running.
struct WorkloadRow {
  std::string name;
  std::string spec;        // the workload JSON, as validated (docs/daemon.md)
  std::string source;      // "api" or the config file it was read from
  bool wanted = false;     // started (true) or stopped (false) by its user
  int64_t restarts = 0;    // restarts since the user last started it
  std::string created_at;  // UTC, RFC 3339
};

// One run of a workload, from spawn to verdict. Optional fields are NULL until known.
struct RunRow {
  int64_t id = 0;
  std::string workload;
  std::string state;    // RunState text: "RUNNING", "EXITED", "KILLED", "FAILED"
  std::string reason;   // "" or "OOM", "SIGNAL", "TIMEOUT", "UNKNOWN"
  std::string verdict;  // "EXITED(0)", "KILLED(OOM)", ...
  std::string message;  // the one-line verdict a person reads
  std::optional<int64_t> pid, pid_start_ticks;  // main process and its /proc starttime
  std::string cgroup;  // the group's directories (JSON), so a new daemon can find it again
  std::optional<int64_t> exit_code, signal;
  std::optional<int64_t> memory_limit_bytes, memory_peak_bytes, cache_peak_bytes;
  int64_t oom_kill_baseline = 0;  // the group's oom_kill counter when the run started
  int64_t oom_kills = 0;
  std::string started_at, ended_at;  // UTC; ended_at "" while it runs
};

struct HoldRow {
  std::string owner;
  std::string cpus;  // CPU list, "0-3,8"
  std::string mems;  // NUMA node list, "" for all
};

struct AttachmentRow {
  std::string name;
  std::string cgroup;  // path inside the memory hierarchy, "/system.slice/x.service"
  std::optional<int64_t> cache_limit_bytes;
  std::string created_at;
};

struct EventRow {
  int64_t seq = 0;  // assigned by append_event: larger than every earlier one, never reused
  std::string time;
  std::string type;      // "workload.created", "run.started", "run.ended", "oom", ...
  std::string workload;  // or attachment name; "" for node events
  std::string message;   // one line for a person
  std::string data;      // JSON object text, "{}" when none
};

// An engine of the sessions module (docs/sessions.md), as the daemon last recorded it. Its
// process (pid, start time, cgroup) is the open run of `workload`, adopted as workloads are.
struct EngineRow {
  std::string id;               // "pg-7"
  std::string key;              // "pg/user/alice/default"
  std::string state;            // "LAUNCHING", "READY", "STOPPING", "EXITING", "ENDED"
  std::string workload;         // "engine.pg-7"
  std::optional<int64_t> port;  // its {port}, allocated while it lives
  std::string socket;           // its readiness socket, "" when none
  std::string template_json;    // the template it was launched with
  std::string record;           // the engine as the API shows it (JSON)
  bool ended = false;
};

// A session, as the daemon last recorded it.
struct SessionRow {
  std::string id;  // "s-1f2e3d4c5b6a7980"
  std::string key;
  std::string owner, subdomain;
  std::string engine;  // "" while it waits for a pool slot
  std::string state;   // "PENDING", "OPEN", "CLOSED", "FAILED"
  std::string message;
  std::string record;  // the session as the API shows it (JSON)
  bool ended = false;
};

class Store {
 public:
  static constexpr int kSchemaVersion = 2;

  // Opens (creating the file and its directory, mode 0600) and migrates. kParse when the file is
  // not a database or has a newer schema than this hostfit knows.
  static Result<std::unique_ptr<Store>> open(const std::filesystem::path& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  int schema_version() const;
  const std::filesystem::path& path() const { return path_; }

  // Runs body in one transaction: committed when it returns success, rolled back otherwise.
  // Nested calls join the outer transaction.
  Status transaction(const std::function<Status(Store&)>& body);

  Status put_workload(const WorkloadRow& row);  // insert or replace; keeps created_at
  Status set_wanted(const std::string& name, bool wanted, int64_t restarts);
  Status delete_workload(const std::string& name);  // and its runs
  Result<std::vector<WorkloadRow>> workloads();
  Result<std::optional<WorkloadRow>> workload(const std::string& name);

  Result<int64_t> insert_run(const RunRow& row);  // returns the new id
  Status finish_run(const RunRow& row);           // writes the verdict fields of row.id
  Result<std::vector<RunRow>> runs(const std::string& workload, int limit = 100);  // newest first
  Result<std::vector<RunRow>> open_runs();  // STARTING or RUNNING: what a new daemon adopts

  Status hold(const HoldRow& row);  // kResource when the owner already holds something
  Status release_hold(const std::string& owner);  // no hold: not an error
  Result<std::vector<HoldRow>> holds();

  Status put_attachment(const AttachmentRow& row);
  Status delete_attachment(const std::string& name);
  Result<std::vector<AttachmentRow>> attachments();

  // Engines and sessions: insert or replace by id; rows come back in the order they last changed.
  Status put_engine(const EngineRow& row);
  Status put_session(const SessionRow& row);
  Result<std::vector<EngineRow>> engines();
  Result<std::vector<SessionRow>> session_rows();
  // Keeps the `keep` most recently ended engines and sessions (each); live ones always stay.
  Status prune_ended(int64_t keep);

  Result<int64_t> append_event(EventRow row);  // fills seq and time
  Result<std::vector<EventRow>> events_since(int64_t seq, int limit = 1000);
  Result<int64_t> last_event_seq();

  // PRAGMA integrity_check: "ok" or what SQLite found.
  Result<std::string> integrity_check();

 private:
  Store(std::filesystem::path path, sqlite3* db);
  struct Impl;
  std::filesystem::path path_;
  std::unique_ptr<Impl> impl_;
  int depth_ = 0;
};

}  // namespace hostfit
