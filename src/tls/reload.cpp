#include "gatehouse/tls/reload.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <chrono>
#include <climits>

#include "gatehouse/log/log.h"
#include "tls/session.h"

namespace gatehouse::tls {

std::string ReloadableContext::reload() {
  std::string why;
  std::shared_ptr<const Context> loaded = Context::load(options_, why);
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
  return "";
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
