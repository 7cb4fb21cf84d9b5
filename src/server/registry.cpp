#include "gatehouse/server/registry.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>
#include <filesystem>

namespace gatehouse::server {
namespace {

constexpr const char* kSchema =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS gateways(name TEXT PRIMARY KEY, approved_unix_s INTEGER NOT NULL,"
    " tier TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS agents(name TEXT PRIMARY KEY,"
    " state TEXT NOT NULL CHECK(state IN ('approved','pending','rejected')),"
    " first_seen_unix_s INTEGER NOT NULL DEFAULT 0, last_seen_unix_s INTEGER NOT NULL DEFAULT 0,"
    " via TEXT NOT NULL DEFAULT '', scope TEXT NOT NULL DEFAULT '', auth TEXT NOT NULL DEFAULT '');";

// Registries written before tiers: their tables gain the columns (an error
// says the column is there already).
constexpr const char* kUpgrades[] = {
    "ALTER TABLE gateways ADD COLUMN tier TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN scope TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN auth TEXT NOT NULL DEFAULT ''",
};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

int64_t now_unix_s() { return static_cast<int64_t>(std::time(nullptr)); }

// A prepared statement, finalized on scope exit.
struct Statement {
  Statement(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &handle, nullptr); }
  ~Statement() { sqlite3_finalize(handle); }
  std::string text(int column) const {
    const auto* value = reinterpret_cast<const char*>(sqlite3_column_text(handle, column));
    return value != nullptr ? value : "";
  }
  sqlite3_stmt* handle = nullptr;
};

}  // namespace

const char* auth_name(proto::AuthMethod auth) { return auth == proto::AuthMethod::kerberos ? "kerberos" : "cert"; }

const char* to_string(AgentState state) {
  switch (state) {
    case AgentState::approved: return "approved";
    case AgentState::pending: return "pending";
    case AgentState::rejected: return "rejected";
  }
  return "?";
}

std::unique_ptr<Registry> Registry::open(const std::string& data_dir, std::string& why) {
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  const std::string path = data_dir + "/registry.db";
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) !=
      SQLITE_OK) {
    why = "cannot open " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return nullptr;
  }
  sqlite3_busy_timeout(db, 5'000);  // the CLI and the server share the file
  char* message = nullptr;
  if (sqlite3_exec(db, kSchema, nullptr, nullptr, &message) != SQLITE_OK) {
    why = path + ": " + (message ? message : "schema failed");
    sqlite3_free(message);
    sqlite3_close(db);
    return nullptr;
  }
  for (const char* upgrade : kUpgrades) sqlite3_exec(db, upgrade, nullptr, nullptr, nullptr);
  std::unique_ptr<Registry> registry(new Registry(db));
  registry->refresh();
  return registry;
}

Registry::~Registry() {
  stopping_ = true;
  if (watcher_.joinable()) watcher_.join();
  sqlite3_close(db_);
}

std::string Registry::execute(const char* sql, const std::vector<std::string>& parameters) {
  Statement statement(db_, sql);
  for (size_t i = 0; i < parameters.size(); ++i) {
    sqlite3_bind_text(statement.handle, static_cast<int>(i + 1), parameters[i].c_str(), -1, SQLITE_TRANSIENT);
  }
  const int result = sqlite3_step(statement.handle);
  return result == SQLITE_DONE || result == SQLITE_ROW ? "" : sqlite3_errmsg(db_);
}

std::string Registry::set_gateway(const std::string& name, bool approved, const std::string& tier) {
  return approved ? execute("INSERT INTO gateways(name, approved_unix_s, tier) VALUES(?1, ?2, ?3)"
                            " ON CONFLICT(name) DO UPDATE SET tier = excluded.tier",
                            {lower(name), std::to_string(now_unix_s()), lower(tier)})
                  : execute("DELETE FROM gateways WHERE name = ?1", {lower(name)});
}

std::string Registry::set_agent(const std::string& name, bool approved, const AgentBinding& binding) {
  return approved ? execute("INSERT INTO agents(name, state, scope, auth) VALUES(?1, 'approved', ?2, ?3)"
                            " ON CONFLICT(name) DO UPDATE SET state = 'approved',"
                            " scope = CASE ?2 WHEN '' THEN scope ELSE ?2 END,"
                            " auth = CASE ?3 WHEN '' THEN auth ELSE ?3 END",
                            {lower(name), lower(binding.scope), binding.auth})
                  : execute("DELETE FROM agents WHERE name = ?1", {lower(name)});
}

std::vector<GatewayRecord> Registry::gateways() {
  std::vector<GatewayRecord> records;
  Statement statement(db_, "SELECT name, tier FROM gateways ORDER BY name");
  while (sqlite3_step(statement.handle) == SQLITE_ROW) records.push_back({statement.text(0), statement.text(1)});
  return records;
}

