// hostfit web: the daemon's own page, its static files compiled into the binary.
//
//   hostfit::api::Router router;
//   hostfit::web::add_routes(router);   // GET / and GET /ui/{file}
//
// The page reads the daemon's JSON API from the same origin (GET /v1/node, /v1/workloads,
// /v1/placements and the /v1/events long poll), so it works over the Unix socket (ssh -L), the
// TCP listener (whose token check the api module does before any route) and `hostfit ui --serve`.
#pragma once

#include <span>
#include <string_view>

#include "hostfit/api.h"

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
void add_routes(api::Router& router);

}  // namespace hostfit::web
