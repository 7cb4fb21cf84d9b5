#include "gatehouse/gateway/gateway_sessions.h"

#include "gatehouse/admin/metrics.h"
#include "gatehouse/proto/codec.h"
#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"

namespace gatehouse::gateway {

GatewaySessions::GatewaySessions(std::string name, const config::LiveSettings& live)
    : name_(std::move(name)), live_(live) {}

void GatewaySessions::on_authenticated(net::Children&, runtime::Shard& shard, net::Conn& child) {
  const int uplink = uplinks_->pick();
  if (uplink < 0) {
    gate_->deny(shard, child, proto::Reason::parent_unavailable, log::EventId::no_parent_available,
                "this gateway has no parent connection right now; retry later");
    return;
  }
  const net::Identity& identity = child.gate.identity;
  child.role = {};
  child.role.open = true;
  child.role.uplink = static_cast<uint32_t>(uplink);
  // An agent's session, or a chained gateway's admission: the management
  // group says yes first (OPEN_OK comes back as the child's HELLO_OK).
  child.role.gateway = identity.role == proto::Role::gateway;
  open_channel(shard, child, 0, {identity.role, identity.auth, identity.name, 0, {}, identity.incarnation});
}

// Opens an uplink channel for one agent (or a chained gateway's admission):
// OPEN goes up with the hops so far plus this gateway. False when refused
// here (the caller was told).
bool GatewaySessions::open_channel(runtime::Shard& shard, net::Conn& child, uint32_t child_channel, proto::Open open) {
  GH_INVARIANT(open.hop_count < proto::kHopsMax);
  open.hops[open.hop_count++] = name_;
  const uint32_t uplink = child.role.uplink;
  uint32_t channel = next_channel_++;
  while (channel == 0 || routes_.contains(route_key(uplink, channel))) channel = next_channel_++;
  if (!uplinks_->queue(uplink, {channel, open})) {
    if (child_channel == 0) {
      gate_->deny(shard, child, proto::Reason::parent_unavailable, log::EventId::no_parent_available,
                  "the parent connection dropped; retry");
    }
    return false;
  }
  // Routes and the child's channels mirror each other, one entry each.
  GH_INVARIANT(!child.role.channels.contains(child_channel));
  routes_[route_key(uplink, channel)] = {child.id, child_channel};
  // A session's own channel is usually its only one: two buckets, not the
  // thirteen a first insert allocates (W1 holds thousands of idle sessions).
  if (child.role.channels.empty()) child.role.channels.reserve(1);
  net::RoleChannel& state = child.role.channels[child_channel];
  state.uplink_channel = channel;
  // Named for the log of an agent behind a chained gateway; channel 0 is the
  // child itself (gate.identity), no second copy of its name.
  if (child_channel != 0) state.agent = std::string(open.name);
  return true;
}

// A chained gateway's OPEN (an agent behind it, or a gateway chained below
// it): it may speak only once admitted, and only for paths that end with
// itself (each hop vouches for the one below; the server checks them all).
void GatewaySessions::on_child_open(runtime::Shard& shard, net::Conn& child, uint32_t child_channel,
                                    const proto::Open& open) {
  const std::string& child_name = child.gate.identity.name;
  if (!child.role.welcomed) {
    refuse_open(shard, child, child_channel, proto::Reason::protocol_error, log::EventId::chain_hop_refused,
                "gateway " + child_name + " sent OPEN before the management group admitted it");
    return;
  }
  if (open.hop_count == 0 || !proto::same_name(open.hops[open.hop_count - 1], child_name)) {
    const std::string claimed = open.hop_count == 0 ? "no hop" : "last hop " + std::string(open.hops[open.hop_count - 1]);
    refuse_open(shard, child, child_channel, proto::Reason::not_approved, log::EventId::chain_hop_refused,
                "gateway " + child_name + " opened " + std::string(open.name) + " with a forged path (" + claimed +
                    ", not itself)");
    return;
  }
  bool loop = open.hop_count >= proto::kHopsMax;
  for (uint8_t i = 0; i < open.hop_count; ++i) loop = loop || proto::same_name(open.hops[i], name_);
  if (loop) {
    gate_->send(shard, child,
                {child_channel, proto::OpenDeny{{proto::Reason::loop_detected, 0, "gateway loop or too many hops"}}});
    return;
  }
  open_channel(shard, child, child_channel, open);
}

void GatewaySessions::refuse_open(runtime::Shard& shard, net::Conn& child, uint32_t child_channel,
                                  proto::Reason reason, log::EventId event, const std::string& why) {
  log::emit(log::Level::warning, event, why,
            {{"via", child.gate.identity.name}, {"peer", shard.peer(child.id).to_string()},
             {"reason", proto::to_string(reason)}});
  gate_->send(shard, child,
              {child_channel, proto::OpenDeny{{reason, static_cast<uint32_t>(event),
                                               std::string_view(why).substr(0, proto::kTextMaxBytes)}}});
}

void GatewaySessions::close_channel(net::Conn& child, uint32_t child_channel, bool tell_parent) {
  auto found = child.role.channels.find(child_channel);
  if (found == child.role.channels.end()) return;
  const uint32_t channel = found->second.uplink_channel;
  if (tell_parent) uplinks_->queue(child.role.uplink, {channel, proto::Close{proto::Reason::normal}});
  GH_INVARIANT(routes_.erase(route_key(child.role.uplink, channel)) == 1);
  child.role.channels.erase(found);
}

void GatewaySessions::on_frame(net::Children&, runtime::Shard& shard, net::Conn& child, const proto::Frame& frame) {
  if (!child.role.open) return;
  pause_if_congested(shard, child);
  if (const auto* data = std::get_if<proto::Data>(&frame.body)) {
    if (child.role.gateway && frame.channel == 0) {
      gate_->deny(shard, child, proto::Reason::protocol_error, log::EventId::protocol_violation,
                  "DATA on channel 0 from a gateway (its agents use their channels)");
      return;
    }
    auto found = child.role.channels.find(frame.channel);
    if (found == child.role.channels.end()) {
      if (child.role.gateway) gate_->send(shard, child, {frame.channel, proto::Close{proto::Reason::channel_unknown}});
      return;  // an agent's DATA before its OPEN_OK came back cannot happen: it has no window yet
    }
    const uint64_t frame_bytes = proto::kDataPrefixBytes + data->payload.size();
    if (frame_bytes > found->second.credit_bytes) {
      over_credit(shard, child, frame.channel, found->second);
      return;
    }
    found->second.credit_bytes -= frame_bytes;
    uplinks_->queue_data(child.role.uplink, found->second.uplink_channel, *data);
    if (data->kind == proto::DataKind::event) {
      const auto bytes = static_cast<int64_t>(data->payload.size());
      admin::shard_add(shard.index(), admin::ShardMetric::events_in);
      admin::shard_add(shard.index(), admin::ShardMetric::event_bytes_in, bytes);
      admin::shard_add(shard.index(), admin::ShardMetric::events_out);
      admin::shard_add(shard.index(), admin::ShardMetric::event_bytes_out, bytes);
    } else if (data->kind == proto::DataKind::heartbeat) {
      admin::shard_add(shard.index(), admin::ShardMetric::heartbeats_in);
    }
  } else if (const auto* open = std::get_if<proto::Open>(&frame.body)) {
    if (!child.role.gateway || frame.channel == 0 || child.role.channels.contains(frame.channel)) {
      gate_->deny(shard, child, proto::Reason::protocol_error, log::EventId::protocol_violation,
                  "OPEN comes from gateways, once per channel above 0");
      return;
    }
    on_child_open(shard, child, frame.channel, *open);
  } else if (std::holds_alternative<proto::Close>(frame.body)) {
    close_channel(child, frame.channel, true);
  } else if (const auto* ping = std::get_if<proto::Ping>(&frame.body)) {
    admin::shard_add(shard.index(), admin::ShardMetric::heartbeats_in);
    // The child's own heartbeat (an agent's, or a chained gateway's for its admission).
    if (auto own = child.role.channels.find(0); own != child.role.channels.end()) heard(shard, child.role.uplink, own->second);
    gate_->send(shard, child, {frame.channel, proto::Pong{ping->nonce}});
  } else if (const auto* heartbeats = std::get_if<proto::Heartbeats>(&frame.body)) {
    on_child_heartbeats(shard, child, *heartbeats);
  }
}

// A chained gateway's report: its agents are heard here, and go into ours.
void GatewaySessions::on_child_heartbeats(runtime::Shard& shard, net::Conn& child, const proto::Heartbeats& heartbeats) {
  if (!child.role.gateway) {
    gate_->deny(shard, child, proto::Reason::protocol_error, log::EventId::protocol_violation,
                "HEARTBEATS comes from gateways only");
    return;
  }
  const size_t count = heartbeats.channels.size() / 4;
  admin::shard_add(shard.index(), admin::ShardMetric::heartbeats_in, static_cast<int64_t>(count));
  for (size_t i = 0; i < count; ++i) {
    auto found = child.role.channels.find(proto::heartbeat_channel(heartbeats, i));
    if (found != child.role.channels.end()) heard(shard, child.role.uplink, found->second);  // else: closed meanwhile
  }
}

void GatewaySessions::heard(runtime::Shard& shard, uint32_t uplink, net::RoleChannel& channel) {
  if (channel.heard_round == heard_round_) return;
  channel.heard_round = heard_round_;
  heard_[uplink].push_back(channel.uplink_channel);
  // A quarter interval: two hops' reports add half an interval to what the
  // group sees, well inside its missed-heartbeats limit.
  if (!report_timer_.armed() && !stopping_) shard.set_timer(report_timer_, child_heartbeat_interval_s(uplink) * 1'000u / 4);
}

void GatewaySessions::on_stop(net::Children&, runtime::Shard& shard) {
  stopping_ = true;
  shard.cancel_timer(report_timer_);
}

void GatewaySessions::report_heartbeats(runtime::Shard&) {
  for (uint32_t uplink = 0; uplink < heard_.size(); ++uplink) {
    std::vector<uint32_t>& channels = heard_[uplink];
    for (size_t first = 0; first < channels.size() && uplinks_->up(uplink); first += proto::kHeartbeatChannelsMax) {
      std::vector<std::byte> body;
      const size_t last = std::min(channels.size(), first + proto::kHeartbeatChannelsMax);
      body.reserve((last - first) * 4);
      for (size_t i = first; i < last; ++i) proto::append_heartbeat_channel(body, channels[i]);
      uplinks_->queue(uplink, {0, proto::Heartbeats{body}});
    }
    channels.clear();  // an uplink that went down took its channels with it
  }
  ++heard_round_;
}

// The management group's interval (the parent's), or ours if that is
// shorter: children pinging at it satisfy both our idle limit and the group's.
uint16_t GatewaySessions::child_heartbeat_interval_s(uint32_t uplink) const {
  const uint16_t parent_s = uplinks_->heartbeat_interval_s(uplink);
  const auto own_s = static_cast<uint16_t>(live_.heartbeat_interval_s());
  return parent_s == 0 ? own_s : std::min(parent_s, own_s);
}

void GatewaySessions::on_turn_end(net::Children&, runtime::Shard& shard) {
  admin::shard_set(shard.index(), admin::ShardMetric::channels, static_cast<int64_t>(routes_.size()));
}

// DATA beyond what the parent granted: that agent's channel goes here, before
// the parent sees it (the parent would close the channel too, but the shared
// uplink would have carried it). A direct agent is its channel.
void GatewaySessions::over_credit(runtime::Shard& shard, net::Conn& child, uint32_t child_channel,
                                  const net::RoleChannel& channel) {
  const std::string why = "DATA beyond the window its parent granted (" + std::to_string(channel.credit_bytes) +
                          " bytes left)";
  if (!child.role.gateway) {
    gate_->deny(shard, child, proto::Reason::flow_control_violation, log::EventId::protocol_violation, why);
    return;
  }
  log::emit(log::Level::warning, log::EventId::protocol_violation,
            "agent " + channel.agent + ": " + why + "; its channel is closed, the child gateway's others stay",
            {{"agent", channel.agent}, {"via", child.gate.identity.name},
             {"reason", proto::to_string(proto::Reason::flow_control_violation)}});
  gate_->send(shard, child, {child_channel, proto::Close{proto::Reason::flow_control_violation}});
  close_channel(child, child_channel, true);
}

void GatewaySessions::on_closed(net::Children&, runtime::Shard&, net::Conn& child) {
  if (!child.role.open) return;
  unlist_paused(child);
  const bool uplink_up = uplinks_->up(child.role.uplink);
  while (!child.role.channels.empty()) close_channel(child, child.role.channels.begin()->first, uplink_up);
  child.role = {};
}

void GatewaySessions::on_uplink_frame(runtime::Shard& shard, uint32_t uplink, const proto::Frame& frame) {
  const uint64_t key = route_key(uplink, frame.channel);
  auto found = routes_.find(key);
  if (found == routes_.end()) return;  // the child left meanwhile
  relay_down(shard, found->second, key, frame);
}

void GatewaySessions::relay_down(runtime::Shard& shard, const Route& route, uint64_t key, const proto::Frame& frame) {
  // A child's routes go when it closes: a route always leads to the live child.
  net::Conn* found = gate_->find(route.child);
  GH_INVARIANT(found != nullptr && found->role.open);
  net::Conn& child = *found;
  const uint32_t channel = route.child_channel;
  const bool session = channel == 0;  // the child's own: an agent's session, or a chained gateway's admission
  // The parent's grants, counted as they pass: the child may send no more.
  if (const auto* open_ok = std::get_if<proto::OpenOk>(&frame.body)) {
    child.role.channels.at(channel).credit_bytes = open_ok->credit_bytes;
    if (session) {
      child.role.welcomed = true;
      const uint16_t interval_s = child_heartbeat_interval_s(child.role.uplink);
      gate_->send(shard, child, {0, child.role.gateway ? proto::HelloOk{proto::kVersion, interval_s, 0, 0, name_}
                                                       : proto::HelloOk{proto::kVersion, interval_s,
                                                                        open_ok->credit_bytes, open_ok->last_durable_seq,
                                                                        name_}});
      return;
    }
  } else if (const auto* credit = std::get_if<proto::Credit>(&frame.body)) {
    child.role.channels.at(channel).credit_bytes += credit->credit_bytes;
  } else if (std::holds_alternative<proto::Ack>(frame.body)) {
    admin::shard_add(shard.index(), admin::ShardMetric::acks_relayed);
  }
  if (const auto* deny = std::get_if<proto::OpenDeny>(&frame.body)) {
    routes_.erase(key);
    GH_INVARIANT(child.role.channels.erase(channel) == 1);
    if (session) {
      gate_->deny(shard, child, deny->reason, static_cast<log::EventId>(deny->event_id), std::string(deny->text));
    } else {
      gate_->send(shard, child, {channel, *deny});
    }
    return;
  }
  if (const auto* close = std::get_if<proto::Close>(&frame.body)) {
    routes_.erase(key);
    GH_INVARIANT(child.role.channels.erase(channel) == 1);
    if (session) {  // why it was closed (its approval was deleted, say), else: go elsewhere
      const proto::Reason reason = close->reason == proto::Reason::normal ? proto::Reason::parent_unavailable : close->reason;
      gate_->send(shard, child, {0, proto::GoAway{reason, "the parent closed the session"}});
      gate_->close(shard, child);
      return;
    }
  }
  proto::Frame relayed = frame;
  relayed.channel = channel;
  gate_->send(shard, child, relayed);
}

// Its agents go elsewhere (or come back here) and resend from the server's
// durable seq; nothing is held here to lose.
void GatewaySessions::on_uplink_down(runtime::Shard& shard, uint32_t uplink) {
  congested_[uplink] = false;
  paused_[uplink].clear();  // its children go now
  gate_->for_each([&](net::Conn& child) {
    if (!child.role.open || child.role.uplink != uplink) return;
    child.role.paused_slot = net::RoleContext::kNotPaused;
    gate_->send(shard, child, {0, proto::GoAway{proto::Reason::parent_unavailable, "the parent connection dropped"}});
    for (const auto& [child_channel, channel] : child.role.channels) routes_.erase(route_key(uplink, channel.uplink_channel));
    child.role.channels.clear();
    gate_->close(shard, child);
  });
}

// Congested: each child of that uplink is paused when it next sends (what it
// sent is relayed; the socket reads no more). Drained: those paused resume.
void GatewaySessions::on_uplink_congested(runtime::Shard& shard, uint32_t uplink, bool congested) {
  congested_[uplink] = congested;
  if (congested) return;
  for (const runtime::ConnId id : paused_[uplink]) {
    net::Conn* child = gate_->find(id);
    GH_INVARIANT(child != nullptr && child->role.paused_slot != net::RoleContext::kNotPaused);
    child->role.paused_slot = net::RoleContext::kNotPaused;
    gate_->set_reading(shard, *child, true);
  }
  paused_[uplink].clear();
}

void GatewaySessions::pause_if_congested(runtime::Shard& shard, net::Conn& child) {
  const uint32_t uplink = child.role.uplink;
  if (!congested_[uplink] || child.role.paused_slot != net::RoleContext::kNotPaused) return;
  child.role.paused_slot = static_cast<uint32_t>(paused_[uplink].size());
  paused_[uplink].push_back(child.id);
  gate_->set_reading(shard, child, false);
}

// A paused child that goes leaves its uplink's list (the last one takes its place).
void GatewaySessions::unlist_paused(net::Conn& child) {
  const uint32_t slot = child.role.paused_slot;
  if (slot == net::RoleContext::kNotPaused) return;
  std::vector<runtime::ConnId>& paused = paused_[child.role.uplink];
  GH_INVARIANT(slot < paused.size() && paused[slot] == child.id);
  paused[slot] = paused.back();
  paused.pop_back();
  if (slot < paused.size()) {
    net::Conn* moved = gate_->find(paused[slot]);
    GH_INVARIANT(moved != nullptr && moved->role.paused_slot == paused.size());
    moved->role.paused_slot = slot;
  }
  child.role.paused_slot = net::RoleContext::kNotPaused;
}

}  // namespace gatehouse::gateway
