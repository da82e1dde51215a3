// Machines for the place tests: generated fixture trees loaded through the probe, and small
// topologies built in memory for the property tests.
#pragma once

#include <memory>

#include "hostfit/place.h"
#include "hostfit/probe.h"
#include "sysroot_builder.h"

namespace hostfit::testing_place {

// A generated tree, probed as the process inside it sees it. Keeps its directory alive.
struct Machine {
  std::unique_ptr<fixtures::TempDir> dir = std::make_unique<fixtures::TempDir>();
  HostFacts facts;
  CpuSet allowed;  // placeable_cpus(facts)
  const Topology& topology() const { return facts.topology; }
};

inline Machine make_machine(const fixtures::Shape& shape) {
  Machine m;
  const auto written = fixtures::write_sysroot(m.dir->path(), shape);
  if (!written) throw std::runtime_error(written.error().message);
  m.facts = probe_host(Sysroot(m.dir->path()), ProbeTarget::self());
  m.allowed = placeable_cpus(m.facts);
  return m;
}

// The incident's host: 2 sockets x 12 nodes x 8 cores x 2 threads = 384 CPUs, 16 per node.
inline fixtures::Shape incident_shape() {
  fixtures::Shape s;
  s.sockets = 2;
  s.nodes_per_socket = 12;
  s.cores_per_node = 8;
  s.threads_per_core = 2;
  return s;
}

// Generated once per test binary: hwloc on a 384-CPU tree takes a moment.
inline const Machine& incident_machine() {
  static const Machine m = make_machine(incident_shape());
  return m;
}

inline fixtures::Shape shape(int sockets, int nodes_per_socket, int cores_per_node, int threads) {
  fixtures::Shape s;
  s.sockets = sockets;
  s.nodes_per_socket = nodes_per_socket;
  s.cores_per_node = cores_per_node;
  s.threads_per_core = threads;
  return s;
}

inline PlacementRequest cpus(int n, PlacementPolicy policy = PlacementPolicy::kBalanced) {
  PlacementRequest r;
  r.cpus = n;
  r.policy = policy;
  return r;
}

}  // namespace hostfit::testing_place
