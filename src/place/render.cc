// A placement as the arguments or commands of the tool that applies it: one table of renderers,
// each a small function, so the CLI (and later the API) never switch on the tool.
#include "hostfit/place.h"

namespace hostfit {
namespace {

// A memory node list the tools accept: every placement binds at least one node.
std::string mems_of(const Placement& p) {
  return p.mems.to_list();
}

// incus reads a single number in limits.cpu as a CPU count; "N-N" pins CPU N.
std::string incus_cpu_list(const CpuSet& cpus) {
  const std::string list = cpus.to_list();
  return cpus.count() == 1 ? list + "-" + list : list;
}

std::string render_incus(const Placement& p, const RenderContext& c) {
  CpuSet nodes;
  for (int id : p.nodes)
    nodes.set(id);
  return "incus config set " + c.instance + " limits.cpu=" + incus_cpu_list(p.cpus) + "\n" +
         "# the nodes of these CPUs, as volatile.cpu.nodes records them: " + nodes.to_list() + "\n";
}

std::string render_docker(const Placement& p, const RenderContext&) {
  return "--cpuset-cpus=" + p.cpus.to_list() + " --cpuset-mems=" + mems_of(p) + "\n";
}

std::string render_systemd(const Placement& p, const RenderContext&) {
  return "-p AllowedCPUs=" + p.cpus.to_list() + " -p AllowedMemoryNodes=" + mems_of(p) + "\n";
}

std::string render_systemd_unit(const Placement& p, const RenderContext&) {
  return "[Service]\nAllowedCPUs=" + p.cpus.to_list() + "\nAllowedMemoryNodes=" + mems_of(p) + "\n";
}

std::string render_numactl(const Placement& p, const RenderContext&) {
  return "--physcpubind=" + p.cpus.to_list() + " --membind=" + mems_of(p) + "\n";
}

std::string render_taskset(const Placement& p, const RenderContext&) {
  return "-c " + p.cpus.to_list() + "\n";
}

}  // namespace

const std::vector<Renderer>& renderers() {
  static const std::vector<Renderer> table = {
      {"incus", "the incus command that pins an instance (--owner names it)", render_incus},
      {"docker", "docker/podman run flags --cpuset-cpus and --cpuset-mems", render_docker},
      {"systemd", "systemd-run properties (-p AllowedCPUs= -p AllowedMemoryNodes=)",
       render_systemd},
      {"systemd-unit",
       "a unit drop-in with AllowedCPUs= and AllowedMemoryNodes=", render_systemd_unit},
      {"numactl", "numactl flags --physcpubind and --membind", render_numactl},
      {"taskset", "taskset flags -c LIST (CPUs only; taskset binds no memory)", render_taskset},
  };
  return table;
}

const Renderer* find_renderer(std::string_view name) {
  for (const Renderer& r : renderers()) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

}  // namespace hostfit
