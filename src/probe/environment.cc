// Virtualization and container detection: evidence from cpuinfo flags, DMI strings,
// /sys/hypervisor, the kernel command line and container marker files.
#include <cstdlib>

#include "hostfit/probe.h"
#include "kernel_files.h"

namespace hostfit {
namespace {

struct DmiMatch {
  std::string_view needle;  // substring of sys_vendor or product_name
  std::string_view name;
};

// DMI strings as hypervisors and clouds set them.
constexpr DmiMatch kDmiMatches[] = {
    {"QEMU", "qemu"},
    {"KVM", "kvm"},
    {"VMware", "vmware"},
    {"Microsoft Corporation", "hyper-v"},
    {"Xen", "xen"},
    {"innotek", "virtualbox"},
    {"VirtualBox", "virtualbox"},
    {"Parallels", "parallels"},
    {"Bochs", "bochs"},
    {"Amazon EC2", "amazon"},
    {"Google", "google"},
    {"Alibaba Cloud", "alibaba"},
    {"OpenStack", "openstack"},
    {"DigitalOcean", "digitalocean"},
    {"Hetzner", "hetzner"},
    {"Firecracker", "firecracker"},
};

}  // namespace

EnvironmentFacts probe_environment(const Sysroot& root, const CgroupFacts& cgroups) {
  EnvironmentFacts env;
  std::string virt;
  bool hypervisor_flag = false;
  if (auto cpuinfo = root.read(kfile::kCpuInfo)) {
    for (std::string_view line : split(*cpuinfo, '\n')) {
      if (!line.starts_with("flags")) continue;
      for (auto flag : split_whitespace(line.substr(line.find(':') + 1))) {
        if (flag == "hypervisor") hypervisor_flag = true;
      }
      break;
    }
    if (hypervisor_flag) env.virtualization_evidence.push_back("cpuinfo flag 'hypervisor'");
  }
  std::string dmi_text;
  for (auto file : {kfile::kDmiSysVendor, kfile::kDmiProductName}) {
    if (auto value = root.read_value(file)) {
      dmi_text += *value + " ";
      for (const auto& match : kDmiMatches) {
        if (value->find(match.needle) != std::string::npos && virt.empty()) {
          virt = match.name;
          env.virtualization_evidence.push_back(std::string(file) + " '" + *value + "'");
        }
      }
    }
  }
  if (auto type = root.read_value(kfile::kHypervisorType)) {
    if (virt.empty()) virt = *type;
    env.virtualization_evidence.push_back(std::string(kfile::kHypervisorType) + " '" + *type + "'");
  }
  if (virt.empty()) {
    if (auto cmdline = root.read(kfile::kProcCmdline);
        cmdline && cmdline->find("firecracker") != std::string::npos) {
      virt = "firecracker";
      env.virtualization_evidence.push_back("/proc/cmdline mentions firecracker");
    }
  }
  if (virt.empty() && hypervisor_flag) virt = "unidentified hypervisor";
  if (virt.empty()) {
    env.virtualization = Fact<std::string>::of("none", "cpuinfo flags, DMI, /sys/hypervisor");
  } else {
    std::string evidence;
    for (const auto& e : env.virtualization_evidence)
      evidence += (evidence.empty() ? "" : "; ") + e;
    env.virtualization = Fact<std::string>::of(virt, evidence, std::string(trim(dmi_text)));
  }

  if (root.exists(kfile::kDockerEnv)) env.container_hints.push_back("/.dockerenv exists");
  if (root.exists(kfile::kContainerEnv)) env.container_hints.push_back("/run/.containerenv exists");
  if (root.is_host() && std::getenv("KUBERNETES_SERVICE_HOST")) {
    env.container_hints.push_back("KUBERNETES_SERVICE_HOST is set");
  }
  for (const auto& m : cgroups.mounts) {
    if (!m.root.empty() && m.root != "/") {
      env.container_hints.push_back("cgroup hierarchy at " + m.mount_point + " is mounted from " +
                                    m.root + " (a container's view)");
      break;
    }
  }
  for (const auto& [controller, path] : cgroups.paths) {
    for (std::string_view runtime : {"docker", "kubepods", "containerd", "crio", "libpod", "lxc"}) {
      if (path.find(runtime) != std::string::npos) {
        env.container_hints.push_back("cgroup path " + path + " names " + std::string(runtime));
        return env;
      }
    }
  }
  return env;
}

}  // namespace hostfit
