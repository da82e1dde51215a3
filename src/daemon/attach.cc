// Attachments: cgroups hostfit did not create, watched for OOM kills and sampled, with an
// optional page-cache budget, until they disappear.
#include "daemon_impl.h"

namespace hostfit {

using nlohmann::json;

Result<Cgroup> Daemon::Impl::foreign_group(const std::string& path) const {
  if (!path.starts_with('/') || path.find("/..") != std::string::npos ||
      path.find("/./") != std::string::npos) {
    return fail(ErrorKind::kUsage, "bad cgroup '" + escape_bytes(path) +
                                       "': give an absolute path inside the hierarchy without "
                                       "'.' or '..' parts, as in /proc/PID/cgroup");
  }
  Cgroup g;
  for (const auto& parent : driver->parents()) {
    // The mount point is the parent's directory without its path inside the hierarchy.
    std::string mount = parent.dir;
    if (parent.cgroup != "/" && mount.ends_with(parent.cgroup)) {
      mount.resize(mount.size() - parent.cgroup.size());
    }
    const std::string dir = path == "/" ? mount : join_path(mount, path);
    if (root.is_dir(dir))
      g.dirs.push_back({parent.hierarchy, parent.controllers, path, dir, parent.v2});
  }
  if (!g.dir_of("memory")) {
    return fail(ErrorKind::kNotFound, "no memory cgroup '" + escape_bytes(path) +
                                          "' on this host (see /proc/PID/cgroup for a process's)");
  }
  return g;
}

Result<std::shared_ptr<Attachment>> Daemon::Impl::attach(const AttachmentRow& row, bool record) {
  auto group = foreign_group(row.cgroup);
  if (!group) return fail(group.error());
  auto a = std::make_shared<Attachment>(io);
  a->row = row;
  a->group = *group;
  a->group.name = row.name;
  a->oom.baseline = driver->oom_counters(a->group)
                        ? std::optional<OomCounters>(*driver->oom_counters(a->group))
                        : std::nullopt;
  a->oom.seen_kills = a->oom.baseline ? a->oom.baseline->oom_kill : 0;
  a->oom.kmsg = std::make_unique<KernelLogReader>(root, "/dev/kmsg", row.cgroup);
  if (auto watch = driver->watch_oom(a->group)) {
    a->oom.watch = std::move(*watch);
    const int fd = ::fcntl(a->oom.watch->fd(), F_DUPFD_CLOEXEC, 0);
    if (fd >= 0) a->oom.fd = std::make_unique<asio::posix::stream_descriptor>(io, fd);
  }
  if (row.cache_limit_bytes) {
    auto cg = cache_group_at(root, self.cgroup, row.cgroup);
    if (!cg) return fail(cg.error());
    auto c = CacheController::open(root, *cg,
                                   {.limit_bytes = static_cast<uint64_t>(*row.cache_limit_bytes)});
    if (!c) return fail(c.error());
    a->cache = std::move(*c);
  }
  if (record) {
    auto st = store->transaction([&](Store& s) -> Status {
      if (auto st = s.put_attachment(row); !st) return st;
      auto e = event("attachment.created", row.name, "'" + row.name + "' attached to " + row.cgroup,
                     {{"cgroup", row.cgroup}});
      return e ? Status{} : fail(e.error());
    });
    if (!st) return fail(st.error());
  }
  attachments[row.name] = a;
  arm_attachment(a);
  publish();
  return a;
}

void Daemon::Impl::arm_attachment(const std::shared_ptr<Attachment>& a) {
  arm_attachment_oom(a);
  arm_attachment_samples(a);
}

void Daemon::Impl::arm_attachment_oom(const std::shared_ptr<Attachment>& a) {
  if (!a->oom.fd) return;
  a->oom.fd->async_wait(asio::posix::stream_descriptor::wait_read,
                        [this, a](const boost::system::error_code& ec) {
                          if (ec || a->detached) return;
                          a->oom.watch->drain();
                          a->oom.recheck_until = Steady::now() + std::chrono::milliseconds(250);
                          check_attachment_oom(a);
                          arm_attachment_oom(a);
                        });
}

void Daemon::Impl::check_attachment_oom(const std::shared_ptr<Attachment>& a) {
  if (a->detached) return;
  auto counters = driver->oom_counters(a->group);
  if (counters && counters->oom_kill > a->oom.seen_kills) {
    a->oom.recheck_until.reset();
    const uint64_t new_kills = counters->oom_kill - a->oom.seen_kills;
    a->oom.seen_kills = counters->oom_kill;
    uint64_t named = 0;
    for (const auto& k : a->oom.kmsg->read_kills()) {
      ++named;
      (void)event(
          "oom.kill", a->row.name,
          "a process in attached cgroup " + a->row.cgroup + " ('" + a->row.name +
              "') was killed by the OOM killer: pid " + std::to_string(k.pid) + " (" + k.comm + ")",
          {{"pid", k.pid}, {"comm", k.comm}, {"attachment", true}, {"cgroup", k.task_memcg}});
    }
    for (uint64_t i = named; i < new_kills; ++i) {
      (void)event("oom.kill", a->row.name,
                  "a process in attached cgroup " + a->row.cgroup + " ('" + a->row.name +
                      "') was killed by the OOM killer (its pid is unknown: the kernel log was "
                      "not readable)",
                  {{"pid", nullptr}, {"attachment", true}, {"cgroup", a->row.cgroup}});
    }
    publish();
    return;
  }
  if (a->oom.recheck_until && Steady::now() < *a->oom.recheck_until) {
    a->recheck_timer.expires_after(std::chrono::milliseconds(2));
    a->recheck_timer.async_wait([this, a](const boost::system::error_code& ec) {
      if (!ec) check_attachment_oom(a);
    });
  }
}

void Daemon::Impl::arm_attachment_samples(const std::shared_ptr<Attachment>& a, bool woken) {
  if (a->detached) return;
  const CgroupDir* memory = a->group.dir_of("memory");
  if (!memory || !root.is_dir(memory->dir)) return detach(a, "its cgroup is gone");
  if (a->cache) {
    (void)a->cache_wake.step(*a->cache, woken, [this, a] {
      if (a->detached) return;
      a->sample_timer.cancel();
      arm_attachment_samples(a, true);
    });
    if (a->cache->last()) a->sample = sample_of(*a->cache->last(), *driver, a->group);
  } else if (auto now = take_sample(root, *driver, a->group)) {
    a->sample = std::move(now);
  }
  a->sample_timer.expires_after(a->cache ? a->cache->options().interval : options.sample_interval);
  a->sample_timer.async_wait([this, a](const boost::system::error_code& ec) {
    if (!ec) arm_attachment_samples(a);
  });
}

void Daemon::Impl::detach(const std::shared_ptr<Attachment>& a, const std::string& why) {
  if (a->detached) return;
  // A kill just before the group went is still told.
  check_attachment_oom(a);
  a->detached = true;
  a->sample_timer.cancel();
  a->recheck_timer.cancel();
  if (a->oom.fd) a->oom.fd->close();
  a->cache_wake.stop(a->cache.get());
  (void)store->transaction([&](Store& s) -> Status {
    if (auto st = s.delete_attachment(a->row.name); !st) return st;
    auto e = event("attachment.detached", a->row.name, "'" + a->row.name + "' detached: " + why,
                   {{"cgroup", a->row.cgroup}});
    return e ? Status{} : fail(e.error());
  });
  attachments.erase(a->row.name);
  publish();
}

}  // namespace hostfit
