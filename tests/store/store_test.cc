// The store on a real file: schema and migration, transactions that commit or roll back as one,
// a sequence that only grows, and a writer killed with SIGKILL in the middle of its writes.
#include "hostfit/store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

namespace hostfit {
namespace {

EventRow event_of(std::string type, std::string workload, std::string message) {
  EventRow e;
  e.type = std::move(type);
  e.workload = std::move(workload);
  e.message = std::move(message);
  return e;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("hostfit-store-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path db() const { return dir_ / "hostfit.db"; }
  std::filesystem::path dir_;
};

TEST_F(StoreTest, OpensInWalModeAtTheCurrentSchemaAndKeepsItsDataAcrossReopens) {
  {
    auto store = Store::open(db());
    ASSERT_TRUE(store) << store.error().message;
    EXPECT_EQ((*store)->schema_version(), Store::kSchemaVersion);
    ASSERT_TRUE((*store)->put_workload({"etl", R"({"name":"etl"})", "api", true, 0, ""}));
  }
  EXPECT_TRUE(std::filesystem::exists(dir_ / "hostfit.db-wal") || std::filesystem::exists(db()));
  auto again = Store::open(db());
  ASSERT_TRUE(again) << again.error().message;
  auto rows = (*again)->workloads();
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].name, "etl");
  EXPECT_TRUE((*rows)[0].wanted);
  std::ifstream header(db(), std::ios::binary);
  char magic[16] = {};
  header.read(magic, 16);
  EXPECT_EQ(std::string(magic, 15), "SQLite format 3");
}

TEST_F(StoreTest, RefusesAFileThatIsNotADatabaseAndANewerSchema) {
  std::filesystem::create_directories(dir_);
  std::ofstream(db()) << "this is not sqlite, it is a text file of some length...............";
  auto bad = Store::open(db());
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find(db().string()), std::string::npos) << bad.error().message;

  std::filesystem::remove(db());
  {
    auto store = Store::open(db());
    ASSERT_TRUE(store);
  }
  // A future hostfit's schema: this one must not touch it.
  ASSERT_EQ(std::system(("sqlite3 " + db().string() +
                         " 'PRAGMA user_version = 99' 2>/dev/null || "
                         "python3 -c \"import sqlite3; c = sqlite3.connect('" +
                         db().string() + "'); c.execute('PRAGMA user_version = 99'); c.commit()\"")
                            .c_str()),
            0);
  auto newer = Store::open(db());
  ASSERT_FALSE(newer);
  EXPECT_NE(newer.error().message.find("schema version 99"), std::string::npos)
      << newer.error().message;
}

TEST_F(StoreTest, AVerdictAndTheHoldReleaseCommitTogetherOrNotAtAll) {
  auto store = Store::open(db());
  ASSERT_TRUE(store);
  Store& s = **store;
  ASSERT_TRUE(s.hold({"etl", "0-1", "0"}));
  RunRow run;
  run.workload = "etl";
  run.state = "RUNNING";
  auto id = s.insert_run(run);
  ASSERT_TRUE(id);
  run.id = *id;

  // A failure after the verdict was written rolls the verdict back with it.
  run.state = "KILLED";
  run.reason = "OOM";
  auto failed = s.transaction([&](Store& t) -> Status {
    if (auto st = t.finish_run(run); !st) return st;
    if (auto st = t.release_hold("etl"); !st) return st;
    return fail(ErrorKind::kIo, "simulated failure");
  });
  ASSERT_FALSE(failed);
  EXPECT_EQ(s.holds()->size(), 1u);
  EXPECT_EQ(s.open_runs()->size(), 1u);

  ASSERT_TRUE(s.transaction([&](Store& t) -> Status {
    if (auto st = t.finish_run(run); !st) return st;
    return t.release_hold("etl");
  }));
  EXPECT_TRUE(s.holds()->empty());
  EXPECT_TRUE(s.open_runs()->empty());
  auto runs = s.runs("etl");
  ASSERT_TRUE(runs);
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].state, "KILLED");
  EXPECT_EQ((*runs)[0].reason, "OOM");
}

// A store written by a hostfit of schema 1 (before engines and sessions were kept) gains the two
// tables and keeps what it had.
TEST_F(StoreTest, ASchemaOneStoreMigratesToEnginesAndSessionsKeepingItsRows) {
  {
    auto store = Store::open(db());
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->put_workload({"etl", R"({"name":"etl"})", "api", true, 0, ""}));
  }
  ASSERT_EQ(std::system(("python3 -c \"import sqlite3; c = sqlite3.connect('" + db().string() +
                         "'); c.executescript('DROP TABLE engines; DROP TABLE sessions; "
                         "PRAGMA user_version = 1;'); c.commit()\"")
                            .c_str()),
            0);
  auto store = Store::open(db());
  ASSERT_TRUE(store) << store.error().message;
  Store& s = **store;
  EXPECT_EQ(s.schema_version(), 2);
  EXPECT_EQ(s.workloads()->size(), 1u);
  ASSERT_TRUE(s.put_engine({"pg-1", "pg/user/alice/default", "READY", "engine.pg-1", 20001, "",
                            "{}", R"({"id":"pg-1"})", false}));
  ASSERT_TRUE(s.put_session({"s-1", "pg/user/alice/default", "alice", "default", "pg-1", "OPEN", "",
                             R"({"id":"s-1"})", false}));
  auto engines = s.engines();
  ASSERT_TRUE(engines);
  ASSERT_EQ(engines->size(), 1u);
  EXPECT_EQ((*engines)[0].port, 20001);
  EXPECT_EQ((*engines)[0].workload, "engine.pg-1");
  auto sessions = s.session_rows();
  ASSERT_TRUE(sessions);
  ASSERT_EQ(sessions->size(), 1u);
  EXPECT_EQ((*sessions)[0].engine, "pg-1");
}

