// calibrate: grow sandbox instances in a bounded child and fit what each one costs, from the
// child's /proc files read between steps.
#include "hostfit/calibrate.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "../probe/kernel_files.h"

namespace hostfit {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

// The helper process: its pid and the three pipes, closed and reaped on every path.
class Helper {
 public:
  ~Helper() { stop(); }
  Status start(const CalibrateOptions& o);
  // The next line of its stdout; nullopt at end of output. kIo after the deadline.
  Result<std::optional<std::string>> read_line(std::chrono::steady_clock::time_point deadline);
  Status send(const std::string& line);
  // What it wrote to stderr (the runtime's own fatal error), after it ended.
  std::string stderr_text();
  // Kills it if still running and reaps it; "killed by SIGABRT" or "exited with 1".
  std::string stop();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string out_buffer_, err_text_, end_;
};

Status Helper::start(const CalibrateOptions& o) {
  // Commands go over a socket so a dead child is EPIPE from send(MSG_NOSIGNAL), not SIGPIPE.
  int in[2], out[2], err[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) || pipe2(out, O_CLOEXEC) ||
      pipe2(err, O_CLOEXEC))
    return fail(ErrorKind::kIo, std::string("cannot make pipes: ") + std::strerror(errno), errno);
  std::vector<std::string> args = {o.helper.string()};
  if (!o.module.empty()) args.insert(args.end(), {"--module", o.module.string()});
  args.insert(args.end(), {"--requests", std::to_string(o.requests)});
  if (o.js_state >= 0) args.insert(args.end(), {"--js-state", std::to_string(o.js_state)});
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  const rlim_t cpu_s = static_cast<rlim_t>(o.timeout.count());
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) return fail(ErrorKind::kIo, std::string("fork: ") + std::strerror(errno), errno);
  if (pid_ == 0) {
    // Child: only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const rlimit data{o.memory_limit_bytes, o.memory_limit_bytes};
    const rlimit cpu{cpu_s, cpu_s};
    setrlimit(RLIMIT_DATA, &data);
    setrlimit(RLIMIT_CPU, &cpu);
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  in_ = in[1];
  out_ = out[0];
  err_ = err[0];
  fcntl(err_, F_SETFL, O_NONBLOCK);
  return {};
}

Status Helper::send(const std::string& line) {
  const std::string text = line + "\n";
  if (::send(in_, text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size()))
    return fail(ErrorKind::kIo, "the calibration helper stopped reading its commands");
  return {};
}

Result<std::optional<std::string>> Helper::read_line(
    std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    if (const auto nl = out_buffer_.find('\n'); nl != std::string::npos) {
      std::string line = out_buffer_.substr(0, nl);
      out_buffer_.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return fail(ErrorKind::kIo, "timed out");
    pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
    if (poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), 1000))) < 0 && errno != EINTR)
      return fail(ErrorKind::kIo, std::string("poll: ") + std::strerror(errno), errno);
    stderr_text();  // keep the stderr pipe drained so the child never blocks on it
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      char buf[4096];
      const ssize_t n = read(out_, buf, sizeof buf);
      if (n == 0) return std::optional<std::string>{};
      if (n > 0) out_buffer_.append(buf, static_cast<size_t>(n));
    }
  }
}

std::string Helper::stderr_text() {
  if (err_ < 0) return err_text_;
  char buf[4096];
  ssize_t n;
  while ((n = read(err_, buf, sizeof buf)) > 0) {
    if (err_text_.size() < (64u << 10)) err_text_.append(buf, static_cast<size_t>(n));
  }
  return err_text_;
}

