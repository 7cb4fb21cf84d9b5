#include "gatehouse/server/server_role.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <vector>

#include "gatehouse/admin/metrics.h"
#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"

namespace gatehouse::server {
namespace {

// To a replaced session's shard: which session, of which agent.
struct ReplaceRequest {
  SessionPlace place;
  std::string agent;
};

uint64_t session_key(runtime::ConnId id) { return uint64_t{id.index} << 32 | id.generation; }
runtime::ConnId conn_of(uint64_t key) { return {static_cast<uint32_t>(key >> 32), static_cast<uint32_t>(key)}; }

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

ServerSessions::ServerSessions(ServerContext& context)
    : context_(context), batch_(std::make_unique<store::Batch>()) {}

ServerSessions::~ServerSessions() = default;

bool ServerSessions::agent_approved(const std::string& agent) const {
  if (context_.live.agent_approval() == config::AgentApproval::automatic) return true;
  return context_.registry.approvals()->agents.contains(agent);
}

// A gateway uplink's allowance of agents not approved yet (a token bucket):
// made-up names cannot flood the registry or the pending list.
bool ServerSessions::new_agent_allowed(runtime::Shard& shard, net::RoleContext& link) {
  const double per_minute = context_.live.new_agents_per_minute();
  const uint64_t now_ms = shard.now_ms();
  link.new_agent_tokens = std::min(per_minute, link.new_agent_tokens + static_cast<double>(now_ms - link.tokens_at_ms) *
                                                                          per_minute / 60'000.0);
  link.tokens_at_ms = now_ms;
  if (link.new_agent_tokens < 1) return false;
  link.new_agent_tokens -= 1;
  return true;
}

// What the operator of this server can do about an unapproved agent.
std::string ServerSessions::approval_hint(const std::string& agent) const {
  return context_.live.agent_approval() == config::AgentApproval::review
             ? "it is on the pending list: gatehouse approve agent " + agent + " --action create"
             : "approve it with: gatehouse approve agent " + agent + " --action create";
}

void ServerSessions::on_authenticated(net::Children& gate, runtime::Shard& shard, net::Conn& conn) {
  const net::Identity& identity = conn.gate.identity;
  net::RoleContext& link = conn.role;
  link = {};
  link.name = lower(identity.name);
  if (!conn.tls.dialled_gateway.empty() &&
      (identity.role != proto::Role::gateway || link.name != lower(conn.tls.dialled_gateway))) {
    gate.deny(shard, conn, proto::Reason::not_approved, log::EventId::peer_not_approved,
              "the connection dialled to gateway " + conn.tls.dialled_gateway + " was answered by " +
                  std::string(identity.role == proto::Role::gateway ? "gateway " : "agent ") + link.name +
                  " (check [[gateways]] address)");
    return;
  }
  if (identity.role == proto::Role::gateway) {
    if (!context_.registry.approvals()->gateways.contains(link.name)) {
      gate.deny(shard, conn, proto::Reason::not_approved, log::EventId::peer_not_approved,
                "gateway " + link.name + " is not approved by this management server",
                "approve it with: gatehouse approve gateway " + link.name + " --action create");
      return;
    }
    link.gateway = true;
    link.open = true;
    link.new_agent_tokens = context_.live.new_agents_per_minute();  // a full bucket to start
    link.tokens_at_ms = shard.now_ms();
    heard_.push_back({PeerKind::gateway, link.name, {}});
    gate.send(shard, conn, {0, proto::HelloOk{proto::kVersion, static_cast<uint16_t>(context_.live.heartbeat_interval_s()), 0, 0, context_.name}});
    return;
  }
  const AgentBinding came{std::string(kDirectScope), auth_name(identity.auth)};
  if (const std::string why = binding_refusal(link.name, came); !why.empty()) {
    gate.deny(shard, conn, proto::Reason::not_approved, log::EventId::peer_not_approved, why);
    return;
  }
  context_.registry.note_seen(link.name, "", came, context_.live.agent_approval());
  if (!agent_approved(link.name)) {
    gate.deny(shard, conn, proto::Reason::not_approved, log::EventId::peer_not_approved,
              "agent " + link.name + " is not approved by this management server", approval_hint(link.name));
    return;
  }
  if (const std::string why = incarnation_refusal(link.name, identity.incarnation.id, identity.incarnation.base_seq);
      !why.empty()) {
    gate.deny(shard, conn, proto::Reason::protocol_error, log::EventId::data_out_of_order, why);
    return;
  }
  link.open = true;
  const uint64_t durable_seq = open_channel(conn, 0, link.name, came, identity.incarnation);
  admit_agent(shard, conn, 0, link.name);
  gate.send(shard, conn, {0, proto::HelloOk{proto::kVersion, static_cast<uint16_t>(context_.live.heartbeat_interval_s()),
                                          context_.limits.channel_window_bytes, durable_seq, context_.name}});
}

void ServerSessions::on_frame(net::Children& gate, runtime::Shard& shard, net::Conn& conn, const proto::Frame& frame) {
  if (!conn.role.open) return;
  std::visit(
      [&](const auto& body) {
        using Body = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<Body, proto::Data>) {
          on_data(gate, shard, conn, frame.channel, body);
        } else if constexpr (std::is_same_v<Body, proto::Open>) {
          on_open(gate, shard, conn, frame.channel, body);
        } else if constexpr (std::is_same_v<Body, proto::Close>) {
          if (conn.role.gateway) forget_channel(shard, conn, frame.channel);  // the agent (or chained gateway) left
        } else if constexpr (std::is_same_v<Body, proto::Ping>) {
          admin::shard_add(shard.index(), admin::ShardMetric::heartbeats_in);
          heard_link(conn);
          gate.send(shard, conn, {frame.channel, proto::Pong{body.nonce}});
        } else if constexpr (std::is_same_v<Body, proto::Heartbeats>) {
          on_heartbeats(gate, shard, conn, body);
        } else if constexpr (std::is_same_v<Body, proto::Pong> || std::is_same_v<Body, proto::GoAway>) {
          // liveness answers and a child's orderly goodbye need no reply
        } else {
          gate.deny(shard, conn, proto::Reason::protocol_error, log::EventId::protocol_violation,
                    std::string(proto::to_string(proto::frame_type(frame.body))) + " is not sent by a child");
        }
      },
      frame.body);
}

void ServerSessions::on_open(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel,
                             const proto::Open& open) {
  net::RoleContext& link = conn.role;
  if (!link.gateway || channel == 0) {
    gate.deny(shard, conn, proto::Reason::protocol_error, log::EventId::protocol_violation,
              "OPEN comes from gateways, on a channel above 0");
    return;
  }
  const std::string agent = lower(open.name);
  auto refuse = [&](proto::Reason reason, log::EventId event, const std::string& text, const std::string& logged = "") {
    refuse_open(gate, shard, conn, channel, agent, reason, event, text, logged);
  };
  if (link.channels.contains(channel)) {
    refuse(proto::Reason::channel_exists, log::EventId::protocol_violation, "channel already open");
    return;
  }
  if (link.channels.size() >= context_.limits.channels_per_uplink_max) {
    refuse(proto::Reason::channel_limit, log::EventId::protocol_violation, "too many agents on this uplink");
    return;
  }
  std::string tier;
  if (const std::string why = path_refusal(link, open, tier); !why.empty()) {
    refuse(proto::Reason::not_approved, log::EventId::peer_not_approved, why,
           (open.role == proto::Role::gateway ? "chained gateway " : "agent ") + agent + " refused: " + why);
    return;
  }
  if (open.role == proto::Role::gateway) {
    admit_gateway(gate, shard, conn, channel, open, tier);
    return;
  }
  const AgentBinding came{tier, auth_name(open.auth)};
  if (const std::string why = binding_refusal(agent, came); !why.empty()) {
    refuse(proto::Reason::not_approved, log::EventId::peer_not_approved, why, why);
    return;
  }
  const bool known = context_.registry.approvals()->agents.contains(agent);
  if (!known && !new_agent_allowed(shard, link)) {
    const std::string text = "gateway " + link.name + " brings new agents faster than " +
                             std::to_string(context_.live.new_agents_per_minute()) + " a minute";
    refuse(proto::Reason::overloaded, log::EventId::new_agents_throttled, text, text + "; agent " + agent + " refused for now");
    return;
  }
  context_.registry.note_seen(agent, link.name, came, context_.live.agent_approval());
  if (!agent_approved(agent)) {
    const std::string text = "agent " + agent + " is not approved by this management server";
    refuse(proto::Reason::not_approved, log::EventId::peer_not_approved, text, text + ": " + approval_hint(agent));
    return;
  }
  if (const std::string why = incarnation_refusal(agent, open.incarnation.id, open.incarnation.base_seq); !why.empty()) {
    refuse(proto::Reason::protocol_error, log::EventId::data_out_of_order, why, why);
    return;
  }
  const uint64_t durable_seq = open_channel(conn, channel, agent, came, open.incarnation);
  for (uint8_t hop = 0; hop < open.hop_count; ++hop) {
    conn.role.channels.at(channel).path += (hop > 0 ? ">" : "") + lower(open.hops[hop]);
  }
  admit_agent(shard, conn, channel, agent);
  gate.send(shard, conn, {channel, proto::OpenOk{durable_seq, context_.limits.channel_window_bytes}});
}

// OPEN_DENY for `channel`; `logged`, when not empty, is the line logged with
// the event (naming who, through which gateway, from where).
void ServerSessions::refuse_open(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel,
                                 const std::string& name, proto::Reason reason, log::EventId event,
                                 const std::string& text, const std::string& logged) {
  if (!logged.empty()) {
    log::emit(log::Level::warning, event, logged,
              {{"name", name}, {"via", conn.role.name}, {"peer", shard.peer(conn.id).to_string()}});
  }
  gate.send(shard, conn, {channel, proto::OpenDeny{{reason, static_cast<uint32_t>(event),
                                                    std::string_view(text).substr(0, proto::kTextMaxBytes)}}});
}

// Every gateway on an OPEN's path is approved and in one tier (returned in
// `tier`); the last is the uplink's own (authenticated) gateway, and each one
// before it was admitted through this uplink. "" or why not, naming the hop.
std::string ServerSessions::path_refusal(const net::RoleContext& link, const proto::Open& open,
                                         std::string& tier) const {
  if (open.hop_count == 0 || !proto::same_name(open.hops[open.hop_count - 1], link.name)) {
    return "its path does not end with the uplink's gateway " + link.name;
  }
  const auto approvals = context_.registry.approvals();
  for (uint8_t i = 0; i < open.hop_count; ++i) {
    const std::string hop = lower(open.hops[i]);
    const auto approved = approvals->gateways.find(hop);
    if (approved == approvals->gateways.end()) {
      return "gateway " + hop + " on its path is not approved by this management server (gatehouse approve gateway " +
             hop + " --action create)";
    }
    if (i == 0) tier = approved->second;
    if (approved->second != tier) {
      return "gateway " + hop + " on its path is in tier " + approved->second + ", the path began in tier " + tier +
             " (a path stays in one tier: gatehouse approve gateway " + hop + " --action create --tier " + tier + ")";
    }
    if (i + 1 < open.hop_count && !link.admitted_gateways.contains(hop)) {
      return "gateway " + hop + " on its path was not admitted through " + link.name;
    }
  }
  return "";
}

namespace {
std::string scope_text(std::string_view scope) {
  return scope == kDirectScope ? "direct connection" : "tier " + std::string(scope);
}
}  // namespace

// An approved agent comes only through the scope and with the auth method it
// is bound to (unbound fields bind at its first session). "" or why not.
std::string ServerSessions::binding_refusal(const std::string& agent, const AgentBinding& came) const {
  const auto approvals = context_.registry.approvals();
  const auto found = approvals->agents.find(agent);
  if (found == approvals->agents.end()) return "";
  const AgentBinding& bound = found->second;
  if (!bound.scope.empty() && bound.scope != came.scope) {
    return "agent " + agent + " is bound to " + scope_text(bound.scope) + "; it came through " + scope_text(came.scope);
  }
  if (!bound.auth.empty() && bound.auth != came.auth) {
    return "agent " + agent + " was approved with auth " + bound.auth + "; it came with " + came.auth;
  }
  return "";
}

// A chained gateway below the uplink's gateway, for as long as it stays
// connected there: approved by name here, certificate-authenticated there.
void ServerSessions::admit_gateway(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel,
                                   const proto::Open& open, const std::string& tier) {
  net::RoleContext& link = conn.role;
  const std::string name = lower(open.name);
  const auto approvals = context_.registry.approvals();
  const auto approved = approvals->gateways.find(name);
  std::string text;
  if (open.auth != proto::AuthMethod::cert || approved == approvals->gateways.end()) {
    text = "gateway " + name + " (chained below " + link.name + ") is not approved by this management server: "
           "approve it with: gatehouse approve gateway " + name + " --action create --tier " + tier;
  } else if (approved->second != tier) {
    text = "gateway " + name + " is in tier " + approved->second + "; it may not chain below " + link.name + " (tier " +
           tier + "): a chain is one tier";
  }
  if (!text.empty()) {
    refuse_open(gate, shard, conn, channel, name, proto::Reason::not_approved, log::EventId::peer_not_approved, text, text);
    return;
  }
  net::RoleChannel& state = link.channels[channel];
  state.agent = name;
  state.admission = true;
  ++link.admitted_gateways[name];
  heard_.push_back({PeerKind::gateway, name, {}});
  gate.send(shard, conn, {channel, proto::OpenOk{0, 0}});
}

void ServerSessions::on_data(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel,
                             const proto::Data& data) {
  net::RoleContext& link = conn.role;
  auto found = link.channels.find(channel);
  if (found == link.channels.end()) {
    if (link.gateway) {
      gate.send(shard, conn, {channel, proto::Close{proto::Reason::channel_unknown}});
      return;
    }
    gate.deny(shard, conn, proto::Reason::protocol_error, log::EventId::protocol_violation, "DATA on channel > 0 from an agent");
    return;
  }
  net::RoleChannel& state = found->second;
  if (state.admission) {  // a gateway's admission carries no events: it closes (and the gateway with it)
    refuse_channel(gate, shard, conn, channel, proto::Reason::protocol_error, log::EventId::protocol_violation,
                   "DATA on a chained gateway's admission");
    return;
  }
  const uint32_t frame_bytes = proto::kDataPrefixBytes + static_cast<uint32_t>(data.payload.size());
  if (state.unacked_bytes + frame_bytes > context_.limits.channel_window_bytes) {
    refuse_channel(gate, shard, conn, channel, proto::Reason::flow_control_violation, log::EventId::protocol_violation,
                   "DATA beyond the granted window of " + std::to_string(context_.limits.channel_window_bytes) + " bytes");
    return;
  }
  if (data.kind == proto::DataKind::heartbeat) {  // liveness only: nothing to store
    admin::shard_add(shard.index(), admin::ShardMetric::heartbeats_in);
    gate.send(shard, conn, {channel, proto::Credit{frame_bytes}});
    return;
  }
  if (!in_order(gate, shard, conn, channel, data)) return;
  if (data.kind == proto::DataKind::incarnation) {  // nothing to store: the next events' namespace
    // The agent sends the new incarnation's events from its first: those the
    // store already holds (their ACK was lost) are dropped as duplicates.
    state.incarnation = proto::incarnation_id(data);
    resume_seq(conn, state, {state.incarnation, data.seq});
    state.next_seq = data.seq + 1;
    gate.send(shard, conn, {channel, proto::Credit{frame_bytes}});
    return;
  }
  state.unacked_bytes += frame_bytes;
  if (data.kind == proto::DataKind::event) {
    admin::shard_add(shard.index(), admin::ShardMetric::events_in);
    admin::shard_add(shard.index(), admin::ShardMetric::event_bytes_in, static_cast<int64_t>(data.payload.size()));
  }
  store::Batch& batch = *batch_;
  const uint64_t gap_first_seq = data.kind == proto::DataKind::gap ? state.next_seq : 0;
  state.next_seq = data.seq + 1;
  batch.entries.push_back({session_key(conn.id), channel, state.agent, state.incarnation, data.seq, gap_first_seq,
                           static_cast<uint32_t>(batch.payloads.size()), static_cast<uint32_t>(data.payload.size()), 0,
                           state.path});
  batch.payloads.insert(batch.payloads.end(), data.payload.begin(), data.payload.end());
}

// Approvals changed (within the registry's poll interval, a tick later
// here): sessions whose approval was deleted end now, not when they next
// reconnect. A gateway's uplink goes whole (its agents with it); a chained
// gateway's admission or one agent's channel closes alone.
void ServerSessions::enforce_approvals(net::Children& gate, runtime::Shard& shard) {
  const auto approvals = context_.registry.approvals();
  std::vector<std::pair<uint32_t, std::string>> revoked;
  gate.for_each([&](net::Conn& conn) {
    net::RoleContext& link = conn.role;
    if (!link.open || conn.stage != net::Stage::authenticated) return;
    if (!link.gateway) {
      const auto channel = link.channels.find(0);
      if (channel == link.channels.end()) return;
      if (const std::string why = still_allowed(*approvals, channel->second); !why.empty()) {
        gate.deny(shard, conn, proto::Reason::not_approved, log::EventId::approval_revoked,
                  why + "; its session is closed");
      }
      return;
    }
    if (!approvals->gateways.contains(link.name)) {
      gate.deny(shard, conn, proto::Reason::not_approved, log::EventId::approval_revoked,
                "gateway " + link.name + " is no longer approved by this management server; its uplink and every "
                "agent through it are closed");
      return;
    }
    revoked.clear();
    for (const auto& [channel, state] : link.channels) {
      if (std::string why = still_allowed(*approvals, state); !why.empty()) revoked.emplace_back(channel, std::move(why));
    }
    for (const auto& [channel, why] : revoked) revoke_channel(gate, shard, conn, channel, why);
  });
}

// "" while a channel's agent (or admitted gateway) may stay, else why not.
std::string ServerSessions::still_allowed(const Approvals& approvals, const net::RoleChannel& channel) const {
  if (channel.admission) {
    return approvals.gateways.contains(channel.agent)
               ? ""
               : "chained gateway " + channel.agent + " is no longer approved by this management server";
  }
  if (!agent_approved(channel.agent)) return "agent " + channel.agent + " is no longer approved by this management server";
  return binding_refusal(channel.agent, {channel.scope, auth_name(channel.auth)});
}

void ServerSessions::revoke_channel(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel,
                                    const std::string& why) {
  const net::RoleChannel& state = conn.role.channels.at(channel);
  log::emit(log::Level::warning, log::EventId::approval_revoked, why + "; its channel is closed",
            {{"name", state.agent}, {"via", conn.role.name}, {"peer", shard.peer(conn.id).to_string()}});
  gate.send(shard, conn, {channel, proto::Close{proto::Reason::not_approved}});
  forget_channel(shard, conn, channel);
}

// The agent's channel from now on: it resumes after its incarnation's durable seq (returned).
uint64_t ServerSessions::open_channel(net::Conn& conn, uint32_t channel, const std::string& agent,
                                      const AgentBinding& came, const proto::Incarnation& incarnation) {
  net::RoleChannel& state = conn.role.channels[channel];
  state.agent = agent;
  state.scope = came.scope;
  state.auth = came.auth == "kerberos" ? proto::AuthMethod::kerberos : proto::AuthMethod::cert;
  state.incarnation = incarnation.id;
  const uint64_t durable_seq = resume_seq(conn, state, incarnation);
  state.next_seq = durable_seq + 1;
  return durable_seq;
}

// "" when `id` may begin after `base_seq` for `agent`: an incarnation the
// store holds begins only where it began, so no session can move one onto
// seqs its agent has not reached (its later events would look like duplicates).
std::string ServerSessions::incarnation_refusal(const std::string& agent, uint64_t id, uint64_t base_seq) const {
  if (id == 0) return "";
  const store::ResumePoint point = context_.store.resume_point(agent, id);
  if (!point.known || point.base_seq == base_seq) return "";
  return "agent " + agent + ": incarnation " + proto::incarnation_hex(id) + " begins after seq " +
         std::to_string(point.base_seq) + ", not after seq " + std::to_string(base_seq);
}

// Where the agent's `incarnation` stands: its durable seq, or its base when
// the store has none of it yet, which is logged (30065) with the agent's
// previous incarnation: a queue that starts below what the server holds was
// reset (a reinstall) or restored from an older copy, and its new events are
// stored as new, not taken for duplicates.
uint64_t ServerSessions::resume_seq(const net::Conn& conn, const net::RoleChannel& state,
                                    const proto::Incarnation& incarnation) {
  if (incarnation.id == 0) return 0;  // no event yet: an incarnation DATA comes first
  const store::ResumePoint point = context_.store.resume_point(state.agent, incarnation.id);
  if (point.known) return point.durable_seq;
  const bool continues = point.latest_incarnation == 0 || point.latest_durable_seq == incarnation.base_seq;
  log::emit(continues ? log::Level::info : log::Level::warning, log::EventId::agent_incarnation_new,
            "agent " + state.agent + " begins incarnation " + proto::incarnation_hex(incarnation.id) + " after seq " +
                std::to_string(incarnation.base_seq) +
                (continues ? std::string()
                           : "; its queue starts below seq " + std::to_string(point.latest_durable_seq) +
                                 " stored from incarnation " + proto::incarnation_hex(point.latest_incarnation) +
                                 " (reinstalled, or restored from an older copy): its new events are stored as new"),
            {{"agent", state.agent}, {"via", conn.role.gateway ? conn.role.name : std::string("direct")},
             {"incarnation", proto::incarnation_hex(incarnation.id)}, {"base_seq", incarnation.base_seq},
             {"previous_incarnation", proto::incarnation_hex(point.latest_incarnation)},
             {"previous_durable_seq", point.latest_durable_seq}});
  return incarnation.base_seq;
}

// Events come in order: each is the next seq, or a declared gap starts at it
// (the agent's queue dropped its oldest). A jump would hide a loss, a rewind
// would be taken as duplicates; either closes the channel.
bool ServerSessions::in_order(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel,
                              const proto::Data& data) {
  net::RoleChannel& state = conn.role.channels.at(channel);
  if (data.kind == proto::DataKind::incarnation) {
    // It begins after the agent's last seq, or below it when the agent's
    // queue ends below what the server holds of the old one (restored); one
    // the store knows only where it began.
    const uint64_t id = proto::incarnation_id(data);
    std::string why = incarnation_refusal(state.agent, id, data.seq);
    if (why.empty() && (data.seq >= state.next_seq || id == state.incarnation)) {
      why = "incarnation " + proto::incarnation_hex(id) + " beginning after seq " + std::to_string(data.seq) +
            " where seq " + std::to_string(state.next_seq) + " of incarnation " +
            proto::incarnation_hex(state.incarnation) + " comes next";
    }
    if (!why.empty()) {
      refuse_channel(gate, shard, conn, channel, proto::Reason::protocol_error, log::EventId::data_out_of_order, why);
      return false;
    }
    return true;
  }
  if (state.incarnation == 0) {
    refuse_channel(gate, shard, conn, channel, proto::Reason::protocol_error, log::EventId::data_out_of_order,
                   "DATA seq " + std::to_string(data.seq) + " before any incarnation");
    return false;
  }
  const bool gap = data.kind == proto::DataKind::gap;
  if (gap ? data.seq < state.next_seq : data.seq != state.next_seq) {
    refuse_channel(gate, shard, conn, channel, proto::Reason::protocol_error, log::EventId::data_out_of_order,
                   std::string(gap ? "a gap ending at seq " : "DATA seq ") + std::to_string(data.seq) + " where seq " +
                       std::to_string(state.next_seq) + " comes next (" +
                       (data.seq < state.next_seq ? "a rewind" : "a jump: a loss must be declared") + ")");
    return false;
  }
  if (gap) {
    const uint64_t lost = data.seq - state.next_seq + 1;
    log::emit(log::Level::warning, log::EventId::queue_overflow_dropped,
              "agent " + state.agent + " dropped " + std::to_string(lost) +
                  " events its queue could not hold (drop-oldest); the gap is recorded in the store",
              {{"agent", state.agent}, {"via", conn.role.gateway ? conn.role.name : std::string("direct")},
               {"first_seq", state.next_seq}, {"last_seq", data.seq}, {"dropped", lost}});
  }
  return true;
}

// Something one agent did wrong: a direct agent is sent away; on a
// gateway's uplink only its channel closes, the gateway's other agents stay.
void ServerSessions::refuse_channel(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel,
                                    proto::Reason reason, log::EventId event, const std::string& why) {
  if (!conn.role.gateway) {
    gate.deny(shard, conn, reason, event, why);
    return;
  }
  const net::RoleChannel& state = conn.role.channels.at(channel);
  const std::string agent = state.agent;
  log::emit(log::Level::warning, event,
            (state.admission ? "gateway " : "agent ") + agent + ": " + why + "; its channel is closed, the uplink stays",
            {{"agent", agent}, {"via", conn.role.name}, {"peer", shard.peer(conn.id).to_string()},
             {"reason", proto::to_string(reason)}});
  gate.send(shard, conn, {channel, proto::Close{reason}});
  forget_channel(shard, conn, channel);
}

void ServerSessions::on_turn_end(net::Children& gate, runtime::Shard& shard) {
  if (!heard_.empty() && context_.health != nullptr) context_.health->heard(heard_);
  heard_.clear();
  if (shard.now_ms() >= channels_counted_at_ms_ + kChannelsCountEveryMs) count_channels(gate, shard);
  if (const uint64_t version = context_.registry.approvals_version(); version != approvals_version_) {
    approvals_version_ = version;
    enforce_approvals(gate, shard);
  }
  if (batch_->entries.empty()) return;
  // A full store queue (or inbox) keeps the batch here and tries again next
  // turn; the agents' windows bound how much can pile up meanwhile.
  if (!shard.reserve_post()) return;
  batch_->reply_shard = &shard;
  batch_->reply_to = this;
  if (!context_.store.submit(batch_.get())) {
    shard.cancel_reservation();
    return;
  }
  batch_.release();
  batch_ = std::make_unique<store::Batch>();
  ++batches_out_;
}

// The agents riding gateway links, for the admin endpoint: counted, not
// tracked at each of the places a channel comes and goes.
void ServerSessions::count_channels(net::Children& gate, runtime::Shard& shard) {
  channels_counted_at_ms_ = shard.now_ms();
  int64_t channels = 0;
  gate.for_each([&](net::Conn& conn) {
    if (conn.role.open && conn.role.gateway) channels += static_cast<int64_t>(conn.role.channels.size());
  });
  admin::shard_set(shard.index(), admin::ShardMetric::channels, channels);
}

void ServerSessions::deliver(store::Batch* batch) {
  batch->reply_shard->post_reserved({batch->reply_to, 0, batch});
}

// The batch is on disk: one ACK (highest durable seq) and one CREDIT (bytes
// freed) per channel that had DATA in it.
void ServerSessions::on_message(runtime::Shard& shard, uint64_t, void* done) {
  std::unique_ptr<store::Batch> owned(static_cast<store::Batch*>(done));
  store::Batch* batch = owned.get();
  net::Children& gate = *gate_;
  --batches_out_;
  struct Reply {
    uint64_t durable_seq = 0;
    uint32_t credit_bytes = 0;
  };
  std::map<std::pair<uint64_t, uint32_t>, Reply> replies;
  int64_t events = 0;
  for (const store::Batch::Entry& entry : batch->entries) {
    events += entry.gap_first_seq == 0 ? 1 : 0;
    Reply& reply = replies[{entry.session, entry.channel}];
    reply.durable_seq = std::max(reply.durable_seq, entry.durable_seq);
    reply.credit_bytes += proto::kDataPrefixBytes + entry.payload_size_bytes;
  }
  for (const auto& [key, reply] : replies) {
    net::Conn* conn = gate.find(conn_of(key.first));
    if (conn == nullptr || !conn->role.open || !shard.alive(conn->id)) continue;
    auto channel = conn->role.channels.find(key.second);
    if (channel == conn->role.channels.end()) continue;
    channel->second.unacked_bytes -= std::min<uint64_t>(channel->second.unacked_bytes, reply.credit_bytes);
    gate.send(shard, *conn, {key.second, proto::Ack{reply.durable_seq}});
    gate.send(shard, *conn, {key.second, proto::Credit{reply.credit_bytes}});
  }
  admin::shard_add(shard.index(), admin::ShardMetric::events_acked, events);
}

void ServerSessions::on_closed(net::Children&, runtime::Shard& shard, net::Conn& conn) {
  for (const auto& [channel, state] : conn.role.channels) {
    if (!state.admission) release_agent(shard, conn, channel);
  }
  conn.role = {};
}

// A session's own PING: a direct agent's heartbeat, or a gateway's.
void ServerSessions::heard_link(const net::Conn& conn) {
  if (!conn.role.open) return;
  heard_.push_back({conn.role.gateway ? PeerKind::gateway : PeerKind::agent, conn.role.name, {}});
}

// A gateway's report of the agents (and chained gateways) it heard, by
// channel; channels closed meanwhile are skipped.
void ServerSessions::on_heartbeats(net::Children& gate, runtime::Shard& shard, net::Conn& conn,
                                   const proto::Heartbeats& heartbeats) {
  if (!conn.role.gateway) {
    gate.deny(shard, conn, proto::Reason::protocol_error, log::EventId::protocol_violation,
              "HEARTBEATS comes from gateways only");
    return;
  }
  const size_t count = heartbeats.channels.size() / 4;
  admin::shard_add(shard.index(), admin::ShardMetric::heartbeats_in, static_cast<int64_t>(count));
  for (size_t i = 0; i < count; ++i) {
    const auto found = conn.role.channels.find(proto::heartbeat_channel(heartbeats, i));
    if (found == conn.role.channels.end()) continue;
    const net::RoleChannel& channel = found->second;
    heard_.push_back({channel.admission ? PeerKind::gateway : PeerKind::agent, channel.agent,
                      channel.admission ? std::string() : channel.path});
  }
}

// The agent's session is now this one; an older one, wherever it is, is closed.
void ServerSessions::admit_agent(runtime::Shard& shard, net::Conn& conn, uint32_t channel, const std::string& agent) {
  heard_.push_back({PeerKind::agent, agent, conn.role.channels.at(channel).path});
  const std::optional<SessionPlace> replaced =
      context_.agent_sessions.claim(agent, {&replaced_, &shard, conn.id, channel});
  if (!replaced) return;
  log::emit(log::Level::warning, log::EventId::agent_session_replaced,
            "agent " + agent + " opened a new session; its older one is closed (one session per agent)",
            {{"agent", agent}, {"via", conn.role.gateway ? conn.role.name : std::string("direct")},
             {"peer", shard.peer(conn.id).to_string()}});
  if (replaced->shard == &shard) {
    close_replaced(shard, *replaced, agent);
    return;
  }
  // Its own shard closes it. A full inbox leaves it to end at its next reconnect: said, not silent.
  auto request = std::make_unique<ReplaceRequest>(ReplaceRequest{*replaced, agent});
  if (replaced->shard->post({replaced->closer, 0, request.get()})) {
    request.release();
    return;
  }
  log::emit(log::Level::warning, log::EventId::agent_session_replaced,
            "the older session of agent " + agent + " could not be told to close (its shard's inbox is full); "
            "it ends at its next reconnect",
            {{"agent", agent}});
}

// A channel ends: the agent's session (or the gateway's admission) with it.
void ServerSessions::forget_channel(runtime::Shard& shard, net::Conn& conn, uint32_t channel) {
  const auto found = conn.role.channels.find(channel);
  if (found == conn.role.channels.end()) return;
  if (found->second.admission) {
    const auto admitted = conn.role.admitted_gateways.find(found->second.agent);
    GH_INVARIANT(admitted != conn.role.admitted_gateways.end() && admitted->second > 0);
    if (--admitted->second == 0) conn.role.admitted_gateways.erase(admitted);
  } else {
    release_agent(shard, conn, channel);
  }
  conn.role.channels.erase(found);
}

void ServerSessions::release_agent(runtime::Shard& shard, const net::Conn& conn, uint32_t channel) {
  const auto found = conn.role.channels.find(channel);
  if (found == conn.role.channels.end() || found->second.agent.empty()) return;
  context_.agent_sessions.release(found->second.agent, {&replaced_, &shard, conn.id, channel});
}

void ServerSessions::Replaced::on_message(runtime::Shard& shard, uint64_t, void* request) {
  const std::unique_ptr<ReplaceRequest> owned(static_cast<ReplaceRequest*>(request));
  owner.close_replaced(shard, owned->place, owned->agent);
}

// On the replaced session's shard: a direct agent is sent away, a gateway's
// channel closed; the gateway's other agents stay. Gone already: nothing to do.
void ServerSessions::close_replaced(runtime::Shard& shard, const SessionPlace& place, const std::string& agent) {
  net::Conn* conn = gate_->find(place.conn);
  if (conn == nullptr || !conn->role.open) return;
  const auto channel = conn->role.channels.find(place.channel);
  if (channel == conn->role.channels.end() || channel->second.admission || channel->second.agent != agent) {
    return;  // a newer use of the channel
  }
  if (!conn->role.gateway) {
    gate_->send(shard, *conn, {0, proto::GoAway{proto::Reason::normal, "a newer session of this agent replaced this one"}});
    gate_->close(shard, *conn);
    return;
  }
  gate_->send(shard, *conn, {place.channel, proto::Close{proto::Reason::normal}});
  conn->role.channels.erase(channel);
}

}  // namespace gatehouse::server
