// The gateway incident, for real, in a guest whose vm.max_map_count is lowered so that the crash
// needs about a hundred V8 instances instead of thousands (shape `gateway` in tests/vm/shapes):
// wasmgw with more workers x 8 plugins than the mappings allow dies with V8's own error, and the
// same gateway under `hostfit run --runtime v8 --plugins 8` gets a --concurrency that fits, serves
// 1,000 requests through every plugin and stays inside the mappings budget.
#include <net/if.h>
#include <sys/ioctl.h>

#include <cmath>
#include <cstring>
#include <regex>

#include "../../calibrate/gateway_process.h"
#include "guest.h"

namespace hostfit::vm {
namespace {

using hostfit::testing::Child;
using hostfit::testing::HttpClient;

const std::regex kListening("listening on 127\\.0\\.0\\.1:[0-9]+.*\n");

// The guest's init leaves the loopback interface down; the gateway serves on 127.0.0.1.
void loopback_up() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP;
    ioctl(fd, SIOCSIFFLAGS, &ifr);
  }
  ::close(fd);
}

uint64_t max_map_count() {
  return std::stoull(trimmed(slurp("/proc/sys/vm/max_map_count")));
}

class Gateway : public ::testing::Test {
 protected:
  void SetUp() override {
    HOSTFIT_REQUIRE_GUEST();
    if (env_or("HOSTFIT_VM_SYSCTLS").find("vm.max_map_count") == std::string::npos)
      GTEST_SKIP() << "shape " << shape() << " keeps the default vm.max_map_count";
    if (std::string(WASMGW_BIN).empty())
      GTEST_SKIP() << "wasmgw was not built (libnode-dev or wabt missing)";
    loopback_up();
  }
};

TEST_F(Gateway, TooManyWorkersDieWithV8sErrorAndHostfitRunSizesThemToFit) {
  const uint64_t max_maps = max_map_count();
  const auto plan = hostfit_json({"plan", "--runtime", "v8", "--plugins", "8"});
  const auto& maps = plan["budgets"]["mappings"];
  ASSERT_EQ(maps["capacity"], max_maps) << plan.dump(2);
  const uint64_t budget = maps["instances"];
  const uint64_t per_instance = maps["per_instance"];
  const uint64_t planned = plan["workers"];

  // Without hostfit: enough workers that 8 plugins each need more maps than the kernel allows,
  // even at the fewest maps a fresh instance was ever measured with (14).
  const uint64_t crash_workers = max_maps / (8 * 14) + 2;
  ASSERT_GT(crash_workers * 8, budget);
  {
    Child gw({WASMGW_BIN, "--concurrency", std::to_string(crash_workers), "--plugins", "8",
              "--port", "0"});
    const auto code = gw.wait_exit(std::chrono::seconds(240));
    ASSERT_TRUE(code.has_value()) << "wasmgw neither failed nor started: " << gw.out;
    EXPECT_NE(*code, 0) << gw.out;
    EXPECT_TRUE(gw.out.find("listening") == std::string::npos) << gw.out;
    // V8's own words: a fatal out-of-memory ("Fatal process OOM in Failed to reserve virtual memory
    // for CodeRange"), a failed SetPermissions check, or the RangeError of WebAssembly.Instance.
    EXPECT_TRUE(std::regex_search(
        gw.err, std::regex("Fatal (process out of memory|process OOM|javascript OOM)|Out of memory|"
                           "Check failed: .*SetPermissions")))
        << "exit " << *code << ", stderr: " << gw.err;
    std::cout << "wasmgw --concurrency " << crash_workers << " (" << crash_workers * 8
              << " instances, vm.max_map_count " << max_maps << "): exit " << *code << ": "
              << gw.err.substr(0, 300) << "\n";
  }

  // With hostfit: the same gateway, its --concurrency from the instance budget.
  Child run({HOSTFIT_BIN, "run", "--name", test_name(), "--runtime", "v8", "--plugins", "8", "--",
             WASMGW_BIN, "--concurrency", "{workers}", "--plugins", "8", "--port", "0"});
  ASSERT_TRUE(run.wait_for(kListening, std::chrono::seconds(240))) << run.out << run.err;
  EXPECT_NE(run.out.find(std::to_string(planned) + " workers x 8 plugins"), std::string::npos)
      << run.out;
  EXPECT_NE(run.err.find("sized '" + test_name() + "' for 8 V8 instances per worker"),
            std::string::npos)
      << run.err;
  const int port = hostfit::testing::listening_port(run.out);
  ASSERT_GT(port, 0);
  int served = 0;
  for (int c = 0; c < 10; ++c) {
    HttpClient client(port);
    ASSERT_TRUE(client.connected()) << std::strerror(errno) << "\n" << run.out << run.err;
    for (int i = 0; i < 100; ++i) {
      const auto body = client.get("/api/" + std::to_string(c) + "/" + std::to_string(i));
      ASSERT_TRUE(body) << "request " << served;
      ASSERT_TRUE(hostfit::testing::through_all_plugins(*body, 8)) << *body;
      ++served;
    }
  }
  HttpClient stats_client(port);
  const auto stats = nlohmann::json::parse(stats_client.get("/stats").value_or("{}"));
  EXPECT_EQ(stats["requests"], served);
  // Within the budget's map count: what the plan left for the instances and the process itself,
  // the headroom for the rest of the gateway untouched.
  const uint64_t allowed = maps["capacity"].get<uint64_t>() - maps["headroom"].get<uint64_t>();
  EXPECT_LE(stats["maps"].get<uint64_t>(), allowed) << stats.dump() << " " << maps.dump();
  std::cout << "hostfit run: " << planned << " workers x 8 = " << planned * 8
            << " instances (budget " << budget << " at ~" << per_instance << " maps each), served "
            << served << " requests, maps " << stats["maps"] << " of " << max_maps << "\n";
  kill(run.pid(), SIGTERM);
  EXPECT_EQ(run.wait_exit(std::chrono::seconds(60)), 0) << run.err;
}

}  // namespace
}  // namespace hostfit::vm
