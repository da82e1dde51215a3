// hostfit core: errors as values, facts that remember where they came from, CPU sets, byte sizes
// and limits, and Sysroot, the one door to /proc, /sys and cgroupfs.
#pragma once

#include <bit>
#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hostfit {

// ---------------------------------------------------------------------------------------------
// Errors

// What kind of failure an Error is. The CLI maps kUsage to exit code 2 and everything else to 1.
enum class ErrorKind {
  kUsage,        // bad flag, size, CPU list or config given by the user
  kNotFound,     // a file, process or cgroup that does not exist
  kIo,           // a read or write that failed for another reason
  kParse,        // a kernel or state file whose contents could not be understood
  kPermission,   // EACCES / EPERM
  kUnsupported,  // the kernel or machine lacks what is needed
  kResource,     // a limit was hit (no room, no memory, budget exhausted)
  kInternal,
};

// A failure, said so a person can act on it: what failed, the path or value involved, and (where
// there is one) what to do, e.g. "cannot read /sys/fs/cgroup/cpu.max: Permission denied (run as
// root)".
struct Error {
  ErrorKind kind = ErrorKind::kInternal;
  std::string message;
  int sys_errno = 0;  // errno of the failing system call, 0 when none

  // An error from a failed system call: "cannot OP PATH: strerror(err)".
  static Error from_errno(int err, std::string_view op, std::string_view path);
  // Prefixes the message with "context: ", keeping kind and errno.
  Error wrap(std::string_view context) const;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(ErrorKind kind, std::string message, int sys_errno = 0) {
  return std::unexpected<Error>(Error{kind, std::move(message), sys_errno});
}
inline std::unexpected<Error> fail(Error error) {
  return std::unexpected<Error>(std::move(error));
}

// ---------------------------------------------------------------------------------------------
// Facts

// A value read from the machine together with where it came from, or why it is unknown.
// Every number hostfit reports can explain itself through its Fact.
template <class T>
struct Fact {
  std::optional<T> value;
  std::string source;          // file under the sysroot, syscall, or "computed from ..."
  std::string raw;             // the text read (trimmed, at most a few hundred characters)
  std::string unknown_reason;  // why value is empty

  bool known() const { return value.has_value(); }
  const T& operator*() const { return *value; }
  const T* operator->() const { return &*value; }

  static Fact of(T v, std::string source, std::string raw = {}) {
    return Fact{std::move(v), std::move(source), std::move(raw), {}};
  }
  static Fact unknown(std::string source, std::string why) {
    return Fact{std::nullopt, std::move(source), {}, std::move(why)};
  }
  // A Fact from a Result: known on success, unknown with the error's message otherwise.
  static Fact from(Result<T> r, std::string source, std::string raw = {}) {
    if (r) return of(std::move(*r), std::move(source), std::move(raw));
    return unknown(std::move(source), r.error().message);
  }
};

// ---------------------------------------------------------------------------------------------
// CPU sets

// A set of CPU (or NUMA node) ids in the kernel's two text forms: the list format "0-3,8,10-11"
// (cpuset.cpus, /sys/devices/system/cpu/online) and the hex mask format "ff,ffffffff" (cpumap,
// Cpus_allowed). Ids are 0..kMaxId. Value type; cheap to copy for machines of a few thousand CPUs.
class CpuSet {
 public:
  static constexpr int kMaxId = 65535;

  CpuSet() = default;
  static CpuSet of(std::initializer_list<int> ids);
  static CpuSet range(int first, int last);  // inclusive; empty when last < first

  // "0-3,8,10-11", also "" and whitespace (empty set). Rejects descending ranges, ids above kMaxId
  // and anything else with an error naming the bad text and the accepted form.
  static Result<CpuSet> parse_list(std::string_view text);
  // "ff,ffffffff": comma-separated 32-bit hex words, most significant first; leading "0x" allowed.
  static Result<CpuSet> parse_mask(std::string_view text);

  std::string to_list() const;  // "0-3,8" ("" when empty)
  std::string to_mask()
      const;  // "0000000f" style, 32-bit words, most significant first ("0" when empty)

