// Fakes of what the roles need from the transport (net::Children) and from
// the uplinks (uplink::Uplinks): they record what a role asks for. Shared by
// the roles' unit tests and the frame-sequence fuzzer.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gatehouse/gateway/gateway_sessions.h"
#include "gatehouse/net/children.h"
#include "gatehouse/proto/codec.h"
#include "gatehouse/runtime/shard.h"
#include "gatehouse/uplink/uplink_pool.h"

namespace gatehouse::testing {

// One frame as the fakes keep it (frames hold views; these are copies).
struct Recorded {
  proto::FrameType type{};
  uint32_t channel = 0;
  std::string name;  // HELLO_OK's, OPEN's agent
  std::vector<std::string> hops;
  proto::Reason reason = proto::Reason::normal;
  uint64_t seq = 0;  // DATA's, or HELLO_OK's last durable seq
  uint32_t credit = 0;
  std::string payload;
  uint16_t interval_s = 0;          // HELLO_OK's heartbeat interval
  std::vector<uint32_t> channels;   // HEARTBEATS'
};

inline Recorded record(const proto::Frame& frame) {
  Recorded r;
  r.type = proto::frame_type(frame.body);
  r.channel = frame.channel;
  if (const auto* hello_ok = std::get_if<proto::HelloOk>(&frame.body)) {
    r.name = hello_ok->name;
    r.seq = hello_ok->last_durable_seq;
    r.credit = hello_ok->credit_bytes;
    r.interval_s = hello_ok->heartbeat_interval_s;
  } else if (const auto* heartbeats = std::get_if<proto::Heartbeats>(&frame.body)) {
    for (size_t i = 0; i < heartbeats->channels.size() / 4; ++i) r.channels.push_back(proto::heartbeat_channel(*heartbeats, i));
  } else if (const auto* open = std::get_if<proto::Open>(&frame.body)) {
    r.name = open->name;
    for (uint8_t i = 0; i < open->hop_count; ++i) r.hops.emplace_back(open->hops[i]);
  } else if (const auto* deny = std::get_if<proto::OpenDeny>(&frame.body)) {
    r.reason = deny->reason;
  } else if (const auto* go_away = std::get_if<proto::GoAway>(&frame.body)) {
    r.reason = go_away->reason;
  } else if (const auto* close = std::get_if<proto::Close>(&frame.body)) {
    r.reason = close->reason;
  } else if (const auto* data = std::get_if<proto::Data>(&frame.body)) {
    r.seq = data->seq;
    r.payload.assign(reinterpret_cast<const char*>(data->payload.data()), data->payload.size());
  } else if (const auto* credit = std::get_if<proto::Credit>(&frame.body)) {
    r.credit = credit->credit_bytes;
  }
  return r;
}

// The listener's records and what the gate was asked to do with them.
struct FakeChildren final : net::Children {
  bool send(runtime::Shard&, net::Conn& conn, const proto::Frame& frame) override {
    sent[conn.id.index].push_back(record(frame));
    return true;
  }
  void deny(runtime::Shard&, net::Conn& conn, proto::Reason reason, log::EventId, const std::string&,
            const std::string&) override {
    denied[conn.id.index] = reason;
    conn.stage = net::Stage::closing;
  }
  void close(runtime::Shard&, net::Conn& conn) override {
    closed.push_back(conn.id.index);
    conn.stage = net::Stage::closing;
  }
  void set_reading(runtime::Shard&, net::Conn& conn, bool on) override { reading[conn.id.index] = on; }
  net::Conn* find(runtime::ConnId id) override {
    auto found = conns.find(id.index);
    return found != conns.end() && found->second.id == id && found->second.gate.role_knows ? &found->second : nullptr;
  }
  void for_each(const std::function<void(net::Conn&)>& visit) override {
    for (auto& [slot, conn] : conns) {
      if (conn.gate.role_knows) visit(conn);
    }
  }

  // A new authenticated session in `slot` (a new generation), as the gate hands it to the role.
  net::Conn& admit(uint32_t slot, const net::Identity& identity) {
    net::Conn& conn = conns[slot];
    const uint32_t generation = conn.id.generation + 1;
    conn = net::Conn{};
    conn.id = {slot, generation};
    conn.stage = net::Stage::authenticated;
    conn.gate.identity = identity;
    conn.gate.role_knows = true;
    return conn;
  }
  // The gate's part of a close: the record goes after the role heard on_closed.
  void forget(uint32_t slot) { conns[slot].gate.role_knows = false; }

