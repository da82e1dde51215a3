#include "wire.h"

#include <gtest/gtest.h>

namespace hostfit::api {
namespace {

TEST(Wire, PercentDecodeTurnsEscapesIntoBytesAndRejectsBadOnes) {
  EXPECT_EQ(percent_decode("/v1/workloads/etl%2D1"), "/v1/workloads/etl-1");
  EXPECT_EQ(percent_decode("a+b", true), "a b");
  EXPECT_EQ(percent_decode("a+b", false), "a+b");
  EXPECT_EQ(percent_decode("%ff"), std::string("\xff"));
  EXPECT_FALSE(percent_decode("%zz"));
  EXPECT_FALSE(percent_decode("abc%4"));
  EXPECT_FALSE(percent_decode("%"));
}

TEST(Wire, ParseQuerySplitsPairsAndKeepsFlagsWithoutValue) {
  auto q = parse_query("since=3&wait=10&follow&name=a%20b");
  ASSERT_TRUE(q);
  EXPECT_EQ((*q)["since"], "3");
  EXPECT_EQ((*q)["wait"], "10");
  EXPECT_EQ((*q)["follow"], "");
  EXPECT_EQ((*q)["name"], "a b");
  EXPECT_FALSE(parse_query("a=%g0"));
}

TEST(Wire, CookieAndBearerTokensAreFoundAmongOthers) {
  EXPECT_EQ(cookie_value("a=b; hostfit_token=XYZ; c=d", "hostfit_token"), "XYZ");
  EXPECT_EQ(cookie_value("hostfit_token=\"Q\"", "hostfit_token"), "Q");
  EXPECT_FALSE(cookie_value("xhostfit_token=1", "hostfit_token"));
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer  abc "), "abc");
  EXPECT_FALSE(bearer_token("Basic abc"));
  EXPECT_FALSE(bearer_token("Bearer"));
}

TEST(Wire, ConstantTimeCompareIsPlainEqualityInResult) {
  EXPECT_TRUE(equal_constant_time("secret", "secret"));
  EXPECT_FALSE(equal_constant_time("secret", "secreT"));
  EXPECT_FALSE(equal_constant_time("secret", "secret2"));
  EXPECT_FALSE(equal_constant_time("", "x"));
  EXPECT_TRUE(equal_constant_time("", ""));
}

}  // namespace
}  // namespace hostfit::api
