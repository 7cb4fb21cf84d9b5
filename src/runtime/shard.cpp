// The shard event loop. Invariants:
//  - a connection's slot is its direct-descriptor index; the kernel cannot
//    hand the index out again until our close_direct completes, and we submit
//    that only when no other operation on the slot is in flight, so a stale
//    completion never reaches a new connection;
//  - every receive buffer goes back to the kernel right after on_data;
//  - every queue and pool is bounded by RuntimeLimits.
#include "gatehouse/runtime/shard.h"

#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <ctime>

#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"
#include "runtime/ring.h"

namespace gatehouse::runtime {
namespace {

thread_local bool t_shard_thread = false;  // this thread runs a shard's loop (post_waiting must not wait here)

constexpr uint32_t kNoIndex = UINT32_MAX;
constexpr uint32_t kGenerationMask = 0xFF'FFFF;  // 24 bits travel in user_data
// Completions handled per loop turn: a burst (thousands of sessions closing
// or arriving at once) is worked off over several turns, each ending with its
// sends flushed, so established sessions are not held for the whole burst.
constexpr unsigned kCqesPerTurnMax = 256;
constexpr uint64_t kTableFullLogIntervalMs = 10'000;  // at most one 30020 line per shard in this time

enum class ConnState : uint8_t { free, connecting, open, draining, closing };

}  // namespace

struct Shard::SendChunk {
  SendChunk* next = nullptr;
  uint32_t begin = 0;  // first unsent byte
  uint32_t end = 0;    // first free byte
  std::byte data[kSendChunkBytes];
};

struct Shard::SendOp {
  msghdr header{};
  iovec iov[kSendIovMax]{};
};

struct Shard::Connection {
  uint32_t generation = 0;
  ConnState state = ConnState::free;
  bool recv_armed = false;
  bool read_paused = false;
  bool send_in_flight = false;
  bool send_listed = false;
  bool rearm_listed = false;
  bool want_send_space = false;
  bool chunk_listed = false;  // in chunk_waiters_ (once, however often refused)
  bool close_submitted = false;
  uint16_t ops_in_flight = 0;
  int close_error = 0;
  uint32_t pending_connect = kNoIndex;
  uint32_t queued_bytes = 0;
  uint32_t in_flight_bytes = 0;  // of the send in flight
  uint32_t send_queue_max_bytes = 0;   // 0: the shard's limit (see set_send_queue_max)
  uint32_t send_space_below_bytes = 0;  // with want_send_space: on_send_space once queued_bytes is at most this
  uint64_t context = 0;
  SendChunk* head = nullptr;
  SendChunk* tail = nullptr;
  std::unique_ptr<SendOp> send_op;
  TimerNode timer;
  PeerAddress peer;
};

struct Shard::PendingConnect {
  PeerAddress address;
  uint64_t context = 0;
  int fd = -1;    // the socket until the ring's table holds it
  int slot = -1;  // in: the socket; out: its direct-descriptor slot (the kernel writes it)
};

struct Shard::AcceptSlot {
  sockaddr_storage address{};
  socklen_t size_bytes = 0;
};

PeerAddress PeerAddress::unmapped() const {
  if (storage.ss_family != AF_INET6) return *this;
  const auto& v6 = reinterpret_cast<const sockaddr_in6&>(storage);
  if (!IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr)) return *this;
  PeerAddress v4;
  auto& in = reinterpret_cast<sockaddr_in&>(v4.storage);
  in.sin_family = AF_INET;
  in.sin_port = v6.sin6_port;
  std::memcpy(&in.sin_addr, &v6.sin6_addr.s6_addr[12], sizeof in.sin_addr);
  v4.size_bytes = sizeof(sockaddr_in);
  return v4;
}

std::string PeerAddress::to_string() const {
  char host[INET6_ADDRSTRLEN] = "?";
  if (storage.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(storage);
    inet_ntop(AF_INET, &v4.sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(v4.sin_port));
  }
  if (storage.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(storage);
    inet_ntop(AF_INET6, &v6.sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(v6.sin6_port));
  }
  return "unknown";
}

const char* to_string(Stat stat) {
  static constexpr const char* kNames[] = {
      "connections_open", "accepted_total", "connected_total", "closed_total",
      "recv_bytes_total", "sent_bytes_total", "recv_enobufs_total", "send_refused_total",
      "table_full_total", "inbox_full_total", "sendmsg_calls_total", "send_partial_total"};
  static_assert(std::size(kNames) == static_cast<size_t>(Stat::count));
  return kNames[static_cast<size_t>(stat)];
}

