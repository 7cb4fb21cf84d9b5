#include "gatehouse/server/registry.h"

#include <pwd.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>
#include <filesystem>

#include "gatehouse/config/config_types.h"
#include "gatehouse/log/log.h"
#include "store/pg.h"

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
    "ALTER TABLE agents ADD COLUMN last_heartbeat_unix_s INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN health TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE agents ADD COLUMN path TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE gateways ADD COLUMN last_heartbeat_unix_s INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE gateways ADD COLUMN health TEXT NOT NULL DEFAULT ''",
};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

int64_t now_unix_s() { return static_cast<int64_t>(std::time(nullptr)); }

// SQLite's ?N parameters as PostgreSQL's $N.
std::string dollar_parameters(const std::string& sql) {
  std::string out = sql;
  for (size_t at = 0; (at = out.find('?', at)) != std::string::npos; ++at) {
    if (at + 1 < out.size() && std::isdigit(static_cast<unsigned char>(out[at + 1]))) out[at] = '$';
  }
  return out;
}

constexpr uint32_t kReconnectLogIntervalS = 60;
constexpr uint32_t kWatchSliceMs = 100;  // a group registry's watcher waits for NOTIFY this long at a time (stop, inventory)  // a group registry without its database says so this often

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

// The data folder and its registry belong to the user that runs the server:
// another user's process (root running `approve` before the first start)
// would leave files the server cannot write. Refused, naming the owner.
std::string ownership_refusal(const std::string& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0 || status.st_uid == ::geteuid()) return "";
  const passwd* owner = ::getpwuid(status.st_uid);
  const passwd* self = ::getpwuid(::geteuid());
  const std::string owner_name = owner != nullptr ? owner->pw_name : std::to_string(status.st_uid);
  const std::string self_name = self != nullptr ? self->pw_name : std::to_string(::geteuid());
  return path + " belongs to user " + owner_name + ", not to " + self_name +
         " who runs this: run it as that user (sudo -u " + owner_name + " gatehouse ...), or chown -R the data folder";
}

std::unique_ptr<Registry> Registry::open(const std::string& data_dir, std::string& why) {
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  const std::string path = data_dir + "/registry.db";
  for (const std::string& owned : {data_dir, path}) {
    why = ownership_refusal(owned);
    if (!why.empty()) return nullptr;
  }
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
  std::unique_ptr<Registry> registry(new Registry());
  registry->db_ = db;
  registry->refresh();
  return registry;
}

std::unique_ptr<Registry> Registry::open_postgresql(const std::string& dsn, std::string& why) {
  std::unique_ptr<Registry> registry(new Registry());
  registry->dsn_ = dsn;
  if (!registry->reconnect_postgresql(why)) return nullptr;
  if (!registry->refresh(true) && registry->approvals_.load() == nullptr) {
    why = "cannot read the group's approvals";
    return nullptr;
  }
  return registry;
}

std::unique_ptr<Registry> Registry::open(const config::Config& config, std::string& why) {
  if (config.store_backend == config::StoreBackend::postgresql) return open_postgresql(config.store_dsn, why);
  return open(config.data_dir, why);
}

// The group's tables are made by the store's migrations (pg::migrate); this
// connection LISTENs for approval changes.
bool Registry::reconnect_postgresql(std::string& why) {
  pg_ = pg::Connection::connect(dsn_, why);
  if (pg_ == nullptr) return false;
  std::vector<int> applied;
  if (!pg::migrate(*pg_, applied, why) || !pg_->exec("SET search_path = gatehouse; LISTEN gatehouse_approvals", why)) {
    pg_.reset();
    return false;
  }
  return true;
}

Registry::~Registry() {
  stopping_ = true;
  if (watcher_.joinable()) watcher_.join();
  if (db_ != nullptr) sqlite3_close(db_);
}

