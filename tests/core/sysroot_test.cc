#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

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

// Issue 17 item 3: a FIFO planted in a --sysroot tree hung the probe in open(2).
TEST(SysrootTest, AFifoWhereAFileBelongsIsRefusedAtOnce) {
  fixtures::TempDir dir;
  std::filesystem::create_directories(dir.path() / "proc");
  ASSERT_EQ(::mkfifo((dir.path() / "proc/meminfo").c_str(), 0600), 0);
  auto r = Sysroot(dir.path()).read("/proc/meminfo");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("is a FIFO, not a regular file"), std::string::npos)
      << r.error().message;
}

// Issue 17 item 3: a link to a device (an endless file) is refused, not read until the cap.
TEST(SysrootTest, ALinkToADeviceIsRefused) {
  fixtures::TempDir dir;
  std::filesystem::create_directories(dir.path() / "proc");
  std::filesystem::create_symlink("/dev/zero", dir.path() / "proc/meminfo");
  auto r = Sysroot(dir.path()).read("/proc/meminfo");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("character device"), std::string::npos) << r.error().message;
}

TEST(ReadRegularFileTest, RefusesSymlinksWhenAskedAndLongFilesWhenNotTruncating) {
  fixtures::TempDir dir;
  put(dir.path() / "f", "0123456789");
  std::filesystem::create_symlink(dir.path() / "f", dir.path() / "link");
  EXPECT_EQ(*read_regular_file(dir.path() / "link"), "0123456789");
  auto linked = read_regular_file(dir.path() / "link", {.follow_symlinks = false});
  ASSERT_FALSE(linked);
  EXPECT_NE(linked.error().message.find("symbolic link"), std::string::npos);
  EXPECT_EQ(*read_regular_file(dir.path() / "f", {.max_bytes = 4}), "0123");
  EXPECT_EQ(*read_regular_file(dir.path() / "f", {.max_bytes = 10, .truncate = false}),
            "0123456789");
  auto long_file = read_regular_file(dir.path() / "f", {.max_bytes = 9, .truncate = false});
  ASSERT_FALSE(long_file);
  EXPECT_EQ(long_file.error().kind, ErrorKind::kResource);
  EXPECT_NE(long_file.error().message.find("larger than 9 B"), std::string::npos)
      << long_file.error().message;
  auto missing = read_regular_file(dir.path() / "none");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().sys_errno, ENOENT);
}

}  // namespace
}  // namespace hostfit
