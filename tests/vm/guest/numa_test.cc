// NUMA on a real kernel: the probe's nodes, CPUs and distances against what the guest kernel
// exposes (and what the shape declared), `hostfit place` then `hostfit run --placement balanced`
// with the workload's Cpus_allowed_list, Mems_allowed_list and the nodes its memory landed on, and
// offline CPUs that are never counted or placed.
#include <algorithm>
#include <map>
#include <set>

#include "guest.h"
#include "hostfit/core.h"

namespace hostfit::vm {
namespace {

namespace fs = std::filesystem;

std::string sys(const std::string& path) {
  return trimmed(slurp(path));
}

// A CPU or node list in the kernel's canonical form, so "0,1" and "0-1" compare equal.
std::string canonical(const std::string& list) {
  return CpuSet::parse_list(list).value_or(CpuSet{}).to_list();
}

// The kernel's node ids, in order.
std::vector<int> kernel_nodes() {
  std::vector<int> ids;
  for (int id : CpuSet::parse_list(sys("/sys/devices/system/node/online")).value().ids())
    ids.push_back(id);
  return ids;
}

std::string node_dir(int id) {
  return "/sys/devices/system/node/node" + std::to_string(id);
}

// "0-1:512M,2:512M,:256M" -> CPU lists per node as declared, offline CPUs removed.
std::vector<CpuSet> declared_node_cpus() {
  std::vector<CpuSet> out;
  const auto offline = CpuSet::parse_list(env_or("HOSTFIT_VM_OFFLINE")).value_or(CpuSet{});
  std::istringstream in(env_or("HOSTFIT_VM_NODES"));
  for (std::string node; std::getline(in, node, ',');) {
    out.push_back(CpuSet::parse_list(node.substr(0, node.find(':'))).value_or(CpuSet{}) - offline);
  }
  return out;
}

class Numa : public ::testing::Test {
 protected:
  void SetUp() override {
    HOSTFIT_REQUIRE_GUEST();
    if (env_or("HOSTFIT_VM_NODES").empty()) GTEST_SKIP() << "shape " << shape() << " has one node";
    ledger_ = "/tmp/" + test_name() + ".ledger.json";
  }
  void TearDown() override {
    fs::remove(ledger_);
    fs::remove(ledger_ + ".lock");
  }
  std::vector<std::string> ledger_env() const { return {"HOSTFIT_LEDGER=" + ledger_}; }
  std::string ledger_;
};

TEST_F(Numa, ProbeNodesCpusAndDistancesAreTheKernels) {
  const auto j = hostfit_json({"probe"});
  const auto& nodes = j["topology"]["numa_nodes"];
  const auto ids = kernel_nodes();
  const auto declared = declared_node_cpus();
  ASSERT_EQ(nodes.size(), ids.size()) << nodes.dump();
  ASSERT_EQ(ids.size(), declared.size()) << "the kernel made other nodes than the shape declared";
  std::vector<int> cpuless;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int id = ids[i];
    EXPECT_EQ(nodes[i]["id"], id);
    const auto kernel_cpus = CpuSet::parse_list(sys(node_dir(id) + "/cpulist")).value();
    EXPECT_EQ(canonical(nodes[i]["cpus"].get<std::string>()), kernel_cpus.to_list())
        << "node " << id << ": " << nodes[i].dump();
    EXPECT_EQ(kernel_cpus.to_list(), declared[i].to_list()) << "node " << id;
    if (kernel_cpus.empty()) cpuless.push_back(id);
    // The distance row, in the order of the nodes array, equals the kernel's nodeN/distance.
    std::istringstream row(sys(node_dir(id) + "/distance"));
    std::vector<int> kernel_row;
    for (int d; row >> d;)
      kernel_row.push_back(d);
    EXPECT_EQ(nodes[i]["distances"].get<std::vector<int>>(), kernel_row) << "node " << id;
    // Node memory: the kernel's "Node N MemTotal: K kB".
    std::istringstream meminfo(slurp(node_dir(id) + "/meminfo"));
    uint64_t kb = 0;
    for (std::string line; std::getline(meminfo, line);) {
      if (line.find("MemTotal:") != std::string::npos)
        kb = std::stoull(line.substr(line.find(':') + 1));
    }
    EXPECT_EQ(nodes[i]["memory_bytes"].get<uint64_t>(), kb * 1024) << "node " << id;
  }
  EXPECT_EQ(j["topology"]["cpuless_nodes"].get<std::vector<int>>(), cpuless);
  // The declared matrix is what the kernel took.
  if (const auto dist = env_or("HOSTFIT_VM_DIST"); !dist.empty()) {
    std::string declared_rows;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) declared_rows += "/";
      declared_rows += sys(node_dir(ids[i]) + "/distance");
    }
    std::replace(declared_rows.begin(), declared_rows.end(), ' ', ',');
    EXPECT_EQ(declared_rows, dist);
  }
  // Packages: as many as the shape's sockets.
  EXPECT_EQ(j["topology"]["packages"].size(), std::stoul(env_or("HOSTFIT_VM_SOCKETS", "1")));
}

