// `hostfit place` and `hostfit run --placement` on the daemon's ledger when a daemon runs: one
// owner of every hold on the node, whoever asks (docs/daemon.md, "Placements").
#pragma once

#include <optional>
#include <string>

#include "hostfit/core.h"
#include "hostfit/place.h"

namespace hostfit::cli {

// The daemon's socket when the daemon's ledger is the one to use: its socket
// (default_socket_path()) exists and no file ledger was named (--ledger or $HOSTFIT_LEDGER).
// nullopt: the file ledger.
std::optional<std::string> daemon_ledger_socket(const std::string& ledger_flag);
// POST /v1/placements: places and holds for owner, off other tools' exclusive pins unless
// ignore_foreign. Errors carry the daemon's message.
Result<Placement> daemon_hold(const std::string& socket, const PlacementRequest& request,
                              const std::string& owner, bool ignore_foreign = false);
// GET /v1/placements: the daemon's holds as a ledger, for `hostfit place --show`.
Result<Ledger> daemon_ledger(const std::string& socket);
// DELETE /v1/placements/OWNER.
Status daemon_release(const std::string& socket, const std::string& owner);

}  // namespace hostfit::cli
