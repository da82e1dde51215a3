// The ledger's files where others can reach them (issue 17 items 1-4, 9, 10, 20): symlinks and
// FIFOs planted beside it, modes, a lock held by someone else, holds made by `run`, and size.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "files.h"
#include "place_fixtures.h"

namespace hostfit {
namespace {

using fixtures::slurp;
using fixtures::spit;
using ::testing::HasSubstr;
using testing_place::make_machine;
using testing_place::shape;

mode_t mode_of(const std::filesystem::path& p) {
  struct stat st {};
  ::lstat(p.c_str(), &st);
  return st.st_mode & 07777;
}

Ledger one_hold() {
  Ledger ledger;
  (void)ledger.hold("web", CpuSet::range(0, 1), CpuSet::of({0}));
  return ledger;
}

PlacementRequest two_cpus() {
  PlacementRequest req;
  req.cpus = 2;
  return req;
}

// Item 1: the temporary file was "ledger.json.tmp.PID", opened through whatever was there.
TEST(LedgerFilesTest, APlantedTemporaryLinkIsNeverWrittenThrough) {
  fixtures::TempDir dir;
  const auto victim = dir.path() / "victim";
  spit(victim, "secret\n");
  const auto path = dir.path() / "ledger.json";
  std::filesystem::create_symlink(victim,
                                  dir.path() / ("ledger.json.tmp." + std::to_string(::getpid())));
  ASSERT_TRUE(one_hold().save(path));
  EXPECT_EQ(slurp(victim), "secret\n");
  ASSERT_TRUE(Ledger::load(path));
  EXPECT_EQ(Ledger::load(path)->holds().size(), 1u);
}

// Item 1: the lock file was opened (and created) through a planted link.
TEST(LedgerFilesTest, APlantedLockLinkIsRefusedAndItsTargetNotCreated) {
  fixtures::TempDir dir;
  const auto target = dir.path() / "would-be-created";
  std::filesystem::create_symlink(target, dir.path() / "ledger.json.lock");
  const auto lock = LedgerLock::acquire(dir.path() / "ledger.json");
  ASSERT_FALSE(lock);
  EXPECT_THAT(lock.error().message, HasSubstr("is a symbolic link"));
  EXPECT_FALSE(std::filesystem::exists(target));
}

// Item 1: a directory anyone may write to, without the sticky bit, lets others swap the ledger.
TEST(LedgerFilesTest, AWorldWritableDirectoryWithoutStickyBitIsRefused) {
  fixtures::TempDir dir;
  const auto open_dir = dir.path() / "open";
  std::filesystem::create_directories(open_dir);
  ASSERT_EQ(::chmod(open_dir.c_str(), 0777), 0);
  const auto saved = one_hold().save(open_dir / "ledger.json");
  ASSERT_FALSE(saved);
  EXPECT_EQ(saved.error().kind, ErrorKind::kPermission);
  EXPECT_THAT(saved.error().message, HasSubstr("no sticky bit"));
  EXPECT_FALSE(std::filesystem::exists(open_dir / "ledger.json"));
  EXPECT_FALSE(place_and_hold(open_dir / "ledger.json", make_machine(shape(1, 1, 2, 1)).facts,
                              two_cpus(), "a"));
  // /tmp's way (sticky: only a file's owner may replace it) is fine.
  ASSERT_EQ(::chmod(open_dir.c_str(), 01777), 0);
  EXPECT_TRUE(one_hold().save(open_dir / "ledger.json"));
}

// Item 2: a save replaced the link with a regular file, so the link's name and its target held
// the same CPUs twice.
TEST(LedgerFilesTest, ASymlinkedLedgerIsRefusedAndStaysALink) {
  fixtures::TempDir dir;
  const auto real = dir.path() / "real.json";
  const auto link = dir.path() / "link.json";
  const auto facts = make_machine(shape(1, 1, 4, 1)).facts;
  ASSERT_TRUE(place_and_hold(real, facts, two_cpus(), "a"));
  const std::string before = slurp(real);
  std::filesystem::create_symlink(real, link);
  const auto placed = place_and_hold(link, facts, two_cpus(), "b");
  ASSERT_FALSE(placed);
  EXPECT_THAT(placed.error().message, HasSubstr("symbolic link"));
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  EXPECT_EQ(slurp(real), before);
  EXPECT_FALSE(Ledger::load(link));
  EXPECT_FALSE(one_hold().save(link));
  EXPECT_TRUE(std::filesystem::is_symlink(link));
}

// Item 2: a hard link is two names for one ledger too; a save would split them.
TEST(LedgerFilesTest, AHardLinkedLedgerIsRefused) {
  fixtures::TempDir dir;
  const auto path = dir.path() / "ledger.json";
  ASSERT_TRUE(one_hold().save(path));
  std::filesystem::create_hard_link(path, dir.path() / "other.json");
  const auto loaded = Ledger::load(path);
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr("2 hard links"));
  EXPECT_FALSE(one_hold().save(path));
}

// Item 3: a FIFO as the ledger hung `place` in open(2); /dev/zero read until bad_alloc.
TEST(LedgerFilesTest, AFifoOrADeviceAsTheLedgerIsRefusedAtOnce) {
  fixtures::TempDir dir;
  const auto fifo = dir.path() / "fifo.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto facts = make_machine(shape(1, 1, 4, 1)).facts;
  for (const std::filesystem::path& path : {fifo, std::filesystem::path("/dev/zero")}) {
    const auto loaded = Ledger::load(path);
    ASSERT_FALSE(loaded) << path;
    EXPECT_THAT(loaded.error().message, HasSubstr("not a regular file")) << path;
  }
  EXPECT_FALSE(place_and_hold(fifo, facts, two_cpus(), "a"));
  EXPECT_FALSE(release_hold(fifo, "a"));
}

// Item 3: the read is capped as Sysroot's is; a huge file is an error, not a huge allocation.
TEST(LedgerFilesTest, ALedgerLargerThanTheCapIsRefused) {
  fixtures::TempDir dir;
  const auto path = dir.path() / "ledger.json";
  spit(path, "{}");
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(Ledger::kMaxLedgerBytes) + 1),
            0);  // sparse
  const auto loaded = Ledger::load(path);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().kind, ErrorKind::kResource);
  EXPECT_THAT(loaded.error().message, HasSubstr("larger than 256 MiB"));
}

