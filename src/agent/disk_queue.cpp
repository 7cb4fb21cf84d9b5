#include "gatehouse/agent/disk_queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "gatehouse/log/invariant.h"
#include "gatehouse/store/record_io.h"

namespace gatehouse::agent {
namespace {

constexpr uint32_t kRecordBodyMaxBytes = 8 + DiskQueue::kEventMaxBytes;  // u64 seq, payload

constexpr store::SegmentNames kSegments{"queue", ".log"};

}  // namespace

std::unique_ptr<DiskQueue> DiskQueue::open(const std::string& dir, uint64_t max_bytes, FullPolicy policy,
                                           std::string& why) {
  std::unique_ptr<DiskQueue> queue(new DiskQueue(dir, max_bytes, policy));
  if (!queue->load(why)) return nullptr;
  queue->housekeeper_ = std::thread([queue = queue.get()] { queue->housekeeping(); });
  return queue;
}

DiskQueue::~DiskQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  housekeeping_due_.notify_one();
  if (housekeeper_.joinable()) housekeeper_.join();
}

// Reads `acked` and every segment; a torn tail (crash mid-append) is cut off
// by the segment log: those events were never acknowledged to the input.
bool DiskQueue::load(std::string& why) {
  if (std::ifstream acked(dir_ + "/acked"); acked) acked >> acked_seq_;
  last_seq_ = acked_seq_;
  const auto on_record = [this](uint64_t segment, std::span<const std::byte> body) {
    if (body.size() < 8) return false;
    const uint64_t seq = store::get_u64(body.data());
    if (segments_.empty() || segments_.back().number != segment) segments_.push_back({segment, 0});
    segments_.back().last_seq = seq;
    last_seq_ = std::max(last_seq_, seq);
    if (seq <= acked_seq_) return true;
    events_.push_back({seq, std::string(reinterpret_cast<const char*>(body.data() + 8), body.size() - 8)});
    bytes_ += body.size() - 8;
    return true;
  };
  store::SegmentLogRecovery recovery;
  log_ = store::SegmentLog::open({dir_, kSegments, kSegmentMaxBytes, kRecordBodyMaxBytes}, on_record, recovery, why);
  if (log_ == nullptr) return false;
  if (segments_.empty() || segments_.back().number != log_->current_segment()) {
    segments_.push_back({log_->current_segment(), 0});
  }
  return true;
}

bool DiskQueue::make_room(std::unique_lock<std::mutex>& lock, uint64_t size, std::deque<QueuedEvent>& batch,
                          uint64_t& dropped) {
  if (policy_ == FullPolicy::block) {
    // An event larger than the bound still enters an empty queue.
    room_.wait(lock, [&] { return input_closed_ || bytes_ + size <= max_bytes_ || bytes_ == 0; });
    return !input_closed_;
  }
  // The oldest go first: durable ones, then this batch's own first events.
  while (bytes_ + size > max_bytes_ && (!events_.empty() || !batch.empty())) {
    std::deque<QueuedEvent>& from = events_.empty() ? batch : events_;
    bytes_ -= from.front().payload.size();
    acked_seq_ = from.front().seq;  // dropped: never sent again
    from.pop_front();
    acked_dirty_ = true;
    ++dropped;
  }
  return true;
}

