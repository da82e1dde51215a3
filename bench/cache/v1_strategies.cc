// The two ways to hold a page-cache budget on cgroup v1, measured side by side on this machine:
//   events: hostfit's CacheController (usage threshold at other memory + budget, reclaim by a
//           memory.limit_in_bytes lowered for one write, then restored);
//   held:   memory.limit_in_bytes kept at other memory + budget + margin, raised as other memory
//           grows, seen by sampling memory.stat every 10 ms (v1 has no event for anon growth).
// Two scenarios in a scratch group under this process's memory cgroup: a 512 MiB file read twice
// with cat under a 1 GiB limit, and anon memory jumping by 200 MiB (three times) while cat
// fills the cache under a 320 MiB limit. Prints one Markdown table. Usage: v1_strategies DIR
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "hostfit/cache.h"
#include "hostfit/probe.h"

namespace {

using namespace hostfit;
using namespace std::chrono_literals;
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kBudget = 64 * kMiB;
constexpr uint64_t kMargin = 16 * kMiB;

uint64_t thread_cpu_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

void drop_cache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

struct Group {
  Sysroot root{"/"};
  std::string dir;
  uint64_t oom_kills() const {
    auto text = root.read(join_path(dir, "memory.oom_control"));
    return text ? parse_keyed_numbers(*text)["oom_kill"] : 0;
  }
};

// Runs `sh -c script` inside the group; returns its exit code (128 + signal).
int run_in(const Group& g, const std::string& script) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!g.root.write(join_path(g.dir, "cgroup.procs"), "0")) ::_exit(90);
    ::execlp("sh", "sh", "-c", script.c_str(), nullptr);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A strategy runs on its own thread until `stop`; it reports its CPU time and kernel writes.
struct StrategyResult {
  uint64_t cpu_us = 0;
  uint64_t writes = 0;  // limit writes (held) or reclaim steps (events)
  uint64_t wakeups = 0;
};
using Strategy = std::function<StrategyResult(const Group&, std::atomic<bool>& stop)>;

StrategyResult events_strategy(const Group& g, std::atomic<bool>& stop) {
  auto c = CacheController::open(g.root, {g.dir, false, {}, {}}, {.limit_bytes = kBudget});
  if (!c) return {};
  (*c)->start();
  while (!stop)
    std::this_thread::sleep_for(5ms);
  (void)(*c)->stop();
  return {(*c)->stats().cpu_us, (*c)->stats().reclaims, (*c)->stats().events};
}

StrategyResult held_strategy(const Group& g, std::atomic<bool>& stop) {
  const std::string limit_file = join_path(g.dir, "memory.limit_in_bytes");
  const std::string original = g.root.read(limit_file).value_or("-1");
  const uint64_t user_limit = parse_u64(trim(original)).value_or(UINT64_MAX);
  StrategyResult r;
  const uint64_t cpu0 = thread_cpu_us();
  uint64_t held = 0;
  while (!stop) {
    if (auto m = read_breakdown(g.root, g.dir, false)) {
      const uint64_t clean = m->reclaimable_file_bytes > m->dirty_bytes + m->writeback_bytes
                                 ? m->reclaimable_file_bytes - m->dirty_bytes - m->writeback_bytes
                                 : 0;
      uint64_t want = (m->usage_bytes - std::min(m->usage_bytes, clean)) + kBudget + kMargin;
      want = std::min((want + 4095) / 4096 * 4096, user_limit);
      const uint64_t moved = want > held ? want - held : held - want;
      if (moved > kMiB && g.root.write(limit_file, std::to_string(want))) {
        held = want;
        ++r.writes;
      }
    }
    ++r.wakeups;
    std::this_thread::sleep_for(10ms);
  }
  (void)g.root.write(limit_file, original);
  r.cpu_us = thread_cpu_us() - cpu0;
  return r;
}

struct Outcome {
  uint64_t peak_cache = 0;
  double seconds = 0;
  uint64_t oom_kills = 0;
  int exit_code = 0;
  StrategyResult strategy;
};

