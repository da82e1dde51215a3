// Durations as a person types them (--stop-timeout, --interval): "50ms", "1.5s", "2m".
#include "fuzz_input.h"
#include "hostfit/core.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = hostfit::fuzz::as_text(data, size);
  if (auto d = hostfit::parse_duration(text)) {
    FUZZ_CHECK(d->count() >= 0);
    FUZZ_CHECK(*d <= std::chrono::hours(24 * 7));
  }
  return 0;
}
