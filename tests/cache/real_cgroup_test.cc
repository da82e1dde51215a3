// Accounting on this machine's real memory cgroup: a child group under hostfit's own, a process
// in it that reads a file or fills tmpfs, and what memory.stat then says.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "hostfit/cache.h"
#include "hostfit/probe.h"
#include "scratch_group.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

using namespace testing_cache;

TEST(RealCgroupTest, ReadingAFileRaisesFileCacheButNotTheWorkingSet) {
  ScratchGroup group;
  if (!group.ok())
    GTEST_SKIP() << "no writable memory cgroup here (needs root and a memory controller)";
  fixtures::TempDir tmp;
  const std::string file = (tmp.path() / "data").string();
  ASSERT_EQ(write_file(file, 64 * kMiB), 0);
  drop_cache(file);
  const MemoryBreakdown before = group.breakdown();

  ASSERT_EQ(group.run_inside([&] { return read_file(file); }), 0);
  const MemoryBreakdown after = group.breakdown();
  drop_cache(file);  // uncharge before the group goes

  // The reader has exited: its cache stays charged to the group, and none of it is working set.
  EXPECT_GE(after.file_bytes, before.file_bytes + 56 * kMiB);
  EXPECT_GE(after.reclaimable_file_bytes, 56 * kMiB);
  EXPECT_LT(after.working_set_bytes, after.file_bytes / 4)
      << "usage " << after.usage_bytes << " inactive_file " << after.inactive_file_bytes;
  EXPECT_LT(after.unreclaimable_bytes, 16 * kMiB);
  EXPECT_LT(after.anon_bytes, 8 * kMiB);
  EXPECT_LT(after.shmem_bytes, kMiB);
}

TEST(RealCgroupTest, TmpfsIsShmemAndNotReclaimable) {
  ScratchGroup group;
  if (!group.ok())
    GTEST_SKIP() << "no writable memory cgroup here (needs root and a memory controller)";
  if (!std::filesystem::is_directory("/dev/shm")) GTEST_SKIP() << "no /dev/shm tmpfs";
  const std::string file = "/dev/shm/hostfit-cache-test-" + std::to_string(::getpid());
  ASSERT_EQ(group.run_inside([&] { return write_file(file, 32 * kMiB); }), 0);
  const MemoryBreakdown after = group.breakdown();
  std::filesystem::remove(file);

  EXPECT_GE(after.shmem_bytes, 30 * kMiB);
  EXPECT_GE(after.file_bytes, after.shmem_bytes);  // file counts shmem in both versions
  EXPECT_LT(after.reclaimable_file_bytes, 4 * kMiB);
  // tmpfs pages are on the anon LRU: they stay in the working set.
  EXPECT_GE(after.working_set_bytes, 30 * kMiB);
}

}  // namespace
}  // namespace hostfit
