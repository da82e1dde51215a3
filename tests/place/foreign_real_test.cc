// A real sibling v1 cpuset with cpu_exclusive on this machine (src/place/foreign.cc). Its own
// binary, run serially: while the pin exists no sibling cpuset (a hostfit run's group) may use its
// CPU, and while another group uses the CPU it cannot be made exclusive.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "hostfit/core.h"

namespace hostfit {
namespace {

using ::testing::HasSubstr;

// A real sibling cpuset on this machine: /sys/fs/cgroup/cpuset/hostfit-pin-PID with the last CPU,
// made exclusive, removed at the end. The other CPUs stay with everyone else.
class RealExclusiveCpuset {
 public:
  RealExclusiveCpuset() {
    const std::string root = "/sys/fs/cgroup/cpuset";
    if (::geteuid() != 0) {
      skip_ = "needs root to create a cpuset group";
      return;
    }
    if (!std::filesystem::exists(root + "/cpuset.cpu_exclusive")) {
      skip_ = "no cgroup v1 cpuset hierarchy at " + root;
      return;
    }
    auto cpus = CpuSet::parse_list(read(root + "/cpuset.cpus"));
    if (!cpus || cpus->count() < 2) {
      skip_ = "needs at least 2 CPUs in the root cpuset";
      return;
    }
    cpu_ = cpus->last();
    path_ = "/hostfit-pin-" + std::to_string(::getpid());
    dir_ = root + path_;
    if (!std::filesystem::create_directory(dir_)) {
      skip_ = "cannot create " + dir_;
      return;
    }
    if (!write("cpuset.mems", read(root + "/cpuset.mems")) ||
        !write("cpuset.cpus", std::to_string(cpu_))) {
      skip_ = "cannot set cpuset.cpus of " + dir_;
      return;
    }
    // EINVAL when a sibling group already uses the CPU: then it cannot be exclusive here.
    if (!write("cpuset.cpu_exclusive", "1")) {
      skip_ = "CPU " + std::to_string(cpu_) + " is used by another root cpuset group";
      return;
    }
  }
  ~RealExclusiveCpuset() {
    if (dir_.empty()) return;
    write("cpuset.cpu_exclusive", "0");
    std::error_code ec;
    std::filesystem::remove(dir_, ec);
  }
  const std::string& skip() const { return skip_; }
  const std::string& path() const { return path_; }
  int cpu() const { return cpu_; }

 private:
  static std::string read(const std::string& p) {
    std::ifstream in(p);
    std::string s;
    std::getline(in, s);
    return s;
  }
  bool write(const std::string& file, const std::string& value) {
    std::ofstream out(dir_ + "/" + file);
    out << value << std::flush;
    return static_cast<bool>(out);
  }
  std::string dir_, path_, skip_;
  int cpu_ = -1;
};

TEST(ForeignPinsRealTest, SiblingV1ExclusiveCpusetIsNeverHandedOutAndShowNamesIt) {
  RealExclusiveCpuset group;
  if (!group.skip().empty()) GTEST_SKIP() << group.skip();
  char ledger_dir[] = "/tmp/hostfit-foreign-XXXXXX";
  ASSERT_NE(::mkdtemp(ledger_dir), nullptr);
  const std::string ledger = std::string(ledger_dir) + "/ledger.json";
  const auto place_cmd = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {HOSTFIT_BIN, "place", "--ledger", ledger};
    argv.insert(argv.end(), args.begin(), args.end());
    return fixtures::run_command(argv);
  };
  auto show = place_cmd({"--show"});
  auto json = place_cmd({"--cpus", "1", "-o", "json"});
  auto too_many = place_cmd({"--cpus", std::to_string(group.cpu() + 1)});
  auto ignored = place_cmd({"--cpus", std::to_string(group.cpu() + 1), "--ignore-foreign"});
  std::filesystem::remove_all(ledger_dir);
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("(" + group.path() + ")"));
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto j = nlohmann::json::parse(json.out);
  EXPECT_NE(j["cpus"].get<std::string>(), std::to_string(group.cpu()));
  EXPECT_EQ(too_many.exit_code, 1) << too_many.out;
  EXPECT_THAT(too_many.err, HasSubstr("CPU " + std::to_string(group.cpu()) + " is pinned"));
  EXPECT_EQ(ignored.exit_code, 0) << ignored.err;
}

// `hostfit run --placement` reads the pins too: with CPU 0 held by another owner and the last CPU
// pinned exclusively, there is no CPU left for it, and it says which pin took it instead of
// handing out the pinned CPU (whose cpuset write the kernel would refuse).
TEST(ForeignPinsRealTest, RunPlacementNeverTakesTheExclusivePin) {
  RealExclusiveCpuset group;
  if (!group.skip().empty()) GTEST_SKIP() << group.skip();
  if (group.cpu() != 1) GTEST_SKIP() << "needs exactly 2 CPUs (the pin takes CPU 1)";
  char ledger_dir[] = "/tmp/hostfit-foreign-XXXXXX";
  ASSERT_NE(::mkdtemp(ledger_dir), nullptr);
  const std::string ledger = std::string(ledger_dir) + "/ledger.json";
  const std::vector<std::string> run = {
      HOSTFIT_BIN, "run", "--placement", "balanced",          "--cpus",
      "1",         "--",  "grep",        "Cpus_allowed_list", "/proc/self/status"};
  const std::vector<std::string> env = {"HOSTFIT_LEDGER=" + ledger};
  auto first = fixtures::run_command(run, env);
  auto other = fixtures::run_command(
      {HOSTFIT_BIN, "place", "--ledger", ledger, "--cpus", "1", "--owner", "other"});
  auto second = fixtures::run_command(run, env);
  std::filesystem::remove_all(ledger_dir);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.out, HasSubstr("Cpus_allowed_list:\t0\n"));
  ASSERT_EQ(other.exit_code, 0) << other.err;
  EXPECT_EQ(second.exit_code, 1) << second.out << second.err;
  EXPECT_THAT(second.err, HasSubstr("CPU 1 is pinned"));
}

}  // namespace
}  // namespace hostfit
