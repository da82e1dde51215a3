// Helpers shared by the fuzz harnesses: the input as text, and split into fields.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace hostfit::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// The input cut at each NUL into at most `max` fields (the last takes the rest), so one input can
// fill several files or arguments and a seed is just the real files joined by NULs.
inline std::vector<std::string_view> fields(std::string_view text, size_t max) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < max) {
    const auto nul = text.find('\0');
    if (nul == std::string_view::npos) break;
    out.push_back(text.substr(0, nul));
    text.remove_prefix(nul + 1);
  }
  out.push_back(text);
  return out;
}

// Stops the harness when an invariant of the code under test does not hold: the fuzzer reports
// it as a crash with the input that broke it.
#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      __builtin_printf("FUZZ_CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      __builtin_trap();                                                               \
    }                                                                                 \
  } while (0)

}  // namespace hostfit::fuzz
