// Names a person gives: workload names, --cgroup paths, placement words, and the escaping of any
// text hostfit echoes back (messages, JSON).
#include <nlohmann/json.hpp>

#include "fuzz_input.h"
#include "hostfit/cgroup.h"
#include "hostfit/core.h"
#include "hostfit/place.h"
#include "hostfit/probe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostfit;
  const std::string_view text = fuzz::as_text(data, size);
  if (validate_cgroup_name(text)) {
    FUZZ_CHECK(text != "." && text != ".." && text.find('/') == std::string_view::npos);
    FUZZ_CHECK(!text.empty());
  }
  if (auto path = normalize_cgroup_path(text)) {
    FUZZ_CHECK(path->starts_with("/"));
    for (auto part : split(*path, '/'))
      FUZZ_CHECK(part != ".." && part != ".");
  }
  const std::string shown = escape_bytes(text, true);
  for (unsigned char c : shown)
    FUZZ_CHECK(c >= 0x20 && c != 0x7f);
  // Escaped text is valid UTF-8: the JSON writer must take it without throwing.
  (void)nlohmann::json(shown).dump();
  std::vector<int> nodes;
  (void)parse_policy(text, &nodes);
  (void)parse_smt(text);
  CpuSet list;
  (void)parse_mems(text, &list);
  return 0;
}
