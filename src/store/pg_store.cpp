#include "gatehouse/store/pg_store.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>

#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"
#include "store/pg.h"

namespace gatehouse::store {
namespace {

constexpr int64_t kUsPerDay = 86'400'000'000;
constexpr int64_t kPgEpochUnixUs = 946'684'800'000'000;  // 2000-01-01, where timestamptz counts from
constexpr uint32_t kRefreshOverlapS = 2;  // a commit that began before the last refresh is seen by the next

int64_t steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Binary COPY (PostgreSQL's "PGCOPY" format): big-endian fields, each with
// its length, -1 for NULL.
class CopyWriter {
 public:
  CopyWriter() {
    static constexpr char kSignature[] = "PGCOPY\n\377\r\n";
    bytes_.append(kSignature, 11);  // with its terminating NUL
    put32(0);                       // flags
    put32(0);                       // header extension length
  }
  void row(int16_t fields) { put16(fields); }
  void int8(int64_t value) {
    put32(8);
    put64(value);
  }
  void text(std::string_view value) {
    put32(static_cast<int32_t>(value.size()));
    bytes_.append(value);
  }
  void bytes(const std::byte* data, uint32_t size) {
    put32(static_cast<int32_t>(size));
    bytes_.append(reinterpret_cast<const char*>(data), size);
  }
  void null() { put32(-1); }
  const std::string& finish() {
    put16(-1);
    return bytes_;
  }

 private:
  void put16(int16_t value) { put(static_cast<uint64_t>(static_cast<uint16_t>(value)), 2); }
  void put32(int32_t value) { put(static_cast<uint64_t>(static_cast<uint32_t>(value)), 4); }
  void put64(int64_t value) { put(static_cast<uint64_t>(value), 8); }
  void put(uint64_t value, int size) {
    for (int i = size - 1; i >= 0; --i) bytes_.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
  std::string bytes_;
};

// bytea in text form: "\\x" and two hex digits a byte.
bool unhex_bytea(const std::string& text, std::vector<std::byte>& out) {
  if (!text.starts_with("\\x") || text.size() % 2 != 0) return false;
  out.clear();
  out.reserve((text.size() - 2) / 2);
  const auto digit = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (size_t at = 2; at < text.size(); at += 2) out.push_back(static_cast<std::byte>(digit(text[at]) * 16 + digit(text[at + 1])));
  return true;
}

std::string day_text(int64_t unix_us) {
  const std::time_t seconds = static_cast<std::time_t>(unix_us / 1'000'000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[16];
  std::strftime(text, sizeof text, "%Y-%m-%d", &utc);
  return text;
}

}  // namespace

// One (agent, incarnation) of a group: where it stood before, and after.
struct PgStore::Progress {
  uint64_t first_seq = 0;  // the group's lowest (its base, if the row is new, is first_seq - 1)
  uint64_t last_seq = 0;   // the group's highest
  uint64_t base_seq = 0;
  uint64_t durable_before = 0;
  uint64_t appended_seq = 0;
};

PgStore::PgStore(std::string dsn, std::string server_name, const StoreLimits& limits)
    : Backend(limits), dsn_(std::move(dsn)), server_name_(std::move(server_name)) {}

PgStore::~PgStore() { stop(); }

std::unique_ptr<PgStore> PgStore::open(const std::string& dsn, const std::string& server_name,
                                       const StoreLimits& limits, std::string& why) {
  std::unique_ptr<PgStore> store(new PgStore(dsn, server_name, limits));
  if (!store->ensure_connected(why)) return nullptr;
  std::vector<int> applied;
  if (!pg::migrate(*store->conn_, applied, why)) return nullptr;
  if (!applied.empty()) {
    log::emit(log::Level::info, log::EventId::database_migrated,
              "the group's schema is now version " + std::to_string(applied.back()),
              {{"version", applied.back()}, {"from", applied.front() - 1}});
  }
  if (!store->refresh(why)) return nullptr;
  return store;
}

bool PgStore::ensure_connected(std::string& why) {
  if (conn_ != nullptr && conn_->usable()) return true;
  conn_ = pg::Connection::connect(dsn_, why);
  if (conn_ == nullptr) return false;
  partitions_until_unix_us_ = 0;  // the database may be another (a promoted standby): look again
  return true;
}

ResumePoint PgStore::resume_point(std::string_view agent, uint64_t incarnation) const {
  std::lock_guard lock(mutex_);
  return resume_point_of(agents_, agent, incarnation);
}

StoreStats PgStore::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

bool PgStore::read_stats(const std::string& dsn, StoreStats& stats, std::string& why) {
  auto conn = pg::Connection::connect(dsn, why);
  if (conn == nullptr) return false;
  pg::Result totals;
  if (!conn->exec("SELECT coalesce(sum(events), 0), coalesce(sum(bytes), 0), coalesce(sum(duplicates_dropped), 0), "
                  "coalesce(sum(gaps), 0), coalesce(sum(events_lost), 0), "
                  "(SELECT count(DISTINCT agent) FROM gatehouse.incarnations), "
                  "(SELECT count(*) FROM pg_inherits WHERE inhparent = 'gatehouse.events'::regclass) "
                  "FROM gatehouse.server_counters",
                  {}, totals, why)) {
    return false;
  }
  stats = {};
  stats.events = totals.u64(0, 0);
  stats.bytes = totals.u64(0, 1);
  stats.duplicates_dropped = totals.u64(0, 2);
  stats.gaps = totals.u64(0, 3);
  stats.events_lost = totals.u64(0, 4);
  stats.agents = totals.u64(0, 5);
  stats.segments = totals.u64(0, 6);  // the events' partitions
  return true;
}

bool PgStore::dump(const std::string& dsn, std::string_view agent,
                   const std::function<void(const StoredEvent&)>& on_event, std::string& why, int64_t since_unix_us) {
  constexpr int kFetchRows = 5'000;
  auto conn = pg::Connection::connect(dsn, why);
  if (conn == nullptr) return false;
  pg::Result ignored;
  if (!conn->exec("BEGIN", why) ||
      !conn->exec("DECLARE events NO SCROLL CURSOR FOR SELECT agent, incarnation, seq, gap_first_seq, payload, "
                  "(extract(epoch FROM received_at) * 1000000)::bigint, path, server FROM gatehouse.events "
                  "WHERE ($1 = '' OR agent = $1) AND received_at >= to_timestamp($2::bigint / 1000000.0) "
                  "ORDER BY received_at, agent, incarnation, seq",
                  {std::string(agent), std::to_string(since_unix_us)}, ignored, why)) {
    return false;
  }
  for (;;) {
    pg::Result rows;
    if (!conn->exec("FETCH " + std::to_string(kFetchRows) + " FROM events", {}, rows, why)) return false;
    for (const auto& row : rows.rows) {
      StoredEvent event;
      event.agent = *row[0];
      event.incarnation = static_cast<uint64_t>(std::stoll(*row[1]));
      event.seq = static_cast<uint64_t>(std::stoll(*row[2]));
      event.gap_first_seq = row[3] ? static_cast<uint64_t>(std::stoll(*row[3])) : 0;
      if (row[4] && !unhex_bytea(*row[4], event.payload)) {
        why = "a payload that is not bytea hex";
        return false;
      }
      event.received_unix_us = std::stoll(*row[5]);
      event.path = *row[6];
      event.server = *row[7];
      on_event(event);
    }
    if (rows.rows.size() < kFetchRows) break;
  }
  return conn->exec("COMMIT", why);
}

bool PgStore::agent_summaries(const std::string& dsn, std::vector<AgentSummary>& summaries, std::string& why) {
  auto conn = pg::Connection::connect(dsn, why);
  if (conn == nullptr) return false;
  pg::Result rows;
  if (!conn->exec("SELECT agent, count(*) FILTER (WHERE gap_first_seq IS NULL), "
                  "coalesce(sum(seq - gap_first_seq + 1) FILTER (WHERE gap_first_seq IS NOT NULL), 0), "
                  "count(DISTINCT incarnation), max(seq) FROM gatehouse.events GROUP BY agent ORDER BY agent",
                  {}, rows, why)) {
    return false;
  }
  for (size_t row = 0; row < rows.rows.size(); ++row) {
    summaries.push_back({rows.text(row, 0), rows.u64(row, 1), rows.u64(row, 2), rows.u64(row, 3), rows.u64(row, 4)});
  }
  return true;
}

void PgStore::learn(const std::string& agent, uint64_t incarnation, uint64_t base_seq, uint64_t durable_seq) {
  AgentProgress& state = agents_[agent];
  SeqState& seqs = state.incarnations[incarnation];
  seqs.base_seq = base_seq;
  seqs.durable_seq = std::max(seqs.durable_seq, durable_seq);
  state.latest_incarnation = incarnation;
  stats_.agents = agents_.size();
}

// The group's progress since the last look (every row at open): what other
// servers stored, so a session failing over here resumes where the group is.
bool PgStore::refresh(std::string& why) {
  pg::Result now;
  pg::Result rows;
  if (!conn_->exec("SELECT now()::text", {}, now, why)) return false;
  if (!conn_->exec("SELECT agent, incarnation, base_seq, durable_seq FROM gatehouse.incarnations "
                   "WHERE $1 = '' OR updated_at >= $1::timestamptz - interval '" + std::to_string(kRefreshOverlapS) +
                       " seconds' ORDER BY updated_at",
                   {refreshed_at_}, rows, why)) {
    return false;
  }
  std::lock_guard lock(mutex_);
  for (size_t row = 0; row < rows.rows.size(); ++row) {
    learn(rows.text(row, 0), rows.u64(row, 1), rows.u64(row, 2), rows.u64(row, 3));
  }
  refreshed_at_ = now.text(0, 0);
  return true;
}

void PgStore::on_idle() {
  std::string why;
  if (down_ || !ensure_connected(why) || !refresh(why)) {
    conn_.reset();  // the next commit says it, and retries
    return;
  }
  if (limits_.retention_days == 0 ||
      (retention_checked_ms_ != 0 && steady_now_ms() - retention_checked_ms_ < kRetentionCheckMs)) {
    return;
  }
  retention_checked_ms_ = steady_now_ms();
  if (!drop_expired(why)) {
    log::emit(log::Level::warning, log::EventId::database_retention,
              "cannot drop the days past [store] retention_days (tried again in an hour): " + why);
  }
}

// Whole days past retention_days go at once (DROP of their partition: no
// row-by-row delete, no bloat). Servers take turns under the partitions' lock.
bool PgStore::drop_expired(std::string& why) {
  pg::Result expired;
  if (!conn_->exec("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                   "WHERE i.inhparent = 'gatehouse.events'::regclass AND c.relname ~ '^events_p[0-9]{8}$' "
                   "AND to_date(substr(c.relname, 9), 'YYYYMMDD') + 1 <= (now() AT TIME ZONE 'UTC')::date - $1::int "
                   "ORDER BY 1",
                   {std::to_string(limits_.retention_days)}, expired, why)) {
    return false;
  }
  for (size_t row = 0; row < expired.rows.size(); ++row) {
    const std::string& name = expired.text(row, 0);
    if (!conn_->exec("SELECT pg_advisory_xact_lock(hashtext('gatehouse.partitions')); "
                     "DROP TABLE IF EXISTS gatehouse." + name,
                     why)) {
      return false;
    }
    log::emit(log::Level::info, log::EventId::database_retention,
              "dropped the events of " + name.substr(8) + " (older than [store] retention_days)",
              {{"partition", name}, {"retention_days", limits_.retention_days}});
  }
  return true;
}

void PgStore::take(Batch& batch) { group_bytes_ += batch.payloads.size(); }

// Daily partitions of gatehouse.events, today's and tomorrow's, made before
// they are needed (servers take turns under a lock; rows of a day without one,
// a clock set back, land in the default partition).
bool PgStore::ensure_partition(int64_t unix_us, std::string& why) {
  if (unix_us < partitions_until_unix_us_) return true;
  const int64_t day_us = unix_us - unix_us % kUsPerDay;
  std::string sql = "SELECT pg_advisory_xact_lock(hashtext('gatehouse.partitions')); "
                    "CREATE TABLE IF NOT EXISTS gatehouse.events_default PARTITION OF gatehouse.events DEFAULT; ";
  for (int64_t day = day_us; day <= day_us + kUsPerDay; day += kUsPerDay) {
    std::string name = day_text(day);
    const std::string from = name;
    std::erase(name, '-');
    sql += "CREATE TABLE IF NOT EXISTS gatehouse.events_p" + name + " PARTITION OF gatehouse.events FOR VALUES FROM ('" +
           from + " 00:00:00+00') TO ('" + day_text(day + kUsPerDay) + " 00:00:00+00'); ";
  }
  if (!conn_->exec(sql, why)) {  // one implicit transaction
    why = "cannot create the events' partitions: " + why;
    return false;
  }
  partitions_until_unix_us_ = day_us + 2 * kUsPerDay;
  return true;
}

// One transaction for the group, in two round trips: each (agent,
// incarnation) row moves to the group's highest seq and says where it was
// (events at or below that are duplicates), the rest go in by binary COPY,
// and only a COMMIT that succeeded lets them be acknowledged.
bool PgStore::try_commit(std::vector<Batch*>& group, std::string& why) {
  if (!ensure_connected(why)) return false;
  std::map<std::pair<std::string, uint64_t>, Progress> progress;
  int64_t latest_us = 0;
  for (const Batch* batch : group) {
    latest_us = std::max(latest_us, batch->taken_unix_us);
    for (const Batch::Entry& entry : batch->entries) {
      Progress& p = progress[{entry.agent, entry.incarnation}];
      const uint64_t first = entry.gap_first_seq != 0 ? entry.gap_first_seq : entry.seq;
      p.first_seq = p.first_seq == 0 ? first : std::min(p.first_seq, first);
      p.last_seq = std::max(p.last_seq, entry.seq);
    }
  }
  if (!ensure_partition(latest_us, why)) return false;
  std::vector<std::string> agents;
  std::vector<int64_t> incarnations;
  std::vector<int64_t> bases;
  std::vector<int64_t> lasts;
  for (const auto& [key, p] : progress) {
    agents.push_back(key.first);
    incarnations.push_back(static_cast<int64_t>(key.second));
    bases.push_back(static_cast<int64_t>(p.first_seq - 1));
    lasts.push_back(static_cast<int64_t>(p.last_seq));
  }
  // One round trip: BEGIN, each row moved to its new durable seq in name
  // order (the upsert locks it: two servers cannot deadlock on a pair, and a
  // second server waits, then sees the first's commit), returning the seq it
  // had (at or below it: duplicates), and the COPY, whose rows follow.
  pg::Result locked;
  if (!conn_->queue("BEGIN", why) ||
      !conn_->queue("INSERT INTO gatehouse.incarnations AS i (agent, incarnation, base_seq, durable_seq, prev_durable_seq) "
                    "SELECT a, n, b, d, b FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[]) AS u(a, n, b, d) "
                    "ORDER BY a, n ON CONFLICT (agent, incarnation) DO UPDATE SET prev_durable_seq = i.durable_seq, "
                    "durable_seq = greatest(i.durable_seq, EXCLUDED.durable_seq), updated_at = now() "
                    "RETURNING agent, incarnation, base_seq, prev_durable_seq",
                    {pg::text_array(agents), pg::int8_array(incarnations), pg::int8_array(bases),
                     pg::int8_array(lasts)},
                    why) ||
      !conn_->queue("COPY gatehouse.events (received_at, agent, incarnation, seq, gap_first_seq, path, server, "
                    "payload) FROM STDIN (FORMAT binary)",
                    why) ||
      !conn_->finish(nullptr, why) || !conn_->finish(&locked, why)) {
    return false;
  }
  for (size_t row = 0; row < locked.rows.size(); ++row) {
    Progress& p = progress.at({locked.text(row, 0), locked.u64(row, 1)});
    p.base_seq = locked.u64(row, 2);
    p.durable_before = p.appended_seq = locked.u64(row, 3);
  }
  StoreStats added;
  CopyWriter copy;
  for (const Batch* batch : group) {
    for (const Batch::Entry& entry : batch->entries) {
      Progress& p = progress.at({entry.agent, entry.incarnation});
      if (entry.seq <= p.appended_seq) {
        ++added.duplicates_dropped;
        continue;
      }
      copy.row(8);
      copy.int8(batch->taken_unix_us - kPgEpochUnixUs);
      copy.text(entry.agent);
      copy.int8(static_cast<int64_t>(entry.incarnation));
      copy.int8(static_cast<int64_t>(entry.seq));
      if (entry.gap_first_seq != 0) {  // what the agent dropped; part of it may be stored already
        const uint64_t first_seq = std::max(entry.gap_first_seq, p.appended_seq + 1);
        copy.int8(static_cast<int64_t>(first_seq));
        ++added.gaps;
        added.events_lost += entry.seq - first_seq + 1;
      } else {
        copy.null();
        ++added.events;
        added.bytes += entry.payload_size_bytes;
      }
      copy.text(entry.path);
      copy.text(server_name_);
      if (entry.gap_first_seq != 0) {
        copy.null();
      } else {
        copy.bytes(batch->payloads.data() + entry.payload_offset, entry.payload_size_bytes);
      }
      p.appended_seq = entry.seq;
    }
  }
  if (!conn_->finish_copy(copy.finish(), why)) return false;
  // The counters and COMMIT in one round trip; only a COMMIT that answered
  // OK lets the group be acknowledged.
  if (!conn_->queue("INSERT INTO gatehouse.server_counters AS c (server, events, bytes, gaps, events_lost, "
                    "duplicates_dropped) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (server) DO UPDATE SET "
                    "events = c.events + EXCLUDED.events, bytes = c.bytes + EXCLUDED.bytes, gaps = c.gaps + EXCLUDED.gaps, "
                    "events_lost = c.events_lost + EXCLUDED.events_lost, "
                    "duplicates_dropped = c.duplicates_dropped + EXCLUDED.duplicates_dropped",
                    {server_name_, std::to_string(added.events), std::to_string(added.bytes), std::to_string(added.gaps),
                     std::to_string(added.events_lost), std::to_string(added.duplicates_dropped)},
                    why) ||
      !conn_->queue("COMMIT", why)) {
    return false;
  }
  const int answers = 2;
  bool committed = true;
  for (int answer = 0; answer < answers; ++answer) {
    std::string failed;
    if (!conn_->finish(nullptr, failed) && committed) {
      committed = false;
      why = failed;
    }
    if (!conn_->usable()) return false;
  }
  if (!committed) return false;
  std::lock_guard lock(mutex_);
  for (const auto& [key, p] : progress) learn(key.first, key.second, p.base_seq, p.appended_seq);
  for (Batch* batch : group) {
    for (Batch::Entry& entry : batch->entries) entry.durable_seq = progress.at({entry.agent, entry.incarnation}).appended_seq;
  }
  stats_.events += added.events;
  stats_.bytes += added.bytes;
  stats_.gaps += added.gaps;
  stats_.events_lost += added.events_lost;
  stats_.duplicates_dropped += added.duplicates_dropped;
  return true;
}

// A database that fails is waited out: nothing is acknowledged meanwhile (the
// agents' windows close, they keep their events); the same group is tried
// again on a new connection, with backoff. A commit whose answer was lost is
// found committed the next time (its events are then duplicates). A stop
// meanwhile gives the batches back unacknowledged.
void PgStore::commit(std::vector<Batch*>& group) {
  uint32_t retry_ms = kRetryFirstMs;
  for (;;) {
    std::string why;
    if (try_commit(group, why)) break;
    conn_.reset();  // whatever the transaction did is rolled back with it
    if (!down_) {
      log::emit(log::Level::error, log::EventId::database_unavailable,
                "PostgreSQL failed a commit: nothing is acknowledged until it commits again (agents keep their "
                "events); retrying with backoff: " + why,
                {{"batches", static_cast<uint64_t>(group.size())}});
      down_ = true;
      down_since_ms_ = steady_now_ms();
      set_unavailable("PostgreSQL fails commits: " + why);
    }
    if (wait_unless_stopping(std::chrono::milliseconds(retry_ms))) {
      for (Batch* batch : group) {  // their ACKs carry what was durable before: nothing moves
        for (Batch::Entry& entry : batch->entries) entry.durable_seq = resume_point(entry.agent, entry.incarnation).durable_seq;
      }
      break;
    }
    retry_ms = std::min(retry_ms * 2, kRetryMaxMs);
  }
  if (down_ && conn_ != nullptr) {
    log::emit(log::Level::info, log::EventId::database_available, "PostgreSQL commits again; acknowledgements resume",
              {{"down_ms", static_cast<uint64_t>(steady_now_ms() - down_since_ms_)}});
    down_ = false;
    set_unavailable("");
  }
  group_bytes_ = 0;
  for (Batch* batch : group) deliver_(batch);
}

}  // namespace gatehouse::store