std::string Helper::stop() {
  if (pid_ > 0) {
    if (in_ >= 0) close(in_), in_ = -1;
    int status = 0;
    // It ends by itself at end of input; a short grace, then SIGKILL.
    for (int i = 0; i < 50 && waitpid(pid_, &status, WNOHANG) == 0; ++i)
      usleep(20000);
    if (waitpid(pid_, &status, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    if (err_ >= 0) {
      fcntl(err_, F_SETFL, 0);
      stderr_text();
    }
    if (WIFSIGNALED(status))
      end_ = std::string("killed by ") + sigabbrev_np(WTERMSIG(status)) + "";
    else
      end_ = "exited with " + std::to_string(WEXITSTATUS(status));
    pid_ = -1;
  }
  for (int* fd : {&in_, &out_, &err_})
    if (*fd >= 0) close(*fd), *fd = -1;
  return end_;
}

Result<CalibrationSample> sample(const Sysroot& root, pid_t pid, uint64_t instances) {
  const std::string proc = "/proc/" + std::to_string(pid);
  CalibrationSample s;
  s.instances = instances;
  auto maps = root.read(join_path(proc, kfile::kPidMaps), 64 << 20);
  if (!maps) return fail(maps.error());
  s.maps = static_cast<uint64_t>(std::count(maps->begin(), maps->end(), '\n'));
  auto status = root.read(join_path(proc, kfile::kPidStatus));
  if (!status) return fail(status.error());
  const auto keyed = parse_keyed_numbers(*status);
  const auto get = [&](std::string_view key) {
    const auto it = keyed.find(key);
    return it == keyed.end() ? 0 : it->second;
  };
  s.vm_size_bytes = get("VmSize");
  s.vm_rss_bytes = get("VmRSS");
  if (auto rollup = root.read(join_path(proc, kfile::kPidSmapsRollup))) {
    const auto r = parse_keyed_numbers(*rollup);
    if (const auto it = r.find("Pss"); it != r.end()) s.pss_bytes = it->second;
  }
  return s;
}

CostFit fit(const std::vector<CalibrationSample>& samples,
            double (*value)(const CalibrationSample&)) {
  CostFit f;
  // Slope and intercept over the samples with instances (the first instance carries one-time
  // costs: V8's shared code and threads; the intercept keeps them).
  std::vector<std::pair<double, double>> points;
  for (const auto& s : samples)
    if (s.instances > 0) points.emplace_back(static_cast<double>(s.instances), value(s));
  std::vector<double> steps;
  for (size_t i = 2; i < samples.size(); ++i) {
    const double dn = static_cast<double>(samples[i].instances - samples[i - 1].instances);
    if (dn > 0) steps.push_back((value(samples[i]) - value(samples[i - 1])) / dn);
  }
  if (points.size() >= 2) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (auto [x, y] : points)
      sx += x, sy += y, sxx += x * x, sxy += x * y;
    const double n = static_cast<double>(points.size());
    const double den = n * sxx - sx * sx;
    f.per_instance = den != 0 ? (n * sxy - sx * sy) / den : 0;
    f.intercept = (sy - f.per_instance * sx) / n;
  } else if (points.size() == 1) {
    f.per_instance = (points[0].second - value(samples[0])) / points[0].first;
    f.intercept = value(samples[0]);
  }
  if (steps.empty()) steps.push_back(f.per_instance);
  std::sort(steps.begin(), steps.end());
  f.min = steps.front();
  f.max = steps.back();
  f.median = steps[steps.size() / 2];
  return f;
}

// The runtime's own words from its fatal error: V8 prints "# Fatal process out of memory: ...".
std::string fatal_line(const std::string& err) {
  std::string fallback;
  for (auto line : split(err, '\n')) {
    line = trim(line);
    if (line.empty()) continue;
    if (line.find("Fatal") != std::string_view::npos) return std::string(line);
    if (fallback.empty()) fallback = line;
  }
  return fallback.empty() ? "no message" : fallback;
}

nlohmann::json to_json(const CostFit& f, int digits) {
  const double scale = std::pow(10.0, digits);
  const auto round = [&](double v) { return std::round(v * scale) / scale; };
  return {{"per_instance", round(f.per_instance)},
          {"min", round(f.min)},
          {"median", round(f.median)},
          {"max", round(f.max)},
          {"intercept", round(f.intercept)}};
}

}  // namespace

