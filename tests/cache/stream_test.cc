// stream_file over loopback TCP: every byte arrives, and the page cache is left as it was found.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "hostfit/cache.h"
#include "sysroot_builder.h"

namespace hostfit {
namespace {

constexpr uint64_t kFileBytes = uint64_t{48} << 20;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    return *this;
  }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// A connected loopback TCP pair: `sender` is the server's accepted socket.
struct TcpPair {
  Fd sender, receiver;
};

TcpPair connect_loopback() {
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::listen(listener.get(), 1), 0);
  socklen_t len = sizeof addr;
  EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  TcpPair pair;
  pair.receiver = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(pair.receiver.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  pair.sender = Fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_GE(pair.sender.get(), 0);
  return pair;
}

// Reads until end of stream; slow=true pauses now and then so a non-blocking sender sees EAGAIN.
std::vector<char> read_all(int fd, bool slow = false, size_t stop_after = SIZE_MAX) {
  std::vector<char> out;
  char buf[1 << 16];
  int reads = 0;
  while (out.size() < stop_after) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.insert(out.end(), buf, buf + n);
    if (slow && ++reads % 64 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return out;
}

// A file of kFileBytes in /tmp whose every 8 bytes hold their own offset, so a reordered or
// shifted byte shows.
class StreamFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);  // a server's duty: a closed peer is EPIPE, not a dead process
    path_ = dir_.path() / "blob";
    Fd out(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_GE(out.get(), 0);
    std::vector<uint64_t> block((1 << 20) / 8);
    for (uint64_t base = 0; base < kFileBytes; base += block.size() * 8) {
      for (size_t i = 0; i < block.size(); ++i)
        block[i] = base + i * 8;
      ASSERT_EQ(::write(out.get(), block.data(), block.size() * 8),
                static_cast<ssize_t>(block.size() * 8));
    }
    ASSERT_EQ(::fsync(out.get()), 0);
    file_ = Fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_GE(file_.get(), 0);
  }

