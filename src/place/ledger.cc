// The ledger of held CPUs: a JSON file written atomically (temporary file + rename) and guarded
// across processes by an flock on a lock file beside it (the ledger itself is replaced on every
// save, so a lock on it would lock a file that is about to be unlinked).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

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
  size_t index = 0;
  for (const auto& h : j["holds"]) {
    const std::string where = "hold " + std::to_string(index++);
    if (!h.is_object()) return corrupt(where + " is not an object");
    for (const char* key : {"owner", "cpus", "mems"}) {
      if (!h.contains(key) || !h[key].is_string())
        return corrupt(where + ": \"" + key + "\" is not a string");
    }
    const std::string owner = h["owner"].get<std::string>();
    if (auto ok = check_owner(owner); !ok) return corrupt(where + ": " + ok.error().message);
    auto cpus = CpuSet::parse_list(h["cpus"].get<std::string>());
    if (!cpus) return corrupt(where + " (" + owner + "): " + cpus.error().message);
    auto mems = CpuSet::parse_list(h["mems"].get<std::string>());
    if (!mems) return corrupt(where + " (" + owner + "): " + mems.error().message);
    if (auto ok = ledger.hold(owner, *cpus, *mems); !ok)
      return corrupt(where + ": " + ok.error().message);
  }
  return ledger;
}

nlohmann::json Ledger::to_json() const {
  nlohmann::json holds = nlohmann::json::array();
  for (const Hold& h : holds_) {
    holds.push_back({{"owner", h.owner}, {"cpus", h.cpus.to_list()}, {"mems", h.mems.to_list()}});
  }
  return {{"version", kLedgerVersion}, {"holds", holds}};
}

Result<Ledger> Ledger::load(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) && !ec) return Ledger{};
  std::ifstream in(path);
  if (!in || std::filesystem::is_directory(path, ec)) {
    return fail(ErrorKind::kIo, "cannot read ledger " + path.string() +
                                    " (check that it is a readable file, or pass --ledger FILE)");
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return fail(ErrorKind::kIo, "cannot read ledger " + path.string());
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
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
  std::error_code ec;
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) {
      return fail(ErrorKind::kIo,
                  "cannot create " + path.parent_path().string() + ": " + ec.message());
    }
  }
  const std::string tmp = path.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail(Error::from_errno(errno, "create", tmp));
  auto written = write_all(fd, to_json().dump(2) + "\n", tmp);
  if (written && ::fsync(fd) != 0) written = fail(Error::from_errno(errno, "fsync", tmp));
  if (::close(fd) != 0 && written) written = fail(Error::from_errno(errno, "close", tmp));
  if (written && ::rename(tmp.c_str(), path.c_str()) != 0)
    written = fail(Error::from_errno(errno, "rename to " + path.string(), tmp));
  if (!written) {
    ::unlink(tmp.c_str());
    return written;
  }
  // The rename is durable once the directory is synced; a failure here loses nothing now.
  const std::string dir = path.has_parent_path() ? path.parent_path().string() : ".";
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return {};
}

Status Ledger::hold(const std::string& owner, const CpuSet& cpus, const CpuSet& mems) {
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
  holds_.push_back(Hold{owner, cpus, mems});
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

Result<LedgerLock> LedgerLock::acquire(const std::filesystem::path& ledger_path) {
  std::error_code ec;
  if (ledger_path.has_parent_path()) {
    std::filesystem::create_directories(ledger_path.parent_path(), ec);
    if (ec) {
      return fail(ErrorKind::kIo,
                  "cannot create " + ledger_path.parent_path().string() + ": " + ec.message());
    }
  }
  const std::string lock_path = ledger_path.string() + ".lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return fail(Error::from_errno(errno, "open lock file", lock_path));
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    const int err = errno;
    ::close(fd);
    return fail(Error::from_errno(err, "lock", lock_path));
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
                                 const ForeignPins& foreign) {
  if (auto ok = check_owner(owner); !ok) return fail(ok.error());
  auto lock = LedgerLock::acquire(ledger_path);
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
  if (auto ok = ledger->hold(owner, placement->cpus, placement->mems); !ok) return fail(ok.error());
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

}  // namespace hostfit
