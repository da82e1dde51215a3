#include <cstring>

#include "hostfit/core.h"

namespace hostfit {

Error Error::from_errno(int err, std::string_view op, std::string_view path) {
  ErrorKind kind = ErrorKind::kIo;
  if (err == ENOENT || err == ENOTDIR) kind = ErrorKind::kNotFound;
  if (err == EACCES || err == EPERM) kind = ErrorKind::kPermission;
  if (err == ENOMEM || err == ENOSPC || err == EAGAIN) kind = ErrorKind::kResource;
  std::string message = "cannot ";
  message.append(op).append(" ").append(path).append(": ").append(std::strerror(err));
  if (kind == ErrorKind::kPermission) message += " (run as root, or point --sysroot at a copy)";
  return Error{kind, std::move(message), err};
}

Error Error::wrap(std::string_view context) const {
  std::string wrapped(context);
  wrapped += ": ";
  wrapped += message;
  return Error{kind, std::move(wrapped), sys_errno};
}

}  // namespace hostfit
