// The ledger of held CPUs: a JSON file written atomically (temporary file + rename) and guarded
// across processes by an flock on a lock file beside it (the ledger itself is replaced on every
// save, so a lock on it would lock a file that is about to be unlinked). It often lives where
// others can write (/tmp, a shared /run): nothing is opened through a symlink, nothing that is not
// a regular file is read, and files are created exclusively with owner-only modes.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <unordered_set>

#include "hostfit/place.h"

namespace hostfit {
namespace {

constexpr int kLedgerVersion = 1;
constexpr const char* kDefaultLedgerPath = "/run/hostfit/ledger.json";
constexpr const char* kLedgerEnv = "HOSTFIT_LEDGER";
constexpr size_t kMaxOwnerLength = 200;

Status check_owner(const std::string& owner) {
  if (owner.empty()) return fail(ErrorKind::kUsage, "the owner name is empty; give --owner NAME");
  if (owner.size() > kMaxOwnerLength) {
    return fail(ErrorKind::kUsage,
                "the owner name is longer than " + std::to_string(kMaxOwnerLength) + " characters");
  }
  for (unsigned char c : owner) {
    if (c <= 0x20 || c >= 0x7f) {
      return fail(ErrorKind::kUsage,
                  "bad owner name '" + owner + "': use printable ASCII without spaces, e.g. db-1");
    }
  }
  return {};
}

// Modes of what hostfit creates: the ledger says which CPUs each workload holds, for root only.
constexpr mode_t kDirMode = 0700;
constexpr mode_t kFileMode = 0600;
constexpr auto kLockPollInterval = std::chrono::milliseconds(10);

std::filesystem::path directory_of(const std::filesystem::path& path) {
  return path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
}

// Others may not replace files in the ledger's directory: world-writable only with the sticky
// bit (as /tmp), where only a file's owner may rename or remove it.
Status check_directory(const std::filesystem::path& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return fail(Error::from_errno(errno, "stat", dir.string()));
  if (!S_ISDIR(st.st_mode)) {
    return fail(ErrorKind::kIo, "the ledger's directory " + dir.string() + " is not a directory");
  }
  if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
    return fail(ErrorKind::kPermission,
                "refusing the ledger directory " + dir.string() +
                    ": anyone may write to it and it has no sticky bit, so another user could "
                    "replace the ledger (chmod o-w or +t it, or pass --ledger elsewhere)");
  }
  return {};
}

// Creates the missing directories of `dir` with kDirMode, then checks it.
Status make_directory(const std::filesystem::path& dir) {
  std::filesystem::path at;
  for (const auto& part : dir) {
    at /= part;
    if (::mkdir(at.c_str(), kDirMode) != 0 && errno != EEXIST)
      return fail(Error::from_errno(errno, "create directory", at.string()));
  }
  return check_directory(dir);
}

// What a save keeps of the ledger it replaces: its mode and owner (a new one is root's, 0600).
struct Keep {
  mode_t mode = kFileMode;
  std::optional<std::pair<uid_t, gid_t>> owner;
};

Result<Keep> existing_file(const std::filesystem::path& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Keep{};
    return fail(Error::from_errno(errno, "stat", path.string()));
  }
  if (S_ISLNK(st.st_mode)) {
    return fail(ErrorKind::kIo, "the ledger " + path.string() +
                                    " is a symbolic link; hostfit replaces the ledger on every "
                                    "save, so give the real path (--ledger or HOSTFIT_LEDGER)");
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(ErrorKind::kIo,
                "the ledger " + path.string() + " is not a regular file; give a file path");
  }
  if (st.st_nlink > 1) {
    return fail(ErrorKind::kIo, "the ledger " + path.string() + " has " +
                                    std::to_string(st.st_nlink) +
                                    " hard links; hostfit replaces it on every save, so the "
                                    "other names would keep an old copy (give one file)");
  }
  return Keep{static_cast<mode_t>(st.st_mode & 07777), std::pair{st.st_uid, st.st_gid}};
}

std::unexpected<Error> corrupt(const std::string& what) {
  return fail(ErrorKind::kParse, what);
}

Status write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Error::from_errno(errno, "write", path));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace

