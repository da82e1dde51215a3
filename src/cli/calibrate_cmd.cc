// hostfit calibrate: measure what one sandbox instance costs on the real runtime, and print it as
// a table or as a profile `hostfit plan --profile` reads.
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "hostfit/calibrate.h"

namespace hostfit::cli {
namespace {

struct CalibrateFlags {
  std::string runtime = "v8";
  std::string plugins = "1";
  std::string instances = std::to_string(kDefaultCalibrateInstances);
  std::string module;
  std::string requests = std::to_string(kDefaultCalibrateRequests);
  std::string js_state;
  std::string memory_limit = "4Gi";
  std::string timeout = "300";
  Format format = Format::kTable;
};

// The helper sits next to the hostfit binary (the build puts it there; so does an install).
std::filesystem::path helper_path() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (ec ? std::filesystem::path(".") : self.parent_path()) / "hostfit-v8-instances";
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string mib(double bytes) {
  return fixed(bytes / double(1 << 20), 2) + " MiB";
}

void print_table(const Calibration& c, const RuntimeProfile& p) {
  std::cout << "runtime          " << c.runtime << " " << c.runtime_version << "\n"
            << "module           " << c.module << "\n"
            << "instances        " << c.samples.back().instances << " (" << c.plugins
            << " per step, " << c.requests << " requests each"
            << (c.js_state < 0 ? ""
                               : ", the last " + std::to_string(c.js_state) +
                                     " requests' headers kept in JavaScript")
            << "), stopped by " << c.stopped_by << "\n"
            << "per instance     fit       min       median    max\n";
  Table t(false);
  const auto row = [&](std::string name, const CostFit& f, auto fmt) {
    t.add({name, fmt(f.per_instance), fmt(f.min), fmt(f.median), fmt(f.max)});
  };
  row("  maps", c.maps, [](double v) { return fixed(v, 1); });
  row("  VmSize", c.vm_size, mib);
  row("  VmRSS", c.vm_rss, mib);
  row("  Pss", c.pss, mib);
  row("  create (ms)", c.create_ms, [](double v) { return fixed(v, 2); });
  t.print(std::cout);
  std::cout << "base maps        " << p.base_maps << " (the process before its first instance)\n"
            << "profile          maps " << p.maps << ", reserve " << format_bytes(p.reserve_bytes)
            << ", resident " << format_bytes(p.resident_bytes)
            << " (save with -o json, use with hostfit plan --profile FILE)\n";
}

}  // namespace

void add_calibrate_command(CLI::App& app, Commands& commands) {
  auto flags = std::make_shared<CalibrateFlags>();
  auto* cmd = app.add_subcommand(
      "calibrate", "Measure what one sandbox instance costs here, on the real runtime");
  cmd->add_option("--runtime", flags->runtime, "Runtime to measure (v8: Debian's libnode)");
  cmd->add_option("--plugins", flags->plugins, "Instances added per step (one worker's plugins)");
  cmd->add_option("--instances", flags->instances,
                  "Grow to this many instances, or to the first failure (default 64)");
  cmd->add_option("--module", flags->module, "A .wasm module (default: the built-in plugin)");
  cmd->add_option("--requests", flags->requests,
                  "Requests each instance serves before it is counted (default 100000: the steady "
                  "state; 0: fresh)");
  cmd->add_option("--js-state", flags->js_state,
                  "Also keep each request's headers as a JavaScript Map, the last K (0: none kept)")
      ->type_name("K");
  cmd->add_option("--memory-limit", flags->memory_limit, "RLIMIT_DATA of the child (default 4Gi)")
      ->type_name("SIZE")
      ->check(size_validator());
  cmd->add_option("--timeout", flags->timeout, "Seconds the whole run may take (default 300)");
  add_format_option(*cmd, flags->format, {Format::kTable, Format::kJson});
  commands.push_back({cmd, [flags]() -> int {
                        CalibrateOptions o;
                        o.runtime = flags->runtime;
                        auto plugins = parse_count(flags->plugins, "--plugins", 1, 1000);
                        if (!plugins) return report(plugins.error());
                        auto instances = parse_count(flags->instances, "--instances", 1, 100000);
                        if (!instances) return report(instances.error());
                        auto timeout = parse_count(flags->timeout, "--timeout", 1, 86400);
                        if (!timeout) return report(timeout.error());
                        auto requests = parse_count(flags->requests, "--requests", 0, 100'000'000);
                        if (!requests) return report(requests.error());
                        o.requests = *requests;
                        if (!flags->js_state.empty()) {
                          auto keep = parse_count(flags->js_state, "--js-state", 0, 1'000'000);
                          if (!keep) return report(keep.error());
                          o.js_state = static_cast<int>(*keep);
                        }
                        o.plugins = *plugins;
                        o.instances = *instances;
                        o.timeout = std::chrono::seconds(*timeout);
                        o.memory_limit_bytes = *parse_bytes(flags->memory_limit);
                        if (!flags->module.empty()) {
                          if (access(flags->module.c_str(), R_OK) != 0)
                            return usage_error("--module " + flags->module +
                                               ": cannot read it (give a .wasm file)");
                          o.module = std::filesystem::absolute(flags->module);
                        }
                        o.helper = helper_path();
                        o.command =
                            "hostfit calibrate --runtime " + o.runtime + " --plugins " +
                            std::to_string(o.plugins) + " --instances " +
                            std::to_string(o.instances) + " --requests " +
                            std::to_string(o.requests) +
                            (o.js_state < 0 ? "" : " --js-state " + std::to_string(o.js_state)) +
                            (o.module.empty() ? "" : " --module " + flags->module);
                        auto c = calibrate(Sysroot("/"), o);
                        if (!c) return report(c.error());
                        if (flags->format == Format::kJson) {
                          print_json(std::cout, to_json(*c));
                        } else {
                          print_table(*c, to_profile(*c));
                        }
                        if (c->failed) std::cerr << "hostfit: warning: " << c->stopped_by << "\n";
                        return kExitOk;
                      }});
}

}  // namespace hostfit::cli
