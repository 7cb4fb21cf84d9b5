// The agent's durable send queue (SCOM's default bound: 15 MiB). An event is
// numbered and on disk before it is sent, and deleted only after the server's
// durable ACK, so any crash or failover resends instead of losing it. Only a
// window of the queue (window_max_bytes, 4 MiB) is held in memory: the
// queue's own thread reads ahead from disk as the sender goes, so memory
// stays bounded whatever the queue holds.
// Files: queue-NNNNNNNN.log segments of checksummed records (a
// store::SegmentLog, with the store's rules), `acked` (the highest seq the
// server acknowledged) and `incarnations` (one line per incarnation still
// holding events: id in hex, base seq). Seqs go on across incarnations; each
// process run that numbers events starts a new incarnation, written durably
// before its first event (docs/protocol.md, "Incarnations"). docs/agent.md.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gatehouse/proto/frame_types.h"
#include "gatehouse/store/segment_log.h"

namespace gatehouse::agent {

enum class FullPolicy : uint8_t { block, drop_oldest };

struct QueuedEvent {
  uint64_t seq = 0;
  std::string payload;
};

class DiskQueue {
 public:
  // An eighth of the bound (16 KiB to 1 MiB): drop-oldest deletes whole
  // segments, so the folder stays within queue_max_bytes.
  static uint64_t segment_max_bytes(uint64_t queue_max_bytes);
  static constexpr uint32_t kEventMaxBytes = 65'536;  // proto::kPayloadMaxBytes
  static constexpr uint64_t kWindowMaxBytes = 4u << 20;

  // Opens or creates the queue in `dir`; unacknowledged events come back. nullptr with `why`.
  static std::unique_ptr<DiskQueue> open(const std::string& dir, uint64_t max_bytes, FullPolicy policy, std::string& why,
                                         uint64_t window_max_bytes = kWindowMaxBytes);
  ~DiskQueue();  // writes what housekeeping is pending, then joins its thread

  // Input side (one thread): numbers and appends the events, durable
  // (fdatasync) on return; the sender sees them only then. `block`: waits for
  // room while the queue is full (false if close_input() was called
  // meanwhile). `drop_oldest`: drops the oldest unacked events to make room
  // and adds their count to `dropped` (the sender declares them to the
  // server as a gap). False when the queue cannot write (failure() says why;
  // the segment log's rules: it never writes again).
  bool append(const std::vector<std::string>& events, uint64_t& dropped);
  // Wakes a blocked append() for shutdown.
  void close_input();
  std::string failure() const;

  // Sender side (the shard): never waits on the disk. The `acked` file, the
  // deletion of acknowledged segments and reading ahead are done by the
  // queue's own thread.
  void acknowledge(uint64_t seq);
  // The first queued event with seq > `after`; false when there is none, or
  // when it is on disk only: then it is read, and `on_ready` called.
  bool next_after(uint64_t after, QueuedEvent& event);
  // Called (under the queue's lock: post, do not block) when the sender has
  // new events: on the input's thread after each write, on the queue's own
  // after reading ahead from disk. Cleared before the sender stops.
  void set_on_ready(std::function<void()> on_ready);

  // A session's start: the incarnation holding the first seq the server has
  // not acknowledged (the latest one when there is none; id 0: no event yet).
  proto::Incarnation session_incarnation() const;
  // The server holds `session`'s events through `durable_seq`: what of it the
  // queue has is acknowledged, and the seq the session resumes after is
  // returned (never past the incarnation's end or the queue's last seq: a
  // server ahead of the queue means it was restored from an older copy).
  uint64_t resume(const proto::Incarnation& session, uint64_t durable_seq);
  // The incarnation after `current` (id 0: none yet) if the queue has begun
  // one, and then true.
  bool next_incarnation(const proto::Incarnation& current, proto::Incarnation& next) const;
  uint64_t acked_seq() const;
  uint64_t last_seq() const;
  uint64_t queued_events() const;
  uint64_t queued_bytes() const;

