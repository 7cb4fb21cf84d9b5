// The server role's sessions: agents directly and gateways' uplinks (each
// agent a channel) arrive authenticated from the gate; approvals come from the
// registry; each agent has one session, the newest; DATA goes to the event store in one batch per shard per loop turn,
// and ACK + CREDIT go back once the store has it on disk.
#pragma once

#include <memory>
#include <string>

#include "gatehouse/config/live.h"
#include "gatehouse/net/gate.h"
#include "gatehouse/server/agent_health.h"
#include "gatehouse/server/agent_sessions.h"
#include "gatehouse/server/registry.h"
#include "gatehouse/store/backend.h"

namespace gatehouse::server {

struct ServerLimits {
  uint32_t channel_window_bytes = 256 * 1024;  // DATA bytes an agent may have unacknowledged
  uint32_t channels_per_uplink_max = 65'536;   // agents one gateway link may carry
};

// What every shard's sessions share.
struct ServerContext {
  store::Backend& store;
  Registry& registry;
  // [approval] agents and new_agents_per_minute (per gateway uplink: agents
  // not approved yet), [health] heartbeat_interval_s: read live.
  const config::LiveSettings& live;
  std::string name;  // ours, in HELLO_OK
  ServerLimits limits;
  AgentSessions agent_sessions = {};  // one session per agent, across the shards
  AgentHealth* health = nullptr;      // heartbeats heard go here (nullptr: not watched)
};

class ServerSessions final : public net::SessionHandler, private runtime::Mailbox {
 public:
  explicit ServerSessions(ServerContext& context);
  ~ServerSessions() override;
  void attach(net::Children& gate) { gate_ = &gate; }

  // The store's delivery (on its writer thread): each batch back to the
  // shard's sessions that submitted it.
  static void deliver(store::Batch* batch);

  void on_authenticated(net::Children& gate, runtime::Shard& shard, net::Conn& conn) override;
  void on_frame(net::Children& gate, runtime::Shard& shard, net::Conn& conn, const proto::Frame& frame) override;
  void on_closed(net::Children& gate, runtime::Shard& shard, net::Conn& conn) override;
  void on_turn_end(net::Children& gate, runtime::Shard& shard) override;
  bool idle() const override { return batches_out_ == 0 && batch_->entries.empty(); }

 private:
  // A replaced session's shard gets this: the request names the session.
  struct Replaced final : runtime::Mailbox {
    explicit Replaced(ServerSessions& owner_in) : owner(owner_in) {}
    void on_message(runtime::Shard& shard, uint64_t value, void* request) override;
    ServerSessions& owner;
  };

  bool agent_approved(const std::string& agent) const;
  void enforce_approvals(net::Children& gate, runtime::Shard& shard);
  std::string still_allowed(const Approvals& approvals, const net::RoleChannel& channel) const;
  void revoke_channel(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel,
                      const std::string& why);
  void admit_agent(runtime::Shard& shard, net::Conn& conn, uint32_t channel, const std::string& agent);
  void release_agent(runtime::Shard& shard, const net::Conn& conn, uint32_t channel);
  void forget_channel(runtime::Shard& shard, net::Conn& conn, uint32_t channel);
  void refuse_open(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel,
                   const std::string& name, proto::Reason reason, log::EventId event, const std::string& text,
                   const std::string& logged);
  std::string path_refusal(const net::RoleContext& link, const proto::Open& open, std::string& tier) const;
  std::string binding_refusal(const std::string& agent, const AgentBinding& came) const;
  void admit_gateway(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel,
                     const proto::Open& open, const std::string& tier);
  void close_replaced(runtime::Shard& shard, const SessionPlace& place, const std::string& agent);
  bool new_agent_allowed(runtime::Shard& shard, net::RoleContext& link);
  void on_open(net::Children& gate, runtime::Shard& shard, net::Conn& link, uint32_t channel, const proto::Open& open);
  void on_data(net::Children& gate, runtime::Shard& shard, net::Conn& link, uint32_t channel, const proto::Data& data);
  bool in_order(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel, const proto::Data& data);
  void refuse_channel(net::Children& gate, runtime::Shard& shard, net::Conn& conn, uint32_t channel,
                      proto::Reason reason, log::EventId event, const std::string& why);
  uint64_t open_channel(net::Conn& conn, uint32_t channel, const std::string& agent, const AgentBinding& came,
                        const proto::Incarnation& incarnation);
  std::string incarnation_refusal(const std::string& agent, uint64_t id, uint64_t base_seq) const;
  uint64_t resume_seq(const net::Conn& conn, const net::RoleChannel& state, const proto::Incarnation& incarnation);
  void on_message(runtime::Shard& shard, uint64_t value, void* batch) override;  // a batch is durable
  std::string approval_hint(const std::string& agent) const;
  void count_channels(net::Children& gate, runtime::Shard& shard);
  void heard_link(const net::Conn& conn);
  void on_heartbeats(net::Children& gate, runtime::Shard& shard, net::Conn& conn, const proto::Heartbeats& heartbeats);

  ServerContext& context_;
  net::Children* gate_ = nullptr;
  Replaced replaced_{*this};
  std::unique_ptr<store::Batch> batch_;   // this turn's DATA
  uint32_t batches_out_ = 0;              // in the store
  uint64_t approvals_version_ = 0;        // the registry's, when this shard last checked its sessions
  static constexpr uint64_t kChannelsCountEveryMs = 1'000;
  uint64_t channels_counted_at_ms_ = 0;
  std::vector<HeardNote> heard_;  // this turn's heartbeats, handed to the health checks at its end
};

}  // namespace gatehouse::server
