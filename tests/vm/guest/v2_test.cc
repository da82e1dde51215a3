// cgroup v2 only: the no-internal-processes rule with hostfit in a non-root group, --cache-limit
// by memory.high and memory.reclaim with tmpfs left alone, and the probe inside a real cgroup
// namespace.
#include <signal.h>
#include <sys/wait.h>

#include <thread>

#include "guest.h"

namespace hostfit::vm {
namespace {

namespace fs = std::filesystem;

// A cgroup directly under the v2 root for the test to put processes in; removed (with whatever
// hostfit left below it) at the end.
class ScratchGroup {
 public:
  explicit ScratchGroup(std::string name) : dir_("/sys/fs/cgroup/" + std::move(name)) {
    fs::create_directory(dir_);
  }
  ~ScratchGroup() {
    // Children first: the kernel removes only empty cgroups, one rmdir each.
    std::vector<fs::path> dirs;
    for (auto it =
             fs::recursive_directory_iterator(dir_, fs::directory_options::skip_permission_denied);
         it != fs::recursive_directory_iterator(); ++it) {
      if (it->is_directory()) dirs.push_back(it->path());
    }
    for (auto d = dirs.rbegin(); d != dirs.rend(); ++d)
      ::rmdir(d->c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& dir() const { return dir_; }
  std::string path() const { return dir_.substr(std::string("/sys/fs/cgroup").size()); }

 private:
  std::string dir_;
};

class V2Run : public ::testing::Test {
 protected:
  void SetUp() override { HOSTFIT_REQUIRE_GUEST("v2"); }
};

TEST_F(V2Run, HostfitInANonRootGroupMovesItselfIntoALeaf) {
  const std::string name = test_name();
  ScratchGroup svc("svc-" + name);
  // hostfit starts inside svc (as a service under systemd would), so enabling controllers for its
  // own children needs svc free of processes first.
  const std::string script = "echo $$ > " + svc.dir() + "/cgroup.procs && exec " + HOSTFIT_BIN +
                             " run --name " + name + " --memory 64Mi -- sh -c 'echo procs=$(cat " +
                             svc.dir() + "/cgroup.procs | wc -l); echo subtree=$(cat " + svc.dir() +
                             "/cgroup.subtree_control); cat /proc/self/cgroup'";
  const auto r = fixtures::run_command({"sh", "-c", script});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("procs=0\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("memory"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("0::" + svc.path() + "/hostfit/" + name + "\n"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(svc.dir() + "/hostfit/" + name));
}

TEST_F(V2Run, ASharedNonRootGroupIsRefusedWithItsPath) {
  const std::string name = test_name();
  ScratchGroup svc("svc-" + name);
  // Another process shares hostfit's group: hostfit must not move it, and says where and why.
  const std::string script = "echo $$ > " + svc.dir() +
                             "/cgroup.procs && sleep 60 & sleep_pid=$!; sleep 0.5; echo $$ > " +
                             svc.dir() + "/cgroup.procs && " + HOSTFIT_BIN + " run --name " + name +
                             " --memory 64Mi -- true; rc=$?; kill $sleep_pid; exit $rc";
  const auto r = fixtures::run_command({"sh", "-c", script});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(r.err.starts_with("hostfit: ")) << r.err;
  EXPECT_NE(r.err.find(svc.path()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--cgroup-parent"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(svc.dir() + "/hostfit/" + name));
}

class V2Cache : public ::testing::Test {
 protected:
  void SetUp() override {
    HOSTFIT_REQUIRE_GUEST("v2");
    disk_ = env_or("HOSTFIT_VM_DISK");
    if (disk_.empty()) GTEST_SKIP() << "shape " << shape() << " has no scratch disk (disk=)";
    file_ = disk_ + "/layer-" + test_name();
    // Written from the root group and dropped from the cache, so the workload's reads are the
    // only cache charged to its group.
    const auto w = fixtures::run_command(
        {"sh", "-c",
         "head -c 256M /dev/zero > " + file_ + " && sync && echo 3 > /proc/sys/vm/drop_caches"});
    ASSERT_EQ(w.exit_code, 0) << w.err;
  }
  void TearDown() override {
    if (!file_.empty()) fs::remove(file_);
  }
  // Runs a reader of the layer (twice, so its cache goes active) that also fills 48 MiB of tmpfs,
  // and returns the report's cache object.
  nlohmann::json read_layer(const std::vector<std::string>& cache_flags) {
    const std::string name = test_name(cache_flags.empty() ? "-free" : "-limited");
    const std::string report = "/tmp/" + name + ".json", shm = "/dev/shm/" + name;
    const std::string script = "head -c 48M /dev/urandom > " + shm + " && sum=$(md5sum < " + shm +
                               ") && cat " + file_ + " " + file_ +
                               " > /dev/null && [ \"$(md5sum < " + shm +
                               ")\" = \"$sum\" ] && echo tmpfs-intact; rm -f " + shm;
    // Each run starts from a cold cache: pages cached by an earlier reader stay charged to its
    // (removed) group and would never be charged to this one.
    EXPECT_EQ(
        fixtures::run_command({"sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"}).exit_code,
        0);
    std::vector<std::string> args = {"run", "--name", name, "--report", report};
    args.insert(args.end(), cache_flags.begin(), cache_flags.end());
    args.insert(args.end(), {"--", "sh", "-c", script});
    const auto r = hostfit(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "tmpfs-intact\n") << r.err;
    auto j = nlohmann::json::parse(slurp(report), nullptr, false);
    fs::remove(report);
    EXPECT_FALSE(j.is_discarded());
    return j.is_discarded() ? nlohmann::json{} : j["cache"];
  }
  std::string disk_, file_;
};

TEST_F(V2Cache, CacheLimitHoldsTheReadersCacheWithMemoryHighAndLeavesTmpfs) {
  constexpr uint64_t kMiB = 1 << 20;
  const auto free = read_layer({});
  // Without a budget the kernel keeps the whole layer cached in the group.
  EXPECT_GE(free["peak"]["reclaimable_file_bytes"].get<uint64_t>(), 200 * kMiB) << free.dump();

  const auto held = read_layer({"--cache-limit", "32Mi", "--cache-interval", "20ms"});
  // The kernel holds the bound (memory.high at own memory + budget); memory.reclaim takes the rest.
  EXPECT_EQ(held["method"], "memory.high") << held.dump();
  EXPECT_GT(held["holds"].get<uint64_t>(), 0u) << held.dump();
  EXPECT_EQ(held["limit_bytes"], 32 * kMiB);
  EXPECT_GT(held["reclaims"].get<uint64_t>(), 0u) << held.dump();
  // Near the budget: what one sampling interval of reading can add over it, not the layer.
  EXPECT_LE(held["peak"]["reclaimable_file_bytes"].get<uint64_t>(), 96 * kMiB) << held.dump();
  EXPECT_LE(held["last"]["reclaimable_file_bytes"].get<uint64_t>(), 48 * kMiB) << held.dump();
  // tmpfs is never what gets reclaimed: all 48 MiB stayed charged and intact (checked in-guest).
  EXPECT_GE(held["peak"]["shmem_bytes"].get<uint64_t>(), 48 * kMiB) << held.dump();
  EXPECT_EQ(held["errors"], 0) << held.dump();
}

// The registry mirror as a service hostfit did not create: a group made by hand, `hostfit attach`
// holding its cache, a reader inside; then SIGINT puts back every limit it changed.
TEST_F(V2Cache, AttachHoldsAGroupItDidNotCreateAndRestoresItsLimits) {
  constexpr uint64_t kMiB = 1 << 20;
  ScratchGroup svc("svc-" + test_name());
  std::ofstream(svc.dir() + "/memory.max") << "1073741824";
  const std::string high_before = slurp(svc.dir() + "/memory.high");
  const std::string max_before = slurp(svc.dir() + "/memory.max");
  const std::string report = "/tmp/" + test_name() + ".json", stat = report + ".stat";
  EXPECT_EQ(
      fixtures::run_command({"sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"}).exit_code, 0);
  const std::string bin(HOSTFIT_BIN);
  const std::string script = bin + " attach --cgroup " + svc.path() +
                             " --cache-limit 32Mi --cache-interval 20ms --report " + report +
                             " & a=$!; sleep 1; sh -c 'echo $$ > " + svc.dir() +
                             "/cgroup.procs && exec cat " + file_ + " " + file_ +
                             " > /dev/null' && " + bin + " stat " + svc.path() + " -o json > " +
                             stat + "; kill -INT $a; wait $a";
  const auto r = fixtures::run_command({"sh", "-c", script});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("holding the page cache of " + svc.path() + " (v2"), std::string::npos)
      << r.out;

  const auto held = nlohmann::json::parse(slurp(report), nullptr, false);
  fs::remove(report);
  ASSERT_FALSE(held.is_discarded());
  EXPECT_EQ(held["method"], "memory.high") << held.dump();
  EXPECT_EQ(held["restored"], true) << held.dump();
  EXPECT_GT(held["reclaims"].get<uint64_t>() + held["holds"].get<uint64_t>(), 0u) << held.dump();
  EXPECT_LE(held["peak"]["reclaimable_file_bytes"].get<uint64_t>(), 96 * kMiB) << held.dump();
  // Byte for byte what the group had before hostfit came.
  EXPECT_EQ(slurp(svc.dir() + "/memory.high"), high_before);
  EXPECT_EQ(slurp(svc.dir() + "/memory.max"), max_before);

  // stat reads the group's own PSI on v2, not the system's.
  const auto s = nlohmann::json::parse(slurp(stat), nullptr, false);
  fs::remove(stat);
  ASSERT_FALSE(s.is_discarded());
  EXPECT_EQ(s["version"], "v2");
  EXPECT_EQ(s["pressure"]["scope"], "cgroup") << s.dump();
  EXPECT_EQ(s["pressure"]["source"], svc.dir() + "/memory.pressure") << s.dump();
}

class V2Namespace : public ::testing::Test {
 protected:
  void SetUp() override { HOSTFIT_REQUIRE_GUEST("v2"); }
};

// As Docker and containerd do on cgroup v2: the container's limits on its cgroup, a private cgroup
// namespace, and cgroup2 mounted afresh at /sys/fs/cgroup, so the limits sit at the mount root and
// /proc/self/cgroup says 0::/.
// Before the probe read the mount root as a level, it reported 2 CPUs and no memory limit here.
TEST_F(V2Namespace, ProbeInAPrivateNamespaceReportsTheContainersLimits) {
  ScratchGroup ctr("ctr-" + test_name());
  std::ofstream(ctr.dir() + "/cpu.max") << "150000 100000";
  std::ofstream(ctr.dir() + "/memory.max") << "268435456";
  const std::string script = "echo $$ > " + ctr.dir() +
                             "/cgroup.procs && exec unshare --cgroup --mount sh -c "
                             "'umount /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && "
                             "cat /proc/self/cgroup && "
                             "exec " +
                             std::string(HOSTFIT_BIN) + " probe -o json'";
  const auto r = fixtures::run_command({"sh", "-c", script});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(r.out.starts_with("0::/\n")) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(5), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_DOUBLE_EQ(j["cpu"]["effective"].get<double>(), 1.5) << j["cpu"].dump();
  EXPECT_EQ(j["memory"]["limit_bytes"], 268435456) << j["memory"].dump();
}

}  // namespace
}  // namespace hostfit::vm
