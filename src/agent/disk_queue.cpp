#include "gatehouse/agent/disk_queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"
#include "gatehouse/proto/codec.h"
#include "gatehouse/store/record_io.h"

namespace gatehouse::agent {
namespace {

constexpr uint32_t kRecordBodyMaxBytes = 8 + DiskQueue::kEventMaxBytes;  // u64 seq, payload

// An event's bytes on disk: record header, u64 seq, payload.
uint64_t record_bytes(uint64_t payload_size_bytes) { return store::kRecordHeaderBytes + 8 + payload_size_bytes; }

constexpr store::SegmentNames kSegments{"queue", ".log"};
constexpr auto kNoSpaceRetry = std::chrono::seconds(1);  // a full file system: the write is tried again after this

// Input paused while it lives: one line when it begins (30044), one when it
// ends (30045) with how long it lasted.
class InputPause {
 public:
  explicit InputPause(const std::string& why) : since_(std::chrono::steady_clock::now()) {
    log::emit(log::Level::warning, log::EventId::queue_input_paused,
              "input paused: " + why + "; it resumes when acknowledgements free room (no line is dropped)");
  }
  ~InputPause() {
    const auto paused_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since_);
    log::emit(log::Level::info, log::EventId::queue_input_resumed, "input resumed",
              {{"paused_ms", static_cast<uint64_t>(paused_ms.count())}});
  }
  InputPause(const InputPause&) = delete;
  InputPause& operator=(const InputPause&) = delete;

 private:
  std::chrono::steady_clock::time_point since_;
};

}  // namespace

uint64_t DiskQueue::segment_max_bytes(uint64_t queue_max_bytes) {
  return std::clamp<uint64_t>(queue_max_bytes / 8, 16u << 10, 1u << 20);
}

std::unique_ptr<DiskQueue> DiskQueue::open(const std::string& dir, uint64_t max_bytes, FullPolicy policy,
                                           std::string& why, uint64_t window_max_bytes) {
  std::unique_ptr<DiskQueue> queue(new DiskQueue(dir, max_bytes, policy, window_max_bytes));
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
  acked_written_ = acked_seq_;
  last_seq_ = acked_seq_;
  window_from_ = acked_seq_ + 1;
  window_through_ = acked_seq_;
  bool window_full = false;  // the rest is read ahead as the sender goes
  const auto on_record = [&](uint64_t segment, std::span<const std::byte> body) {
    if (body.size() < 8) return false;
    const uint64_t seq = store::get_u64(body.data());
    if (segments_.empty() || segments_.back().number != segment) segments_.push_back({segment, seq, 0, 0});
    segments_.back().last_seq = seq;
    segments_.back().size_bytes += store::kRecordHeaderBytes + body.size();
    disk_bytes_ += store::kRecordHeaderBytes + body.size();
    last_seq_ = std::max(last_seq_, seq);
    if (seq <= acked_seq_ || window_full) return true;
    window_full = !window_.empty() && window_bytes_ + body.size() - 8 > window_max_bytes_;
    if (!window_full) add_to_window({seq, std::string(reinterpret_cast<const char*>(body.data() + 8), body.size() - 8)});
    return true;
  };
  store::SegmentLogRecovery recovery;
  log_ = store::SegmentLog::open({dir_, kSegments, segment_max_bytes(max_bytes_), kRecordBodyMaxBytes}, on_record,
                                 recovery, why);
  if (log_ == nullptr) return false;
  if (segments_.empty() || segments_.back().number != log_->current_segment()) {
    segments_.push_back({log_->current_segment(), 0, 0, 0});
  }
  return load_incarnations(why);
}

