#include "gatehouse/tls/reload.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <chrono>
#include <climits>

#include "gatehouse/log/log.h"
#include "tls/pki.h"
#include "tls/session.h"

namespace gatehouse::tls {

namespace {

constexpr time_t kCrlWarningLeadS = 7 * 86'400;  // warn this long before a CRL's nextUpdate...
constexpr time_t kCrlWarningEveryS = 86'400;     // ...once a day

// What `gatehouse certs check` finds wrong with our own certificate: expired or
// not yet valid, another name or role, not its key, a broken chain, revoked,
// an expired CRL. "" when usable.
std::string own_certificate_problems(const ContextOptions& options) {
  if (options.cert_path.empty() || options.ca_path.empty()) return "";
  const CheckReport report = check({options.cert_path, options.key_path, options.ca_path, options.crl_path,
                                    options.own_name, options.own_role, options.crl_expired_allowed});
  std::string problems;
  for (const std::string& problem : report.problems) problems += (problems.empty() ? "" : "; ") + problem;
  return problems;
}

}  // namespace

std::string ReloadableContext::reload() {
  std::string why = own_certificate_problems(options_);
  std::shared_ptr<const Context> loaded = why.empty() ? Context::load(options_, why) : nullptr;
  if (loaded == nullptr) {
    log::emit(log::Level::error, log::EventId::certificate_invalid,
              "certificate not loaded, the one in use stays: " + why, {{"cert", options_.cert_path}});
    return why;
  }
  current_.store(loaded);
  generation_.fetch_add(1, std::memory_order_release);
  log::emit(log::Level::info, log::EventId::certificate_loaded, "certificate loaded for new connections",
            {{"cert", options_.cert_path},
             {"subject", loaded->certificate_subject()},
             {"not_after", loaded->certificate_not_after()}});
  crl_warned_at_.store(0);  // a new CRL: say at once if it too is close to its end
  warn_if_crl_expiring();
  return "";
}

void ReloadableContext::warn_if_crl_expiring() {
  const std::shared_ptr<const Context> context = current();
  if (context == nullptr || context->crl_next_update() == 0) return;
  const time_t now = std::time(nullptr);
  const time_t left_s = context->crl_next_update() - now;
  time_t warned_at = crl_warned_at_.load();
  if (left_s > kCrlWarningLeadS || now - warned_at < kCrlWarningEveryS) return;
  if (!crl_warned_at_.compare_exchange_strong(warned_at, now)) return;  // the other thread says it
  const std::string when = left_s <= 0 ? "expired " + std::to_string(-left_s / 3'600) + " h ago"
                                       : "expires in " + std::to_string(left_s / 3'600) + " h";
  log::emit(left_s <= 0 ? log::Level::error : log::Level::warning, log::EventId::crl_expiring,
            "the CRL " + when + (left_s <= 0 && !options_.crl_expired_allowed
                                     ? ": no peer certificate can be checked, handshakes are refused (fail closed)"
                                     : "") +
                "; renew it (gatehouse certs crl --ca-dir DIR) and it is reloaded live",
            {{"crl", options_.crl_path}});
}

time_t ReloadableContext::certificate_expires_at() const {
  const std::shared_ptr<const Context> context = current();
  return context != nullptr ? context->certificate_expires_at() : 0;
}

time_t ReloadableContext::crl_next_update() const {
  const std::shared_ptr<const Context> context = current();
  return context != nullptr ? context->crl_next_update() : 0;
}

std::vector<std::string> ReloadableContext::paths() const {
  std::vector<std::string> paths;
  for (const std::string* path : {&options_.cert_path, &options_.key_path, &options_.ca_path, &options_.crl_path,
                                  &options_.ticket_keys_path}) {
    if (!path->empty()) paths.push_back(*path);
  }
  return paths;
}

FileWatcher::FileWatcher(const std::vector<std::string>& paths, uint32_t debounce_ms, std::function<void()> on_change)
    : on_change_(std::move(on_change)) {
  inotify_fd_ = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (inotify_fd_ < 0 || stop_fd_ < 0) return;
  for (const std::string& path : paths) {
    const size_t slash = path.rfind('/');
    const std::string folder = slash == std::string::npos ? "." : path.substr(0, slash);
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    const int descriptor = inotify_add_watch(inotify_fd_, folder.c_str(),
                                             IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB);
    if (descriptor < 0) continue;
    Watch* watch = nullptr;
    for (Watch& existing : watches_) {
      if (existing.descriptor == descriptor) watch = &existing;
    }
    if (watch == nullptr) watch = &watches_.emplace_back(Watch{descriptor, {}});
    watch->names.push_back(name);
  }
  thread_ = std::thread([this, debounce_ms] { run(debounce_ms); });
}

FileWatcher::~FileWatcher() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void FileWatcher::run(uint32_t debounce_ms) {
  using clock = std::chrono::steady_clock;
  bool pending = false;
  clock::time_point due{};
  alignas(inotify_event) char buffer[16 * (sizeof(inotify_event) + NAME_MAX + 1)];
  for (;;) {
    pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int timeout_ms = -1;
    if (pending) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(due - clock::now()).count();
      timeout_ms = left > 0 ? static_cast<int>(left) : 0;
    }
    if (poll(fds, 2, timeout_ms) < 0) continue;
    if (fds[1].revents & POLLIN) return;
    if (fds[0].revents & POLLIN) {
      const ssize_t size = ::read(inotify_fd_, buffer, sizeof buffer);
      for (ssize_t offset = 0; offset < size;) {
        const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
        offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
        if (event->len == 0) continue;
        for (const Watch& watch : watches_) {
          if (watch.descriptor != event->wd) continue;
          for (const std::string& name : watch.names) {
            if (name == event->name) {
              pending = true;
              due = clock::now() + std::chrono::milliseconds(debounce_ms);
            }
          }
        }
      }
    }
    if (pending && clock::now() >= due) {
      pending = false;
      on_change_();
    }
  }
}

}  // namespace gatehouse::tls
