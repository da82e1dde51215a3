// Acceptance of the kernel-held cache budget on this machine's real memory cgroup: a 512 MiB file
// read twice with cat under `hostfit run --cache-limit`, the same under `hostfit attach` on a
// group made by hand (its limits restored byte for byte), and anon memory jumping by 200 MiB
// while a reader fills the cache. Peaks are sampled from outside hostfit every 50 ms.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "command.h"
#include "hostfit/cache.h"
#include "hostfit/probe.h"
#include "scratch_group.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kFileBytes = 512 * kMiB;

// This process's memory cgroup, where `hostfit run` makes "hostfit/NAME" and tests make groups.
struct Host {
  Sysroot root{"/"};
  std::string own_dir;
  std::string own_cgroup;
  bool v2 = false;
  bool usable = false;

  Host() {
    const CgroupFacts facts = probe_cgroups(root, ProbeTarget::self());
    const ControllerPath* memory = facts.find("memory");
    if (memory == nullptr || ::geteuid() != 0) return;
    own_dir = memory->dir;
    own_cgroup = memory->cgroup;
    v2 = memory->v2;
    usable = true;
  }
};

using testing_cache::drop_cache;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
}

// Samples a group's reclaimable page cache every 50 ms from outside hostfit; a group that does
// not exist yet (or any more) is skipped.
class OutsideSampler {
 public:
  OutsideSampler(const Host& host, std::string dir)
      : thread_([this, &host, dir = std::move(dir)] {
          while (!stop_) {
            if (auto m = read_breakdown(host.root, dir, host.v2)) {
              max_ = std::max<uint64_t>(max_, m->reclaimable_file_bytes);
              ++samples_;
            }
            std::this_thread::sleep_for(50ms);
          }
        }) {}
  ~OutsideSampler() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t max() const { return max_; }
  int samples() const { return samples_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> max_{0};
  std::atomic<int> samples_{0};
  std::thread thread_;
};

// A process started with its stdout on a pipe, optionally joining a cgroup before exec.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& procs_file = "") {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      const int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, STDIN_FILENO);
      if (!procs_file.empty()) {
        const int fd = ::open(procs_file.c_str(), O_WRONLY);
        if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(90);
        ::close(fd);
      }
      std::vector<char*> args;
      for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    ::close(out[1]);
    out_ = out[0];
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
  }
  pid_t pid() const { return pid_; }
  // The first line of stdout, waiting up to `timeout` ("" on timeout or end of file).
  std::string first_line(std::chrono::milliseconds timeout) {
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char c;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      if (::read(out_, &c, 1) != 1) break;
      if (c == '\n') return line;
      line += c;
    }
    return line;
  }
  std::string rest() {
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out_, buf, sizeof buf)) > 0)
      text.append(buf, static_cast<size_t>(n));
    return text;
  }
  // The exit code (128 + signal), or -1 when it did not end within `timeout`.
  int wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool reaped_ = false;
};

