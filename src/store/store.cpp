#include "gatehouse/store/store.h"

#include "gatehouse/log/invariant.h"
#include "gatehouse/runtime/runtime.h"
#include "gatehouse/store/record_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <span>

namespace gatehouse::store {
namespace {

constexpr uint32_t kRecordBodyMaxBytes = 1 + 1 + 255 + 8 + (1u << 20);
constexpr uint8_t kRecordEvent = 1;       // u8 name size, name, u64 seq, payload
constexpr uint8_t kRecordDuplicates = 2;  // u64 duplicates dropped since the previous such record

constexpr SegmentNames kSegments{"events", ".seg"};

struct Record {
  uint8_t type = 0;
  std::string_view agent;
  uint64_t seq = 0;
  uint64_t duplicates = 0;
  std::span<const std::byte> payload;
};

bool parse_record(std::span<const std::byte> body, Record& record) {
  if (body.empty()) return false;
  record.type = static_cast<uint8_t>(body[0]);
  if (record.type == kRecordDuplicates) {
    if (body.size() != 9) return false;
    record.duplicates = get_u64(body.data() + 1);
    return true;
  }
  if (record.type != kRecordEvent || body.size() < 2) return false;
  const size_t name_size = static_cast<uint8_t>(body[1]);
  if (name_size == 0 || body.size() < 2 + name_size + 8) return false;
  record.agent = {reinterpret_cast<const char*>(body.data() + 2), name_size};
  record.seq = get_u64(body.data() + 2 + name_size);
  record.payload = body.subspan(2 + name_size + 8);
  return true;
}

// Reads every valid record of one segment. `good_bytes` is where the valid
// records end; less than the file size means a torn or corrupt tail.
template <class OnRecord>
bool scan_segment(const std::string& path, OnRecord on_record, uint64_t& good_bytes, uint64_t& file_bytes,
                  std::string& why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat info {};
  if (fd < 0 || fstat(fd, &info) != 0) {
    why = "cannot read " + path + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  file_bytes = static_cast<uint64_t>(info.st_size);
  good_bytes = 0;
  if (file_bytes == 0) {
    ::close(fd);
    return true;
  }
  void* mapped = mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapped == MAP_FAILED) {
    why = "cannot map " + path + ": " + std::strerror(errno);
    return false;
  }
  const std::span<const std::byte> bytes(static_cast<const std::byte*>(mapped), file_bytes);
  good_bytes = scan_records(bytes, kRecordBodyMaxBytes, [&](std::span<const std::byte> body) {
    Record record;
    if (!parse_record(body, record)) return false;
    on_record(record);
    return true;
  });
  munmap(mapped, file_bytes);
  return true;
}

// Scans every segment; a damaged tail is allowed only in the last one.
template <class OnRecord>
bool scan_all(const std::string& dir, OnRecord on_record, StoreStats& stats, uint64_t& last_good_bytes,
              std::string& why) {
  const std::vector<uint64_t> numbers = kSegments.numbers(dir);
  stats.segments = numbers.size();
  for (size_t i = 0; i < numbers.size(); ++i) {
    const std::string path = dir + "/" + kSegments.name(numbers[i]);
    uint64_t good = 0;
    uint64_t size = 0;
    if (!scan_segment(path, on_record, good, size, why)) return false;
    if (good < size && i + 1 < numbers.size()) {
      why = path + ": damaged record at byte " + std::to_string(good) +
            " in a segment that is not the last (not a crash tail: restore it from a backup)";
      return false;
    }
    last_good_bytes = good;
    stats.torn_bytes_truncated = size - good;
  }
  return true;
}

}  // namespace

std::unique_ptr<EventStore> EventStore::open(const std::string& dir, const StoreLimits& limits, std::string& why) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    why = "cannot create " + dir + ": " + error.message();
    return nullptr;
  }
  std::unique_ptr<EventStore> store(new EventStore(dir, limits));
  uint64_t last_good_bytes = 0;
  auto on_record = [&store](const Record& record) {
    StoreStats& stats = store->stats_;
    if (record.type == kRecordDuplicates) {
      stats.duplicates_dropped += record.duplicates;
      return;
    }
    auto [it, inserted] = store->agents_.try_emplace(std::string(record.agent));
    it->second.appended_seq = it->second.durable_seq = std::max(it->second.durable_seq, record.seq);
    ++stats.events;
    stats.bytes += record.payload.size();
  };
  if (!scan_all(dir, on_record, store->stats_, last_good_bytes, why)) return nullptr;
  store->stats_.agents = store->agents_.size();
  const std::vector<uint64_t> numbers = kSegments.numbers(dir);
  const uint64_t last = numbers.empty() ? 1 : numbers.back();
  if (!store->open_segment(last, why)) return nullptr;
  if (store->stats_.torn_bytes_truncated > 0 &&
      (ftruncate(store->segment_fd_, static_cast<off_t>(last_good_bytes)) != 0 || fsync(store->segment_fd_) != 0)) {
    why = "cannot truncate the torn tail of " + dir + "/" + kSegments.name(last) + ": " + std::strerror(errno);
    return nullptr;
  }
  store->segment_size_bytes_ = last_good_bytes;
  return store;
}