std::vector<AgentRecord> Registry::agents(bool pending_only) {
  std::vector<AgentRecord> records;
  Statement statement(db_, pending_only ? "SELECT name, state, first_seen_unix_s, last_seen_unix_s, via, scope, auth"
                                          " FROM agents WHERE state = 'pending' ORDER BY name"
                                        : "SELECT name, state, first_seen_unix_s, last_seen_unix_s, via, scope, auth"
                                          " FROM agents ORDER BY name");
  while (sqlite3_step(statement.handle) == SQLITE_ROW) {
    AgentRecord record;
    record.name = statement.text(0);
    const std::string state = statement.text(1);
    record.state = state == "approved" ? AgentState::approved : state == "pending" ? AgentState::pending : AgentState::rejected;
    record.first_seen_unix_s = sqlite3_column_int64(statement.handle, 2);
    record.last_seen_unix_s = sqlite3_column_int64(statement.handle, 3);
    record.via = statement.text(4);
    record.binding = {statement.text(5), statement.text(6)};
    records.push_back(std::move(record));
  }
  return records;
}

// Reloads the approvals when another connection (the CLI) changed the file,
// or when we did (`forced`: data_version counts only other connections' writes).
bool Registry::refresh(bool forced) {
  Statement version(db_, "PRAGMA data_version");
  if (sqlite3_step(version.handle) != SQLITE_ROW) return false;
  const int64_t current = sqlite3_column_int64(version.handle, 0);
  if (!forced && current == data_version_ && approvals_.load() != nullptr) return false;
  data_version_ = current;
  auto approvals = std::make_shared<Approvals>();
  for (GatewayRecord& gateway : gateways()) {
    std::string tier = gateway.tier.empty() ? gateway.name : std::move(gateway.tier);
    approvals->gateways.emplace(std::move(gateway.name), std::move(tier));
  }
  Statement agents(db_, "SELECT name, scope, auth FROM agents WHERE state = 'approved'");
  while (sqlite3_step(agents.handle) == SQLITE_ROW) {
    approvals->agents.emplace(agents.text(0), AgentBinding{agents.text(1), agents.text(2)});
  }
  // Unchanged (our own inventory writes, mostly): the shards need not look again.
  if (const auto previous = approvals_.load(); previous != nullptr && *previous == *approvals) return false;
  approvals_.store(std::move(approvals));
  approvals_version_.fetch_add(1, std::memory_order_release);
  return true;
}

void Registry::note_seen(const std::string& agent, const std::string& via, const AgentBinding& binding,
                         config::AgentApproval mode) {
  std::lock_guard lock(seen_mutex_);
  if (seen_.size() >= kSeenMax && !seen_.contains(agent)) return;  // inventory is best effort under a flood
  seen_[agent] = {via, binding, mode};
}

// True when it wrote (new agents, bindings: the approvals may have changed).
bool Registry::write_inventory() {
  std::map<std::string, Seen> seen;
  {
    std::lock_guard lock(seen_mutex_);
    seen.swap(seen_);
  }
  if (seen.empty()) return false;
  const std::string now = std::to_string(now_unix_s());
  execute("BEGIN", {});
  for (const auto& [name, note] : seen) {
    // A new agent is pending in `review` mode, approved in `auto` mode, and not
    // recorded in `reject` mode (like SCOM, it is simply refused).
    if (note.mode != config::AgentApproval::reject) {
      execute("INSERT INTO agents(name, state, first_seen_unix_s, scope, auth) VALUES(?1, ?2, ?3, ?4, ?5)"
              " ON CONFLICT(name) DO NOTHING",
              {lower(name), note.mode == config::AgentApproval::automatic ? "approved" : "pending", now,
               note.binding.scope, note.binding.auth});
    }
    // Approved without a scope: its first session binds it (trust on first use).
    execute("UPDATE agents SET scope = CASE scope WHEN '' THEN ?2 ELSE scope END,"
            " auth = CASE auth WHEN '' THEN ?3 ELSE auth END WHERE name = ?1 AND state = 'approved'",
            {lower(name), note.binding.scope, note.binding.auth});
    execute("UPDATE agents SET last_seen_unix_s = ?2, via = ?3,"
            " first_seen_unix_s = CASE first_seen_unix_s WHEN 0 THEN ?2 ELSE first_seen_unix_s END WHERE name = ?1",
            {lower(name), now, note.via});
  }
  execute("COMMIT", {});
  return true;
}

void Registry::watch(uint32_t poll_ms) {
  // The server writes only the inventory (last seen, via): without an fsync per
  // commit, a reconnect storm's thousands of updates stay off the disk queue
  // the event store's fdatasync waits in. WAL keeps the file whole on a crash;
  // the last updates may be lost, and come back with the agents' next sessions.
  execute("PRAGMA synchronous=NORMAL", {});
  watcher_ = std::thread([this, poll_ms] {
    while (!stopping_.load()) {
      refresh(write_inventory());
      std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
    }
    write_inventory();
  });
}

}  // namespace gatehouse::server
