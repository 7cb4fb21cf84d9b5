// The agent's durable send queue (SCOM's default bound: 15 MiB). An event is
// numbered and on disk before it is sent, and deleted only after the server's
// durable ACK, so any crash or failover resends instead of losing it.
// Files: queue-NNNNNNNN.log segments of checksummed records, and `acked`
// (the highest acknowledged seq). docs/agent.md.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace gatehouse::agent {

enum class FullPolicy : uint8_t { block, drop_oldest };

struct QueuedEvent {
  uint64_t seq = 0;
  std::string payload;
};

class DiskQueue {
 public:
  static constexpr uint64_t kSegmentMaxBytes = 1u << 20;
  static constexpr uint32_t kEventMaxBytes = 65'536;  // proto::kPayloadMaxBytes

  // Opens or creates the queue in `dir`; unacknowledged events come back. nullptr with `why`.
  static std::unique_ptr<DiskQueue> open(const std::string& dir, uint64_t max_bytes, FullPolicy policy, std::string& why);
  ~DiskQueue();

  // Input side: numbers and appends the events, durable (fdatasync) on return.
  // `block`: waits for room while the queue is full (false if close_input()
  // was called meanwhile). `drop_oldest`: drops the oldest unacked events to
  // make room and adds their count to `dropped`.
  bool append(const std::vector<std::string>& events, uint64_t& dropped);
  // Wakes a blocked append() for shutdown.
  void close_input();

  // Sender side: the server holds everything up to `seq` durably.
  void acknowledge(uint64_t seq);
  // The first unacked event with seq > `after`; false when there is none.
  bool next_after(uint64_t after, QueuedEvent& event) const;
  uint64_t acked_seq() const;
  uint64_t last_seq() const;
  uint64_t queued_events() const;
  uint64_t queued_bytes() const;

 private:
  DiskQueue(std::string dir, uint64_t max_bytes, FullPolicy policy)
      : dir_(std::move(dir)), max_bytes_(max_bytes), policy_(policy) {}
  bool load(std::string& why);
  bool open_segment(uint64_t number, std::string& why);
  void write_acked();
  void delete_acked_segments();

  const std::string dir_;
  const uint64_t max_bytes_;
  const FullPolicy policy_;
  mutable std::mutex mutex_;
  std::condition_variable room_;
  std::deque<QueuedEvent> events_;  // unacked, in seq order; bounded by max_bytes_
  uint64_t bytes_ = 0;
  uint64_t acked_seq_ = 0;
  uint64_t last_seq_ = 0;
  bool input_closed_ = false;
  int segment_fd_ = -1;
  uint64_t segment_number_ = 0;
  uint64_t segment_size_bytes_ = 0;
  std::deque<std::pair<uint64_t, uint64_t>> segments_;  // (number, last seq in it), oldest first
};

}  // namespace gatehouse::agent
