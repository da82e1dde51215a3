// The page's routes on the api Router: what GET / and GET /ui/{file} answer, and that the page
// refers only to files that are embedded.
#include "hostfit/web.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <optional>
#include <regex>
#include <string>

#include "hostfit/api.h"
#include "sysroot_builder.h"

namespace hostfit::web {
namespace {

api::Response get(const api::Router& router, const std::string& path) {
  api::Request request;
  request.method = "GET";
  request.target = path;
  request.path = path;
  api::Response answer;
  bool answered = false;
  router.dispatch(request, [&](api::Response r) {
    answer = std::move(r);
    answered = true;
  });
  EXPECT_TRUE(answered) << path;
  return answer;
}

// A route that answers later on io's thread (the topology's pins are read in a thread).
api::Response get_on(boost::asio::io_context& io, const api::Router& router,
                     const std::string& path) {
  api::Request request;
  request.method = "GET";
  request.target = path;
  request.path = path;
  std::optional<api::Response> answer;
  io.restart();  // a previous get_on ran it out of work, which stops it
  auto work = boost::asio::make_work_guard(io);
  router.dispatch(request, [&](api::Response r) { answer = std::move(r); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!answer && std::chrono::steady_clock::now() < deadline)
    io.run_one_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(answer) << path << " was not answered in 20 s";
  return answer.value_or(api::Response{});
}

TEST(WebRoutes, RootServesTheHtmlPageWithASelfOnlyContentSecurityPolicy) {
  api::Router router;
  add_page_routes(router);
  const api::Response page = get(router, "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<title>hostfit</title>"), std::string::npos);
  const std::string csp = page.headers.at("Content-Security-Policy");
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos);
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos);
  EXPECT_EQ(csp.find("unsafe"), std::string::npos);
  EXPECT_EQ(page.headers.at("X-Content-Type-Options"), "nosniff");
}