 private:
  struct Segment {
    uint64_t number = 0;
    uint64_t first_seq = 0;  // the lowest seq in it (0: none yet)
    uint64_t last_seq = 0;   // the highest
    uint64_t size_bytes = 0;
  };

  DiskQueue(std::string dir, uint64_t max_bytes, FullPolicy policy, uint64_t window_max_bytes)
      : dir_(std::move(dir)), max_bytes_(max_bytes), policy_(policy), window_max_bytes_(window_max_bytes) {}
  bool load(std::string& why);
  bool load_incarnations(std::string& why);
  // The first append of this process: a new incarnation, durable before its events.
  bool begin_incarnation(std::string& why);
  static std::string incarnations_text(const std::vector<proto::Incarnation>& incarnations);
  // Under mutex_: the seq `incarnation` ends at (UINT64_MAX: the latest).
  uint64_t end_of(const proto::Incarnation& incarnation) const;
  bool next_incarnation_locked(const proto::Incarnation& current, proto::Incarnation& next) const;
  // Under mutex_: room for an event of `size` bytes, by policy. drop-oldest
  // drops whole oldest segments (the caller deletes the files below
  // `remove_below`), then from `batch` (the events being appended, taking
  // `batch_disk_bytes` on disk). False: input closed.
  bool make_room(std::unique_lock<std::mutex>& lock, uint64_t size, std::deque<QueuedEvent>& batch,
                 uint64_t& batch_disk_bytes, uint64_t& dropped, uint64_t& remove_below);
  void housekeeping();
  void write_acked(uint64_t acked_seq);
  // Housekeeping thread: reads the events after window_through_ from disk
  // into the window, as far as it has room.
  void read_ahead(std::unique_lock<std::mutex>& lock);
  // Under mutex_: the window starts at window_from_ again (events before it
  // were acknowledged or dropped).
  void trim_window();
  // Under mutex_: one more event in the window.
  void add_to_window(QueuedEvent event);

  const std::string dir_;
  const uint64_t max_bytes_;
  const FullPolicy policy_;
  const uint64_t window_max_bytes_;

  mutable std::mutex mutex_;  // the state below; never held across disk I/O
  std::condition_variable room_;
  std::condition_variable housekeeping_due_;
  // The window: every queued event with seq in [window_from_, window_through_],
  // in seq order; window_from_ passes what is acknowledged or dropped.
  std::deque<QueuedEvent> window_;
  uint64_t window_bytes_ = 0;       // payloads in window_; bounded by window_max_bytes_ (or one event)
  uint64_t window_from_ = 1;
  uint64_t window_through_ = 0;
  bool read_ahead_due_ = false;     // the sender wants events past window_through_
  std::function<void()> on_ready_;
  uint64_t acked_seq_ = 0;          // the server's: events through it are stored
  uint64_t last_seq_ = 0;           // of durable events (dropped ones included)
  std::vector<proto::Incarnation> incarnations_;  // oldest first; only the input thread adds
  bool incarnation_begun_ = false;  // input thread: this process numbers its events in a new one
  bool input_closed_ = false;
  bool housekeeping_pending_ = false;  // acked_seq_ moved or events dropped: segments to delete, `acked` to write
  bool stopping_ = false;
  std::string failure_;
  std::deque<Segment> segments_;    // oldest first; the last is the log's current one
  uint64_t disk_bytes_ = 0;         // of segments_: kept within max_bytes_ (block: waits; drop-oldest: drops)

  std::mutex log_mutex_;  // the segment log: appends (input) and removals (housekeeping)
  std::unique_ptr<store::SegmentLog> log_;
  std::thread housekeeper_;
  uint64_t acked_written_ = 0;  // housekeeping thread: what the `acked` file holds
};

}  // namespace gatehouse::agent
