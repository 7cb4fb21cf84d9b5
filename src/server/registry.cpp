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
    "CREATE TABLE IF NOT EXISTS gateways(name TEXT PRIMARY KEY, approved_unix_s INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS agents(name TEXT PRIMARY KEY,"
    " state TEXT NOT NULL CHECK(state IN ('approved','pending','rejected')),"
    " first_seen_unix_s INTEGER NOT NULL DEFAULT 0, last_seen_unix_s INTEGER NOT NULL DEFAULT 0,"
    " via TEXT NOT NULL DEFAULT '');";

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

std::string Registry::set_gateway(const std::string& name, bool approved) {
  return approved ? execute("INSERT INTO gateways(name, approved_unix_s) VALUES(?1, ?2) ON CONFLICT(name) DO NOTHING",
                            {lower(name), std::to_string(now_unix_s())})
                  : execute("DELETE FROM gateways WHERE name = ?1", {lower(name)});
}

std::string Registry::set_agent(const std::string& name, bool approved) {
  return approved ? execute("INSERT INTO agents(name, state) VALUES(?1, 'approved')"
                            " ON CONFLICT(name) DO UPDATE SET state = 'approved'",
                            {lower(name)})
                  : execute("DELETE FROM agents WHERE name = ?1", {lower(name)});
}

std::vector<std::string> Registry::gateways() {
  std::vector<std::string> names;
  Statement statement(db_, "SELECT name FROM gateways ORDER BY name");
  while (sqlite3_step(statement.handle) == SQLITE_ROW) names.push_back(statement.text(0));
  return names;
}

std::vector<AgentRecord> Registry::agents(bool pending_only) {
  std::vector<AgentRecord> records;
  Statement statement(db_, pending_only ? "SELECT name, state, first_seen_unix_s, last_seen_unix_s, via FROM agents"
                                          " WHERE state = 'pending' ORDER BY name"
                                        : "SELECT name, state, first_seen_unix_s, last_seen_unix_s, via FROM agents"
                                          " ORDER BY name");
  while (sqlite3_step(statement.handle) == SQLITE_ROW) {
    AgentRecord record;
    record.name = statement.text(0);
    const std::string state = statement.text(1);
    record.state = state == "approved" ? AgentState::approved : state == "pending" ? AgentState::pending : AgentState::rejected;
    record.first_seen_unix_s = sqlite3_column_int64(statement.handle, 2);
    record.last_seen_unix_s = sqlite3_column_int64(statement.handle, 3);
    record.via = statement.text(4);
    records.push_back(std::move(record));
  }
  return records;
}

// Reloads the approvals when another connection (the CLI) changed the file.
bool Registry::refresh() {
  Statement version(db_, "PRAGMA data_version");
  if (sqlite3_step(version.handle) != SQLITE_ROW) return false;
  const int64_t current = sqlite3_column_int64(version.handle, 0);
  if (current == data_version_ && approvals_.load() != nullptr) return false;
  data_version_ = current;
  auto approvals = std::make_shared<Approvals>();
  for (std::string& name : gateways()) approvals->gateways.insert(std::move(name));
  Statement agents(db_, "SELECT name FROM agents WHERE state = 'approved'");
  while (sqlite3_step(agents.handle) == SQLITE_ROW) approvals->agents.insert(agents.text(0));
  approvals_.store(std::move(approvals));
  approvals_version_.fetch_add(1, std::memory_order_release);
  return true;
}

void Registry::note_seen(const std::string& agent, const std::string& via, config::AgentApproval mode) {
  std::lock_guard lock(seen_mutex_);
  if (seen_.size() >= kSeenMax && !seen_.contains(agent)) return;  // inventory is best effort under a flood
  seen_[agent] = {via, mode};
}

void Registry::write_inventory() {
  std::map<std::string, Seen> seen;
  {
    std::lock_guard lock(seen_mutex_);
    seen.swap(seen_);
  }
  if (seen.empty()) return;
  const std::string now = std::to_string(now_unix_s());
  execute("BEGIN", {});
  for (const auto& [name, note] : seen) {
    // A new agent is pending in `review` mode, approved in `auto` mode, and not
    // recorded in `reject` mode (like SCOM, it is simply refused).
    if (note.mode != config::AgentApproval::reject) {
      execute("INSERT INTO agents(name, state, first_seen_unix_s) VALUES(?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
              {lower(name), note.mode == config::AgentApproval::automatic ? "approved" : "pending", now});
    }
    execute("UPDATE agents SET last_seen_unix_s = ?2, via = ?3,"
            " first_seen_unix_s = CASE first_seen_unix_s WHEN 0 THEN ?2 ELSE first_seen_unix_s END WHERE name = ?1",
            {lower(name), now, note.via});
  }
  execute("COMMIT", {});
}

void Registry::watch(uint32_t poll_ms) {
  // The server writes only the inventory (last seen, via): without an fsync per
  // commit, a reconnect storm's thousands of updates stay off the disk queue
  // the event store's fdatasync waits in. WAL keeps the file whole on a crash;
  // the last updates may be lost, and come back with the agents' next sessions.
  execute("PRAGMA synchronous=NORMAL", {});
  watcher_ = std::thread([this, poll_ms] {
    while (!stopping_.load()) {
      write_inventory();
      refresh();
      std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
    }
    write_inventory();
  });
}

}  // namespace gatehouse::server
