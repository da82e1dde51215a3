// hostfit place: which CPUs and memory nodes a workload gets, and a ledger of who holds what.
//
//   hostfit::HostFacts facts = hostfit::probe_host(root, hostfit::ProbeTarget::self());
//   hostfit::PlacementRequest req{.cpus = 48, .policy = hostfit::PlacementPolicy::kBalanced};
//   auto placed = hostfit::place_and_hold(hostfit::default_ledger_path(), facts, req, "job-1");
//   // placed->cpus "0-7,192-199,8-15,..."; placed->mems "0-2"; later:
//   hostfit::release_hold(hostfit::default_ledger_path(), "job-1");
//
// The engine is a pure function of the topology, the CPUs the caller may use and the ledger:
// the same input gives the same placement. docs/place.md explains the policies and the algorithm.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "hostfit/core.h"
#include "hostfit/probe.h"

namespace hostfit {

// ---------------------------------------------------------------------------------------------
// Requests and placements

enum class PlacementPolicy {
  kBalanced,  // fewest nodes that hold it, near and least loaded, split evenly over them
  kCompact,   // fewest nodes that hold it, nearest together, filled one after the other
  kSpread,    // round-robin over every node with free CPUs
  kNodes,     // round-robin over the nodes in PlacementRequest::nodes only
};
enum class SmtMode {
  kAuto,       // whole cores when the count is a multiple of threads per core and they suffice
  kFullCores,  // whole cores only (every SMT sibling of a chosen CPU is chosen too)
  kAny,        // whole cores first, then single threads
};
enum class MemsMode {
  kFollow,  // the nodes the CPUs are on (a node outside the allowed mems: its nearest allowed one)
  kNear,    // kFollow plus CPU-less nodes whose nearest CPU node was chosen
  kAll,     // every allowed memory node
  kList,    // PlacementRequest::mems_list
};

struct PlacementRequest {
  int cpus = 0;   // CPUs wanted; or
  int cores = 0;  // whole cores wanted (exactly one of cpus and cores is > 0)
  PlacementPolicy policy = PlacementPolicy::kBalanced;
  std::vector<int> nodes;  // kNodes: node ids to use
  SmtMode smt = SmtMode::kAuto;
  MemsMode mems = MemsMode::kFollow;
  CpuSet mems_list;     // kList: node ids
  CpuSet allowed_mems;  // nodes memory may be bound to (the caller's cpuset.mems); empty = all
};

// Parsers for the CLI words; errors (kUsage) name the bad text and the accepted words.
Result<PlacementPolicy> parse_policy(std::string_view text,
                                     std::vector<int>* nodes);     // "nodes:1,3"
Result<SmtMode> parse_smt(std::string_view text);                  // "full-cores" | "any"
Result<MemsMode> parse_mems(std::string_view text, CpuSet* list);  // follow|near|all|LIST
std::string to_string(PlacementPolicy policy);  // "balanced", "compact", "spread", "nodes"
std::string to_string(SmtMode mode);            // "auto", "full-cores", "any"

struct Placement {
  CpuSet cpus;
  CpuSet mems;                  // NUMA node ids for cpuset.mems
  std::vector<int> nodes;       // node ids that got CPUs, ascending
  std::map<int, int> per_node;  // node id -> CPUs placed there
  int distance_score = 0;       // sum of node distances over pairs of chosen nodes (0: one node)
  double mean_distance = 0;     // node distance between two CPUs of the placement, on average
  int split_cores = 0;          // cores of which the placement took some SMT siblings, not all
  bool full_cores = false;      // placed as whole cores only
  PlacementPolicy policy = PlacementPolicy::kBalanced;
  std::vector<std::string> warnings;  // e.g. --mems that leaves out a node of the placed CPUs
};

// ---------------------------------------------------------------------------------------------
// The ledger: which CPUs (and memory nodes) each owner holds.

struct Hold {
  std::string owner;
  CpuSet cpus;
  CpuSet mems;
  // The group of a hold made by `hostfit run` (its first directory's target path, as
  // Cgroup::dirs[0].dir); "" for a hold made by `hostfit place`. Only holds with a group are
  // released when that group is swept as a killed run's leftover.
  std::string group{};
};

// A value type; not thread-safe. Owners are unique, and no CPU is held by two owners.
class Ledger {
 public:
  // A ledger file; a missing file is an empty ledger. A file that is not a valid ledger is an
  // error (kParse) naming the file and the problem; nothing is changed on disk. Only a regular
  // file with one name is read (a symlink, a hard-linked file, a FIFO or a device is refused), and
  // at most kMaxLedgerBytes of it. Linear in the number of holds.
  static Result<Ledger> load(const std::filesystem::path& path);
  static constexpr size_t kMaxLedgerBytes = size_t{256} << 20;
  static Result<Ledger> from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
  // Writes a temporary file next to path (created O_EXCL, never through a planted link), fsyncs
  // it and renames it over path, so readers see the old or the new ledger, never a half-written
  // one. A new ledger is 0600 in a new directory of 0700; a save keeps the old file's mode and
  // owner. Refuses a directory others may write to without the sticky bit, and a symlinked path.
  Status save(const std::filesystem::path& path) const;