Result<Ledger> Ledger::from_json(const nlohmann::json& j) {
  if (!j.is_object()) return corrupt("not a JSON object");
  if (!j.contains("version") || !j["version"].is_number_integer())
    return corrupt("no integer \"version\"");
  if (j["version"].get<int64_t>() != kLedgerVersion) {
    return corrupt("version " + j["version"].dump() + " is not supported (this hostfit reads " +
                   std::to_string(kLedgerVersion) + ")");
  }
  if (!j.contains("holds") || !j["holds"].is_array()) return corrupt("no \"holds\" list");
  Ledger ledger;
  ledger.holds_.reserve(j["holds"].size());
  // hold()'s checks, with a set of owners and a union of CPUs so that loading stays linear.
  std::unordered_set<std::string_view> owners;
  CpuSet held;
  size_t index = 0;
  for (const auto& h : j["holds"]) {
    const std::string where = "hold " + std::to_string(index++);
    if (!h.is_object()) return corrupt(where + " is not an object");
    for (const char* key : {"owner", "cpus", "mems"}) {
      if (!h.contains(key) || !h[key].is_string())
        return corrupt(where + ": \"" + key + "\" is not a string");
    }
    if (h.contains("group") && !h["group"].is_string())
      return corrupt(where + ": \"group\" is not a string");
    const std::string& owner = h["owner"].get_ref<const std::string&>();
    if (auto ok = check_owner(owner); !ok) return corrupt(where + ": " + ok.error().message);
    auto cpus = CpuSet::parse_list(h["cpus"].get<std::string>());
    if (!cpus) return corrupt(where + " (" + owner + "): " + cpus.error().message);
    auto mems = CpuSet::parse_list(h["mems"].get<std::string>());
    if (!mems) return corrupt(where + " (" + owner + "): " + mems.error().message);
    const std::string group = h.contains("group") ? h["group"].get<std::string>() : "";
    if (owners.contains(owner) || !(held & *cpus).empty()) {
      // The slow path names the conflict exactly as hold() does.
      return corrupt(where + ": " + ledger.hold(owner, *cpus, *mems, group).error().message);
    }
    // Views into the json, which outlives the set.
    owners.insert(owner);
    held |= *cpus;
    ledger.holds_.push_back(Hold{owner, std::move(*cpus), std::move(*mems), group});
  }
  return ledger;
}

nlohmann::json Ledger::to_json() const {
  nlohmann::json holds = nlohmann::json::array();
  for (const Hold& h : holds_) {
    nlohmann::json hold = {
        {"owner", h.owner}, {"cpus", h.cpus.to_list()}, {"mems", h.mems.to_list()}};
    if (!h.group.empty()) hold["group"] = h.group;
    holds.push_back(std::move(hold));
  }
  return {{"version", kLedgerVersion}, {"holds", holds}};
}

Result<Ledger> Ledger::load(const std::filesystem::path& path) {
  auto text = read_regular_file(
      path, {.max_bytes = kMaxLedgerBytes, .follow_symlinks = false, .truncate = false});
  if (!text && text.error().sys_errno == ENOENT) return Ledger{};
  if (!text) {
    return fail(text.error().kind,
                text.error().message +
                    "; the ledger must be a regular file, not a link (pass --ledger FILE)",
                text.error().sys_errno);
  }
  if (auto one = existing_file(path); !one) return fail(one.error());
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  const std::string advice =
      " (fix or remove it; hostfit does not write over a ledger it cannot read)";
  if (j.is_discarded()) {
    return fail(ErrorKind::kParse,
                "ledger " + path.string() + " is corrupt: not valid JSON" + advice);
  }
  auto ledger = from_json(j);
  if (!ledger) {
    return fail(ErrorKind::kParse,
                "ledger " + path.string() + " is corrupt: " + ledger.error().message + advice);
  }
  return ledger;
}

