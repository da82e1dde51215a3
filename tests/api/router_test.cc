#include <gtest/gtest.h>

#include "hostfit/api.h"

namespace hostfit::api {
namespace {

Response call(const Router& router, std::string method, std::string path) {
  Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  Response out;
  int calls = 0;
  router.dispatch(r, [&](Response resp) {
    out = std::move(resp);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
  return out;
}

Router sample() {
  Router router;
  router.add("GET", "/v1/workloads",
             [](const Request&, Reply reply) { reply(json(200, nlohmann::json::array())); });
  router.add("GET", "/v1/workloads/{name}", [](const Request& r, Reply reply) {
    reply(json(200, {{"name", r.params.at("name")}}));
  });
  router.add("DELETE", "/v1/workloads/{name}",
             [](const Request&, Reply reply) { reply(json(204, nullptr)); });
  router.add("POST", "/v1/workloads/{name}/start", [](const Request& r, Reply reply) {
    reply(json(202, {{"started", r.params.at("name")}}));
  });
  router.add("GET", "/throws",
             [](const Request&, Reply) -> void { throw std::runtime_error("boom"); });
  return router;
}

TEST(Router, ParamSegmentsLandInParams) {
  const Router router = sample();
  Response r = call(router, "GET", "/v1/workloads/etl");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(nlohmann::json::parse(r.body)["name"], "etl");
  r = call(router, "POST", "/v1/workloads/etl/start");
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(nlohmann::json::parse(r.body)["started"], "etl");
}

TEST(Router, UnknownPathIs404WithTheErrorShape) {
  const Router router = sample();
  for (const char* path : {"/v2/workloads", "/v1/workloads/etl/extra/more", "/", "/v1//"}) {
    Response r = call(router, "GET", path);
    EXPECT_EQ(r.status, 404) << path;
    auto body = nlohmann::json::parse(r.body);
    EXPECT_TRUE(body.contains("error")) << path;
    EXPECT_TRUE(body.contains("detail")) << path;
  }
}

TEST(Router, KnownPathOtherMethodIs405WithAllow) {
  const Router router = sample();
  Response r = call(router, "PUT", "/v1/workloads/etl");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers["Allow"], "GET, DELETE");
  EXPECT_EQ(nlohmann::json::parse(r.body)["detail"]["allow"], "GET, DELETE");
}

TEST(Router, EmptyParamSegmentDoesNotMatch) {
  const Router router = sample();
  EXPECT_EQ(call(router, "GET", "/v1/workloads/").status, 404);
}

TEST(Router, RouteKeyNamesMethodAndPattern) {
  const Router router = sample();
  EXPECT_EQ(router.route_key("GET", "/v1/workloads/etl"), "GET /v1/workloads/{name}");
  EXPECT_EQ(router.route_key("POST", "/v1/workloads/x/start"), "POST /v1/workloads/{name}/start");
  EXPECT_EQ(router.route_key("PUT", "/v1/workloads/etl"), "");
}

TEST(Router, AThrowingHandlerAnswers500InsteadOfEndingTheLoop) {
  const Router router = sample();
  Response r = call(router, "GET", "/throws");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(nlohmann::json::parse(r.body)["detail"], "boom");
}

TEST(Responses, JsonNeverThrowsOnBytesThatAreNotUtf8) {
  Response r = json(200, {{"cgroup", std::string("/bad\xff\xfe/name")}});
  EXPECT_EQ(r.status, 200);
  auto back = nlohmann::json::parse(r.body);
  EXPECT_EQ(back["cgroup"], "/bad\xEF\xBF\xBD\xEF\xBF\xBD/name");
  Response e = error(400, std::string("bad \xc3"), std::string("\x80"));
  EXPECT_EQ(nlohmann::json::parse(e.body)["error"], "bad \xEF\xBF\xBD");
}

TEST(Responses, ParseObjectAcceptsObjectsAndSaysWhyNot) {
  Request r;
  r.body = R"({"name":"etl"})";
  auto ok = parse_object(r);
  ASSERT_TRUE(ok);
  EXPECT_EQ((*ok)["name"], "etl");
  for (const char* bad : {"", "  ", "[1,2]", "{\"a\":", "nul", "\"x\""}) {
    r.body = bad;
    auto e = parse_object(r);
    ASSERT_FALSE(e) << bad;
    EXPECT_EQ(e.error().kind, ErrorKind::kUsage);
  }
  r.body = "{\"a\": tru}";
  EXPECT_NE(parse_object(r).error().message.find("byte"), std::string::npos);
}

}  // namespace
}  // namespace hostfit::api
