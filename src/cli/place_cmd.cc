// hostfit place: choose CPUs and memory nodes for a workload and record them in the ledger.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "hostfit/place.h"
#include "hostfit/probe.h"

namespace hostfit::cli {
namespace {

struct PlaceOptions {
  std::string sysroot = "/";
  int cpus = 0;
  int cores = 0;
  std::string policy = "balanced";
  std::string smt = "auto";
  std::string mems = "follow";
  std::string owner;
  std::string ledger;
  std::string release;
  bool show = false;
  Format format = Format::kTable;
};

std::string ledger_path(const PlaceOptions& o) {
  return o.ledger.empty() ? default_ledger_path().string() : o.ledger;
}

Result<HostFacts> probe(const PlaceOptions& o) {
  const Sysroot root(o.sysroot);
  HostFacts facts = probe_host(root, ProbeTarget::self());
  if (facts.nothing_known()) {
    std::string why = root.is_dir("/") ? "nothing under " + o.sysroot + " could be read"
                                       : "sysroot " + o.sysroot + " does not exist";
    return fail(ErrorKind::kNotFound, "cannot place: " + why);
  }
  return facts;
}

void print_placement(const Placement& p, const std::string& owner, const std::string& path) {
  std::cout << "placed " << p.cpus.count() << " CPUs (" << to_string(p.policy) << ", "
            << (p.full_cores ? "whole cores" : "single threads allowed") << ")";
  if (owner.empty()) {
    std::cout << "; not recorded (no --owner)\n";
  } else {
    std::cout << " for " << owner << ", recorded in " << path << "\n";
  }
  Table t(false);
  t.add({"  cpus", p.cpus.to_list()});
  t.add({"  mems", p.mems.to_list()});
  for (const auto& [id, n] : p.per_node)
    t.add({"  node " + std::to_string(id), std::to_string(n) + " CPUs"});
  char mean[32];
  std::snprintf(mean, sizeof mean, "%.1f", p.mean_distance);
  t.add({"  distance", std::to_string(p.distance_score) + " (sum over node pairs), " + mean +
                           " between two CPUs on average"});
  t.add({"  split cores", std::to_string(p.split_cores)});
  t.print(std::cout);
}

int show(const PlaceOptions& o) {
  const std::string path = ledger_path(o);
  auto ledger = Ledger::load(path);
  if (!ledger) return report(ledger.error());
  auto facts = probe(o);
  if (!facts) return report(facts.error());
  const CpuSet placeable = placeable_cpus(*facts);
  const CpuSet held = ledger->held();
  nlohmann::json nodes = nlohmann::json::array();
  Table t;
  t.add({"node", "cpus", "held", "free", "holders"});
  for (const NumaNode& node : facts->topology.numa_nodes) {
    const int id = node.id;
    const CpuSet& cpus = node.cpus;
    if (cpus.empty()) continue;
    nlohmann::json holders = nlohmann::json::object();
    std::string holder_text;
    for (const Hold& h : ledger->holds()) {
      const int n = (h.cpus & cpus).count();
      if (n == 0) continue;
      holders[h.owner] = n;
      holder_text += (holder_text.empty() ? "" : " ") + h.owner + ":" + std::to_string(n);
    }
    const int held_here = (cpus & held).count();
    const int free_here = ((cpus & placeable) - held).count();
    nodes.push_back({{"id", id},
                     {"cpus", cpus.to_list()},
                     {"held", held_here},
                     {"free", free_here},
                     {"holders", holders}});
    t.add({std::to_string(id), cpus.to_list(), std::to_string(held_here), std::to_string(free_here),
           holder_text.empty() ? "-" : holder_text});
  }
  if (o.format == Format::kJson) {
    nlohmann::json j = ledger->to_json();
    j["ledger"] = path;
    j["nodes"] = nodes;
    print_json(std::cout, j);
    return kExitOk;
  }
  std::cout << "ledger " << path << ": " << ledger->holds().size() << " holds, " << held.count()
            << " CPUs held\n";
  t.print(std::cout, "  ");
  if (!ledger->holds().empty()) {
    Table holds;
    holds.add({"owner", "cpus", "mems"});
    for (const Hold& h : ledger->holds())
      holds.add({h.owner, h.cpus.to_list(), h.mems.to_list()});
    std::cout << "holds\n";
    holds.print(std::cout, "  ");
  }
  return kExitOk;
}

int release(const PlaceOptions& o) {
  const std::string path = ledger_path(o);
  auto hold = release_hold(path, o.release);
  if (!hold) return report(hold.error());
  if (o.format == Format::kJson) {
    print_json(std::cout, {{"released", hold->owner},
                           {"cpus", hold->cpus.to_list()},
                           {"mems", hold->mems.to_list()},
                           {"ledger", path}});
  } else {
    std::cout << "released CPUs " << hold->cpus.to_list() << " (mems " << hold->mems.to_list()
              << ") of " << hold->owner << " from " << path << "\n";
  }
  return kExitOk;
}

int run_place(const PlaceOptions& o, bool cpus_given, bool cores_given) {
  if (!o.release.empty()) return release(o);
  if (o.show) return show(o);
  if (!cpus_given && !cores_given)
    return usage_error("place needs --cpus N or --cores N (or --release OWNER, or --show)");
  if (cpus_given && o.cpus < 1)
    return usage_error("--cpus must be at least 1, got " + std::to_string(o.cpus));
  if (cores_given && o.cores < 1)
    return usage_error("--cores must be at least 1, got " + std::to_string(o.cores));
  if (o.sysroot.empty()) return usage_error("--sysroot needs a directory");

  PlacementRequest req;
  req.cpus = o.cpus;
  req.cores = o.cores;
  auto policy = parse_policy(o.policy, &req.nodes);
  if (!policy) return report(policy.error());
  req.policy = *policy;
  auto smt = parse_smt(o.smt);
  if (!smt) return report(smt.error());
  req.smt = *smt;
  auto mems = parse_mems(o.mems, &req.mems_list);
  if (!mems) return report(mems.error());
  req.mems = *mems;

  auto facts = probe(o);
  if (!facts) return report(facts.error());
  const std::string path = ledger_path(o);
  Result<Placement> placed;
  if (!o.owner.empty()) {
    placed = place_and_hold(path, *facts, req, o.owner);
  } else {
    auto ledger = Ledger::load(path);
    if (!ledger) return report(ledger.error());
    req.allowed_mems = placeable_mems(*facts);
    placed = place(facts->topology, placeable_cpus(*facts), *ledger, req);
  }
  if (!placed) return report(placed.error());
  if (o.format == Format::kJson) {
    nlohmann::json j = to_json(*placed);
    j["owner"] = o.owner.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.owner);
    j["recorded"] = !o.owner.empty();
    j["ledger"] = path;
    print_json(std::cout, j);
  } else {
    print_placement(*placed, o.owner, path);
  }
  return kExitOk;
}

}  // namespace

