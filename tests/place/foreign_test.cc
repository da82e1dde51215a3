// Pins that hostfit did not make (src/place/foreign.cc): generated v1 and v2 trees with other
// tools' cpusets and partitions. The real sibling cpuset is foreign_real_test.cc.
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

}  // namespace
}  // namespace hostfit