// ENFILE from the ring is our own table, not the system's file table.
std::string connect_error_text(int error) {
  if (error == -ENFILE) return "this shard's connection table is full ([runtime] connections_per_shard)";
  return std::strerror(-error);
}

Shard::Shard(uint32_t index, const RuntimeLimits& limits, Service& service, std::vector<Listener> listeners)
    : index_(index),
      limits_(limits),
      service_(service),
      listeners_(std::move(listeners)),
      ring_(std::make_unique<Ring>()),
      buffers_(std::make_unique<BufferRing>()),
      wheel_(limits.timer_tick_ms, clock_ms()),
      inbox_(inbox_slots_for(limits)),
      inbox_slots_(inbox_slots_for(limits)),
      connections_(limits.connections_per_shard),
      accept_slots_(listeners_.size() * limits.accepts_in_flight),
      connects_(limits.connects_in_flight_max),
      chunks_max_(limits.send_buffer_max_bytes_per_shard / kSendChunkBytes) {
  free_connects_.reserve(limits.connects_in_flight_max);
  for (uint32_t i = limits.connects_in_flight_max; i > 0; --i) free_connects_.push_back(i - 1);
  send_list_.reserve(limits.connections_per_shard);
  rearm_list_.reserve(limits.connections_per_shard);
  for (uint32_t i = 0; i < connections_.size(); ++i) connections_[i].timer.owner = i;
}

