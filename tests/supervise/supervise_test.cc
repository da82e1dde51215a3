// supervise on this machine's real cgroups: real OOM kills, real signals, real exec failures.
// Each test runs in a uniquely named group removed by a guard; skipped when not root.
#include "hostfit/supervise.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

extern char** environ;

namespace hostfit {
namespace {

std::vector<std::string> environment() {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    env.emplace_back(*e);
  return env;
}

class SuperviseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    auto d = open_cgroup_driver(root_, probe_cgroups(root_, ProbeTarget::self()), {});
    if (!d) GTEST_SKIP() << "no usable cgroup hierarchy: " << d.error().message;
    driver_ = std::move(*d);
    if (auto p = driver_->prepare(); !p) GTEST_SKIP() << "cgroup parent: " << p.error().message;
  }

  // A fresh group with the given memory limit (0: none), removed at the end of the test.
  const Cgroup& group(uint64_t memory_bytes = 0) {
    const std::string name = "s-" + std::to_string(::getpid()) + "-" + std::to_string(++count_);
    auto g = driver_->create(name);
    EXPECT_TRUE(g) << g.error().message;
    guards_.push_back(std::make_unique<CgroupGuard>(*driver_, *g));
    if (memory_bytes) {
      EXPECT_TRUE(driver_->set_limits(*g, {.memory_max_bytes = memory_bytes}));
    }
    return guards_.back()->group();
  }

  RunRecord run(const Cgroup& g, std::vector<std::string> argv, SuperviseHooks hooks = {},
                std::chrono::milliseconds stop_timeout = std::chrono::seconds(10)) {
    SpawnSpec spec{.argv = std::move(argv), .env = environment(), .stop_timeout = stop_timeout};
    auto r = supervise(root_, *driver_, g, spec, hooks);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : RunRecord{};
  }

  Sysroot root_{"/"};
  std::unique_ptr<CgroupDriver> driver_;
  std::vector<std::unique_ptr<CgroupGuard>> guards_;
  int count_ = 0;
};

TEST_F(SuperviseTest, ExitCodeOfTheWorkloadIsReported) {
  const RunRecord r = run(group(), {"sh", "-c", "exit 3"});
  EXPECT_EQ(r.state, RunState::kExited);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.shell_exit_code(), 3);
  EXPECT_EQ(r.state_text(), "EXITED(3)");
}

TEST_F(SuperviseTest, AGroupTheChildCannotJoinIsAnErrorNotAFailedCommand) {
  const Cgroup& g = group();
  const CgroupDir* cpuset = g.dir_of("cpuset");
  if (cpuset == nullptr || cpuset->v2) GTEST_SKIP() << "needs the cgroup v1 cpuset controller";
  // A v1 cpuset group without CPUs takes no task: the child's write to cgroup.procs fails.
  std::ofstream(join_path(cpuset->dir, "cpuset.cpus")) << "\n";
  SpawnSpec spec{.argv = {"true"}, .env = environment()};
  auto r = supervise(root_, *driver_, g, spec);
  ASSERT_FALSE(r) << "state " << r->state_text();
  EXPECT_NE(r.error().message.find("cannot start the workload in its cgroup"), std::string::npos)
      << r.error().message;
}

// Issue 17 item 23: on v1 the child joins through "tasks" (itself alone, which the kernel does
// without its global threadgroup lock); it has one thread then, so the whole workload, every
// thread it starts after exec included, is in the group in every hierarchy.
TEST_F(SuperviseTest, EveryThreadOfTheWorkloadIsInItsGroupInEveryHierarchy) {
  const Cgroup& g = group();
  char out_template[] = "/tmp/hostfit-threads-XXXXXX";
  const int fd = ::mkstemp(out_template);
  ASSERT_GE(fd, 0);
  ::close(fd);
  const std::string out = out_template;
  SpawnSpec spec{.argv = {"python3", "-c",
                          "import glob, threading\n"
                          "e = threading.Event(); threading.Thread(target=e.wait).start()\n"
                          "for f in sorted(glob.glob('/proc/self/task/*/cgroup')):\n"
                          "    print(f.split('/')[4], open(f).read().replace('\\n', ' '))\n"
                          "e.set()"},
                 .env = environment(),
                 .stdout_path = out};
  auto r = supervise(root_, *driver_, g, spec);
  std::ifstream in(out);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  std::filesystem::remove(out);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->state_text(), "EXITED(0)");
  ASSERT_EQ(lines.size(), 2u);  // the main thread and the one still waiting
  for (const auto& line : lines) {
    for (const auto& d : g.dirs) {
      // "4:memory:/a/hostfit/s-1-1" (v1) or "0::/a/hostfit/s-1-1" (v2)
      const std::string entry = ":" + d.cgroup + " ";
      EXPECT_NE(line.find(entry), std::string::npos)
          << d.hierarchy << " " << entry << " in " << line;
    }
  }
}

