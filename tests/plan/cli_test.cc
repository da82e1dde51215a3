// `hostfit plan` end to end: generated machine trees, the real binary, JSON, env and exit codes.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using fixtures::CgroupLevel;
using fixtures::run_command;
using fixtures::Shape;

// One node with 4 GiB, cgroup v2, the process in /l0, no limits. The incident host has 255 cores;
// scenarios where the CPU count only needs to exceed the answer use 32, because a 255-CPU tree
// takes seconds to write.
Shape host(int cpus) {
  Shape s;
  s.cores_per_node = cpus;
  s.cgroup_chain = {CgroupLevel{.name = "l0"}};
  return s;
}
Shape host255() {
  return host(255);
}

struct Run {
  fixtures::TempDir dir;
  fixtures::CommandResult result;
};

std::unique_ptr<Run> plan(const Shape& shape, std::vector<std::string> args) {
  auto run = std::make_unique<Run>();
  const auto written = fixtures::write_sysroot(run->dir.path(), shape);
  EXPECT_TRUE(written) << written.error().message;
  std::vector<std::string> argv = {HOSTFIT_BIN, "plan", "--sysroot", run->dir.path().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  run->result = run_command(argv);
  return run;
}

nlohmann::json plan_json(const Shape& shape, std::vector<std::string> args) {
  args.insert(args.end(), {"-o", "json"});
  const auto run = plan(shape, args);
  EXPECT_EQ(run->result.exit_code, 0) << run->result.err;
  return nlohmann::json::parse(run->result.out);
}

TEST(PlanCliTest, IncidentHostWithV8StaysWithinTheInstanceBudget) {
  const auto j = plan_json(host255(), {"--plugins", "8", "--runtime", "envoy-v8"});
  ASSERT_TRUE(j["instance_budget"].is_number()) << j.dump(2);
  EXPECT_LE(j["instances"].get<uint64_t>(), j["instance_budget"].get<uint64_t>());
  EXPECT_LT(j["workers"].get<uint64_t>(), 255u);
  EXPECT_EQ(j["binding_kind"], "memory");
  EXPECT_TRUE(j["binding"].get<std::string>().starts_with("limited by MemAvailable"))
      << j["binding"];
  for (const char* key : {"cpu", "memory", "address_space", "mappings", "runtime_cap"})
    EXPECT_TRUE(j["budgets"].contains(key)) << key;
  EXPECT_EQ(j["budgets"]["runtime_cap"]["instances"], 6479);
  EXPECT_EQ(j["instances"].get<uint64_t>(),
            j["workers"].get<uint64_t>() * j["instances_per_worker"].get<uint64_t>());
}

TEST(PlanCliTest, CpuMaxOfFourCpusGivesFourWorkersAnd32Instances) {
  Shape s = host255();
  s.cgroup_chain[0].cpu_max = "400000 100000";
  const auto j = plan_json(s, {"--plugins", "8", "--runtime", "envoy-v8"});
  EXPECT_EQ(j["workers"], 4);
  EXPECT_EQ(j["instances"], 32);
  EXPECT_EQ(j["binding_kind"], "cpu");
  EXPECT_EQ(j["binding"], "limited by cpu.max of /l0: 4.0 CPUs");
  EXPECT_EQ(j["budgets"]["cpu"]["workers"], 4);
}

TEST(PlanCliTest, RlimitAsOf64GiBBindsTheAddressSpaceAndShrinksWorkers) {
  Shape s = host(32);
  s.rlimit_as = "64Gi";
  const auto j = plan_json(s, {"--plugins", "2", "--runtime", "envoy-v8"});
  EXPECT_EQ(j["binding_kind"], "address_space");
  EXPECT_EQ(j["budgets"]["address_space"]["instances"], 8);
  EXPECT_EQ(j["workers"], 4);
  EXPECT_EQ(j["binding"],
            "limited by RLIMIT_AS of /proc/self/limits: 64 GiB / 8 GiB per instance = 8 instances");
}

TEST(PlanCliTest, MaxMapCountCloseToTheMapCountBindsTheMappings) {
  Shape s = host(32);
  s.max_map_count = 1200;
  s.map_count = 60;
  const auto j = plan_json(s, {"--plugins", "8", "--runtime", "envoy-v8"});
  EXPECT_EQ(j["binding_kind"], "mappings");
  EXPECT_EQ(j["budgets"]["mappings"]["used"], 60);
  EXPECT_EQ(j["budgets"]["mappings"]["instances"], 14);  // (1200 - 60 - 1000) / 10
  EXPECT_EQ(j["workers"], 1);
}

TEST(PlanCliTest, MemoryLimitOf512MiBAllowsAtMostTwoWorkersOfFour) {
  Shape s = host(32);
  s.cgroup_chain[0].memory_max = "512Mi";
  const auto j = plan_json(s, {"--instance-resident", "64Mi", "--plugins", "4"});
  EXPECT_EQ(j["binding_kind"], "memory");
  EXPECT_LE(j["instances"].get<uint64_t>(), 8u);
  EXPECT_LE(j["workers"].get<uint64_t>(), 2u);
  EXPECT_EQ(j["budgets"]["memory"]["capacity"], uint64_t{512} << 20);
  EXPECT_EQ(j["memory_limit_bytes"], uint64_t{512} << 20);
}

TEST(PlanCliTest, AnInstanceCapAloneMeansOneInstancePerWorkerAndBindsWhenSmall) {
  Shape s = host255();
  s.cgroup_chain = {{.name = "pod", .cpu_max = "400000 100000"}};
  const auto j = plan_json(s, {"--instance-cap", "3"});
  EXPECT_EQ(j["instances"], 3) << j.dump(2);
  EXPECT_EQ(j["workers"], 3);
  EXPECT_EQ(j["budgets"]["runtime_cap"]["instances"], 3) << j["budgets"].dump(2);
}

TEST(PlanCliTest, RoundingOfFractionalQuotas) {
  const auto workers = [](const char* cpu_max, const char* round) {
    Shape s = host(32);
    s.cgroup_chain[0].cpu_max = cpu_max;
    return plan_json(s, {"--round", round})["workers"].get<int>();
  };
  EXPECT_EQ(workers("250000 100000", "ceil"), 3);
  EXPECT_EQ(workers("250000 100000", "floor"), 2);
  EXPECT_EQ(workers("30000 100000", "ceil"), 1);
  EXPECT_EQ(workers("30000 100000", "floor"), 1);
}

TEST(PlanCliTest, AncestorQuotaAndCpusetBindTheWorkers) {
  Shape parent = host(16);
  parent.cgroup_chain = {CgroupLevel{.name = "parent", .cpu_max = "200000 100000"},
                         CgroupLevel{.name = "leaf", .cpu_max = "max 100000"}};
  const auto by_parent = plan_json(parent, {});
  EXPECT_EQ(by_parent["workers"], 2);
  EXPECT_EQ(by_parent["binding"], "limited by cpu.max of /parent: 2.0 CPUs");

  Shape cpuset = host(16);
  cpuset.cgroup_chain[0].cpuset_cpus = "0-5";
  const auto by_cpuset = plan_json(cpuset, {});
  EXPECT_EQ(by_cpuset["workers"], 6);
  EXPECT_EQ(by_cpuset["cpuset"], "0-5");
}

TEST(PlanCliTest, EnvOutputIsValidForShEval) {
  Shape s = host(32);
  s.cgroup_chain[0].cpu_max = "400000 100000";
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), s));
  const std::string script =
      "set -e; eval \"$(\"$0\" plan --sysroot \"$1\" -o env)\"; echo "
      "$GOMAXPROCS $HOSTFIT_WORKERS $HOSTFIT_CPUS $UV_THREADPOOL_SIZE "
      "$TOKIO_WORKER_THREADS $RAYON_NUM_THREADS $OMP_NUM_THREADS";
  const auto r = run_command({"sh", "-c", script, HOSTFIT_BIN, dir.path().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "4 4 4 4 4 4 4\n");
}