Result<Calibration> calibrate(const Sysroot& root, const CalibrateOptions& o) {
  if (o.runtime != "v8") {
    return fail(ErrorKind::kUsage, "'" + o.runtime +
                                       "' cannot be measured here (accepted: v8); its profile "
                                       "comes from documentation, see docs/runtimes.md");
  }
  if (o.plugins < 1 || o.instances < 1)
    return fail(ErrorKind::kUsage, "--plugins and --instances must be at least 1");
  if (access(o.helper.c_str(), X_OK) != 0) {
    return fail(ErrorKind::kNotFound,
                "cannot run " + o.helper.string() + ": " + std::strerror(errno) +
                    " (it is built with V8 from libnode-dev and wabt: run scripts/install-deps)");
  }
  Calibration c;
  c.runtime = o.runtime;
  c.module = o.module.empty() ? "built-in gateway plugin" : o.module.string();
  c.plugins = o.plugins;
  c.requests = o.requests;
  c.js_state = o.js_state;
  c.requested = o.instances;
  c.command = o.command;
  c.measured_at = format_utc(std::chrono::system_clock::now());
  if (auto v = root.read_value(kfile::kMaxMapCount)) c.max_map_count = parse_u64(*v).value_or(0);

  Helper helper;
  if (auto started = helper.start(o); !started) return fail(started.error());
  const auto deadline = std::chrono::steady_clock::now() + o.timeout;
  const auto died = [&](std::string what) {
    const std::string end = helper.stop();
    return fail(ErrorKind::kIo, "the calibration helper " + what + " (" + end +
                                    "): " + fatal_line(helper.stderr_text()));
  };
  auto hello = helper.read_line(deadline);
  if (!hello) return died("did not start in " + std::to_string(o.timeout.count()) + " s");
  if (!*hello || !(*hello)->starts_with("v8 ")) return died("did not start");
  c.runtime_version = (*hello)->substr(3);
  auto first = sample(root, helper.pid(), 0);
  if (!first) return fail(first.error());
  c.samples.push_back(*first);

  uint64_t total = 0;
  std::vector<double> create_times;
  while (total < o.instances) {
    const uint64_t step = std::min(o.plugins, o.instances - total);
    if (!helper.send("add " + std::to_string(step))) break;  // it died: read why below
    auto line = helper.read_line(deadline);
    if (!line) {
      helper.stop();
      return fail(ErrorKind::kIo, "calibration timed out after " +
                                      std::to_string(o.timeout.count()) + " s at " +
                                      std::to_string(total) + " instances (raise --timeout)");
    }
    if (!*line) break;
    const auto words = split_whitespace(**line);
    if (words.empty() || words[0] == "error") {
      helper.stop();
      return fail(ErrorKind::kUsage, "the module " + c.module + " cannot be instantiated or run: " +
                                         (**line).substr(std::min<size_t>(6, (**line).size())));
    }
    if (words[0] != "added" || words.size() < 2) return died("answered '" + **line + "'");
    total = parse_u64(words[1]).value_or(total + step);
    auto s = sample(root, helper.pid(), total);
    if (!s) return fail(s.error());
    double ns = 0;
    for (size_t i = 2; i < words.size(); ++i) {
      const double one_ms = static_cast<double>(parse_u64(words[i]).value_or(0)) / 1e6;
      create_times.push_back(one_ms);
      ns += one_ms * 1e6;
    }
    s->create_ms = words.size() > 2 ? ns / static_cast<double>(words.size() - 2) / 1e6 : 0;
    c.samples.push_back(*s);
  }
  if (total < o.instances) {
    const std::string end = helper.stop();
    if (total == 0) return died("failed before the first instance");
    c.failed = true;
    c.stopped_by = "V8 failed after " + std::to_string(total) + " instances (" + end +
                   "): " + fatal_line(helper.stderr_text());
  } else {
    helper.stop();
    c.stopped_by = "the budget of " + std::to_string(o.instances) + " instances (--instances)";
  }
  if (c.samples.size() < 2) return fail(ErrorKind::kIo, "no instance was measured");
  c.maps = fit(c.samples, [](const CalibrationSample& s) { return double(s.maps); });
  c.vm_size = fit(c.samples, [](const CalibrationSample& s) { return double(s.vm_size_bytes); });
  c.vm_rss = fit(c.samples, [](const CalibrationSample& s) { return double(s.vm_rss_bytes); });
  c.pss = fit(c.samples, [](const CalibrationSample& s) { return double(s.pss_bytes); });
  // Creation time is measured per instance: its mean and the spread of the single times.
  std::sort(create_times.begin(), create_times.end());
  double sum = 0;
  for (double t : create_times)
    sum += t;
  c.create_ms.per_instance = sum / static_cast<double>(create_times.size());
  c.create_ms.min = create_times.front();
  c.create_ms.median = create_times[create_times.size() / 2];
  c.create_ms.max = create_times.back();
  return c;
}