void add_place_command(CLI::App& app, Commands& commands) {
  auto opts = std::make_shared<PlaceOptions>();
  CLI::App* cmd = app.add_subcommand(
      "place",
      "Choose CPUs and NUMA memory nodes for a workload: as few nodes as the request needs, near "
      "each other and least loaded, whole cores first; record them in the ledger for --owner.");
  add_sysroot_option(*cmd, opts->sysroot);
  auto* cpus = cmd->add_option("--cpus", opts->cpus, "Number of CPUs (hardware threads) to place");
  auto* cores = cmd->add_option("--cores", opts->cores,
                                "Number of whole cores to place (all their SMT siblings)")
                    ->excludes(cpus);
  cmd->add_option("--policy", opts->policy,
                  "balanced: fewest nodes, near and least loaded, split evenly; compact: fewest "
                  "and nearest nodes, filled in turn; spread: round-robin over all nodes; "
                  "nodes:LIST: round-robin over those nodes only")
      ->default_str("balanced");
  cmd->add_option("--smt", opts->smt,
                  "full-cores: whole cores only; any: whole cores first, then single threads "
                  "(default: whole cores when N is a multiple of threads per core and it costs no "
                  "extra node)")
      ->default_str("auto");
  cmd->add_option("--mems", opts->mems,
                  "follow: the CPUs' nodes; near: also the CPU-less nodes nearest to them; all: "
                  "every allowed node; or a node LIST")
      ->default_str("follow");
  cmd->add_option("--owner", opts->owner,
                  "Record the placement in the ledger under NAME (without it nothing is recorded)");
  cmd->add_option("--ledger", opts->ledger,
                  "Ledger FILE (default: $HOSTFIT_LEDGER, else /run/hostfit/ledger.json)");
  auto* release =
      cmd->add_option("--release", opts->release, "Release the CPUs held by OWNER and exit")
          ->excludes(cpus)
          ->excludes(cores);
  cmd->add_flag("--show", opts->show, "Print the ledger per node and exit")
      ->excludes(release)
      ->excludes(cpus)
      ->excludes(cores);
  add_format_option(*cmd, opts->format, {Format::kTable, Format::kJson});
  cmd->footer(
      "Offline, isolated and disallowed (outside this process's cpuset) CPUs are never handed "
      "out.\n"
      "Examples:\n"
      "  hostfit place --cpus 48 --policy balanced --owner db -o json\n"
      "  hostfit place --cores 8 --policy compact --mems near --owner cache\n"
      "  hostfit place --show\n"
      "  hostfit place --release db\n"
      "  hostfit place --sysroot /tmp/big --ledger /tmp/l.json --cpus 48 --owner a");
  commands.push_back({cmd, [opts, cpus, cores]() {
                        return run_place(*opts, cpus->count() > 0, cores->count() > 0);
                      }});
}

}  // namespace hostfit::cli