  // Drops the file from the page cache; skips when this filesystem keeps it (tmpfs).
  void make_cold() {
    ASSERT_EQ(::posix_fadvise(file_.get(), 0, 0, POSIX_FADV_DONTNEED), 0);
    if (resident() > pages() / 100) GTEST_SKIP() << path_ << " cannot be dropped from the cache";
  }
  // Reads the first `bytes` into the cache, without readahead past them.
  void make_warm(uint64_t bytes = kFileBytes) {
    Fd reader(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_EQ(::posix_fadvise(reader.get(), 0, 0, POSIX_FADV_RANDOM), 0);
    std::vector<char> buf(1 << 20);
    for (uint64_t off = 0; off < bytes; off += buf.size())
      ASSERT_GT(::pread(reader.get(), buf.data(), buf.size(), static_cast<off_t>(off)), 0);
  }
  uint64_t resident(uint64_t offset = 0, uint64_t length = kFileBytes) {
    auto r = file_residency(file_.get(), offset, length);
    EXPECT_TRUE(r) << r.error().message;
    return r ? r->resident_pages : 0;
  }
  uint64_t pages(uint64_t length = kFileBytes) {
    return length / static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  }
  // "About zero" resident pages after a cold stream: a loopback receiver frees its socket buffers
  // lazily (deferred skb frees, net.core.skb_defer_max, until the next packet on that CPU), and
  // ext4 caches in folios of up to 2 MiB, so the last few buffers' folios may still be pinned
  // when the final drop runs. 1% of the range plus 4 MiB covers that; a stream that dropped
  // nothing leaves all of it.
  uint64_t about_zero(uint64_t length = kFileBytes) {
    return pages(length) / 100 + pages(uint64_t{4} << 20);
  }
  // "About all" resident pages of a range read into the cache: this machine's kernel reclaims a
  // few clean file pages now and then on its own (pairs of pages anywhere in the file, even right
  // after they were read, with no stream running), so a range read whole may be missing a handful.
  // 1% of the range covers that; a stream that dropped what it found resident leaves none of it.
  uint64_t about_all(uint64_t length = kFileBytes) { return pages(length) - pages(length) / 100; }
  static bool holds_offsets(const std::vector<char>& got, uint64_t first_offset) {
    for (uint64_t i = 0; i + 8 <= got.size(); i += 8) {
      uint64_t v;
      std::memcpy(&v, got.data() + i, 8);
      if (v != first_offset + i) return false;
    }
    return true;
  }
  // Streams [offset, offset + length) to a loopback peer; returns what the peer read.
  std::vector<char> stream(uint64_t offset, uint64_t length, Result<uint64_t>& result,
                           bool non_blocking = false, bool slow_reader = false) {
    TcpPair pair = connect_loopback();
    if (non_blocking) ::fcntl(pair.sender.get(), F_SETFL, O_NONBLOCK);
    std::vector<char> got;
    std::thread reader([&] { got = read_all(pair.receiver.get(), slow_reader); });
    result = stream_file(pair.sender.get(), file_.get(), offset, length);
    ::shutdown(pair.sender.get(), SHUT_WR);
    reader.join();
    return got;
  }

  fixtures::TempDir dir_;
  std::filesystem::path path_;
  Fd file_;
};

TEST_F(StreamFileTest, ColdFileArrivesWholeAndLeavesAboutNoPagesResident) {
  make_cold();
  if (HasFatalFailure() || IsSkipped()) return;
  Result<uint64_t> sent = 0;
  const std::vector<char> got = stream(0, kFileBytes, sent);
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_EQ(*sent, kFileBytes);
  ASSERT_EQ(got.size(), kFileBytes);
  EXPECT_TRUE(holds_offsets(got, 0));
  EXPECT_LE(resident(), about_zero()) << "of " << pages() << " pages";
}

TEST_F(StreamFileTest, PagesFarBehindTheCursorAreGoneWhileTheStreamRuns) {
  // Not only at the end: a long stream must not hold the file in the cache while it runs. The
  // reader stops at 40 MiB and looks at the first 8 MiB, long read and acknowledged.
  make_cold();
  if (HasFatalFailure() || IsSkipped()) return;
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  TcpPair pair = connect_loopback();
  uint64_t behind = 0;
  size_t received = 0;
  std::thread reader([&] {
    received = read_all(pair.receiver.get(), false, 40 * kMiB).size();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    behind = resident(0, 8 * kMiB);
    received += read_all(pair.receiver.get()).size();
  });
  const Result<uint64_t> sent = stream_file(pair.sender.get(), file_.get(), 0, kFileBytes);
  ::shutdown(pair.sender.get(), SHUT_WR);
  reader.join();
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_EQ(received, kFileBytes);
  EXPECT_LE(behind, pages(kMiB)) << "of " << pages(8 * kMiB) << " pages still resident";
}

TEST_F(StreamFileTest, WarmFileStaysResident) {
  make_warm();
  ASSERT_GE(resident(), about_all());
  Result<uint64_t> sent = 0;
  const std::vector<char> got = stream(0, kFileBytes, sent);
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_EQ(got.size(), kFileBytes);
  EXPECT_GE(resident(), about_all()) << "of " << pages() << " pages";
}

TEST_F(StreamFileTest, HalfWarmFileKeepsOnlyTheHalfThatWasResident) {
  make_cold();
  if (HasFatalFailure() || IsSkipped()) return;
  make_warm(kFileBytes / 2);
  ASSERT_GE(resident(0, kFileBytes / 2), about_all(kFileBytes / 2));
  ASSERT_LE(resident(kFileBytes / 2, kFileBytes / 2), about_zero(kFileBytes / 2));
  Result<uint64_t> sent = 0;
  const std::vector<char> got = stream(0, kFileBytes, sent);
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_TRUE(holds_offsets(got, 0));
  EXPECT_GE(resident(0, kFileBytes / 2), about_all(kFileBytes / 2));
  EXPECT_LE(resident(kFileBytes / 2, kFileBytes / 2), about_zero(kFileBytes / 2));
}

TEST_F(StreamFileTest, NonBlockingSocketToASlowReaderGetsEveryByte) {
  make_cold();
  if (HasFatalFailure() || IsSkipped()) return;
  Result<uint64_t> sent = 0;
  const std::vector<char> got = stream(0, kFileBytes, sent, /*non_blocking=*/true, /*slow=*/true);
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_EQ(*sent, kFileBytes);
  ASSERT_EQ(got.size(), kFileBytes);
  EXPECT_TRUE(holds_offsets(got, 0));
  EXPECT_LE(resident(), about_zero());
}

TEST_F(StreamFileTest, RangeInTheMiddleSendsExactlyThoseBytes) {
  Result<uint64_t> sent = 0;
  const uint64_t offset = 3 * 4096 + 8;  // not page aligned
  const std::vector<char> got = stream(offset, 5 << 20, sent);
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_EQ(*sent, uint64_t{5} << 20);
  ASSERT_EQ(got.size(), uint64_t{5} << 20);
  EXPECT_TRUE(holds_offsets(got, offset));
}

TEST_F(StreamFileTest, LengthPastEndOfFileStopsAtTheEnd) {
  Result<uint64_t> sent = 0;
  const std::vector<char> got = stream(kFileBytes - 4096, 1 << 20, sent);
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_EQ(*sent, 4096u);
  EXPECT_EQ(got.size(), 4096u);
  EXPECT_TRUE(holds_offsets(got, kFileBytes - 4096));
  const std::vector<char> none = stream(kFileBytes + 1, 10, sent);
  ASSERT_TRUE(sent);
  EXPECT_EQ(*sent, 0u);
  EXPECT_TRUE(none.empty());
}

TEST_F(StreamFileTest, PeerThatGoesAwayIsAnErrorSayingHowFarItGot) {
  TcpPair pair = connect_loopback();
  // Small buffers, so the file can never fit in them whatever this host's tcp_wmem/tcp_rmem say.
  const int small = 64 << 10;
  ::setsockopt(pair.sender.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ::setsockopt(pair.receiver.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  std::thread reader([&] {
    (void)read_all(pair.receiver.get(), false, 1 << 20);
    pair.receiver.reset();
  });
  auto sent = stream_file(pair.sender.get(), file_.get(), 0, kFileBytes);
  reader.join();
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().kind, ErrorKind::kIo);
  EXPECT_NE(sent.error().message.find("bytes"), std::string::npos) << sent.error().message;
}

TEST_F(StreamFileTest, APipeIsNotAFileToStream) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Fd r(fds[0]), w(fds[1]);
  auto sent = stream_file(w.get(), r.get(), 0, 10);
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().kind, ErrorKind::kUsage);
}

TEST_F(StreamFileTest, StreamingIntoAPipeWorksToo) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Fd r(fds[0]), w(fds[1]);
  std::vector<char> got;
  std::thread reader([&] { got = read_all(r.get()); });
  auto sent = stream_file(w.get(), file_.get(), 0, 2 << 20);
  w.reset();
  reader.join();
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_EQ(got.size(), uint64_t{2} << 20);
  EXPECT_TRUE(holds_offsets(got, 0));
}

}  // namespace
}  // namespace hostfit
