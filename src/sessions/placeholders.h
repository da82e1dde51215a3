// {placeholder} substitution for engine launches. Only the sessions placeholders (kPlaceholders)
// are resolved here; the run's own ({workers} {cpus} {instances} {cpuset} {mems} {memory_limit})
// and the "{{" / "}}" escapes are left for the process runner, which resolves them after sizing.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "hostfit/core.h"

namespace hostfit::sessions {

using PlaceholderMap = std::map<std::string, std::string, std::less<>>;

// kUsage naming the text when it has an unknown or unterminated placeholder.
Status check_placeholders(std::string_view text);
// `text` with every sessions placeholder replaced from `values` (checked first).
Result<std::string> substitute(std::string_view text, const PlaceholderMap& values);

}  // namespace hostfit::sessions
