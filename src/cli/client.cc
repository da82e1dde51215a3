#include "client.h"

#include <cctype>

#include "hostfit/api.h"
#include "hostfit/daemon.h"

namespace hostfit::cli {
namespace {

// The daemon's message as one line: "no workload 'x'", with its detail when that is text.
Error answer_error(const api::ClientResponse& answer) {
  const ErrorKind kind =
      answer.status >= 400 && answer.status < 500 ? ErrorKind::kUsage : ErrorKind::kIo;
  const nlohmann::json body = answer.json();
  if (body.is_object() && body.contains("error") && body["error"].is_string()) {
    std::string message = body["error"].get<std::string>();
    const auto detail = body.find("detail");
    if (detail != body.end() && detail->is_string() && !detail->get<std::string>().empty())
      message += " (" + detail->get<std::string>() + ")";
    return Error{kind, message, 0};
  }
  std::string text = answer.body.substr(0, answer.body.find('\n')).substr(0, 200);
  return Error{
      kind,
      "the daemon answered " + std::to_string(answer.status) + (text.empty() ? "" : ": " + text),
      0};
}

}  // namespace

std::string ClientFlags::socket_path() const {
  return socket.empty() ? default_socket_path() : socket;
}

void add_client_flags(CLI::App& cmd, ClientFlags& flags) {
  cmd.add_option("--socket", flags.socket,
                 "The daemon's API socket (default $HOSTFIT_SOCKET, else "
                 "/run/hostfit/hostfit.sock)")
      ->type_name("PATH");
  add_format_option(cmd, flags.format, {Format::kTable, Format::kJson});
}

Result<nlohmann::json> call_daemon(const ClientFlags& flags, std::string_view method,
                                   const std::string& target, const std::string& body,
                                   std::chrono::milliseconds timeout) {
  auto answer = api::request(flags.socket_path(), method, target, body, timeout);
  if (!answer) return fail(answer.error());  // "no daemon at ...": kNotFound, exit 1
  if (answer->status < 200 || answer->status >= 300) return fail(answer_error(*answer));
  return answer->json();
}

std::string path_segment(std::string_view name) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : name) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '~' || c == '-') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace hostfit::cli
