// Where a server's events go: the local store (segments, EventStore) or a
// management group's PostgreSQL (PgStore). Shards submit batches; one writer
// thread forms groups (commit_interval_ms or commit_bytes), commits each group
// at once and hands every batch back after its commit, with the durable seqs
// the ACKs carry. Nothing is acknowledged before it is durable. This class is
// the bounded queue and the writer's loop; a backend says how a batch joins a
// group and how a group commits.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gatehouse/admin/metrics.h"
#include "gatehouse/store/store_types.h"

namespace gatehouse::store {

// Where each agent's incarnations stand, as a store knows it: both backends
// answer HELLO/OPEN from it (resume_point_of).
struct SeqState {
  uint64_t base_seq = 0;      // its first record's seq - 1: the incarnation begins after it
  uint64_t appended_seq = 0;  // the local store's writer only
  uint64_t durable_seq = 0;
};
// The local store's: an agent's listing (`store agents`) and which segments
// hold its records (`store dump --agent` reads only those).
struct AgentTotals {
  uint64_t events = 0;            // stored, retention's removals included
  uint64_t declared_dropped = 0;  // seqs its gaps declared
  uint64_t last_seq = 0;
  uint64_t first_segment = 0;
  uint64_t last_segment = 0;
};
struct AgentProgress {
  std::map<uint64_t, SeqState> incarnations;  // by id; one per process run of the agent's queue that numbered events
  uint64_t latest_incarnation = 0;            // of the last record stored
  AgentTotals totals;
};
using ProgressIndex = std::map<std::string, AgentProgress, std::less<>>;
ResumePoint resume_point_of(const ProgressIndex& index, std::string_view agent, uint64_t incarnation);

class Backend {
 public:
  virtual ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // Starts the writer; `deliver` gets every batch back after its commit (on
  // the writer thread) and must not block.
  void start(std::function<void(Batch*)> deliver);
  // Any thread. False when batches_waiting_max batches already wait.
  bool submit(Batch* batch);
  // Commits and delivers everything submitted, then joins the writer. A
  // backend's destructor calls it before its own members go.
  void stop();

  // Any thread, never blocks: where `agent`'s `incarnation` stands, and its latest.
  virtual ResumePoint resume_point(std::string_view agent, uint64_t incarnation) const = 0;
  virtual StoreStats stats() const = 0;

  // Any thread, for the admin endpoint: why nothing can be acknowledged now
  // ("" while commits go through); batches waiting for the writer; commit
  // latency.
  std::string unavailable() const;
  size_t batches_waiting() const;
  const admin::Histogram& commit_latency() const { return commit_latency_; }

 protected:
  explicit Backend(const StoreLimits& limits) : limits_(limits) {}

  // Writer thread: a batch joins the group being formed.
  virtual void take(Batch& batch) = 0;
  // Writer thread: what the group holds so far (against commit_bytes).
  virtual uint64_t group_bytes() const = 0;
  // Writer thread: commits the group (which may be empty when has_pending())
  // and delivers every batch of it.
  virtual void commit(std::vector<Batch*>& group) = 0;
  virtual bool has_pending() const { return false; }
  // Writer thread, between commits or while none is due: called about every
  // idle_interval_ms (0: never), busy or not.
  virtual void on_idle() {}
  virtual uint32_t idle_interval_ms() const { return 0; }

  // Writer thread: waits up to `timeout` unless a stop comes first (true: stopping).
  bool wait_unless_stopping(std::chrono::milliseconds timeout);
  bool stopping() const;
  // Writer thread: commits cannot go through (why), or again ("").
  void set_unavailable(std::string why);

  const StoreLimits limits_;
  std::function<void(Batch*)> deliver_;

 private:
  void run();
  void chores_if_due();
  void wait_for_work(std::unique_lock<std::mutex>& lock, bool group_empty,
                     std::chrono::steady_clock::time_point first);

  mutable std::mutex queue_mutex_;     // guards waiting_ and stopping_
  std::condition_variable work_ready_;
  std::vector<Batch*> waiting_;        // bounded by batches_waiting_max
  bool stopping_ = false;
  std::thread writer_;
  std::chrono::steady_clock::time_point chores_at_{};  // writer thread: the last on_idle
  admin::Histogram commit_latency_;
  mutable std::mutex unavailable_mutex_;
  std::string unavailable_;  // guarded by unavailable_mutex_
};

}  // namespace gatehouse::store
