#include "gatehouse/runtime/runtime.h"

#include <netdb.h>

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "gatehouse/log/log.h"

namespace gatehouse::runtime {
namespace {

// Sets the calling shard thread's nice value; shard 0 says so once when the
// host refuses (no CAP_SYS_NICE), and the shards run at the process's.
void apply_shard_nice(int32_t nice, uint32_t shard) {
  if (nice == 0 || set_thread_nice(nice) || shard != 0) return;
  log::emit(log::Level::warning, log::EventId::shard_priority_refused,
            "cannot raise the shard threads' priority: established sessions may slow down during a reconnect "
            "storm. Fix: grant CAP_SYS_NICE (systemd: AmbientCapabilities=CAP_SYS_NICE), or set [runtime] "
            "shard_nice = 0 to silence this",
            {{"shard_nice", static_cast<int64_t>(nice)}, {"error", std::strerror(errno)}});
}

uint32_t online_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return static_cast<uint32_t>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int listening_socket(const PeerAddress& address, std::string& why) {
  const int fd = ::socket(address.storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    why = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // inherited by accepted sockets
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address.storage), address.size_bytes) != 0 ||
      ::listen(fd, SOMAXCONN) != 0) {
    why = "cannot listen on " + address.to_string() + ": " + std::strerror(errno) +
          (errno == EADDRINUSE ? " (another process holds the port)" : "");
    if (errno == EADDRINUSE) note_start_failure(StartFailure::port_in_use);
    ::close(fd);
    return -1;
  }
  return fd;
}

void set_port(PeerAddress& address, uint16_t port) {
  if (address.storage.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in&>(address.storage).sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6&>(address.storage).sin6_port = htons(port);
  }
}

}  // namespace