// The incarnations file; those whose events are all acknowledged are
// forgotten (but the latest). Events from a queue older than the file get
// an incarnation of their own.
bool DiskQueue::load_incarnations(std::string& why) {
  const std::string path = dir_ + "/incarnations";
  std::ifstream in(path);
  std::string id_hex;
  uint64_t base_seq = 0;
  while (in >> id_hex >> base_seq) {
    const uint64_t id = std::strtoull(id_hex.c_str(), nullptr, 16);
    if (id == 0 || (!incarnations_.empty() && base_seq < incarnations_.back().base_seq)) {
      why = path + ": damaged (incarnation '" + id_hex + "' after seq " + std::to_string(base_seq) + ")";
      return false;
    }
    incarnations_.push_back({id, base_seq});
  }
  const size_t loaded = incarnations_.size();
  if (incarnations_.empty() && last_seq_ > acked_seq_) incarnations_.push_back({proto::new_incarnation_id(), acked_seq_});
  while (incarnations_.size() > 1 && incarnations_[1].base_seq <= acked_seq_) incarnations_.erase(incarnations_.begin());
  if (incarnations_.size() == loaded) return true;
  return store::replace_file(path, incarnations_text(incarnations_), why);
}

std::string DiskQueue::incarnations_text(const std::vector<proto::Incarnation>& incarnations) {
  std::string text;
  for (const proto::Incarnation& incarnation : incarnations) {
    text += proto::incarnation_hex(incarnation.id) + " " + std::to_string(incarnation.base_seq) + "\n";
  }
  return text;
}

bool DiskQueue::begin_incarnation(std::string& why) {
  std::vector<proto::Incarnation> incarnations;
  {
    std::lock_guard lock(mutex_);
    incarnations = incarnations_;
    incarnations.push_back({proto::new_incarnation_id(), last_seq_});
  }
  if (!store::replace_file(dir_ + "/incarnations", incarnations_text(incarnations), why)) return false;
  std::lock_guard lock(mutex_);
  incarnations_.push_back(incarnations.back());
  incarnation_begun_ = true;
  return true;
}

bool DiskQueue::make_room(std::unique_lock<std::mutex>& lock, uint64_t size, std::deque<QueuedEvent>& batch,
                          uint64_t& batch_disk_bytes, uint64_t& dropped, uint64_t& remove_below) {
  const auto fits = [&](uint64_t bound) {
    return disk_bytes_ + batch_disk_bytes + record_bytes(size) <= bound;
  };
  if (policy_ == FullPolicy::block) {
    // An event larger than the bound still enters an empty queue.
    const auto nothing_queued = [&] { return window_from_ > last_seq_ && batch.empty(); };
    if (input_closed_ || fits(max_bytes_) || nothing_queued()) return !input_closed_;
    // Once paused, input waits for a quarter of the bound to be free, so a
    // parent slower than the input pauses it now and then, not per line.
    const InputPause pause("the queue holds queue_max_bytes = " + std::to_string(max_bytes_) + " bytes");
    room_.wait(lock, [&] { return input_closed_ || fits(max_bytes_ / 4 * 3) || nothing_queued(); });
    return !input_closed_;
  }
  // The folder stays within the bound: the oldest segments go whole (the
  // caller deletes their files before it writes), then, with only the
  // current one left, this batch's own first events. Their seqs stay
  // unacknowledged: the sender declares them as a gap.
  while (!fits(max_bytes_)) {
    if (segments_.size() > 1) {
      const Segment oldest = segments_.front();
      segments_.pop_front();
      disk_bytes_ -= oldest.size_bytes;
      remove_below = segments_.front().number;
      if (oldest.last_seq >= window_from_) {
        dropped += oldest.last_seq - std::max(oldest.first_seq, window_from_) + 1;
        window_from_ = oldest.last_seq + 1;
        trim_window();
      }
    } else if (!batch.empty()) {
      batch_disk_bytes -= record_bytes(batch.front().payload.size());
      batch.pop_front();
      ++dropped;
    } else {
      break;  // an event larger than the bound still enters
    }
  }
  return true;
}