// One 512 MiB file in a temporary directory on the real disk, and the sha256 of it read twice.
class CacheBudgetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fixtures::TempDir();
    file_ = (dir_->path() / "layer.bin").string();
    testing_cache::write_random_file(file_, kFileBytes, 15);
    twice_sha_ =
        fixtures::run_command({"sh", "-c", "cat '" + file_ + "' '" + file_ + "' | sha256sum"})
            .out.substr(0, 64);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!host_.usable) GTEST_SKIP() << "needs root and a memory cgroup controller";
    if (twice_sha_.size() != 64) GTEST_SKIP() << "sha256sum is not available";
    if (const auto why = testing_cache::drop_to_cold(file_, kFileBytes); !why.empty())
      GTEST_SKIP() << why;
  }
  void TearDown() override {
    if (!file_.empty()) drop_cache(file_);
  }
  std::string cat_twice() const { return "cat '" + file_ + "' '" + file_ + "' | sha256sum"; }
  std::string report_path(const std::string& name) const {
    return (dir_->path() / (name + ".json")).string();
  }

  // `hostfit run --memory 1Gi --cache-limit BUDGET` reading the file twice: peak cache sampled
  // from outside at most `bound`, no OOM kill, the bytes read unchanged.
  void run_and_check(const std::string& budget, uint64_t bound) {
    const std::string name = "cache-budget-" + budget + "-" + std::to_string(::getpid());
    OutsideSampler sampler(host_, join_path(join_path(host_.own_dir, "hostfit"), name));
    const auto r = fixtures::run_command({HOSTFIT_BIN, "run", "--name", name, "--memory", "1Gi",
                                          "--cache-limit", budget, "--report", report_path(name),
                                          "--", "sh", "-c", cat_twice()});
    sampler.stop();
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.substr(0, 64), twice_sha_) << r.out;
    const auto report = read_json(report_path(name));
    ASSERT_TRUE(report.contains("cache")) << report.dump(2);
    EXPECT_EQ(report["oom_kills"], 0);
    EXPECT_GT(report["cache"]["reclaims"].get<uint64_t>(), 0u);
    ASSERT_GE(sampler.samples(), 5);
    EXPECT_LE(sampler.max(), bound) << "budget " << budget << ": peak " << sampler.max() / kMiB
                                    << " MiB over " << sampler.samples() << " samples";
    std::cout << "--cache-limit " << budget << ": peak cache " << sampler.max() / kMiB
              << " MiB sampled from outside (" << sampler.samples() << " samples), "
              << report["cache"]["events"] << " kernel wake-ups, " << report["cache"]["reclaims"]
              << " reclaims, controller CPU " << report["cache"]["cpu_ms"] << " ms, "
              << report["duration_s"] << " s\n";
  }

  static fixtures::TempDir* dir_;
  static std::string file_;
  static std::string twice_sha_;
  Host host_;
};
fixtures::TempDir* CacheBudgetTest::dir_ = nullptr;
std::string CacheBudgetTest::file_;
std::string CacheBudgetTest::twice_sha_;

TEST_F(CacheBudgetTest, CatTwiceUnder64MiBPeaksAtMost96MiBWithoutOomKill) {
  run_and_check("64Mi", 96 * kMiB);
}

TEST_F(CacheBudgetTest, CatTwiceUnder16MiBPeaksAtMost48MiBWithoutOomKill) {
  run_and_check("16Mi", 48 * kMiB);
}

// The limit files of a group, exactly as the kernel prints them.
std::map<std::string, std::string> limit_files(const Host& host, const std::string& dir) {
  const std::vector<std::string> names =
      host.v2 ? std::vector<std::string>{"memory.high", "memory.max", "memory.low", "memory.min",
                                         "memory.swap.max"}
              : std::vector<std::string>{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                                         "memory.soft_limit_in_bytes", "memory.swappiness",
                                         "memory.oom_control"};
  std::map<std::string, std::string> files;
  for (const auto& name : names) {
    if (auto text = host.root.read(join_path(dir, name))) files[name] = *text;
  }
  return files;
}

// A group made by hand next to this test's own, removed at the end.
class HandMadeGroup {
 public:
  explicit HandMadeGroup(const Host& host, const std::string& name) : host_(host) {
    cgroup_ = join_path(host.own_cgroup, name);
    dir_ = join_path(host.own_dir, name);
    ok_ = static_cast<bool>(host.root.make_dir(dir_));
  }
  ~HandMadeGroup() { remove(); }
  void remove() {
    for (int i = 0; i < 200 && host_.root.is_dir(dir_); ++i) {
      if (host_.root.remove_dir(dir_)) break;
      std::this_thread::sleep_for(10ms);
    }
  }
  bool ok() const { return ok_; }
  const std::string& cgroup() const { return cgroup_; }
  const std::string& dir() const { return dir_; }

 private:
  const Host& host_;
  std::string cgroup_, dir_;
  bool ok_ = false;
};

