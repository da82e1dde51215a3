// The ledger: its file, its invariants, and place_and_hold/release_hold across threads
// (src/place/ledger.cc).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "files.h"
#include "place_fixtures.h"

namespace hostfit {
namespace {

using fixtures::slurp;
using fixtures::spit;
using ::testing::HasSubstr;
using testing_place::make_machine;
using testing_place::shape;

TEST(LedgerTest, SavedLedgerLoadsBackTheSameHolds) {
  fixtures::TempDir dir;
  const auto path = dir.path() / "sub" / "ledger.json";
  Ledger ledger;
  ASSERT_TRUE(ledger.hold("web", CpuSet::parse_list("0-7,192-199").value(), CpuSet::of({0})));
  ASSERT_TRUE(ledger.hold("db", CpuSet::range(8, 15), CpuSet::of({1, 2})));
  ASSERT_TRUE(ledger.save(path)) << "creates the directory";
  const auto loaded = Ledger::load(path);
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_EQ(loaded->holds().size(), 2u);
  EXPECT_EQ(loaded->holds()[0].owner, "web");
  EXPECT_EQ(loaded->holds()[1].mems.to_list(), "1-2");
  EXPECT_EQ(loaded->held(), ledger.held());
  // Only the ledger is left in the directory: the temporary file was renamed over it.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(path.parent_path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(LedgerTest, MissingFileIsAnEmptyLedger) {
  fixtures::TempDir dir;
  const auto loaded = Ledger::load(dir.path() / "none.json");
  ASSERT_TRUE(loaded);
  EXPECT_TRUE(loaded->holds().empty());
}

TEST(LedgerTest, CorruptFilesAreErrorsNamingTheFileAndStayUntouched) {
  fixtures::TempDir dir;
  const auto path = dir.path() / "ledger.json";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"version\": 1, \"holds\": [", "not valid JSON"},
      {"", "not valid JSON"},
      {"[]", "not a JSON object"},
      {"{\"version\": 7, \"holds\": []}", "version 7 is not supported"},
      {"{\"version\": 1}", "no \"holds\" list"},
      {R"({"version": 1, "holds": [{"owner": "a", "cpus": "3-1", "mems": "0"}]})", "descending"},
      {R"({"version": 1, "holds": [{"owner": "a", "cpus": 5, "mems": "0"}]})", "\"cpus\""},
      {R"({"version": 1, "holds": [{"owner": "a", "cpus": "0-3", "mems": "0"},
                                   {"owner": "b", "cpus": "3-4", "mems": "0"}]})",
       "CPUs 3 are already held by a"},
      {R"({"version": 1, "holds": [{"owner": "a", "cpus": "0", "mems": "0"},
                                   {"owner": "a", "cpus": "1", "mems": "0"}]})",
       "already holds"},
  };
  for (const auto& [text, why] : cases) {
    spit(path, text);
    const auto loaded = Ledger::load(path);
    ASSERT_FALSE(loaded) << text;
    EXPECT_EQ(loaded.error().kind, ErrorKind::kParse) << text;
    EXPECT_THAT(loaded.error().message, HasSubstr(path.string() + " is corrupt")) << text;
    EXPECT_THAT(loaded.error().message, HasSubstr(why)) << text;
    EXPECT_EQ(slurp(path), text);
  }
}

TEST(LedgerTest, PlaceAndHoldOnACorruptLedgerFailsAndLeavesItAlone) {
  fixtures::TempDir dir;
  const auto path = dir.path() / "ledger.json";
  spit(path, "garbage");
  PlacementRequest req;
  req.cpus = 4;
  const auto placed = place_and_hold(path, make_machine(shape(1, 2, 2, 2)).facts, req, "a");
  ASSERT_FALSE(placed);
  EXPECT_EQ(placed.error().kind, ErrorKind::kParse);
  EXPECT_EQ(slurp(path), "garbage");
  EXPECT_FALSE(release_hold(path, "a"));
  EXPECT_EQ(slurp(path), "garbage");
}