std::string Registry::execute(const std::string& sql, const std::vector<std::string>& parameters, Rows* rows) {
  if (db_ == nullptr) {
    std::lock_guard lock(db_mutex_);
    std::string why;
    if (pg_ == nullptr || !pg_->usable()) return "the group's database is not connected";
    pg::Result result;
    if (!pg_->exec(dollar_parameters(sql), parameters, result, why)) return why;
    if (rows != nullptr) {
      for (auto& row : result.rows) {
        auto& out = rows->emplace_back();
        for (auto& value : row) out.push_back(value.value_or(""));
      }
    }
    return "";
  }
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr) != SQLITE_OK) return sqlite3_errmsg(db_);
  for (size_t i = 0; i < parameters.size(); ++i) {
    sqlite3_bind_text(statement, static_cast<int>(i + 1), parameters[i].c_str(), -1, SQLITE_TRANSIENT);
  }
  int result = SQLITE_ROW;
  while ((result = sqlite3_step(statement)) == SQLITE_ROW && rows != nullptr) {
    auto& row = rows->emplace_back();
    for (int column = 0; column < sqlite3_column_count(statement); ++column) {
      const auto* value = reinterpret_cast<const char*>(sqlite3_column_text(statement, column));
      row.push_back(value != nullptr ? value : "");
    }
  }
  sqlite3_finalize(statement);
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
                            " scope = CASE ?2 WHEN '' THEN agents.scope ELSE ?2 END,"
                            " auth = CASE ?3 WHEN '' THEN agents.auth ELSE ?3 END",
                            {lower(name), lower(binding.scope), binding.auth})
                  : execute("DELETE FROM agents WHERE name = ?1", {lower(name)});
}

std::vector<GatewayRecord> Registry::gateways() {
  std::vector<GatewayRecord> records;
  Rows rows;
  execute("SELECT name, tier FROM gateways ORDER BY name", {}, &rows);
  for (auto& row : rows) records.push_back({std::move(row[0]), std::move(row[1])});
  return records;
}

std::vector<AgentRecord> Registry::agents(bool pending_only) {
  std::vector<AgentRecord> records;
  Rows rows;
  execute(std::string("SELECT name, state, first_seen_unix_s, last_seen_unix_s, via, scope, auth,"
                      " last_heartbeat_unix_s, health, path FROM agents") +
              (pending_only ? " WHERE state = 'pending'" : "") + " ORDER BY name",
          {}, &rows);
  for (auto& row : rows) {
    AgentRecord record;
    record.name = row[0];
    record.state = row[1] == "approved" ? AgentState::approved : row[1] == "pending" ? AgentState::pending : AgentState::rejected;
    record.first_seen_unix_s = std::stoll(row[2]);
    record.last_seen_unix_s = std::stoll(row[3]);
    record.via = row[4];
    record.binding = {row[5], row[6]};
    record.last_heartbeat_unix_s = std::stoll(row[7]);
    record.health = row[8];
    record.path = row[9];
    records.push_back(std::move(record));
  }
  return records;
}

// Reloads the approvals: locally when another connection (the CLI) changed
// the file, or when we did (`forced`: data_version counts only other
// connections' writes); in a group when told (NOTIFY) or forced.
bool Registry::refresh(bool forced) {
  if (db_ != nullptr) {
    Rows version;
    if (!execute("PRAGMA data_version", {}, &version).empty() || version.empty()) return false;
    const int64_t current = std::stoll(version[0][0]);
    if (!forced && current == data_version_ && approvals_.load() != nullptr) return false;
    data_version_ = current;
  }
  Rows gateways;
  Rows agents;
  if (!execute("SELECT name, tier FROM gateways", {}, &gateways).empty() ||
      !execute("SELECT name, scope, auth FROM agents WHERE state = 'approved'", {}, &agents).empty()) {
    return false;  // the group's database is away: the approvals in force stay
  }
  auto approvals = std::make_shared<Approvals>();
  for (auto& row : gateways) {
    std::string tier = row[1].empty() ? row[0] : std::move(row[1]);
    approvals->gateways.emplace(std::move(row[0]), std::move(tier));
  }
  for (auto& row : agents) approvals->agents.emplace(std::move(row[0]), AgentBinding{row[1], row[2]});
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
  write("BEGIN", {});
  for (const auto& [name, note] : seen) {
    // A new agent is pending in `review` mode, approved in `auto` mode, and not
    // recorded in `reject` mode (like SCOM, it is simply refused).
    if (note.mode != config::AgentApproval::reject) {
      write("INSERT INTO agents(name, state, first_seen_unix_s, scope, auth) VALUES(?1, ?2, ?3, ?4, ?5)"
              " ON CONFLICT(name) DO NOTHING",
              {lower(name), note.mode == config::AgentApproval::automatic ? "approved" : "pending", now,
               note.binding.scope, note.binding.auth});
    }
    // Approved without a scope: its first session binds it (trust on first use).
    write("UPDATE agents SET scope = CASE scope WHEN '' THEN ?2 ELSE scope END,"
            " auth = CASE auth WHEN '' THEN ?3 ELSE auth END WHERE name = ?1 AND state = 'approved'",
            {lower(name), note.binding.scope, note.binding.auth});
    write("UPDATE agents SET last_seen_unix_s = ?2, via = ?3,"
            " first_seen_unix_s = CASE first_seen_unix_s WHEN 0 THEN ?2 ELSE first_seen_unix_s END WHERE name = ?1",
            {lower(name), now, note.via});
  }
  write("COMMIT", {});
  return true;
}

