// hostfit-v8-instances: the child `hostfit calibrate --runtime v8` measures. It creates plugin
// instances on command, has each serve --requests requests (default 100,000), and reports each
// creation time; hostfit reads its maps and memory from /proc between steps. With --js-state K the
// host also keeps each request's headers as a JavaScript Map, the last K of them (see v8_host.h).
// Protocol, one line each way:
//   out: "v8 VERSION" once V8 is up
//   in:  "add N"      create N more instances (one isolate + one module instance each)
//   out: "added TOTAL NS..."   the total now and each new instance's creation time in ns
//   out: "error TEXT"          a JavaScript/WebAssembly error (the process then exits 1)
// End of input ends the process. When V8 itself fails it aborts with its own fatal error.
#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "v8_host.h"

namespace {

constexpr uint64_t kDefaultRequests = 100000;  // as hostfit::kDefaultCalibrateRequests
constexpr uint8_t kRequest[] =
    "GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: calibrate\r\n"
    "Accept: */*\r\n\r\n";

int usage() {
  std::fprintf(stderr,
               "usage: hostfit-v8-instances [--module FILE.wasm] [--requests N] [--js-state K]\n");
  return 2;
}

bool parse_number(const std::string& text, uint64_t max, uint64_t& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && out <= max;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<uint8_t> file_bytes;
  std::span<const uint8_t> module = hostfit::v8host::builtin_plugin();
  uint64_t requests = kDefaultRequests;
  int js_state = -1;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) return usage();
    const std::string flag = argv[i], value = argv[i + 1];
    uint64_t number = 0;
    if (flag == "--module") {
      std::ifstream in(value, std::ios::binary);
      if (!in) {
        std::fprintf(stderr, "hostfit-v8-instances: cannot read %s\n", value.c_str());
        return 1;
      }
      file_bytes.assign(std::istreambuf_iterator<char>(in), {});
      module = file_bytes;
    } else if (flag == "--requests" && parse_number(value, 100'000'000, number)) {
      requests = number;
    } else if (flag == "--js-state" && parse_number(value, 1'000'000, number)) {
      js_state = static_cast<int>(number);
    } else {
      return usage();
    }
  }

  hostfit::v8host::V8Runtime runtime(argv[0]);
  std::cout << "v8 " << hostfit::v8host::V8Runtime::version() << std::endl;
  std::vector<std::unique_ptr<hostfit::v8host::PluginInstance>> instances;
  std::string command;
  uint64_t n = 0;
  while (std::cin >> command >> n) {
    if (command != "add") return usage();
    std::string line = "added";
    std::string times;
    for (uint64_t i = 0; i < n; ++i) {
      std::string error;
      const auto start = std::chrono::steady_clock::now();
      auto instance = std::make_unique<hostfit::v8host::PluginInstance>(module, error, js_state);
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
      if (!instance->ok()) {
        std::cout << "error " << error << std::endl;
        return 1;
      }
      // Serve requests first, as a gateway's plugin has: V8 tiers the hot code up and that
      // costs mappings too (about 4 more per instance than a fresh one), and a JavaScript heap
      // grows page by page (a mapping each in this V8) as requests allocate in it.
      for (uint64_t r = 0; r < requests; ++r)
        if (instance->on_request(kRequest) < 0) {
          std::cout << "error the plugin failed request " << r + 1 << std::endl;
          return 1;
        }
      instances.push_back(std::move(instance));
      times += " " + std::to_string(ns);
    }
    std::cout << line << " " << instances.size() << times << std::endl;
  }
  // Exit without tearing the isolates down: the process is done and the OS reclaims it all.
  std::fflush(stdout);
  std::_Exit(0);
}
