#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>

#include "hostfit/core.h"

namespace hostfit {

std::string join_path(std::string_view base, std::string_view rest) {
  std::string out(base);
  while (out.size() > 1 && out.back() == '/')
    out.pop_back();
  while (!rest.empty() && rest.front() == '/')
    rest.remove_prefix(1);
  if (rest.empty()) return out.empty() ? "/" : out;
  if (out.empty() || out.back() != '/') out += '/';
  out += rest;
  return out;
}

struct Sysroot::Recorder {
  std::mutex mutex;
  SysrootLog log;
};

void Sysroot::start_recording() {
  if (!recorder_) recorder_ = std::make_shared<Recorder>();
}

SysrootLog Sysroot::recorded() const {
  if (!recorder_) return {};
  std::lock_guard lock(recorder_->mutex);
  return recorder_->log;
}

void Sysroot::note_read(std::string_view target_path, const std::string& data) const {
  if (!recorder_) return;
  std::lock_guard lock(recorder_->mutex);
  recorder_->log.files[std::string(target_path)] = data;
}

void Sysroot::note_present(std::string_view target_path, bool is_dir) const {
  if (!recorder_) return;
  std::lock_guard lock(recorder_->mutex);
  recorder_->log.present[std::string(target_path)] = is_dir;
}

Sysroot::Sysroot(std::filesystem::path root) : root_(std::move(root)) {
  if (root_.empty()) root_ = "/";
  std::error_code ec;
  const auto canonical = std::filesystem::weakly_canonical(root_, ec);
  is_host_ = !ec ? canonical == "/" : root_ == "/";
}

std::filesystem::path Sysroot::path(std::string_view target_path) const {
  if (is_host_) return std::filesystem::path(join_path("/", target_path));
  return std::filesystem::path(join_path(root_.string(), target_path));
}

Result<std::string> Sysroot::read(std::string_view target_path, size_t max_bytes) const {
  auto out = read_regular_file(path(target_path), {.max_bytes = max_bytes});
  if (out) note_read(target_path, *out);
  return out;
}

Result<std::string> Sysroot::read_value(std::string_view target_path) const {
  auto text = read(target_path, 64 << 10);
  if (!text) return text;
  const std::string_view value = trim(*text);
  if (value.empty()) {
    return fail(ErrorKind::kParse, path(target_path).string() + " is empty");
  }
  return std::string(value);
}

bool Sysroot::exists(std::string_view target_path) const {
  struct stat st;
  if (::stat(path(target_path).c_str(), &st) != 0) return false;
  note_present(target_path, S_ISDIR(st.st_mode));
  return true;
}

Result<FileId> Sysroot::file_id(std::string_view target_path) const {
  const std::string real = path(target_path).string();
  struct stat st;
  if (::stat(real.c_str(), &st) != 0) return fail(Error::from_errno(errno, "stat", real));
  return FileId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

bool Sysroot::is_dir(std::string_view target_path) const {
  struct stat st;
  if (::stat(path(target_path).c_str(), &st) != 0) return false;
  note_present(target_path, S_ISDIR(st.st_mode));
  return S_ISDIR(st.st_mode);
}

Result<std::vector<std::string>> Sysroot::list(std::string_view target_dir) const {
  const std::string real = path(target_dir).string();
  DIR* dir = ::opendir(real.c_str());
  if (!dir) return fail(Error::from_errno(errno, "list", real));
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

Status Sysroot::write(std::string_view target_path, std::string_view data) const {
  const std::string real = path(target_path).string();
  // O_CREAT only matters in fixture trees: cgroupfs refuses to create files and returns an error.
  const int flags = O_WRONLY | O_CLOEXEC | O_TRUNC | (is_host_ ? 0 : O_CREAT);
  const int fd = ::open(real.c_str(), flags, 0644);
  if (fd < 0) return fail(Error::from_errno(errno, "write", real));
  ssize_t n;
  do {
    n = ::write(fd, data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  if (n < 0) {
    auto error =
        Error::from_errno(err, "write '" + std::string(trim(data).substr(0, 64)) + "' to", real);
    return fail(std::move(error));
  }
  if (static_cast<size_t>(n) != data.size()) {
    return fail(ErrorKind::kIo, "short write to " + real);
  }
  return {};
}

Status Sysroot::make_dir(std::string_view target_path) const {
  const std::string real = path(target_path).string();
  if (::mkdir(real.c_str(), 0755) != 0 && errno != EEXIST) {
    return fail(Error::from_errno(errno, "create directory", real));
  }
  return {};
}

Status Sysroot::remove_dir(std::string_view target_path) const {
  const std::string real = path(target_path).string();
  if (::rmdir(real.c_str()) != 0 && errno != ENOENT) {
    return fail(Error::from_errno(errno, "remove", real));
  }
  return {};
}

}  // namespace hostfit