TEST_F(CacheBudgetTest, AttachedHandMadeGroupKeepsTheBoundAndGetsItsLimitsBackByteForByte) {
  HandMadeGroup group(host_, "hostfit-attach-test-" + std::to_string(::getpid()));
  ASSERT_TRUE(group.ok());
  // Limits a person might have set: 1 GiB + 3 pages (not a round number), a soft limit.
  const std::string limit = std::to_string(1024 * kMiB + 3 * 4096);
  if (host_.v2) {
    ASSERT_TRUE(host_.root.write(join_path(group.dir(), "memory.max"), limit));
  } else {
    ASSERT_TRUE(host_.root.write(join_path(group.dir(), "memory.limit_in_bytes"), limit));
    ASSERT_TRUE(host_.root.write(join_path(group.dir(), "memory.soft_limit_in_bytes"),
                                 std::to_string(512 * kMiB)));
  }
  const auto before = limit_files(host_, group.dir());
  ASSERT_FALSE(before.empty());

  const std::string report = report_path("attach");
  Child attach({HOSTFIT_BIN, "attach", "--cgroup", group.cgroup(), "--cache-limit", "64Mi",
                "--report", report});
  ASSERT_NE(attach.first_line(10s).find("holding the page cache of " + group.cgroup()),
            std::string::npos);
  OutsideSampler sampler(host_, group.dir());
  Child reader({"sh", "-c", cat_twice()}, join_path(group.dir(), "cgroup.procs"));
  ASSERT_EQ(reader.wait(300s), 0);
  const std::string sum = reader.rest();
  sampler.stop();
  ASSERT_EQ(::kill(attach.pid(), SIGINT), 0);
  ASSERT_EQ(attach.wait(10s), 0);

  EXPECT_EQ(sum.substr(0, 64), twice_sha_);
  EXPECT_LE(sampler.max(), 96 * kMiB) << sampler.samples() << " samples";
  const auto j = read_json(report);
  EXPECT_GT(j["reclaims"].get<uint64_t>(), 0u) << j.dump(2);
  EXPECT_EQ(j["restored"], true);
  const auto events =
      host_.root.read(join_path(group.dir(), host_.v2 ? "memory.events" : "memory.oom_control"));
  ASSERT_TRUE(events);
  EXPECT_EQ(parse_keyed_numbers(*events)["oom_kill"], 0u);
  EXPECT_EQ(limit_files(host_, group.dir()), before);
  std::cout << "attach --cache-limit 64Mi: peak cache " << sampler.max() / kMiB
            << " MiB sampled from outside, " << j["reclaims"] << " reclaims\n";
}

TEST(AttachTest, EndsByItselfWhenTheGroupIsGone) {
  const Host host;
  if (!host.usable) GTEST_SKIP() << "needs root and a memory cgroup controller";
  HandMadeGroup group(host, "hostfit-attach-gone-" + std::to_string(::getpid()));
  ASSERT_TRUE(group.ok());
  Child attach({HOSTFIT_BIN, "attach", "--cgroup", group.cgroup(), "--cache-limit", "16Mi",
                "--cache-interval", "20ms"});
  ASSERT_NE(attach.first_line(10s).find("holding"), std::string::npos);
  group.remove();
  EXPECT_EQ(attach.wait(10s), 0);
}

TEST_F(CacheBudgetTest, AnonJumpingBy200MiBWhileAReaderFillsTheCacheIsNotOomKilled) {
  if (fixtures::run_command({"python3", "-c", "pass"}).exit_code != 0)
    GTEST_SKIP() << "python3 is not available";
  const std::string name = "cache-anon-step-" + std::to_string(::getpid());
  // python3 (about 10 MiB) + 200 MiB of anon + the 64 MiB budget fit in 320 MiB.
  const std::string grow =
      "import time\n"
      "time.sleep(0.2)\n"
      "for _ in range(3):\n"
      "    b = b'x' * (200 << 20)\n"
      "    time.sleep(0.3)\n"
      "    del b\n"
      "    time.sleep(0.2)\n";
  const auto r = fixtures::run_command(
      {HOSTFIT_BIN, "run", "--name", name, "--memory", "320Mi", "--cache-limit", "64Mi", "--report",
       report_path(name), "--", "sh", "-c",
       "cat '" + file_ + "' '" + file_ + "' >/dev/null & python3 -c \"" + grow + "\"; wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto report = read_json(report_path(name));
  EXPECT_EQ(report["state"], "EXITED") << report.dump(2);
  EXPECT_EQ(report["oom_kills"], 0);
  EXPECT_GE(report["cache"]["peak"]["anon_bytes"].get<uint64_t>(), 200 * kMiB);
  EXPECT_GT(report["cache"]["reclaims"].get<uint64_t>(), 0u);
}

}  // namespace
}  // namespace hostfit