// Issue 17 item 23: periodic work on the waiting thread (run's memory samples without
// --cache-limit) instead of a thread of its own.
TEST_F(SuperviseTest, OnTickRunsOnTheSupervisingThreadWhileTheWorkloadRuns) {
  int ticks = 0;
  bool elsewhere = false;
  const auto self = std::this_thread::get_id();
  SuperviseHooks hooks;
  hooks.tick_interval = std::chrono::milliseconds(20);
  hooks.on_tick = [&] {
    ++ticks;
    elsewhere |= std::this_thread::get_id() != self;
  };
  const RunRecord r = run(group(), {"sleep", "0.3"}, hooks);
  EXPECT_EQ(r.state_text(), "EXITED(0)");
  EXPECT_GE(ticks, 2);  // at 1 ms, then every 20 ms of 300
  EXPECT_FALSE(elsewhere);

  int untimed = 0;
  SuperviseHooks off;
  off.on_tick = [&] { ++untimed; };  // no interval: never called
  EXPECT_EQ(run(group(), {"sleep", "0.05"}, off).state_text(), "EXITED(0)");
  EXPECT_EQ(untimed, 0);
}

TEST_F(SuperviseTest, PythonOver64MiIsKilledByTheOomKiller) {
  const RunRecord r = run(group(64 << 20), {"python3", "-c", "bytearray(512 << 20)"});
  EXPECT_EQ(r.state_text(), "KILLED(OOM)") << r.oom_evidence;
  EXPECT_EQ(r.shell_exit_code(), 137);
  EXPECT_GE(r.oom_kills, 1u);
  ASSERT_TRUE(r.memory_peak_bytes);
  EXPECT_GE(*r.memory_peak_bytes, uint64_t{60} << 20);
  EXPECT_NE(r.oom_evidence.find("oom_kill"), std::string::npos);
}

TEST_F(SuperviseTest, KillMinus9FromOutsideIsASignalNotOom) {
  SuperviseHooks hooks;
  hooks.on_state = [](RunState s, pid_t pid) {
    if (s == RunState::kRunning) ::kill(pid, SIGKILL);
  };
  const RunRecord r = run(group(64 << 20), {"sleep", "30"}, hooks);
  EXPECT_EQ(r.state_text(), "KILLED(SIGNAL 9)");
  EXPECT_EQ(r.oom_kills, 0u);
  EXPECT_EQ(r.shell_exit_code(), 137);
}

TEST_F(SuperviseTest, ChildOomKilledWhileTheShellLivesIsAnEventAndTheRunExitsZero) {
  std::vector<OomEvent> seen;
  SuperviseHooks hooks;
  hooks.on_oom_event = [&](const OomEvent& e) { seen.push_back(e); };
  const RunRecord r = run(
      group(15 << 20), {"sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1; exit 0"}, hooks);
  EXPECT_EQ(r.state_text(), "EXITED(0)");
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.oom_kills, 1u);
  if (seen[0].pid != 0) {  // the kernel log was readable
    EXPECT_EQ(seen[0].comm, "dd");
    EXPECT_NE(seen[0].pid, r.pid);
  }
}

TEST_F(SuperviseTest, TwentyDdRunsOver15MiAreAllClassifiedOom) {
  const Cgroup& g = group(15 << 20);
  int oom = 0;
  for (int i = 0; i < 20; ++i) {
    const RunRecord r = run(g, {"dd", "if=/dev/zero", "of=/dev/null", "bs=20M"});
    oom += r.reason == KillReason::kOom;
  }
  EXPECT_EQ(oom, 20);
}

