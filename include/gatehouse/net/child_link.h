// The child side of a link, whole: dial the current parent of an ordered
// failover list (its address resolved off the shard), run the ChildSession
// (TLS client, HELLO, Kerberos AUTH) under a welcome deadline, move its
// ciphertext to the socket without ever dropping a piece, answer PINGs, and on
// any loss reconnect: the same parent soon after a session that was up, the
// next one after a failure, a jittered backoff after a whole round failed.
// One component for the agent, a gateway's uplinks and loadgen's agents. It
// also runs over a connection the parent dialled (adopt(): the
// management-server-initiated mode), where reconnecting is the parent's job.
//
// The owning Service forwards its connection calls for this link; a call for
// another connection returns false and changes nothing.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gatehouse/admin/metrics.h"
#include "gatehouse/config/config_types.h"
#include "gatehouse/config/live.h"
#include "gatehouse/log/events.h"
#include "gatehouse/log/log.h"
#include "gatehouse/net/address_book.h"
#include "gatehouse/net/child_session.h"
#include "gatehouse/net/failover.h"
#include "gatehouse/runtime/shard.h"

namespace gatehouse::net {

struct ChildLinkOptions {
  std::vector<config::Peer> parents;     // ordered failover list
  std::shared_ptr<AddressBook> addresses;  // the parents' addresses, by the same index
  ChildOptions child;                    // parent_name is set per parent
  uint64_t connect_context = 0;          // Shard::connect context of this link's connections
  uint32_t backoff_initial_ms = 200;
  uint32_t backoff_max_ms = 30'000;
  uint32_t welcome_timeout_ms = 10'000;  // connected → HELLO_OK
  uint32_t retry_after_loss_ms = 100;    // a session that was up: the same parent again after ~this
  // Nothing heard from a welcomed parent for this long (not even a PONG; we
  // ping a third of it, or each heartbeat if that is sooner): the parent is
  // frozen or black-holed, the link is dead (21006) and the next parent is
  // tried. 0: no such check (pings at the parent's heartbeat only).
  uint32_t parent_silence_max_ms = 0;
  // Welcomed by a later parent for this long: probe the first (a TCP connect
  // off the shard) and, once it takes connections, close this session and go
  // back to it (30053), so load returns where the operator put it. 0: never.
  uint32_t failback_after_ms = 0;
  // A parent's refusal for want of approval: logged with this event (and hint).
  log::EventId not_approved_event = log::EventId::agent_not_approved;
  std::string not_approved_hint;
  // Added to an IPv4 parent's address: loadgen spreads its agents over
  // 127.0.0.1..N, each destination with its own ~28k source ports.
  uint32_t address_offset = 0;
  // False: nothing is logged; the owner hears every failure (loadgen counts
  // them by reason across thousands of links).
  bool log_events = true;
  // Where the link's state is shown to the admin endpoint (nullptr: nowhere).
  admin::LinkReport* report = nullptr;
};

// A reload's failover list, with its addresses (resolved off the shards).
struct ParentList {
  std::vector<config::Peer> parents;
  std::shared_ptr<AddressBook> addresses;
};

class ChildLink;

// What the owner hears, on the link's shard.
class ChildLinkEvents {
 public:
  virtual ~ChildLinkEvents() = default;
  // An agent's HELLO is being sent: the incarnation the session starts in.
  virtual proto::Incarnation hello_incarnation(ChildLink&) { return {}; }
  // HELLO_OK came (the link logged 30050).
  virtual void on_link_up(runtime::Shard&, ChildLink&, const proto::HelloOk&) {}
  // Every frame after HELLO_OK but PING and a GOAWAY or CLOSE of the link
  // itself (channel 0), which the link handles. Views valid during the call.
  virtual void on_link_frame(runtime::Shard& shard, ChildLink& link, const proto::Frame& frame) = 0;
  // The connection is gone; was_up: it had been welcomed.
  virtual void on_link_down(runtime::Shard& shard, ChildLink& link, bool was_up) = 0;
  // There is room to send again (the owner may send what waited).
  virtual void on_link_writable(runtime::Shard&, ChildLink&) {}
  // A connection attempt or a session before HELLO_OK failed (also logged
  // unless log_events is false); the link moves on by itself.
  virtual void on_link_failed(runtime::Shard&, ChildLink&, const ChildFailure&) {}
};

class ChildLink final : private ChildSession::Handler, private runtime::TimerHandler {
 public:
  ChildLink(const ChildLinkOptions& options, proto::SpillPool& spill_pool, ChildLinkEvents& events);
  ~ChildLink() override;
  ChildLink(const ChildLink&) = delete;
  ChildLink& operator=(const ChildLink&) = delete;

