// hostfit calibrate: what one sandbox instance really costs, measured on the real runtime.
//
//   hostfit::CalibrateOptions o{.plugins = 8, .instances = 64, .helper = dir /
//   "hostfit-v8-instances"}; hostfit::Result<hostfit::Calibration> c =
//   hostfit::calibrate(hostfit::Sysroot("/"), o); c->maps.per_instance                 // e.g. 41.2
//   maps per V8 isolate with one Wasm instance hostfit::to_profile(*c)              // a
//   RuntimeProfile that make_plan takes
//
// The instances live in a child process (the helper) that hostfit bounds itself: RLIMIT_DATA,
// RLIMIT_CPU, a wall-clock timeout and PR_SET_PDEATHSIG; it never outlives calibrate().
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "hostfit/core.h"
#include "hostfit/plan.h"

namespace hostfit {

inline constexpr uint64_t kDefaultCalibrateInstances = 64;
inline constexpr uint64_t kDefaultCalibrateMemoryBytes = uint64_t{4} << 30;
// A gateway's steady state: on Debian's V8 10.2 the maps per instance rise from 14 (fresh) to 18
// once hot code tiers up (1,000 requests) and to 23 once the new space has grown to its working
// size (between 20,000 and 100,000 requests), then stay flat to 1,000,000 (docs/runtimes.md).
inline constexpr uint64_t kDefaultCalibrateRequests = 100000;

struct CalibrateOptions {
  std::string runtime = "v8";  // the only runtime measurable here
  uint64_t plugins = 1;        // instances added per step: one worker's plugins
  uint64_t instances = kDefaultCalibrateInstances;  // grow to this many or to the first failure
  std::filesystem::path module;  // a .wasm file; empty: the built-in gateway plugin
  // Requests each instance serves before it is counted (0: counted fresh). V8 tiers hot code up
  // after some hundreds; a JavaScript heap grows with every request that allocates in it.
  uint64_t requests = kDefaultCalibrateRequests;
  // -1: the host copies each request into linear memory only (a proxy-wasm host). K >= 0: it also
  // keeps each request's headers as a JavaScript Map in the isolate, the last K of them.
  int js_state = -1;
  std::filesystem::path helper;                                // the hostfit-v8-instances binary
  uint64_t memory_limit_bytes = kDefaultCalibrateMemoryBytes;  // RLIMIT_DATA of the child
  std::chrono::seconds timeout{300};                           // wall clock for the whole run
  std::string command;  // the command line that asked for it, recorded with the profile
};

// The child after a step: its totals, read from /proc/PID.
struct CalibrationSample {
  uint64_t instances = 0;
  uint64_t maps = 0;           // lines of /proc/PID/maps
  uint64_t vm_size_bytes = 0;  // VmSize of /proc/PID/status
  uint64_t vm_rss_bytes = 0;   // VmRSS
  uint64_t pss_bytes = 0;      // Pss of /proc/PID/smaps_rollup (0 when unreadable)
  double create_ms = 0;        // mean creation time of the step's new instances
};

// One per-instance cost: the least-squares slope over the samples after the first instance, and
// the spread of the per-step increments (divided by the step size).
struct CostFit {
  double per_instance = 0;
  double intercept = 0;  // the fitted total at 0 instances (one-time costs included)
  double min = 0, median = 0, max = 0;
};

struct Calibration {
  std::string runtime;          // "v8"
  std::string runtime_version;  // "10.2.154.26-node.37", as the runtime reports it
  std::string module;           // "built-in gateway plugin" or the file
  uint64_t plugins = 1;
  uint64_t requests = 0;                   // served by each instance before it was counted
  int js_state = -1;                       // as CalibrateOptions::js_state
  uint64_t requested = 0;                  // --instances
  std::vector<CalibrationSample> samples;  // the first has no instance
  CostFit maps, vm_size, vm_rss, pss, create_ms;
  bool failed = false;         // the runtime failed before the requested count
  std::string stopped_by;      // "the budget of 64 instances" or "V8 failed after N instances: ..."
  std::string measured_at;     // UTC
  uint64_t max_map_count = 0;  // of the machine measured (0: unknown)
  std::string command;
};

// Runs the helper, grows the instances step by step and fits the costs. A runtime failure after
// the first instance is a result (failed, stopped_by), not an error. Errors: kUsage for a runtime
// that cannot be measured here or a module the runtime rejects; kNotFound when the helper is
// missing; kIo when it cannot be started, dies before the first instance, or runs past the timeout.
Result<Calibration> calibrate(const Sysroot& root, const CalibrateOptions& options);

// The profile make_plan takes: maps rounded up from the fitted slope, address space and resident
// size rounded up to a MiB, base maps from the intercept; measured = true, with version and
// command.
RuntimeProfile to_profile(const Calibration& calibration);

// Keys in docs/runtimes.md: runtime, runtime_version, per_instance {maps, vm_size_bytes, ...},
// samples, stopped_by, ..., and "profile" (what `hostfit plan --profile` reads).
nlohmann::json to_json(const Calibration& calibration);

}  // namespace hostfit
