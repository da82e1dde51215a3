// hostfit stat on generated trees: NAME and PATH resolution, the JSON keys, bad input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "command.h"
#include "hostfit/core.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

class StatCommandTest : public ::testing::Test {
 protected:
  void write_tree(fixtures::CgroupLayout layout) {
    fixtures::Shape shape;
    shape.cgroup = layout;
    shape.cgroup_chain = {{.name = "svc", .memory_current = 100 * kMiB}};
    ASSERT_TRUE(fixtures::write_sysroot(dir_.path(), shape));
  }
  fixtures::CommandResult stat(std::vector<std::string> args) {
    std::vector<std::string> argv = {HOSTFIT_BIN, "stat", "--sysroot", dir_.path().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return fixtures::run_command(argv);
  }
  fixtures::TempDir dir_;
};

TEST_F(StatCommandTest, PathOnV1PrintsTheHierarchicalBreakdownAsJson) {
  write_tree(fixtures::CgroupLayout::kV1);
  const auto r = stat({"/svc", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["cgroup"], "/svc");
  EXPECT_EQ(j["version"], "v1");
  EXPECT_EQ(j["dir"], "/sys/fs/cgroup/memory/svc");
  EXPECT_EQ(j["memory"]["usage_bytes"], 100 * kMiB);
  EXPECT_EQ(j["memory"]["file_bytes"], 40 * kMiB);
  EXPECT_EQ(j["memory"]["working_set_bytes"], 80 * kMiB);
  EXPECT_TRUE(j["limit_bytes"].is_null());
}

TEST_F(StatCommandTest, NameIsLookedUpUnderTheOwnCgroupsHostfitParentOnV2) {
  write_tree(fixtures::CgroupLayout::kV2);
  const Sysroot root(dir_.path());
  const std::string group = "/sys/fs/cgroup/svc/hostfit/mirror";
  ASSERT_TRUE(root.make_dir("/sys/fs/cgroup/svc/hostfit"));
  ASSERT_TRUE(root.make_dir(group));
  ASSERT_TRUE(root.write(group + "/memory.current", "1073741824\n"));
  ASSERT_TRUE(root.write(group + "/memory.max", "2147483648\n"));
  ASSERT_TRUE(root.write(group + "/memory.stat",
                         "anon 20971520\nfile 1048576000\nshmem 0\ninactive_file 1000000000\n"));
  ASSERT_TRUE(root.write(group + "/memory.pressure",
                         "some avg10=1.50 avg60=0.00 avg300=0.00 total=10\n"
                         "full avg10=0.25 avg60=0.00 avg300=0.00 total=5\n"));
  const auto r = stat({"mirror", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["cgroup"], "/svc/hostfit/mirror");
  EXPECT_EQ(j["version"], "v2");
  EXPECT_EQ(j["limit_bytes"], 2147483648u);
  EXPECT_EQ(j["memory"]["file_bytes"], 1048576000u);
  EXPECT_EQ(j["memory"]["working_set_bytes"], 1073741824u - 1000000000u);
  EXPECT_DOUBLE_EQ(j["pressure"]["some_avg10"].get<double>(), 1.5);

  const auto table = stat({"mirror"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("working set"), std::string::npos);
  EXPECT_NE(table.out.find("1000 MiB"), std::string::npos) << table.out;
}

TEST_F(StatCommandTest, MissingGroupIsARuntimeFailureNamingWhereItLooked) {
  write_tree(fixtures::CgroupLayout::kV2);
  const auto r = stat({"nosuch"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("hostfit: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("/svc/hostfit"), std::string::npos) << r.err;
}

TEST_F(StatCommandTest, BadNamesPathsAndWatchIntervalsAreUsageErrors) {
  write_tree(fixtures::CgroupLayout::kV2);
  for (const std::vector<std::string>& args : {std::vector<std::string>{"../etc"},
                                               {"/svc/../x"},
                                               {".hidden"},
                                               {"/svc", "--watch", "x"},
                                               {"/svc", "--watch=-1"},
                                               {"/svc", "-o", "yaml"}}) {
    const auto r = stat(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << r.err;
    EXPECT_EQ(r.err.rfind("hostfit: ", 0), 0u) << r.err;
  }
}

TEST_F(StatCommandTest, NoMemoryControllerIsSaidPlainly) {
  write_tree(fixtures::CgroupLayout::kNone);
  const auto r = stat({"/svc"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no memory cgroup controller"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace hostfit
