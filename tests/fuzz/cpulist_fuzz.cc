// CPU and node lists ("0-3,8") and masks ("ff,ffffffff"), from the kernel and from --cpus.
#include "fuzz_input.h"
#include "hostfit/core.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using hostfit::CpuSet;
  const std::string_view text = hostfit::fuzz::as_text(data, size);
  if (auto set = CpuSet::parse_list(text)) {
    auto again = CpuSet::parse_list(set->to_list());
    FUZZ_CHECK(again && *again == *set);
    auto masked = CpuSet::parse_mask(set->to_mask());
    FUZZ_CHECK(masked && *masked == *set);
    FUZZ_CHECK(set->empty() || (set->first() >= 0 && set->last() <= CpuSet::kMaxId));
  }
  if (auto set = CpuSet::parse_mask(text)) {
    auto again = CpuSet::parse_list(set->to_list());
    FUZZ_CHECK(again && *again == *set);
  }
  return 0;
}
