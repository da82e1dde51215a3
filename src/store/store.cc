// SQLite as SQLite intends: one connection, statements prepared once, WAL, user_version migrations.
#include "hostfit/store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <chrono>
#include <map>
#include <system_error>

namespace hostfit {
namespace {

// Each entry moves the schema from version i to i + 1. Never edit one that has shipped; append.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE workloads(
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  source TEXT NOT NULL,
  wanted INTEGER NOT NULL DEFAULT 0,
  restarts INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL);
CREATE TABLE runs(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  workload TEXT NOT NULL,
  state TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  verdict TEXT NOT NULL DEFAULT '',
  message TEXT NOT NULL DEFAULT '',
  pid INTEGER,
  pid_start_ticks INTEGER,
  cgroup TEXT NOT NULL DEFAULT '',
  exit_code INTEGER,
  signal INTEGER,
  memory_limit_bytes INTEGER,
  memory_peak_bytes INTEGER,
  cache_peak_bytes INTEGER,
  oom_kill_baseline INTEGER NOT NULL DEFAULT 0,
  oom_kills INTEGER NOT NULL DEFAULT 0,
  started_at TEXT NOT NULL,
  ended_at TEXT NOT NULL DEFAULT '');
CREATE INDEX runs_by_workload ON runs(workload, id);
CREATE INDEX runs_by_state ON runs(state);
CREATE TABLE placements(
  owner TEXT PRIMARY KEY,
  cpus TEXT NOT NULL,
  mems TEXT NOT NULL);
CREATE TABLE attachments(
  name TEXT PRIMARY KEY,
  cgroup TEXT NOT NULL,
  cache_limit_bytes INTEGER,
  created_at TEXT NOT NULL);
CREATE TABLE events(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  time TEXT NOT NULL,
  type TEXT NOT NULL,
  workload TEXT NOT NULL DEFAULT '',
  message TEXT NOT NULL,
  data TEXT NOT NULL DEFAULT '{}');
)sql",
    // 2: engines and sessions, so a new daemon adopts them (docs/sessions.md). An engine's
    // process (pid, start time, cgroup) is its workload's open run; the row names the workload.
    R"sql(
CREATE TABLE engines(
  id TEXT PRIMARY KEY,
  key TEXT NOT NULL,
  state TEXT NOT NULL,
  workload TEXT NOT NULL,
  port INTEGER,
  socket TEXT NOT NULL DEFAULT '',
  template TEXT NOT NULL,
  record TEXT NOT NULL,
  ended INTEGER NOT NULL DEFAULT 0,
  changed INTEGER NOT NULL);
CREATE INDEX engines_by_change ON engines(changed);
CREATE TABLE sessions(
  id TEXT PRIMARY KEY,
  key TEXT NOT NULL,
  owner TEXT NOT NULL,
  subdomain TEXT NOT NULL,
  engine TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  record TEXT NOT NULL,
  ended INTEGER NOT NULL DEFAULT 0,
  changed INTEGER NOT NULL);
CREATE INDEX sessions_by_change ON sessions(changed);
)sql",
};
static_assert(std::size(kMigrations) == Store::kSchemaVersion);

std::string now_utc() {
  return format_utc(std::chrono::system_clock::now());
}

// A prepared statement, reset after each use. Columns and parameters are 1-based for bind, 0-based
// for reading, as in SQLite's C API.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool ok() const { return rc_ == SQLITE_OK; }
  Statement& bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& bind(int i, const std::optional<int64_t>& v) {
    if (v) return bind(i, *v);
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  // SQLITE_ROW (a row to read), SQLITE_DONE, or an error code.
  int step() { return sqlite3_step(stmt_); }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  int64_t i64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::optional<int64_t> opt(int col) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
    return i64(col);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

Error sqlite_error(sqlite3* db, std::string_view what, const std::filesystem::path& path) {
  return Error{ErrorKind::kIo,
               "cannot " + std::string(what) + " in " + path.string() + ": " + sqlite3_errmsg(db)};
}

// Steps a query to its end, each row made by row_of; the statement is reset for its next use.
template <class Row, class RowOf>
Result<std::vector<Row>> collect_rows(sqlite3* db, Statement& s, RowOf row_of,
                                      std::string_view what, const std::filesystem::path& path) {
  std::vector<Row> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    out.push_back(row_of(s));
  s.reset();
  if (rc != SQLITE_DONE) return fail(sqlite_error(db, what, path));
  return out;
}

}  // namespace

