// The placement ledger as it is read from disk (JSON, then holds).
#include <nlohmann/json.hpp>

#include "fuzz_input.h"
#include "hostfit/place.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostfit;
  const auto j = nlohmann::json::parse(fuzz::as_text(data, size), nullptr, false);
  if (j.is_discarded()) return 0;
  auto ledger = Ledger::from_json(j);
  if (!ledger) return 0;
  // A ledger that loads says the same thing after a save and a load.
  auto again = Ledger::from_json(nlohmann::json::parse(ledger->to_json().dump()));
  FUZZ_CHECK(again && again->holds().size() == ledger->holds().size());
  CpuSet seen;
  for (const auto& h : ledger->holds()) {
    FUZZ_CHECK((seen & h.cpus).empty());  // no CPU held twice
    seen |= h.cpus;
  }
  FUZZ_CHECK(seen == ledger->held());
  return 0;
}
