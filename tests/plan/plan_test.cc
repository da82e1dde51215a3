// make_plan on HostFacts built directly: each rule of the plan and its explanation.
#include "hostfit/plan.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace hostfit {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

// A machine with `cpus` online CPUs, 64 GiB available, no limits, default kernel knobs.
HostFacts host(int cpus) {
  HostFacts f;
  f.cpu.online = Fact<CpuSet>::of(CpuSet::range(0, cpus - 1), "/sys/devices/system/cpu/online");
  f.cpu.cpuset_mems = Fact<CpuSet>::of(CpuSet::of({0}), "/sys/fs/cgroup/cpuset.mems.effective");
  compute_effective_cpus(f.cpu);
  f.memory.available = Fact<uint64_t>::of(64 * kGiB, "/proc/meminfo MemAvailable");
  f.memory.max_map_count = Fact<uint64_t>::of(65530, "/proc/sys/vm/max_map_count");
  f.memory.map_count = Fact<uint64_t>::of(40, "/proc/self/maps (lines)");
  f.memory.rlimit_as = Fact<ResourceLimit>::of({Limit::unlimited(), Limit::unlimited()},
                                               "/proc/self/limits Max address space");
  f.memory.virtual_address_bits = Fact<int>::of(48, "/proc/cpuinfo address sizes");
  f.cgroup.memory_limit = Fact<Limit>::of(Limit::unlimited(), "/sys/fs/cgroup/l0");
  return f;
}

void set_quota(HostFacts& f, int64_t quota_us, int64_t period_us) {
  CpuQuota q;
  q.cgroup = "/l0";
  q.source = "/sys/fs/cgroup/l0/cpu.max";
  q.quota_us = quota_us;
  q.period_us = period_us;
  q.v2 = true;
  f.cpu.quotas = {q};
  compute_effective_cpus(f.cpu);
}

void set_memory_limit(HostFacts& f, uint64_t bytes) {
  f.cgroup.memory_limit = Fact<Limit>::of(Limit::of(bytes), "/sys/fs/cgroup/l0/memory.max");
  f.cgroup.memory_limit_cgroup = "/l0";
}

// Envoy's V8 from documentation (8 GiB, 16 MiB, 10 maps, cap 6,479): fixed numbers for the rules.
WorkloadShape v8_plugins(uint64_t plugins) {
  WorkloadShape s;
  s.instances_per_worker = plugins;
  s.runtime = *find_runtime("envoy-v8");
  return s;
}

// The V8 measured here (docs/runtimes.md), whatever its numbers are today.
WorkloadShape measured_v8_plugins(uint64_t plugins) {
  WorkloadShape s;
  s.instances_per_worker = plugins;
  s.runtime = *find_runtime("v8");
  return s;
}

TEST(PlanTest, WithoutInstancesWorkersFollowTheCpus) {
  const auto plan = make_plan(host(16), WorkloadShape{});
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->workers, 16u);
  EXPECT_EQ(plan->instances, 0u);
  EXPECT_EQ(plan->binding_kind, Constraint::kCpu);
  EXPECT_FALSE(plan->instance_budget.has_value());
  for (const auto& b : plan->budgets)
    EXPECT_EQ(b.state, Budget::State::kNotApplicable) << to_string(b.constraint);
}

TEST(PlanTest, IncidentHostWithV8NeverProposesMoreInstancesThanTheBudget) {
  // 255 cores x 8 plugins = 2,040 VMs; with 4 GiB available memory binds first.
  HostFacts f = host(255);
  f.memory.available = Fact<uint64_t>::of(4 * kGiB, "/proc/meminfo MemAvailable");
  const auto plan = make_plan(f, v8_plugins(8));
  ASSERT_TRUE(plan) << plan.error().message;
  ASSERT_TRUE(plan->instance_budget.has_value());
  EXPECT_LE(plan->instances, *plan->instance_budget);
  EXPECT_EQ(plan->binding_kind, Constraint::kMemory);
  // (4 GiB - 10%) / 16 MiB = 230 instances -> 28 workers of 8.
  EXPECT_EQ(*plan->instance_budget, 230u);
  EXPECT_EQ(plan->workers, 28u);
  EXPECT_EQ(plan->instances, 224u);
  EXPECT_EQ(plan->binding.rfind("limited by MemAvailable of /proc/meminfo: 4 GiB", 0), 0u)
      << plan->binding;
  ASSERT_FALSE(plan->warnings.empty());
  EXPECT_NE(plan->warnings.back().find("lowered workers from 255 to 28"), std::string::npos);
}

TEST(PlanTest, OldEnvoyCapOf268VmsLimitsTheIncidentGatewayTo33Workers) {
  WorkloadShape s = v8_plugins(8);
  s.instance_cap = 268;
  const auto plan = make_plan(host(255), s);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->binding_kind, Constraint::kRuntimeCap);
  EXPECT_EQ(plan->workers, 33u);
  EXPECT_EQ(plan->instances, 264u);
}

