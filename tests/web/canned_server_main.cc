// web-canned-server: the page and canned daemon documents on the api Router, for the page's tests
// and for working on the page without a daemon. The documents are in the daemon's shapes
// (tests/web/canned.json) and describe a host this machine is not: two packages, four NUMA
// nodes, SMT, an offline CPU, a foreign pin and a CPU hostfit may not use.
//
//   web-canned-server DATA.json TOKEN   prints "http://127.0.0.1:PORT/" and serves until SIGTERM
//
// POST /test/events {"type": ..., ...} appends an event (its seq is assigned) and answers the
// waiting long polls, as a daemon does when something happens; PUT /test/documents/KEY replaces
// one of the documents (workloads, sessions, ...).
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>  // before Boost 1.74's Asio, which uses std::exchange without including it
#include <vector>

#include "hostfit/api.h"
#include "hostfit/web.h"

namespace {

using hostfit::api::Reply;
using hostfit::api::Request;
using nlohmann::json;

struct Poll {
  std::uint64_t since = 0;
  Reply reply;
  std::shared_ptr<boost::asio::steady_timer> timer;
};

class Canned {
 public:
  Canned(boost::asio::io_context& io, json data) : io_(io), data_(std::move(data)) {
    for (const auto& e : data_["events"])
      seq_ = std::max<std::uint64_t>(seq_, e.value("seq", 0));
  }

  void add_routes(hostfit::api::Router& router) {
    const std::pair<const char*, const char*> documents[] = {
        {"/v1/node", "node"},           {"/v1/node/topology", "topology"},
        {"/v1/workloads", "workloads"}, {"/v1/placements", "placements"},
        {"/v1/engines", "engines"},     {"/v1/sessions", "sessions"}};
    for (const auto& [path, key] : documents) {
      router.add("GET", path, [this, key](const Request&, Reply reply) {
        reply(hostfit::api::json(200, data_[key]));
      });
    }
    router.add("GET", "/v1/events", [this](const Request& r, Reply reply) { poll(r, reply); });
    // PUT /test/documents/{key}: a document replaced, as the daemon's answers change over time.
    router.add("PUT", "/test/documents/{key}", [this](const Request& r, Reply reply) {
      const std::string key = r.params.at("key");
      auto doc = hostfit::api::parse_object(r);
      if (!doc) return reply(hostfit::api::error(400, doc.error().message));
      if (!data_.contains(key)) return reply(hostfit::api::error(404, "no document " + key));
      data_[key] = *doc;
      reply(hostfit::api::json(200, data_[key]));
    });
    router.add("POST", "/test/events", [this](const Request& r, Reply reply) {
      auto event = hostfit::api::parse_object(r);
      if (!event) return reply(hostfit::api::error(400, event.error().message));
      (*event)["seq"] = ++seq_;
      data_["events"].push_back(*event);
      answer_polls();
      reply(hostfit::api::json(201, *event));
    });
  }

 private:
  json after(std::uint64_t since) const {
    json events = json::array();
    for (const auto& e : data_["events"])
      if (e.value("seq", std::uint64_t{0}) > since) events.push_back(e);
    return {{"events", events}, {"next", seq_}};
  }

  void poll(const Request& r, Reply reply) {
    const auto number = [&](const char* key) {
      auto it = r.query.find(key);
      return it == r.query.end() ? 0ULL : std::strtoull(it->second.c_str(), nullptr, 10);
    };
    const std::uint64_t since = number("since");
    if (since < seq_ || number("wait") == 0) return reply(hostfit::api::json(200, after(since)));
    auto timer = std::make_shared<boost::asio::steady_timer>(io_);
    timer->expires_after(std::chrono::seconds(std::min(number("wait"), 30ULL)));
    polls_.push_back({since, std::move(reply), timer});
    timer->async_wait([this, timer](boost::system::error_code ec) {
      if (ec) return;
      std::erase_if(polls_, [&](Poll& p) {
        if (p.timer != timer) return false;
        p.reply(hostfit::api::json(200, after(p.since)));
        return true;
      });
    });
  }

  void answer_polls() {
    for (Poll& p : std::exchange(polls_, {})) {
      p.timer->cancel();
      p.reply(hostfit::api::json(200, after(p.since)));
    }
  }

  boost::asio::io_context& io_;
  json data_;
  std::uint64_t seq_ = 0;
  std::vector<Poll> polls_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: web-canned-server DATA.json TOKEN\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  const json data = json::parse(in, nullptr, false);
  if (!in || data.is_discarded()) {
    std::cerr << "web-canned-server: cannot read " << argv[1] << " as JSON\n";
    return 1;
  }
  boost::asio::io_context io;
  Canned canned(io, data);
  hostfit::api::Router router;
  hostfit::web::add_page_routes(router);
  canned.add_routes(router);
  hostfit::api::Server server(io, router);
  if (auto st = server.listen_tcp("127.0.0.1", 0, argv[2]); !st) {
    std::cerr << "web-canned-server: " << st.error().message << "\n";
    return 1;
  }
  std::cout << "http://127.0.0.1:" << server.tcp_port() << "/" << std::endl;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) {
    server.close();
    io.stop();
  });
  io.run();
  return 0;
}
