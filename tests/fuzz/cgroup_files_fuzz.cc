// The cgroup and procfs files read as "key value" lines or lists: memory.stat, memory.events,
// memory.oom_control, memory.pressure, meminfo-like files, cgroup.procs.
#include "../../src/cgroup/driver.h"
#include "fuzz_input.h"
#include "hostfit/cache.h"
#include "hostfit/cgroup.h"
#include "hostfit/core.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostfit;
  const std::string_view text = fuzz::as_text(data, size);
  (void)parse_keyed_numbers(text);
  for (bool v2 : {false, true}) {
    (void)parse_oom_counters(text, v2);
    const auto b = parse_breakdown(text, uint64_t{1} << 30, v2);
    (void)b;
  }
  (void)parse_pressure(text);
  for (pid_t pid : cgroup_internal::parse_procs(text))
    FUZZ_CHECK(pid > 0);
  return 0;
}
