// The probe on /sys and /proc trees captured from real machines, checked against what lstopo and
// lscpu printed for the same trees (../shared/fixtures/real).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "command.h"
#include "files.h"
#include "hostfit/probe.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using fixtures::slurp;
const std::filesystem::path kShared = HOSTFIT_SHARED_FIXTURES;

// What the reference tool saw: node id -> CPUs, and every CPU.
struct Expected {
  std::map<int, CpuSet> nodes;
  CpuSet cpus;
};

// lstopo -v text: a NUMANode's CPUs are the PUs below the object it hangs from.
Expected from_lstopo_text(const std::string& text) {
  struct Line {
    size_t indent;
    std::string body;
  };
  std::vector<Line> lines;
  for (auto l : split(text, '\n')) {
    const std::string s(l);
    const size_t indent = s.find_first_not_of(' ');
    if (indent == std::string::npos) continue;
    lines.push_back({indent, s.substr(indent)});
  }
  const std::regex pu_re(R"(^PU L#\d+ \(P#(\d+))");
  const std::regex node_re(R"(^NUMANode L#\d+ \(P#(\d+))");
  Expected e;
  std::smatch m;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (std::regex_search(lines[i].body, m, pu_re)) e.cpus.set(std::stoi(m[1]));
    if (!std::regex_search(lines[i].body, m, node_re)) continue;
    const int id = std::stoi(m[1]);
    size_t parent = i;
    while (parent > 0 && lines[parent].indent >= lines[i].indent)
      --parent;
    CpuSet cpus;
    for (size_t j = parent + 1; j < lines.size() && lines[j].indent > lines[parent].indent; ++j) {
      if (std::regex_search(lines[j].body, m, pu_re)) cpus.set(std::stoi(m[1]));
    }
    e.nodes[id] = cpus;
  }
  return e;
}

// lstopo XML: NUMANode and PU objects carry os_index and cpuset attributes.
Expected from_lstopo_xml(const std::string& text) {
  Expected e;
  const std::regex obj_re(
      R"re(<object type="(NUMANode|PU)" os_index="(\d+)" cpuset="([0-9a-fx,]+)")re");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), obj_re);
       it != std::sregex_iterator(); ++it) {
    const int id = std::stoi((*it)[2]);
    if ((*it)[1] == "PU") {
      e.cpus.set(id);
    } else {
      std::string mask = (*it)[3];
      mask = std::regex_replace(mask, std::regex("0x"), "");
      e.nodes[id] = *CpuSet::parse_mask(mask);
    }
  }
  return e;
}

// lscpu: "NUMA node3 CPU(s):   12-15" and "On-line CPU(s) list:   0-15".
Expected from_lscpu(const std::string& text) {
  Expected e;
  const std::regex node_re(R"(^NUMA node(\d+) CPU\(s\):\s+(\S+))");
  const std::regex online_re(R"(^On-line CPU\(s\) list:\s+(\S+))");
  std::smatch m;
  for (auto l : split(text, '\n')) {
    const std::string s(l);
    if (std::regex_search(s, m, node_re))
      e.nodes[std::stoi(m[1])] = *CpuSet::parse_list(m[2].str());
    if (std::regex_search(s, m, online_re)) e.cpus = *CpuSet::parse_list(m[1].str());
  }
  return e;
}

class RealTreeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RealTreeTest, NodesAndCpusAgreeWithTheReferenceTool) {
  const std::string name = GetParam();
  std::filesystem::path archive;
  for (const char* ext : {".tar.bz2", ".tar.gz"}) {
    if (std::filesystem::exists(kShared / (name + ext))) archive = kShared / (name + ext);
  }
  if (archive.empty()) GTEST_SKIP() << "no " << name << " archive under " << kShared;
  fixtures::TempDir dir;
  const auto tar =
      fixtures::run_command({"tar", "-xf", archive.string(), "-C", dir.path().string()});
  ASSERT_EQ(tar.exit_code, 0) << tar.err;
  std::filesystem::path top;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    top = entry.path();
  ASSERT_FALSE(top.empty());

  Expected expected;
  if (std::filesystem::exists(kShared / (name + ".lstopo.txt"))) {
    expected = from_lstopo_text(slurp(kShared / (name + ".lstopo.txt")));
  } else if (std::filesystem::exists(kShared / (name + ".lstopo.xml"))) {
    expected = from_lstopo_xml(slurp(kShared / (name + ".lstopo.xml")));
  } else {
    expected = from_lscpu(slurp(kShared / (name + ".lscpu.txt")));
  }
  ASSERT_FALSE(expected.nodes.empty()) << "could not read the reference output for " << name;

  const HostFacts f = probe_host(Sysroot(top), ProbeTarget::self());
  ASSERT_TRUE(f.topology.known()) << f.topology.unknown_reason;
  // lstopo (without --disallowed) shows what the capture's process may use: usable CPUs, and the
  // nodes of its cpuset's mems. hostfit keeps the whole machine and marks what is usable.
  EXPECT_EQ(f.cpu.usable, expected.cpus)
      << "hostfit " << f.cpu.usable.to_list() << " vs reference " << expected.cpus.to_list();
  std::map<int, CpuSet> ours;
  for (const auto& n : f.topology.numa_nodes) {
    if (f.cpu.cpuset_mems.known() && !f.cpu.cpuset_mems->contains(n.id)) continue;
    ours[n.id] = n.cpus & f.cpu.usable;
  }
  // A reference node list may omit memory-less or unallowed nodes; every node it names must match.
  for (const auto& [id, cpus] : expected.nodes) {
    ASSERT_TRUE(ours.count(id)) << name << ": node " << id << " missing";
    EXPECT_EQ(ours[id], cpus) << name << " node " << id << ": hostfit " << ours[id].to_list()
                              << " vs reference " << cpus.to_list();
  }
  EXPECT_EQ(ours.size(), expected.nodes.size()) << name;
}

INSTANTIATE_TEST_SUITE_P(Captures, RealTreeTest,
                         ::testing::Values("16amd64-8n2c-cpusets", "256ppc-8n8s4t",
                                           "32amd64-4s2n4c-cgroup2", "48amd64-4pa2n6c-sparse",
                                           "offline-cpu0-node0", "vmware_fpe", "x86_64-epyc_7451"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return n;
                         });

TEST(RealTreeFactsTest, CpusetCaptureRestrictsToItsCgroup) {
  const auto archive = kShared / "16amd64-8n2c-cpusets.tar.bz2";
  if (!std::filesystem::exists(archive)) GTEST_SKIP() << "no " << archive;
  fixtures::TempDir dir;
  ASSERT_EQ(
      fixtures::run_command({"tar", "-xf", archive.string(), "-C", dir.path().string()}).exit_code,
      0);
  const auto top = std::filesystem::directory_iterator(dir.path())->path();
  const HostFacts f = probe_host(Sysroot(top), ProbeTarget::self());
  ASSERT_TRUE(f.cpu.cpuset.known()) << f.cpu.cpuset.unknown_reason;
  EXPECT_EQ(f.cpu.cpuset->to_list(), "0-6,12-15");
  EXPECT_EQ(f.cpu.cpuset_mems->to_list(), "1-4");
  EXPECT_EQ(f.cpu.binding_kind, CpuBinding::kCpuset);
  EXPECT_FALSE(f.cpu.usable.contains(4)) << "CPU 4 is offline in this capture";
}

}  // namespace
}  // namespace hostfit
