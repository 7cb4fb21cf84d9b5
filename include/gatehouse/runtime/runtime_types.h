// Shard runtime: limits, identifiers and messages (types only).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace gatehouse::runtime {

// Every pool and queue of a shard is bounded by one of these. Defaults suit a
// gateway on a small host; [runtime] in the config overrides them.
struct RuntimeLimits {
  uint32_t shards = 0;                           // 0: one per online core
  uint32_t connections_per_shard = 16'384;       // direct-descriptor table size per ring
  uint32_t recv_buffers_per_shard = 1'024;       // provided buffers (power of two): 16 MiB a shard
  uint32_t recv_buffer_size_bytes = 16'384;      // fewer completions and split frames than 4 KiB
  uint32_t send_queue_max_bytes = 64 * 1024;     // per connection; send() refuses beyond
  uint32_t send_buffer_max_bytes_per_shard = 64u << 20;  // all send queues of a shard
  // Cross-shard messages waiting per shard, beyond one per connection (every
  // connection may have one auth step out); rounded up to a power of two.
  uint32_t inbox_capacity = 4'096;
  uint32_t accepts_in_flight = 32;               // per listener per shard
  uint32_t connects_in_flight_max = 4'096;       // per shard
  uint32_t timer_tick_ms = 10;
  uint32_t shutdown_timeout_ms = 5'000;          // drain bound on SIGTERM/SIGINT
  bool pin_shards = false;                       // pin shard i to core i (dedicated hosts only)
  // The shard threads' nice value. Below 0 (needs CAP_SYS_NICE) the data path
  // outranks the auth threads' handshake crypto and other processes: during a
  // reconnect storm established sessions keep their latency.
  int32_t shard_nice = 0;
  bool operator==(const RuntimeLimits&) const = default;
};

inline constexpr uint32_t kRuntimeShardsMax = 256;
inline constexpr uint32_t kSendChunkBytes = 16 * 1024;
inline constexpr uint32_t kSendIovMax = 16;  // chunks gathered into one sendmsg

// A connection on a shard: its slot in the ring's direct-descriptor table and
// a generation that changes when the slot is reused, so stale ids are inert.
struct ConnId {
  uint32_t index = UINT32_MAX;
  uint32_t generation = 0;
  bool operator==(const ConnId&) const = default;
};

struct PeerAddress {
  sockaddr_storage storage{};
  socklen_t size_bytes = 0;
  std::string to_string() const;  // "127.0.0.1:40112", "[::1]:40112"
  // An IPv4 peer on a dual-stack ("[::]") socket arrives as ::ffff:a.b.c.d:
  // this is it as IPv4 (any other address unchanged), for comparisons.
  PeerAddress unmapped() const;
};

class Shard;

// Who a cross-shard message is for. The message carries its receiver, so no
// kind numbers are shared between modules and no layer sees, broadcasts or
// forwards messages that are not its own. It runs on the receiving shard's
// thread and must outlive every message posted to it.
class Mailbox {
 public:
  virtual void on_message(Shard& shard, uint64_t value, void* pointer) = 0;

 protected:
  ~Mailbox() = default;
};

// Ownership of `pointer` passes with the message.
struct Message {
  Mailbox* to = nullptr;
  uint64_t value = 0;
  void* pointer = nullptr;
};


}  // namespace gatehouse::runtime
