// examples/wasmgw on this machine: every request through every plugin, and `hostfit run` sizing
// its --concurrency from the instance budget.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "gateway_process.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using testing::Child;
using testing::HttpClient;

#define REQUIRE_WASMGW()                                                                   \
  if (std::string(WASMGW_BIN).empty())                                                     \
  GTEST_SKIP() << "wasmgw was not built: V8 (libnode-dev) or wat2wasm (wabt) is missing; " \
                  "run scripts/install-deps"

const std::regex kListening("listening on 127\\.0\\.0\\.1:[0-9]+.*\n");

TEST(WasmgwTest, ServesRequestsThroughEveryPluginOfItsWorkers) {
  REQUIRE_WASMGW();
  Child gw({WASMGW_BIN, "--concurrency", "2", "--plugins", "3", "--port", "0"});
  ASSERT_TRUE(gw.wait_for(kListening, std::chrono::seconds(60))) << gw.out << gw.err;
  EXPECT_NE(gw.out.find("2 workers x 3 plugins = 6 V8 instances"), std::string::npos) << gw.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(gw.out, m, std::regex("maps ([0-9]+), VmRSS ([0-9.]+ [KMG]iB)")))
      << gw.out;
  EXPECT_GT(std::stoul(m[1]), 6u);
  const int port = testing::listening_port(gw.out);
  ASSERT_GT(port, 0);
  int served = 0;
  {
    HttpClient keep_alive(port);
    ASSERT_TRUE(keep_alive.connected());
    for (int i = 0; i < 100; ++i) {
      const auto body = keep_alive.get("/api/items/" + std::to_string(i));
      ASSERT_TRUE(body) << "request " << i;
      EXPECT_TRUE(testing::through_all_plugins(*body, 3)) << *body;
      ++served;
    }
  }
  for (int i = 0; i < 10; ++i) {
    HttpClient one(port);
    const auto body = one.get("/x" + std::to_string(i));
    ASSERT_TRUE(body);
    EXPECT_TRUE(testing::through_all_plugins(*body, 3)) << *body;
    ++served;
  }
  HttpClient stats(port);
  const auto body = stats.get("/stats");
  ASSERT_TRUE(body);
  EXPECT_NE(body->find("\"requests\":" + std::to_string(served)), std::string::npos) << *body;
  kill(gw.pid(), SIGTERM);
  EXPECT_EQ(gw.wait_exit(std::chrono::seconds(20)), 0);
  EXPECT_NE(gw.out.find("served " + std::to_string(served) + " requests"), std::string::npos)
      << gw.out;
}

TEST(WasmgwTest, BadModuleEndsWithV8sOwnError) {
  REQUIRE_WASMGW();
  fixtures::TempDir dir;
  const auto bad = dir.path() / "bad.wasm";
  std::ofstream(bad) << "\0asm garbage";
  Child gw({WASMGW_BIN, "--concurrency", "1", "--plugins", "1", "--module", bad.string()});
  EXPECT_EQ(gw.wait_exit(std::chrono::seconds(60)), 1);
  EXPECT_NE(gw.err.find("CompileError: WebAssembly.Module()"), std::string::npos) << gw.err;
}

// hostfit run puts the instance budget into {workers}: a profile whose instances cost so many
// maps that only 7 fit leaves one worker of 4 plugins, whatever the CPU count.
TEST(RunGatewayTest, WorkersPlaceholderCarriesTheInstanceBudget) {
  REQUIRE_WASMGW();
  if (::geteuid() != 0) GTEST_SKIP() << "hostfit run needs root to create cgroups";
  fixtures::TempDir dir;
  const auto profile = dir.path() / "heavy.json";
  std::ofstream(profile) << R"({"profile": {"name": "v8", "label": "V8", "reserve_bytes": 0,
      "resident_bytes": 0, "maps": 9000, "base_maps": 130, "instance_cap": null}})";
  const std::string name = "wasmgw-" + std::to_string(::getpid());
  Child run({HOSTFIT_BIN, "run", "--name", name, "--profile", profile.string(), "--plugins", "4",
             "--", WASMGW_BIN, "--concurrency", "{workers}", "--plugins", "4", "--port", "0"});
  ASSERT_TRUE(run.wait_for(kListening, std::chrono::seconds(60))) << run.out << run.err;
  EXPECT_NE(run.out.find("1 workers x 4 plugins = 4 V8 instances"), std::string::npos) << run.out;
  EXPECT_NE(run.err.find("limited by vm.max_map_count: "), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("/ ~9000 per V8 instance = 7 instances"), std::string::npos) << run.err;
  HttpClient client(testing::listening_port(run.out));
  for (int i = 0; i < 20; ++i) {
    const auto body = client.get("/r" + std::to_string(i));
    ASSERT_TRUE(body);
    EXPECT_TRUE(testing::through_all_plugins(*body, 4)) << *body;
  }
  kill(run.pid(), SIGTERM);  // hostfit forwards it; wasmgw ends with 0
  EXPECT_EQ(run.wait_exit(std::chrono::seconds(30)), 0) << run.err;
}

}  // namespace
}  // namespace hostfit