  // Records that owner holds cpus and mems (for `group`, when a run holds them). kUsage for an
  // empty or duplicate owner name, kResource when a CPU is already held by someone else; the
  // ledger is unchanged on error.
  Status hold(const std::string& owner, const CpuSet& cpus, const CpuSet& mems,
              const std::string& group = {});
  // Forgets owner's hold; kNotFound (naming the owners there are) when it has none.
  Status release(const std::string& owner);

  const std::vector<Hold>& holds() const { return holds_; }  // in the order they were taken
  const Hold* find(std::string_view owner) const;
  CpuSet held() const;  // union of all holds' CPUs

 private:
  std::vector<Hold> holds_;
};

// The ledger path: $HOSTFIT_LEDGER when set and not empty, else /run/hostfit/ledger.json.
std::filesystem::path default_ledger_path();

// How long hostfit waits for another process's ledger lock before giving up.
inline constexpr std::chrono::milliseconds kLedgerLockWait{10000};

// An exclusive flock on PATH.lock (created 0600 with its directory, never through a symlink) for
// one read-modify-write of the ledger at PATH across hostfit processes. Released on destruction.
// Move-only.
class LedgerLock {
 public:
  // Waits at most `wait` for a lock another process holds (kResource after that, naming the
  // lock file). `cancelled` is asked while waiting; when it says true the wait ends with a
  // kResource error saying so.
  static Result<LedgerLock> acquire(const std::filesystem::path& ledger_path,
                                    std::chrono::milliseconds wait = kLedgerLockWait,
                                    const std::function<bool()>& cancelled = {});
  LedgerLock(LedgerLock&& other) noexcept;
  LedgerLock& operator=(LedgerLock&& other) noexcept;
  LedgerLock(const LedgerLock&) = delete;
  LedgerLock& operator=(const LedgerLock&) = delete;
  ~LedgerLock();

 private:
  explicit LedgerLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// ---------------------------------------------------------------------------------------------
// The engine

// CPUs hostfit may hand out to the probed process: usable (affinity ∩ cpuset ∩ online) minus
// isolated. Offline CPUs are never in it.
CpuSet placeable_cpus(const HostFacts& facts);
// Memory nodes it may bind to: the cpuset's mems, or empty (= all) when unknown.
CpuSet placeable_mems(const HostFacts& facts);

// Places the request on CPUs of `allowed` that no hold of `ledger` has. CPUs in
// `shared_with_others` (pinned by other tools, not exclusively) are a cost: nodes and cores
// without them are preferred. Pure and deterministic.
// Errors: kUsage for a malformed request (count 0, unknown node, bad mems); kResource when it
// does not fit, saying what is free per node ("cannot place 48 CPUs: 40 free (node 3: 16, ...)").
// CPUs in no NUMA node (e.g. of an offline node) are never handed out.
Result<Placement> place(const Topology& topology, const CpuSet& allowed, const Ledger& ledger,
                        const PlacementRequest& request, const CpuSet& shared_with_others = {});

// place() with the topology indexed once, for callers that make many decisions on one host (the
// daemon, benchmarks): the same placements, without re-reading the topology each time.
// Immutable after construction; place() may be called from several threads at once.
class PlacementEngine {
 public:
  explicit PlacementEngine(const Topology& topology);
  Result<Placement> place(const CpuSet& allowed, const Ledger& ledger,
                          const PlacementRequest& request,
                          const CpuSet& shared_with_others = {}) const;

