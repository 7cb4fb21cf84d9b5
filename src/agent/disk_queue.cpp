#include "gatehouse/agent/disk_queue.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "gatehouse/store/record_io.h"

namespace gatehouse::agent {
namespace {

constexpr uint32_t kRecordBodyMaxBytes = 8 + DiskQueue::kEventMaxBytes;  // u64 seq, payload

constexpr store::SegmentNames kSegments{"queue", ".log"};

std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(text.size());
  std::memcpy(bytes.data(), text.data(), text.size());
  return bytes;
}

}  // namespace

std::unique_ptr<DiskQueue> DiskQueue::open(const std::string& dir, uint64_t max_bytes, FullPolicy policy,
                                           std::string& why) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    why = "cannot create queue_dir " + dir + ": " + error.message();
    return nullptr;
  }
  std::unique_ptr<DiskQueue> queue(new DiskQueue(dir, max_bytes, policy));
  if (!queue->load(why)) return nullptr;
  return queue;
}

DiskQueue::~DiskQueue() {
  if (segment_fd_ >= 0) ::close(segment_fd_);
}

// Reads `acked` and every segment; a torn tail (crash mid-append) is cut off:
// those events were never acknowledged to the input, so nothing is lost.
bool DiskQueue::load(std::string& why) {
  if (std::ifstream acked(dir_ + "/acked"); acked) acked >> acked_seq_;
  const std::vector<uint64_t> numbers = kSegments.numbers(dir_);
  last_seq_ = acked_seq_;
  uint64_t last_good_bytes = 0;
  for (uint64_t number : numbers) {
    const std::vector<std::byte> bytes = read_file(dir_ + "/" + kSegments.name(number));
    uint64_t segment_last = 0;
    last_good_bytes = store::scan_records(bytes, kRecordBodyMaxBytes, [&](std::span<const std::byte> body) {
      if (body.size() < 8) return false;
      const uint64_t seq = store::get_u64(body.data());
      segment_last = seq;
      last_seq_ = std::max(last_seq_, seq);
      if (seq <= acked_seq_) return true;
      events_.push_back({seq, std::string(reinterpret_cast<const char*>(body.data() + 8), body.size() - 8)});
      bytes_ += body.size() - 8;
      return true;
    });
    segments_.emplace_back(number, segment_last);
  }
  const uint64_t current = numbers.empty() ? 1 : numbers.back();
  if (!open_segment(current, why)) return false;
  if (!numbers.empty()) {
    if (ftruncate(segment_fd_, static_cast<off_t>(last_good_bytes)) != 0) {
      why = "cannot truncate " + dir_ + "/" + kSegments.name(current) + ": " + std::strerror(errno);
      return false;
    }
    segment_size_bytes_ = last_good_bytes;
    segments_.pop_back();  // open_segment() listed it again
  }
  return true;
}

bool DiskQueue::open_segment(uint64_t number, std::string& why) {
  if (segment_fd_ >= 0) ::close(segment_fd_);
  const std::string path = dir_ + "/" + kSegments.name(number);
  segment_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (segment_fd_ < 0) {
    why = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  segment_number_ = number;
  segment_size_bytes_ = 0;
  segments_.emplace_back(number, last_seq_);
  return true;
}

bool DiskQueue::append(const std::vector<std::string>& events, uint64_t& dropped) {
  std::unique_lock lock(mutex_);
  std::vector<std::byte> records;
  for (const std::string& payload : events) {
    const uint64_t size = payload.size();
    if (policy_ == FullPolicy::block) {
      room_.wait(lock, [&] { return input_closed_ || bytes_ + size <= max_bytes_ || events_.empty(); });
      if (input_closed_) return false;
    } else {
      while (!events_.empty() && bytes_ + size > max_bytes_) {
        bytes_ -= events_.front().payload.size();
        acked_seq_ = events_.front().seq;  // dropped: never sent again
        events_.pop_front();
        ++dropped;
      }
    }
    const uint64_t seq = ++last_seq_;
    store::append_record(records, static_cast<uint32_t>(8 + size), [&](std::byte* body) {
      store::put_u64(body, seq);
      std::memcpy(body + 8, payload.data(), size);
    });
    events_.push_back({seq, payload});
    bytes_ += size;
  }
  if (dropped > 0) write_acked();
  if (segment_size_bytes_ > 0 && segment_size_bytes_ + records.size() > kSegmentMaxBytes) {
    std::string why;
    open_segment(segment_number_ + 1, why);
  }
  // The input is told "taken" only once the records are on disk.
  size_t written = 0;
  while (written < records.size()) {
    const ssize_t n = ::write(segment_fd_, records.data() + written, records.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    written += static_cast<size_t>(n);
  }
  fdatasync(segment_fd_);
  segment_size_bytes_ += records.size();
  segments_.back().second = last_seq_;
  return true;
}

void DiskQueue::close_input() {
  {
    std::lock_guard lock(mutex_);
    input_closed_ = true;
  }
  room_.notify_all();
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
    write_acked();
    delete_acked_segments();
  }
  room_.notify_all();
}

// Losing this file in a crash only causes resends, which the server drops as
// duplicates, so it is replaced atomically but not fsynced.
void DiskQueue::write_acked() {
  const std::string path = dir_ + "/acked";
  {
    std::ofstream out(path + ".new", std::ios::trunc);
    out << acked_seq_ << "\n";
  }
  std::rename((path + ".new").c_str(), path.c_str());
}

void DiskQueue::delete_acked_segments() {
  while (segments_.size() > 1 && segments_.front().second <= acked_seq_) {
    std::filesystem::remove(dir_ + "/" + kSegments.name(segments_.front().first));
    segments_.pop_front();
  }
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