struct Store::Impl {
  sqlite3* db = nullptr;
  std::map<const char*, std::unique_ptr<Statement>> statements;
  ~Impl() {
    statements.clear();
    sqlite3_close_v2(db);
  }
};

Store::Store(std::filesystem::path path, sqlite3* db)
    : path_(std::move(path)), impl_(std::make_unique<Impl>()) {
  impl_->db = db;
}
Store::~Store() = default;

namespace {

Status exec(sqlite3* db, const char* sql, const std::filesystem::path& path) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message ? message : sqlite3_errmsg(db);
    sqlite3_free(message);
    return fail(ErrorKind::kIo, "cannot update " + path.string() + ": " + text);
  }
  return {};
}

int user_version(sqlite3* db) {
  sqlite3_stmt* s = nullptr;
  int v = -1;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    v = sqlite3_column_int(s, 0);
  }
  sqlite3_finalize(s);
  return v;
}

Status migrate(sqlite3* db, const std::filesystem::path& path) {
  const int have = user_version(db);
  if (have < 0) {
    return fail(ErrorKind::kParse, path.string() + " is not a hostfit store: " +
                                       sqlite3_errmsg(db) + " (move it away to start afresh)");
  }
  if (have > Store::kSchemaVersion) {
    return fail(ErrorKind::kParse, path.string() + " has schema version " + std::to_string(have) +
                                       "; this hostfit knows up to " +
                                       std::to_string(Store::kSchemaVersion) +
                                       " (run a newer hostfit)");
  }
  for (int v = have; v < Store::kSchemaVersion; ++v) {
    const std::string sql = std::string("BEGIN IMMEDIATE;") + kMigrations[v] +
                            "PRAGMA user_version = " + std::to_string(v + 1) + ";COMMIT;";
    if (auto st = exec(db, sql.c_str(), path); !st) {
      (void)exec(db, "ROLLBACK", path);
      return fail(st.error().wrap("migration to schema " + std::to_string(v + 1)));
    }
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Store>> Store::open(const std::filesystem::path& path) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) return fail(Error::from_errno(ec.value(), "create", path.parent_path().string()));
  sqlite3* db = nullptr;
  const mode_t old = ::umask(077);
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  ::umask(old);
  if (rc != SQLITE_OK) {
    std::string why = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return fail(ErrorKind::kIo, "cannot open " + path.string() + ": " + why);
  }
  std::unique_ptr<Store> store(new Store(path, db));
  sqlite3_busy_timeout(db, 2000);
  // WAL: readers never block the writer and a killed writer leaves the last commit intact.
  // NORMAL: a commit is durable against a killed process (not against power loss, which a
  // restart-adoption cannot recover from anyway: the workloads die with the machine).
  if (auto st = exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "PRAGMA foreign_keys=ON;",
                     path);
      !st) {
    return fail(Error{ErrorKind::kParse, st.error().message + " (is it a SQLite database?)"});
  }
  if (auto st = migrate(db, path); !st) return fail(st.error());
  return store;
}

int Store::schema_version() const {
  return user_version(impl_->db);
}

Status Store::transaction(const std::function<Status(Store&)>& body) {
  if (depth_ > 0) return body(*this);
  if (auto st = exec(impl_->db, "BEGIN IMMEDIATE", path_); !st) return st;
  ++depth_;
  Status result = body(*this);
  --depth_;
  if (!result) {
    (void)exec(impl_->db, "ROLLBACK", path_);
    return result;
  }
  if (auto st = exec(impl_->db, "COMMIT", path_); !st) {
    (void)exec(impl_->db, "ROLLBACK", path_);
    return st;
  }
  return {};
}