TEST_F(SuperviseTest, OomKillDisabledPausesInsteadAndNoOomIsReported) {
  const Cgroup& g = group(15 << 20);
  const CgroupDir* memory = g.dir_of("memory");
  ASSERT_NE(memory, nullptr);
  if (memory->v2) GTEST_SKIP() << "oom_kill_disable is cgroup v1 only";
  ASSERT_TRUE(root_.write(join_path(memory->dir, "memory.oom_control"), "1"));
  std::atomic<pid_t> main{0};
  std::atomic<bool> noticed{false};
  SuperviseHooks hooks;
  hooks.on_state = [&](RunState s, pid_t pid) {
    if (s == RunState::kRunning) main = pid;
  };
  hooks.on_notice = [&](const std::string&) {
    noticed = true;
    ::kill(main, SIGKILL);
  };
  // A safety net so a missing notice fails the test instead of hanging it.
  std::atomic<bool> done{false};
  std::thread net([&] {
    for (int i = 0; i < 200 && !done; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!done && main) ::kill(main, SIGKILL);
  });
  // The pages must be touched from user space: a fault inside read() (dd from /dev/zero) is not
  // paused by oom_kill_disable, the kernel fails it and dd sees a short read and exits 0.
  const RunRecord r = run(g, {"python3", "-c", "bytearray(64 << 20)"}, hooks);
  done = true;
  net.join();
  EXPECT_TRUE(noticed);
  EXPECT_EQ(r.state_text(), "KILLED(SIGNAL 9)");
  EXPECT_EQ(r.oom_kills, 0u);
}

TEST_F(SuperviseTest, MissingCommandFailsWith127) {
  const RunRecord r = run(group(), {"/nonexistent/hostfit-no-such-command"});
  EXPECT_EQ(r.state, RunState::kFailed);
  EXPECT_EQ(r.shell_exit_code(), 127);
  EXPECT_NE(r.failure.find("No such file or directory"), std::string::npos) << r.failure;
}

TEST_F(SuperviseTest, TermIsForwardedToTheWorkload) {
  SuperviseHooks hooks;
  hooks.on_state = [](RunState s, pid_t) {
    if (s == RunState::kRunning) ::pthread_kill(::pthread_self(), SIGTERM);
  };
  const RunRecord r = run(group(), {"sleep", "30"}, hooks);
  EXPECT_EQ(r.state_text(), "KILLED(SIGNAL 15)");
  EXPECT_EQ(r.shell_exit_code(), 143);
}

TEST_F(SuperviseTest, WorkloadIgnoringTermIsKilledAfterTheStopTimeout) {
  // The shell says when its trap is in place, so SIGTERM cannot arrive before it.
  const std::string ready = "/tmp/hostfit-supervise-ready-" + std::to_string(::getpid());
  ::unlink(ready.c_str());
  SuperviseHooks hooks;
  hooks.on_state = [&](RunState s, pid_t) {
    if (s != RunState::kRunning) return;
    for (int i = 0; i < 5000 && ::access(ready.c_str(), F_OK) != 0; ++i)
      ::usleep(1000);
    ::pthread_kill(::pthread_self(), SIGTERM);
  };
  const RunRecord r = run(group(), {"sh", "-c", "trap '' TERM; : > " + ready + "; sleep 30"}, hooks,
                          std::chrono::milliseconds(200));
  ::unlink(ready.c_str());
  EXPECT_EQ(r.state_text(), "KILLED(TIMEOUT)");
  EXPECT_EQ(r.signal, SIGKILL);
}

TEST(KmsgParseTest, ReadsPidCommAndCgroupOfAnOomKillRecord) {
  auto k = parse_kmsg_oom_kill(
      "6,432,7799174425,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=x,"
      "mems_allowed=0,oom_memcg=/a/hostfit/etl,task_memcg=/a/hostfit/etl,task=python3,pid=4242,"
      "uid=0\n SUBSYSTEM=x\n");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->pid, 4242);
  EXPECT_EQ(k->comm, "python3");
  EXPECT_EQ(k->task_memcg, "/a/hostfit/etl");
  EXPECT_EQ(k->time_us, 7799174425u);
  EXPECT_FALSE(parse_kmsg_oom_kill("6,1,2,-;Memory cgroup out of memory: Killed process 1 (x)"));
  EXPECT_FALSE(parse_kmsg_oom_kill("garbage"));
  EXPECT_FALSE(parse_kmsg_oom_kill("6,1,x,-;oom-kill:task=a,pid=1"));
  EXPECT_FALSE(parse_kmsg_oom_kill("6,1,2,-;oom-kill:task=a,pid=-1"));
}

