// One /dev/kmsg record, as the supervisor reads OOM kills from it.
#include "fuzz_input.h"
#include "hostfit/supervise.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (auto kill = hostfit::parse_kmsg_oom_kill(hostfit::fuzz::as_text(data, size))) {
    FUZZ_CHECK(kill->pid > 0);
  }
  return 0;
}
