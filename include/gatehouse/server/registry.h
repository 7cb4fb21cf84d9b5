// The server's registry in SQLite (data_dir/registry.db): which gateways and
// agents are approved, the pending list, and the inventory (first and last
// seen, via which gateway). `gatehouse approve` edits it; a running server
// sees a change within a second (it polls SQLite's data_version).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gatehouse/config/config_types.h"

struct sqlite3;

namespace gatehouse::server {

enum class AgentState : uint8_t { approved, pending, rejected };
const char* to_string(AgentState state);

// Names are stored lower-case: DNS names compare without case.
struct Approvals {
  std::set<std::string, std::less<>> gateways;
  std::set<std::string, std::less<>> agents;  // approved only
};

struct AgentRecord {
  std::string name;
  AgentState state = AgentState::pending;
  int64_t first_seen_unix_s = 0;
  int64_t last_seen_unix_s = 0;
  std::string via;  // the gateway it last came through; "" when direct
};

class Registry {
 public:
  // nullptr with `why`. Creates the database and its tables when missing.
  static std::unique_ptr<Registry> open(const std::string& data_dir, std::string& why);
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // `gatehouse approve`: "" or why.
  std::string set_gateway(const std::string& name, bool approved);
  std::string set_agent(const std::string& name, bool approved);
  std::vector<std::string> gateways();
  std::vector<AgentRecord> agents(bool pending_only);

  // Server: the approvals in force, refreshed by watch() within poll_ms of a change.
  std::shared_ptr<const Approvals> approvals() const { return approvals_.load(); }
  // Changes with every new Approvals: a shard compares it each turn (cheap)
  // and re-checks its sessions when it moved.
  uint64_t approvals_version() const { return approvals_version_.load(std::memory_order_acquire); }
  // Starts the server's registry thread: polls for approval changes and writes
  // the inventory noted by note_seen().
  void watch(uint32_t poll_ms);
  // Any thread: records that an agent was seen (coalesced, written by the
  // registry thread). In `review` mode an unknown agent becomes pending.
  void note_seen(const std::string& agent, const std::string& via, config::AgentApproval mode);

 private:
  explicit Registry(sqlite3* db) : db_(db) {}
  std::string execute(const char* sql, const std::vector<std::string>& parameters);
  bool refresh();
  void write_inventory();

  sqlite3* db_;
  std::atomic<std::shared_ptr<const Approvals>> approvals_;
  std::atomic<uint64_t> approvals_version_{0};
  int64_t data_version_ = -1;
  static constexpr size_t kSeenMax = 65'536;  // inventory notes waiting for the registry thread
  struct Seen {
    std::string via;
    config::AgentApproval mode;
  };
  std::mutex seen_mutex_;
  std::map<std::string, Seen> seen_;  // bounded by kSeenMax (newer notes of a name replace older)
  std::atomic<bool> stopping_{false};
  std::thread watcher_;
};

}  // namespace gatehouse::server