TEST(PlanTest, CpuMaxOfFourCpusGivesFourWorkersAnd32Instances) {
  HostFacts f = host(255);
  set_quota(f, 400000, 100000);
  const auto plan = make_plan(f, v8_plugins(8));
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->workers, 4u);
  EXPECT_EQ(plan->instances, 32u);
  EXPECT_EQ(plan->binding_kind, Constraint::kCpu);
  EXPECT_EQ(plan->binding, "limited by cpu.max of /l0: 4.0 CPUs");
}

TEST(PlanTest, RlimitAsOf64GiBBindsTheAddressSpaceAndShrinksWorkers) {
  HostFacts f = host(255);
  f.memory.rlimit_as = Fact<ResourceLimit>::of({Limit::of(64 * kGiB), Limit::of(64 * kGiB)},
                                               "/proc/self/limits Max address space");
  const auto plan = make_plan(f, v8_plugins(2));
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->binding_kind, Constraint::kAddressSpace);
  EXPECT_EQ(plan->workers, 4u);
  EXPECT_EQ(plan->instances, 8u);
  EXPECT_EQ(plan->binding,
            "limited by RLIMIT_AS of /proc/self/limits: 64 GiB / 8 GiB per instance = 8 instances");
}

TEST(PlanTest, MaxMapCountNearTheMapCountBindsTheMappings) {
  HostFacts f = host(255);
  f.memory.max_map_count = Fact<uint64_t>::of(1200, "/proc/sys/vm/max_map_count");
  const auto plan = make_plan(f, v8_plugins(8));
  ASSERT_TRUE(plan) << plan.error().message;
  // (1200 - 40 - 1000) / 10 maps per V8 VM = 16 instances -> 2 workers.
  EXPECT_EQ(plan->binding_kind, Constraint::kMappings);
  EXPECT_EQ(*plan->instance_budget, 16u);
  EXPECT_EQ(plan->workers, 2u);
}

TEST(PlanTest, MemoryLimitOf512MiBWith64MiBInstancesAllowsOneWorkerOfFour) {
  HostFacts f = host(255);
  set_memory_limit(f, 512 * kMiB);
  WorkloadShape s;
  s.instances_per_worker = 4;
  s.instance_resident_bytes = 64 * kMiB;
  const auto plan = make_plan(f, s);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->binding_kind, Constraint::kMemory);
  EXPECT_EQ(*plan->instance_budget, 7u);  // (512 MiB - 10%) / 64 MiB
  EXPECT_EQ(plan->workers, 1u);
  EXPECT_LE(plan->instances, 8u);
  EXPECT_NE(plan->binding.find("memory.max of /l0: 512 MiB"), std::string::npos) << plan->binding;
}

TEST(PlanTest, MemoryLimitWithoutHeadroomAllowsTwoWorkersOfFour) {
  HostFacts f = host(255);
  set_memory_limit(f, 512 * kMiB);
  WorkloadShape s;
  s.instances_per_worker = 4;
  s.instance_resident_bytes = 64 * kMiB;
  s.memory_headroom = Headroom{std::nullopt, 0};
  const auto plan = make_plan(f, s);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(*plan->instance_budget, 8u);
  EXPECT_EQ(plan->workers, 2u);
  EXPECT_EQ(plan->instances, 8u);
}

TEST(PlanTest, RoundingTurnsFractionalCpusIntoWorkers) {
  const auto workers = [](int64_t quota_us, Rounding r) {
    HostFacts f = host(8);
    set_quota(f, quota_us, 100000);
    WorkloadShape s;
    s.rounding = r;
    return make_plan(f, s).value().workers;
  };
  EXPECT_EQ(workers(250000, Rounding::kCeil), 3u);
  EXPECT_EQ(workers(250000, Rounding::kFloor), 2u);
  EXPECT_EQ(workers(30000, Rounding::kCeil), 1u);
  EXPECT_EQ(workers(30000, Rounding::kFloor), 1u);
  EXPECT_EQ(workers(400000, Rounding::kCeil), 4u);
}

TEST(PlanTest, NotEvenOneWorkerFittingIsAResourceErrorNamingTheShortfall) {
  HostFacts f = host(8);
  f.memory.rlimit_as = Fact<ResourceLimit>::of({Limit::of(56 * kGiB), Limit::of(56 * kGiB)},
                                               "/proc/self/limits Max address space");
  const auto plan = make_plan(f, v8_plugins(8));
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().kind, ErrorKind::kResource);
  EXPECT_EQ(plan.error().message.rfind("cannot fit 1 worker: it needs 8 instances but the "
                                       "address_space budget allows 7 instances",
                                       0),
            0u)
      << plan.error().message;
  EXPECT_NE(plan.error().message.find("short by 1 instance = 8 GiB"), std::string::npos)
      << plan.error().message;
}

