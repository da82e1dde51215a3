// Byte sizes as a person types them (--memory, --headroom, counts) and as the kernel writes limits.
#include "fuzz_input.h"
#include "hostfit/core.h"
#include "hostfit/plan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostfit;
  const std::string_view text = fuzz::as_text(data, size);
  if (auto bytes = parse_bytes(text)) {
    // What hostfit prints must read back as a size no larger than the one printed.
    const std::string shown = format_bytes(*bytes);
    auto again = parse_bytes(shown);
    FUZZ_CHECK(again.has_value());
  } else {
    FUZZ_CHECK(!bytes.error().message.empty());
  }
  if (auto limit = parse_byte_limit(text)) (void)format_limit(*limit);
  if (auto limit = parse_kernel_limit(text)) (void)format_limit(*limit);
  if (auto headroom = parse_headroom(text)) {
    FUZZ_CHECK(!headroom->percent || (*headroom->percent >= 0 && *headroom->percent <= 100));
    (void)headroom->to_string();
    FUZZ_CHECK(headroom->of(uint64_t{1} << 40) <= uint64_t{1} << 40);
  }
  if (auto count = parse_count(text, "--workers", 1, 4096))
    FUZZ_CHECK(*count >= 1 && *count <= 4096);
  (void)parse_u64(text);
  (void)parse_i64(text);
  (void)parse_double(text);
  return 0;
}
