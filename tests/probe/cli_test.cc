// The `hostfit probe` command as a person or a script uses it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "command.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using fixtures::run_command;

TEST(ProbeCliTest, JsonHasTheDocumentedKeys) {
  fixtures::Shape s;
  s.cores_per_node = 4;
  s.cgroup_chain = {
      fixtures::CgroupLevel{.name = "l0", .cpu_max = "150000 100000", .memory_max = "max"}};
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), s));
  const auto r =
      run_command({HOSTFIT_BIN, "probe", "--sysroot", dir.path().string(), "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_DOUBLE_EQ(j["cpu"]["effective"].get<double>(), 1.5);
  EXPECT_EQ(j["cpu"]["effective_integer"], 1);
  EXPECT_EQ(j["cpu"]["binding"], "limited by cpu.max of /l0: 1.5 CPUs");
  EXPECT_EQ(j["cgroup"]["mode"], "v2");
  EXPECT_TRUE(j["memory"]["limit_bytes"].is_null());
  ASSERT_EQ(j["topology"]["numa_nodes"].size(), 1u);
  EXPECT_EQ(j["topology"]["numa_nodes"][0]["id"], 0);
  EXPECT_EQ(j["topology"]["numa_nodes"][0]["cpus"], "0-3");
  EXPECT_TRUE(j["topology"]["numa_nodes"][0]["memory_bytes"].is_number());
  EXPECT_TRUE(j["topology"]["numa_nodes"][0]["distances"].is_array());
}

TEST(ProbeCliTest, ExplainAddsSources) {
  fixtures::Shape s;
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), s));
  const auto r = run_command(
      {HOSTFIT_BIN, "probe", "--sysroot", dir.path().string(), "-o", "json", "--explain"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["sources"]["cpu.online"]["source"], "/sys/devices/system/cpu/online");
  const auto table =
      run_command({HOSTFIT_BIN, "probe", "--sysroot", dir.path().string(), "--explain"});
  EXPECT_NE(table.out.find("/sys/devices/system/cpu/online"), std::string::npos) << table.out;
}

TEST(ProbeCliTest, MissingSysrootExitsOneWithOneLine) {
  const auto r = run_command({HOSTFIT_BIN, "probe", "--sysroot", "/nonexistent/hostfit"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "hostfit: cannot probe: sysroot /nonexistent/hostfit does not exist\n");
  EXPECT_TRUE(r.out.empty());
}

TEST(ProbeCliTest, UsageErrorsExitTwoNamingTheBadValue) {
  const std::vector<std::vector<std::string>> cases = {
      {HOSTFIT_BIN, "probe", "--bogus"},
      {HOSTFIT_BIN, "probe", "-o", "yaml"},
      {HOSTFIT_BIN, "probe", "--pid", "abc"},
      {HOSTFIT_BIN, "probe", "--pid", "1", "--cgroup", "/x"},
      {HOSTFIT_BIN, "frobnicate"},
  };
  for (const auto& argv : cases) {
    const auto r = run_command(argv);
    EXPECT_EQ(r.exit_code, 2) << argv.back() << ": " << r.err;
    EXPECT_TRUE(r.err.starts_with("hostfit: ")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_NE(run_command({HOSTFIT_BIN, "probe", "-o", "yaml"}).err.find("'yaml'"),
            std::string::npos);
}

TEST(ProbeCliTest, ACgroupThatDoesNotExistIsAnErrorForProbeAndPlan) {
  fixtures::Shape s;
  s.cgroup = fixtures::CgroupLayout::kV1;
  s.cgroup_chain = {fixtures::CgroupLevel{.name = "l0", .cpu_max = "150000 100000"}};
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), s));
  for (const char* verb : {"probe", "plan"}) {
    const auto r = run_command(
        {HOSTFIT_BIN, verb, "--sysroot", dir.path().string(), "--cgroup", "/nope", "-o", "json"});
    EXPECT_EQ(r.exit_code, 1) << verb;
    EXPECT_TRUE(r.out.empty()) << r.out;
    EXPECT_EQ(r.err.rfind("hostfit: no cgroup /nope in any mounted hierarchy (looked in "
                          "/sys/fs/cgroup/pids, /sys/fs/cgroup/memory, /sys/fs/cgroup/cpuset, "
                          "/sys/fs/cgroup/cpu,cpuacct, /sys/fs/cgroup/systemd)",
                          0),
              0u)
        << r.err;
    const auto ok = run_command(
        {HOSTFIT_BIN, verb, "--sysroot", dir.path().string(), "--cgroup", "/l0", "-o", "json"});
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
  }
}

TEST(ProbeCliTest, DotDotInACgroupPathIsAUsageError) {
  for (const char* verb : {"probe", "plan"}) {
    for (const char* bad : {"/../../etc", "/a/../b", "/a/./b"}) {
      const auto r = run_command({HOSTFIT_BIN, verb, "--cgroup", bad});
      EXPECT_EQ(r.exit_code, 2) << verb << " " << bad << ": " << r.err;
      EXPECT_NE(r.err.find(std::string("bad cgroup path '") + bad + "'"), std::string::npos)
          << r.err;
    }
  }
}

TEST(ProbeCliTest, BytesThatAreNotUtf8AreEscapedInTableAndJson) {
  fixtures::Shape s;
  s.cgroup_chain = {fixtures::CgroupLevel{.name = "l0", .cpu_max = "150000 100000"}};
  s.cgroup_view.mount_base = "/sys/fs/cgroup\xff";
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), s));
  const auto j =
      run_command({HOSTFIT_BIN, "probe", "--sysroot", dir.path().string(), "-o", "json"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const auto parsed = nlohmann::json::parse(j.out);
  EXPECT_EQ(parsed["cgroup"]["controllers"]["cpu"]["dir"], "/sys/fs/cgroup\\377/l0");
  EXPECT_DOUBLE_EQ(parsed["cpu"]["effective"].get<double>(), 1.5);
  const auto t = run_command({HOSTFIT_BIN, "probe", "--sysroot", dir.path().string()});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.out.find("/sys/fs/cgroup\\377/l0"), std::string::npos) << t.out;
  EXPECT_EQ(t.out.find('\xff'), std::string::npos);
}

TEST(ProbeCliTest, HelpTeachesAndExitsZero) {
  const auto r = run_command({HOSTFIT_BIN, "probe", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--explain"), std::string::npos);
  EXPECT_NE(r.out.find("Examples"), std::string::npos);
}

TEST(ProbeCliTest, ThisHostProbesInBothFormats) {
  const auto table = run_command({HOSTFIT_BIN, "probe"});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("effective"), std::string::npos);
  const auto json = run_command({HOSTFIT_BIN, "probe", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_TRUE(nlohmann::json::parse(json.out, nullptr, false).is_object());
}

}  // namespace
}  // namespace hostfit
