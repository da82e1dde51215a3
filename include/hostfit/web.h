// hostfit web: the daemon's own page, its static files compiled into the binary.
//
//   hostfit::api::Router router;
//   hostfit::web::add_routes(router, io, root, facts);  // GET /, /ui/{file}, /v1/node/topology
//
// The page reads the daemon's JSON API from the same origin (GET /v1/node, /v1/node/topology,
// /v1/workloads, /v1/placements, /v1/engines, /v1/sessions and the /v1/events long poll), so it
// works over the Unix socket (ssh -L), the TCP listener (whose token check the api module does
// before any route) and `hostfit ui --serve`.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "hostfit/api.h"
#include "hostfit/core.h"
#include "hostfit/place.h"
#include "hostfit/probe.h"

namespace hostfit::web {

// One embedded file: its URL path ("/" or "/ui/hostfit.js"), media type and bytes.
struct Asset {
  std::string_view path;
  std::string_view content_type;
  std::string_view body;
};

// Every file of the page, in a fixed order; the bytes live for the whole program.
std::span<const Asset> assets();

// The asset served at `path`, or nullptr.
const Asset* find_asset(std::string_view path);

// Registers GET / and GET /ui/{file} on router. Responses carry a Content-Security-Policy that
// allows only this origin's scripts and styles and no framing, and are not cached (a daemon
// upgrade changes them).
void add_page_routes(api::Router& router);

// What the map needs beyond /v1/node: the machine's shape as `hostfit probe -o json` gives it
// ({"topology": packages, numa_nodes (memory, distances), cores}, {"cpu": online, offline,
// possible, isolated}) and the CPUs other tools pin ({"foreign_pins": {"pins": [{holder, source,
// cpus, mems, exclusive}], "warnings"}}).
nlohmann::json topology_json(const HostFacts& facts, const ForeignPins& pins);

// Every route of the page: add_page_routes, and GET /v1/node/topology, the document above for the
// host `facts` describe (the daemon's probe of itself). The pins are read under `root` in a
// thread of their own (a walk of every cpuset and process of the host), whose answer comes back
// on io's thread; a request is answered from a read at most about 5 s old (its age in
// foreign_pins.age_ms) unless `held` changed since. `held` says which CPUs hostfit's own groups
// hold, so that their cpusets are not taken for other tools' pins; empty = none. The router must
// go before io does.
void add_routes(api::Router& router, boost::asio::io_context& io, const Sysroot& root,
                HostFacts facts, std::function<CpuSet()> held = nullptr);

// For `hostfit ui --serve`: the daemon's Unix socket on a loopback TCP port for the current user.
// Serves the page itself and forwards the GET routes the page reads (/v1/node, /v1/node/topology,
// /v1/workloads, /v1/workloads/{name}, /v1/placements, /v1/events, /v1/engines, /v1/sessions,
// /metrics) to socket_path; nothing else, so the port is read-only. Each forwarded request waits in
// a thread of its own (a long poll must not hold up the others) and replies on io's thread. Call
// close_socket_proxy() before io is gone.
void add_socket_proxy_routes(api::Router& router, boost::asio::io_context& io,
                             std::string socket_path);
void close_socket_proxy();

// A random bearer token (32 hex digits from getrandom), for a TCP listener of this process.
Result<std::string> random_token();

}  // namespace hostfit::web