Status Ledger::save(const std::filesystem::path& path) const {
  const std::filesystem::path dir = directory_of(path);
  if (auto ok = make_directory(dir); !ok) return ok;
  auto keep = existing_file(path);
  if (!keep) return fail(keep.error());
  // mkostemp creates with O_CREAT|O_EXCL and mode 0600: a name planted by someone else fails.
  std::string tmp = (dir / (path.filename().string() + ".tmp.XXXXXX")).string();
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return fail(Error::from_errno(errno, "create a temporary file in", dir.string()));
  Status written;
  if (::fchmod(fd, keep->mode) != 0) written = fail(Error::from_errno(errno, "chmod", tmp));
  if (written && keep->owner && ::geteuid() == 0 &&
      ::fchown(fd, keep->owner->first, keep->owner->second) != 0)
    written = fail(Error::from_errno(errno, "chown", tmp));
  if (written) written = write_all(fd, to_json().dump(2) + "\n", tmp);
  if (written && ::fsync(fd) != 0) written = fail(Error::from_errno(errno, "fsync", tmp));
  if (::close(fd) != 0 && written) written = fail(Error::from_errno(errno, "close", tmp));
  if (written && ::rename(tmp.c_str(), path.c_str()) != 0)
    written = fail(Error::from_errno(errno, "rename to " + path.string(), tmp));
  if (!written) {
    ::unlink(tmp.c_str());
    return written;
  }
  // The rename is durable once the directory is synced; a failure here loses nothing now.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return {};
}

Status Ledger::hold(const std::string& owner, const CpuSet& cpus, const CpuSet& mems,
                    const std::string& group) {
  if (auto ok = check_owner(owner); !ok) return ok;
  if (const Hold* existing = find(owner)) {
    return fail(ErrorKind::kUsage, "owner " + owner + " already holds CPUs " +
                                       existing->cpus.to_list() +
                                       "; release it first (hostfit place --release " + owner +
                                       ") or pick another name");
  }
  for (const Hold& h : holds_) {
    const CpuSet both = h.cpus & cpus;
    if (!both.empty()) {
      return fail(ErrorKind::kResource,
                  "CPUs " + both.to_list() + " are already held by " + h.owner);
    }
  }
  holds_.push_back(Hold{owner, cpus, mems, group});
  return {};
}

Status Ledger::release(const std::string& owner) {
  for (auto it = holds_.begin(); it != holds_.end(); ++it) {
    if (it->owner == owner) {
      holds_.erase(it);
      return {};
    }
  }
  std::string owners;
  for (const Hold& h : holds_)
    owners += (owners.empty() ? "" : ", ") + h.owner;
  return fail(ErrorKind::kNotFound, "no hold for owner " + owner + " (holders: " +
                                        (owners.empty() ? std::string("none") : owners) + ")");
}

const Hold* Ledger::find(std::string_view owner) const {
  for (const Hold& h : holds_) {
    if (h.owner == owner) return &h;
  }
  return nullptr;
}

CpuSet Ledger::held() const {
  CpuSet all;
  for (const Hold& h : holds_)
    all |= h.cpus;
  return all;
}

std::filesystem::path default_ledger_path() {
  const char* env = std::getenv(kLedgerEnv);
  if (env && *env) return env;
  return kDefaultLedgerPath;
}

Result<LedgerLock> LedgerLock::acquire(const std::filesystem::path& ledger_path,
                                       std::chrono::milliseconds wait,
                                       const std::function<bool()>& cancelled) {
  if (auto ok = make_directory(directory_of(ledger_path)); !ok) return fail(ok.error());
  const std::string lock_path = ledger_path.string() + ".lock";
  // O_NOFOLLOW: a link planted in a shared directory must not make root create or open its
  // target; O_NONBLOCK: a FIFO planted there must not hang the open.
  const int fd =
      ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, kFileMode);
  if (fd < 0) {
    if (errno == ELOOP) {
      return fail(ErrorKind::kIo, "the ledger lock " + lock_path +
                                      " is a symbolic link; remove it (hostfit makes its own)");
    }
    return fail(Error::from_errno(errno, "open lock file", lock_path));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(ErrorKind::kIo,
                "the ledger lock " + lock_path + " is not a regular file; remove it");
  }
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EINTR) continue;
    if (err != EWOULDBLOCK) {
      ::close(fd);
      return fail(Error::from_errno(err, "lock", lock_path));
    }
    if (cancelled && cancelled()) {
      ::close(fd);
      return fail(ErrorKind::kResource, "stopped while waiting for the ledger lock " + lock_path,
                  EINTR);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::close(fd);
      return fail(ErrorKind::kResource,
                  "the ledger lock " + lock_path + " is held by another process for more than " +
                      std::to_string(wait.count()) +
                      " ms; try again, or find the holder with: fuser " + lock_path,
                  EWOULDBLOCK);
    }
    std::this_thread::sleep_for(kLockPollInterval);
  }
  return LedgerLock(fd);
}

