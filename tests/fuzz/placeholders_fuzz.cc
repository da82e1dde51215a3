// {placeholder} substitution in a workload's argv: values and arguments are both fuzzed, NUL
// separated (workers, cpus, instances, cpuset, mems, memory_limit, then the arguments).
#include "fuzz_input.h"
#include "hostfit/plan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostfit;
  const auto f = fuzz::fields(fuzz::as_text(data, size), 10);
  PlaceholderValues values;
  std::string* slots[] = {&values.workers, &values.cpus, &values.instances,
                          &values.cpuset,  &values.mems, &values.memory_limit};
  size_t i = 0;
  for (auto* slot : slots) {
    if (i < f.size()) *slot = std::string(f[i++]);
  }
  std::vector<std::string> argv;
  for (; i < f.size(); ++i)
    argv.emplace_back(f[i]);
  if (auto out = substitute_placeholders(argv, values)) {
    FUZZ_CHECK(out->size() == argv.size());  // one argument in, one out
  } else {
    FUZZ_CHECK(out.error().kind == ErrorKind::kUsage);
  }
  return 0;
}