// Item 4: new ledgers were 0644 in a 0755 directory, and a 0600 ledger became 0644 on a save.
TEST(LedgerFilesTest, NewStateIsOwnerOnlyAndASaveKeepsTheMode) {
  fixtures::TempDir dir;
  const auto path = dir.path() / "run" / "hostfit" / "ledger.json";
  const mode_t old_umask = ::umask(022);
  ASSERT_TRUE(place_and_hold(path, make_machine(shape(1, 1, 4, 1)).facts, two_cpus(), "a"));
  EXPECT_EQ(mode_of(path.parent_path()), 0700u);
  EXPECT_EQ(mode_of(path), 0600u);
  EXPECT_EQ(mode_of(path.string() + ".lock"), 0600u);
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  ASSERT_TRUE(release_hold(path, "a"));
  EXPECT_EQ(mode_of(path), 0640u);
  ::umask(old_umask);
}

// Item 10: a held lock made every later hostfit wait forever.
TEST(LedgerFilesTest, AHeldLockIsWaitedForABoundedTime) {
  fixtures::TempDir dir;
  const auto path = dir.path() / "ledger.json";
  // flock locks belong to open files: this one excludes the acquire below like another process.
  auto held = LedgerLock::acquire(path);
  ASSERT_TRUE(held);
  const auto facts = make_machine(shape(1, 1, 4, 1)).facts;
  const auto placed =
      place_and_hold(path, facts, two_cpus(), "a", {}, {}, std::chrono::milliseconds(100));
  ASSERT_FALSE(placed);
  EXPECT_EQ(placed.error().kind, ErrorKind::kResource);
  EXPECT_THAT(placed.error().message, HasSubstr("is held by another process for more than 100 ms"));
  const auto stopped = place_and_hold(path, facts, two_cpus(), "a", {}, {}, std::chrono::hours(1),
                                      [] { return true; });
  ASSERT_FALSE(stopped);
  EXPECT_THAT(stopped.error().message, HasSubstr("stopped while waiting for the ledger lock"));
  EXPECT_FALSE(std::filesystem::exists(path)) << "nothing was written";
}

