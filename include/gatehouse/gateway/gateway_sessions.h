// The gateway role on one shard: every authenticated child (an agent, or a
// chained gateway's channels) becomes a channel on one of the shard's
// uplinks. OPEN carries the agent's identity up; OPEN_OK / OPEN_DENY come
// back as the agent's HELLO_OK / DENY. A chained gateway is admitted the same
// way (an OPEN with role = gateway, for as long as it is connected): the
// management group approves every gateway of a chain, and each hop checks
// that the path a child claims ends with the child itself; DATA goes up, ACK and CREDIT come
// down, each with its channel rewritten; the parent's credit grants are
// counted as they pass, and an agent that sends beyond them loses its own
// channel here, not the shared uplink. The gateway keeps no durable state:
// when an uplink drops, its agents are sent away and resend from the
// server's durable seq on their next session.
#pragma once

#include <array>
#include <string>
#include <unordered_map>

#include "gatehouse/config/live.h"
#include "gatehouse/net/gate.h"
#include "gatehouse/uplink/uplink_pool.h"

namespace gatehouse::gateway {

class GatewaySessions final : public net::SessionHandler, private runtime::TimerHandler {
 public:
  // [health] heartbeat_interval_s (told to children, with the parent's bound) is read from `live`.
  GatewaySessions(std::string name, const config::LiveSettings& live);
  void attach(uplink::Uplinks& uplinks, net::Children& children) {
    uplinks_ = &uplinks;
    gate_ = &children;
  }

  // Children (through the gate).
  void on_authenticated(net::Children& children, runtime::Shard& shard, net::Conn& conn) override;
  void on_frame(net::Children& children, runtime::Shard& shard, net::Conn& conn, const proto::Frame& frame) override;
  void on_closed(net::Children& children, runtime::Shard& shard, net::Conn& conn) override;
  void on_turn_end(net::Children& children, runtime::Shard& shard) override;
  // The report timer goes with the shard's last turns: never armed after this.
  void on_stop(net::Children& children, runtime::Shard& shard) override;

  // Uplinks.
  void on_uplink_frame(runtime::Shard& shard, uint32_t uplink, const proto::Frame& frame) override;
  void on_uplink_down(runtime::Shard& shard, uint32_t uplink) override;
  void on_uplink_congested(runtime::Shard& shard, uint32_t uplink, bool congested) override;

  // Each uplink's HEARTBEATS: the channels heard since the last report (the
  // report timer runs it every quarter heartbeat interval).
  void report_heartbeats(runtime::Shard& shard);

 private:
  struct Route {  // an uplink channel
    runtime::ConnId child;
    uint32_t child_channel = 0;  // 0: the child is the agent itself
  };

  static uint64_t route_key(uint32_t uplink, uint32_t channel) { return uint64_t{uplink} << 32 | channel; }
  bool open_channel(runtime::Shard& shard, net::Conn& child, uint32_t child_channel, proto::Open open);
  void on_child_open(runtime::Shard& shard, net::Conn& child, uint32_t child_channel, const proto::Open& open);
  void refuse_open(runtime::Shard& shard, net::Conn& child, uint32_t child_channel, proto::Reason reason,
                   log::EventId event, const std::string& why);
  void close_channel(net::Conn& child, uint32_t child_channel, bool tell_parent);
  void over_credit(runtime::Shard& shard, net::Conn& child, uint32_t child_channel, const net::RoleChannel& channel);
  void relay_down(runtime::Shard& shard, const Route& route, uint64_t key, const proto::Frame& frame);
  void heard(runtime::Shard& shard, uint32_t uplink, net::RoleChannel& channel);
  void on_child_heartbeats(runtime::Shard& shard, net::Conn& child, const proto::Heartbeats& heartbeats);
  uint16_t child_heartbeat_interval_s(uint32_t uplink) const;
  void pause_if_congested(runtime::Shard& shard, net::Conn& child);
  void unlist_paused(net::Conn& child);
  void on_timer(runtime::Shard& shard, runtime::Timer&) override { report_heartbeats(shard); }

  const std::string name_;
  const config::LiveSettings& live_;
  uplink::Uplinks* uplinks_ = nullptr;
  net::Children* gate_ = nullptr;
  std::unordered_map<uint64_t, Route> routes_;    // (uplink, channel) → child
  uint32_t next_channel_ = 1;
  // Per uplink, the uplink channels heard this round (each once: a channel's
  // heard_round), bounded by the channels open on it.
  std::array<std::vector<uint32_t>, uplink::kUplinksMax> heard_;
  uint64_t heard_round_ = 1;
  // Per uplink: congested (its pool said so), and the children not read
  // until it drains: each paused as it sends while congested (an idle one
  // costs nothing), at most once (its paused_slot), so bounded by the
  // children on that uplink.
  std::array<bool, uplink::kUplinksMax> congested_{};
  std::array<std::vector<runtime::ConnId>, uplink::kUplinksMax> paused_;
  runtime::Timer report_timer_{*this};
  bool stopping_ = false;
};

}  // namespace gatehouse::gateway