namespace {

// Runs a statement that returns no rows.
Status run(sqlite3* db, Statement& s, std::string_view what, const std::filesystem::path& path) {
  const int rc = s.step();
  s.reset();
  if (rc != SQLITE_DONE) return fail(sqlite_error(db, what, path));
  return {};
}

}  // namespace

#define HOSTFIT_STMT(sql)                                          \
  ([this]() -> Statement& {                                        \
    static const char* const key = sql;                            \
    auto& slot = impl_->statements[key];                           \
    if (!slot) slot = std::make_unique<Statement>(impl_->db, key); \
    return *slot;                                                  \
  }())

Status Store::put_workload(const WorkloadRow& r) {
  auto& s = HOSTFIT_STMT(
      "INSERT INTO workloads(name, spec, source, wanted, restarts, created_at) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, "
      "source = excluded.source, wanted = excluded.wanted, restarts = excluded.restarts");
  s.bind(1, r.name).bind(2, r.spec).bind(3, r.source).bind(4, int64_t{r.wanted});
  s.bind(5, r.restarts).bind(6, r.created_at.empty() ? now_utc() : r.created_at);
  return run(impl_->db, s, "save workload '" + r.name + "'", path_);
}

Status Store::set_wanted(const std::string& name, bool wanted, int64_t restarts) {
  auto& s = HOSTFIT_STMT("UPDATE workloads SET wanted = ?2, restarts = ?3 WHERE name = ?1");
  s.bind(1, name).bind(2, int64_t{wanted}).bind(3, restarts);
  return run(impl_->db, s, "update workload '" + name + "'", path_);
}

Status Store::delete_workload(const std::string& name) {
  return transaction([&](Store&) -> Status {
    auto& runs = HOSTFIT_STMT("DELETE FROM runs WHERE workload = ?1");
    runs.bind(1, name);
    if (auto st = run(impl_->db, runs, "delete the runs of '" + name + "'", path_); !st) return st;
    auto& s = HOSTFIT_STMT("DELETE FROM workloads WHERE name = ?1");
    s.bind(1, name);
    return run(impl_->db, s, "delete workload '" + name + "'", path_);
  });
}

namespace {
WorkloadRow workload_of(const Statement& s) {
  return {s.text(0), s.text(1), s.text(2), s.i64(3) != 0, s.i64(4), s.text(5)};
}
}  // namespace

Result<std::vector<WorkloadRow>> Store::workloads() {
  auto& s = HOSTFIT_STMT(
      "SELECT name, spec, source, wanted, restarts, created_at FROM workloads ORDER BY name");
  return collect_rows<WorkloadRow>(impl_->db, s, workload_of, "read workloads", path_);
}

Result<std::optional<WorkloadRow>> Store::workload(const std::string& name) {
  auto& s = HOSTFIT_STMT(
      "SELECT name, spec, source, wanted, restarts, created_at FROM workloads WHERE name = ?1");
  s.bind(1, name);
  std::optional<WorkloadRow> out;
  const int rc = s.step();
  if (rc == SQLITE_ROW) out = workload_of(s);
  s.reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    return fail(sqlite_error(impl_->db, "read workload '" + name + "'", path_));
  }
  return out;
}