RuntimeProfile to_profile(const Calibration& c) {
  const auto up_mib = [](double bytes) {
    const double mib = std::ceil(std::max(0.0, bytes) / static_cast<double>(kMiB));
    return static_cast<uint64_t>(mib) * kMiB;
  };
  RuntimeProfile p;
  p.name = c.runtime;
  p.label = c.runtime == "v8" ? "V8" : c.runtime;
  // Rounded up, but a fit of 18.01 is 18: the spread is reported beside it.
  p.maps = static_cast<uint64_t>(std::ceil(std::max(0.0, c.maps.per_instance - 0.05)));
  p.base_maps = static_cast<uint64_t>(std::llround(std::max(0.0, c.maps.intercept)));
  p.reserve_bytes = up_mib(c.vm_size.per_instance);
  p.resident_bytes = up_mib(std::max(c.vm_rss.per_instance, c.pss.per_instance));
  p.measured = true;
  p.version = c.runtime_version;
  p.source = "measured " + c.measured_at.substr(0, 10) + " by `" + c.command + "` (" + c.module +
             ", " + std::to_string(c.samples.back().instances) + " instances, " +
             std::to_string(c.requests) + " requests each)";
  return p;
}

nlohmann::json to_json(const Calibration& c) {
  nlohmann::json samples = nlohmann::json::array();
  for (const auto& s : c.samples) {
    samples.push_back({{"instances", s.instances},
                       {"maps", s.maps},
                       {"vm_size_bytes", s.vm_size_bytes},
                       {"vm_rss_bytes", s.vm_rss_bytes},
                       {"pss_bytes", s.pss_bytes},
                       {"create_ms", std::round(s.create_ms * 1000) / 1000}});
  }
  return {
      {"runtime", c.runtime},
      {"runtime_version", c.runtime_version},
      {"module", c.module},
      {"plugins", c.plugins},
      {"requests", c.requests},
      {"js_state", c.js_state < 0 ? nlohmann::json(nullptr) : nlohmann::json(c.js_state)},
      {"instances", c.samples.back().instances},
      {"requested_instances", c.requested},
      {"failed", c.failed},
      {"stopped_by", c.stopped_by},
      {"measured_at", c.measured_at},
      {"max_map_count", c.max_map_count},
      {"command", c.command},
      {"per_instance",
       {{"maps", to_json(c.maps, 2)},
        {"vm_size_bytes", to_json(c.vm_size, 0)},
        {"vm_rss_bytes", to_json(c.vm_rss, 0)},
        {"pss_bytes", to_json(c.pss, 0)},
        {"create_ms", to_json(c.create_ms, 3)}}},
      {"samples", samples},
      {"profile", to_json(to_profile(c))},
  };
}

}  // namespace hostfit