  void set(int id);
  void reset(int id);
  bool contains(int id) const;
  int count() const;
  bool empty() const { return count() == 0; }
  int first() const;  // lowest id, -1 when empty
  int last() const;   // highest id, -1 when empty
  std::vector<int> ids() const;
  // Calls f(id) for every id, ascending, without allocating (for hot loops over large sets).
  template <class F>
  void for_each(F&& f) const {
    for (size_t w = 0; w < words_.size(); ++w) {
      for (uint64_t bits = words_[w]; bits != 0; bits &= bits - 1)
        f(static_cast<int>(w * 64) + std::countr_zero(bits));
    }
  }
  bool is_subset_of(const CpuSet& other) const;

  CpuSet& operator&=(const CpuSet& other);
  CpuSet& operator|=(const CpuSet& other);
  CpuSet& operator-=(const CpuSet& other);
  friend CpuSet operator&(CpuSet a, const CpuSet& b) { return a &= b; }
  friend CpuSet operator|(CpuSet a, const CpuSet& b) { return a |= b; }
  friend CpuSet operator-(CpuSet a, const CpuSet& b) { return a -= b; }
  friend bool operator==(const CpuSet& a, const CpuSet& b);

 private:
  void drop_trailing_zero_words();
  std::vector<uint64_t> words_;  // bit i of word w is id 64*w+i; no trailing zero words
};

// ---------------------------------------------------------------------------------------------
// Byte sizes and limits

// A kernel limit: a number, or none ("max", "-1", cgroup v1's LONG_MAX rounded to a page).
struct Limit {
  std::optional<uint64_t> value;  // nullopt: unlimited

  static Limit unlimited() { return Limit{}; }
  static Limit of(uint64_t v) { return Limit{v}; }
  bool is_unlimited() const { return !value.has_value(); }
  friend bool operator==(const Limit&, const Limit&) = default;
};
// The tighter of two limits.
Limit min_limit(const Limit& a, const Limit& b);

// Values at or above this are "no limit": cgroup v1 reports PAGE_COUNTER_MAX * page size
// (9223372036854771712 with 4 KiB pages, a different number with 64 KiB pages).
inline constexpr uint64_t kUnlimitedThreshold = uint64_t{1} << 62;

// Parses a byte size given by a person: "4096", "64Mi", "64MiB", "1.5G", "2g", "512k".
// K/M/G/T/P/E, with or without "i" and "B", are powers of 1024, as the kernel, systemd and Docker
// read them. Fractions are rounded down to a whole byte. Rejects negatives, "max", unknown suffixes
// and overflow with an error naming the text and the accepted form.
Result<uint64_t> parse_bytes(std::string_view text);
// parse_bytes, or "max" / "unlimited" / "-1" for no limit.
Result<Limit> parse_byte_limit(std::string_view text);
// A limit as the kernel writes it in a cgroup or /proc file: "max", "-1", a decimal number, or
// a number at or above kUnlimitedThreshold. Only digits; no suffixes.
Result<Limit> parse_kernel_limit(std::string_view text);

// "512 B", "64 KiB", "1.5 GiB", "4 TiB": binary units, at most one decimal, trailing ".0" dropped.
std::string format_bytes(uint64_t bytes);
// format_bytes, or "max" for no limit.
std::string format_limit(const Limit& limit);

// `s` with every byte that is not part of valid UTF-8 written as \ooo (as the kernel escapes
// mount points), and with control characters escaped too when `controls`: safe for a terminal or
// a JSON string. Valid text is returned unchanged.
std::string escape_bytes(std::string_view s, bool controls = false);

// Parses a duration given by a person: "50ms", "1.5s", "250us", "2m", "1h"; a bare number is
// seconds, as sleep(1) reads it. Rounded down to whole microseconds. Rejects negatives, unknown
// units and more than a week with an error naming the text and the accepted form.
Result<std::chrono::microseconds> parse_duration(std::string_view text);
// "2026-11-23T11:52:16.123Z": ISO 8601 in UTC with milliseconds, for reports and samples.
std::string format_utc(std::chrono::system_clock::time_point t);
// format_utc's text back; nothing for any other text.
std::optional<std::chrono::system_clock::time_point> parse_utc(const std::string& text);

// ---------------------------------------------------------------------------------------------
// Text helpers for kernel files. All tolerate garbage: they never throw and never crash.

std::string_view trim(std::string_view s);
std::vector<std::string_view> split(std::string_view s, char sep);   // keeps empty fields
std::vector<std::string_view> split_whitespace(std::string_view s);  // drops empty fields
std::optional<uint64_t> parse_u64(std::string_view s);               // decimal digits only
std::optional<int64_t> parse_i64(std::string_view s);                // optional leading '-'
std::optional<double> parse_double(std::string_view s);              // plain decimal, no exponent

// "key value" lines (memory.stat, cpu.stat, memory.events) and "Key: value [kB]" lines
// (/proc/meminfo, /proc/PID/status): every line whose first field is a key and whose second
// parses as an unsigned number. A "kB" unit multiplies by 1024. Other lines are skipped.
std::map<std::string, uint64_t, std::less<>> parse_keyed_numbers(std::string_view text);

// ---------------------------------------------------------------------------------------------
// Files

// How read_regular_file treats what it finds.
struct ReadLimits {
  size_t max_bytes = 4 << 20;
  bool follow_symlinks = true;  // false: a symbolic link as the last component is refused
  bool truncate = true;         // false: a file longer than max_bytes is an error, not cut there
};

// A whole file, only if it is a regular file. A FIFO, device or socket is refused at once, never
// opened for blocking reads, so a planted FIFO cannot hang hostfit and /dev/zero cannot fill its
// memory; a directory is an error naming EISDIR. ENOENT errors keep kNotFound and the errno.
Result<std::string> read_regular_file(const std::filesystem::path& path,
                                      const ReadLimits& limits = {});

// What identifies a file while it exists: a removed directory never comes back under the same
// (device, inode), so a path whose FileId changed names something else now.
struct FileId {
  uint64_t device = 0;
  uint64_t inode = 0;
  friend bool operator==(const FileId&, const FileId&) = default;
};

// ---------------------------------------------------------------------------------------------
// Sysroot

// What a Sysroot handed out while recording (for `hostfit probe --capture`), by target path.
struct SysrootLog {
  std::map<std::string, std::string> files;  // each file read: the bytes returned
  std::map<std::string, bool> present;       // each path found to exist: whether a directory
};

// The one door to /proc, /sys and cgroupfs. Every module reads and writes kernel files through a
// Sysroot, whose root is "/" on the host and a fixture directory in tests or with --sysroot DIR.
// Paths given to it are absolute paths as on the target machine ("/proc/meminfo"). Thread-safe:
// it holds only the root path.
class Sysroot {
 public:
  explicit Sysroot(std::filesystem::path root = "/");

