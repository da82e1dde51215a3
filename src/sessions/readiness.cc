#include "readiness.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

namespace hostfit::sessions {

namespace asio = boost::asio;

std::string describe(const ReadinessTarget& t) {
  switch (t.kind) {
    case ReadinessKind::kPort:
      return "TCP " + t.host + ":" + std::to_string(t.port);
    case ReadinessKind::kSocket:
      return "Unix socket " + t.socket;
    case ReadinessKind::kLine:
      return "stdout line containing '" + t.line + "'";
  }
  return "";
}

ReadinessProbe::ReadinessProbe(asio::io_context& io, ReadinessTarget target,
                               std::function<void()> ready)
    : io_(io),
      target_(std::move(target)),
      ready_(std::move(ready)),
      timer_(io),
      tcp_(io),
      local_(io),
      read_offset_(target_.stdout_offset) {}

void ReadinessProbe::start() {
  // Never from inside start(): the caller finishes its own bookkeeping first.
  asio::post(io_, [self = shared_from_this()] {
    if (!self->cancelled_) self->attempt();
  });
}

void ReadinessProbe::cancel() {
  cancelled_ = true;
  timer_.cancel();
  boost::system::error_code ignored;
  tcp_.close(ignored);
  local_.close(ignored);
}

void ReadinessProbe::again() {
  if (cancelled_) return;
  timer_.expires_after(pause_);
  pause_ = std::min(pause_ * 3 / 2, std::chrono::milliseconds(100));
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec && !self->cancelled_) self->attempt();
  });
}

void ReadinessProbe::attempt() {
  auto self = shared_from_this();
  boost::system::error_code ec;
  switch (target_.kind) {
    case ReadinessKind::kPort: {
      const auto address = asio::ip::make_address(target_.host, ec);
      if (ec) return again();
      tcp_.close(ec);
      tcp_.async_connect({address, static_cast<unsigned short>(target_.port)},
                         [self](const boost::system::error_code& e) {
                           if (self->cancelled_) return;
                           boost::system::error_code ignored;
                           self->tcp_.close(ignored);
                           if (e) return self->again();
                           self->ready_();
                         });
      return;
    }
    case ReadinessKind::kSocket:
      local_.close(ec);
      local_.async_connect(asio::local::stream_protocol::endpoint(target_.socket),
                           [self](const boost::system::error_code& e) {
                             if (self->cancelled_) return;
                             boost::system::error_code ignored;
                             self->local_.close(ignored);
                             if (e) return self->again();
                             self->ready_();
                           });
      return;
    case ReadinessKind::kLine:
      if (line_seen()) return ready_();
      return again();
  }
}

// Reads what the engine wrote since the last look (a regular file: reading does not block).
bool ReadinessProbe::line_seen() {
  const int fd = ::open(target_.stdout_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[16384];
  bool seen = false;
  for (;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(read_offset_));
    if (n <= 0) break;
    read_offset_ += static_cast<uint64_t>(n);
    tail_.append(buf, static_cast<size_t>(n));
    if (tail_.find(target_.line) != std::string::npos) {
      seen = true;
      break;
    }
    if (tail_.size() > target_.line.size()) tail_.erase(0, tail_.size() - target_.line.size());
  }
  ::close(fd);
  return seen;
}

}  // namespace hostfit::sessions
