// The generated trees (tests/fixtures, make-sysroot) against a real kernel: a tree generated for
// the guest's own shape must have the files the kernel has, with the kernel's content where the
// shape fixes it (CPU and node lists, topology ids, distances) and the kernel's keys where it does
// not (memory.events, memory.stat, cpu.stat, meminfo). Every difference is a failure that names
// the file, so a fixture never drifts from what the kernel writes.
#include <set>

#include "guest.h"

namespace hostfit::vm {
namespace {

namespace fs = std::filesystem;

std::set<std::string> keys_of(const std::string& text) {
  std::set<std::string> keys;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string key;
    if (words >> key) keys.insert(key);
  }
  return keys;
}

// make-sysroot arguments for the guest's shape; empty when the generator cannot express it.
std::vector<std::string> fixture_args_for_this_guest(const std::string& out) {
  std::vector<std::string> args = {MAKE_SYSROOT_BIN, out,
                                   "--cgroup",       cgroup_layout(),
                                   "--sockets",      env_or("HOSTFIT_VM_SOCKETS", "1")};
  const int cpus = std::stoi(env_or("HOSTFIT_VM_CPUS", "1"));
  const int sockets = std::stoi(env_or("HOSTFIT_VM_SOCKETS", "1"));
  int cpu_nodes = 1;
  if (const auto nodes = env_or("HOSTFIT_VM_NODES"); !nodes.empty()) {
    cpu_nodes = static_cast<int>(std::count(nodes.begin(), nodes.end(), ',')) + 1;
    if (nodes.find(",:") != std::string::npos || nodes.starts_with(":")) return {};
    // Only uniform shapes: 2 sockets x 2 nodes with local/same-socket/remote distances.
    std::string dist = env_or("HOSTFIT_VM_DIST");
    std::istringstream row(dist.substr(0, dist.find('/')));
    std::vector<std::string> d;
    for (std::string v; std::getline(row, v, ',');)
      d.push_back(v);
    if (d.size() != 4) return {};
    args.insert(args.end(), {"--distances", d[0] + "," + d[1] + "," + d[2]});
  }
  args.insert(args.end(), {"--nodes-per-socket", std::to_string(cpu_nodes / sockets),
                           "--cores-per-node", std::to_string(cpus / cpu_nodes)});
  if (const auto off = env_or("HOSTFIT_VM_OFFLINE"); !off.empty())
    args.insert(args.end(), {"--offline", off});
  // One group below the root, compared with a real one of the same name.
  args.insert(args.end(), {"--level", "fixture-probe"});
  return args;
}

class Fixture : public ::testing::Test {
 protected:
  void SetUp() override {
    HOSTFIT_REQUIRE_GUEST();
    tree_ = "/tmp/fixture-" + shape();
    const auto args = fixture_args_for_this_guest(tree_);
    if (args.empty()) GTEST_SKIP() << "make-sysroot cannot express shape " << shape();
    const auto r = fixtures::run_command(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  void TearDown() override { fs::remove_all(tree_); }
  std::string tree_;
};

// The fixture mounts v1 cpu and cpuacct together as "cpu,cpuacct" with cpu and cpuacct symlinks,
// as systemd does; the guest mounts one hierarchy per controller, as the build machine does. Both
// are real layouts, so a fixture hierarchy the guest did not mount is not compared.
bool guest_mounts(const std::string& hierarchy_dir) {
  return hierarchy_dir == "/sys/fs/cgroup" ||
         (fs::is_directory(hierarchy_dir) && hierarchy_dir.find(',') == std::string::npos);
}

// A file at the top of /sys/fs/cgroup (v2) or of /sys/fs/cgroup/HIERARCHY (v1, unified).
bool is_hierarchy_root_file(const std::string& rel) {
  const fs::path dir = fs::path(rel).parent_path();
  if (dir == "/sys/fs/cgroup") return cgroup_layout() == "v2";
  return dir.parent_path() == "/sys/fs/cgroup" && cgroup_layout() != "v2" &&
         guest_mounts(dir.string());
}

// Files whose content follows from the shape alone.
bool content_is_the_shapes(const std::string& rel) {
  static const std::vector<std::string> exact = {"/sys/devices/system/cpu/online",
                                                 "/sys/devices/system/cpu/offline",
                                                 "/sys/devices/system/cpu/present",
                                                 "/sys/devices/system/node/online",
                                                 "/sys/devices/system/node/has_cpu",
                                                 "/sys/devices/system/node/has_memory",
                                                 "/cpulist",
                                                 "/distance",
                                                 "/topology/core_cpus_list",
                                                 "/topology/thread_siblings_list",
                                                 "/topology/package_cpus_list",
                                                 "/topology/core_siblings_list",
                                                 "/topology/physical_package_id",
                                                 "/topology/die_cpus_list",
                                                 "/sys/fs/cgroup/cgroup.controllers"};
  for (const auto& e : exact) {
    if (rel == e || (e.front() == '/' && e.find("/sys") != 0 && rel.ends_with(e))) return true;
  }
  return false;
}

// Files of "key value" lines: the fixture must use the kernel's keys.
bool keyed(const std::string& rel) {
  return rel.ends_with("/memory.events") || rel.ends_with("/memory.stat") ||
         rel.ends_with("/cpu.stat") || rel == "/proc/meminfo" || rel.ends_with("/meminfo");
}

TEST_F(Fixture, GeneratedSysFilesExistInTheKernelWithItsContentAndKeys) {
  std::vector<std::string> differences;
  for (const auto& entry : fs::recursive_directory_iterator(tree_ + "/sys")) {
    if (!entry.is_regular_file()) continue;
    const std::string rel = entry.path().string().substr(tree_.size());
    // Caches are hwloc's business and depend on the emulated CPU; groups below the roots are
    // compared by the next test.
    if (rel.find("/cache/") != std::string::npos) continue;
    if (rel.starts_with("/sys/fs/cgroup/") && !is_hierarchy_root_file(rel)) continue;
    if (!fs::exists(rel)) {
      differences.push_back(rel + ": the kernel has no such file");
      continue;
    }
    const std::string fixture = trimmed(slurp(entry.path())), kernel = trimmed(slurp(rel));
    if (content_is_the_shapes(rel) && fixture != kernel) {
      differences.push_back(rel + ": fixture '" + fixture + "', kernel '" + kernel + "'");
    } else if (keyed(rel)) {
      for (const auto& k : keys_of(fixture)) {
        if (!keys_of(kernel).contains(k))
          differences.push_back(rel + ": key '" + k + "' is not the kernel's");
      }
    }
  }
  for (const auto& d : differences)
    ADD_FAILURE() << d;
}

TEST_F(Fixture, AGeneratedGroupHasTheFilesAndKeysOfARealOne) {
  // A real group next to hostfit's: one level below the root of each hierarchy.
  const std::string name = "fixture-probe";
  std::vector<std::string> roots;
  if (cgroup_layout() == "v2") {
    roots = {"/sys/fs/cgroup"};
  } else {
    for (const char* h : {"cpu", "cpuacct", "cpuset", "memory", "pids"})
      roots.push_back(std::string("/sys/fs/cgroup/") + h);
  }
  for (const auto& r : roots)
    fs::create_directory(r + "/" + name);
  std::vector<std::string> differences;
  for (const auto& r : roots) {
    const std::string fixture_dir = tree_ + r + "/" + name;
    if (fs::is_symlink(tree_ + r)) continue;  // the fixture's cpu,cpuacct: see guest_mounts
    if (!fs::exists(fixture_dir)) {
      differences.push_back(fixture_dir + ": the fixture has no group where the kernel has one");
      continue;
    }
    for (const auto& entry : fs::directory_iterator(fixture_dir)) {
      const std::string kernel = r + "/" + name + "/" + entry.path().filename().string();
      if (!fs::exists(kernel)) {
        differences.push_back(kernel + ": the kernel has no such file");
      } else if (keyed(kernel)) {
        const auto kernel_keys = keys_of(slurp(kernel));
        for (const auto& k : keys_of(slurp(entry.path()))) {
          if (!kernel_keys.contains(k))
            differences.push_back(kernel + ": key '" + k + "' is not the kernel's");
        }
      }
    }
  }
  for (const auto& r : roots)
    ::rmdir((r + "/" + name).c_str());
  for (const auto& d : differences)
    ADD_FAILURE() << d;
}

}  // namespace
}  // namespace hostfit::vm
