// The management group's event store in PostgreSQL ([store] backend =
// "postgresql"): every server of the group writes to one database. A group of
// batches is one transaction; its events are acknowledged only after COMMIT.
// Exactly once across the group: each (agent, incarnation) row in
// gatehouse.incarnations holds its durable seq and is locked by the
// transaction that extends it, so a second server (a failover, a lost ACK)
// finds the events stored and drops them as duplicates. Schema and byte-level
// notes: docs/server.md ("A management group on PostgreSQL").
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/store/backend.h"

namespace gatehouse::pg {
class Connection;
}

namespace gatehouse::store {

class PgStore final : public Backend {
 public:
  // Connects, creates or upgrades the schema, learns the group's progress.
  // nullptr with `why` (the server does not start: its operator must see it).
  static std::unique_ptr<PgStore> open(const std::string& dsn, const std::string& server_name,
                                       const StoreLimits& limits, std::string& why);
  ~PgStore() override;

  // From this server's view of the group's progress, refreshed every
  // kRefreshIntervalMs: a session that lands before a refresh resends (or
  // declares dropped) events the group holds, and the commit drops them.
  ResumePoint resume_point(std::string_view agent, uint64_t incarnation) const override;
  StoreStats stats() const override;

  // `gatehouse store` from any server's config: the group's totals (kept per
  // server at each commit, no scan), its events in order of arrival (a cursor:
  // memory stays bounded), and each agent's summary.
  static bool read_stats(const std::string& dsn, StoreStats& stats, std::string& why);
  static bool dump(const std::string& dsn, std::string_view agent,
                   const std::function<void(const StoredEvent&)>& on_event, std::string& why,
                   int64_t since_unix_us = 0);
  static bool agent_summaries(const std::string& dsn, std::vector<AgentSummary>& summaries, std::string& why);

  static constexpr uint32_t kRefreshIntervalMs = 250;
  static constexpr uint32_t kRetryFirstMs = 100;   // a failed commit is retried after this, doubling ...
  static constexpr uint32_t kRetryMaxMs = 5'000;   // ... up to this
  static constexpr int64_t kRetentionCheckMs = 3'600'000;  // expired days are looked for at start and this often

 private:
  struct Progress;  // one (agent, incarnation) of a group: its seqs before and after

  PgStore(std::string dsn, std::string server_name, const StoreLimits& limits);
  void take(Batch& batch) override;
  uint64_t group_bytes() const override { return group_bytes_; }
  void commit(std::vector<Batch*>& group) override;
  void on_idle() override;
  uint32_t idle_interval_ms() const override { return kRefreshIntervalMs; }

  bool try_commit(std::vector<Batch*>& group, std::string& why);
  bool ensure_connected(std::string& why);
  bool ensure_partition(int64_t unix_us, std::string& why);
  bool refresh(std::string& why);
  bool drop_expired(std::string& why);
  void learn(const std::string& agent, uint64_t incarnation, uint64_t base_seq, uint64_t durable_seq);

  const std::string dsn_;
  const std::string server_name_;

  // Writer thread only.
  std::unique_ptr<pg::Connection> conn_;
  uint64_t group_bytes_ = 0;
  int64_t partitions_until_unix_us_ = 0;   // daily partitions exist up to here
  std::string refreshed_at_;               // the database's now() at the last refresh
  int64_t retention_checked_ms_ = 0;       // steady ms of the last look for expired days (0: none yet)
  bool down_ = false;                      // 30070 said, 30071 not yet
  int64_t down_since_ms_ = 0;

  mutable std::mutex mutex_;  // guards agents_ and stats_
  ProgressIndex agents_;
  StoreStats stats_;
};

}  // namespace gatehouse::store
