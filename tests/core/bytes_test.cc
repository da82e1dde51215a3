#include <gtest/gtest.h>

#include "hostfit/core.h"

namespace hostfit {
namespace {

TEST(BytesTest, ParsesPlainNumbersAndBinaryUnits) {
  EXPECT_EQ(*parse_bytes("4096"), 4096u);
  EXPECT_EQ(*parse_bytes("64Mi"), 64u << 20);
  EXPECT_EQ(*parse_bytes("64MiB"), 64u << 20);
  EXPECT_EQ(*parse_bytes("64M"), 64u << 20);
  EXPECT_EQ(*parse_bytes("512k"), 512u << 10);
  EXPECT_EQ(*parse_bytes("2g"), uint64_t{2} << 30);
  EXPECT_EQ(*parse_bytes("1.5G"), uint64_t{3} << 29);
  EXPECT_EQ(*parse_bytes("4T"), uint64_t{4} << 40);
  EXPECT_EQ(*parse_bytes(" 7 B "), 7u);
}

TEST(BytesTest, RejectsBadSizesNamingTheValueAndTheForm) {
  for (const char* bad :
       {"-1", "10Q", "", "abc", "1.2.3G", "max", "64Mx", "99999999999999999999"}) {
    auto r = parse_bytes(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().kind, ErrorKind::kUsage);
    EXPECT_NE(r.error().message.find(std::string("'") + bad + "'"), std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find("64Mi"), std::string::npos) << r.error().message;
  }
}

TEST(BytesTest, OverflowIsAnErrorNotAWrap) {
  EXPECT_FALSE(parse_bytes("16384P"));
  EXPECT_FALSE(parse_bytes("17179869184G"));
  EXPECT_TRUE(parse_bytes("15E"));
}

TEST(BytesTest, ByteLimitAcceptsMax) {
  EXPECT_TRUE(parse_byte_limit("max")->is_unlimited());
  EXPECT_EQ(*parse_byte_limit("64Mi")->value, 64u << 20);
  auto bad = parse_byte_limit("10Q");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("'max'"), std::string::npos);
}

TEST(BytesTest, KernelLimitsKnowEveryUnlimitedSpelling) {
  EXPECT_TRUE(parse_kernel_limit("max\n")->is_unlimited());
  EXPECT_TRUE(parse_kernel_limit("-1")->is_unlimited());
  // cgroup v1 with 4 KiB pages, and with 64 KiB pages.
  EXPECT_TRUE(parse_kernel_limit("9223372036854771712")->is_unlimited());
  EXPECT_TRUE(parse_kernel_limit("9223372036854710272")->is_unlimited());
  EXPECT_EQ(*parse_kernel_limit("536870912")->value, 536870912u);
  EXPECT_FALSE(parse_kernel_limit("12k"));
  EXPECT_FALSE(parse_kernel_limit("garbage"));
  EXPECT_EQ(parse_kernel_limit("garbage").error().kind, ErrorKind::kParse);
}

TEST(BytesTest, MinLimitTreatsUnlimitedAsLargest) {
  EXPECT_EQ(min_limit(Limit::unlimited(), Limit::of(5)), Limit::of(5));
  EXPECT_EQ(min_limit(Limit::of(7), Limit::of(5)), Limit::of(5));
  EXPECT_TRUE(min_limit(Limit::unlimited(), Limit::unlimited()).is_unlimited());
}

TEST(BytesTest, FormatsWithBinaryUnits) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(64u << 20), "64 MiB");
  EXPECT_EQ(format_bytes(uint64_t{3} << 29), "1.5 GiB");
  EXPECT_EQ(format_bytes(1024), "1 KiB");
  // Rounds down: 1.99 GiB never prints as 2 GiB.
  EXPECT_EQ(format_bytes((uint64_t{2} << 30) - 1), "1.9 GiB");
  EXPECT_EQ(format_limit(Limit::unlimited()), "max");
}

}  // namespace
}  // namespace hostfit