// Rows come back in the order they last changed; pruning keeps the newest ended ones and every
// live one.
TEST_F(StoreTest, EndedSessionsArePrunedOldestFirstAndLiveOnesStay) {
  auto store = Store::open(db());
  ASSERT_TRUE(store);
  Store& s = **store;
  ASSERT_TRUE(
      s.put_session({"live", "k/user/a/default", "a", "default", "e", "OPEN", "", "{}", false}));
  for (const char* id : {"old", "mid", "new"})
    ASSERT_TRUE(
        s.put_session({id, "k/user/a/default", "a", "default", "e", "FAILED", "oom", "{}", true}));
  // "live" changes last: it comes back last.
  ASSERT_TRUE(
      s.put_session({"live", "k/user/a/default", "a", "default", "e", "OPEN", "", "{}", false}));
  ASSERT_TRUE(s.prune_ended(2));
  auto rows = s.session_rows();
  ASSERT_TRUE(rows);
  std::vector<std::string> ids;
  for (const auto& r : *rows)
    ids.push_back(r.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"mid", "new", "live"}));
}

TEST_F(StoreTest, ASecondHoldOfOneOwnerIsRefused) {
  auto store = Store::open(db());
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->hold({"a", "0", ""}));
  auto again = (*store)->hold({"a", "1", ""});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind, ErrorKind::kResource);
}

TEST_F(StoreTest, EventSequenceOnlyGrowsEvenAfterARollback) {
  auto store = Store::open(db());
  ASSERT_TRUE(store);
  Store& s = **store;
  auto first = s.append_event(event_of("a", "", "one"));
  ASSERT_TRUE(first);
  (void)s.transaction([&](Store& t) -> Status {
    (void)t.append_event(event_of("b", "", "rolled back"));
    return fail(ErrorKind::kIo, "no");
  });
  auto second = s.append_event(event_of("c", "", "two"));
  ASSERT_TRUE(second);
  EXPECT_GT(*second, *first);
  auto events = s.events_since(0);
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].type, "a");
  EXPECT_EQ((*events)[1].type, "c");
  EXPECT_EQ((*events)[1].data, "{}");
  EXPECT_EQ(s.events_since(*first)->size(), 1u);
  EXPECT_EQ(*s.last_event_seq(), *second);
}

// A child process writes verdicts (run + hold release + event, one transaction each) as fast as
// it can; it is killed with SIGKILL in the middle. The store must open, pass integrity_check, and
// every transaction must be whole: a run marked ended has no hold left and has its event.
TEST_F(StoreTest, SurvivesAWriterKilledMidTransaction) {
  {
    auto store = Store::open(db());
    ASSERT_TRUE(store);
  }
  for (int round = 0; round < 5; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      auto store = Store::open(db());
      if (!store) ::_exit(3);
      for (int i = 0;; ++i) {
        const std::string owner = "w" + std::to_string(round) + "-" + std::to_string(i);
        (void)(*store)->transaction([&](Store& t) -> Status {
          if (auto st = t.hold({owner, "0", ""}); !st) return st;
          RunRow run;
          run.workload = owner;
          run.state = "RUNNING";
          auto id = t.insert_run(run);
          if (!id) return fail(id.error());
          run.id = *id;
          run.state = "EXITED";
          run.exit_code = 0;
          if (auto st = t.finish_run(run); !st) return st;
          if (auto st = t.release_hold(owner); !st) return st;
          auto e = t.append_event(event_of("run.ended", owner, "x"));
          return e ? Status{} : fail(e.error());
        });
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + 37 * round));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer ended on its own: " << status;

    auto store = Store::open(db());
    ASSERT_TRUE(store) << store.error().message;
    auto check = (*store)->integrity_check();
    ASSERT_TRUE(check);
    EXPECT_EQ(*check, "ok");
    EXPECT_TRUE((*store)->holds()->empty()) << "a hold outlived its verdict";
    EXPECT_TRUE((*store)->open_runs()->empty()) << "a run without its verdict";
    auto events = (*store)->events_since(0, 1 << 30);
    ASSERT_TRUE(events);
    EXPECT_GT(events->size(), 0u);
    size_t ended = 0;
    for (const auto& e : *events) {
      if (e.type == "run.ended") ++ended;
      EXPECT_EQ((*store)->runs(e.workload)->size(), 1u) << e.workload;
    }
    EXPECT_EQ(ended, events->size());
  }
}

}  // namespace
}  // namespace hostfit