// Issue 17 item 11: without a readable kernel log, a SIGKILL just after a child's OOM kill was
// reported as KILLED(OOM) (15 of 15 runs). The log alone can say who the victim was; without it
// the verdict is the signal, with the OOM kill in the group and an unknown victim.
TEST_F(SuperviseTest, SigkillAfterAChildsOomWithoutTheKernelLogIsNotCalledOom) {
  SpawnSpec spec{.argv = {"sh", "-c", "python3 -c 'bytearray(256 << 20)'; kill -9 $$"},
                 .env = environment(),
                 .kmsg_path = ""};
  for (int i = 0; i < 3; ++i) {
    auto r = supervise(root_, *driver_, group(32 << 20), spec);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->state_text(), "KILLED(SIGNAL 9)") << r->oom_evidence;
    EXPECT_NE(r->reason, KillReason::kOom);
    EXPECT_GE(r->oom_kills, 1u);
    // The shell dies within milliseconds of the child: its kill is the one left unattributed.
    // Under load the shell may outlive the victim grace period; then the kill is reported as an
    // unnamed event of another process. Either way the victim is never guessed.
    if (!r->oom_victim_unknown) {
      ASSERT_EQ(r->events.size(), 1u) << r->oom_evidence;
      EXPECT_EQ(r->events[0].pid, 0) << r->oom_evidence;
      continue;
    }
    EXPECT_NE(r->oom_evidence.find("the victim is unknown"), std::string::npos) << r->oom_evidence;
  }
}

// The same run with the kernel log: the child is named, and the SIGKILL is a plain signal.
TEST_F(SuperviseTest, SigkillAfterAChildsOomWithTheKernelLogNamesTheChild) {
  if (::access("/dev/kmsg", R_OK) != 0) GTEST_SKIP() << "/dev/kmsg is not readable here";
  const RunRecord r =
      run(group(32 << 20), {"sh", "-c", "python3 -c 'bytearray(256 << 20)'; kill -9 $$"});
  EXPECT_EQ(r.state_text(), "KILLED(SIGNAL 9)") << r.oom_evidence;
  if (r.events.empty() || r.events[0].pid == 0) {
    // The kernel rate-limits its "oom-kill:" summaries (10 per 5 s): after other tests' kills the
    // child may go unnamed. Then the truth is "unknown" (or an unnamed event when the shell
    // outlived the victim grace period under load), never OOM.
    EXPECT_TRUE(r.oom_victim_unknown || r.events.size() == 1) << r.oom_evidence;
    return;
  }
  EXPECT_FALSE(r.oom_victim_unknown) << r.oom_evidence;
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].comm, "python3");
}

TEST(KmsgParseTest, ReadsTheVictimOfAKilledProcessRecord) {
  auto k = parse_kmsg_killed_process(
      "3,1540,7799174500,-;Memory cgroup out of memory: Killed process 4242 (python3) "
      "total-vm:530000kB, anon-rss:64000kB, file-rss:0kB, shmem-rss:0kB, UID:0\n");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->pid, 4242);
  EXPECT_EQ(k->comm, "python3");
  EXPECT_EQ(k->time_us, 7799174500u);
  EXPECT_TRUE(parse_kmsg_killed_process("3,1,2,-;Out of memory: Killed process 7 (a b) x"));
  EXPECT_FALSE(parse_kmsg_killed_process("3,1,2,-;Killed process 7 (x)"));
  EXPECT_FALSE(parse_kmsg_killed_process("3,1,2,-;oom: Killed process 0 (x)"));
  EXPECT_FALSE(parse_kmsg_killed_process("3,1,2,-;oom: Killed process 7 (x"));
  EXPECT_FALSE(parse_kmsg_killed_process("garbage: Killed process 7 (x)"));
}

}  // namespace
}  // namespace hostfit