bool DiskQueue::append(const std::vector<std::string>& events, uint64_t& dropped) {
  if (std::string why; !incarnation_begun_ && !begin_incarnation(why)) {
    std::lock_guard lock(mutex_);
    failure_ = why;
    return false;
  }
  std::deque<QueuedEvent> batch;  // numbered, counted in bytes_, not durable yet
  uint64_t seq = 0;
  uint64_t batch_disk_bytes = 0;  // the batch's records
  size_t taken = 0;               // of `events`, numbered in this batch
  uint64_t remove_below = 0;      // drop-oldest: segment files to delete first
  {
    std::unique_lock lock(mutex_);
    if (!failure_.empty()) return false;
    seq = last_seq_;  // only this thread moves last_seq_
    for (; taken < events.size(); ++taken) {
      const std::string& payload = events[taken];
      // block: what is numbered goes to disk before waiting for room.
      if (policy_ == FullPolicy::block && !batch.empty() &&
          disk_bytes_ + batch_disk_bytes + record_bytes(payload.size()) > max_bytes_) {
        break;
      }
      if (!make_room(lock, payload.size(), batch, batch_disk_bytes, dropped, remove_below)) return false;
      batch_disk_bytes += record_bytes(payload.size());
      batch.push_back({++seq, payload});
    }
  }
  if (remove_below != 0) {  // dropped segments go before anything more is written
    std::lock_guard log_lock(log_mutex_);
    std::string ignored;  // a file left behind is deleted on a later pass; the events in it are dropped already
    log_->remove_segments_below(remove_below, ignored);
  }
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
  std::optional<InputPause> pause;
  for (;;) {
    {
      std::lock_guard log_lock(log_mutex_);
      durable = log_->append(records, why);
      segment = log_->current_segment();
      if (durable || !log_->out_of_space()) break;
    }
    // A full file system is a full queue, never the end of input: the lines
    // wait until ACKs delete segments, or the disk gets room otherwise.
    if (!pause) pause.emplace("its file system is full (" + why + ")");
    std::unique_lock lock(mutex_);
    if (room_.wait_for(lock, kNoSpaceRetry, [this] { return input_closed_; })) return false;
  }
  std::unique_lock lock(mutex_);
  if (!durable) {
    failure_ = why;
    return false;
  }
  if (segments_.back().number != segment) segments_.push_back({segment, 0, 0, 0});
  if (segments_.back().first_seq == 0 && !batch.empty()) segments_.back().first_seq = batch.front().seq;
  segments_.back().last_seq = seq;
  // Straight into the window while it reaches the end of the queue and has
  // room; the rest is read ahead from disk when the sender gets there.
  bool whole = window_through_ >= last_seq_;
  for (QueuedEvent& event : batch) {
    whole = whole && (window_.empty() || window_bytes_ + event.payload.size() <= window_max_bytes_);
    if (!whole) break;
    add_to_window(std::move(event));
  }
  if (whole) window_through_ = seq;  // also past the batch's own dropped seqs
  last_seq_ = seq;
  segments_.back().size_bytes += records.size();
  disk_bytes_ += records.size();
  // Each write, also the first part of a batch that waits for room: the
  // sender must have it to earn the ACKs that make the room.
  if (on_ready_) on_ready_();
  if (taken == events.size()) return true;
  lock.unlock();
  return append({events.begin() + static_cast<ptrdiff_t>(taken), events.end()}, dropped);
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
    window_from_ = std::max(window_from_, acked_seq_ + 1);
    trim_window();
    housekeeping_pending_ = true;
    read_ahead_due_ = read_ahead_due_ || window_through_ < last_seq_;  // room again
  }
  housekeeping_due_.notify_one();
}

void DiskQueue::trim_window() {
  while (!window_.empty() && window_.front().seq < window_from_) {
    window_bytes_ -= window_.front().payload.size();
    window_.pop_front();
  }
  window_through_ = std::max(window_through_, window_from_ - 1);
}

