// The kernel files a probe reads, end to end through a Sysroot: each NUL-separated field of the
// input becomes one file of a small hybrid-mode tree (see kFiles), then the cgroup, CPU and memory
// probes run on it and a plan is made from what they found.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fuzz_input.h"
#include "hostfit/plan.h"
#include "hostfit/probe.h"

namespace {

// In the order the fields fill them; the seed corpus follows the same order.
constexpr const char* kFiles[] = {
    "/proc/self/mountinfo",
    "/proc/self/cgroup",
    "/proc/meminfo",
    "/proc/self/status",
    "/proc/self/limits",
    "/sys/fs/cgroup/unified/a/cpu.max",
    "/sys/fs/cgroup/unified/a/memory.max",
    "/sys/fs/cgroup/unified/a/memory.high",
    "/sys/fs/cgroup/unified/a/cpuset.cpus.effective",
    "/sys/fs/cgroup/unified/a/pids.max",
    "/sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_quota_us",
    "/sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_period_us",
    "/sys/fs/cgroup/memory/a/memory.limit_in_bytes",
    "/sys/fs/cgroup/cpuset/a/cpuset.effective_cpus",
    "/sys/devices/system/cpu/online",
    "/proc/cpuinfo",
    "/sys/fs/cgroup/unified/cgroup.controllers",
};
constexpr size_t kFileCount = sizeof kFiles / sizeof kFiles[0];

// One tree per process, removed at exit.
const std::filesystem::path& tree() {
  static const std::filesystem::path dir = [] {
    std::string tmpl = (std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp");
    tmpl += "/hostfit-fuzz-XXXXXX";
    if (!::mkdtemp(tmpl.data())) std::abort();
    for (const char* file : kFiles)
      std::filesystem::create_directories(std::filesystem::path(tmpl + file).parent_path());
    static const std::string keep = tmpl;
    std::atexit([] { std::filesystem::remove_all(keep); });
    return std::filesystem::path(tmpl);
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostfit;
  const auto f = fuzz::fields(fuzz::as_text(data, size), kFileCount);
  const std::string root = tree().string();
  for (size_t i = 0; i < kFileCount; ++i) {
    const std::string path = root + kFiles[i];
    if (i < f.size()) {
      std::ofstream(path, std::ios::binary | std::ios::trunc).write(f[i].data(), f[i].size());
    } else {
      std::filesystem::remove(path);
    }
  }
  const Sysroot sysroot(root);
  HostFacts facts;
  facts.target = ProbeTarget::self();
  facts.cgroup = probe_cgroups(sysroot, facts.target);
  facts.cpu = probe_cpus(sysroot, facts.target, facts.cgroup);
  facts.memory = probe_memory(sysroot, facts.target);
  FUZZ_CHECK(facts.cpu.effective >= 0 && facts.cpu.effective_integer >= 1);
  // As every printer of hostfit's does: bytes that are not UTF-8 must not throw.
  (void)to_json(facts, true).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  for (uint64_t instances : {uint64_t{0}, uint64_t{8}}) {
    WorkloadShape shape;
    shape.instances_per_worker = instances;
    if (auto plan = make_plan(facts, shape)) {
      FUZZ_CHECK(plan->workers >= 1);
      (void)to_json(*plan).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      for (const auto& [key, value] : plan_environment(*plan))
        (void)value;
    }
  }
  return 0;
}
