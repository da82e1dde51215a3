// Parsing the workload's shape: runtimes, rounding, headroom and counts, and their errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "hostfit/plan.h"

namespace hostfit {
namespace {

TEST(ShapeTest, RuntimeProfilesCarryTheirDocumentedCosts) {
  const auto envoy = find_runtime("envoy-v8");
  ASSERT_TRUE(envoy);
  EXPECT_EQ(envoy->reserve_bytes, uint64_t{8} << 30);
  EXPECT_EQ(envoy->instance_cap, 6479u);
  EXPECT_FALSE(envoy->measured);
  EXPECT_TRUE(envoy->source.starts_with("documentation: ")) << envoy->source;
  // The V8 measured here: at least V8 10.2's 10 GiB guard region, a version and the command.
  const auto v8 = find_runtime("v8");
  ASSERT_TRUE(v8);
  EXPECT_TRUE(v8->measured);
  EXPECT_GE(v8->reserve_bytes, uint64_t{10} << 30);
  EXPECT_GT(v8->maps, 0u);
  EXPECT_FALSE(v8->version.empty());
  EXPECT_NE(v8->source.find("hostfit calibrate --runtime v8"), std::string::npos) << v8->source;
  for (const auto& p : runtime_profiles()) {
    if (p.name == "v8" || p.name == "none") continue;
    EXPECT_TRUE(p.source.starts_with("documentation: ")) << p.name << ": " << p.source;
  }
  const auto wasmtime = find_runtime("wasmtime");
  ASSERT_TRUE(wasmtime);
  EXPECT_EQ(wasmtime->reserve_bytes, (uint64_t{4} << 30) + (uint64_t{64} << 20));
  EXPECT_FALSE(wasmtime->instance_cap.has_value());
  EXPECT_EQ(find_runtime("wamr")->reserve_bytes, uint64_t{8} << 30);
  EXPECT_EQ(find_runtime("none")->reserve_bytes, 0u);
}

TEST(ShapeTest, UnknownRuntimeNamesTheValueAndTheAcceptedNames) {
  const auto r = find_runtime("lucet");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::kUsage);
  EXPECT_EQ(r.error().message,
            "'lucet' is not a sandbox runtime (accepted: v8|envoy-v8|wasmtime|wasmer|wamr|none)");
}

TEST(ShapeTest, RoundingAcceptsFloorAndCeilOnly) {
  EXPECT_EQ(parse_rounding("floor").value(), Rounding::kFloor);
  EXPECT_EQ(parse_rounding("ceil").value(), Rounding::kCeil);
  const auto up = parse_rounding("up");
  ASSERT_FALSE(up);
  EXPECT_EQ(up.error().message, "'up' is not a rounding mode (accepted: floor|ceil)");
}

TEST(ShapeTest, HeadroomIsAShareOrASize) {
  const auto share = parse_headroom("10%");
  ASSERT_TRUE(share);
  EXPECT_EQ(share->of(1000), 100u);
  const auto size = parse_headroom("256Mi");
  ASSERT_TRUE(size);
  EXPECT_EQ(size->of(uint64_t{1} << 30), uint64_t{256} << 20);
  EXPECT_EQ(size->of(100), 100u);  // never more than there is
  EXPECT_EQ(parse_headroom("0")->of(1000), 0u);
  for (const char* bad : {"150%", "-5%", "abc", "12Q", "%"}) {
    const auto h = parse_headroom(bad);
    ASSERT_FALSE(h) << bad;
    EXPECT_NE(h.error().message.find(std::string("'") + bad + "'"), std::string::npos);
  }
}

TEST(ShapeTest, CountsRejectZeroNegativesAndWords) {
  EXPECT_EQ(parse_count("8", "--plugins", 1, 100).value(), 8u);
  for (const char* bad : {"0", "-1", "x", "101", ""}) {
    const auto n = parse_count(bad, "--plugins", 1, 100);
    ASSERT_FALSE(n) << bad;
    EXPECT_EQ(n.error().message,
              std::string("--plugins '") + bad + "' is not a whole number from 1 to 100");
  }
}

TEST(ShapeTest, AProfileSurvivesItsJsonAndBadProfilesNameWhatIsWrong) {
  RuntimeProfile p = *find_runtime("v8");
  p.maps = 41;
  p.instance_cap = 900;
  const auto back = profile_from_json(nlohmann::json{{"profile", to_json(p)}}, "f.json");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->maps, 41u);
  EXPECT_EQ(back->base_maps, p.base_maps);
  EXPECT_EQ(back->reserve_bytes, p.reserve_bytes);
  EXPECT_EQ(back->instance_cap, 900u);
  EXPECT_EQ(back->version, p.version);
  EXPECT_TRUE(back->measured);

  nlohmann::json bad = to_json(p);
  bad["maps"] = "many";
  const auto error = profile_from_json(bad, "f.json");
  ASSERT_FALSE(error);
  EXPECT_EQ(error.error().kind, ErrorKind::kUsage);
  EXPECT_EQ(error.error().message.rfind("f.json: \"maps\" must be a whole number", 0), 0u)
      << error.error().message;
  EXPECT_FALSE(profile_from_json(nlohmann::json::array(), "f.json"));
}

}  // namespace
}  // namespace hostfit
