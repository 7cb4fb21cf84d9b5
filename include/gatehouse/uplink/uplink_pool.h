// A shard's few pooled uplinks to its parent (a server or a chained gateway):
// mutual TLS, HELLO as a gateway, then every agent session of the shard rides
// one of them as a channel. Frames queued during a loop turn leave in one
// TLS write at the turn's end (large records, few syscalls). A parent that
// stops reading makes the uplink congested, and the gateway stops reading
// from that uplink's agents until it drains: memory stays bounded.
#pragma once

#include <memory>
#include <vector>

#include "gatehouse/config/config_types.h"
#include "gatehouse/net/address_book.h"
#include "gatehouse/net/child_link.h"
#include "gatehouse/net/gate.h"
#include "gatehouse/net/tls_server.h"

namespace gatehouse::uplink {

inline constexpr uint32_t kUplinksMax = 8;  // per shard; each has a reconnect timer

struct UplinkOptions {
  std::vector<config::Peer> parents;      // ordered failover list
  std::shared_ptr<net::AddressBook> addresses;  // parents' addresses, resolved off the shards
  net::ChildOptions child;                // role gateway, cert; parent_name set per parent
  uint32_t uplinks = 1;                   // per shard, 1..kUplinksMax
  uint64_t congested_above_bytes = 4u << 20;  // bytes waiting to go up: pause this uplink's agents
  uint64_t drained_below_bytes = 1u << 20;    // ... and resume them below this
  uint32_t backoff_initial_ms = 200;
  uint32_t backoff_max_ms = 30'000;
  uint32_t welcome_timeout_ms = 10'000;
  uint32_t retry_after_loss_ms = 100;  // an uplink that was up: the same parent again soon
  uint32_t parent_silence_max_ms = 6'000;  // nothing heard this long: the parent is dead, the next one
  uint32_t failback_after_ms = 0;          // on a later parent this long: back to the first once it is up (0: never)
  admin::LinkReport* reports = nullptr;     // `uplinks` of them, this shard's: shown by the admin endpoint
  // Where a reload's timings and buffer bound are read (kReconfigure); nullptr: fixed.
  const config::LiveSettings* live = nullptr;
};

// What the gateway's sessions do with a shard's uplinks (UplinkPool; a fake
// in the role's unit tests).
class Uplinks {
 public:
  virtual ~Uplinks() = default;
  // A welcomed, uncongested uplink (round robin), else a welcomed one, else -1.
  virtual int pick() = 0;
  // Encodes a frame into the uplink's batch for this turn.
  virtual bool queue(uint32_t uplink, const proto::Frame& frame) = 0;
  // A relayed DATA: a new prefix (the uplink's channel), then the payload
  // bytes as they came; the frame is not re-encoded.
  virtual bool queue_data(uint32_t uplink, uint32_t channel, const proto::Data& data) = 0;
  virtual bool up(uint32_t uplink) const = 0;
  // The heartbeat interval the uplink's parent asked for in its HELLO_OK
  // (the management group's); 0 while it is not up.
  virtual uint16_t heartbeat_interval_s(uint32_t uplink) const = 0;
};

class UplinkPool final : public runtime::Service,
                         public runtime::Mailbox,
                         public Uplinks,
                         public net::DialedInParents,
                         private net::ChildLinkEvents {
 public:
  // `role` hears the uplinks' frames, losses and congestion (its on_uplink_*).
  UplinkPool(const UplinkOptions& options, net::SessionHandler& role);
  ~UplinkPool() override;

  // Messages to the pool on its shard: kStart connects; kReconfigure takes
  // the [failover] timings and [uplink] buffer_max_bytes from options.live;
  // kRelist moves every uplink to a new [[parents]] list (the pointer: a
  // net::ParentList the pool then owns).
  static constexpr uint64_t kStart = 0;
  static constexpr uint64_t kReconfigure = 1;
  static constexpr uint64_t kRelist = 2;
  void on_message(runtime::Shard& shard, uint64_t value, void* pointer) override;

  int pick() override;
  bool queue(uint32_t uplink, const proto::Frame& frame) override;
  bool queue_data(uint32_t uplink, uint32_t channel, const proto::Data& data) override;
  bool up(uint32_t uplink) const override;
  uint16_t heartbeat_interval_s(uint32_t uplink) const override;
  // A parent with connect = "parent" dialled us: the connection's source
  // address names which; a free uplink runs over it.
  net::DialIn adopt_parent(runtime::Shard& shard, runtime::ConnId id) override;

  void on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) override;
  void on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) override;
  void on_close(runtime::Shard& shard, runtime::ConnId id, int error) override;
  void on_connect_failed(runtime::Shard& shard, uint64_t context, int error) override;
  void on_send_space(runtime::Shard& shard, runtime::ConnId id) override;
  void on_deadline(runtime::Shard& shard, runtime::ConnId id) override;
  void on_turn_end(runtime::Shard& shard) override;
  void on_stop(runtime::Shard& shard) override;

 private:
  struct Uplink;
  void on_link_up(runtime::Shard& shard, net::ChildLink& link, const proto::HelloOk& hello_ok) override;
  void on_link_frame(runtime::Shard& shard, net::ChildLink& link, const proto::Frame& frame) override;
  void on_link_down(runtime::Shard& shard, net::ChildLink& link, bool was_up) override;
  void on_link_writable(runtime::Shard& shard, net::ChildLink& link) override;
  Uplink& of(const net::ChildLink& link);
  void flush(runtime::Shard& shard, Uplink& uplink);
  uint64_t waiting_bytes(const runtime::Shard& shard, const Uplink& uplink) const;
  void size_send_queue(runtime::Shard& shard, const Uplink& uplink) const;
  static constexpr uint64_t kSendQueueMaxBytes = 1u << 30;  // an uplink socket's queue, whatever the congestion bound

  UplinkOptions options_;  // the congestion bounds change with kReconfigure; the rest is fixed
  net::SessionHandler& role_;
  proto::SpillPool spill_pool_{kUplinksMax};
  std::vector<std::unique_ptr<Uplink>> uplinks_;
  uint32_t next_pick_ = 0;
};

}  // namespace gatehouse::uplink
