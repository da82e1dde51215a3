#include <gtest/gtest.h>

#include <fstream>

#include "hostfit/core.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

void put(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

TEST(SysrootTest, ReadsUnderItsRoot) {
  fixtures::TempDir dir;
  put(dir.path() / "proc/meminfo", "MemTotal: 1 kB\n");
  const Sysroot root(dir.path());
  EXPECT_FALSE(root.is_host());
  EXPECT_EQ(*root.read("/proc/meminfo"), "MemTotal: 1 kB\n");
  EXPECT_EQ(root.path("/proc/meminfo"), dir.path() / "proc/meminfo");
  EXPECT_TRUE(root.exists("/proc/meminfo"));
  EXPECT_TRUE(root.is_dir("/proc"));
}

TEST(SysrootTest, MissingFileNamesTheRealPath) {
  fixtures::TempDir dir;
  const Sysroot root(dir.path());
  auto r = root.read("/sys/fs/cgroup/cpu.max");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::kNotFound);
  EXPECT_NE(r.error().message.find((dir.path() / "sys/fs/cgroup/cpu.max").string()),
            std::string::npos)
      << r.error().message;
}

TEST(SysrootTest, ADirectoryWhereAFileBelongsIsAnErrorNotACrash) {
  fixtures::TempDir dir;
  std::filesystem::create_directories(dir.path() / "proc/meminfo");
  const Sysroot root(dir.path());
  auto r = root.read("/proc/meminfo");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("Is a directory"), std::string::npos) << r.error().message;
}

TEST(SysrootTest, EmptyValueIsAnError) {
  fixtures::TempDir dir;
  put(dir.path() / "x", "  \n");
  auto r = Sysroot(dir.path()).read_value("/x");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("is empty"), std::string::npos);
}

TEST(SysrootTest, WritesListsAndRemovesDirectories) {
  fixtures::TempDir dir;
  const Sysroot root(dir.path());
  ASSERT_TRUE(root.make_dir("/g"));
  ASSERT_TRUE(root.make_dir("/g"));  // EEXIST is fine
  ASSERT_TRUE(root.write("/g/memory.max", "1048576"));
  EXPECT_EQ(*root.read_value("/g/memory.max"), "1048576");
  EXPECT_EQ(*root.list("/g"), std::vector<std::string>{"memory.max"});
  std::filesystem::remove(dir.path() / "g/memory.max");
  ASSERT_TRUE(root.remove_dir("/g"));
  ASSERT_TRUE(root.remove_dir("/g"));  // ENOENT is fine
  EXPECT_FALSE(root.exists("/g"));
}

TEST(SysrootTest, HostRootIsRecognised) {
  EXPECT_TRUE(Sysroot("/").is_host());
  EXPECT_TRUE(Sysroot("//").is_host());
  EXPECT_EQ(Sysroot("/").path("/proc/self/status"), "/proc/self/status");
}

TEST(SysrootTest, JoinPathHandlesSlashes) {
  EXPECT_EQ(join_path("/sys/fs/cgroup/memory", "/a/b"), "/sys/fs/cgroup/memory/a/b");
  EXPECT_EQ(join_path("/sys/fs/cgroup/", "/"), "/sys/fs/cgroup");
  EXPECT_EQ(join_path("/", "proc"), "/proc");
  EXPECT_EQ(join_path("/proc/self", "cgroup"), "/proc/self/cgroup");
}

}  // namespace
}  // namespace hostfit
