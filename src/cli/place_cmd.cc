// hostfit place: choose CPUs and memory nodes for a workload and record them in the ledger.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "daemon_ledger.h"
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
  bool ignore_foreign = false;
  std::string output = "table";  // table, json, or a renderer's name
};

bool json_output(const PlaceOptions& o) {
  return o.output == "json";
}

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

std::string cpus_text(int n) {
  return std::to_string(n) + (n == 1 ? " CPU" : " CPUs");
}

// Pins of other tools, unless --ignore-foreign; what could not be read is a warning on stderr.
ForeignPins foreign_pins(const PlaceOptions& o, const HostFacts& facts, const Ledger& ledger) {
  if (o.ignore_foreign) return {};
  ForeignPins pins = read_foreign_pins(Sysroot(o.sysroot), facts, ledger.held());
  for (const std::string& w : pins.warnings)
    std::cerr << "hostfit: warning: " << w << "\n";
  return pins;
}

void print_placement(const Placement& p, const std::string& owner, const std::string& path) {
  std::cout << "placed " << cpus_text(p.cpus.count()) << " (" << to_string(p.policy) << ", "
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
    t.add({"  node " + std::to_string(id), cpus_text(n)});
  char mean[32];
  std::snprintf(mean, sizeof mean, "%.1f", p.mean_distance);
  t.add({"  distance", std::to_string(p.distance_score) + " (sum over node pairs), " + mean +
                           " between two CPUs on average"});
  t.add({"  split cores", std::to_string(p.split_cores)});
  t.print(std::cout);
}

int show(const PlaceOptions& o) {
  // The daemon's ledger when a daemon runs (as placing uses it), else the file.
  const auto daemon = daemon_ledger_socket(o.ledger);
  const std::string path = daemon ? "daemon " + *daemon : ledger_path(o);
  auto ledger = daemon ? daemon_ledger(*daemon) : Ledger::load(path);
  if (!ledger) return report(ledger.error());
  auto facts = probe(o);
  if (!facts) return report(facts.error());
  const ForeignPins foreign = foreign_pins(o, *facts, *ledger);
  const CpuSet placeable = placeable_cpus(*facts);
  const CpuSet held = ledger->held();
  const CpuSet pinned = foreign.exclusive();
  const CpuSet shared = foreign.shared();
  nlohmann::json nodes = nlohmann::json::array();
  Table t;
  t.add({"node", "cpus", "held", "pinned", "shared", "free", "holders"});
  for (const NumaNode& node : facts->topology.numa_nodes) {
    const int id = node.id;
    const CpuSet& cpus = node.cpus;
    if (cpus.empty()) continue;
    nlohmann::json holders = nlohmann::json::object();
    std::string holder_text;
    const auto add_holder = [&](const std::string& name, const CpuSet& set) {
      const int n = (set & cpus).count();
      if (n == 0) return;
      holders[name] = n;
      holder_text += (holder_text.empty() ? "" : " ") + name + ":" + std::to_string(n);
    };
    for (const Hold& h : ledger->holds())
      add_holder(h.owner, h.cpus);
    for (const ForeignPin& pin : foreign.pins)
      add_holder(pin.holder, pin.cpus);
    const int held_here = (cpus & held).count();
    const int pinned_here = ((cpus & pinned) - held).count();
    const int shared_here = ((cpus & shared) - held).count();
    const int free_here = (((cpus & placeable) - held) - pinned).count();
    nodes.push_back({{"id", id},
                     {"cpus", cpus.to_list()},
                     {"held", held_here},
                     {"pinned", pinned_here},
                     {"shared", shared_here},
                     {"free", free_here},
                     {"holders", holders}});
    t.add({std::to_string(id), cpus.to_list(), std::to_string(held_here),
           std::to_string(pinned_here), std::to_string(shared_here), std::to_string(free_here),
           holder_text.empty() ? "-" : holder_text});
  }
  nlohmann::json foreign_json = nlohmann::json::array();
  for (const ForeignPin& pin : foreign.pins) {
    foreign_json.push_back({{"holder", pin.holder},
                            {"cpus", pin.cpus.to_list()},
                            {"mems", pin.mems.to_list()},
                            {"exclusive", pin.exclusive},
                            {"source", pin.source}});
  }
  if (json_output(o)) {
    nlohmann::json j = ledger->to_json();
    j["ledger"] = path;
    j["nodes"] = nodes;
    j["foreign"] = foreign_json;
    print_json(std::cout, j);
    return kExitOk;
  }
  const size_t n_holds = ledger->holds().size();
  std::cout << "ledger " << path << ": " << n_holds << (n_holds == 1 ? " hold, " : " holds, ")
            << cpus_text(held.count()) << " held; " << foreign.pins.size()
            << (foreign.pins.size() == 1 ? " pin" : " pins") << " by other tools"
            << (o.ignore_foreign ? " (not read: --ignore-foreign)" : "") << "\n";
  t.print(std::cout, "  ");
  if (!ledger->holds().empty() || !foreign.pins.empty()) {
    Table holds;
    holds.add({"owner", "cpus", "mems", "kind"});
    for (const Hold& h : ledger->holds())
      holds.add({h.owner, h.cpus.to_list(), h.mems.to_list(), "ledger"});
    for (const ForeignPin& pin : foreign.pins) {
      holds.add({pin.holder, pin.cpus.to_list(), pin.mems.empty() ? "-" : pin.mems.to_list(),
                 pin.exclusive ? "exclusive (never handed out)" : "shared (a cost)"});
    }
    std::cout << "holds\n";
    holds.print(std::cout, "  ");
  }
  return kExitOk;
}