namespace {
constexpr const char* kRunColumns =
    "id, workload, state, reason, verdict, message, pid, pid_start_ticks, cgroup, exit_code, "
    "signal, memory_limit_bytes, memory_peak_bytes, cache_peak_bytes, oom_kill_baseline, "
    "oom_kills, started_at, ended_at";

RunRow run_of(const Statement& s) {
  RunRow r;
  r.id = s.i64(0);
  r.workload = s.text(1);
  r.state = s.text(2);
  r.reason = s.text(3);
  r.verdict = s.text(4);
  r.message = s.text(5);
  r.pid = s.opt(6);
  r.pid_start_ticks = s.opt(7);
  r.cgroup = s.text(8);
  r.exit_code = s.opt(9);
  r.signal = s.opt(10);
  r.memory_limit_bytes = s.opt(11);
  r.memory_peak_bytes = s.opt(12);
  r.cache_peak_bytes = s.opt(13);
  r.oom_kill_baseline = s.i64(14);
  r.oom_kills = s.i64(15);
  r.started_at = s.text(16);
  r.ended_at = s.text(17);
  return r;
}
}  // namespace

Result<int64_t> Store::insert_run(const RunRow& r) {
  auto& s = HOSTFIT_STMT(
      "INSERT INTO runs(workload, state, reason, verdict, message, pid, pid_start_ticks, cgroup, "
      "memory_limit_bytes, oom_kill_baseline, started_at) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
  s.bind(1, r.workload).bind(2, r.state).bind(3, r.reason).bind(4, r.verdict).bind(5, r.message);
  s.bind(6, r.pid).bind(7, r.pid_start_ticks).bind(8, r.cgroup).bind(9, r.memory_limit_bytes);
  s.bind(10, r.oom_kill_baseline).bind(11, r.started_at.empty() ? now_utc() : r.started_at);
  if (auto st = run(impl_->db, s, "record a run of '" + r.workload + "'", path_); !st) {
    return fail(st.error());
  }
  return sqlite3_last_insert_rowid(impl_->db);
}

Status Store::finish_run(const RunRow& r) {
  auto& s = HOSTFIT_STMT(
      "UPDATE runs SET state = ?2, reason = ?3, verdict = ?4, message = ?5, exit_code = ?6, "
      "signal = ?7, memory_peak_bytes = ?8, cache_peak_bytes = ?9, oom_kills = ?10, "
      "ended_at = ?11, pid = ?12, pid_start_ticks = ?13, cgroup = ?14, memory_limit_bytes = ?15, "
      "oom_kill_baseline = ?16 WHERE id = ?1");
  s.bind(1, r.id).bind(2, r.state).bind(3, r.reason).bind(4, r.verdict).bind(5, r.message);
  s.bind(6, r.exit_code).bind(7, r.signal).bind(8, r.memory_peak_bytes);
  s.bind(9, r.cache_peak_bytes).bind(10, r.oom_kills).bind(11, r.ended_at);
  s.bind(12, r.pid).bind(13, r.pid_start_ticks).bind(14, r.cgroup).bind(15, r.memory_limit_bytes);
  s.bind(16, r.oom_kill_baseline);
  return run(impl_->db, s, "record the verdict of '" + r.workload + "'", path_);
}

Result<std::vector<RunRow>> Store::runs(const std::string& workload, int limit) {
  static const std::string sql = std::string("SELECT ") + kRunColumns +
                                 " FROM runs WHERE workload = ?1 ORDER BY id DESC LIMIT ?2";
  auto& s = HOSTFIT_STMT(sql.c_str());
  s.bind(1, workload).bind(2, int64_t{limit});
  return collect_rows<RunRow>(impl_->db, s, run_of, "read runs", path_);
}

Result<std::vector<RunRow>> Store::open_runs() {
  static const std::string sql = std::string("SELECT ") + kRunColumns +
                                 " FROM runs WHERE state IN ('STARTING', 'RUNNING') ORDER BY id";
  auto& s = HOSTFIT_STMT(sql.c_str());
  return collect_rows<RunRow>(impl_->db, s, run_of, "read runs", path_);
}

Status Store::hold(const HoldRow& r) {
  auto& s = HOSTFIT_STMT("INSERT INTO placements(owner, cpus, mems) VALUES(?1, ?2, ?3)");
  s.bind(1, r.owner).bind(2, r.cpus).bind(3, r.mems);
  const int rc = s.step();
  s.reset();
  if (rc == SQLITE_CONSTRAINT) {
    return fail(ErrorKind::kResource, "'" + r.owner + "' already holds a placement");
  }
  if (rc != SQLITE_DONE) return fail(sqlite_error(impl_->db, "hold for '" + r.owner + "'", path_));
  return {};
}

Status Store::release_hold(const std::string& owner) {
  auto& s = HOSTFIT_STMT("DELETE FROM placements WHERE owner = ?1");
  s.bind(1, owner);
  return run(impl_->db, s, "release the hold of '" + owner + "'", path_);
}

Result<std::vector<HoldRow>> Store::holds() {
  auto& s = HOSTFIT_STMT("SELECT owner, cpus, mems FROM placements ORDER BY rowid");
  return collect_rows<HoldRow>(
      impl_->db, s,
      [](const Statement& row) -> HoldRow {
        return {row.text(0), row.text(1), row.text(2)};
      },
      "read placements", path_);
}

Status Store::put_attachment(const AttachmentRow& r) {
  auto& s = HOSTFIT_STMT(
      "INSERT OR REPLACE INTO attachments(name, cgroup, cache_limit_bytes, created_at) "
      "VALUES(?1, ?2, ?3, ?4)");
  s.bind(1, r.name).bind(2, r.cgroup).bind(3, r.cache_limit_bytes);
  s.bind(4, r.created_at.empty() ? now_utc() : r.created_at);
  return run(impl_->db, s, "save attachment '" + r.name + "'", path_);
}

Status Store::delete_attachment(const std::string& name) {
  auto& s = HOSTFIT_STMT("DELETE FROM attachments WHERE name = ?1");
  s.bind(1, name);
  return run(impl_->db, s, "delete attachment '" + name + "'", path_);
}

Result<std::vector<AttachmentRow>> Store::attachments() {
  auto& s = HOSTFIT_STMT(
      "SELECT name, cgroup, cache_limit_bytes, created_at FROM attachments ORDER BY name");
  return collect_rows<AttachmentRow>(
      impl_->db, s,
      [](const Statement& row) -> AttachmentRow {
        return {row.text(0), row.text(1), row.opt(2), row.text(3)};
      },
      "read attachments", path_);
}

namespace {
// Rows change in order: a counter that orders them (and tells which ended last) even when many
// change within one millisecond.
int64_t next_change(sqlite3* db, const char* table) {
  const std::string sql = std::string("SELECT COALESCE(MAX(changed), 0) + 1 FROM ") + table;
  sqlite3_stmt* s = nullptr;
  int64_t v = 1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    v = sqlite3_column_int64(s, 0);
  }
  sqlite3_finalize(s);
  return v;
}
}  // namespace