  std::map<uint32_t, net::Conn> conns;              // by connection slot
  std::map<uint32_t, std::vector<Recorded>> sent;  // by connection slot
  std::map<uint32_t, proto::Reason> denied;
  std::vector<uint32_t> closed;
  std::map<uint32_t, bool> reading;
};

struct FakeUplinks final : uplink::Uplinks {
  int pick() override {
    for (uint32_t i = 0; i < up_.size(); ++i) {
      if (up_[i]) return static_cast<int>(i);
    }
    return -1;
  }
  bool queue(uint32_t uplink, const proto::Frame& frame) override {
    if (!up_[uplink]) return false;
    queued[uplink].push_back(record(frame));
    return true;
  }
  bool queue_data(uint32_t uplink, uint32_t channel, const proto::Data& data) override {
    return queue(uplink, {channel, data});
  }
  bool up(uint32_t uplink) const override { return up_[uplink]; }
  uint16_t heartbeat_interval_s(uint32_t uplink) const override { return up_[uplink] ? parent_heartbeat_s : 0; }

  std::vector<bool> up_ = {true, true};
  uint16_t parent_heartbeat_s = 60;
  std::map<uint32_t, std::vector<Recorded>> queued;  // by uplink
};

struct IdleService final : runtime::Service {
  void on_open(runtime::Shard&, runtime::ConnId, uint64_t) override {}
  void on_data(runtime::Shard&, runtime::ConnId, std::span<const std::byte>) override {}
  void on_close(runtime::Shard&, runtime::ConnId, int) override {}
  void on_connect_failed(runtime::Shard&, uint64_t, int) override {}
};

inline runtime::RuntimeLimits small_limits() {
  runtime::RuntimeLimits limits;
  limits.connections_per_shard = 64;
  return limits;
}

// A shard that never runs: roles only pass it through. One per process
// (a fuzzer makes thousands of roles a second).
inline runtime::Shard& passive_shard() {
  static IdleService service;
  static runtime::Shard shard(0, small_limits(), service, {});
  return shard;
}

// GatewaySessions between the fakes.
struct GatewayUnderTest {
  GatewayUnderTest() : live(config::Config{}), sessions("gw1.example.test", live) { sessions.attach(uplinks, children); }
  ~GatewayUnderTest() { sessions.on_stop(children, shard); }  // its heartbeat timer leaves the shared shard
  void authenticate(uint32_t slot, const net::Identity& identity) {
    sessions.on_authenticated(children, shard, children.admit(slot, identity));
  }
  void agent(uint32_t slot, const std::string& name) {
    authenticate(slot, {proto::Role::agent, proto::AuthMethod::cert, name, {}});
  }
  // A chained gateway whose admission the parent approved (its admission
  // OPEN is answered and taken off the uplink's record).
  void child_gateway(uint32_t slot, const std::string& name) {
    authenticate(slot, {proto::Role::gateway, proto::AuthMethod::cert, name, {}});
    const uint32_t uplink = children.conns.at(slot).role.uplink;
    const Recorded admission = uplinks.queued[uplink].back();
    uplinks.queued[uplink].pop_back();
    from_uplink(uplink, {admission.channel, proto::OpenOk{0, 0}});
  }
  void from_child(uint32_t slot, const proto::Frame& frame) {
    sessions.on_frame(children, shard, children.conns.at(slot), frame);
  }
  void from_uplink(uint32_t uplink, const proto::Frame& frame) { sessions.on_uplink_frame(shard, uplink, frame); }
  // The session ended (whatever ended it): the role hears on_closed, then the record goes.
  void closed(uint32_t slot) {
    sessions.on_closed(children, shard, children.conns.at(slot));
    children.forget(slot);
  }

  runtime::Shard& shard = passive_shard();
  FakeChildren children;
  FakeUplinks uplinks;
  config::LiveSettings live;  // the defaults: 60 s heartbeats
  gateway::GatewaySessions sessions;
};

}  // namespace gatehouse::testing
