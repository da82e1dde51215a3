// /proc/PID/mountinfo and /proc/mounts as the probe reads them, and where a cgroup lies below a
// mount's root (fields: the table, then a mount root and a cgroup path).
#include "../../src/probe/mounts.h"
#include "fuzz_input.h"
#include "hostfit/probe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostfit;
  const auto f = fuzz::fields(fuzz::as_text(data, size), 3);
  for (auto table : {MountTable::kMountInfo, MountTable::kProcMounts}) {
    for (const auto& m : parse_cgroup_mounts(f[0], table)) {
      FUZZ_CHECK(!m.mount_point.empty());
      if (f.size() > 2) (void)m.locate(f[2]);
    }
  }
  (void)unescape_mount_field(f[0]);
  if (f.size() > 2) {
    const auto p = place_below(f[1], f[2]);
    FUZZ_CHECK(p.visible || !p.why.empty());
    (void)cgroup_ancestors(f[2]);
    if (auto ns = parse_ns_path(f[2])) (void)to_string(*ns);
  }
  return 0;
}