bool DiskQueue::append(const std::vector<std::string>& events, uint64_t& dropped) {
  std::deque<QueuedEvent> batch;  // numbered, counted in bytes_, not durable yet
  uint64_t seq = 0;
  {
    std::unique_lock lock(mutex_);
    if (!failure_.empty()) return false;
    seq = last_seq_;  // only this thread moves last_seq_
    for (const std::string& payload : events) {
      if (!make_room(lock, payload.size(), batch, dropped)) {
        for (const QueuedEvent& event : batch) bytes_ -= event.payload.size();
        return false;
      }
      bytes_ += payload.size();
      batch.push_back({++seq, payload});
    }
  }
  if (dropped > 0) housekeeping_due_.notify_one();
  std::vector<std::byte> records;
  for (const QueuedEvent& event : batch) {
    store::append_record(records, static_cast<uint32_t>(8 + event.payload.size()), [&](std::byte* body) {
      store::put_u64(body, event.seq);
      std::memcpy(body + 8, event.payload.data(), event.payload.size());
    });
  }
  // Write and fdatasync without the state lock: the shard keeps sending.
  std::string why;
  uint64_t segment = 0;
  bool durable = false;
  {
    std::lock_guard log_lock(log_mutex_);
    durable = log_->append(records, why);
    segment = log_->current_segment();
  }
  std::lock_guard lock(mutex_);
  if (!durable) {
    for (const QueuedEvent& event : batch) bytes_ -= event.payload.size();
    failure_ = why;
    return false;
  }
  GH_INVARIANT(events_.empty() || batch.empty() || events_.back().seq < batch.front().seq);
  for (QueuedEvent& event : batch) events_.push_back(std::move(event));
  last_seq_ = seq;
  if (segments_.back().number != segment) segments_.push_back({segment, 0});
  segments_.back().last_seq = seq;
  return true;
}

void DiskQueue::close_input() {
  {
    std::lock_guard lock(mutex_);
    input_closed_ = true;
  }
  room_.notify_all();
}

std::string DiskQueue::failure() const {
  std::lock_guard lock(mutex_);
  return failure_;
}

void DiskQueue::acknowledge(uint64_t seq) {
  {
    std::lock_guard lock(mutex_);
    if (seq <= acked_seq_) return;
    acked_seq_ = std::min(seq, last_seq_);
    while (!events_.empty() && events_.front().seq <= acked_seq_) {
      bytes_ -= events_.front().payload.size();
      events_.pop_front();
    }
    acked_dirty_ = true;
  }
  room_.notify_all();
  housekeeping_due_.notify_one();
}

// The queue's own thread: records the acknowledged seq and deletes the
// segments that hold only acknowledged events, so the shard never touches
// the disk. What is due at stop is done before the thread ends.
void DiskQueue::housekeeping() {
  std::unique_lock lock(mutex_);
  for (;;) {
    housekeeping_due_.wait(lock, [this] { return acked_dirty_ || stopping_; });
    if (!acked_dirty_ && stopping_) return;
    acked_dirty_ = false;
    const uint64_t acked = acked_seq_;
    while (segments_.size() > 1 && segments_.front().last_seq <= acked) segments_.pop_front();
    const uint64_t keep_from = segments_.front().number;
    lock.unlock();
    write_acked(acked);
    {
      std::lock_guard log_lock(log_mutex_);
      std::string ignored;  // a segment left behind is deleted on a later pass, or read again and skipped
      log_->remove_segments_below(keep_from, ignored);
    }
    lock.lock();
  }
}

// Replaced atomically. Losing an update in a crash only causes resends, which
// the server drops as duplicates.
void DiskQueue::write_acked(uint64_t acked_seq) {
  const std::string path = dir_ + "/acked";
  {
    std::ofstream out(path + ".new", std::ios::trunc);
    out << acked_seq << "\n";
  }
  std::rename((path + ".new").c_str(), path.c_str());
}

bool DiskQueue::next_after(uint64_t after, QueuedEvent& event) const {
  std::lock_guard lock(mutex_);
  if (events_.empty() || events_.back().seq <= after) return false;
  // Seqs in the deque are consecutive: index by offset from the front.
  const uint64_t first = events_.front().seq;
  const uint64_t wanted = std::max(after + 1, first);
  event = events_[wanted - first];
  return true;
}

uint64_t DiskQueue::acked_seq() const {
  std::lock_guard lock(mutex_);
  return acked_seq_;
}
uint64_t DiskQueue::last_seq() const {
  std::lock_guard lock(mutex_);
  return last_seq_;
}
uint64_t DiskQueue::queued_events() const {
  std::lock_guard lock(mutex_);
  return events_.size();
}
uint64_t DiskQueue::queued_bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

}  // namespace gatehouse::agent
