// A shard: one thread, one io_uring, its own connections, buffers and timers.
// Everything here runs on the shard's thread except post() and request_stop().
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <deque>
#include <vector>

#include "gatehouse/runtime/mpsc_queue.h"
#include "gatehouse/runtime/runtime_types.h"
#include "gatehouse/runtime/timer_wheel.h"

struct io_uring_cqe;

namespace gatehouse::runtime {

class Ring;
class BufferRing;
class Shard;
struct Timer;

// The owner of a Timer: on_timer runs on the timer's shard when it fires.
class TimerHandler {
 public:
  virtual void on_timer(Shard& shard, Timer& timer) = 0;

 protected:
  ~TimerHandler() = default;
};

// A timer not tied to a connection (reconnect backoff, heartbeats), owned by
// the component that arms it: no shared id space. Not moved while armed.
struct Timer {
  explicit Timer(TimerHandler& owner) : handler(&owner) {}
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  bool armed() const { return node.armed(); }

  TimerNode node;
  TimerHandler* handler;
};

// What runs on a shard's connections; one instance per shard, called only on
// that shard's thread.
class Service {
 public:
  virtual ~Service() = default;
  // A connection is up: accepted on a listener (context = the listener's) or
  // connected by Shard::connect (context = the caller's).
  virtual void on_open(Shard& shard, ConnId id, uint64_t context) = 0;
  // Received bytes, valid during the call only (the buffer goes back to the
  // kernel right after). A few calls may still come after pause_reading().
  virtual void on_data(Shard& shard, ConnId id, std::span<const std::byte> bytes) = 0;
  // The connection is gone (0: orderly, else -errno); `id` is dead afterwards.
  virtual void on_close(Shard& shard, ConnId id, int error) = 0;
  virtual void on_connect_failed(Shard& shard, uint64_t context, int error) = 0;
  // send() was refused earlier and there is room again (half the queue), or
  // the queue drained to the mark notify_send_space() asked for.
  virtual void on_send_space(Shard&, ConnId) {}
  virtual void on_deadline(Shard&, ConnId) {}
  // Once per loop turn, after every completion of the turn: a service that
  // batches work across connections (group commit, uplink writes) sends it here.
  virtual void on_turn_end(Shard&) {}
  // Stop was requested: listeners are closed; finish sessions and close them.
  // Connections still open after shutdown_timeout_ms are aborted.
  virtual void on_stop(Shard&) {}
  // False while the service has work out of the shard (e.g. a handshake step
  // on the auth pool) whose answer will come back as a message: the shard
  // does not finish before it has.
  virtual bool idle() const { return true; }
};

enum class Stat : uint8_t {
  connections_open,
  accepted_total,
  connected_total,
  closed_total,
  recv_bytes_total,
  sent_bytes_total,
  recv_enobufs_total,
  send_refused_total,
  table_full_total,
  inbox_full_total,
  sendmsg_calls_total,
  send_partial_total,  // the kernel took part of a send; the rest goes next turn
  count,
};
const char* to_string(Stat stat);
// on_connect_failed's error (-errno) for a log line.
std::string connect_error_text(int error);

struct Listener {  // a listening socket of one shard (SO_REUSEPORT group member)
  int fd = -1;
  uint64_t context = 0;
};

class Shard {
 public:
  Shard(uint32_t index, const RuntimeLimits& limits, Service& service, std::vector<Listener> listeners);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // On the shard's own thread: set up the ring, then run until stopped.
  bool init(std::string& why);
  void run();

  // Any thread. post() fails when the inbox is full. Work handed to another
  // thread whose answer must come back reserves its inbox slot first
  // (reserve_post(), false when full), and post_reserved() then never fails.
  bool post(const Message& message);
  // Never on a shard thread (it may wait): post() once the inbox has room,
  // for a message that must not be lost (a reload's, a stop's).
  void post_waiting(const Message& message);
  bool reserve_post();
  void post_reserved(const Message& message);
  void cancel_reservation();  // a reserved slot that will not be used
  void request_stop();
  uint64_t stat(Stat stat) const { return stats_[static_cast<size_t>(stat)].load(std::memory_order_relaxed); }

  // Shard thread only.
  uint32_t index() const { return index_; }
  bool connect(const PeerAddress& address, uint64_t context);  // false: no slot (below), or no socket
  // A connect slot is free (connects_in_flight_max bounds those in flight).
  bool can_connect() const { return !free_connects_.empty() && !stopping_; }
  bool send(ConnId id, std::span<const std::byte> bytes);      // false: nothing queued (bound reached)
  uint32_t send_queued_bytes(ConnId id) const;
  // This connection's send queue bound instead of the shard's
  // send_queue_max_bytes (an uplink: a whole turn of its agents' records goes
  // straight in, no copy waiting outside). At least kSendChunkBytes.
  void set_send_queue_max(ConnId id, uint32_t max_bytes);
  // on_send_space once at most `below_bytes` are queued (a congested uplink
  // waiting to drain); false, and no call, when that is already so.
  bool notify_send_space(ConnId id, uint32_t below_bytes);
  void close(ConnId id);  // once queued bytes are sent
  void abort(ConnId id);  // now; queued bytes are dropped
  void pause_reading(ConnId id);
  void resume_reading(ConnId id);
  void set_deadline(ConnId id, uint32_t timeout_ms);
  void clear_deadline(ConnId id);
  // (Re)arms the timer: its handler's on_timer runs once after delay_ms.
  void set_timer(Timer& timer, uint32_t delay_ms);
  void cancel_timer(Timer& timer);
  bool alive(ConnId id) const;
  const PeerAddress& peer(ConnId id) const;
  uint64_t now_ms() const { return now_ms_; }
  bool stopping() const { return stopping_; }
  const char* ring_mode() const;

