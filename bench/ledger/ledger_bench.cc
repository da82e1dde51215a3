// Loading the placement ledger at 1k, 20k and 200k holds: Ledger::load now against the load
// before issue 17 (parse, then Ledger::hold for every hold, which checks it against all earlier
// holds: quadratic). Prints Markdown table rows; bench/ledger/run adds the header.
// Usage: ledger_bench DIR [--before-max N]  (holds above N skip the quadratic baseline)
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "hostfit/place.h"

namespace {

double cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Hold i holds CPU i (ids stop at CpuSet::kMaxId; later holds hold none, as a hold may). Built as
// JSON: Ledger::hold checks every earlier hold, which is what is being measured.
void write_ledger(const std::filesystem::path& path, int holds) {
  nlohmann::json list = nlohmann::json::array();
  for (int i = 0; i < holds; ++i) {
    list.push_back({{"owner", "w" + std::to_string(i)},
                    {"cpus", i <= hostfit::CpuSet::kMaxId ? std::to_string(i) : ""},
                    {"mems", "0"},
                    {"group", "/sys/fs/cgroup/cpu/hostfit/w" + std::to_string(i)}});
  }
  (void)hostfit::Ledger::from_json({{"version", 1}, {"holds", list}})->save(path);
}

// The load before issue 17: every hold went through Ledger::hold's checks against all others.
size_t load_before(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const auto j = nlohmann::json::parse(text.str());
  hostfit::Ledger ledger;
  for (const auto& h : j["holds"]) {
    (void)ledger.hold(h["owner"].get<std::string>(),
                      *hostfit::CpuSet::parse_list(h["cpus"].get<std::string>()),
                      *hostfit::CpuSet::parse_list(h["mems"].get<std::string>()));
  }
  return ledger.holds().size();
}

size_t load_now(const std::filesystem::path& path) {
  return hostfit::Ledger::load(path)->holds().size();
}

// Median CPU seconds of `runs` loads; checks that every load saw all holds.
double median_seconds(const std::function<size_t()>& load, size_t expected, int runs) {
  std::vector<double> times;
  for (int r = 0; r < runs; ++r) {
    const double start = cpu_seconds();
    const size_t n = load();
    times.push_back(cpu_seconds() - start);
    if (n != expected) return -1;
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::string format_time(double s) {
  char buf[64];
  if (s < 0) return "wrong result";
  if (s < 1) {
    std::snprintf(buf, sizeof buf, "%.1f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  }
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ledger_bench DIR [--before-max N]\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  const int before_max = argc >= 4 ? std::atoi(argv[3]) : 20000;
  for (int holds : {1000, 20000, 200000}) {
    const auto path = dir / ("ledger-" + std::to_string(holds) + ".json");
    write_ledger(path, holds);
    const auto bytes = std::filesystem::file_size(path);
    const int runs = holds <= 20000 ? 5 : 3;
    const double now = median_seconds([&] { return load_now(path); }, holds, runs);
    std::string before = "not run (quadratic: some 100 x the 20k time)";
    if (holds <= before_max) {
      before = format_time(median_seconds([&] { return load_before(path); }, holds, 1));
    }
    std::printf("| %d | %.1f MiB | %s | %s |\n", holds, static_cast<double>(bytes) / (1 << 20),
                before.c_str(), format_time(now).c_str());
    std::filesystem::remove(path);
  }
  return 0;
}