int release(const PlaceOptions& o) {
  if (auto socket = daemon_ledger_socket(o.ledger)) {
    if (auto st = daemon_release(*socket, o.release); !st) return report(st.error());
    if (json_output(o)) {
      print_json(std::cout, {{"released", o.release}, {"daemon", *socket}});
    } else {
      std::cout << "released the CPUs of " << o.release << " from the daemon's ledger (" << *socket
                << ")\n";
    }
    return kExitOk;
  }
  const std::string path = ledger_path(o);
  auto hold = release_hold(path, o.release);
  if (!hold) return report(hold.error());
  if (json_output(o)) {
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
  auto ledger = Ledger::load(path);
  if (!ledger) return report(ledger.error());
  const ForeignPins foreign = foreign_pins(o, *facts, *ledger);
  Result<Placement> placed;
  const auto daemon = o.owner.empty() ? std::nullopt : daemon_ledger_socket(o.ledger);
  if (daemon) {
    placed = daemon_hold(*daemon, req, o.owner, o.ignore_foreign);
  } else if (!o.owner.empty()) {
    placed = place_and_hold(path, *facts, req, o.owner, foreign);
  } else {
    req.allowed_mems = placeable_mems(*facts);
    placed = place(facts->topology, placeable_cpus(*facts) - foreign.exclusive(), *ledger, req,
                   foreign.shared());
  }
  if (!placed)
    return report(explain_exclusive_pins(placed.error(), foreign, placeable_cpus(*facts)));
  for (const std::string& w : placed->warnings)
    std::cerr << "hostfit: warning: " << w << "\n";
  if (const Renderer* r = find_renderer(o.output)) {
    RenderContext context;
    if (!o.owner.empty()) context.instance = o.owner;
    std::cout << r->render(*placed, context);
  } else if (json_output(o)) {
    nlohmann::json j = to_json(*placed);
    j["owner"] = o.owner.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.owner);
    j["recorded"] = !o.owner.empty();
    j["ledger"] = daemon ? "daemon " + *daemon : path;
    print_json(std::cout, j);
  } else {
    print_placement(*placed, o.owner, daemon ? "the daemon's ledger (" + *daemon + ")" : path);
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
  cmd->add_flag("--ignore-foreign", opts->ignore_foreign,
                "Do not read the cpusets and affinities of other tools: hand out CPUs they pin");
  std::string words = "table|json";
  std::string help = "Output: table (default), json";
  for (const Renderer& r : renderers()) {
    words += "|" + std::string(r.name);
    help += "; " + std::string(r.name) + ": " + std::string(r.what);
  }
  cmd->add_option("-o,--output", opts->output, help)
      ->type_name(words)
      ->check(CLI::Validator(
          [words](std::string& value) -> std::string {
            if (value == "table" || value == "json" || find_renderer(value)) return {};
            return "'" + value + "' is not an output format (accepted: " + words + ")";
          },
          "", "format"));
  cmd->footer(
      "Offline, isolated and disallowed (outside this process's cpuset) CPUs are never handed "
      "out, nor CPUs that other tools pin exclusively (v1 cpuset.cpu_exclusive, v2 partitions).\n"
      "Examples:\n"
      "  hostfit place --cpus 48 --policy balanced --owner db -o json\n"
      "  docker run $(hostfit place --cpus 4 -o docker) IMAGE\n"
      "  numactl $(hostfit place --cpus 4 -o numactl) -- COMMAND\n"
      "  hostfit place --cores 8 --policy compact --mems near --owner cache\n"
      "  hostfit place --show\n"
      "  hostfit place --release db\n"
      "  hostfit place --sysroot /tmp/big --ledger /tmp/l.json --cpus 48 --owner a");
  commands.push_back({cmd, [opts, cpus, cores]() {
                        return run_place(*opts, cpus->count() > 0, cores->count() > 0);
                      }});
}

}  // namespace hostfit::cli
