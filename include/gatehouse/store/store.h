// Append-only event store with group commit: every shard hands its DATA to one
// writer thread, which appends checksummed records to segment files, fsyncs
// once per group, and hands each batch back with the durable seqs the ACKs
// carry. Nothing is acknowledged before it is on disk; an (agent, incarnation,
// seq) already stored is dropped and counted, across restarts.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/store/backend.h"
#include "gatehouse/store/segment_log.h"
#include "gatehouse/store/store_types.h"

namespace gatehouse::store {

class EventStore final : public Backend {
 public:
  // Opens (or creates) the store in `dir`, recovering after a crash: a torn or
  // corrupt tail of the last segment is truncated (counted in stats); damage
  // anywhere else refuses to open. nullptr with `why`.
  static std::unique_ptr<EventStore> open(const std::string& dir, const StoreLimits& limits, std::string& why);
  ~EventStore() override;  // stop()s

  // Where `agent`'s `incarnation` stands on disk, and its latest.
  ResumePoint resume_point(std::string_view agent, uint64_t incarnation) const override;
  StoreStats stats() const override;

  // Read-only scans for `gatehouse store` (safe while a server writes: an
  // incomplete last record is not an error here).
  static bool read_stats(const std::string& dir, StoreStats& stats, std::string& why);
  // `agent` empty: every agent's, in store order.
  static bool dump(const std::string& dir, std::string_view agent,
                   const std::function<void(const StoredEvent&)>& on_event, std::string& why);
  // Each agent's events, by name (a scan, like dump).
  static bool agent_summaries(const std::string& dir, std::vector<AgentSummary>& summaries, std::string& why);
  // Every record checked, damage skipped (`store verify`); with `to_dir`,
  // every valid record is copied to a new store there (`store salvage`).
  static bool salvage(const std::string& dir, const std::string& to_dir, DamageReport& report, std::string& why);

 private:

  EventStore(std::string dir, const StoreLimits& limits) : Backend(limits), dir_(std::move(dir)) {}
  void take(Batch& batch) override;
  uint64_t group_bytes() const override { return pending_.size(); }
  void commit(std::vector<Batch*>& batches) override;
  bool has_pending() const override { return pending_duplicates_ > 0; }
  bool write_pending();

  const std::string dir_;

  mutable std::mutex mutex_;  // guards agents_ and stats_
  ProgressIndex agents_;
  StoreStats stats_;

  // Writer thread only.
  std::unique_ptr<SegmentLog> log_;
  std::vector<std::byte> pending_;     // records not yet written
  uint64_t pending_duplicates_ = 0;
};

}  // namespace gatehouse::store