TEST(PlanCliTest, TableNamesTheBindingAndEveryBudget) {
  Shape s = host(32);
  s.cgroup_chain[0].cpu_max = "400000 100000";
  const auto run = plan(s, {"--plugins", "8", "--runtime", "envoy-v8"});
  ASSERT_EQ(run->result.exit_code, 0) << run->result.err;
  const std::string& out = run->result.out;
  EXPECT_NE(out.find("limited by cpu.max of /l0: 4.0 CPUs"), std::string::npos) << out;
  for (const char* row : {"workers", "instances", "address_space", "mappings", "runtime_cap"})
    EXPECT_NE(out.find(row), std::string::npos) << row;
}

TEST(PlanCliTest, NotEvenOneWorkerFittingExitsOneNamingTheConstraint) {
  Shape s = host(32);
  s.rlimit_as = "16Gi";
  const auto run = plan(s, {"--plugins", "8", "--runtime", "envoy-v8"});
  EXPECT_EQ(run->result.exit_code, 1);
  EXPECT_TRUE(run->result.out.empty());
  const std::string& err = run->result.err;
  EXPECT_TRUE(err.starts_with("hostfit: cannot fit 1 worker")) << err;
  EXPECT_NE(err.find("address_space"), std::string::npos) << err;
  EXPECT_NE(err.find("short by 6 instances = 48 GiB"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(PlanCliTest, BadInputExitsTwoNamingTheValueAndWhatIsAccepted) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--plugins", "0"}, "'0' is not a whole number from 1"},
      {{"--plugins", "-1"}, "'-1' is not a whole number from 1"},
      {{"--instance-reserve", "12Q"}, "'12Q'"},
      {{"--round", "up"}, "'up' is not a rounding mode (accepted: floor|ceil)"},
      {{"--runtime", "lucet"},
       "'lucet' is not a sandbox runtime (accepted: v8|envoy-v8|wasmtime|wasmer|wamr|none)"},
      {{"--headroom", "200%"}, "'200%'"},
      {{"--min-workers", "4", "--max-workers", "2"}, "--max-workers 2 is below --min-workers 4"},
  };
  for (const auto& [args, expected] : cases) {
    std::vector<std::string> argv = {HOSTFIT_BIN, "plan"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = run_command(argv);
    EXPECT_EQ(r.exit_code, 2) << args.back() << ": " << r.err;
    EXPECT_TRUE(r.err.starts_with("hostfit: ")) << r.err;
    EXPECT_NE(r.err.find(expected), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST(PlanCliTest, MissingSysrootExitsOne) {
  const auto r = run_command({HOSTFIT_BIN, "plan", "--sysroot", "/nonexistent/hostfit"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "hostfit: cannot plan: sysroot /nonexistent/hostfit does not exist\n");
}

TEST(PlanCliTest, ThisHostPlansWithoutError) {
  const auto r = run_command({HOSTFIT_BIN, "plan", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GE(j["workers"].get<int>(), 1);
}

// The incident host as a generated tree: 255 CPUs, 512 GiB, vm.max_map_count 65530, 8 plugins.
Shape incident_host() {
  Shape s = host255();
  s.memory_per_node = uint64_t{512} << 30;
  s.max_map_count = 65530;
  return s;
}

TEST(PlanCliTest, IncidentTreeWithMeasuredV8BudgetsTheMappingsFromTheMeasuredCosts) {
  const auto j = plan_json(incident_host(), {"--runtime", "v8", "--plugins", "8"});
  const auto& maps = j["budgets"]["mappings"];
  ASSERT_EQ(maps["state"], "known") << j.dump(2);
  const uint64_t per = j["runtime"]["maps"];
  EXPECT_EQ(maps["per_instance"], per);
  EXPECT_EQ(maps["headroom"], 1000);
  EXPECT_EQ(maps["instances"].get<uint64_t>(), (65530 - maps["used"].get<uint64_t>() - 1000) / per);
  EXPECT_LE(j["instances"].get<uint64_t>(), j["instance_budget"].get<uint64_t>());
  EXPECT_NE(j["runtime"]["source"].get<std::string>().find("hostfit calibrate"), std::string::npos);
}

TEST(PlanCliTest, IncidentTreeWithFortyMapsPerInstanceRefuses2040AndNamesTheMappingBudget) {
  // The issue's measurement of Node's isolates: 37-46 maps each. One tree, two outputs.
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), incident_host()));
  const std::vector<std::string> args = {HOSTFIT_BIN,       "plan", "--sysroot", dir.path(),
                                         "--runtime",       "v8",   "--plugins", "8",
                                         "--instance-maps", "40"};
  const auto table = run_command(args);
  ASSERT_EQ(table.exit_code, 0) << table.err;
  const std::string& out = table.out;
  EXPECT_NE(out.find("limited by vm.max_map_count: 65530 maps"), std::string::npos) << out;
  EXPECT_NE(out.find("/ ~40 per V8 instance = "), std::string::npos) << out;
  EXPECT_NE(out.find("warning: lowered workers from 255 to "), std::string::npos) << out;
  EXPECT_NE(out.find("exceed the mappings budget"), std::string::npos) << out;
  auto json_args = args;
  json_args.insert(json_args.end(), {"-o", "json"});
  const auto r = run_command(json_args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_LT(j["instances"].get<uint64_t>(), 2040u);
  EXPECT_EQ(j["binding_kind"], "mappings");
}

TEST(PlanCliTest, ProfileFromCalibrateJsonSetsTheCostsAndBadProfilesExitTwo) {
  fixtures::TempDir dir;
  const auto file = dir.path() / "v8.json";
  {
    std::ofstream out(file);
    out << R"({"runtime": "v8", "profile": {"name": "v8", "label": "V8",
      "reserve_bytes": 10737418240, "resident_bytes": 8388608, "maps": 400, "base_maps": 130,
      "instance_cap": null, "measured": true, "version": "10.2.154.26-node.37",
      "source": "measured by hostfit calibrate"}})";
  }
  const auto j = plan_json(host(32), {"--profile", file.string(), "--plugins", "8"});
  EXPECT_EQ(j["runtime"]["maps"], 400);
  EXPECT_EQ(j["budgets"]["mappings"]["used"], 130);
  EXPECT_EQ(j["budgets"]["mappings"]["instances"], (65530 - 130 - 1000) / 400);
  EXPECT_EQ(j["binding_kind"], "mappings");
  EXPECT_EQ(j["workers"], (65530 - 130 - 1000) / 400 / 8);

  const auto garbage = dir.path() / "garbage.json";
  std::ofstream(garbage) << "{not json";
  for (const auto& [path, expected] : std::vector<std::pair<std::string, std::string>>{
           {garbage.string(), ": not JSON"},
           {(dir.path() / "none.json").string(), "cannot read"}}) {
    const auto r = run_command({HOSTFIT_BIN, "plan", "--profile", path, "--plugins", "8"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_TRUE(r.err.starts_with("hostfit: --profile " + path)) << r.err;
    EXPECT_NE(r.err.find(expected), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace hostfit
