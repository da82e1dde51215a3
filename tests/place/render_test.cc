// Renderers (src/place/render.cc): what each prints, and each applied with the real tool where it
// exists here, reading Cpus_allowed_list / Mems_allowed_list of the started process back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "command.h"
#include "place_fixtures.h"

namespace hostfit {
namespace {

using ::testing::HasSubstr;

Placement two_node_placement() {
  Placement p;
  p.cpus = CpuSet::of({0, 1, 2, 3, 16, 17, 18, 19});
  p.mems = CpuSet::of({0, 1});
  p.nodes = {0, 1};
  return p;
}

TEST(RenderTest, EachToolGetsItsOwnWords) {
  const Placement p = two_node_placement();
  const auto text = [&](std::string_view name) {
    const Renderer* r = find_renderer(name);
    return r ? r->render(p, RenderContext{"web"}) : std::string("missing");
  };
  EXPECT_EQ(text("docker"), "--cpuset-cpus=0-3,16-19 --cpuset-mems=0-1\n");
  EXPECT_EQ(text("systemd"), "-p AllowedCPUs=0-3,16-19 -p AllowedMemoryNodes=0-1\n");
  EXPECT_EQ(text("systemd-unit"), "[Service]\nAllowedCPUs=0-3,16-19\nAllowedMemoryNodes=0-1\n");
  EXPECT_EQ(text("numactl"), "--physcpubind=0-3,16-19 --membind=0-1\n");
  EXPECT_EQ(text("taskset"), "-c 0-3,16-19\n");
  EXPECT_THAT(text("incus"), HasSubstr("incus config set web limits.cpu=0-3,16-19\n"));
  EXPECT_THAT(text("incus"), HasSubstr("volatile.cpu.nodes records them: 0-1"));
  EXPECT_EQ(find_renderer("table"), nullptr);
}

TEST(RenderTest, IncusPinsASingleCpuAsARangeNotACount) {
  Placement p;
  p.cpus = CpuSet::of({5});
  p.mems = CpuSet::of({0});
  p.nodes = {0};
  EXPECT_THAT(find_renderer("incus")->render(p, {}), HasSubstr("limits.cpu=5-5\n"));
}

// Places one CPU on this machine with -o TOOL and -o json, runs `TOOL ARGS... cat
// /proc/self/status`, and checks the started process's allowed CPUs and memory nodes.
class RenderAppliedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/hostfit-render-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static bool on_path(const std::string& tool) {
    return fixtures::run_command({"sh", "-c", "command -v " + tool}).exit_code == 0;
  }
  // Other tools' pins are left out: processes of concurrent tests come and go between the two
  // calls of apply(), and the JSON and the rendered command must name the same CPUs.
  fixtures::CommandResult place(const std::string& output) {
    return fixtures::run_command({HOSTFIT_BIN, "place", "--ledger", dir_ + "/ledger.json", "--cpus",
                                  "1", "--policy", "spread", "--ignore-foreign", "-o", output});
  }
  static std::vector<std::string> words(const std::string& text) {
    std::istringstream in(text);
    std::vector<std::string> out;
    for (std::string w; in >> w;)
      out.push_back(w);
    return out;
  }
  static std::string status_field(const std::string& status, const std::string& key) {
    std::istringstream in(status);
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with(key + ":")) return std::string(trim(line.substr(key.size() + 1)));
    }
    return "(no " + key + ")";
  }
  // prefix + rendered words + suffix, run; checks the process's view against the placement.
  void apply(const std::string& tool, std::vector<std::string> prefix,
             std::vector<std::string> suffix, bool binds_memory) {
    auto json = place("json");
    ASSERT_EQ(json.exit_code, 0) << json.err;
    const auto j = nlohmann::json::parse(json.out);
    auto rendered = place(tool);
    ASSERT_EQ(rendered.exit_code, 0) << rendered.err;
    std::vector<std::string> argv = std::move(prefix);
    for (const std::string& w : words(rendered.out))
      argv.push_back(w);
    argv.insert(argv.end(), suffix.begin(), suffix.end());
    argv.insert(argv.end(), {"cat", "/proc/self/status"});
    auto run = fixtures::run_command(argv);
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(status_field(run.out, "Cpus_allowed_list"), j["cpus"].get<std::string>());
    if (binds_memory) {
      EXPECT_EQ(status_field(run.out, "Mems_allowed_list"), j["mems"].get<std::string>());
    }
  }
  std::string dir_;
};

TEST_F(RenderAppliedTest, TasksetRunsTheProcessOnThePlacedCpus) {
  if (!on_path("taskset")) GTEST_SKIP() << "taskset (util-linux) is not installed";
  apply("taskset", {"taskset"}, {}, false);
}

TEST_F(RenderAppliedTest, NumactlBindsCpusAndMemory) {
  if (!on_path("numactl")) GTEST_SKIP() << "numactl is not installed (scripts/install-deps)";
  // --membind sets a memory policy, not the cpuset: Mems_allowed_list stays the cpuset's, so the
  // binding is read back through `numactl --show` of the started process.
  apply("numactl", {"numactl"}, {"--"}, false);
  auto rendered = place("numactl");
  std::vector<std::string> argv = {"numactl"};
  for (const std::string& w : words(rendered.out))
    argv.push_back(w);
  argv.insert(argv.end(), {"--", "numactl", "--show"});
  auto show = fixtures::run_command(argv);
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("policy: bind"));
}

TEST_F(RenderAppliedTest, SystemdRunScopeAppliesAllowedCpus) {
  if (!on_path("systemd-run")) GTEST_SKIP() << "systemd-run is not installed";
  if (!std::filesystem::exists("/run/systemd/system"))
    GTEST_SKIP() << "no systemd manager is reachable (/run/systemd/system is absent: PID 1 is not "
                    "systemd here)";
  apply("systemd", {"systemd-run", "--scope", "--quiet"}, {}, true);
}

TEST_F(RenderAppliedTest, PodmanRunGetsTheCpuset) {
  if (!on_path("podman")) GTEST_SKIP() << "podman is not installed here";
  if (fixtures::run_command({"podman", "info"}).exit_code != 0)
    GTEST_SKIP() << "podman is installed but `podman info` fails here";
  apply("docker", {"podman", "run", "--rm"}, {"docker.io/library/busybox"}, true);
}

TEST_F(RenderAppliedTest, DockerRunGetsTheCpuset) {
  if (!on_path("docker")) GTEST_SKIP() << "docker is not installed here";
  if (fixtures::run_command({"docker", "info"}).exit_code != 0)
    GTEST_SKIP() << "docker is on PATH but no docker daemon answers (`docker info` fails)";
  apply("docker", {"docker", "run", "--rm"}, {"busybox"}, true);
}

TEST_F(RenderAppliedTest, IncusConfigSetPinsTheInstance) {
  if (!on_path("incus")) GTEST_SKIP() << "incus is not installed here";
  GTEST_SKIP() << "incus is installed, but this test does not create instances on a shared host";
}

}  // namespace
}  // namespace hostfit