Status Store::put_engine(const EngineRow& r) {
  auto& s = HOSTFIT_STMT(
      "INSERT OR REPLACE INTO engines(id, key, state, workload, port, socket, template, record, "
      "ended, changed) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  s.bind(1, r.id).bind(2, r.key).bind(3, r.state).bind(4, r.workload).bind(5, r.port);
  s.bind(6, r.socket).bind(7, r.template_json).bind(8, r.record).bind(9, int64_t{r.ended});
  s.bind(10, next_change(impl_->db, "engines"));
  return run(impl_->db, s, "save engine '" + r.id + "'", path_);
}

Status Store::put_session(const SessionRow& r) {
  auto& s = HOSTFIT_STMT(
      "INSERT OR REPLACE INTO sessions(id, key, owner, subdomain, engine, state, message, record, "
      "ended, changed) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  s.bind(1, r.id).bind(2, r.key).bind(3, r.owner).bind(4, r.subdomain).bind(5, r.engine);
  s.bind(6, r.state).bind(7, r.message).bind(8, r.record).bind(9, int64_t{r.ended});
  s.bind(10, next_change(impl_->db, "sessions"));
  return run(impl_->db, s, "save session '" + r.id + "'", path_);
}

Result<std::vector<EngineRow>> Store::engines() {
  auto& s = HOSTFIT_STMT(
      "SELECT id, key, state, workload, port, socket, template, record, ended FROM engines "
      "ORDER BY changed");
  return collect_rows<EngineRow>(
      impl_->db, s,
      [](const Statement& row) -> EngineRow {
        return {row.text(0), row.text(1), row.text(2), row.text(3),    row.opt(4),
                row.text(5), row.text(6), row.text(7), row.i64(8) != 0};
      },
      "read engines", path_);
}

Result<std::vector<SessionRow>> Store::session_rows() {
  auto& s = HOSTFIT_STMT(
      "SELECT id, key, owner, subdomain, engine, state, message, record, ended FROM sessions "
      "ORDER BY changed");
  return collect_rows<SessionRow>(
      impl_->db, s,
      [](const Statement& row) -> SessionRow {
        return {row.text(0), row.text(1), row.text(2), row.text(3),    row.text(4),
                row.text(5), row.text(6), row.text(7), row.i64(8) != 0};
      },
      "read sessions", path_);
}

Status Store::prune_ended(int64_t keep) {
  return transaction([&](Store&) -> Status {
    auto& e = HOSTFIT_STMT(
        "DELETE FROM engines WHERE ended = 1 AND changed NOT IN "
        "(SELECT changed FROM engines WHERE ended = 1 ORDER BY changed DESC LIMIT ?1)");
    e.bind(1, keep);
    if (auto st = run(impl_->db, e, "prune engines", path_); !st) return st;
    auto& s = HOSTFIT_STMT(
        "DELETE FROM sessions WHERE ended = 1 AND changed NOT IN "
        "(SELECT changed FROM sessions WHERE ended = 1 ORDER BY changed DESC LIMIT ?1)");
    s.bind(1, keep);
    return run(impl_->db, s, "prune sessions", path_);
  });
}

Result<int64_t> Store::append_event(EventRow r) {
  auto& s = HOSTFIT_STMT(
      "INSERT INTO events(time, type, workload, message, data) VALUES(?1, ?2, ?3, ?4, ?5)");
  if (r.time.empty()) r.time = now_utc();
  if (r.data.empty()) r.data = "{}";
  s.bind(1, r.time).bind(2, r.type).bind(3, r.workload).bind(4, r.message).bind(5, r.data);
  if (auto st = run(impl_->db, s, "record event " + r.type, path_); !st) return fail(st.error());
  return sqlite3_last_insert_rowid(impl_->db);
}

Result<std::vector<EventRow>> Store::events_since(int64_t seq, int limit) {
  auto& s = HOSTFIT_STMT(
      "SELECT seq, time, type, workload, message, data FROM events WHERE seq > ?1 ORDER BY seq "
      "LIMIT ?2");
  s.bind(1, seq).bind(2, int64_t{limit});
  return collect_rows<EventRow>(
      impl_->db, s,
      [](const Statement& row) -> EventRow {
        return {row.i64(0), row.text(1), row.text(2), row.text(3), row.text(4), row.text(5)};
      },
      "read events", path_);
}

Result<int64_t> Store::last_event_seq() {
  // The AUTOINCREMENT high-water mark: larger than any seq ever given, even of deleted rows.
  auto& s =
      HOSTFIT_STMT("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)");
  const int rc = s.step();
  const int64_t v = rc == SQLITE_ROW ? s.i64(0) : 0;
  s.reset();
  if (rc != SQLITE_ROW) return fail(sqlite_error(impl_->db, "read events", path_));
  return v;
}

Result<std::string> Store::integrity_check() {
  auto& s = HOSTFIT_STMT("PRAGMA integrity_check");
  std::string out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    out += (out.empty() ? "" : "; ") + s.text(0);
  s.reset();
  if (rc != SQLITE_DONE) return fail(sqlite_error(impl_->db, "check integrity", path_));
  return out;
}

}  // namespace hostfit
