// Append-only event store with group commit: every shard hands its DATA to one
// writer thread, which appends checksummed records to segment files, fsyncs
// once per group, and hands each batch back with the durable seqs the ACKs
// carry. Nothing is acknowledged before it is on disk; an (agent, incarnation,
// seq) already stored is dropped and counted, across restarts and retention
// (the index keeps every agent's progress when old segments go).
#pragma once

#include <chrono>
#include <functional>
#include <span>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/store/backend.h"
#include "gatehouse/store/segment_log.h"
#include "gatehouse/store/store_index.h"
#include "gatehouse/store/store_types.h"

namespace gatehouse::store {

// What `store dump` reads: one agent's or all, from a received time on.
struct DumpFilter {
  std::string agent;       // empty: every agent
  int64_t since_unix_us = 0;  // not 0: only records received at or after it (older records have no time: left out)
};

// What a dump met besides records.
struct DumpNotes {
  uint64_t expired_through_segment = 0;  // not 0: the position's segments up to it were removed (retention) unread
};

class EventStore final : public Backend {
 public:
  // Opens (or creates) the store in `dir`: reads its index (events/index)
  // and only the records after it (all of them when there is none, or it is
  // damaged: 30074), recovering after a crash: a torn tail of the last
  // segment is truncated (counted in stats); damage anywhere else, or a
  // segment the index holds that is missing or changed, refuses to open.
  // nullptr with `why`.
  static std::unique_ptr<EventStore> open(const std::string& dir, const StoreLimits& limits, std::string& why);
  ~EventStore() override;  // stop()s, then writes the index

  // Where `agent`'s `incarnation` stands on disk, and its latest.
  ResumePoint resume_point(std::string_view agent, uint64_t incarnation) const override;
  StoreStats stats() const override;

  // Read-only, for `gatehouse store`, safe while a server writes (an
  // incomplete last record is not an error here): the index, then the
  // records after it.
  static bool read_stats(const std::string& dir, StoreStats& stats, std::string& why);
  // The records matching `filter` from `position` (segment 0: the oldest) to
  // the store's end, in store order; `position` moves past what was read (a
  // cursor for the next call). Segments the index shows hold nothing for the
  // filter are not read.
  static bool dump(const std::string& dir, const DumpFilter& filter, LogPosition& position,
                   const std::function<void(const StoredEvent&)>& on_event, DumpNotes& notes, std::string& why);
  // Each agent's events, by name (the index and the records after it).
  static bool agent_summaries(const std::string& dir, std::vector<AgentSummary>& summaries, std::string& why);
  // Every record checked, damage skipped (`store verify`); with `to_dir`,
  // every valid record is copied to a new store there (`store salvage`).
  static bool salvage(const std::string& dir, const std::string& to_dir, DamageReport& report, std::string& why);

 private:
  EventStore(std::string dir, const StoreLimits& limits) : Backend(limits), dir_(std::move(dir)) {}
  bool adopt_index(StoreIndex& index, std::string& why);
  bool absorb(uint64_t segment, std::span<const std::byte> body);
  void take(Batch& batch) override;
  uint64_t group_bytes() const override { return pending_.size(); }
  void commit(std::vector<Batch*>& batches) override;
  bool has_pending() const override { return pending_duplicates_ > 0; }
  void on_idle() override;
  uint32_t idle_interval_ms() const override { return 1'000; }
  bool write_pending();
  void add_group_to_segment();
  LogPosition log_end() const { return {log_->current_segment(), log_->current_size_bytes()}; }
  void write_index_now();
  void expire_segments();

  const std::string dir_;

  mutable std::mutex mutex_;  // guards agents_ and stats_ (the writer reads them without it)
  ProgressIndex agents_;
  StoreStats stats_;

  // Writer thread only (and open).
  std::unique_ptr<SegmentLog> log_;
  std::vector<std::byte> pending_;     // records not yet written
  uint64_t pending_duplicates_ = 0;
  SegmentSummary group_;                 // the forming group's counts (number, size unused), added to its segment once on disk
  std::vector<SegmentSummary> segments_;  // held, ascending; the last is the current one
  LogPosition indexed_;                   // the index on disk covers the log up to here
  std::chrono::steady_clock::time_point indexed_at_{};
  std::chrono::steady_clock::time_point retention_checked_at_{};
  bool state_ahead_of_disk_ = false;      // a commit failed: the state holds records that are not on disk
  bool index_write_failing_ = false;      // said once (30074) until a write succeeds
};

}  // namespace gatehouse::store