  const std::filesystem::path& root() const { return root_; }
  // True when the root is the running system's "/", so syscalls (sched_getaffinity, getrlimit,
  // sysconf) describe the same machine as the files.
  bool is_host() const { return is_host_; }
  // The real path of an absolute target path: "/proc/meminfo" -> ROOT/proc/meminfo.
  std::filesystem::path path(std::string_view target_path) const;

  // Whole file (at most max_bytes) through read_regular_file: a FIFO or device planted in a
  // --sysroot tree is refused, not read. Errors name the real path and the errno text.
  Result<std::string> read(std::string_view target_path, size_t max_bytes = 4 << 20) const;
  // read(), trimmed of surrounding whitespace; an empty file is an error ("... is empty").
  Result<std::string> read_value(std::string_view target_path) const;
  bool exists(std::string_view target_path) const;
  // The identity of the file or directory at a target path now (stat(2)).
  Result<FileId> file_id(std::string_view target_path) const;
  bool is_dir(std::string_view target_path) const;
  // Entry names of a directory, sorted.
  Result<std::vector<std::string>> list(std::string_view target_dir) const;

  // One write(2) of data to an existing (or, in fixture trees, new) file; cgroupfs treats each
  // write as one command, so callers write one value per call.
  Status write(std::string_view target_path, std::string_view data) const;
  Status make_dir(std::string_view target_path) const;    // mkdir; EEXIST is not an error
  Status remove_dir(std::string_view target_path) const;  // rmdir; ENOENT is not an error

  // From now on this Sysroot and its copies remember what read(), exists() and is_dir() found
  // (list() is not recorded). Thread-safe; meant for one probe, not for long-lived roots.
  void start_recording();
  SysrootLog recorded() const;  // empty when not recording

 private:
  struct Recorder;
  void note_read(std::string_view target_path, const std::string& data) const;
  void note_present(std::string_view target_path, bool is_dir) const;

  std::filesystem::path root_;
  bool is_host_ = true;
  std::shared_ptr<Recorder> recorder_;
};

// Joins target paths: join("/sys/fs/cgroup/memory", "/a/b") -> "/sys/fs/cgroup/memory/a/b".
std::string join_path(std::string_view base, std::string_view rest);

}  // namespace hostfit
