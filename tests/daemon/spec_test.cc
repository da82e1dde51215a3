// The workload shape: one strict parser for config files and the API.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../../src/daemon/daemon_impl.h"
#include "hostfit/daemon.h"

namespace hostfit {
namespace {

using nlohmann::json;

TEST(WorkloadSpec, AFullSpecRoundTrips) {
  const json in = {{"name", "gw"},
                   {"argv", {"envoy", "--concurrency", "{workers}"}},
                   {"env", {{"A", "1"}}},
                   {"user", "nobody"},
                   {"cpus", 1.5},
                   {"placement", "nodes:0"},
                   {"memory", "256Mi"},
                   {"memory_high", "200Mi"},
                   {"pids", 100},
                   {"runtime", "wasmtime"},
                   {"plugins", 4},
                   {"cache_limit", "64Mi"},
                   {"restart", "on-failure"},
                   {"restart_limit", 3},
                   {"restart_backoff_ms", 500},
                   {"stop_timeout_ms", 2000},
                   {"start", false}};
  auto spec = parse_workload_spec(in);
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->memory_max_bytes, uint64_t{256} << 20);
  EXPECT_EQ(spec->restart, RestartPolicy::kOnFailure);
  EXPECT_EQ(spec->placement_nodes, std::vector<int>{0});
  EXPECT_EQ(spec->memory_high_bytes, uint64_t{200} << 20);
  EXPECT_EQ(spec->runtime, "wasmtime");
  EXPECT_EQ(spec->plugins, 4u);
  auto again = parse_workload_spec(to_json(*spec));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(to_json(*again), to_json(*spec));
}

TEST(WorkloadSpec, RejectsWhatTheIssueNames) {
  const std::vector<std::pair<json, std::string>> bad = {
      {{{"name", "x"}, {"argv", {"true"}}, {"extra", 1}}, "unknown key \"extra\""},
      {{{"name", "a/b"}, {"argv", {"true"}}}, "bad \"name\""},
      {{{"name", ".."}, {"argv", {"true"}}}, "bad \"name\""},
      {{{"name", ""}, {"argv", {"true"}}}, "bad \"name\""},
      {{{"name", "x"}, {"argv", "true"}}, "bad \"argv\""},
      {{{"name", "x"}, {"argv", {"true", 1}}}, "every element must be a string"},
      {{{"name", "x"}, {"argv", {"true"}}, {"memory", "1Mi"}}, "below the minimum of 4 MiB"},
      {{{"name", "x"}, {"argv", {"true"}}, {"cache_limit", 1000}}, "below the minimum"},
      {{{"name", "x"}}, "missing \"argv\""},
      {{{"argv", {"true"}}}, "missing \"name\""},
  };
  for (const auto& [j, want] : bad) {
    auto spec = parse_workload_spec(j);
    ASSERT_FALSE(spec) << j.dump();
    EXPECT_EQ(spec.error().kind, ErrorKind::kUsage);
    EXPECT_NE(spec.error().message.find(want), std::string::npos)
        << j.dump() << " -> " << spec.error().message;
  }
}

TEST(WorkloadSpec, RuntimeAndPluginsAreCheckedAsRunChecksThem) {
  const json base = {{"name", "w"}, {"argv", {"true"}}};
  const auto with = [&](json extra) {
    json j = base;
    j.update(extra);
    return parse_workload_spec(j);
  };
  auto r = with({{"runtime", "jvm"}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("'jvm' is not a sandbox runtime"), std::string::npos)
      << r.error().message;
  r = with({{"plugins", 2}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("\"plugins\""), std::string::npos) << r.error().message;
  EXPECT_FALSE(with({{"runtime", "v8"}, {"plugins", 0}}));
  EXPECT_FALSE(with({{"memory_high", "1Ki"}}));
  // "none" is no runtime: nothing is stored for it.
  r = with({{"runtime", "none"}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(to_json(*r).contains("runtime"));
}

TEST(WorkloadSpec, ConfigDirReportsTheBadFileWithItsLineAndLoadsTheRest) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("hostfit-spec-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "a.json") << R"({"name": "a", "argv": ["true"]})";
  std::ofstream(dir / "b.json") << "{\n  \"name\": \"b\",\n  \"argv\": [\"true\"\n}\n";
  std::ofstream(dir / "c.json") << R"({"name": "a", "argv": ["false"]})";
  std::ofstream(dir / "notes.txt") << "ignored";
  auto load = load_config_dir(dir);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(load.workloads.size(), 1u);
  EXPECT_EQ(load.workloads[0].second.name, "a");
  ASSERT_EQ(load.errors.size(), 2u);
  EXPECT_NE(load.errors[0].file.find("b.json"), std::string::npos);
  EXPECT_EQ(load.errors[0].line, 4);
  EXPECT_NE(load.errors[1].message.find("already defined"), std::string::npos);
}

// The bodies of POST /v1/attachments, /v1/placements and /v1/sessions (found by the api_request
// fuzz harness: a cache_limit above INT64_MAX was stored, and shown, as a negative number).
TEST(RequestBodies, AttachmentCacheLimitFitsTheStore) {
  auto row =
      parse_attachment_body(json{{"cgroup", "/system.slice/x.service"}, {"cache_limit", "64Mi"}});
  ASSERT_TRUE(row) << row.error().message;
  EXPECT_EQ(row->name, "x.service");
  EXPECT_EQ(row->cache_limit_bytes, int64_t{64} << 20);
  auto huge = parse_attachment_body(json{{"cgroup", "/x"}, {"cache_limit", "9Ei"}});
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.error().message.find("above the maximum"), std::string::npos)
      << huge.error().message;
  auto biggest = parse_attachment_body(json{{"cgroup", "/x"}, {"cache_limit", INT64_MAX}});
  ASSERT_TRUE(biggest) << biggest.error().message;
  EXPECT_EQ(biggest->cache_limit_bytes, INT64_MAX);
}

TEST(RequestBodies, PlacementAndSessionBodiesNameWhatIsWrong) {
  auto ok = parse_placement_body(json{{"owner", "batch"}, {"cpus", 1}, {"policy", "spread"}});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->owner, "batch");
  EXPECT_EQ(ok->request.cpus, 1);
  auto both = parse_placement_body(json{{"owner", "b"}, {"cpus", 1}, {"cores", 1}});
  ASSERT_FALSE(both);
  EXPECT_NE(both.error().message.find("exactly one"), std::string::npos);
  auto session = parse_session_body(json{{"template", "pg"}, {"owner", "alice"}});
  ASSERT_TRUE(session);
  EXPECT_EQ(session->subdomain, "default");
  auto bad = parse_session_body(json{{"template", 1}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("\"template\""), std::string::npos);
}

}  // namespace
}  // namespace hostfit