// Found in a qemu guest with 5-level paging (tests/vm): cpuinfo says 57 bits virtual, yet mmap
// without a hint stays below 128 TiB.
TEST(PlanTest, FiveLevelPagingCountsOnlyTheDefault47BitMmapWindow) {
  HostFacts f = host(8);
  f.memory.virtual_address_bits = Fact<int>::of(57, "/proc/cpuinfo address sizes");
  const auto plan = make_plan(f, v8_plugins(8));
  ASSERT_TRUE(plan) << plan.error().message;
  const auto it = std::find_if(plan->budgets.begin(), plan->budgets.end(), [](const Budget& b) {
    return b.constraint == Constraint::kAddressSpace;
  });
  ASSERT_NE(it, plan->budgets.end());
  EXPECT_EQ(it->capacity, uint64_t{1} << 47);
  EXPECT_NE(it->source.find("47-bit default mmap window of 57-bit"), std::string::npos)
      << it->source;
}

TEST(PlanTest, MinWorkersThatDoNotFitAreAResourceError) {
  HostFacts f = host(8);
  f.memory.max_map_count = Fact<uint64_t>::of(1200, "/proc/sys/vm/max_map_count");
  WorkloadShape s = v8_plugins(8);
  s.min_workers = 3;
  const auto plan = make_plan(f, s);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().kind, ErrorKind::kResource);
  EXPECT_NE(plan.error().message.find("3 workers (--min-workers)"), std::string::npos);
  EXPECT_NE(plan.error().message.find("mappings"), std::string::npos);
}

TEST(PlanTest, UnknownRlimitAndAddressWidthLeaveTheAddressBudgetOutWithAWarning) {
  HostFacts f = host(4);
  f.memory.rlimit_as = Fact<ResourceLimit>::unknown("/proc/self/limits", "no such file");
  f.memory.virtual_address_bits = Fact<int>::unknown("/proc/cpuinfo", "no 'address sizes' line");
  const auto plan = make_plan(f, v8_plugins(2));
  ASSERT_TRUE(plan) << plan.error().message;
  const Budget* as = plan->budget(Constraint::kAddressSpace);
  ASSERT_NE(as, nullptr);
  EXPECT_EQ(as->state, Budget::State::kUnknown);
  EXPECT_EQ(plan->workers, 4u);
  bool warned = false;
  for (const auto& w : plan->warnings)
    warned |= w.find("address_space budget is unknown") != std::string::npos;
  EXPECT_TRUE(warned);
}

TEST(PlanTest, UnknownCpusPlanFromMinWorkersWithAWarning) {
  HostFacts f = host(4);
  f.cpu = CpuFacts{};
  compute_effective_cpus(f.cpu);
  WorkloadShape s;
  s.min_workers = 2;
  const auto plan = make_plan(f, s);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->workers, 2u);
  ASSERT_FALSE(plan->warnings.empty());
  EXPECT_NE(plan->warnings.front().find("effective CPU count is unknown"), std::string::npos);
}

TEST(PlanTest, MaxWorkersClampsAndIsNamedAsTheBinding) {
  WorkloadShape s;
  s.max_workers = 6;
  const auto plan = make_plan(host(64), s);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->workers, 6u);
  EXPECT_EQ(plan->binding_kind, Constraint::kMaxWorkers);
  EXPECT_EQ(plan->binding.rfind("limited by --max-workers 6", 0), 0u) << plan->binding;
}

TEST(PlanTest, MinWorkersAboveMaxWorkersIsAUsageError) {
  WorkloadShape s;
  s.min_workers = 8;
  s.max_workers = 2;
  const auto plan = make_plan(host(4), s);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().kind, ErrorKind::kUsage);
}

TEST(PlanTest, InstancesWithoutAnyPerInstanceCostAreAUsageError) {
  WorkloadShape s;
  s.instances_per_worker = 3;
  const auto plan = make_plan(host(4), s);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().kind, ErrorKind::kUsage);
  EXPECT_NE(plan.error().message.find("--runtime"), std::string::npos);
}

TEST(PlanTest, CgroupLimitAboveMemAvailableUsesMemAvailable) {
  HostFacts f = host(4);
  set_memory_limit(f, 512 * kGiB);
  WorkloadShape s;
  s.instances_per_worker = 1;
  s.instance_resident_bytes = kGiB;
  const auto plan = make_plan(f, s);
  ASSERT_TRUE(plan) << plan.error().message;
  const Budget* mem = plan->budget(Constraint::kMemory);
  ASSERT_NE(mem, nullptr);
  EXPECT_EQ(mem->capacity, 64 * kGiB);
  EXPECT_EQ(mem->source, "MemAvailable of /proc/meminfo");
}