TEST(WebRoutes, ScriptAndStylesheetHaveTheirMediaTypes) {
  api::Router router;
  add_page_routes(router);
  const api::Response script = get(router, "/ui/hostfit.js");
  EXPECT_EQ(script.status, 200);
  EXPECT_EQ(script.content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(script.body.find("/v1/events?since="), std::string::npos);
  const api::Response style = get(router, "/ui/hostfit.css");
  EXPECT_EQ(style.status, 200);
  EXPECT_EQ(style.content_type, "text/css; charset=utf-8");
}

TEST(WebRoutes, AnUnknownFileIs404WithTheErrorShape) {
  api::Router router;
  add_page_routes(router);
  const api::Response missing = get(router, "/ui/secret.txt");
  EXPECT_EQ(missing.status, 404);
  const auto body = nlohmann::json::parse(missing.body);
  EXPECT_NE(body.at("error").get<std::string>().find("/ui/secret.txt"), std::string::npos);
}

TEST(WebAssets, EveryFileThePageNamesIsEmbeddedAndNothingComesFromElsewhere) {
  const Asset* page = find_asset("/");
  ASSERT_NE(page, nullptr);
  const std::string html(page->body);
  const std::regex reference(R"((?:src|href)="([^"]*)\")");
  int local = 0, preloads = 0;
  for (std::sregex_iterator it(html.begin(), html.end(), reference), end; it != end; ++it) {
    const std::string url = (*it)[1];
    if (url == "data:,") continue;  // the empty icon: no request at all
    if (url.starts_with("/v1/")) {  // a document of the daemon's API it preloads: same origin
      ++preloads;
      continue;
    }
    EXPECT_TRUE(url.starts_with("/ui/")) << url << " is not one of the page's own files";
    EXPECT_NE(find_asset(url), nullptr) << url << " is not embedded";
    ++local;
  }
  EXPECT_EQ(local, 2);
  EXPECT_EQ(preloads, 7);
  // No absolute URL anywhere (a CDN, a font), except the SVG namespace name, which is never
  // fetched.
  const std::regex absolute(R"(https?://(?!www\.w3\.org/2000/svg))");
  for (const Asset& asset : assets()) {
    EXPECT_FALSE(asset.body.empty()) << asset.path;
    const std::string body(asset.body);
    EXPECT_FALSE(std::regex_search(body, absolute)) << asset.path;
  }
}

// Two packages of two NUMA nodes, SMT, CPU 15 offline and a container pinned to CPUs 6-7: the
// document has the shape, the offline CPU and the pin, and leaves out pins inside what hostfit
// holds.
TEST(TopologyRoute, DescribesPackagesNodesOfflineCpusAndForeignPins) {
  fixtures::TempDir dir;
  fixtures::Shape shape;
  shape.sockets = 2;
  shape.nodes_per_socket = 2;
  shape.cores_per_node = 2;
  shape.threads_per_core = 2;
  shape.offline_cpus = "15";
  fixtures::PinnedGroup container;
  container.path = "/docker/abc";
  container.cpus = "6-7";
  fixtures::PinnedGroup own = container;
  own.path = "/hostfit/etl";
  own.cpus = "2,10";
  shape.pinned_groups = {container, own};
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), shape));
  boost::asio::io_context io;  // before the router, which must go first
  api::Router router;
  const Sysroot root(dir.path());
  add_routes(router, io, root, probe_host(root, ProbeTarget::self()),
             [] { return *CpuSet::parse_list("2,10"); });
  const api::Response answer = get_on(io, router, "/v1/node/topology");
  ASSERT_EQ(answer.status, 200) << answer.body;
  const auto doc = nlohmann::json::parse(answer.body);
  EXPECT_EQ(doc["topology"]["packages"].size(), 2u);
  ASSERT_EQ(doc["topology"]["numa_nodes"].size(), 4u);
  EXPECT_EQ(doc["topology"]["numa_nodes"][3]["distances"].size(), 4u);
  EXPECT_GT(doc["topology"]["numa_nodes"][0]["memory_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(doc["cpu"]["offline"], "15");
  std::vector<std::string> holders;
  for (const auto& pin : doc["foreign_pins"]["pins"]) {
    holders.push_back(pin["holder"]);
    if (pin["holder"] == "(/docker/abc)") {
      EXPECT_EQ(pin["cpus"], "6-7");
    }
  }
  EXPECT_THAT(holders, ::testing::Contains("(/docker/abc)"));
  EXPECT_THAT(holders, ::testing::Not(::testing::Contains("(/hostfit/etl)")));
  // The page is registered too.
  EXPECT_EQ(get(router, "/").status, 200);
}

// The pins are read once and answered again while hostfit's holds stay the same; once they
// change, a group they no longer cover is somebody else's pin in the next answer.
TEST(TopologyRoute, AnswersFromTheLastReadUntilTheHoldsChange) {
  fixtures::TempDir dir;
  fixtures::Shape shape;
  fixtures::PinnedGroup own;
  own.path = "/hostfit/etl";
  own.cpus = "1";
  shape.pinned_groups = {own};
  ASSERT_TRUE(fixtures::write_sysroot(dir.path(), shape));
  boost::asio::io_context io;
  api::Router router;
  const Sysroot root(dir.path());
  CpuSet held = *CpuSet::parse_list("1");
  add_routes(router, io, root, probe_host(root, ProbeTarget::self()), [&] { return held; });
  const auto holders = [&] {
    const auto doc = nlohmann::json::parse(get_on(io, router, "/v1/node/topology").body);
    std::vector<std::string> out;
    for (const auto& pin : doc["foreign_pins"]["pins"])
      out.push_back(pin["holder"]);
    EXPECT_GE(doc["foreign_pins"]["age_ms"].get<int64_t>(), 0);
    return out;
  };
  EXPECT_THAT(holders(), ::testing::Not(::testing::Contains("(/hostfit/etl)")));
  EXPECT_THAT(holders(), ::testing::Not(::testing::Contains("(/hostfit/etl)")));
  held = CpuSet{};
  EXPECT_THAT(holders(), ::testing::Contains("(/hostfit/etl)"));
}

}  // namespace
}  // namespace hostfit::web
