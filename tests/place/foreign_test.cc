// Pins that hostfit did not make (src/place/foreign.cc): generated v1 and v2 trees with other
// tools' cpusets and partitions, and a real sibling v1 cpuset with cpu_exclusive on this machine.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "place_fixtures.h"

namespace hostfit {
namespace {

using ::testing::HasSubstr;

fixtures::Shape pinned_shape(fixtures::CgroupLayout layout) {
  fixtures::Shape s = testing_place::shape(1, 2, 4, 2);  // 16 CPUs: node 0 = 0-3,8-11
  s.cgroup = layout;
  return s;
}

// Every request size, every policy: never a CPU of `forbidden`.
void expect_never_handed_out(const testing_place::Machine& m, const ForeignPins& pins,
                             const CpuSet& forbidden) {
  const CpuSet allowed = m.allowed - pins.exclusive();
  for (PlacementPolicy policy :
       {PlacementPolicy::kBalanced, PlacementPolicy::kCompact, PlacementPolicy::kSpread}) {
    for (int n = 1; n <= allowed.count(); ++n) {
      auto p =
          place(m.topology(), allowed, Ledger{}, testing_place::cpus(n, policy), pins.shared());
      ASSERT_TRUE(p) << n << ": " << p.error().message;
      EXPECT_TRUE((p->cpus & forbidden).empty()) << n << " CPUs: " << p->cpus.to_list();
    }
  }
}

TEST(ForeignPinsTest, V2PartitionsAndExclusiveCpusAreTakenAndMembersAreShared) {
  fixtures::Shape s = pinned_shape(fixtures::CgroupLayout::kV2);
  s.pinned_groups = {{"/rt", "0-1", "", false, "root", ""},
                     {"/iso", "2", "", false, "isolated", ""},
                     {"/slice/svc", "4-5", "", false, "member", "4"},
                     {"/docker/c1", "8-9", "", false, "member", ""},
                     {"/bad", "6", "", false, "root invalid (not exclusive)", ""}};
  const auto m = testing_place::make_machine(s);
  const ForeignPins pins = read_foreign_pins(Sysroot(m.dir->path()), m.facts, CpuSet{});
  EXPECT_EQ(pins.exclusive(), CpuSet::of({0, 1, 2, 4}));
  EXPECT_EQ(pins.shared(), CpuSet::of({6, 8, 9}));
  std::vector<std::string> holders;
  for (const ForeignPin& p : pins.pins)
    holders.push_back(p.holder);
  EXPECT_THAT(holders, ::testing::UnorderedElementsAre("(/rt)", "(/iso)", "(/slice/svc)",
                                                       "(/docker/c1)", "(/bad)"));
  expect_never_handed_out(m, pins, pins.exclusive());
}

TEST(ForeignPinsTest, SharedPinsAreACostNotABan) {
  fixtures::Shape s = pinned_shape(fixtures::CgroupLayout::kV2);
  s.pinned_groups = {{"/docker/c1", "0-3,8-11", "", false, "member", ""}};  // all of node 0
  const auto m = testing_place::make_machine(s);
  const ForeignPins pins = read_foreign_pins(Sysroot(m.dir->path()), m.facts, CpuSet{});
  auto p = place(m.topology(), m.allowed, Ledger{}, testing_place::cpus(4), pins.shared());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->nodes, std::vector<int>{1});  // node 1 is free of others' pins
  auto all = place(m.topology(), m.allowed, Ledger{}, testing_place::cpus(16), pins.shared());
  EXPECT_TRUE(all) << "shared CPUs can still be handed out";
}

TEST(ForeignPinsTest, V1CpuExclusiveIsTakenAndTheOwnChainIsNot) {
  fixtures::Shape s = pinned_shape(fixtures::CgroupLayout::kHybrid);
  s.cgroup_chain = {fixtures::CgroupLevel{.name = "mine", .cpuset_cpus = "8-15"}};
  s.pinned_groups = {{"/pinned", "0-1", "", true, "member", ""},
                     {"/docker/c2", "2-3", "", false, "member", ""}};
  const auto m = testing_place::make_machine(s);
  const ForeignPins pins = read_foreign_pins(Sysroot(m.dir->path()), m.facts, CpuSet{});
  EXPECT_EQ(pins.exclusive(), CpuSet::of({0, 1}));
  EXPECT_EQ(pins.shared(), CpuSet::of({2, 3}));
  for (const ForeignPin& p : pins.pins)
    EXPECT_NE(p.holder, "(/mine)") << "the process's own cpuset is not someone else's pin";
  // Pins inside the ledger's holds are hostfit's own groups.
  const ForeignPins own = read_foreign_pins(Sysroot(m.dir->path()), m.facts, CpuSet::range(0, 3));
  EXPECT_TRUE(own.pins.empty());
}

TEST(ForeignPinsTest, ShowNamesTheGroupsAndIgnoreForeignRestoresTheOldBehaviour) {
  fixtures::Shape s = pinned_shape(fixtures::CgroupLayout::kV2);
  s.pinned_groups = {{"/rt", "0-3,8-11", "", false, "root", ""}};
  const auto m = testing_place::make_machine(s);
  const std::string root = m.dir->path().string();
  const std::string ledger = "HOSTFIT_LEDGER=" + root + "/ledger.json";
  auto show = fixtures::run_command({HOSTFIT_BIN, "place", "--sysroot", root, "--show"}, {ledger});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("(/rt)"));
  EXPECT_THAT(show.out, HasSubstr("exclusive"));
  auto nine = fixtures::run_command(
      {HOSTFIT_BIN, "place", "--sysroot", root, "--cpus", "9", "-o", "taskset"}, {ledger});
  EXPECT_EQ(nine.exit_code, 1);
  EXPECT_THAT(nine.err, HasSubstr("pinned exclusively by other tools"));
  auto eight = fixtures::run_command(
      {HOSTFIT_BIN, "place", "--sysroot", root, "--cpus", "8", "-o", "taskset"}, {ledger});
  EXPECT_EQ(eight.out, "-c 4-7,12-15\n") << eight.err;
  auto ignored = fixtures::run_command(
      {HOSTFIT_BIN, "place", "--sysroot", root, "--cpus", "8", "-o", "taskset", "--ignore-foreign"},
      {ledger});
  EXPECT_EQ(ignored.out, "-c 0-3,8-11\n") << ignored.err;
}

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

}  // namespace
}  // namespace hostfit