Outcome measure(const Group& g, const Strategy& strategy, const std::string& script) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> peak{0};
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling) {
      if (auto m = read_breakdown(g.root, g.dir, false))
        peak = std::max<uint64_t>(peak, m->reclaimable_file_bytes);
      std::this_thread::sleep_for(10ms);
    }
  });
  StrategyResult sr;
  std::thread controller;
  if (strategy) controller = std::thread([&] { sr = strategy(g, stop); });
  std::this_thread::sleep_for(50ms);
  const uint64_t kills_before = g.oom_kills();
  const auto t0 = std::chrono::steady_clock::now();
  Outcome o;
  o.exit_code = run_in(g, script);
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  o.oom_kills = g.oom_kills() - kills_before;
  stop = true;
  if (controller.joinable()) controller.join();
  sampling = false;
  sampler.join();
  o.peak_cache = peak;
  o.strategy = sr;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: v1_strategies DIR (a directory on a real disk)\n");
    return 2;
  }
  const Sysroot root("/");
  const CgroupFacts facts = probe_cgroups(root, ProbeTarget::self());
  const ControllerPath* memory = facts.find("memory");
  if (memory == nullptr || memory->v2 || ::geteuid() != 0) {
    std::printf("(skipped: needs root and the cgroup v1 memory controller)\n");
    return 0;
  }
  const std::string file = std::string(argv[1]) + "/v1-strategies.bin";
  {
    std::vector<char> block(kMiB);
    uint64_t x = 88172645463325252ull;
    FILE* out = std::fopen(file.c_str(), "wb");
    if (out == nullptr) return 1;
    for (int i = 0; i < 512; ++i) {
      for (size_t j = 0; j < block.size(); j += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::memcpy(block.data() + j, &x, 8);
      }
      std::fwrite(block.data(), 1, block.size(), out);
    }
    std::fclose(out);
    ::sync();
  }
  Group g;
  g.dir = join_path(memory->dir, "hostfit-v1-strategies-" + std::to_string(::getpid()));
  if (!root.make_dir(g.dir)) return 1;
  const std::string read_twice = "cat '" + file + "' '" + file + "' >/dev/null";
  const std::string anon_step =
      "cat '" + file + "' '" + file +
      "' >/dev/null & python3 -c \"import time\ntime.sleep(0.2)\nfor _ in range(3):\n    b = "
      "b'x' * (200 << 20)\n    time.sleep(0.3)\n    del b\n    time.sleep(0.2)\n\"; wait";

  std::printf(
      "| v1 strategy | peak cache, 512 MiB read twice (MiB) | read MiB/s | controller CPU (ms) "
      "| kernel wake-ups / limit writes | OOM kills, 200 MiB anon steps under 320 MiB (3 "
      "runs x 3 steps) |\n|---|---:|---:|---:|---:|---:|\n");
  const std::vector<std::pair<const char*, Strategy>> strategies = {
      {"none (no budget)", nullptr},
      {"events: threshold + limit lowered for one write (chosen)", events_strategy},
      {"held: limit kept at other + budget + 16 MiB, 10 ms sampling", held_strategy},
  };
  for (const auto& [label, strategy] : strategies) {
    (void)root.write(join_path(g.dir, "memory.limit_in_bytes"), std::to_string(1024 * kMiB));
    drop_cache(file);
    const Outcome read = measure(g, strategy, read_twice);
    uint64_t kills = 0;
    std::string steps = "-";
    if (strategy) {
      (void)root.write(join_path(g.dir, "memory.limit_in_bytes"), std::to_string(320 * kMiB));
      for (int run = 0; run < 3; ++run) {
        drop_cache(file);
        kills += measure(g, strategy, anon_step).oom_kills;
      }
      steps = std::to_string(kills);
    }
    drop_cache(file);
    std::printf("| %s | %llu | %.0f | %.0f | %llu / %llu | %s |\n", label,
                static_cast<unsigned long long>(read.peak_cache / kMiB),
                2.0 * 512 / std::max(read.seconds, 1e-6),
                static_cast<double>(read.strategy.cpu_us) / 1000.0,
                static_cast<unsigned long long>(read.strategy.wakeups),
                static_cast<unsigned long long>(read.strategy.writes), steps.c_str());
    std::fflush(stdout);
  }
  drop_cache(file);
  std::remove(file.c_str());
  for (int i = 0; i < 200 && !root.remove_dir(g.dir); ++i)
    std::this_thread::sleep_for(10ms);
  return 0;
}
