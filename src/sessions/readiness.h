// Readiness checks on the loop: a TCP connect to the engine's port, a connect to its Unix
// socket, or its stdout showing a text. Each retries with a growing pause (5 ms up to 100 ms)
// until it succeeds or is cancelled; the launch timeout is the caller's.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "hostfit/sessions.h"

namespace hostfit::sessions {

struct ReadinessTarget {
  ReadinessKind kind = ReadinessKind::kPort;
  std::string host{};                   // kPort
  int port = 0;                         // kPort
  std::string socket{};                 // kSocket: the resolved path
  std::string line{};                   // kLine: the text to find
  std::filesystem::path stdout_path{};  // kLine
  uint64_t stdout_offset = 0;           // kLine: where this launch's output starts
};
std::string describe(const ReadinessTarget& target);  // "TCP 127.0.0.1:20001"

class ReadinessProbe : public std::enable_shared_from_this<ReadinessProbe> {
 public:
  ReadinessProbe(boost::asio::io_context& io, ReadinessTarget target, std::function<void()> ready);
  void start();
  void cancel();  // no call to `ready` after this

 private:
  void attempt();
  void again();
  bool line_seen();

  boost::asio::io_context& io_;
  ReadinessTarget target_;
  std::function<void()> ready_;
  boost::asio::steady_timer timer_;
  boost::asio::ip::tcp::socket tcp_;
  boost::asio::local::stream_protocol::socket local_;
  std::chrono::milliseconds pause_{5};
  uint64_t read_offset_ = 0;
  std::string tail_;  // the last bytes read, so a text split across reads is still found
  bool cancelled_ = false;
};

}  // namespace hostfit::sessions