// Item 9: a run's hold carries its group, and only such a hold is released for that group.
TEST(LedgerFilesTest, OnlyAHoldMadeForTheGroupIsReleasedForIt) {
  fixtures::TempDir dir;
  const auto path = dir.path() / "ledger.json";
  const auto facts = make_machine(shape(1, 1, 4, 1)).facts;
  ASSERT_TRUE(place_and_hold(path, facts, two_cpus(), "web"));  // as `hostfit place --owner web`
  ASSERT_TRUE(place_and_hold(path, facts, two_cpus(), "job", {}, "/sys/fs/cgroup/cpu/hostfit/job"));
  EXPECT_EQ(Ledger::load(path)->find("job")->group, "/sys/fs/cgroup/cpu/hostfit/job");
  EXPECT_EQ(*release_group_hold(path, "web", "/sys/fs/cgroup/cpu/hostfit/web"), false);
  EXPECT_EQ(*release_group_hold(path, "job", "/sys/fs/cgroup/cpu/elsewhere/job"), false);
  ASSERT_EQ(Ledger::load(path)->holds().size(), 2u);
  EXPECT_EQ(*release_group_hold(path, "job", "/sys/fs/cgroup/cpu/hostfit/job"), true);
  const auto left = Ledger::load(path);
  ASSERT_EQ(left->holds().size(), 1u);
  EXPECT_EQ(left->holds()[0].owner, "web");
}

// Item 20: loading checked every hold against every other one (20k holds: 1.2 s). The linear
// load must still refuse exactly what hold() refuses, naming the same conflict.
TEST(LedgerFilesTest, ALargeLedgerLoadsWholeAndConflictsAreStillNamed) {
  nlohmann::json holds = nlohmann::json::array();
  constexpr int kHolds = 20000;
  for (int i = 0; i < kHolds; ++i) {
    holds.push_back({{"owner", "w" + std::to_string(i)},
                     {"cpus", std::to_string(i)},
                     {"mems", "0"},
                     {"group", i % 2 ? "/g/w" + std::to_string(i) : ""}});
  }
  auto ledger = Ledger::from_json({{"version", 1}, {"holds", holds}});
  ASSERT_TRUE(ledger) << ledger.error().message;
  EXPECT_EQ(ledger->holds().size(), static_cast<size_t>(kHolds));
  EXPECT_EQ(ledger->held(), CpuSet::range(0, kHolds - 1));
  EXPECT_EQ(ledger->holds()[7].group, "/g/w7");
  EXPECT_EQ(ledger->to_json()["holds"][7]["group"], "/g/w7");
  EXPECT_FALSE(ledger->to_json()["holds"][6].contains("group"));

  holds.push_back({{"owner", "late"}, {"cpus", "19990-20001"}, {"mems", "0"}});
  auto overlap = Ledger::from_json({{"version", 1}, {"holds", holds}});
  ASSERT_FALSE(overlap);
  EXPECT_THAT(overlap.error().message,
              HasSubstr("hold 20000: CPUs 19990 are already held by w19990"));
  holds.back() = {{"owner", "w5"}, {"cpus", "30000"}, {"mems", "0"}};
  auto duplicate = Ledger::from_json({{"version", 1}, {"holds", holds}});
  ASSERT_FALSE(duplicate);
  EXPECT_THAT(duplicate.error().message, HasSubstr("owner w5 already holds CPUs 5"));
}

}  // namespace
}  // namespace hostfit
