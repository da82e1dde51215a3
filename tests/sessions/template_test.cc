#include <gtest/gtest.h>

#include "hostfit/sessions.h"

namespace hostfit::sessions {
namespace {

using nlohmann::json;

json minimal() {
  return {{"name", "pg"}, {"argv", {"postgres", "-p", "{port}"}}};
}

std::string error_of(const json& j) {
  auto t = parse_template(j);
  EXPECT_FALSE(t.has_value()) << j.dump();
  if (t) return "";
  EXPECT_EQ(t.error().kind, ErrorKind::kUsage);
  return t.error().message;
}

TEST(TemplateTest, MinimalTemplateGetsTheDocumentedDefaults) {
  auto t = parse_template(minimal());
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->share_level, ShareLevel::kUser);
  EXPECT_EQ(t->readiness.kind, ReadinessKind::kPort);
  EXPECT_EQ(t->launch_timeout, std::chrono::seconds(60));
  EXPECT_EQ(t->idle_timeout, std::chrono::minutes(30));
  EXPECT_EQ(t->pool_size, 1);
  EXPECT_EQ(t->on_oom, OnOom::kFail);
}

TEST(TemplateTest, EveryKeyIsReadAndRoundTrips) {
  json j = minimal();
  j["env"] = {{"PGDATA", "{data_dir}"}};
  j["init"] = {"initdb", "-D", "{data_dir}"};
  j["user"] = "postgres";
  j["memory"] = "256Mi";
  j["cpus"] = 1.5;
  j["share_level"] = "server";
  j["readiness"] = {{"socket", "{data_dir}/.s.PGSQL.{port}"}};
  j["launch_timeout"] = "3m";
  j["idle_timeout"] = "0";
  j["stop_timeout"] = "500ms";
  j["pool_size"] = 4;
  j["on_oom"] = "ignore";
  auto t = parse_template(j);
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->memory_max_bytes, uint64_t{256} << 20);
  EXPECT_EQ(t->launch_timeout, std::chrono::minutes(3));
  EXPECT_EQ(t->idle_timeout.count(), 0);
  EXPECT_EQ(t->stop_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(t->readiness.kind, ReadinessKind::kSocket);
  EXPECT_EQ(t->share_level, ShareLevel::kServer);
  auto again = parse_template(to_json(*t));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(to_json(*again), to_json(*t));
}

TEST(TemplateTest, UnknownKeysAreErrorsNamingTheKey) {
  json j = minimal();
  j["idle_timout"] = "30m";
  const auto message = error_of(j);
  EXPECT_NE(message.find("\"idle_timout\""), std::string::npos) << message;
  EXPECT_NE(message.find("idle_timeout"), std::string::npos) << message;  // the known keys
}

TEST(TemplateTest, NamesMustBeSafe) {
  for (const char* name : {"", "../etc", "a/b", ".hidden", "-x", "sp ace",
                           "a-very-long-template-name-of-more-than-32"}) {
    json j = minimal();
    j["name"] = name;
    const auto message = error_of(j);
    EXPECT_NE(message.find("safe name"), std::string::npos) << name << ": " << message;
  }
  json j = minimal();
  j["user"] = "root;rm";
  EXPECT_NE(error_of(j).find("user"), std::string::npos);
}

TEST(TemplateTest, DurationsNeedAUnitWeUnderstand) {
  json j = minimal();
  j["launch_timeout"] = "PT3M";
  EXPECT_NE(error_of(j).find("launch_timeout"), std::string::npos);
  j["launch_timeout"] = 60;
  EXPECT_NE(error_of(j).find("must be a string"), std::string::npos);
  j["launch_timeout"] = "0s";
  EXPECT_NE(error_of(j).find("at least"), std::string::npos);
  j["launch_timeout"] = "-5s";
  EXPECT_NE(error_of(j).find("negative"), std::string::npos);
}

TEST(TemplateTest, ReadinessIsExactlyOneOfPortSocketLine) {
  for (const json& r :
       {json{{"port", false}}, json{{"socket", ""}}, json{{"line", 3}}, json{{"http", "/health"}},
        json{{"port", true}, {"line", "x"}}, json("port")}) {
    json j = minimal();
    j["readiness"] = r;
    EXPECT_NE(error_of(j).find("readiness"), std::string::npos) << r.dump();
  }
}

TEST(TemplateTest, NumbersAndWordsOutOfRangeAreRefused) {
  json j = minimal();
  j["pool_size"] = 0;
  EXPECT_NE(error_of(j).find("pool_size"), std::string::npos);
  j["pool_size"] = 65;
  EXPECT_NE(error_of(j).find("1 to 64"), std::string::npos);
  j = minimal();
  j["on_oom"] = "restart";
  EXPECT_NE(error_of(j).find("fail, ignore"), std::string::npos);
  j = minimal();
  j["share_level"] = "group";
  EXPECT_NE(error_of(j).find("connection, user, server"), std::string::npos);
  j = minimal();
  j["memory"] = "1k";
  EXPECT_NE(error_of(j).find("4Mi"), std::string::npos);
}

TEST(TemplateTest, UnknownPlaceholdersAreRefusedAndTheRunnersAreLeftAlone) {
  json j = minimal();
  j["argv"] = {"engine", "--port={prot}"};
  const auto message = error_of(j);
  EXPECT_NE(message.find("{prot}"), std::string::npos) << message;
  j["argv"] = {"engine", "--port={port}", "--threads={workers}", "{{literal}}"};
  EXPECT_TRUE(parse_template(j));
  j["argv"] = {"engine", "{port"};
  EXPECT_NE(error_of(j).find("unterminated"), std::string::npos);
  j["argv"] = json::array();
  EXPECT_NE(error_of(j).find("argv"), std::string::npos);
  j = minimal();
  j.erase("argv");
  EXPECT_NE(error_of(j).find("\"argv\" is required"), std::string::npos);
}

TEST(KeyTest, KeyTextRoundTrips) {
  EngineKey k{
      .template_name = "pg", .level = ShareLevel::kUser, .owner = "alice@corp", .subdomain = "etl"};
  EXPECT_EQ(k.text(), "pg/user/alice@corp/etl");
  auto back = parse_key(k.text());
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, k);
  EXPECT_TRUE(parse_key("pg/server/*/default"));
  EXPECT_FALSE(parse_key("pg/user/alice"));
  EXPECT_FALSE(parse_key("pg/group/alice/default"));
  EXPECT_FALSE(parse_key("pg/user/../default"));
}

}  // namespace
}  // namespace hostfit::sessions