bool make_address(const std::string& ip, uint16_t port, PeerAddress& address, std::string& why) {
  address = {};
  auto& v4 = reinterpret_cast<sockaddr_in&>(address.storage);
  auto& v6 = reinterpret_cast<sockaddr_in6&>(address.storage);
  if (inet_pton(AF_INET, ip.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    address.size_bytes = sizeof v4;
  } else if (inet_pton(AF_INET6, ip.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    address.size_bytes = sizeof v6;
  } else {
    why = "'" + ip + "' is not an IP address";
    return false;
  }
  return true;
}

Runtime::Runtime(const RuntimeLimits& limits)
    : limits_(limits),
      shard_count_(shard_count_for(limits)),
      listeners_(shard_count_) {}

Runtime::~Runtime() {
  stop();
  join();
}

// SO_REUSEPORT would let a second process (another gatehouse by mistake)
// share the port and silently take half the connections: a plain bind first
// proves the port is free.
static bool port_free(const PeerAddress& address, std::string& why) {
  const int fd = ::socket(address.storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // TIME_WAIT leftovers are no owner
  const bool free = ::bind(fd, reinterpret_cast<const sockaddr*>(&address.storage), address.size_bytes) == 0;
  if (!free) {
    why = "cannot listen on " + address.to_string() + ": " + std::strerror(errno) +
          (errno == EADDRINUSE ? " (another process holds the port)" : "");
    if (errno == EADDRINUSE) note_start_failure(StartFailure::port_in_use);
  }
  ::close(fd);
  return free;
}

bool Runtime::listen(const PeerAddress& address, uint64_t context, uint16_t& bound_port, std::string& why) {
  const bool any_port = address.storage.ss_family == AF_INET
                            ? reinterpret_cast<const sockaddr_in&>(address.storage).sin_port == 0
                            : reinterpret_cast<const sockaddr_in6&>(address.storage).sin6_port == 0;
  if (!any_port && !port_free(address, why)) return false;
  PeerAddress bind_address = address;
  std::vector<int> fds;
  for (uint32_t i = 0; i < shard_count_; ++i) {
    const int fd = listening_socket(bind_address, why);
    if (fd < 0) {
      for (int opened : fds) ::close(opened);
      return false;
    }
    fds.push_back(fd);
    if (i == 0) {  // port 0: every shard joins the port the first one got
      PeerAddress actual;
      actual.size_bytes = sizeof actual.storage;
      getsockname(fd, reinterpret_cast<sockaddr*>(&actual.storage), &actual.size_bytes);
      bound_port = ntohs(actual.storage.ss_family == AF_INET
                             ? reinterpret_cast<sockaddr_in&>(actual.storage).sin_port
                             : reinterpret_cast<sockaddr_in6&>(actual.storage).sin6_port);
      set_port(bind_address, bound_port);
    }
  }
  for (uint32_t i = 0; i < shard_count_; ++i) listeners_[i].push_back({fds[i], context});
  return true;
}

bool Runtime::start(const ServiceFactory& factory, std::string& why) {
  for (uint32_t i = 0; i < shard_count_; ++i) {
    services_.push_back(factory(i));
    shards_.push_back(std::make_unique<Shard>(i, limits_, *services_.back(), std::move(listeners_[i])));
  }
  const uint32_t cores = online_cores();
  for (uint32_t i = 0; i < shard_count_; ++i) {
    threads_.emplace_back([this, i, cores] {
      Shard& shard = *shards_[i];
      const std::string name = "gh-shard-" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.c_str());
      apply_shard_nice(limits_.shard_nice, i);
      if (limits_.pin_shards) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(i % cores, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
      }
      std::string failure;
      const bool ok = shard.init(failure);
      {
        std::lock_guard lock(started_mutex_);
        if (!ok && first_failure_.empty()) first_failure_ = "shard " + std::to_string(i) + ": " + failure;
        ++shards_reported_;
      }
      started_.notify_all();
      if (ok) shard.run();
    });
  }
  std::unique_lock lock(started_mutex_);
  started_.wait(lock, [&] { return shards_reported_ == shard_count_; });
  if (!first_failure_.empty()) {
    why = first_failure_;
    lock.unlock();
    stop();
    join();
    return false;
  }
  return true;
}

void Runtime::stop() {
  for (auto& shard : shards_) shard->request_stop();
}

void Runtime::join() {
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

uint64_t Runtime::total(Stat stat) const {
  uint64_t sum = 0;
  for (const auto& shard : shards_) sum += shard->stat(stat);
  return sum;
}

uint32_t shard_count_for(const RuntimeLimits& limits) {
  return std::min(kRuntimeShardsMax, limits.shards == 0 ? online_cores() : limits.shards);
}

bool set_thread_nice(int32_t nice) {
  return setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice) == 0;
}

namespace {

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

}  // namespace

void block_stop_signals() {
  const sigset_t set = handled_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int wait_for_stop_signal(const std::function<void()>& on_reload, const std::function<void()>& on_tick,
                         uint32_t tick_ms) {
  const sigset_t set = handled_signals();
  const timespec tick{static_cast<time_t>(tick_ms / 1'000), static_cast<long>(tick_ms % 1'000) * 1'000'000};
  for (;;) {
    const int signal_number = sigtimedwait(&set, nullptr, &tick);
    if (signal_number < 0) {
      if (errno == EAGAIN && on_tick) on_tick();
      continue;
    }
    if (signal_number != SIGHUP) return signal_number;
    if (on_reload) on_reload();
  }
}

namespace {
std::atomic<StartFailure> g_start_failure{StartFailure::other};
}  // namespace

void note_start_failure(StartFailure failure) { g_start_failure.store(failure, std::memory_order_relaxed); }
StartFailure start_failure() { return g_start_failure.load(std::memory_order_relaxed); }

uint64_t steady_us() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

void sd_notify(const char* state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const size_t length = std::min(std::strlen(path), sizeof address.sun_path - 1);
  std::memcpy(address.sun_path, path, length);
  if (address.sun_path[0] == '@') address.sun_path[0] = '\0';  // abstract namespace
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  ::sendto(fd, state, std::strlen(state), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&address),
           static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length));
  ::close(fd);
}

}  // namespace gatehouse::runtime

namespace gatehouse::runtime {

bool resolve_address(const std::string& host, uint16_t port, PeerAddress& address, std::string& why) {
  if (make_address(host, port, address, why)) return true;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int error = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (error != 0) {
    why = "cannot resolve " + host + ": " + gai_strerror(error);
    return false;
  }
  std::memcpy(&address.storage, found->ai_addr, found->ai_addrlen);
  address.size_bytes = found->ai_addrlen;
  set_port(address, port);
  freeaddrinfo(found);
  return true;
}

}  // namespace gatehouse::runtime
