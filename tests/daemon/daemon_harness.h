// A real `hostfit daemon` process for one test: its own socket, state dir and cgroup parent,
// killed and cleaned up (processes, groups, files) at the end.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "files.h"
#include "hostfit/api.h"

namespace hostfit::testing {

using nlohmann::json;

using fixtures::slurp;

// The running test's name after `prefix`, cut to 24 characters: a daemon's cgroup parent and
// workload names are made from it, and must stay short.
inline std::string test_name(std::string_view prefix = "") {
  const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  return std::string(prefix) + name.substr(0, 24 - prefix.size());
}

// Every directory named `cgroup` (a path inside the hierarchies) in the mounted hierarchies.
inline std::vector<std::filesystem::path> cgroup_dirs(const std::string& cgroup) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/fs/cgroup", ec)) {
    if (e.is_symlink() || !e.is_directory()) continue;
    const auto dir = e.path() / cgroup.substr(1);
    if (std::filesystem::is_directory(dir)) out.push_back(dir);
  }
  if (std::filesystem::exists("/sys/fs/cgroup/cgroup.controllers")) {
    const auto dir = std::filesystem::path("/sys/fs/cgroup") / cgroup.substr(1);
    if (std::filesystem::is_directory(dir)) out.push_back(dir);
  }
  return out;
}

// Kills every process under the tree and removes its directories, deepest first.
inline void remove_cgroup_tree(const std::filesystem::path& dir) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_directory() && !e.is_symlink()) remove_cgroup_tree(e.path());
  }
  for (int i = 0; i < 500; ++i) {
    std::istringstream procs(slurp(dir / "cgroup.procs"));
    pid_t pid;
    while (procs >> pid)
      ::kill(pid, SIGKILL);
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

inline bool pid_alive(pid_t pid) {
  return ::kill(pid, 0) == 0;
}

class DaemonProcess {
 public:
  // A fresh directory and cgroup parent for `tag`.
  explicit DaemonProcess(const std::string& tag) {
    dir_ = std::filesystem::temp_directory_path() /
           ("hostfit-daemon-" + std::to_string(::getpid()) + "-" + tag);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    cgroup_parent_ = "/hostfit-test-" + std::to_string(::getpid()) + "-" + tag.substr(0, 24);
  }
  ~DaemonProcess() { cleanup(); }

  const std::filesystem::path& dir() const { return dir_; }
  std::string socket() const { return (dir_ / "api.sock").string(); }
  std::filesystem::path state_dir() const { return dir_ / "state"; }
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  std::string log() const { return slurp(dir_ / "daemon.log"); }
  pid_t pid() const { return pid_; }

  // Starts `hostfit daemon` and waits until /healthz answers. False (with the log) when it died.
  bool start(std::vector<std::string> extra = {}, std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {HOSTFIT_BIN,       "daemon",      "--socket",
                                     socket(),          "--state-dir", state_dir().string(),
                                     "--cgroup-parent", cgroup_parent_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open((dir_ / "daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 2);
      ::dup2(fd, 1);
      for (const auto& e : env)
        ::putenv(const_cast<char*>(e.c_str()));
      std::vector<char*> args;
      for (auto& a : argv)
        args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return false;
      }
      auto r = api::request(socket(), "GET", "/healthz", {}, std::chrono::milliseconds(500));
      if (r && r->status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  void kill9() { end(SIGKILL); }
  // SIGTERM: the daemon leaves, its workloads keep running. Returns its exit status.
  int term() { return end(SIGTERM); }

  api::ClientResponse call(std::string_view method, std::string_view target,
                           const json& body = nullptr,
                           std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    auto r = api::request(socket(), method, target, body.is_null() ? "" : body.dump(), timeout);
    if (!r) return api::ClientResponse{0, r.error().message};
    return *r;
  }

  // Polls GET target until pred(json) holds or `seconds` pass; returns the last body.
  template <class Pred>
  json wait_for(std::string_view target, Pred pred, int seconds = 20) {
    json last;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      last = call("GET", target).json();
      if (pred(last)) return last;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return last;
  }

  // All events so far.
  json events() { return call("GET", "/v1/events?since=0").json()["events"]; }

  void cleanup() {
    if (pid_ > 0) kill9();
    for (const auto& d : cgroup_dirs(cgroup_parent_))
      remove_cgroup_tree(d);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

 private:
  int end(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
    return status;
  }

  std::filesystem::path dir_;
  std::string cgroup_parent_;
  pid_t pid_ = 0;
};

}  // namespace hostfit::testing
