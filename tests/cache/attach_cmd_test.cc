// hostfit attach on generated trees (v2 memory.high held and restored byte for byte, memory.max
// never written) and its bad input; hostfit stat's first lines and --watch lines.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "command.h"
#include "hostfit/core.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

class AttachCommandTest : public ::testing::Test {
 protected:
  void write_tree(fixtures::CgroupLayout layout) {
    fixtures::Shape shape;
    shape.cgroup = layout;
    shape.cgroup_chain = {{.name = "svc", .memory_max = "1Gi", .memory_current = 700 * kMiB}};
    ASSERT_TRUE(fixtures::write_sysroot(dir_.path(), shape));
  }
  fixtures::CommandResult hostfit(std::vector<std::string> args, const std::string& timeout = "") {
    std::vector<std::string> argv;
    if (!timeout.empty()) argv = {"timeout", "-s", "INT", timeout};
    argv.push_back(HOSTFIT_BIN);
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--sysroot", dir_.path().string()});
    return fixtures::run_command(argv);
  }
  fixtures::TempDir dir_;
};

TEST_F(AttachCommandTest, V2HoldsMemoryHighAndRestoresItByteForByte) {
  write_tree(fixtures::CgroupLayout::kV2);
  const Sysroot root(dir_.path());
  const std::string svc = "/sys/fs/cgroup/svc";
  ASSERT_TRUE(root.write(svc + "/memory.reclaim", ""));
  ASSERT_TRUE(root.write(svc + "/memory.high", "max\n"));
  const auto max_before = root.read(svc + "/memory.max");
  ASSERT_TRUE(max_before);
  const std::string report = (dir_.path() / "attach.json").string();
  const auto r = hostfit({"attach", "--cgroup", "/svc", "--cache-limit", "64Mi", "--cache-interval",
                          "10ms", "--report", report},
                         "0.5");
  // timeout says 124 when it had to stop hostfit, which then exits 0 on its own.
  EXPECT_EQ(r.exit_code, 124) << r.err;
  EXPECT_NE(r.out.find("holding the page cache of /svc (v2"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("stopped by a signal"), std::string::npos) << r.err;
  EXPECT_EQ(*root.read(svc + "/memory.high"), "max\n");
  EXPECT_EQ(*root.read(svc + "/memory.max"), *max_before);
  std::ifstream in(report);
  std::stringstream ss;
  ss << in.rdbuf();
  const auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  EXPECT_EQ(j["method"], "memory.high") << ss.str();
  EXPECT_EQ(j["restored"], true);
  EXPECT_GE(j["holds"].get<uint64_t>(), 1u);
  EXPECT_GE(j["samples"].get<uint64_t>(), 2u);
}

TEST_F(AttachCommandTest, BadInputIsOneLineAndTheRightExitCode) {
  write_tree(fixtures::CgroupLayout::kV1);
  const struct {
    std::vector<std::string> args;
    int code;
  } cases[] = {
      {{"attach", "--cgroup", "/svc", "--cache-limit", "lots"}, 2},
      {{"attach", "--cgroup", "/svc", "--cache-limit", "-1Mi"}, 2},
      {{"attach", "--cgroup", "svc", "--cache-limit", "64Mi"}, 2},
      {{"attach", "--cgroup", "/svc/../etc", "--cache-limit", "64Mi"}, 2},
      {{"attach", "--cgroup", "/svc", "--cache-limit", "2Gi"}, 2},  // above the group's 1 GiB
      {{"attach", "--cgroup", "/svc", "--cache-limit", "64Mi", "--cache-interval", "0"}, 2},
      {{"attach", "--cgroup", "/svc"}, 2},
      {{"attach", "--cgroup", "/nosuch", "--cache-limit", "64Mi"}, 1},
  };
  for (const auto& c : cases) {
    const auto r = hostfit(c.args);
    EXPECT_EQ(r.exit_code, c.code) << c.args[2] << " " << r.err;
    EXPECT_EQ(r.err.rfind("hostfit: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST_F(AttachCommandTest, StatSaysInWordsWhatIsCacheAndLabelsSystemPressure) {
  write_tree(fixtures::CgroupLayout::kV1);
  const Sysroot root(dir_.path());
  ASSERT_TRUE(root.make_dir("/proc/pressure"));
  ASSERT_TRUE(root.write("/proc/pressure/memory",
                         "some avg10=2.50 avg60=0.00 avg300=0.00 total=1\n"
                         "full avg10=0.50 avg60=0.00 avg300=0.00 total=1\n"));
  const auto r = hostfit({"stat", "/svc"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  EXPECT_NE(first.find("is file cache the kernel reclaims under pressure"), std::string::npos)
      << first;
  EXPECT_NE(first.find("is the workload's own"), std::string::npos) << first;
  EXPECT_NE(second.find("some 2.50%"), std::string::npos) << second;
  EXPECT_NE(second.find("system-wide (/proc/pressure/memory)"), std::string::npos) << second;
  const auto j = nlohmann::json::parse(hostfit({"stat", "/svc", "-o", "json"}).out);
  EXPECT_EQ(j["pressure"]["scope"], "system");
  EXPECT_DOUBLE_EQ(j["pressure"]["some_avg10"].get<double>(), 2.5);
}

TEST_F(AttachCommandTest, StatWatchPrintsOneLinePerSample) {
  write_tree(fixtures::CgroupLayout::kV2);
  const auto r = hostfit({"stat", "/svc", "--watch", "0.1"}, "0.45");
  EXPECT_EQ(r.exit_code, 124) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    ++samples;
    EXPECT_EQ(line.find("20"), 0u) << "not a timestamped sample line: " << line;
    EXPECT_NE(line.find(" used "), std::string::npos) << line;
  }
  EXPECT_GE(samples, 2);
}

}  // namespace
}  // namespace hostfit
