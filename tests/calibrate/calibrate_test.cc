// `hostfit calibrate` on this machine's V8 (Debian's libnode): real isolates in a bounded child.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using fixtures::run_command;

bool v8_built() {
  return std::filesystem::exists(std::filesystem::path(HOSTFIT_BIN).parent_path() /
                                 "hostfit-v8-instances");
}

#define REQUIRE_V8()                                                                         \
  if (!v8_built())                                                                           \
  GTEST_SKIP() << "hostfit-v8-instances was not built: V8 (libnode-dev) or wat2wasm (wabt) " \
                  "is missing; run scripts/install-deps"

nlohmann::json calibrate_json(std::vector<std::string> args) {
  std::vector<std::string> argv = {HOSTFIT_BIN, "calibrate", "--runtime", "v8", "-o", "json"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = run_command(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

TEST(CalibrateTest, TwoRunsAgreeWithinTenPercentOnMapsPerInstance) {
  REQUIRE_V8();
  const auto a = calibrate_json({"--plugins", "4", "--instances", "32"});
  const auto b = calibrate_json({"--plugins", "4", "--instances", "32"});
  const double ma = a["per_instance"]["maps"]["per_instance"];
  const double mb = b["per_instance"]["maps"]["per_instance"];
  EXPECT_GT(ma, 1.0);
  EXPECT_LE(std::abs(ma - mb), 0.1 * std::max(ma, mb)) << ma << " vs " << mb;
}

TEST(CalibrateTest, ReportsEveryCostWithItsSpreadAndTheV8Version) {
  REQUIRE_V8();
  const auto j = calibrate_json({"--plugins", "2", "--instances", "8"});
  EXPECT_TRUE(j["runtime_version"].get<std::string>().starts_with("10.")) << j["runtime_version"];
  EXPECT_EQ(j["instances"], 8);
  EXPECT_EQ(j["failed"], false);
  ASSERT_EQ(j["samples"].size(), 5u);  // none, then 2, 4, 6, 8
  EXPECT_EQ(j["samples"][0]["instances"], 0);
  for (const char* cost : {"maps", "vm_size_bytes", "vm_rss_bytes", "pss_bytes", "create_ms"}) {
    const auto& c = j["per_instance"][cost];
    for (const char* k : {"per_instance", "min", "median", "max"}) {
      ASSERT_TRUE(c[k].is_number()) << cost << "." << k;
    }
    EXPECT_LE(c["min"].get<double>(), c["median"].get<double>()) << cost;
    EXPECT_LE(c["median"].get<double>(), c["max"].get<double>()) << cost;
  }
  // Each instance holds a wasm32 memory behind V8's guard region: gigabytes of address space.
  EXPECT_GT(j["per_instance"]["vm_size_bytes"]["per_instance"].get<double>(), 4.0 * (1 << 30));
  EXPECT_GT(j["per_instance"]["vm_rss_bytes"]["per_instance"].get<double>(), 0.0);
  const auto& p = j["profile"];
  EXPECT_EQ(p["measured"], true);
  EXPECT_EQ(p["version"], j["runtime_version"]);
  EXPECT_GT(p["base_maps"].get<uint64_t>(), 0u);
  EXPECT_NE(p["source"].get<std::string>().find("hostfit calibrate --runtime v8 --plugins 2"),
            std::string::npos);
}

TEST(CalibrateTest, PlanTakesTheCalibratedProfile) {
  REQUIRE_V8();
  fixtures::TempDir dir;
  const auto r =
      run_command({HOSTFIT_BIN, "calibrate", "--runtime", "v8", "--instances", "8", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto file = dir.path() / "v8.json";
  std::ofstream(file) << r.out;
  const auto measured = nlohmann::json::parse(r.out)["profile"];
  const auto plan = run_command(
      {HOSTFIT_BIN, "plan", "--profile", file.string(), "--plugins", "8", "-o", "json"});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  const auto j = nlohmann::json::parse(plan.out);
  EXPECT_EQ(j["runtime"]["maps"], measured["maps"]);
  EXPECT_EQ(j["runtime"]["reserve_bytes"], measured["reserve_bytes"]);
  EXPECT_EQ(j["budgets"]["mappings"]["per_instance"], measured["maps"]);
}

TEST(CalibrateTest, SteadyStateCostsAtLeastWhatAFreshInstanceCosts) {
  REQUIRE_V8();
  const auto fresh = calibrate_json({"--plugins", "4", "--instances", "8", "--requests", "0"});
  const auto steady = calibrate_json({"--plugins", "4", "--instances", "8"});
  EXPECT_EQ(fresh["requests"], 0);
  EXPECT_EQ(steady["requests"], 100000);  // the default: a gateway's steady state
  EXPECT_TRUE(steady["js_state"].is_null());
  const double cold = fresh["per_instance"]["maps"]["per_instance"];
  const double warm = steady["per_instance"]["maps"]["per_instance"];
  EXPECT_GT(cold, 1.0);
  // Serving requests only adds mappings (tiered-up code, a grown new space), never removes any.
  EXPECT_GE(warm, cold);
  EXPECT_GE(steady["profile"]["maps"].get<uint64_t>(), fresh["profile"]["maps"].get<uint64_t>());
  EXPECT_NE(steady["profile"]["source"].get<std::string>().find("--requests 100000"),
            std::string::npos)
      << steady["profile"]["source"];
}

TEST(CalibrateTest, StateKeptInJavaScriptIsMeasuredOnTopOfTheWasmInstance) {
  REQUIRE_V8();
  const auto wasm = calibrate_json({"--plugins", "4", "--instances", "8", "--requests", "20000"});
  const auto js = calibrate_json(
      {"--plugins", "4", "--instances", "8", "--requests", "20000", "--js-state", "1000"});
  EXPECT_EQ(js["js_state"], 1000);
  // A thousand header maps are megabytes of JavaScript heap per isolate: more resident memory, and
  // in this V8 (no pointer-compression cage) more mappings, one per heap page.
  EXPECT_GT(js["per_instance"]["vm_rss_bytes"]["per_instance"].get<double>(),
            wasm["per_instance"]["vm_rss_bytes"]["per_instance"].get<double>() + (1 << 20));
  EXPECT_GT(js["per_instance"]["maps"]["per_instance"].get<double>(),
            wasm["per_instance"]["maps"]["per_instance"].get<double>());
  EXPECT_NE(js["command"].get<std::string>().find("--js-state 1000"), std::string::npos);
}

TEST(CalibrateTest, BadRequestCountsAreUsageErrorsNamingTheValue) {
  for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--requests", "-1"}, {"--requests", "lots"}, {"--js-state", "1e3"}}) {
    const auto r = run_command({HOSTFIT_BIN, "calibrate", flag, value});
    EXPECT_EQ(r.exit_code, 2) << flag << " " << value << ": " << r.err;
    EXPECT_NE(r.err.find(flag + " '" + value + "'"), std::string::npos) << r.err;
  }
}

TEST(CalibrateTest, RuntimesThatCannotBeMeasuredHereSaySoAndExitTwo) {
  const auto r = run_command({HOSTFIT_BIN, "calibrate", "--runtime", "wasmtime"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(r.err.starts_with("hostfit: 'wasmtime' cannot be measured here (accepted: v8)"))
      << r.err;
  EXPECT_NE(r.err.find("documentation"), std::string::npos) << r.err;
  const auto zero = run_command({HOSTFIT_BIN, "calibrate", "--instances", "0"});
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_NE(zero.err.find("'0'"), std::string::npos) << zero.err;
}

TEST(CalibrateTest, AModuleV8RejectsIsAUsageErrorInV8sWords) {
  REQUIRE_V8();
  fixtures::TempDir dir;
  const auto bad = dir.path() / "bad.wasm";
  std::ofstream(bad) << "not wasm";
  const auto r = run_command({HOSTFIT_BIN, "calibrate", "--module", bad.string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(r.err.starts_with("hostfit: the module " + bad.string() + " cannot be instantiated"))
      << r.err;
  EXPECT_NE(r.err.find("CompileError"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace hostfit