TEST(PlanTest, EnvironmentCarriesWorkersAndCpus) {
  HostFacts f = host(255);
  set_quota(f, 250000, 100000);
  const auto plan = make_plan(f, WorkloadShape{});
  ASSERT_TRUE(plan);
  const auto env = plan_environment(*plan);
  std::map<std::string, std::string> m(env.begin(), env.end());
  EXPECT_EQ(m["HOSTFIT_WORKERS"], "2");
  EXPECT_EQ(m["HOSTFIT_CPUS"], "2.5");
  EXPECT_EQ(m["GOMAXPROCS"], "2");
  EXPECT_EQ(m["UV_THREADPOOL_SIZE"], "2");
  EXPECT_EQ(m["TOKIO_WORKER_THREADS"], "2");
  EXPECT_EQ(m["RAYON_NUM_THREADS"], "2");
  EXPECT_EQ(m["OMP_NUM_THREADS"], "2");
}

TEST(PlanTest, RenderEnvQuotesAnythingButPlainWords) {
  EXPECT_EQ(render_env({{"A", "4"}, {"B", "x y"}, {"C", "it's"}, {"D", ""}}),
            "A=4\nB='x y'\nC='it'\\''s'\nD=''\n");
}

TEST(PlanTest, MeasuredV8MappingsBudgetCountsTheRuntimesBaseMapsAndTheHeadroom) {
  HostFacts f = host(255);
  f.memory.available = Fact<uint64_t>::of(460 * kGiB, "/proc/meminfo MemAvailable");
  const WorkloadShape s = measured_v8_plugins(8);
  ASSERT_TRUE(s.runtime.measured);
  ASSERT_GT(s.runtime.base_maps, 40u);  // a V8 process has more maps than the fixture's 40
  const auto plan = make_plan(f, s);
  ASSERT_TRUE(plan) << plan.error().message;
  const Budget* maps = plan->budget(Constraint::kMappings);
  ASSERT_NE(maps, nullptr);
  EXPECT_EQ(maps->used, s.runtime.base_maps);
  EXPECT_EQ(maps->headroom, kDefaultMapHeadroom);
  EXPECT_EQ(maps->instances, (65530 - s.runtime.base_maps - kDefaultMapHeadroom) / s.runtime.maps);
  EXPECT_TRUE(maps->explanation.starts_with("vm.max_map_count: 65530 maps - " +
                                            std::to_string(s.runtime.base_maps) + " in use"))
      << maps->explanation;
  EXPECT_NE(maps->explanation.find("per V8 instance"), std::string::npos) << maps->explanation;
  EXPECT_LE(plan->instances, *plan->instance_budget);
}

TEST(PlanTest, FortyMapsPerV8InstanceRefusesTheIncidentsTwoThousandInstances) {
  // The measurement of Node's isolates (37-46 maps each) on the incident host.
  HostFacts f = host(255);
  f.memory.available = Fact<uint64_t>::of(460 * kGiB, "/proc/meminfo MemAvailable");
  WorkloadShape s = measured_v8_plugins(8);
  s.instance_maps = 40;
  const auto plan = make_plan(f, s);
  ASSERT_TRUE(plan) << plan.error().message;
  const uint64_t budget = (65530 - s.runtime.base_maps - kDefaultMapHeadroom) / 40;
  EXPECT_EQ(plan->binding_kind, Constraint::kMappings);
  EXPECT_EQ(*plan->instance_budget, budget);
  EXPECT_EQ(plan->workers, budget / 8);
  EXPECT_LT(plan->instances, 2040u);
  EXPECT_TRUE(plan->binding.starts_with("limited by vm.max_map_count: 65530 maps"))
      << plan->binding;
  EXPECT_NE(plan->binding.find("/ ~40 per V8 instance = " + std::to_string(budget) + " instances"),
            std::string::npos)
      << plan->binding;
  ASSERT_FALSE(plan->warnings.empty());
  EXPECT_NE(plan->warnings.back().find("lowered workers from 255 to " + std::to_string(budget / 8)),
            std::string::npos)
      << plan->warnings.back();
  EXPECT_NE(plan->warnings.back().find("mappings budget"), std::string::npos);
}

TEST(PlanTest, TheProcesssOwnMapsCountWhenMoreThanTheRuntimesBase) {
  HostFacts f = host(4);
  f.memory.map_count = Fact<uint64_t>::of(5000, "/proc/self/maps (lines)");
  const auto plan = make_plan(f, measured_v8_plugins(2));
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->budget(Constraint::kMappings)->used, 5000u);
}

}  // namespace
}  // namespace hostfit
