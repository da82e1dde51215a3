// `hostfit place` as a person runs it (src/cli/place_cmd.cc): JSON keys, the ledger file, --show,
// --release, and bad input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "command.h"
#include "place_fixtures.h"

namespace hostfit {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class PlaceCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One socket of 4 nodes x 8 cores x 2 threads (64 CPUs): small enough to generate per test.
    machine_ =
        new testing_place::Machine(testing_place::make_machine(testing_place::shape(1, 4, 8, 2)));
  }
  static void TearDownTestSuite() {
    delete machine_;
    machine_ = nullptr;
  }

  fixtures::CommandResult place(std::vector<std::string> args,
                                const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {HOSTFIT_BIN, "place", "--sysroot",
                                     machine_->dir->path().string()};
    if (!env_only_) {
      argv.push_back("--ledger");
      argv.push_back(ledger_.string());
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return fixtures::run_command(argv, env);
  }

  std::string ledger_text() const {
    std::ifstream in(ledger_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  static testing_place::Machine* machine_;
  fixtures::TempDir dir_;
  std::filesystem::path ledger_ = dir_.path() / "ledger.json";
  bool env_only_ = false;
};

testing_place::Machine* PlaceCliTest::machine_ = nullptr;

TEST_F(PlaceCliTest, JsonPlacementHasTheDocumentedKeysAndIsRecorded) {
  const auto r = place({"--cpus", "48", "--policy", "balanced", "--owner", "db", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["cpus"], "0-23,32-55");
  EXPECT_EQ(j["mems"], "0-2");
  EXPECT_EQ(j["nodes"], nlohmann::json::array({0, 1, 2}));
  EXPECT_EQ(j["per_node"], nlohmann::json({{"0", 16}, {"1", 16}, {"2", 16}}));
  EXPECT_EQ(j["distance_score"], 48);
  EXPECT_EQ(j["recorded"], true);
  EXPECT_THAT(ledger_text(), HasSubstr("\"owner\": \"db\""));

  const auto second = place({"--cpus", "16", "--owner", "web", "-o", "json"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(nlohmann::json::parse(second.out)["nodes"], nlohmann::json::array({3}));
}

TEST_F(PlaceCliTest, WithoutAnOwnerNothingIsRecorded) {
  const auto r = place({"--cpus", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("not recorded (no --owner)"));
  EXPECT_FALSE(std::filesystem::exists(ledger_));
}

TEST_F(PlaceCliTest, ShowListsHoldersPerNodeAndReleaseFreesThem) {
  ASSERT_EQ(place({"--cpus", "16", "--owner", "cache"}).exit_code, 0);
  const auto shown = place({"--show", "-o", "json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  const auto j = nlohmann::json::parse(shown.out);
  EXPECT_EQ(j["holds"][0]["owner"], "cache");
  EXPECT_EQ(j["nodes"][0]["holders"]["cache"], 16);
  EXPECT_EQ(j["nodes"][0]["free"], 0);
  EXPECT_EQ(j["nodes"][1]["free"], 16);
  const auto table = place({"--show"});
  EXPECT_THAT(table.out, HasSubstr("cache:16"));

  const auto released = place({"--release", "cache"});
  ASSERT_EQ(released.exit_code, 0) << released.err;
  EXPECT_THAT(released.out, HasSubstr("released CPUs 0-7,32-39"));
  const auto after = nlohmann::json::parse(place({"--show", "-o", "json"}).out);
  EXPECT_TRUE(after["holds"].empty());
  const auto again = place({"--release", "cache"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("no hold for owner cache"));
}

TEST_F(PlaceCliTest, LedgerPathComesFromTheEnvironmentWithoutLedgerFlag) {
  env_only_ = true;
  const auto r = place({"--cpus", "2", "--owner", "e"}, {"HOSTFIT_LEDGER=" + ledger_.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(ledger_text(), HasSubstr("\"owner\": \"e\""));
}

TEST_F(PlaceCliTest, BadInputIsAOneLineErrorWithExitCode2) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--cpus", "0"}, "--cpus must be at least 1, got 0"},
      {{"--cpus", "4", "--policy", "roundrobin"}, "unknown policy 'roundrobin'"},
      {{"--cpus", "4", "--policy", "nodes:3,99"}, "NUMA node 99 does not exist (nodes: 0-3)"},
      {{"--cpus", "4", "--smt", "half"}, "unknown --smt 'half'"},
      {{"--cpus", "4", "--mems", "far"}, "invalid --mems 'far'"},
      {{"--cpus", "many"}, "--cpus"},
      {{}, "place needs --cpus N or --cores N"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = place(args);
    EXPECT_EQ(r.exit_code, 2) << args.size() << " " << r.err;
    EXPECT_THAT(r.err, StartsWith("hostfit: ")) << r.err;
    EXPECT_THAT(r.err, HasSubstr(message));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST_F(PlaceCliTest, MoreThanFreeIsARuntimeFailureSayingWhatIsFree) {
  const auto r = place({"--cpus", "80"});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_EQ(r.err,
            "hostfit: cannot place 80 CPUs: 64 free (node 0: 16, node 1: 16, node 2: 16, node 3: "
            "16)\n");
}

TEST_F(PlaceCliTest, CorruptLedgerIsAnErrorAndLeftUntouched) {
  {
    std::ofstream out(ledger_);
    out << "{\"version\": 1, \"holds\": [ {\"owner\": ";
  }
  const std::string before = ledger_text();
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--cpus", "4", "--owner", "x"},
        std::vector<std::string>{"--release", "x"}, std::vector<std::string>{"--show"}}) {
    const auto r = place(args);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr(ledger_.string() + " is corrupt"));
    EXPECT_EQ(ledger_text(), before);
  }
}

}  // namespace
}  // namespace hostfit