LedgerLock::LedgerLock(LedgerLock&& other) noexcept : fd_(other.fd_) {
  other.fd_ = -1;
}

LedgerLock& LedgerLock::operator=(LedgerLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

LedgerLock::~LedgerLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor drops the flock
}

CpuSet placeable_cpus(const HostFacts& facts) {
  CpuSet cpus = facts.cpu.usable;
  if (facts.cpu.isolated.known()) cpus -= *facts.cpu.isolated;
  if (facts.cpu.offline.known()) cpus -= *facts.cpu.offline;
  return cpus;
}

CpuSet placeable_mems(const HostFacts& facts) {
  return facts.cpu.cpuset_mems.known() ? *facts.cpu.cpuset_mems : CpuSet{};
}

Result<Placement> place_and_hold(const std::filesystem::path& ledger_path, const HostFacts& facts,
                                 const PlacementRequest& request, const std::string& owner,
                                 const ForeignPins& foreign, const std::string& group,
                                 std::chrono::milliseconds wait,
                                 const std::function<bool()>& cancelled) {
  if (auto ok = check_owner(owner); !ok) return fail(ok.error());
  auto lock = LedgerLock::acquire(ledger_path, wait, cancelled);
  if (!lock) return fail(lock.error());
  auto ledger = Ledger::load(ledger_path);
  if (!ledger) return fail(ledger.error());
  if (const Hold* existing = ledger->find(owner)) {
    return fail(ErrorKind::kUsage, "owner " + owner + " already holds CPUs " +
                                       existing->cpus.to_list() + " in " + ledger_path.string() +
                                       "; release it first (hostfit place --release " + owner +
                                       ") or pick another name");
  }
  PlacementRequest req = request;
  if (req.allowed_mems.empty()) req.allowed_mems = placeable_mems(facts);
  auto placement = place(facts.topology, placeable_cpus(facts) - foreign.exclusive(), *ledger, req,
                         foreign.shared());
  if (!placement) return placement;
  if (auto ok = ledger->hold(owner, placement->cpus, placement->mems, group); !ok)
    return fail(ok.error());
  if (auto ok = ledger->save(ledger_path); !ok) return fail(ok.error());
  return placement;
}

Result<Hold> release_hold(const std::filesystem::path& ledger_path, const std::string& owner) {
  if (auto ok = check_owner(owner); !ok) return fail(ok.error());
  auto lock = LedgerLock::acquire(ledger_path);
  if (!lock) return fail(lock.error());
  auto ledger = Ledger::load(ledger_path);
  if (!ledger) return fail(ledger.error());
  const Hold* found = ledger->find(owner);
  if (!found) {
    return fail(ledger->release(owner).error().wrap("ledger " + ledger_path.string()));
  }
  Hold hold = *found;
  if (auto ok = ledger->release(owner); !ok) return fail(ok.error());
  if (auto ok = ledger->save(ledger_path); !ok) return fail(ok.error());
  return hold;
}

Result<bool> release_group_hold(const std::filesystem::path& ledger_path, const std::string& owner,
                                const std::string& group) {
  if (group.empty()) return false;
  auto lock = LedgerLock::acquire(ledger_path);
  if (!lock) return fail(lock.error());
  auto ledger = Ledger::load(ledger_path);
  if (!ledger) return fail(ledger.error());
  const Hold* found = ledger->find(owner);
  if (!found || found->group != group) return false;
  if (auto ok = ledger->release(owner); !ok) return fail(ok.error());
  if (auto ok = ledger->save(ledger_path); !ok) return fail(ok.error());
  return true;
}

}  // namespace hostfit
