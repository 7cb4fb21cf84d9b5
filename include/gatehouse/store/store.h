// Append-only event store with group commit: every shard hands its DATA to one
// writer thread, which appends checksummed records to segment files, fsyncs
// once per group, and hands each batch back with the durable seqs the ACKs
// carry. Nothing is acknowledged before it is on disk; an (agent, incarnation,
// seq) already stored is dropped and counted, across restarts.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gatehouse/store/segment_log.h"
#include "gatehouse/store/store_types.h"

namespace gatehouse::store {

class EventStore {
 public:
  // Opens (or creates) the store in `dir`, recovering after a crash: a torn or
  // corrupt tail of the last segment is truncated (counted in stats); damage
  // anywhere else refuses to open. nullptr with `why`.
  static std::unique_ptr<EventStore> open(const std::string& dir, const StoreLimits& limits, std::string& why);
  ~EventStore();  // stop()s
  EventStore(const EventStore&) = delete;
  EventStore& operator=(const EventStore&) = delete;

  // Starts the writer; `deliver` gets every batch back after its commit (on
  // the writer thread) and must not block.
  void start(std::function<void(Batch*)> deliver);
  // Any thread. False when batches_waiting_max batches already wait.
  bool submit(Batch* batch);
  // Commits and delivers everything submitted, then joins the writer.
  void stop();

  // Any thread: where `agent`'s `incarnation` stands on disk, and its latest.
  ResumePoint resume_point(std::string_view agent, uint64_t incarnation) const;
  StoreStats stats() const;

  // Read-only scans for `gatehouse store` (safe while a server writes: an
  // incomplete last record is not an error here).
  static bool read_stats(const std::string& dir, StoreStats& stats, std::string& why);
  // `agent` empty: every agent's, in store order.
  static bool dump(const std::string& dir, std::string_view agent,
                   const std::function<void(const StoredEvent&)>& on_event, std::string& why);
  // Every record checked, damage skipped (`store verify`); with `to_dir`,
  // every valid record is copied to a new store there (`store salvage`).
  static bool salvage(const std::string& dir, const std::string& to_dir, DamageReport& report, std::string& why);

 private:
  struct SeqState {
    uint64_t base_seq = 0;      // its first record's seq - 1: the incarnation begins after it
    uint64_t appended_seq = 0;  // writer only
    uint64_t durable_seq = 0;
  };
  struct AgentState {
    std::map<uint64_t, SeqState> incarnations;  // by id; one per process run of the agent's queue that numbered events
    uint64_t latest_incarnation = 0;            // of the last record appended
  };

  EventStore(std::string dir, const StoreLimits& limits) : dir_(std::move(dir)), limits_(limits) {}
  void run();
  void append(Batch& batch);
  bool commit(std::vector<Batch*>& batches);
  bool write_pending();

  const std::string dir_;
  const StoreLimits limits_;
  std::function<void(Batch*)> deliver_;

  mutable std::mutex mutex_;           // guards everything below up to the thread
  std::condition_variable work_ready_;
  std::vector<Batch*> waiting_;        // bounded by batches_waiting_max
  bool stopping_ = false;
  std::map<std::string, AgentState, std::less<>> agents_;
  StoreStats stats_;
  std::thread writer_;

  // Writer thread only.
  std::unique_ptr<SegmentLog> log_;
  std::vector<std::byte> pending_;     // records not yet written
  uint64_t pending_duplicates_ = 0;
};

}  // namespace gatehouse::store
