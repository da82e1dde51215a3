// Talking to the daemon from the CLI: the --socket and -o flags, one request, its errors.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "cli.h"

namespace hostfit::cli {

inline constexpr std::chrono::seconds kClientTimeout{70};
inline constexpr const char* kNoDaemonFooter =
    "Talks to the daemon at --socket (default $HOSTFIT_SOCKET, else /run/hostfit/hostfit.sock);\n"
    "without one it says so and exits 1. Errors from the daemon exit 2 when the request was at\n"
    "fault (4xx), 1 otherwise.";

struct ClientFlags {
  std::string socket;
  Format format = Format::kTable;
  // The socket to use: --socket, else default_socket_path() ($HOSTFIT_SOCKET, else
  // /run/hostfit/hostfit.sock).
  std::string socket_path() const;
};
// Adds --socket PATH and -o table|json.
void add_client_flags(CLI::App& cmd, ClientFlags& flags);

// One request to the daemon. A 2xx answer's JSON body (null when it has none); otherwise an
// error with the daemon's message: kUsage for 4xx, kIo for the rest and for "no daemon at ...".
Result<nlohmann::json> call_daemon(const ClientFlags& flags, std::string_view method,
                                   const std::string& target, const std::string& body = {},
                                   std::chrono::milliseconds timeout = kClientTimeout);

// A name as one path segment: bytes other than [A-Za-z0-9._~-] percent-encoded.
std::string path_segment(std::string_view name);

}  // namespace hostfit::cli