// What the workload of `hostfit run --placement` reports about itself.
struct Placed {
  std::string cpus_allowed, mems_allowed;
  std::map<int, size_t> pages_per_node;
  nlohmann::json placement;
};

Placed run_placed(const std::string& name, int cpus, const std::vector<std::string>& env) {
  const std::string report = "/tmp/" + name + ".json";
  const auto r = hostfit({"run", "--name", name, "--cpus", std::to_string(cpus), "--placement",
                          "balanced", "--report", report, "--", "sh", "-c",
                          "grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status; exec " +
                              std::string(VM_HOG_BIN) + " 64"},
                         env);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  Placed p;
  p.cpus_allowed = status_field(r.out, "Cpus_allowed_list");
  p.mems_allowed = status_field(r.out, "Mems_allowed_list");
  std::istringstream in(r.out.substr(std::min(r.out.find("nodes"), r.out.size())));
  std::string word;
  in >> word;
  while (in >> word) {
    const auto eq = word.find('=');
    p.pages_per_node[std::stoi(word.substr(0, eq))] = std::stoul(word.substr(eq + 1));
  }
  auto j = nlohmann::json::parse(slurp(report), nullptr, false);
  fs::remove(report);
  if (!j.is_discarded()) p.placement = j["placement"];
  return p;
}

TEST_F(Numa, PlaceThenRunBalancedBindsCpusMemsAndMemoryToThePlacement) {
  const auto online = CpuSet::parse_list(sys("/sys/devices/system/cpu/online")).value();
  for (int n = 1; n <= static_cast<int>(online.count()); ++n) {
    SCOPED_TRACE("--cpus " + std::to_string(n));
    // A dry run first: the same request on the same empty ledger must give the same placement.
    const auto dry =
        hostfit_json({"place", "--cpus", std::to_string(n), "--policy", "balanced"}, ledger_env());
    const auto p = run_placed(test_name("-" + std::to_string(n)), n, ledger_env());
    ASSERT_TRUE(p.placement.is_object()) << "no placement in the report";
    EXPECT_EQ(p.placement["cpus"], dry["cpus"]);
    EXPECT_EQ(p.placement["mems"], dry["mems"]);
    EXPECT_EQ(canonical(p.cpus_allowed), canonical(p.placement["cpus"].get<std::string>()));
    EXPECT_EQ(canonical(p.mems_allowed), canonical(p.placement["mems"].get<std::string>()));
    const auto mems = CpuSet::parse_list(p.mems_allowed).value_or(CpuSet{});
    size_t pages = 0;
    for (const auto& [node, count] : p.pages_per_node) {
      EXPECT_TRUE(node >= 0 && mems.contains(node))
          << count << " pages landed on node " << node << ", outside mems " << p.mems_allowed;
      pages += count;
    }
    EXPECT_GE(pages, size_t{64} << 20 >> 12) << "move_pages saw too few pages";
    // The ledger is released when the workload ends.
    const auto show = hostfit_json({"place", "--show"}, ledger_env());
    EXPECT_EQ(show.dump().find(test_name("-" + std::to_string(n))), std::string::npos)
        << show.dump();
  }
}