TEST(LedgerTest, NoCpuIsHeldTwiceAndOwnersAreUnique) {
  Ledger ledger;
  ASSERT_TRUE(ledger.hold("a", CpuSet::range(0, 3), CpuSet::of({0})));
  const auto twice = ledger.hold("b", CpuSet::range(3, 5), CpuSet::of({0}));
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().kind, ErrorKind::kResource);
  EXPECT_EQ(twice.error().message, "CPUs 3 are already held by a");
  const auto same_owner = ledger.hold("a", CpuSet::range(8, 9), CpuSet::of({0}));
  ASSERT_FALSE(same_owner);
  EXPECT_THAT(same_owner.error().message, HasSubstr("owner a already holds CPUs 0-3"));
  EXPECT_FALSE(ledger.hold("", CpuSet::of({9}), CpuSet{}));
  EXPECT_FALSE(ledger.hold("bad\nname", CpuSet::of({9}), CpuSet{}));
  EXPECT_EQ(ledger.holds().size(), 1u);
}

TEST(LedgerTest, ReleaseRestoresTheFreeSetAndUnknownOwnersAreNamed) {
  Ledger ledger;
  ASSERT_TRUE(ledger.hold("a", CpuSet::range(0, 3), CpuSet::of({0})));
  const CpuSet before = ledger.held();
  ASSERT_TRUE(ledger.hold("b", CpuSet::range(4, 7), CpuSet::of({0})));
  ASSERT_TRUE(ledger.release("b"));
  EXPECT_EQ(ledger.held(), before);
  const auto missing = ledger.release("zz");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(missing.error().message, "no hold for owner zz (holders: a)");
}

TEST(LedgerTest, DefaultPathIsRunHostfitUnlessTheEnvironmentSaysOtherwise) {
  const char* previous = std::getenv("HOSTFIT_LEDGER");
  const std::string saved = previous ? previous : "";
  ::unsetenv("HOSTFIT_LEDGER");
  EXPECT_EQ(default_ledger_path(), "/run/hostfit/ledger.json");
  ::setenv("HOSTFIT_LEDGER", "/tmp/x/ledger.json", 1);
  EXPECT_EQ(default_ledger_path(), "/tmp/x/ledger.json");
  if (previous) {
    ::setenv("HOSTFIT_LEDGER", saved.c_str(), 1);
  } else {
    ::unsetenv("HOSTFIT_LEDGER");
  }
}

TEST(LedgerTest, ConcurrentPlaceAndHoldNeverHandsOutACpuTwice) {
  // Each thread opens the lock file itself, so the flocks exclude each other as they would
  // between processes.
  fixtures::TempDir dir;
  const auto path = dir.path() / "ledger.json";
  const auto machine = make_machine(shape(2, 2, 8, 2));  // 64 CPUs
  const HostFacts& facts = machine.facts;
  constexpr int kWorkers = 8;
  std::vector<Result<Placement>> results(kWorkers, fail(ErrorKind::kInternal, "not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kWorkers; ++i) {
    threads.emplace_back([&, i] {
      PlacementRequest req;
      req.cpus = 8;
      results[i] = place_and_hold(path, facts, req, "w" + std::to_string(i));
    });
  }
  for (auto& t : threads)
    t.join();
  CpuSet all;
  int total = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r) << r.error().message;
    total += r->cpus.count();
    all |= r->cpus;
  }
  EXPECT_EQ(all.count(), total) << "some CPU was placed twice";
  const auto ledger = Ledger::load(path);
  ASSERT_TRUE(ledger);
  EXPECT_EQ(ledger->holds().size(), static_cast<size_t>(kWorkers));
  EXPECT_EQ(ledger->held(), all);
  ASSERT_TRUE(release_hold(path, "w3"));
  EXPECT_EQ(Ledger::load(path)->held(), all - results[3]->cpus);
}

}  // namespace
}  // namespace hostfit