  // Dials the current parent now (a failure moves on, as any loss does).
  void start(runtime::Shard& shard);
  // A reload's [failover] timings (on the link's shard): the next backoff,
  // deadline and timer use them; those already armed keep theirs.
  void retime(const config::LiveSettings::FailoverTimings& timings);
  // A reload's failover list (on the link's shard). A session whose parent is
  // still listed (same name and address) goes on; otherwise it is closed once
  // flushed and the link dials the new list's first, as after any loss (what
  // was not acknowledged is sent again there).
  void relist(runtime::Shard& shard, const ParentList& list);
  // Runs the child side over a connection parent `parent` (its index in the
  // list) dialled; when it ends, the link waits to be dialled again (or
  // dials the parents it may dial).
  void adopt(runtime::Shard& shard, runtime::ConnId id, size_t parent);
  // No more reconnects; an open connection is closed once flushed.
  void stop(runtime::Shard& shard);

  // The owner's Service calls, forwarded; false when not this link's.
  bool on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context);
  bool on_connect_failed(runtime::Shard& shard, uint64_t context, int error);
  bool on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes);
  bool on_close(runtime::Shard& shard, runtime::ConnId id);
  bool on_deadline(runtime::Shard& shard, runtime::ConnId id);
  bool on_send_space(runtime::Shard& shard, runtime::ConnId id);

  // After on_link_up: encodes a frame into the record being filled (sealed
  // and queued by flush(), or once a record is full).
  bool send(const proto::Frame& frame);
  bool send_encoded(std::span<const std::byte> frames);
  // Seals what was sent; sealed bytes to the socket, as far as its send queue takes them.
  void flush(runtime::Shard& shard);
  // Closes the connection once flushed; the usual reconnect follows.
  void close(runtime::Shard& shard);
  // Drops the connection now and dials the same parent again at once (a
  // reconnect storm on purpose: loadgen's W3).
  void reconnect_now(runtime::Shard& shard);

  bool welcomed() const { return session_ != nullptr && session_->welcomed(); }
  bool connected() const { return connected_; }
  bool stopping() const { return stopping_; }
  // Sealed bytes the socket's send queue refused (the sink puts the rest
  // there as it is made): send nothing more until on_link_writable.
  bool blocked() const { return waiting_bytes() > 0; }
  runtime::ConnId conn() const { return conn_; }
  // Bytes sealed, not yet in the socket's send queue.
  uint64_t waiting_bytes() const;
  // Bytes sealed, not yet sent: those and the socket's send queue.
  uint64_t unsent_bytes(const runtime::Shard& shard) const;
  const config::Peer& parent() const { return options_.parents[failover_.current()]; }

 private:
  static bool send_to_socket(void* link, std::span<const std::byte> bytes);
  void connect(runtime::Shard& shard);
  void next_parent(runtime::Shard& shard);
  void failback_check(runtime::Shard& shard);
  void on_welcome(const proto::HelloOk& hello_ok) override;
  proto::Incarnation hello_incarnation() override { return events_.hello_incarnation(*this); }
  void on_frame(const proto::Frame& frame) override;
  void on_failure(const ChildFailure& failure) override;
  void on_timer(runtime::Shard& shard, runtime::Timer& timer) override;
  void report(admin::LinkState state);
  void failed(runtime::Shard& shard, log::Level level, const ChildFailure& failure, std::initializer_list<log::Field> fields);

  ChildLinkOptions options_;  // the timings change with retime(), the parents with relist()
  proto::SpillPool& spill_pool_;
  ChildLinkEvents& events_;
  Failover failover_;
  runtime::Timer reconnect_{*this};
  runtime::Timer heartbeat_{*this};
  runtime::Timer failback_{*this};    // on a later parent: time to look at the first again
  static constexpr uint32_t kFailbackProbeWaitMs = 3'000;  // a probe's answer is looked at after this
  uint64_t failback_probe_base_ = 0;  // the first parent's reachable_count when the probe was asked for
  bool failback_probing_ = false;
  bool failing_back_ = false;         // this session closes for a failback: no "lost" warning   // welcomed: a PING every interval the parent asked for (its idle timeout counts on it)
  uint32_t heartbeat_interval_ms_ = 60'000;
  runtime::Shard* shard_ = nullptr;  // while a session runs: the handler calls have no shard
  runtime::ConnId conn_{};
  bool connected_ = false;
  bool adopted_ = false;   // the parent dialled this session: it reconnects, not us
  bool dials_any_;         // some parent is ours to dial (not all say connect = "parent")
  bool stopping_ = false;
  bool failure_heard_ = false;     // this session's failure was reported: its close is no second one
  bool parent_silent_ = false;     // this session was dropped for silence: the next parent, not this one again
  bool parent_stopping_ = false;   // its GOAWAY said shutting_down: the loss is logged at info
  uint64_t heard_at_ms_ = 0;       // the parent's last bytes
  bool reconnect_at_once_ = false;
  std::unique_ptr<ChildSession> session_;
};

}  // namespace gatehouse::net