void DiskQueue::add_to_window(QueuedEvent event) {
  GH_INVARIANT(event.seq > window_through_);
  window_bytes_ += event.payload.size();
  window_through_ = event.seq;
  window_.push_back(std::move(event));
}

void DiskQueue::set_on_ready(std::function<void()> on_ready) {
  std::lock_guard lock(mutex_);
  on_ready_ = std::move(on_ready);
}

proto::Incarnation DiskQueue::session_incarnation() const {
  std::lock_guard lock(mutex_);
  if (incarnations_.empty()) return {};
  if (last_seq_ <= acked_seq_) return incarnations_.back();
  proto::Incarnation holding = incarnations_.front();
  for (const proto::Incarnation& incarnation : incarnations_) {
    if (incarnation.base_seq <= acked_seq_) holding = incarnation;
  }
  return holding;
}

uint64_t DiskQueue::end_of(const proto::Incarnation& incarnation) const {
  proto::Incarnation next;
  return next_incarnation_locked(incarnation, next) ? next.base_seq : UINT64_MAX;
}

bool DiskQueue::next_incarnation_locked(const proto::Incarnation& current, proto::Incarnation& next) const {
  for (size_t i = 0; i < incarnations_.size(); ++i) {
    if (incarnations_[i].id == current.id) {
      if (i + 1 == incarnations_.size()) return false;
      next = incarnations_[i + 1];
      return true;
    }
  }
  // None yet (id 0): the first one.
  if (current.id != 0 || incarnations_.empty()) return false;
  next = incarnations_.front();
  return true;
}

bool DiskQueue::next_incarnation(const proto::Incarnation& current, proto::Incarnation& next) const {
  std::lock_guard lock(mutex_);
  return next_incarnation_locked(current, next);
}

uint64_t DiskQueue::resume(const proto::Incarnation& session, uint64_t durable_seq) {
  uint64_t resume_after = 0;
  {
    std::lock_guard lock(mutex_);
    resume_after = std::min({durable_seq, end_of(session), last_seq_});
  }
  acknowledge(resume_after);
  return resume_after;
}

// The queue's own thread: records the acknowledged seq and deletes the
// segments that hold only acknowledged events, so the shard never touches
// the disk. What is due at stop is done before the thread ends.
void DiskQueue::housekeeping() {
  std::unique_lock lock(mutex_);
  for (;;) {
    housekeeping_due_.wait(lock, [this] { return housekeeping_pending_ || read_ahead_due_ || stopping_; });
    if (!housekeeping_pending_ && stopping_) return;
    if (read_ahead_due_ && !stopping_) read_ahead(lock);
    if (!housekeeping_pending_) continue;
    housekeeping_pending_ = false;
    const uint64_t acked = acked_seq_;
    // A segment goes once each of its events is acknowledged or dropped; it
    // counts against the bound until its file is gone.
    uint64_t keep_from = segments_.back().number;
    for (const Segment& segment : segments_) {
      if (segment.last_seq >= window_from_) {
        keep_from = segment.number;
        break;
      }
    }
    lock.unlock();
    if (acked != acked_written_) write_acked(acked);
    bool removed = false;
    {
      std::lock_guard log_lock(log_mutex_);
      std::string ignored;  // a segment left behind is deleted on a later pass, or read again and skipped
      removed = log_->remove_segments_below(keep_from, ignored);
    }
    lock.lock();
    while (removed && segments_.size() > 1 && segments_.front().number < keep_from) {
      disk_bytes_ -= segments_.front().size_bytes;
      segments_.pop_front();
    }
    room_.notify_all();
  }
}