 private:
  struct SendChunk;
  struct SendOp;
  struct Connection;
  struct PendingConnect;
  struct AcceptSlot;
  // on_close / on_connect_failed are delivered at the end of a loop turn, so a
  // service that closes a connection from inside a callback is not re-entered.
  struct Notice {
    enum Kind : uint8_t { closed, connect_failed } kind;
    ConnId id;
    uint64_t context;
    int error;
  };

  enum class Op : uint8_t { accept = 1, recv, send, shutdown, cancel, close, socket, connect, wake };

  static uint64_t user_data(Op op, uint32_t generation, uint32_t index);
  static uint32_t inbox_slots_for(const RuntimeLimits& limits);
  void wake();

  Connection* live(ConnId id);
  const Connection* live(ConnId id) const;
  ConnId id_of(uint32_t index) const;
  void bump(Stat stat, uint64_t amount = 1);
  void bump_down(Stat stat);
  uint64_t clock_ms() const;

  // submissions
  void arm_accept(uint32_t listener, uint32_t slot);
  void arm_recv(uint32_t index);
  void arm_wake();
  uint32_t send_queue_max(const Connection& c) const;
  void want_send_space(Connection& c, uint32_t below_bytes);
  void refuse_send(Connection& c);
  void submit_send(uint32_t index);
  void submit_cancel(uint64_t target, uint32_t index);
  void begin_close(uint32_t index, int error, bool notify = true);
  void maybe_finish_close(uint32_t index);
  void begin_stop();
  bool finished();

  // completions, one handler per opcode
  void dispatch(const io_uring_cqe& cqe);
  void on_accept(uint32_t tag, int result);
  void on_recv(uint32_t index, int result, uint32_t flags);
  void on_send(uint32_t index, int result);
  void on_socket(uint32_t pending, int result);
  void on_connect(uint32_t index, int result);
  void on_close_done(uint32_t index);
  void on_wake();

  void flush_sends();
  void rearm_recvs();
  void drain_inbox();
  void notify_send_waiters();
  void deliver_notices();
  void release_chunks(Connection& connection, uint32_t sent_bytes);
  SendChunk* acquire_chunk();

  const uint32_t index_;
  const RuntimeLimits limits_;
  Service& service_;
  std::vector<Listener> listeners_;

  std::unique_ptr<Ring> ring_;  // io_uring stays in src/runtime
  std::unique_ptr<BufferRing> buffers_;
  TimerWheel wheel_;
  static constexpr uint64_t kTimerOwnerTag = uint64_t{1} << 63;  // owner = tag | Timer*; else a slot
  MpscQueue<Message> inbox_;
  const uint32_t inbox_slots_;             // the queue's capacity
  std::atomic<uint32_t> inbox_reserved_{0};  // slots promised to posts not yet drained
  std::atomic<bool> stop_requested_{false};
  int wake_fd_ = -1;
  uint64_t wake_value_ = 0;
  std::atomic<bool> wake_pending_{false};

  std::vector<Connection> connections_;      // index = direct-descriptor slot
  std::vector<AcceptSlot> accept_slots_;     // listener * accepts_in_flight + slot
  std::vector<PendingConnect> connects_;
  std::vector<uint32_t> free_connects_;
  std::vector<uint32_t> send_list_;          // connections with bytes to send
  std::vector<uint32_t> rearm_list_;         // connections whose multishot recv ended
  std::deque<ConnId> chunk_waiters_;         // refused for want of shard send memory, oldest first (one entry each)
  std::vector<Notice> notices_;
  SendChunk* free_chunks_ = nullptr;
  uint32_t chunks_allocated_ = 0;           // bounded by chunks_max_
  uint32_t chunks_free_ = 0;                // allocated, on free_chunks_
  uint32_t chunks_max_;
  std::vector<std::unique_ptr<SendOp>> free_send_ops_;

  std::array<std::atomic<uint64_t>, static_cast<size_t>(Stat::count)> stats_{};
  uint64_t now_ms_ = 0;
  uint64_t table_full_logged_ms_ = 0;
  uint64_t table_full_unlogged_ = 0;         // connections closed at a full table since the last 30020 line
  uint64_t stop_deadline_ms_ = 0;
  uint32_t accepts_in_flight_ = 0;
  uint32_t connections_busy_ = 0;  // slots not free
  bool stopping_ = false;
  bool aborted_stragglers_ = false;
};

}  // namespace gatehouse::runtime
