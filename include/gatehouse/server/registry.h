// The server's registry: which gateways and agents are approved, the pending
// list, and the inventory (first and last seen, via which gateway). Local:
// SQLite in data_dir/registry.db, a change seen within poll_ms (SQLite's
// data_version). A management group ([store] backend = "postgresql"): the
// tables gatehouse.gateways and gatehouse.agents shared by every server, a
// change through any of them seen by all at once (LISTEN/NOTIFY), at the
// latest within poll_ms. `gatehouse approve` edits it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gatehouse/config/config_types.h"
#include "gatehouse/proto/frame_types.h"

struct sqlite3;

namespace gatehouse::config {
struct Config;
}
namespace gatehouse::pg {
class Connection;
}

namespace gatehouse::server {

enum class AgentState : uint8_t { approved, pending, rejected };
const char* to_string(AgentState state);

// Where an agent may come from (its trust scope) and how it proves itself.
// Empty fields are unbound: the first session the server accepts binds them.
inline constexpr std::string_view kDirectScope = "@direct";  // not a tier name (names have no '@')
struct AgentBinding {
  std::string scope;  // a tier, kDirectScope, or "" (unbound)
  std::string auth;   // "cert", "kerberos", or "" (unbound)
  bool operator==(const AgentBinding&) const = default;
};
const char* auth_name(proto::AuthMethod auth);

// Names are stored lower-case: DNS names compare without case.
struct Approvals {
  std::map<std::string, std::string, std::less<>> gateways;   // name → tier (its own name by default)
  std::map<std::string, AgentBinding, std::less<>> agents;    // approved only
  bool operator==(const Approvals&) const = default;
};

struct GatewayRecord {
  std::string name;
  std::string tier;  // "" in the table: a tier of its own (shown as its name)
};

struct AgentRecord {
  std::string name;
  AgentState state = AgentState::pending;
  int64_t first_seen_unix_s = 0;
  int64_t last_seen_unix_s = 0;
  std::string via;  // the gateway it last came through; "" when direct
  AgentBinding binding;
  int64_t last_heartbeat_unix_s = 0;  // 0: none recorded
  std::string health;                 // "up", "down" (the last server's verdict), "" never heard
  std::string path;                   // the gateways it came through, nearest it first, ">"-joined
};

// A heartbeat as recorded for `gatehouse agents` (AgentHealth writes them).
struct HeartbeatRecord {
  std::string name;
  int64_t unix_s = 0;
  std::string health;  // "up" or "down"
  std::string path;    // agents only
};

// "" when `path` (a data folder, the registry) belongs to this process's
// user, else a refusal naming its owner and what to do.
std::string ownership_refusal(const std::string& path);

class Registry {
 public:
  // nullptr with `why`. Creates the database and its tables when missing.
  static std::unique_ptr<Registry> open(const std::string& data_dir, std::string& why);
  // The group's, in PostgreSQL (its schema is made by the store's migrations).
  static std::unique_ptr<Registry> open_postgresql(const std::string& dsn, std::string& why);
  // The one `config` says ([store] backend).
  static std::unique_ptr<Registry> open(const config::Config& config, std::string& why);
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // `gatehouse approve`: "" or why. An empty tier: a tier of its own; an
  // empty binding field keeps what the agent is bound to (or leaves it unbound).
  std::string set_gateway(const std::string& name, bool approved, const std::string& tier = "");
  std::string set_agent(const std::string& name, bool approved, const AgentBinding& binding = {});
  std::vector<GatewayRecord> gateways();
  std::vector<AgentRecord> agents(bool pending_only);

  // Server: the approvals in force, refreshed by watch() within poll_ms of a change.
  std::shared_ptr<const Approvals> approvals() const { return approvals_.load(); }
  // Changes with every new Approvals: a shard compares it each turn (cheap)
  // and re-checks its sessions when it moved.
  uint64_t approvals_version() const { return approvals_version_.load(std::memory_order_acquire); }
  // Starts the server's registry thread: polls for approval changes and writes
  // the inventory noted by note_seen().
  void watch(std::function<uint32_t()> poll_ms);  // [approval] poll_interval_ms, read each round (a reload changes it)
  // Any thread: records that an agent was seen (coalesced, written by the
  // registry thread). In `review` mode an unknown agent becomes pending, in
  // `auto` mode approved, bound to `binding` (how it came); an approved agent
  // still unbound is bound to it. Call it only for sessions the server takes
  // (or would take once approved): the binding is trust on first use.
  void note_seen(const std::string& agent, const std::string& via, const AgentBinding& binding,
                 config::AgentApproval mode);
  // Runs on the registry thread at every round (after approvals and the
  // inventory): the server's agent health checks, whose database work
  // belongs on this thread. Set before watch().
  void set_round_hook(std::function<void()> hook) { round_hook_ = std::move(hook); }
  // Registry thread (the round hook): records heartbeats of agents (or
  // gateways); and the one stored for a name (0: none), which another server
  // of the group may have written.
  void write_heartbeats(bool gateways, const std::vector<HeartbeatRecord>& records);
  int64_t stored_heartbeat(bool gateway, const std::string& name);

 private:
  using Rows = std::vector<std::vector<std::string>>;
  Registry() = default;
  // ?1.. parameters in either database. "" or why.
  std::string execute(const std::string& sql, const std::vector<std::string>& parameters, Rows* rows = nullptr);
  void write(const std::string& sql, const std::vector<std::string>& parameters);  // a failure is logged (30076)
  bool refresh(bool forced = false);
  bool write_inventory();
  void watch_postgresql(std::function<uint32_t()> poll_ms);
  bool reconnect_postgresql(std::string& why);

  sqlite3* db_ = nullptr;                  // local
  std::unique_ptr<pg::Connection> pg_;     // a group's (its own connection, LISTENing)
  std::string dsn_;
  std::mutex db_mutex_;                    // the PostgreSQL connection: one statement at a time
  std::atomic<std::shared_ptr<const Approvals>> approvals_;
  std::atomic<uint64_t> approvals_version_{0};
  int64_t data_version_ = -1;
  static constexpr size_t kSeenMax = 65'536;  // inventory notes waiting for the registry thread
  struct Seen {
    std::string via;
    AgentBinding binding;
    config::AgentApproval mode;
  };
  std::mutex seen_mutex_;
  std::map<std::string, Seen> seen_;  // bounded by kSeenMax (newer notes of a name replace older)
  std::function<void()> round_hook_;
  std::atomic<bool> stopping_{false};
  std::thread watcher_;
};

}  // namespace gatehouse::server
