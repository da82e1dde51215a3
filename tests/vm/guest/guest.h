// What the tests that run inside a qemu guest share: which shape they are in (the runner exports
// HOSTFIT_VM_* from tests/vm/shapes), the hostfit binary, and small readers. Outside a guest every
// test skips: these tests change sysctls, take CPUs offline and OOM-kill on purpose.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"

namespace hostfit::vm {

inline std::string env_or(const char* name, std::string fallback = {}) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : fallback;
}

// The shape's name, "" outside a guest.
inline std::string shape() {
  return env_or("HOSTFIT_VM_SHAPE");
}
// "v1", "v2" or "hybrid": the cgroup layout the runner mounted.
inline std::string cgroup_layout() {
  return env_or("HOSTFIT_VM_CGROUP");
}

// Skips unless inside a guest (and, when `layout` is given, one with that cgroup layout).
#define HOSTFIT_REQUIRE_GUEST(...)                                                               \
  do {                                                                                           \
    if (::hostfit::vm::shape().empty())                                                          \
      GTEST_SKIP() << "runs only inside a qemu guest (tests/vm/vm-run SHAPE -- ...)";            \
    for (std::string layout : std::vector<std::string>{__VA_ARGS__}) {                           \
      if (layout != ::hostfit::vm::cgroup_layout())                                              \
        GTEST_SKIP() << "needs cgroup layout " << layout << ", shape " << ::hostfit::vm::shape() \
                     << " has " << ::hostfit::vm::cgroup_layout();                               \
    }                                                                                            \
  } while (0)

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

inline fixtures::CommandResult hostfit(std::vector<std::string> args,
                                       const std::vector<std::string>& env = {}) {
  args.insert(args.begin(), HOSTFIT_BIN);
  return fixtures::run_command(args, env);
}

// `hostfit ... -o json` parsed; a failed test when it is not JSON.
inline nlohmann::json hostfit_json(std::vector<std::string> args,
                                   const std::vector<std::string>& env = {}) {
  args.push_back("-o");
  args.push_back("json");
  const auto r = hostfit(args, env);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out << r.err;
  return j;
}

// The value after "Key:" in /proc/PID/status text.
inline std::string status_field(const std::string& status, const std::string& key) {
  std::istringstream in(status);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(key + ":")) {
      auto v = line.substr(key.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return {};
}

// A unique, valid workload name for this test.
inline std::string test_name(const std::string& suffix = {}) {
  std::string n =
      std::string("vm-") + ::testing::UnitTest::GetInstance()->current_test_info()->name() + suffix;
  return n.substr(0, 64);
}

}  // namespace hostfit::vm
