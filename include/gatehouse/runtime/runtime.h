// The shard set: one thread and one io_uring per shard, each listener bound
// once per shard with SO_REUSEPORT so the kernel spreads connections.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gatehouse/runtime/shard.h"

namespace gatehouse::runtime {

class Runtime {
 public:
  using ServiceFactory = std::function<std::unique_ptr<Service>(uint32_t shard)>;

  explicit Runtime(const RuntimeLimits& limits);
  ~Runtime();  // stops and joins if still running
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Before start(): binds one listening socket per shard. Port 0 picks a free
  // port for all of them; `bound_port` tells which.
  bool listen(const PeerAddress& address, uint64_t context, uint16_t& bound_port, std::string& why);
  // Starts every shard; fails as a whole (with the first shard's reason) if
  // any ring cannot be set up.
  bool start(const ServiceFactory& factory, std::string& why);
  void stop();  // any thread: stop accepting, drain (bounded), exit the shards
  void join();

  uint32_t shard_count() const { return shard_count_; }
  Shard& shard(uint32_t index) { return *shards_[index]; }
  Service& service(uint32_t index) { return *services_[index]; }
  uint64_t total(Stat stat) const;

 private:
  RuntimeLimits limits_;
  uint32_t shard_count_;
  std::vector<std::vector<Listener>> listeners_;  // per shard
  std::vector<std::unique_ptr<Service>> services_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::thread> threads_;
  // Shards report their ring setup here. Members, not start()'s locals: a
  // shard still notifying must not touch a condition variable start() has
  // already returned past (it hung a shard in pthread_cond_broadcast).
  std::mutex started_mutex_;
  std::condition_variable started_;
  uint32_t shards_reported_ = 0;
  std::string first_failure_;
};

// An IP literal and a port (as config::Endpoint holds them) as a socket address.
bool make_address(const std::string& ip, uint16_t port, PeerAddress& address, std::string& why);
// An IP literal, or a host name resolved now with getaddrinfo (blocking: for
// the few connections a child opens to its parents, at connect time).
bool resolve_address(const std::string& host, uint16_t port, PeerAddress& address, std::string& why);

// SIGINT/SIGTERM (and SIGHUP): block them in the calling thread before
// start() (the shard threads inherit the mask), then wait. Each SIGHUP calls
// `on_reload` (certificates, keytabs, config) and the wait goes on; SIGINT or
// SIGTERM ends it and is returned. `on_tick` runs every `tick_ms` meanwhile
// (the watchdog, housekeeping such as the CRL's expiry warning).
void block_stop_signals();

// How many shards a runtime with these limits runs (shards = 0: one per core
// this process may run on, at most kRuntimeShardsMax).
uint32_t shard_count_for(const RuntimeLimits& limits);

// Sets the calling thread's nice value; false (errno set) when the host
// refuses it (below the process's value needs CAP_SYS_NICE).
bool set_thread_nice(int32_t nice);
int wait_for_stop_signal(const std::function<void()>& on_reload = {}, const std::function<void()>& on_tick = {},
                         uint32_t tick_ms = 3'600'000);

// The steady clock (never jumps), for deadlines and latencies off the shards
// (a shard has its own per-turn now_ms()).
uint64_t steady_us();
inline uint64_t steady_ms() { return steady_us() / 1'000; }

// Why a start failed, for the exit status a service manager acts on
// (sysexits): a port another process holds may be free in a moment (75,
// EX_TEMPFAIL: Restart= tries again); a kernel without io_uring, or one that
// forbids it, will not be fixed by a restart (69, EX_UNAVAILABLE). Noted where
// the failure happens (any thread), read once by the CLI when the role returns.
enum class StartFailure : uint8_t { other, port_in_use, io_uring_unavailable };
void note_start_failure(StartFailure failure);
StartFailure start_failure();

// systemd readiness/stopping notification; does nothing without NOTIFY_SOCKET.
void sd_notify(const char* state);

}  // namespace gatehouse::runtime