Shard::~Shard() {
  for (Connection& connection : connections_) {
    while (connection.head != nullptr) {
      SendChunk* next = connection.head->next;
      delete connection.head;
      connection.head = next;
    }
  }
  while (free_chunks_ != nullptr) {
    SendChunk* next = free_chunks_->next;
    delete free_chunks_;
    free_chunks_ = next;
  }
  for (const Listener& listener : listeners_) {
    if (listener.fd >= 0) ::close(listener.fd);
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

// One slot per connection (each may have an auth step out whose answer comes
// back here) plus the configured extra, as a power of two.
uint32_t Shard::inbox_slots_for(const RuntimeLimits& limits) {
  return std::bit_ceil(std::max<uint32_t>(2, limits.connections_per_shard + limits.inbox_capacity));
}

const char* Shard::ring_mode() const { return ring_->mode(); }

uint64_t Shard::user_data(Op op, uint32_t generation, uint32_t index) {
  return (uint64_t{static_cast<uint8_t>(op)} << 56) | (uint64_t{generation & kGenerationMask} << 32) | index;
}

uint64_t Shard::clock_ms() const {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000 + static_cast<uint64_t>(now.tv_nsec) / 1'000'000;
}

void Shard::bump(Stat stat, uint64_t amount) {
  auto& counter = stats_[static_cast<size_t>(stat)];
  counter.store(counter.load(std::memory_order_relaxed) + amount, std::memory_order_relaxed);
}

void Shard::bump_down(Stat stat) {
  auto& counter = stats_[static_cast<size_t>(stat)];
  counter.store(counter.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

ConnId Shard::id_of(uint32_t index) const { return {index, connections_[index].generation}; }

Shard::Connection* Shard::live(ConnId id) {
  if (id.index >= connections_.size()) return nullptr;
  Connection& connection = connections_[id.index];
  if (connection.generation != id.generation) return nullptr;
  return connection.state == ConnState::open || connection.state == ConnState::draining ? &connection : nullptr;
}

const Shard::Connection* Shard::live(ConnId id) const { return const_cast<Shard*>(this)->live(id); }

bool Shard::alive(ConnId id) const { return live(id) != nullptr; }

const PeerAddress& Shard::peer(ConnId id) const {
  GH_INVARIANT(id.index < connections_.size());
  return connections_[id.index].peer;
}

bool Shard::init(std::string& why) {
  const uint32_t cq_entries = std::min<uint32_t>(65'536, std::max<uint32_t>(8'192, 2 * limits_.connections_per_shard));
  if (!ring_->init(4'096, cq_entries, limits_.connections_per_shard, why)) return false;
  if (!buffers_->init(ring_->get(), 0, limits_.recv_buffers_per_shard, limits_.recv_buffer_size_bytes, why)) return false;
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    why = std::string("eventfd: ") + std::strerror(errno);
    return false;
  }
  now_ms_ = clock_ms();
  arm_wake();
  for (uint32_t l = 0; l < listeners_.size(); ++l) {
    for (uint32_t s = 0; s < limits_.accepts_in_flight; ++s) arm_accept(l, s);
  }
  io_uring_submit(ring_->get());
  return true;
}

// ---- submissions ------------------------------------------------------------

void Shard::arm_accept(uint32_t listener, uint32_t slot) {
  const uint32_t tag = listener * limits_.accepts_in_flight + slot;
  AcceptSlot& accept = accept_slots_[tag];
  accept.size_bytes = sizeof accept.address;
  io_uring_sqe* sqe = ring_->sqe();
  // liburing 2.3 stores file_index + 1, so "allocate a slot" is ALLOC - 1
  // (as its own multishot_accept_direct does); ALLOC itself would mean "no
  // direct descriptor" and hand back a process fd.
  io_uring_prep_accept_direct(sqe, listeners_[listener].fd, reinterpret_cast<sockaddr*>(&accept.address),
                              &accept.size_bytes, 0, IORING_FILE_INDEX_ALLOC - 1);
  io_uring_sqe_set_data64(sqe, user_data(Op::accept, 0, tag));
  ++accepts_in_flight_;
}

void Shard::arm_recv(uint32_t index) {
  Connection& c = connections_[index];
  GH_INVARIANT(!c.recv_armed && c.state == ConnState::open);
  io_uring_sqe* sqe = ring_->sqe();
  io_uring_prep_recv_multishot(sqe, static_cast<int>(index), nullptr, 0, 0);
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->buf_group = buffers_->group_id();
  io_uring_sqe_set_data64(sqe, user_data(Op::recv, c.generation, index));
  c.recv_armed = true;
  ++c.ops_in_flight;
}

void Shard::arm_wake() {
  io_uring_sqe* sqe = ring_->sqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof wake_value_, 0);
  io_uring_sqe_set_data64(sqe, user_data(Op::wake, 0, 0));
}

void Shard::submit_cancel(uint64_t target, uint32_t index) {
  io_uring_sqe* sqe = ring_->sqe();
  io_uring_prep_cancel64(sqe, target, 0);
  const uint32_t generation = index == kNoIndex ? 0 : connections_[index].generation;
  io_uring_sqe_set_data64(sqe, user_data(Op::cancel, generation, index));
  if (index != kNoIndex) ++connections_[index].ops_in_flight;
}

void Shard::submit_send(uint32_t index) {
  Connection& c = connections_[index];
  if (c.queued_bytes == 0 || c.send_in_flight) return;
  if (c.state != ConnState::open && c.state != ConnState::draining) return;
  io_uring_sqe* sqe = ring_->sqe();
  if (c.head->next == nullptr) {
    c.in_flight_bytes = c.head->end - c.head->begin;
    io_uring_prep_send(sqe, static_cast<int>(index), c.head->data + c.head->begin, c.in_flight_bytes, MSG_NOSIGNAL);
  } else {
    // Gathered write: up to kSendIovMax chunks, many frames, one call.
    if (!free_send_ops_.empty()) {
      c.send_op = std::move(free_send_ops_.back());
      free_send_ops_.pop_back();
    } else {
      c.send_op = std::make_unique<SendOp>();
    }
    uint32_t count = 0;
    c.in_flight_bytes = 0;
    for (SendChunk* chunk = c.head; chunk != nullptr && count < kSendIovMax; chunk = chunk->next) {
      c.send_op->iov[count++] = {chunk->data + chunk->begin, chunk->end - chunk->begin};
      c.in_flight_bytes += chunk->end - chunk->begin;
    }
    c.send_op->header.msg_iov = c.send_op->iov;
    c.send_op->header.msg_iovlen = count;
    io_uring_prep_sendmsg(sqe, static_cast<int>(index), &c.send_op->header, MSG_NOSIGNAL);
  }
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, user_data(Op::send, c.generation, index));
  c.send_in_flight = true;
  ++c.ops_in_flight;
  bump(Stat::sendmsg_calls_total);
}

void Shard::begin_close(uint32_t index, int error, bool notify) {
  Connection& c = connections_[index];
  if (c.state == ConnState::closing || c.state == ConnState::free) return;
  const bool was_connecting = c.state == ConnState::connecting;
  c.state = ConnState::closing;
  c.close_error = error;
  wheel_.cancel(c.timer);
  if (was_connecting) {
    submit_cancel(user_data(Op::connect, c.generation, index), index);
    notices_.push_back({Notice::connect_failed, id_of(index), c.context, error == 0 ? -ECANCELED : error});
  } else {
    // A send in flight is ended by a shutdown, the multishot recv by a cancel;
    // then close. Without either (the peer closed or reset: the usual case in
    // a reconnect storm) close at once: a shutdown runs on io_uring's worker
    // threads, and thousands of them queue there.
    if (c.send_in_flight) {
      io_uring_sqe* sqe = ring_->sqe();
      io_uring_prep_shutdown(sqe, static_cast<int>(index), SHUT_RDWR);
      sqe->flags |= IOSQE_FIXED_FILE;
      io_uring_sqe_set_data64(sqe, user_data(Op::shutdown, c.generation, index));
      ++c.ops_in_flight;
    }
    if (c.recv_armed) submit_cancel(user_data(Op::recv, c.generation, index), index);
    bump_down(Stat::connections_open);
    if (notify) notices_.push_back({Notice::closed, id_of(index), c.context, error});
  }
  maybe_finish_close(index);
}

void Shard::maybe_finish_close(uint32_t index) {
  Connection& c = connections_[index];
  if (c.state != ConnState::closing || c.ops_in_flight != 0 || c.close_submitted) return;
  io_uring_sqe* sqe = ring_->sqe();
  io_uring_prep_close_direct(sqe, index);
  io_uring_sqe_set_data64(sqe, user_data(Op::close, c.generation, index));
  c.close_submitted = true;
  ++c.ops_in_flight;
}

// ---- public operations (shard thread) ----------------------------------------

bool Shard::connect(const PeerAddress& address, uint64_t context) {
  if (free_connects_.empty() || stopping_) return false;
  const uint32_t pending = free_connects_.back();
  free_connects_.pop_back();
  // A plain socket first, for TCP_NODELAY (accepted sockets inherit it from
  // the listener; setting it on a direct descriptor needs Linux 6.7), then
  // moved into the ring's table.
  const int fd = socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    free_connects_.push_back(pending);
    return false;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  connects_[pending] = {address, context, fd, fd};
  io_uring_sqe* sqe = ring_->sqe();
  io_uring_prep_files_update(sqe, &connects_[pending].slot, 1, IORING_FILE_INDEX_ALLOC);
  io_uring_sqe_set_data64(sqe, user_data(Op::socket, 0, pending));
  return true;
}

uint32_t Shard::send_queue_max(const Connection& c) const {
  return c.send_queue_max_bytes != 0 ? c.send_queue_max_bytes : limits_.send_queue_max_bytes;
}

// on_send_space once at most `below_bytes` are queued; of two marks asked
// for, the higher (the sooner call) holds.
void Shard::want_send_space(Connection& c, uint32_t below_bytes) {
  c.send_space_below_bytes = c.want_send_space ? std::max(c.send_space_below_bytes, below_bytes) : below_bytes;
  c.want_send_space = true;
}

// A refused sender is called back once half its queue is free.
void Shard::refuse_send(Connection& c) {
  bump(Stat::send_refused_total);
  want_send_space(c, send_queue_max(c) / 2);
}

bool Shard::send(ConnId id, std::span<const std::byte> bytes) {
  Connection* c = live(id);
  if (c == nullptr || c->state != ConnState::open) return false;
  if (c->queued_bytes + bytes.size() > send_queue_max(*c)) {
    refuse_send(*c);
    return false;
  }
  const size_t tail_free = c->tail != nullptr ? kSendChunkBytes - c->tail->end : 0;
  const size_t chunks_needed = bytes.size() > tail_free ? (bytes.size() - tail_free + kSendChunkBytes - 1) / kSendChunkBytes : 0;
  if (chunks_needed > chunks_max_ - chunks_allocated_ + chunks_free_) {
    refuse_send(*c);
    if (!c->chunk_listed) {
      c->chunk_listed = true;
      chunk_waiters_.push_back(id);
    }
    return false;
  }
  while (!bytes.empty()) {
    if (c->tail == nullptr || c->tail->end == kSendChunkBytes) {
      SendChunk* chunk = acquire_chunk();
      if (c->tail != nullptr) c->tail->next = chunk; else c->head = chunk;
      c->tail = chunk;
    }
    const size_t take = std::min<size_t>(bytes.size(), kSendChunkBytes - c->tail->end);
    std::memcpy(c->tail->data + c->tail->end, bytes.data(), take);
    c->tail->end += static_cast<uint32_t>(take);
    c->queued_bytes += static_cast<uint32_t>(take);
    bytes = bytes.subspan(take);
  }
  if (!c->send_listed) {
    c->send_listed = true;
    send_list_.push_back(id.index);
  }
  return true;
}

uint32_t Shard::send_queued_bytes(ConnId id) const {
  const Connection* c = live(id);
  return c != nullptr ? c->queued_bytes : 0;
}

void Shard::set_send_queue_max(ConnId id, uint32_t max_bytes) {
  GH_INVARIANT(max_bytes >= kSendChunkBytes);  // a sealed piece of up to a chunk must fit an empty queue
  if (Connection* c = live(id)) c->send_queue_max_bytes = max_bytes;
}

bool Shard::notify_send_space(ConnId id, uint32_t below_bytes) {
  Connection* c = live(id);
  if (c == nullptr || c->state != ConnState::open || c->queued_bytes <= below_bytes) return false;
  want_send_space(*c, below_bytes);
  return true;
}

void Shard::close(ConnId id) {
  Connection* c = live(id);
  if (c == nullptr) return;
  if (c->queued_bytes == 0 && !c->send_in_flight) {
    begin_close(id.index, 0);
  } else {
    c->state = ConnState::draining;  // closes when the queue is sent
  }
}

void Shard::abort(ConnId id) {
  if (live(id) != nullptr) begin_close(id.index, 0);
}

void Shard::pause_reading(ConnId id) {
  Connection* c = live(id);
  if (c == nullptr || c->read_paused) return;
  c->read_paused = true;
  if (c->recv_armed) submit_cancel(user_data(Op::recv, c->generation, id.index), id.index);
}

void Shard::resume_reading(ConnId id) {
  Connection* c = live(id);
  if (c == nullptr || !c->read_paused) return;
  c->read_paused = false;
  if (!c->recv_armed && !c->rearm_listed) {
    c->rearm_listed = true;
    rearm_list_.push_back(id.index);
  }
}

void Shard::set_deadline(ConnId id, uint32_t timeout_ms) {
  if (Connection* c = live(id)) wheel_.schedule(c->timer, clock_ms(), timeout_ms);
}

void Shard::clear_deadline(ConnId id) {
  if (Connection* c = live(id)) wheel_.cancel(c->timer);
}

void Shard::set_timer(Timer& timer, uint32_t delay_ms) {
  const auto address = reinterpret_cast<uint64_t>(&timer);
  GH_INVARIANT((address & kTimerOwnerTag) == 0);
  timer.node.owner = kTimerOwnerTag | address;
  wheel_.schedule(timer.node, clock_ms(), delay_ms);
}

void Shard::cancel_timer(Timer& timer) { wheel_.cancel(timer.node); }

// ---- any thread ---------------------------------------------------------------

bool Shard::reserve_post() {
  // Every message holds a slot from before its push until it is drained, so
  // a push never finds the queue full.
  if (inbox_reserved_.fetch_add(1, std::memory_order_acq_rel) >= inbox_slots_) {
    inbox_reserved_.fetch_sub(1, std::memory_order_acq_rel);
    stats_[static_cast<size_t>(Stat::inbox_full_total)].fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void Shard::cancel_reservation() { inbox_reserved_.fetch_sub(1, std::memory_order_acq_rel); }

void Shard::post_reserved(const Message& message) {
  GH_INVARIANT(message.to != nullptr);
  GH_INVARIANT(inbox_.push(message));
  wake();
}

bool Shard::post(const Message& message) {
  if (!reserve_post()) return false;
  post_reserved(message);
  return true;
}

void Shard::post_waiting(const Message& message) {
  GH_INVARIANT(!t_shard_thread);  // a shard waiting on an inbox could wait on itself
  while (!post(message)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// One eventfd write per wake-up, not per message.
void Shard::wake() {
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }
}

void Shard::request_stop() {
  stop_requested_.store(true, std::memory_order_release);
  wake();
}

// ---- completions ---------------------------------------------------------------

void Shard::dispatch(const io_uring_cqe& cqe) {
  const uint64_t data = cqe.user_data;
  const auto op = static_cast<Op>(data >> 56);
  const auto index = static_cast<uint32_t>(data);
  GH_INVARIANT(index == kNoIndex || op == Op::accept || op == Op::socket || op == Op::wake ||
         ((data >> 32) & kGenerationMask) == (connections_[index].generation & kGenerationMask));
  switch (op) {
    case Op::accept: on_accept(index, cqe.res); break;
    case Op::recv: on_recv(index, cqe.res, cqe.flags); break;
    case Op::send: on_send(index, cqe.res); break;
    case Op::socket: on_socket(index, cqe.res); break;
    case Op::connect: on_connect(index, cqe.res); break;
    case Op::close: on_close_done(index); break;
    case Op::wake: on_wake(); break;
    case Op::shutdown:
    case Op::cancel:
      if (index == kNoIndex) break;  // a listener's accepts being cancelled
      --connections_[index].ops_in_flight;
      maybe_finish_close(index);
      break;
  }
}

void Shard::on_accept(uint32_t tag, int result) {
  --accepts_in_flight_;
  const uint32_t listener = tag / limits_.accepts_in_flight;
  if (result >= 0) {
    const auto index = static_cast<uint32_t>(result);
    GH_INVARIANT(index < connections_.size() && connections_[index].state == ConnState::free);
    Connection& c = connections_[index];
    c.state = ConnState::open;
    c.context = listeners_[listener].context;
    c.peer.storage = accept_slots_[tag].address;
    c.peer.size_bytes = accept_slots_[tag].size_bytes;
    ++connections_busy_;
    bump(Stat::accepted_total);
    bump(Stat::connections_open);
    if (stopping_) {
      begin_close(index, -ECONNABORTED, false);  // the service never saw it
    } else {
      service_.on_open(*this, id_of(index), c.context);
      if (c.state == ConnState::open && !c.read_paused) arm_recv(index);
    }
  } else if (result == -ENFILE) {
    // The direct-descriptor table is full: the kernel closed the socket it
    // accepted, so the client sees its connection end before TLS and retries
    // (elsewhere, or later) instead of hanging in the backlog. One line per
    // 10 s per shard says how many.
    bump(Stat::table_full_total);
    ++table_full_unlogged_;
    if (now_ms_ >= table_full_logged_ms_ + kTableFullLogIntervalMs) {
      table_full_logged_ms_ = now_ms_;
      log::emit(log::Level::warning, log::EventId::connection_table_full,
                "connection table full: new connections are closed before TLS; raise [runtime] "
                "connections_per_shard (bounded by RLIMIT_NOFILE) or add shards",
                {{"shard", index_}, {"connections_per_shard", limits_.connections_per_shard},
                 {"closed", table_full_unlogged_}});
      table_full_unlogged_ = 0;
    }
  }
  if (!stopping_ && result != -ECANCELED) arm_accept(listener, tag % limits_.accepts_in_flight);
}

void Shard::on_recv(uint32_t index, int result, uint32_t flags) {
  Connection& c = connections_[index];
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (!more) {
    c.recv_armed = false;
    --c.ops_in_flight;
  }
  if (result > 0) {
    GH_INVARIANT(flags & IORING_CQE_F_BUFFER);
    const auto buffer_id = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    bump(Stat::recv_bytes_total, static_cast<uint64_t>(result));
    if (c.state == ConnState::open) {
      service_.on_data(*this, id_of(index), {buffers_->buffer(buffer_id), static_cast<size_t>(result)});
    }
    buffers_->give_back(buffer_id);
  } else if (result == 0) {
    begin_close(index, 0);  // orderly EOF
  } else if (result == -ENOBUFS) {
    bump(Stat::recv_enobufs_total);  // not EOF: the bytes wait in the socket
  } else if (result != -ECANCELED) {
    begin_close(index, result);
  }
  if (!more && c.state == ConnState::open && !c.read_paused && !c.rearm_listed) {
    c.rearm_listed = true;  // after this batch's buffers are given back
    rearm_list_.push_back(index);
  }
  maybe_finish_close(index);
}

void Shard::on_send(uint32_t index, int result) {
  Connection& c = connections_[index];
  --c.ops_in_flight;
  c.send_in_flight = false;
  if (c.send_op != nullptr) free_send_ops_.push_back(std::move(c.send_op));
  if (c.state == ConnState::closing) {
    maybe_finish_close(index);
    return;
  }
  if (result < 0) {
    begin_close(index, result);
    return;
  }
  bump(Stat::sent_bytes_total, static_cast<uint64_t>(result));
  if (static_cast<uint32_t>(result) < c.in_flight_bytes) bump(Stat::send_partial_total);
  release_chunks(c, static_cast<uint32_t>(result));
  if (c.queued_bytes > 0 && !c.send_listed) {
    c.send_listed = true;  // partial write, or more queued meanwhile
    send_list_.push_back(index);
  }
  if (c.state == ConnState::draining && c.queued_bytes == 0) {
    begin_close(index, 0);
  } else if (c.want_send_space && c.queued_bytes <= c.send_space_below_bytes) {
    c.want_send_space = false;
    service_.on_send_space(*this, id_of(index));
  }
}

void Shard::on_socket(uint32_t pending, int result) {
  const PendingConnect request = connects_[pending];
  free_connects_.push_back(pending);
  ::close(request.fd);  // the table holds its own reference
  if (result < 1) {
    if (result == -ENFILE) bump(Stat::table_full_total);
    notices_.push_back({Notice::connect_failed, {}, request.context, result < 0 ? result : -ENFILE});
    return;
  }
  const auto index = static_cast<uint32_t>(request.slot);
  GH_INVARIANT(index < connections_.size() && connections_[index].state == ConnState::free);
  Connection& c = connections_[index];
  c.state = ConnState::connecting;
  c.context = request.context;
  c.peer = request.address;
  ++connections_busy_;
  io_uring_sqe* sqe = ring_->sqe();
  io_uring_prep_connect(sqe, static_cast<int>(index), reinterpret_cast<const sockaddr*>(&c.peer.storage),
                        c.peer.size_bytes);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, user_data(Op::connect, c.generation, index));
  ++c.ops_in_flight;
  if (stopping_) begin_close(index, -ECANCELED);
}

void Shard::on_connect(uint32_t index, int result) {
  Connection& c = connections_[index];
  --c.ops_in_flight;
  if (c.state == ConnState::closing) {
    maybe_finish_close(index);
    return;
  }
  if (result < 0) {
    begin_close(index, result);  // reports connect_failed
    return;
  }
  c.state = ConnState::open;
  bump(Stat::connected_total);
  bump(Stat::connections_open);
  service_.on_open(*this, id_of(index), c.context);
  if (c.state == ConnState::open && !c.read_paused) arm_recv(index);
}

void Shard::on_close_done(uint32_t index) {
  Connection& c = connections_[index];
  --c.ops_in_flight;
  GH_INVARIANT(c.ops_in_flight == 0);
  release_chunks(c, c.queued_bytes);
  const uint32_t next_generation = c.generation + 1;
  c.~Connection();
  new (&c) Connection();
  c.generation = next_generation;
  c.timer.owner = index;
  --connections_busy_;
  bump(Stat::closed_total);
}

void Shard::on_wake() {
  wake_pending_.store(false, std::memory_order_release);
  arm_wake();  // messages are drained once per loop turn
}

// ---- loop -----------------------------------------------------------------------

Shard::SendChunk* Shard::acquire_chunk() {
  SendChunk* chunk = free_chunks_;
  if (chunk != nullptr) {
    free_chunks_ = chunk->next;
    --chunks_free_;
  } else {
    chunk = new SendChunk;
    ++chunks_allocated_;
  }
  chunk->next = nullptr;
  chunk->begin = chunk->end = 0;
  return chunk;
}

void Shard::release_chunks(Connection& c, uint32_t sent_bytes) {
  c.queued_bytes -= sent_bytes;
  while (c.head != nullptr) {
    SendChunk* chunk = c.head;
    const uint32_t take = std::min(sent_bytes, chunk->end - chunk->begin);
    chunk->begin += take;
    sent_bytes -= take;
    if (chunk->begin < chunk->end) break;
    c.head = chunk->next;
    if (c.tail == chunk) c.tail = nullptr;
    chunk->next = free_chunks_;
    free_chunks_ = chunk;
    ++chunks_free_;
  }
  GH_INVARIANT(sent_bytes == 0);
}

void Shard::flush_sends() {
  for (uint32_t index : send_list_) {
    connections_[index].send_listed = false;
    submit_send(index);
  }
  send_list_.clear();
}

void Shard::rearm_recvs() {
  for (uint32_t index : rearm_list_) {
    Connection& c = connections_[index];
    c.rearm_listed = false;
    if (c.state == ConnState::open && !c.read_paused && !c.recv_armed) arm_recv(index);
  }
  rearm_list_.clear();
}

void Shard::drain_inbox() {
  Message message;
  while (inbox_.pop(message)) {
    inbox_reserved_.fetch_sub(1, std::memory_order_acq_rel);
    message.to->on_message(*this, message.value, message.pointer);
  }
  if (!stopping_ && stop_requested_.load(std::memory_order_acquire)) begin_stop();
}

// In the order they were refused, while there is send memory: each may take
// some and the rest wait their turn. (Waking every waiter whenever one chunk
// was free made each turn cost all of them: 17,500 sessions refused at once
// stalled a shard for good.) A waiter refused again goes to the back.
void Shard::notify_send_waiters() {
  for (size_t turns = chunk_waiters_.size(); turns > 0 && chunks_free_ + (chunks_max_ - chunks_allocated_) > 0; --turns) {
    const ConnId id = chunk_waiters_.front();
    chunk_waiters_.pop_front();
    Connection* c = live(id);
    if (c == nullptr) continue;
    c->chunk_listed = false;
    if (!c->want_send_space) continue;
    c->want_send_space = false;
    service_.on_send_space(*this, id);
  }
}

void Shard::deliver_notices() {
  while (!notices_.empty()) {
    std::vector<Notice> batch;
    batch.swap(notices_);
    for (const Notice& notice : batch) {
      if (notice.kind == Notice::closed) {
        service_.on_close(*this, notice.id, notice.error);
      } else {
        service_.on_connect_failed(*this, notice.context, notice.error);
      }
    }
  }
}

void Shard::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  stop_deadline_ms_ = now_ms_ + limits_.shutdown_timeout_ms;
  for (const Listener& listener : listeners_) {
    io_uring_sqe* sqe = ring_->sqe();
    io_uring_prep_cancel_fd(sqe, listener.fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, user_data(Op::cancel, 0, kNoIndex));
  }
  service_.on_stop(*this);
}

bool Shard::finished() {
  if (!stopping_) return false;
  if (now_ms_ >= stop_deadline_ms_ && !aborted_stragglers_) {
    aborted_stragglers_ = true;
    for (uint32_t i = 0; i < connections_.size(); ++i) {
      if (connections_[i].state != ConnState::free) begin_close(i, -ETIMEDOUT);
    }
  }
  return connections_busy_ == 0 && accepts_in_flight_ == 0 && free_connects_.size() == connects_.size() &&
         notices_.empty() && service_.idle();
}

void Shard::run() {
  t_shard_thread = true;
  io_uring* ring = ring_->get();
  __kernel_timespec tick{0, static_cast<long long>(limits_.timer_tick_ms) * 1'000'000};
  while (!finished()) {
    flush_sends();
    rearm_recvs();
    io_uring_cqe* cqe = nullptr;
    io_uring_submit_and_wait_timeout(ring, &cqe, 1, &tick, nullptr);
    unsigned head = 0;
    unsigned count = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      dispatch(*cqe);
      if (++count == kCqesPerTurnMax) break;  // the rest next turn, after this turn's sends go out
    }
    io_uring_cq_advance(ring, count);
    buffers_->publish();
    now_ms_ = clock_ms();
    drain_inbox();
    wheel_.advance(now_ms_, [this](uint64_t owner) {
      if (owner & kTimerOwnerTag) {
        Timer& timer = *reinterpret_cast<Timer*>(owner & ~kTimerOwnerTag);
        timer.handler->on_timer(*this, timer);
        return;
      }
      const auto i = static_cast<uint32_t>(owner);
      if (connections_[i].state == ConnState::open || connections_[i].state == ConnState::draining) {
        service_.on_deadline(*this, id_of(i));
      }
    });
    notify_send_waiters();
    deliver_notices();
    service_.on_turn_end(*this);
  }
  io_uring_submit(ring);
}

}  // namespace gatehouse::runtime
