// The daemon's placements and other tools' pins. Its own binary, run alone (SERIAL): the pin it
// makes is a process every placement on the host sees, and other tests' pinned processes would
// change which CPU is free.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include <thread>

#include "command.h"
#include "daemon_harness.h"
#include "hostfit/place.h"
#include "hostfit/probe.h"

namespace hostfit {
namespace {

using testing::DaemonProcess;
using testing::json;

class DaemonPinsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    daemon_ = std::make_unique<DaemonProcess>("pins");
  }
  DaemonProcess& d() { return *daemon_; }
  std::unique_ptr<DaemonProcess> daemon_;
};

// The daemon places around other tools' pins as `hostfit place` does, and `hostfit place --show`
// reads the daemon's ledger when a daemon runs.
TEST_F(DaemonPinsTest, DaemonPlacementsAvoidForeignPinsAndPlaceShowAsksTheDaemon) {
  const HostFacts self = probe_host(Sysroot("/"), ProbeTarget::self());
  const CpuSet placeable = placeable_cpus(self);
  if (placeable.count() < 2) GTEST_SKIP() << "needs 2 placeable CPUs";
  ASSERT_TRUE(d().start()) << d().log();
  const int pinned_cpu = placeable.first();
  // Another tool's pin: a process whose affinity is one CPU (as `taskset -c N` leaves it).
  const pid_t pinned = ::fork();
  if (pinned == 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(pinned_cpu, &set);
    ::sched_setaffinity(0, sizeof set, &set);
    ::execlp("sleep", "sleep", "60", nullptr);
    ::_exit(127);
  }
  ASSERT_GT(pinned, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // exec'd, affinity set
  auto placed = d().call("POST", "/v1/placements", {{"owner", "batch"}, {"cpus", 1}});
  ::kill(pinned, SIGKILL);
  ::waitpid(pinned, nullptr, 0);
  ASSERT_EQ(placed.status, 201) << placed.body;
  EXPECT_NE(placed.json()["cpus"], std::to_string(pinned_cpu))
      << "placed on the CPU another process is pinned to: " << placed.body;

  const std::vector<std::string> env = {"HOSTFIT_SOCKET=" + d().socket(), "HOSTFIT_LEDGER="};
  auto show = fixtures::run_command({HOSTFIT_BIN, "place", "--show", "-o", "json"}, env);
  ASSERT_EQ(show.exit_code, 0) << show.err;
  const json j = json::parse(show.out);
  EXPECT_EQ(j["ledger"], "daemon " + d().socket()) << show.out;
  bool batch = false;
  for (const auto& n : j["nodes"]) {
    if (n["holders"].contains("batch")) batch = true;
  }
  EXPECT_TRUE(batch) << show.out;
}

}  // namespace
}  // namespace hostfit
