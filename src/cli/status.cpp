// `gatehouse status`: asks a running instance through its admin endpoint
// (GET /status) and prints what an operator looks at first.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "commands.h"
#include "role_start.h"
#include "gatehouse/cli/args.h"
#include "gatehouse/config/config.h"
#include "gatehouse/runtime/runtime.h"

namespace gatehouse::cli {
namespace {

constexpr std::string_view kUsage = "gatehouse status --config FILE [--json] [--timeout-ms N]";
constexpr uint32_t kResponseBytesMax = 4u << 20;

struct HttpResult {
  int status = 0;
  std::string body;
};

// The admin address a client dials: a wildcard listen is reached on loopback.
std::string dial_host(const config::Endpoint& listen) {
  if (listen.host == "0.0.0.0") return "127.0.0.1";
  if (listen.host == "::") return "::1";
  return listen.host;
}

// One GET over a fresh connection (the endpoint closes after each answer).
bool http_get(const config::Endpoint& listen, const std::string& path, uint32_t timeout_ms, HttpResult& result,
              std::string& why) {
  runtime::PeerAddress address;
  if (!runtime::make_address(dial_host(listen), listen.port, address, why)) return false;
  const int fd = ::socket(address.storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    why = std::strerror(errno);
    return false;
  }
  const timeval timeout{static_cast<time_t>(timeout_ms / 1'000), static_cast<suseconds_t>(timeout_ms % 1'000 * 1'000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  std::string response;
  bool sent = ::connect(fd, reinterpret_cast<const sockaddr*>(&address.storage), address.size_bytes) == 0;
  if (sent) {
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + listen.text + "\r\nConnection: close\r\n\r\n";
    sent = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size());
  }
  if (!sent) why = std::strerror(errno);
  char chunk[16 * 1024];
  while (sent && response.size() < kResponseBytesMax) {
    const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
    if (got == 0) break;
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      why = errno == EAGAIN ? "no answer within " + std::to_string(timeout_ms) + " ms" : std::strerror(errno);
      sent = false;
      break;
    }
    response.append(chunk, static_cast<size_t>(got));
  }
  ::close(fd);
  if (!sent) return false;
  const size_t body_at = response.find("\r\n\r\n");
  if (!response.starts_with("HTTP/1.") || response.size() < 12 || body_at == std::string::npos) {
    why = "the answer is not HTTP (is [admin] listen another service's port?)";
    return false;
  }
  result.status = std::atoi(response.c_str() + 9);
  result.body = response.substr(body_at + 4);
  return true;
}

// The status JSON as indented "key: value" lines. The endpoint writes it, so
// it is well formed; strings are printed with their escapes resolved.
class TextRenderer {
 public:
  explicit TextRenderer(std::string_view json) : json_(json) {}
  std::string render() {
    value(0, false);
    return out_;
  }

 private:
  void value(int depth, bool in_array) {
    skip_space();
    if (at_ >= json_.size()) return;
    const char c = json_[at_];
    if (c == '{') {
      object(depth, in_array);
    } else if (c == '[') {
      array(depth);
    } else if (c == '"') {
      out_ += string();
      out_ += '\n';
    } else {
      const size_t end = json_.find_first_of(",}]", at_);
      out_ += json_.substr(at_, end - at_);
      out_ += '\n';
      at_ = end;
    }
  }
  void object(int depth, bool in_array) {
    ++at_;
    bool first = true;
    if (!in_array && depth > 0) out_ += '\n';
    for (skip_space(); at_ < json_.size() && json_[at_] != '}'; skip_space()) {
      if (json_[at_] == ',') {
        ++at_;
        continue;
      }
      const std::string key = string();
      skip_space();
      ++at_;  // ':'
      if (!(in_array && first)) out_.append(static_cast<size_t>(depth) * 2, ' ');
      out_ += key + ": ";
      value(depth + 1, false);
      first = false;
    }
    ++at_;
  }
  void array(int depth) {
    ++at_;
    bool empty = true;
    for (skip_space(); at_ < json_.size() && json_[at_] != ']'; skip_space()) {
      if (json_[at_] == ',') {
        ++at_;
        continue;
      }
      if (empty) out_ += '\n';
      empty = false;
      out_.append(static_cast<size_t>(depth) * 2, ' ');
      out_ += "- ";
      value(depth + 1, true);
    }
    if (empty) out_ += "none\n";
    ++at_;
  }
  std::string string() {
    std::string text;
    for (++at_; at_ < json_.size() && json_[at_] != '"'; ++at_) {
      if (json_[at_] == '\\' && at_ + 1 < json_.size()) {
        const char escaped = json_[++at_];
        text += escaped == 'n' ? '\n' : escaped == 't' ? '\t' : escaped;
        if (escaped == 'u') at_ += 4;  // control characters: not in the status text
        continue;
      }
      text += json_[at_];
    }
    ++at_;
    return text;
  }
  void skip_space() {
    while (at_ < json_.size() && (json_[at_] == ' ' || json_[at_] == '\n')) ++at_;
  }

  std::string_view json_;
  size_t at_ = 0;
  std::string out_;
};

}  // namespace

int run_status(int argc, char** argv, int first) {
  static constexpr FlagSpec kFlags[] = {{"--config", true}, {"--json", false}, {"--timeout-ms", true}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse status", why, kUsage);
  if (!args.positionals.empty()) {
    return usage_error("gatehouse status", "unexpected argument '" + std::string(args.positionals[0]) + "'", kUsage);
  }
  const std::string path = config_path(args, std::nullopt, why);
  if (path.empty()) return usage_error("gatehouse status", why, kUsage);
  uint32_t timeout_ms = 3'000;
  if (const auto text = args.value("--timeout-ms")) {
    timeout_ms = static_cast<uint32_t>(std::strtoul(std::string(*text).c_str(), nullptr, 10));
    if (timeout_ms == 0) return usage_error("gatehouse status", "--timeout-ms must be a number above 0", kUsage);
  }
  config::Config config;
  const std::vector<config::ConfigError> errors = config::load(path, std::nullopt, config);
  for (const config::ConfigError& error : errors) std::fprintf(stderr, "%s\n", config::format(error).c_str());
  if (!errors.empty()) return kExitConfig;
  if (config.admin_listen.host.empty()) {
    std::fprintf(stderr, "gatehouse status: %s has no admin endpoint ([admin] listen is \"\"%s)\n", path.c_str(),
                 config.role == config::Role::agent ? ", the agent's default" : "");
    return kExitUnavailable;
  }
  if (config.admin_listen.port == 0) {
    std::fprintf(stderr, "gatehouse status: %s: [admin] listen has port 0 (any free port): its port is in the "
                 "instance's start line (event 30001, admin_port)\n", path.c_str());
    return kExitUnavailable;
  }
  HttpResult result;
  if (!http_get(config.admin_listen, "/status", timeout_ms, result, why)) {
    std::fprintf(stderr, "gatehouse status: cannot ask %s at %s: %s (is it running?)\n", config.name.c_str(),
                 config.admin_listen.text.c_str(), why.c_str());
    return kExitUnavailable;
  }
  if (result.status != 200 && result.status != 503) {
    std::fprintf(stderr, "gatehouse status: %s answered HTTP %d: %s", config.admin_listen.text.c_str(), result.status,
                 result.body.c_str());
    return kExitUnavailable;
  }
  if (args.has("--json")) {
    std::fputs(result.body.c_str(), stdout);
  } else {
    std::fputs(TextRenderer(result.body).render().c_str(), stdout);
  }
  return result.status == 200 ? kExitOk : kExitFailure;
}

}  // namespace gatehouse::cli
