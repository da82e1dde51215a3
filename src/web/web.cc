#include "hostfit/web.h"

#include <algorithm>
#include <string>

namespace hostfit::web {
namespace {

// Scripts and styles only from this origin, no inline script, no framing (clickjacking), and
// fetch() only back to the daemon. img-src allows the empty data: icon of index.html. The script
// sets styles through CSSOM (element.style), which style-src does not govern.
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

api::Response serve(const Asset& asset) {
  api::Response response;
  response.content_type = std::string(asset.content_type);
  response.body = std::string(asset.body);
  response.headers["Content-Security-Policy"] = std::string(kContentSecurityPolicy);
  response.headers["X-Content-Type-Options"] = "nosniff";
  response.headers["Referrer-Policy"] = "no-referrer";
  response.headers["Cache-Control"] = "no-cache";
  return response;
}

}  // namespace

const Asset* find_asset(std::string_view path) {
  const auto all = assets();
  const auto it = std::ranges::find(all, path, &Asset::path);
  return it == all.end() ? nullptr : &*it;
}

void add_page_routes(api::Router& router) {
  router.add("GET", "/",
             [](const api::Request&, api::Reply reply) { reply(serve(*find_asset("/"))); });
  router.add("GET", "/ui/{file}", [](const api::Request& request, api::Reply reply) {
    const Asset* asset = find_asset("/ui/" + request.params.at("file"));
    if (asset == nullptr) {
      reply(api::error(404, "no such file of the page: " + request.path,
                       "the page's files are /, /ui/hostfit.css and /ui/hostfit.js"));
      return;
    }
    reply(serve(*asset));
  });
}

}  // namespace hostfit::web
