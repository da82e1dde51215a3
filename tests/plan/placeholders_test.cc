// {placeholder} substitution in argv: one argument in, one out, no shell.
#include <gtest/gtest.h>

#include "hostfit/plan.h"

namespace hostfit {
namespace {

PlaceholderValues values() {
  PlaceholderValues v;
  v.workers = "4";
  v.cpus = "4";
  v.instances = "32";
  v.cpuset = "0-3";
  v.mems = "0";
  v.memory_limit = "max";
  return v;
}

TEST(PlaceholdersTest, EachPlaceholderIsReplacedInPlace) {
  const auto out =
      substitute_placeholders({"envoy", "--concurrency", "{workers}", "--cpus={cpuset}:{mems}",
                               "{instances}/{cpus}", "{memory_limit}"},
                              values());
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(*out, (std::vector<std::string>{"envoy", "--concurrency", "4", "--cpus=0-3:0", "32/4",
                                            "max"}));
}

TEST(PlaceholdersTest, ValuesWithSpacesAreNeverResplit) {
  PlaceholderValues v = values();
  v.cpuset = "0 1; rm -rf /";
  const auto out = substitute_placeholders({"echo", "{cpuset}", "a b"}, v);
  ASSERT_TRUE(out);
  ASSERT_EQ(out->size(), 3u);
  EXPECT_EQ((*out)[1], "0 1; rm -rf /");
  EXPECT_EQ((*out)[2], "a b");
}

TEST(PlaceholdersTest, DoubledBracesAreLiteral) {
  const auto out = substitute_placeholders({"{{workers}}", "{{{workers}}}", "a}b", "{{"}, values());
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(*out, (std::vector<std::string>{"{workers}", "{4}", "a}b", "{"}));
}

TEST(PlaceholdersTest, UnknownPlaceholderIsAnErrorNamingIt) {
  const auto out = substitute_placeholders({"run", "--n={threads}"}, values());
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().kind, ErrorKind::kUsage);
  EXPECT_NE(out.error().message.find("unknown placeholder '{threads}'"), std::string::npos);
  EXPECT_NE(out.error().message.find("argument 1 '--n={threads}'"), std::string::npos);
}

TEST(PlaceholdersTest, UnterminatedAndEmptyPlaceholdersAreErrors) {
  EXPECT_FALSE(substitute_placeholders({"{workers"}, values()));
  EXPECT_FALSE(substitute_placeholders({"{}"}, values()));
  PlaceholderValues v = values();
  v.mems.clear();
  const auto out = substitute_placeholders({"--mems={mems}"}, v);
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().message.find("'{mems}' has no value"), std::string::npos);
}

TEST(PlaceholdersTest, PlanValuesComeFromThePlan) {
  Plan plan;
  plan.workers = 3;
  plan.instances = 24;
  plan.cpus = 2.5;
  plan.cpuset = CpuSet::range(0, 7);
  plan.mems = CpuSet::of({0, 1});
  plan.memory_limit = Limit::of(512 << 20);
  const PlaceholderValues v = placeholder_values(plan);
  EXPECT_EQ(v.workers, "3");
  EXPECT_EQ(v.instances, "24");
  EXPECT_EQ(v.cpus, "2.5");
  EXPECT_EQ(v.cpuset, "0-7");
  EXPECT_EQ(v.mems, "0-1");
  EXPECT_EQ(v.memory_limit, "536870912");
}

}  // namespace
}  // namespace hostfit
