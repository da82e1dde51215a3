// GET /v1/node/topology: the machine's shape and the CPUs other tools pin, for the page's map.
#include <memory>
#include <nlohmann/json.hpp>

#include "hostfit/web.h"

namespace hostfit::web {

nlohmann::json topology_json(const HostFacts& facts, const ForeignPins& pins) {
  // probe's own JSON, so the page reads the shape `hostfit probe -o json` documents.
  const nlohmann::json probed = to_json(facts);
  nlohmann::json cpu = nlohmann::json::object();
  for (const char* key : {"online", "offline", "possible", "isolated"})
    cpu[key] = probed["cpu"].value(key, nlohmann::json());
  nlohmann::json list = nlohmann::json::array();
  for (const ForeignPin& p : pins.pins) {
    list.push_back({{"holder", p.holder},
                    {"source", p.source},
                    {"cpus", p.cpus.to_list()},
                    {"mems", p.mems.to_list()},
                    {"exclusive", p.exclusive}});
  }
  return {{"topology", probed["topology"]},
          {"cpu", cpu},
          {"foreign_pins", {{"pins", list}, {"warnings", pins.warnings}}}};
}

void add_routes(api::Router& router, const Sysroot& root, HostFacts facts,
                std::function<CpuSet()> held) {
  add_page_routes(router);
  // The shape is the daemon's probe at start (hwloc's load is slow); a CPU going offline later
  // shows after a restart. Other tools' pins come and go, so they are read on every request.
  auto shared = std::make_shared<const HostFacts>(std::move(facts));
  router.add("GET", "/v1/node/topology",
             [root, shared, held = std::move(held)](const api::Request&, api::Reply reply) {
               const ForeignPins pins = read_foreign_pins(root, *shared, held ? held() : CpuSet{});
               reply(api::json(200, topology_json(*shared, pins)));
             });
}

}  // namespace hostfit::web