// Segment by segment from the one holding window_through_ + 1, without the
// lock (the sender and the input go on), then into the window if it did not
// move meanwhile. A segment deleted meanwhile held only dropped events.
void DiskQueue::read_ahead(std::unique_lock<std::mutex>& lock) {
  read_ahead_due_ = false;
  const uint64_t from = window_through_ + 1;
  const uint64_t through = last_seq_;
  uint64_t room_bytes = window_max_bytes_ > window_bytes_ ? window_max_bytes_ - window_bytes_ : 0;
  if (room_bytes == 0 && !window_.empty()) return;  // full of events in flight: acknowledge() asks again
  std::vector<uint64_t> numbers;
  for (const Segment& segment : segments_) {
    if (segment.last_seq >= from && segment.first_seq <= through && segment.first_seq != 0) numbers.push_back(segment.number);
  }
  const bool window_empty = window_.empty();
  lock.unlock();
  std::vector<QueuedEvent> read;
  uint64_t read_through = from - 1;  // every event on disk up to here is in `read`
  bool complete = true;
  const store::SegmentLogOptions options{dir_, kSegments, segment_max_bytes(max_bytes_), kRecordBodyMaxBytes};
  for (const uint64_t number : numbers) {
    std::string why;
    const bool ok = store::SegmentLog::read_segment(options, number, [&](std::span<const std::byte> body) {
      const uint64_t seq = store::get_u64(body.data());
      if (seq < from) return true;
      if (seq > through) return false;
      const uint64_t size = body.size() - 8;
      if (size > room_bytes && !(window_empty && read.empty())) {
        complete = false;
        return false;
      }
      room_bytes -= std::min(room_bytes, size);
      read.push_back({seq, std::string(reinterpret_cast<const char*>(body.data() + 8), size)});
      read_through = seq;
      return true;
    }, why);
    if (!ok && std::filesystem::exists(dir_ + "/" + kSegments.name(number))) {
      log::emit(log::Level::error, log::EventId::queue_write_failed, "cannot read the queue: " + why);
      complete = false;
    }
    if (!complete) break;
  }
  if (complete) read_through = through;
  lock.lock();
  if (window_through_ + 1 != from) return;  // acknowledged or dropped past it meanwhile: read again when due
  for (QueuedEvent& event : read) {
    if (event.seq >= window_from_) add_to_window(std::move(event));
  }
  const bool more = !read.empty() || read_through > window_through_;
  window_through_ = std::max(window_through_, read_through);
  if (more && on_ready_) on_ready_();
}

// Replaced atomically. A failed write is retried on the next pass; one lost
// in a crash only causes resends, which the server drops as duplicates.
void DiskQueue::write_acked(uint64_t acked_seq) {
  std::string why;
  if (store::replace_file(dir_ + "/acked", std::to_string(acked_seq) + "\n", why)) {
    acked_written_ = acked_seq;
    return;
  }
  log::emit(log::Level::warning, log::EventId::queue_write_failed,
            "cannot record the acknowledged seq (retried; after a restart the server drops the resent as duplicates): " + why,
            {{"acked_seq", acked_seq}});
}

bool DiskQueue::next_after(uint64_t after, QueuedEvent& event) {
  std::lock_guard lock(mutex_);
  const uint64_t wanted = std::max(after + 1, window_from_);
  if (wanted > last_seq_) return false;
  const auto found = std::lower_bound(window_.begin(), window_.end(), wanted,
                                      [](const QueuedEvent& queued, uint64_t seq) { return queued.seq < seq; });
  // Read ahead once the sender is past half the window (or beyond it).
  const bool due = window_through_ < last_seq_ &&
                   (found == window_.end() || static_cast<size_t>(window_.end() - found) * 2 < window_.size());
  if (due && !read_ahead_due_) {
    read_ahead_due_ = true;
    housekeeping_due_.notify_one();
  }
  if (found == window_.end()) return false;
  event = *found;
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
  return last_seq_ >= window_from_ ? last_seq_ - window_from_ + 1 : 0;
}
uint64_t DiskQueue::queued_bytes() const {
  std::lock_guard lock(mutex_);
  return disk_bytes_;
}

}  // namespace gatehouse::agent
