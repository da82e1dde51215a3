// `hostfit probe --capture DIR`: probing the capture gives the same answer as the probe that made
// it, on this host, on generated trees and on the real-machine trees.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "command.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using fixtures::run_command;
using nlohmann::json;

// The keys that name the root read (not facts about the machine) and the capture's own summary.
json comparable(json j) {
  j.erase("sysroot");
  j.erase("capture");
  j["topology"].erase("source");
  return j;
}

// Reasons for unknown facts name the file read, under the root read: the replay's root is put
// back to the original's.
json with_root(const std::string& text, const std::string& from, const std::string& to) {
  std::string out = text;
  for (size_t at = out.find(from); at != std::string::npos; at = out.find(from, at + to.size()))
    out.replace(at, from.size(), to);
  return json::parse(out);
}

// Probes `args` with --capture, then the capture, and expects the same JSON.
void expect_round_trip(std::vector<std::string> args) {
  fixtures::TempDir work;
  const std::string capture = (work.path() / "capture").string();
  std::vector<std::string> first = {HOSTFIT_BIN, "probe", "-o", "json", "--capture", capture};
  first.insert(first.end(), args.begin(), args.end());
  const auto a = run_command(first);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const json ja = json::parse(a.out);
  EXPECT_GT(ja["capture"]["files"].get<int>(), 10);
  // The replay reads the capture instead of the original root, with the same target.
  std::vector<std::string> second = {HOSTFIT_BIN, "probe", "-o", "json", "--sysroot", capture};
  std::string original;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--sysroot" && i + 1 < args.size()) {
      original = args[++i];
      continue;
    }
    second.push_back(args[i]);
  }
  const auto b = run_command(second);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const json diff = json::diff(comparable(ja), comparable(with_root(b.out, capture, original)));
  EXPECT_TRUE(diff.empty()) << diff.dump(2);
}

TEST(CaptureTest, ThisHostAndItsCaptureGiveTheSameJson) {
  expect_round_trip({});
}

TEST(CaptureTest, AGeneratedContainerLayoutRoundTrips) {
  fixtures::Shape s;
  s.cores_per_node = 6;
  s.cgroup = fixtures::CgroupLayout::kV1;
  s.cgroup_chain = {fixtures::CgroupLevel{.name = "docker"},
                    fixtures::CgroupLevel{.name = "c1",
                                          .cpu_max = "150000 100000",
                                          .memory_max = "268435456",
                                          .cpuset_cpus = "1-4"}};
  s.cgroup_view.mount_level = 2;
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), s));
  expect_round_trip({"--sysroot", dir.path().string()});
  expect_round_trip({"--sysroot", dir.path().string(), "--cgroup", "/docker/c1"});
}

TEST(CaptureTest, HiddenNamespaceNamesRoundTrip) {
  fixtures::Shape s;
  s.cgroup_chain = {fixtures::CgroupLevel{.name = "a"},
                    fixtures::CgroupLevel{.name = "b", .cpu_max = "50000 100000"}};
  s.cgroup_view.namespace_level = 2;
  fixtures::TempDir dir;
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), s));
  expect_round_trip({"--sysroot", dir.path().string()});
}

TEST(CaptureTest, EveryRealMachineTreeRoundTrips) {
  const std::filesystem::path shared = HOSTFIT_SHARED_FIXTURES;
  if (!std::filesystem::is_directory(shared)) GTEST_SKIP() << "no " << shared;
  int trees = 0;
  for (const auto& entry : std::filesystem::directory_iterator(shared)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".tar.") == std::string::npos) continue;
    fixtures::TempDir dir;
    ASSERT_EQ(
        run_command({"tar", "-xf", entry.path().string(), "-C", dir.path().string()}).exit_code, 0);
    for (const auto& top : std::filesystem::directory_iterator(dir.path())) {
      SCOPED_TRACE(name);
      expect_round_trip({"--sysroot", top.path().string()});
      ++trees;
    }
  }
  EXPECT_GT(trees, 0);
}

TEST(CaptureTest, RefusesADirectoryThatIsNotEmpty) {
  fixtures::TempDir dir;
  std::filesystem::create_directory(dir.path() / "something");
  const auto r = run_command({HOSTFIT_BIN, "probe", "--capture", dir.path().string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("not an empty directory"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "something"));
}

TEST(CaptureTest, HoldsOnlyWhatTheProbeReads) {
  fixtures::TempDir work;
  const auto capture = work.path() / "c";
  ASSERT_EQ(run_command({HOSTFIT_BIN, "probe", "--capture", capture.string()}).exit_code, 0);
  // Files the probe never opens stay out: environment, fds, the rest of /proc.
  for (const char* absent : {"proc/self/environ", "proc/self/fd", "etc", "proc/1", "sys/block"}) {
    EXPECT_FALSE(std::filesystem::exists(capture / absent)) << absent;
  }
  EXPECT_TRUE(std::filesystem::exists(capture / "proc/self/mountinfo"));
  EXPECT_TRUE(std::filesystem::exists(capture / "sys/devices/system/cpu/online"));
}

}  // namespace
}  // namespace hostfit
