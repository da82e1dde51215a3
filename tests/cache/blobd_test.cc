// examples/blobd: files served by name, byte for byte, without traversal, and (unless --plain)
// without leaving the page cache behind.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "hostfit/cache.h"
#include "sysroot_builder.h"

extern char** environ;

namespace hostfit {
namespace {

constexpr uint64_t kBlobBytes = uint64_t{24} << 20;

// A running blobd on a free port, stopped on destruction.
class Blobd {
 public:
  Blobd(const std::filesystem::path& dir, bool plain) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<std::string> args = {BLOBD_BIN, "--dir", dir.string(), "--port", "0"};
    if (plain) args.push_back("--plain");
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    if (::posix_spawn(&pid_, BLOBD_BIN, &actions, nullptr, argv.data(), environ) != 0) pid_ = 0;
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    // "blobd: serving DIR on http://127.0.0.1:PORT/ (...)"
    std::string line;
    char c;
    while (line.size() < 4096 && ::read(out[0], &c, 1) == 1 && c != '\n')
      line += c;
    ::close(out[0]);
    const size_t colon = line.rfind(':');
    if (colon != std::string::npos) port_ = std::atoi(line.c_str() + colon + 1);
  }
  ~Blobd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }

  // Sends `request` raw and returns the whole response.
  std::string fetch(const std::string& request) const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string response;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(request.size())) {
      std::vector<char> buf(1 << 16);
      ssize_t n;
      while ((n = ::read(fd, buf.data(), buf.size())) > 0)
        response.append(buf.data(), static_cast<size_t>(n));
    }
    ::close(fd);
    return response;
  }
  std::string get(const std::string& target) const {
    return fetch("GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  }

 private:
  pid_t pid_ = 0;
  int port_ = 0;
};

std::string status_line(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}
std::string body_of(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

class BlobdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    blob_ = dir_.path() / "layer.tar";
    std::string content(kBlobBytes, '\0');
    for (size_t i = 0; i < content.size(); ++i)
      content[i] = static_cast<char>((i * 2654435761u) >> 13);
    std::ofstream(blob_, std::ios::binary) << content;
    content_ = std::move(content);
    std::filesystem::create_directory(dir_.path() / "sub");
    std::filesystem::create_symlink("/etc/passwd", dir_.path() / "passwd");
    std::ofstream(dir_.path() / ".hidden") << "secret";
    const int fd = ::open(blob_.c_str(), O_RDONLY | O_CLOEXEC);
    ::fsync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  uint64_t resident_pages() const {
    const int fd = ::open(blob_.c_str(), O_RDONLY | O_CLOEXEC);
    auto r = file_residency(fd, 0, kBlobBytes);
    ::close(fd);
    return r ? r->resident_pages : ~uint64_t{0};
  }
  uint64_t pages() const { return kBlobBytes / static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)); }

  fixtures::TempDir dir_;
  std::filesystem::path blob_;
  std::string content_;
};

TEST_F(BlobdTest, ServesAFileByteForByteAndLeavesNoCacheBehind) {
  if (resident_pages() > pages() / 100) GTEST_SKIP() << dir_.path() << " keeps files cached";
  Blobd server(dir_.path(), /*plain=*/false);
  ASSERT_GT(server.port(), 0);
  const std::string response = server.get("/layer.tar");
  EXPECT_EQ(status_line(response), "HTTP/1.1 200 OK");
  EXPECT_NE(response.find("Content-Length: " + std::to_string(kBlobBytes)), std::string::npos);
  EXPECT_TRUE(body_of(response) == content_);
  // Up to a few socket buffers' folios may still be pinned by the loopback receiver (see
  // stream_test.cc); all of the file would be there without the drops.
  EXPECT_LE(resident_pages(), pages() / 100 + 1024);
}

TEST_F(BlobdTest, PlainModeLeavesTheFileCached) {
  if (resident_pages() > pages() / 100) GTEST_SKIP() << dir_.path() << " keeps files cached";
  Blobd server(dir_.path(), /*plain=*/true);
  ASSERT_GT(server.port(), 0);
  EXPECT_TRUE(body_of(server.get("/layer.tar")) == content_);
  EXPECT_GE(resident_pages(), pages() * 9 / 10);
}

TEST_F(BlobdTest, RefusesTraversalDotFilesAndEncodedNames) {
  Blobd server(dir_.path(), false);
  ASSERT_GT(server.port(), 0);
  EXPECT_EQ(status_line(server.get("/../etc/passwd")), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(status_line(server.get("/sub/../layer.tar")), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(status_line(server.get("/%2e%2e/etc/passwd")), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(status_line(server.get("/.hidden")), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(status_line(server.get("layer.tar")), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(status_line(server.fetch("garbage\r\n\r\n")), "HTTP/1.1 400 Bad Request");
}

TEST_F(BlobdTest, SymlinksDirectoriesAndMissingNamesAreNotFound) {
  Blobd server(dir_.path(), false);
  ASSERT_GT(server.port(), 0);
  EXPECT_EQ(status_line(server.get("/passwd")), "HTTP/1.1 404 Not Found");
  EXPECT_EQ(status_line(server.get("/sub")), "HTTP/1.1 404 Not Found");
  EXPECT_EQ(status_line(server.get("/nosuch")), "HTTP/1.1 404 Not Found");
}

TEST_F(BlobdTest, HeadGivesTheLengthWithoutABodyAndPostIsRefused) {
  Blobd server(dir_.path(), false);
  ASSERT_GT(server.port(), 0);
  const std::string head = server.fetch("HEAD /layer.tar HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status_line(head), "HTTP/1.1 200 OK");
  EXPECT_NE(head.find("Content-Length: " + std::to_string(kBlobBytes)), std::string::npos);
  EXPECT_TRUE(body_of(head).empty());
  EXPECT_EQ(status_line(server.fetch("POST /layer.tar HTTP/1.1\r\n\r\n")),
            "HTTP/1.1 405 Method Not Allowed");
}

}  // namespace
}  // namespace hostfit
