// A plain fork/exec EngineHost for the sessions tests: real processes in their own process
// group, a pidfd on the loop, SIGTERM then SIGKILL on stop, and the verdict from waitid. No
// cgroups: the daemon's host adds those (and OOM truth). `verdict_delay` holds the verdict back
// after the exit, as the daemon's host does while an OOM count settles.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hostfit/sessions.h"

namespace hostfit::sessions::testing {

class ProcessHost : public EngineHost {
 public:
  ProcessHost(boost::asio::io_context& io, std::filesystem::path log_dir)
      : io_(io), log_dir_(std::move(log_dir)) {
    std::filesystem::create_directories(log_dir_);
  }
  ~ProcessHost() override {
    for (auto& [name, p] : procs_) {
      if (p->reaped) continue;
      ::kill(-p->pid, SIGKILL);
      siginfo_t info{};
      ::waitid(P_PID, static_cast<id_t>(p->pid), &info, WEXITED);
    }
  }

  std::chrono::milliseconds verdict_delay{0};
  std::vector<EngineLaunch> launches;  // every launch, in order

  Result<LaunchedEngine> launch(const EngineLaunch& l, EngineWatch watch) override {
    const bool init = !l.init.empty() && !std::filesystem::exists(l.data_dir);
    if (init) {
      auto st = run_init(l);
      if (!st) return fail(st.error());
    }
    const auto out = log_dir_ / (l.engine + ".out");
    std::error_code ec;
    const uint64_t offset = std::filesystem::exists(out) ? std::filesystem::file_size(out, ec) : 0;
    auto pid = spawn(l.argv, l.env, out);
    if (!pid) return fail(pid.error());
    auto p = std::make_shared<Proc>(io_);
    p->pid = *pid;
    p->watch = std::move(watch);
    p->stop_timeout = l.stop_timeout;
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, *pid, 0));
    if (fd < 0) return fail(Error::from_errno(errno, "pidfd_open", std::to_string(*pid)));
    p->fd.assign(fd);
    procs_[l.engine] = p;
    launches.push_back(l);
    arm(l.engine, p);
    if (init && p->watch.on_started) boost::asio::post(io_, p->watch.on_started);
    return LaunchedEngine{.stdout_path = out, .stdout_offset = offset};
  }

  void stop(const std::string& engine, bool force) override {
    auto it = procs_.find(engine);
    if (it == procs_.end() || it->second->exited) return;
    auto p = it->second;
    if (force || p->stop_timeout.count() == 0) {
      p->escalated = true;
      ::kill(-p->pid, SIGKILL);
      return;
    }
    ::kill(p->pid, SIGTERM);
    p->kill_timer.expires_after(p->stop_timeout);
    p->kill_timer.async_wait([p](const boost::system::error_code& ec) {
      if (ec || p->exited) return;
      p->escalated = true;
      ::kill(-p->pid, SIGKILL);
    });
  }

  pid_t pid_of(const std::string& engine) const {
    auto it = procs_.find(engine);
    return it == procs_.end() ? 0 : it->second->pid;
  }

 private:
  struct Proc {
    explicit Proc(boost::asio::io_context& io) : fd(io), kill_timer(io), verdict_timer(io) {}
    pid_t pid = 0;
    boost::asio::posix::stream_descriptor fd;
    boost::asio::steady_timer kill_timer, verdict_timer;
    EngineWatch watch;
    std::chrono::milliseconds stop_timeout{0};
    bool escalated = false, exited = false, reaped = false;
  };

  static Result<pid_t> spawn(const std::vector<std::string>& argv,
                             const std::map<std::string, std::string>& env,
                             const std::filesystem::path& out) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return fail(Error::from_errno(errno, "pipe2", ""));
    std::vector<std::string> env_text = {"PATH=/usr/local/bin:/usr/bin:/bin"};
    for (const auto& [k, v] : env)
      env_text.push_back(k + "=" + v);
    std::vector<char*> args, envp;
    for (const auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const auto& e : env_text)
      envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return fail(Error::from_errno(errno, "fork", argv[0]));
    if (pid == 0) {
      ::setpgid(0, 0);
      const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (o >= 0) {
        ::dup2(o, 1);
        ::dup2(o, 2);
      }
      ::execvpe(args[0], args.data(), envp.data());
      const int err = errno;
      (void)!::write(pipe_fds[1], &err, sizeof err);
      ::_exit(127);
    }
    ::close(pipe_fds[1]);
    int err = 0;
    const bool exec_failed = ::read(pipe_fds[0], &err, sizeof err) == sizeof err;
    ::close(pipe_fds[0]);
    if (exec_failed) {
      ::waitpid(pid, nullptr, 0);
      return fail(ErrorKind::kNotFound, "cannot execute '" + argv[0] + "': " + std::strerror(err));
    }
    return pid;
  }

  static Status run_init(const EngineLaunch& l) {
    std::filesystem::create_directories(l.data_dir.parent_path());
    auto pid = spawn(l.init, l.env, l.data_dir.string() + ".init.log");
    if (!pid) return fail(pid.error());
    int status = 0;
    ::waitpid(*pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      return fail(ErrorKind::kIo, "init of " + l.engine + " failed");
    return {};
  }

  void arm(const std::string& engine, const std::shared_ptr<Proc>& p) {
    p->fd.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [this, engine, p](const boost::system::error_code& ec) {
                       if (!ec) exited(engine, p);
                     });
  }

  void exited(const std::string& engine, const std::shared_ptr<Proc>& p) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(p->pid), &info, WEXITED | WNOHANG) != 0 ||
        info.si_pid == 0)
      return arm(engine, p);
    p->exited = p->reaped = true;
    p->kill_timer.cancel();
    ::kill(-p->pid, SIGKILL);  // what the engine left behind in its group
    Verdict v;
    if (info.si_code == CLD_EXITED) {
      v = {.state = "EXITED",
           .text = "EXITED(" + std::to_string(info.si_status) + ")",
           .message = "'" + engine + "' exited with code " + std::to_string(info.si_status),
           .exit_code = info.si_status};
    } else if (p->escalated) {
      v = {.state = "KILLED",
           .reason = "TIMEOUT",
           .text = "KILLED(TIMEOUT)",
           .message = "'" + engine + "' was killed by hostfit with SIGKILL",
           .signal = info.si_status};
    } else {
      v = {.state = "KILLED",
           .reason = "SIGNAL",
           .text = "KILLED(SIGNAL " + std::to_string(info.si_status) + ")",
           .message = "'" + engine + "' was killed by signal " + std::to_string(info.si_status),
           .signal = info.si_status};
    }
    if (p->watch.on_exit) p->watch.on_exit();
    if (verdict_delay.count() == 0) return p->watch.on_ended(v);
    p->verdict_timer.expires_after(verdict_delay);
    p->verdict_timer.async_wait([p, v](const boost::system::error_code&) { p->watch.on_ended(v); });
  }

  boost::asio::io_context& io_;
  std::filesystem::path log_dir_;
  std::map<std::string, std::shared_ptr<Proc>> procs_;
};

}  // namespace hostfit::sessions::testing
