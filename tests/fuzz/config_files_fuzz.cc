// The daemon's config files: workload files as load_config_dir reads a --config directory, and an
// engine template file as the daemon loads it from its templates directory. The input is cut at
// NULs: up to two workload files (a.json, b.json), then one template file.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fuzz_input.h"
#include "hostfit/daemon.h"
#include "hostfit/sessions.h"

namespace {

using namespace hostfit;
using nlohmann::json;

// One directory for the whole run, removed at exit.
const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    char name[] = "/tmp/hostfit-fuzz-config.XXXXXX";
    if (!::mkdtemp(name)) std::abort();
    std::atexit([] { std::filesystem::remove_all(scratch()); });
    return std::filesystem::path(name);
  }();
  return dir;
}

void write(const std::filesystem::path& file, std::string_view text) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}

void check_workload_files(std::string_view a, std::string_view b, bool two) {
  const auto& dir = scratch();
  write(dir / "a.json", a);
  if (two) {
    write(dir / "b.json", b);
  } else {
    std::filesystem::remove(dir / "b.json");
  }
  const ConfigLoad load = load_config_dir(dir);
  // Every file either loads or is an error, once.
  FUZZ_CHECK(load.workloads.size() + load.errors.size() == (two ? 2u : 1u));
  for (const auto& [file, spec] : load.workloads) {
    auto again = parse_workload_spec(to_json(spec));
    FUZZ_CHECK(again && to_json(*again) == to_json(spec));
  }
  for (const auto& e : load.errors) {
    const std::string_view text = e.file.ends_with("a.json") ? a : b;
    const auto lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
    FUZZ_CHECK(e.line >= 0 && e.line <= lines);
    FUZZ_CHECK(!e.message.empty());
  }
  if (two && load.workloads.size() == 2)
    FUZZ_CHECK(load.workloads[0].second.name != load.workloads[1].second.name);
}

void check_template_file(std::string_view text) {
  // As the daemon reads DIR/*.json from its templates directory (src/daemon/engines.cc).
  auto t = sessions::parse_template(json::parse(text, nullptr, false));
  if (!t) return;
  auto again = sessions::parse_template(sessions::to_json(*t));
  FUZZ_CHECK(again && sessions::to_json(*again) == sessions::to_json(*t));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::fields(fuzz::as_text(data, size), 3);
  check_workload_files(parts[0], parts.size() > 1 ? parts[1] : "", parts.size() > 1);
  check_template_file(parts.size() > 2 ? parts[2] : parts[0]);
  return 0;
}