bool EventStore::open_segment(uint64_t number, std::string& why) {
  if (segment_fd_ >= 0) ::close(segment_fd_);
  const std::string path = dir_ + "/" + kSegments.name(number);
  segment_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (segment_fd_ < 0) {
    why = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  // The new file's name must be durable too, or a crash could lose it whole.
  const int dir_fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    ::close(dir_fd);
  }
  segment_number_ = number;
  segment_size_bytes_ = 0;
  return true;
}

EventStore::~EventStore() {
  stop();
  if (segment_fd_ >= 0) ::close(segment_fd_);
}

void EventStore::start(std::function<void(Batch*)> deliver) {
  deliver_ = std::move(deliver);
  writer_ = std::thread([this] {
    if (limits_.writer_nice != 0) runtime::set_thread_nice(limits_.writer_nice);  // the shards warn if refused
    run();
  });
}

bool EventStore::submit(Batch* batch) {
  {
    std::lock_guard lock(mutex_);
    if (waiting_.size() >= limits_.batches_waiting_max || stopping_) return false;
    waiting_.push_back(batch);
  }
  work_ready_.notify_one();
  return true;
}

void EventStore::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_one();
  if (writer_.joinable()) writer_.join();
}

uint64_t EventStore::durable_seq(std::string_view agent) const {
  std::lock_guard lock(mutex_);
  auto found = agents_.find(agent);
  return found == agents_.end() ? 0 : found->second.durable_seq;
}

StoreStats EventStore::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

// Group commit: take what waits, keep taking until commit_interval_ms has
// passed since the first or commit_bytes wait, then one write and one fsync.
void EventStore::run() {
  using clock = std::chrono::steady_clock;
  std::vector<Batch*> group;
  std::vector<Batch*> taken;
  for (;;) {
    clock::time_point first{};
    {
      std::unique_lock lock(mutex_);
      for (;;) {
        taken.swap(waiting_);
        if (!taken.empty() && group.empty()) first = clock::now();
        lock.unlock();
        for (Batch* batch : taken) append(*batch);
        group.insert(group.end(), taken.begin(), taken.end());
        taken.clear();
        lock.lock();
        if (stopping_ && waiting_.empty()) break;
        if (!group.empty() && (pending_.size() >= limits_.commit_bytes ||
                               clock::now() - first >= std::chrono::milliseconds(limits_.commit_interval_ms))) {
          break;
        }
        if (group.empty()) {
          work_ready_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
        } else {
          work_ready_.wait_until(lock, first + std::chrono::milliseconds(limits_.commit_interval_ms),
                                 [this] { return stopping_ || !waiting_.empty(); });
        }
      }
    }
    if (!group.empty() || pending_duplicates_ > 0) commit(group);
    group.clear();
    std::lock_guard lock(mutex_);
    if (stopping_ && waiting_.empty()) return;
  }
}