  struct Index;  // defined in src/place/engine.cc

 private:
  std::shared_ptr<const Index> index_;
};

// ---------------------------------------------------------------------------------------------
// Pins that hostfit did not make

// CPUs another tool pinned: a cpuset cgroup whose CPUs differ from its parent's (a container, a
// systemd unit with AllowedCPUs=, a v2 partition), or a process whose affinity leaves out some
// of the CPUs hostfit may place on (taskset, numactl).
struct ForeignPin {
  std::string holder;      // "(/docker/abc)": the cgroup path, or "(pid 42 sleep)"
  std::string source;      // the file read, e.g. "/sys/fs/cgroup/cpuset/docker/abc/cpuset.cpus"
  CpuSet cpus;             // CPUs it runs on
  CpuSet mems;             // memory nodes, when known
  bool exclusive = false;  // v1 cpuset.cpu_exclusive, a v2 partition root or cpuset.cpus.exclusive
};

struct ForeignPins {
  std::vector<ForeignPin> pins;       // cgroups in hierarchy order, then processes by pid
  std::vector<std::string> warnings;  // parts that could not be read, and why
  CpuSet exclusive() const;           // CPUs held exclusively by others: never handed out
  CpuSet shared() const;              // CPUs others pin without exclusivity, minus exclusive()
};

// Reads every cpuset cgroup (v1 cpuset hierarchy, v2 with the cpuset controller) whose CPUs
// differ from its parent's, and the processes whose affinity narrows below `placeable`. Leaves
// out the probed process's own cgroup chain, its own pid, kernel threads, and pins inside
// `held` (hostfit's own groups, recorded in the ledger). Never fails: unreadable parts are
// skipped and named in `warnings`.
ForeignPins read_foreign_pins(const Sysroot& root, const HostFacts& facts, const CpuSet& held);
// A placement that found no room, told why when other tools' exclusive pins took some of
// `placeable`: "...; CPU 1 is pinned exclusively by other tools (hostfit place --show names them)".
Error explain_exclusive_pins(Error error, const ForeignPins& foreign, const CpuSet& placeable);
// The same for a placement to be recorded in the ledger at `ledger_path`: hostfit's own holds there
// are left out. A ledger that cannot be read leaves nothing out (placing then fails on it).
ForeignPins read_foreign_pins(const Sysroot& root, const HostFacts& facts,
                              const std::filesystem::path& ledger_path);

// For `hostfit run` and the CLI: under the ledger lock, loads the ledger at path, places the
// request for the probed process (never on CPUs others hold exclusively in `foreign`), records it
// for owner and saves. Nothing is written on error.
// `group` is recorded in the hold (see Hold::group); `wait` and `cancelled` go to
// LedgerLock::acquire.
Result<Placement> place_and_hold(const std::filesystem::path& ledger_path, const HostFacts& facts,
                                 const PlacementRequest& request, const std::string& owner,
                                 const ForeignPins& foreign = {}, const std::string& group = {},
                                 std::chrono::milliseconds wait = kLedgerLockWait,
                                 const std::function<bool()>& cancelled = {});

// ---------------------------------------------------------------------------------------------
// Rendering a placement for the tool that applies it

struct RenderContext {
  std::string instance = "NAME";  // incus: the instance to configure
};
struct Renderer {
  std::string_view name;  // the -o word: "incus", "docker", "systemd", "numactl", "taskset"
  std::string_view what;  // one line for --help
  std::string (*render)(const Placement& placement, const RenderContext& context);
};
// The renderers, in the order --help lists them.
const std::vector<Renderer>& renderers();
// The renderer named `name`, or nullptr.
const Renderer* find_renderer(std::string_view name);
// Under the ledger lock, removes owner's hold and saves; the released hold is returned.
Result<Hold> release_hold(const std::filesystem::path& ledger_path, const std::string& owner);
// Releases owner's hold only when a run made it for `group` (Hold::group == group): what the sweep
// of a killed run's leftover group may free. False, and nothing written, when there is none.
Result<bool> release_group_hold(const std::filesystem::path& ledger_path, const std::string& owner,
                                const std::string& group);

// {"cpus": "0-7", "mems": "0", "nodes": [0], "per_node": {"0": 8}, "distance_score": 0, ...};
// keys documented in docs/place.md.
nlohmann::json to_json(const Placement& placement);

}  // namespace hostfit
