#include <gtest/gtest.h>

#include "hostfit/core.h"

namespace hostfit {
namespace {

TEST(CpuSetTest, ParsesKernelListFormat) {
  auto set = CpuSet::parse_list("0-3,8,10-11\n");
  ASSERT_TRUE(set) << set.error().message;
  EXPECT_EQ(set->ids(), (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(set->to_list(), "0-3,8,10-11");
  EXPECT_EQ(set->count(), 7);
}

TEST(CpuSetTest, EmptyTextIsEmptySet) {
  auto set = CpuSet::parse_list(" \n");
  ASSERT_TRUE(set);
  EXPECT_TRUE(set->empty());
  EXPECT_EQ(set->to_list(), "");
  EXPECT_EQ(set->first(), -1);
  EXPECT_EQ(set->last(), -1);
}

TEST(CpuSetTest, RejectsDescendingRangeNamingIt) {
  auto set = CpuSet::parse_list("3-1");
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().kind, ErrorKind::kUsage);
  EXPECT_NE(set.error().message.find("'3-1'"), std::string::npos) << set.error().message;
  EXPECT_NE(set.error().message.find("descending"), std::string::npos);
}

TEST(CpuSetTest, RejectsHugeIdsWithTheAcceptedRange) {
  auto set = CpuSet::parse_list("0-99999999");
  ASSERT_FALSE(set);
  EXPECT_NE(set.error().message.find("99999999"), std::string::npos) << set.error().message;
  EXPECT_NE(set.error().message.find("0-65535"), std::string::npos);
}

TEST(CpuSetTest, RejectsGarbage) {
  for (const char* bad : {"abc", "1,,2", "1-", "-3", "1-2-3", "0x3", "1 2"}) {
    EXPECT_FALSE(CpuSet::parse_list(bad)) << bad;
  }
}

TEST(CpuSetTest, ParsesAndPrintsHexMasks) {
  auto set = CpuSet::parse_mask("00000001,00000000,0000000f");
  ASSERT_TRUE(set) << set.error().message;
  EXPECT_EQ(set->to_list(), "0-3,64");
  EXPECT_EQ(set->to_mask(), "00000001,00000000,0000000f");
  auto ff = CpuSet::parse_mask("ff,ffffffff");
  ASSERT_TRUE(ff);
  EXPECT_EQ(ff->to_list(), "0-39");
  EXPECT_EQ(CpuSet::parse_mask("0x3")->to_list(), "0-1");
  EXPECT_FALSE(CpuSet::parse_mask("fg"));
  EXPECT_FALSE(CpuSet::parse_mask("123456789"));
}

TEST(CpuSetTest, ListAndMaskRoundTrip) {
  const CpuSet set = CpuSet::of({0, 5, 31, 32, 63, 64, 200, 255});
  EXPECT_EQ(*CpuSet::parse_mask(set.to_mask()), set);
  EXPECT_EQ(*CpuSet::parse_list(set.to_list()), set);
}

TEST(CpuSetTest, SetOperations) {
  const CpuSet a = CpuSet::range(0, 7);
  const CpuSet b = CpuSet::range(4, 11);
  EXPECT_EQ((a & b).to_list(), "4-7");
  EXPECT_EQ((a | b).to_list(), "0-11");
  EXPECT_EQ((a - b).to_list(), "0-3");
  EXPECT_EQ((b - a).to_list(), "8-11");
  EXPECT_TRUE((a & b).is_subset_of(a));
  EXPECT_FALSE(a.is_subset_of(b));
  // Equality ignores how the storage grew and shrank.
  CpuSet c = CpuSet::of({200});
  c.reset(200);
  EXPECT_EQ(c, CpuSet());
}

TEST(CpuSetTest, FirstLastAndContains) {
  const CpuSet set = CpuSet::of({3, 64, 129});
  EXPECT_EQ(set.first(), 3);
  EXPECT_EQ(set.last(), 129);
  EXPECT_TRUE(set.contains(64));
  EXPECT_FALSE(set.contains(65));
  EXPECT_FALSE(set.contains(-1));
}

}  // namespace
}  // namespace hostfit