// `hostfit place -o taskset|numactl` applied by the real tools on each node of a multi-node
// kernel: the started process runs on the placed CPUs, and numactl binds its memory to the placed
// nodes (read back through `numactl --show`, as --membind is a policy, not the cpuset).
TEST_F(Numa, RenderedPlacementsApplyOnEveryNode) {
  const auto probe = hostfit_json({"probe"});
  for (const auto& node : probe["topology"]["numa_nodes"]) {
    const auto cpus = CpuSet::parse_list(node["cpus"].get<std::string>()).value_or(CpuSet{});
    if (cpus.empty()) continue;  // a memory-only node
    const std::string id = std::to_string(node["id"].get<int>());
    SCOPED_TRACE("node " + id);
    const std::vector<std::string> place = {"place", "--cpus", "1", "--policy", "nodes:" + id};
    const auto j = hostfit_json(place, ledger_env());
    for (const std::string tool : {"taskset", "numactl"}) {
      auto args = place;
      args.insert(args.end(), {"-o", tool});
      const auto rendered = hostfit(args, ledger_env());
      ASSERT_EQ(rendered.exit_code, 0) << rendered.err;
      std::vector<std::string> argv = {tool};
      std::istringstream words(rendered.out);
      for (std::string w; words >> w;)
        argv.push_back(w);
      if (tool == "numactl") argv.push_back("--");
      auto status = argv;
      status.insert(status.end(), {"cat", "/proc/self/status"});
      const auto run = fixtures::run_command(status);
      ASSERT_EQ(run.exit_code, 0) << tool << ": " << run.err;
      EXPECT_EQ(canonical(status_field(run.out, "Cpus_allowed_list")),
                canonical(j["cpus"].get<std::string>()))
          << tool;
      if (tool != "numactl") continue;
      argv.insert(argv.end(), {"numactl", "--show"});
      const auto show = fixtures::run_command(argv);
      ASSERT_EQ(show.exit_code, 0) << show.err;
      EXPECT_NE(show.out.find("policy: bind"), std::string::npos) << show.out;
      EXPECT_NE(show.out.find("membind: " + id + " \n"), std::string::npos)
          << "placed mems " << j["mems"] << "; numactl --show:\n"
          << show.out;
    }
  }
}

TEST_F(Numa, BalancedPrefersNodesOfOnePackage) {
  // Two CPUs fit in one package of every NUMA shape: the placement must not cross sockets.
  const auto probe = hostfit_json({"probe"});
  const auto place = hostfit_json({"place", "--cpus", "2", "--policy", "balanced"}, ledger_env());
  const auto cpus = CpuSet::parse_list(place["cpus"].get<std::string>()).value();
  int packages_used = 0;
  for (const auto& pkg : probe["topology"]["packages"]) {
    const auto pc = CpuSet::parse_list(pkg["cpus"].get<std::string>()).value();
    if (!(pc & cpus).empty()) ++packages_used;
  }
  EXPECT_EQ(packages_used, 1) << place.dump();
}

TEST_F(Numa, OfflineCpusAreNeverCountedOrPlaced) {
  const auto offline = CpuSet::parse_list(env_or("HOSTFIT_VM_OFFLINE")).value_or(CpuSet{});
  if (offline.empty()) GTEST_SKIP() << "shape " << shape() << " takes no CPU offline";
  const auto online = CpuSet::parse_list(sys("/sys/devices/system/cpu/online")).value();
  ASSERT_TRUE((online & offline).empty()) << "the runner did not take them offline";
  const auto probe = hostfit_json({"probe"});
  EXPECT_EQ(canonical(probe["cpu"]["online"].get<std::string>()), online.to_list());
  EXPECT_EQ(canonical(probe["cpu"]["offline"].get<std::string>()), offline.to_list());
  EXPECT_DOUBLE_EQ(probe["cpu"]["effective"].get<double>(), static_cast<double>(online.count()));
  const auto plan = hostfit_json({"plan"});
  EXPECT_EQ(plan["workers"], online.count());
  // All online CPUs can be placed, and none of the offline ones is among them.
  const auto all = hostfit_json({"place", "--cpus", std::to_string(online.count())}, ledger_env());
  EXPECT_EQ(canonical(all["cpus"].get<std::string>()), online.to_list());
  // One more than online is refused.
  const auto more = hostfit({"place", "--cpus", std::to_string(online.count() + 1)}, ledger_env());
  EXPECT_EQ(more.exit_code, 1) << more.out << more.err;
  EXPECT_TRUE(more.err.starts_with("hostfit: ")) << more.err;
}

}  // namespace
}  // namespace hostfit::vm