// A write the server makes on its own (inventory, heartbeats): a failure is
// said, never ignored (a registry.db another user owns, a full disk).
void Registry::write(const std::string& sql, const std::vector<std::string>& parameters) {
  if (const std::string problem = execute(sql, parameters); !problem.empty()) {
    log::emit(log::Level::error, log::EventId::registry_write_failed,
              "the registry cannot be written (agents seen and heartbeats are not recorded): " + problem);
  }
}

void Registry::write_heartbeats(bool gateways, const std::vector<HeartbeatRecord>& records) {
  if (records.empty()) return;
  write("BEGIN", {});
  for (const HeartbeatRecord& record : records) {
    const std::string problem =
        gateways ? execute("UPDATE gateways SET last_heartbeat_unix_s = ?2, health = ?3 WHERE name = ?1",
                           {lower(record.name), std::to_string(record.unix_s), record.health})
                 : execute("UPDATE agents SET last_heartbeat_unix_s = ?2, health = ?3, path = ?4 WHERE name = ?1",
                           {lower(record.name), std::to_string(record.unix_s), record.health, record.path});
    if (!problem.empty()) {
      log::emit(log::Level::error, log::EventId::registry_write_failed,
                "cannot record a heartbeat in the registry (gatehouse agents may show it late): " + problem,
                {{"name", record.name}});
    }
  }
  write("COMMIT", {});
}

int64_t Registry::stored_heartbeat(bool gateway, const std::string& name) {
  Rows rows;
  execute(gateway ? "SELECT last_heartbeat_unix_s FROM gateways WHERE name = ?1"
                  : "SELECT last_heartbeat_unix_s FROM agents WHERE name = ?1",
          {lower(name)}, &rows);
  return rows.empty() || rows[0].empty() ? 0 : std::stoll(rows[0][0]);
}

void Registry::watch(std::function<uint32_t()> poll_ms) {
  if (db_ == nullptr) {
    watch_postgresql(std::move(poll_ms));
    return;
  }
  // The server writes only the inventory (last seen, via): without an fsync per
  // commit, a reconnect storm's thousands of updates stay off the disk queue
  // the event store's fdatasync waits in. WAL keeps the file whole on a crash;
  // the last updates may be lost, and come back with the agents' next sessions.
  execute("PRAGMA synchronous=NORMAL", {});
  watcher_ = std::thread([this, poll_ms = std::move(poll_ms)] {
    while (!stopping_.load()) {
      refresh(write_inventory());
      if (round_hook_) round_hook_();
      std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms()));
    }
    write_inventory();
  });
}

// A group's: a NOTIFY from any server's change (a trigger on the tables)
// wakes the watcher at once; after a reconnect it looks anyway (poll_ms
// paces only the reconnects). A lost database
// keeps the approvals in force (said once a minute) until it is back.
void Registry::watch_postgresql(std::function<uint32_t()> poll_ms) {
  watcher_ = std::thread([this, poll_ms = std::move(poll_ms)] {
    int64_t said_at_s = 0;
    while (!stopping_.load()) {
      std::string why;
      bool notified = false;
      bool ok = false;
      {
        std::lock_guard lock(db_mutex_);
        ok = pg_ != nullptr && pg_->usable();
        if (!ok) notified = ok = reconnect_postgresql(why);  // changes while away were not told: look
      }
      if (ok) {
        const bool wrote = write_inventory();
        if (round_hook_) round_hook_();
        std::lock_guard lock(db_mutex_);
        bool told = false;
        ok = pg_ != nullptr && pg_->wait_notification(std::min(poll_ms(), kWatchSliceMs), told, why);
        notified = notified || told || wrote;
      }
      if (ok) {
        if (notified) refresh(true);
        continue;
      }
      if (now_unix_s() - said_at_s >= kReconnectLogIntervalS) {
        said_at_s = now_unix_s();
        log::emit(log::Level::error, log::EventId::database_unavailable,
                  "the group's registry cannot reach PostgreSQL; the approvals in force stay until it is back: " + why);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms()));
    }
    write_inventory();
  });
}

}  // namespace gatehouse::server