// Writer: appends the batch's new events as records; earlier seqs are duplicates.
void EventStore::append(Batch& batch) {
  std::lock_guard lock(mutex_);
  for (Batch::Entry& entry : batch.entries) {
    GH_INVARIANT(!entry.agent.empty() && entry.agent.size() <= 255);
    AgentState& agent = agents_[entry.agent];
    if (entry.seq <= agent.appended_seq) {
      ++pending_duplicates_;
      continue;
    }
    agent.appended_seq = entry.seq;
    const std::byte* payload = batch.payloads.data() + entry.payload_offset;
    const auto name_size = static_cast<uint32_t>(entry.agent.size());
    append_record(pending_, 1 + 1 + name_size + 8 + entry.payload_size_bytes, [&](std::byte* body) {
      body[0] = std::byte{kRecordEvent};
      body[1] = static_cast<std::byte>(name_size);
      std::memcpy(body + 2, entry.agent.data(), name_size);
      put_u64(body + 2 + name_size, entry.seq);
      if (entry.payload_size_bytes > 0) std::memcpy(body + 2 + name_size + 8, payload, entry.payload_size_bytes);
    });
    ++stats_.events;
    stats_.bytes += entry.payload_size_bytes;
  }
  stats_.agents = agents_.size();
}

bool EventStore::commit(std::vector<Batch*>& batches) {
  if (pending_duplicates_ > 0) {
    append_record(pending_, 9, [&](std::byte* body) {
      body[0] = std::byte{kRecordDuplicates};
      put_u64(body + 1, pending_duplicates_);
    });
  }
  std::string why;
  if (segment_size_bytes_ > 0 && segment_size_bytes_ + pending_.size() > limits_.segment_max_bytes) {
    fsync(segment_fd_);
    open_segment(segment_number_ + 1, why);
  }
  size_t written = 0;
  while (written < pending_.size()) {
    const ssize_t n = ::write(segment_fd_, pending_.data() + written, pending_.size() - written);
    if (n < 0 && errno == EINTR) continue;
    // A store that cannot write must not acknowledge: the process stops and
    // the agents keep their events queued (they resend after the restart).
    if (n <= 0) std::abort();
    written += static_cast<size_t>(n);
  }
  if (fdatasync(segment_fd_) != 0) std::abort();
  segment_size_bytes_ += pending_.size();
  pending_.clear();
  {
    std::lock_guard lock(mutex_);
    stats_.duplicates_dropped += pending_duplicates_;
    pending_duplicates_ = 0;
    for (Batch* batch : batches) {
      for (Batch::Entry& entry : batch->entries) {
        AgentState& agent = agents_[entry.agent];
        agent.durable_seq = agent.appended_seq;
        entry.durable_seq = agent.durable_seq;
      }
    }
    stats_.segments = segment_number_;
  }
  for (Batch* batch : batches) deliver_(batch);
  return true;
}

bool EventStore::read_stats(const std::string& dir, StoreStats& stats, std::string& why) {
  stats = {};
  std::map<std::string, uint64_t, std::less<>> agents;
  uint64_t last_good_bytes = 0;
  auto on_record = [&](const Record& record) {
    if (record.type == kRecordDuplicates) {
      stats.duplicates_dropped += record.duplicates;
      return;
    }
    agents.try_emplace(std::string(record.agent), 0);
    ++stats.events;
    stats.bytes += record.payload.size();
  };
  if (!scan_all(dir, on_record, stats, last_good_bytes, why)) return false;
  stats.agents = agents.size();
  return true;
}

bool EventStore::dump(const std::string& dir, std::string_view agent,
                      const std::function<void(const StoredEvent&)>& on_event, std::string& why) {
  StoreStats stats;
  uint64_t last_good_bytes = 0;
  StoredEvent event;
  auto on_record = [&](const Record& record) {
    if (record.type != kRecordEvent || record.agent != agent) return;
    event.agent = record.agent;
    event.seq = record.seq;
    event.payload.assign(record.payload.begin(), record.payload.end());
    on_event(event);
  };
  return scan_all(dir, on_record, stats, last_good_bytes, why);
}

}  // namespace gatehouse::store
