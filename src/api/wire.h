// Small pieces of HTTP text handling shared by the server, the router and the client.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "hostfit/api.h"

namespace hostfit::api {

// "%2F" -> "/"; with plus_is_space, "+" -> " " (query strings). nullopt for a bad escape.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space = false);
// "a=1&b=x%20y&flag" -> {"a":"1","b":"x y","flag":""}. nullopt when an escape is bad.
std::optional<std::map<std::string, std::string>> parse_query(std::string_view query);
// The value of cookie `name` in a Cookie header ("a=b; hostfit_token=XYZ"), nullopt when absent.
std::optional<std::string> cookie_value(std::string_view header, std::string_view name);
// The token of "Bearer TOKEN" (scheme case-insensitive), nullopt for any other scheme.
std::optional<std::string> bearer_token(std::string_view header);
// Equal contents, in a time that depends only on the lengths, not on where they differ.
bool equal_constant_time(std::string_view a, std::string_view b);
// A parsed HTTP message as the router sees it: the target split into the percent-decoded path
// and the query, header names lower-case (repeated headers joined), the body moved out.
// nullopt when the target is not an absolute path with good escapes.
std::optional<Request> request_of(
    boost::beast::http::request<boost::beast::http::string_body>& msg);

}  // namespace hostfit::api
