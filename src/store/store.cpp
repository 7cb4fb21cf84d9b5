#include "gatehouse/store/store.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>
#include <span>

#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"
#include "gatehouse/runtime/runtime.h"
#include "gatehouse/store/record_io.h"
#include "gatehouse/store/segment_log.h"

namespace gatehouse::store {
namespace {

constexpr uint32_t kPathMaxBytes = 65'535;  // u16 size: the hops (at most 8 names) ">"-joined
constexpr uint32_t kRecordBodyMaxBytes = 1 + 1 + 255 + 16 + 8 + 8 + 2 + kPathMaxBytes + (1u << 20);
// An agent's records carry (agent, incarnation, seq): seqs are unique per incarnation.
constexpr uint8_t kRecordEvent = 4;       // u8 name size, name, u64 incarnation, u64 seq, payload
constexpr uint8_t kRecordDuplicates = 2;  // u64 duplicates dropped since the previous such record
constexpr uint8_t kRecordGap = 5;         // u8 name size, name, u64 incarnation, u64 last seq, u64 first seq: declared dropped
// Written since received times and paths: the same, then u64 received (unix µs), u16 path size, path
// (an event's payload after them). Read as 4 and 5 with those two fields.
constexpr uint8_t kRecordEventReceived = 6;
constexpr uint8_t kRecordGapReceived = 7;
constexpr uint32_t kKeyBytes = 16;        // u64 incarnation, u64 seq
constexpr uint32_t kReceivedBytes = 8 + 2;  // u64 received, u16 path size

constexpr SegmentNames kSegments{"events", ".seg"};
constexpr auto kDiskFullRetry = std::chrono::seconds(1);  // a full disk: the commit is tried again after this
// The index is rewritten after a new segment, after this much more log (a
// restart re-reads at most about this plus kIndexEvery's worth), or when idle.
constexpr uint64_t kIndexEveryBytes = 16u << 20;
constexpr auto kIndexEvery = std::chrono::seconds(5);
constexpr auto kRetentionEvery = std::chrono::seconds(60);  // retention by age is looked at this often

struct Record {
  uint8_t type = 0;
  std::string_view agent;
  uint64_t incarnation = 0;
  uint64_t seq = 0;
  uint64_t gap_first_seq = 0;
  uint64_t duplicates = 0;
  std::span<const std::byte> payload;
  int64_t received_unix_us = 0;  // 0: a record from before received times
  std::string_view path;
};

// An event's or a gap's count in the stats.
void count(const Record& record, StoreStats& stats) {
  if (record.type == kRecordGap) {
    ++stats.gaps;
    stats.events_lost += record.seq - record.gap_first_seq + 1;
    return;
  }
  ++stats.events;
  stats.bytes += record.payload.size();
}

// ... in its agent's listing, found in `segment`.
void add_to_totals(AgentTotals& totals, const Record& record, uint64_t segment) {
  if (record.type == kRecordGap) totals.declared_dropped += record.seq - record.gap_first_seq + 1;
  else ++totals.events;
  totals.last_seq = std::max(totals.last_seq, record.seq);
  if (totals.first_segment == 0) totals.first_segment = segment;
  totals.last_segment = segment;
}

// ... in its segment's summary.
void add_to_segment(std::vector<SegmentSummary>& segments, uint64_t number, const Record& record) {
  if (segments.empty() || segments.back().number != number) segments.push_back({.number = number});
  SegmentSummary& segment = segments.back();
  if (record.type == kRecordGap) {
    ++segment.gaps;
    segment.events_lost += record.seq - record.gap_first_seq + 1;
  } else {
    ++segment.events;
    segment.payload_bytes += record.payload.size();
  }
  segment.last_received_unix_us = std::max(segment.last_received_unix_us, record.received_unix_us);
}

AgentProgress& progress_of(ProgressIndex& agents, std::string_view name) {
  auto found = agents.find(name);
  if (found == agents.end()) found = agents.emplace(std::string(name), AgentProgress{}).first;
  return found->second;
}

bool parse_record(std::span<const std::byte> body, Record& record) {
  if (body.empty()) return false;
  record.type = static_cast<uint8_t>(body[0]);
  if (record.type == kRecordDuplicates) {
    if (body.size() != 9) return false;
    record.duplicates = get_u64(body.data() + 1);
    return true;
  }
  const bool received = record.type == kRecordEventReceived || record.type == kRecordGapReceived;
  if (record.type == kRecordEventReceived) record.type = kRecordEvent;
  if (record.type == kRecordGapReceived) record.type = kRecordGap;
  if ((record.type != kRecordEvent && record.type != kRecordGap) || body.size() < 2) return false;
  const size_t name_size = static_cast<uint8_t>(body[1]);
  if (name_size == 0 || body.size() < 2 + name_size + kKeyBytes) return false;
  record.agent = {reinterpret_cast<const char*>(body.data() + 2), name_size};
  record.incarnation = get_u64(body.data() + 2 + name_size);
  record.seq = get_u64(body.data() + 2 + name_size + 8);
  if (record.incarnation == 0 || record.seq == 0) return false;
  size_t at = 2 + name_size + kKeyBytes;
  if (record.type == kRecordGap) {
    if (body.size() < at + 8) return false;
    record.gap_first_seq = get_u64(body.data() + at);
    at += 8;
    if (record.gap_first_seq < 1 || record.gap_first_seq > record.seq) return false;
  }
  if (received) {
    if (body.size() < at + kReceivedBytes) return false;
    record.received_unix_us = static_cast<int64_t>(get_u64(body.data() + at));
    const size_t path_size = std::to_integer<size_t>(body[at + 8]) | (std::to_integer<size_t>(body[at + 9]) << 8);
    at += kReceivedBytes;
    if (body.size() < at + path_size) return false;
    record.path = {reinterpret_cast<const char*>(body.data() + at), path_size};
    at += path_size;
  }
  if (record.type == kRecordGap) return body.size() == at;
  record.payload = body.subspan(at);
  return true;
}

SegmentLogOptions log_options(const std::string& dir, uint64_t segment_max_bytes) {
  return {dir, kSegments, segment_max_bytes, kRecordBodyMaxBytes};
}

// The store's index for a reader: none (read everything) when it is missing or damaged.
StoreIndex usable_index(const std::string& dir) {
  StoreIndex index;
  std::string ignored;
  if (read_index(dir, index, ignored) != IndexRead::found) index = {};
  return index;
}

// The records after the index, parsed; a body that does not parse is damage.
template <class OnRecord>
bool scan_after(const std::string& dir, const StoreIndex& index, OnRecord on_record, SegmentLogRecovery& recovery,
                std::string& why) {
  SegmentLogOptions options = log_options(dir, 0);
  options.start_segment = index.covered.segment;
  options.start_offset_bytes = index.covered.offset_bytes;
  return SegmentLog::scan(
      options,
      [&](uint64_t segment, std::span<const std::byte> body) {
        Record record;
        if (!parse_record(body, record)) return false;
        on_record(segment, record);
        return true;
      },
      recovery, why);
}

uint64_t file_size_or_zero(const std::string& path) {
  std::error_code error;
  const uint64_t size = std::filesystem::file_size(path, error);
  return error ? 0 : size;
}

}  // namespace

std::unique_ptr<EventStore> EventStore::open(const std::string& dir, const StoreLimits& limits, std::string& why) {
  std::unique_ptr<EventStore> store(new EventStore(dir, limits));
  SegmentLogOptions options = log_options(dir, limits.segment_max_bytes);
  StoreIndex index;
  std::string index_why;
  switch (read_index(dir, index, index_why)) {
    case IndexRead::found:
      if (!store->adopt_index(index, why)) return nullptr;
      options.start_segment = store->indexed_.segment;
      options.start_offset_bytes = store->indexed_.offset_bytes;
      break;
    case IndexRead::damaged:
      log::emit(log::Level::warning, log::EventId::store_index,
                "the store's index cannot be used; it is rebuilt from every segment (" + index_why +
                    "). If retention removed segments, their agents' progress is known only from the segments "
                    "kept: an agent that resends events older than those could have them stored again");
      break;
    case IndexRead::missing:
      break;
  }
  SegmentLogRecovery recovery;
  store->log_ = SegmentLog::open(
      options, [&store](uint64_t segment, std::span<const std::byte> body) { return store->absorb(segment, body); },
      recovery, why);
  if (store->log_ == nullptr) return nullptr;
  std::vector<SegmentSummary>& segments = store->segments_;
  for (SegmentSummary& segment : segments) {  // the segments read: their sizes now (a torn tail cut off)
    if (segment.number >= options.start_segment) segment.size_bytes = file_size_or_zero(dir + "/" + kSegments.name(segment.number));
  }
  if (segments.empty() || segments.back().number != store->log_->current_segment()) {
    segments.push_back({.number = store->log_->current_segment()});
  }
  segments.back().size_bytes = store->log_->current_size_bytes();
  // Segments an index no longer holds (a crash between it and their removal) go now.
  if (store->log_->oldest_segment() < segments.front().number &&
      !store->log_->remove_segments_below(segments.front().number, why)) {
    return nullptr;
  }
  store->stats_.agents = store->agents_.size();
  store->stats_.segments = segments.size();
  store->stats_.torn_bytes_truncated = recovery.torn_bytes_truncated;
  if (store->log_end() != store->indexed_) store->write_index_now();  // the next start reads only what comes after
  return store;
}

// The index's segments must all be there as it saw them (the last may have
// grown): a missing or changed one would mean acknowledged events are gone.
bool EventStore::adopt_index(StoreIndex& index, std::string& why) {
  for (size_t i = 0; i + 1 < index.segments.size(); ++i) {
    const SegmentSummary& segment = index.segments[i];
    const std::string path = dir_ + "/" + kSegments.name(segment.number);
    std::error_code error;
    const uint64_t size = std::filesystem::file_size(path, error);
    if (!error && size == segment.size_bytes) continue;
    why = path + (error ? " is missing" : " is " + std::to_string(size) + " bytes") +
          ", but the store's index holds it with " + std::to_string(segment.events) + " events in " +
          std::to_string(segment.size_bytes) + " bytes: acknowledged events would be gone; nothing was changed. "
          "If the segments were restored from a backup or salvaged, remove " + index_path(dir_) +
          " and start again: it is rebuilt from the segments";
    return false;
  }
  agents_ = std::move(index.agents);
  stats_ = index.stats;
  segments_ = std::move(index.segments);
  indexed_ = index.covered;
  return true;
}

// A record read at open (after the index): into the progress, counts and summaries.
bool EventStore::absorb(uint64_t segment, std::span<const std::byte> body) {
  Record record;
  if (!parse_record(body, record)) return false;
  if (record.type == kRecordDuplicates) {
    stats_.duplicates_dropped += record.duplicates;
    return true;
  }
  AgentProgress& agent = progress_of(agents_, record.agent);
  SeqState& seqs = agent.incarnations[record.incarnation];
  if (seqs.appended_seq == 0) seqs.base_seq = (record.gap_first_seq != 0 ? record.gap_first_seq : record.seq) - 1;
  seqs.appended_seq = seqs.durable_seq = std::max(seqs.durable_seq, record.seq);
  agent.latest_incarnation = record.incarnation;
  add_to_totals(agent.totals, record, segment);
  add_to_segment(segments_, segment, record);
  count(record, stats_);
  return true;
}

EventStore::~EventStore() {
  stop();
  if (log_ != nullptr && !state_ahead_of_disk_ && log_end() != indexed_) write_index_now();
}

ResumePoint EventStore::resume_point(std::string_view agent, uint64_t incarnation) const {
  std::lock_guard lock(mutex_);
  return resume_point_of(agents_, agent, incarnation);
}

StoreStats EventStore::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

// Writer: appends the batch's new events as records; earlier seqs are duplicates.
void EventStore::take(Batch& batch) {
  std::lock_guard lock(mutex_);
  for (Batch::Entry& entry : batch.entries) {
    GH_INVARIANT(!entry.agent.empty() && entry.agent.size() <= 255 && entry.incarnation != 0);
    AgentProgress& agent = agents_[entry.agent];
    SeqState& seqs = agent.incarnations[entry.incarnation];
    if (entry.seq <= seqs.appended_seq) {
      ++pending_duplicates_;
      continue;
    }
    if (seqs.appended_seq == 0) seqs.base_seq = (entry.gap_first_seq != 0 ? entry.gap_first_seq : entry.seq) - 1;
    agent.latest_incarnation = entry.incarnation;
    const auto name_size = static_cast<uint32_t>(entry.agent.size());
    const auto path_size = static_cast<uint32_t>(std::min<size_t>(entry.path.size(), kPathMaxBytes));
    const auto put_key = [&](std::byte* body, uint8_t type) {
      body[0] = std::byte{type};
      body[1] = static_cast<std::byte>(name_size);
      std::memcpy(body + 2, entry.agent.data(), name_size);
      put_u64(body + 2 + name_size, entry.incarnation);
      put_u64(body + 2 + name_size + 8, entry.seq);
      return body + 2 + name_size + kKeyBytes;
    };
    const auto put_received = [&](std::byte* out) {
      put_u64(out, static_cast<uint64_t>(batch.taken_unix_us));
      out[8] = static_cast<std::byte>(path_size & 0xff);
      out[9] = static_cast<std::byte>(path_size >> 8);
      if (path_size > 0) std::memcpy(out + kReceivedBytes, entry.path.data(), path_size);
      return out + kReceivedBytes + path_size;
    };
    group_.last_received_unix_us = batch.taken_unix_us;
    agent.totals.last_seq = std::max(agent.totals.last_seq, entry.seq);
    if (entry.gap_first_seq != 0) {  // a gap: what the agent dropped, never sent (part of it may be stored)
      const uint64_t first_seq = std::max(entry.gap_first_seq, seqs.appended_seq + 1);
      seqs.appended_seq = entry.seq;
      agent.totals.declared_dropped += entry.seq - first_seq + 1;
      ++group_.gaps;
      group_.events_lost += entry.seq - first_seq + 1;
      append_record(pending_, 1 + 1 + name_size + kKeyBytes + 8 + kReceivedBytes + path_size, [&](std::byte* body) {
        std::byte* out = put_key(body, kRecordGapReceived);
        put_u64(out, first_seq);
        put_received(out + 8);
      });
      ++stats_.gaps;
      stats_.events_lost += entry.seq - first_seq + 1;
      continue;
    }
    seqs.appended_seq = entry.seq;
    const std::byte* payload = batch.payloads.data() + entry.payload_offset;
    append_record(pending_, 1 + 1 + name_size + kKeyBytes + kReceivedBytes + path_size + entry.payload_size_bytes,
                  [&](std::byte* body) {
                    std::byte* out = put_received(put_key(body, kRecordEventReceived));
                    if (entry.payload_size_bytes > 0) std::memcpy(out, payload, entry.payload_size_bytes);
                  });
    ++stats_.events;
    stats_.bytes += entry.payload_size_bytes;
    ++agent.totals.events;
    ++group_.events;
    group_.payload_bytes += entry.payload_size_bytes;
  }
  stats_.agents = agents_.size();
}

void EventStore::commit(std::vector<Batch*>& batches) {
  if (pending_duplicates_ > 0) {
    append_record(pending_, 9, [&](std::byte* body) {
      body[0] = std::byte{kRecordDuplicates};
      put_u64(body + 1, pending_duplicates_);
    });
  }
  const bool durable = write_pending();
  pending_.clear();
  const uint64_t segment = log_->current_segment();
  {
    std::lock_guard lock(mutex_);
    stats_.duplicates_dropped += pending_duplicates_;
    pending_duplicates_ = 0;
    for (Batch* batch : batches) {
      for (Batch::Entry& entry : batch->entries) {
        AgentProgress& agent = progress_of(agents_, entry.agent);
        SeqState& seqs = agent.incarnations[entry.incarnation];
        if (durable) {
          seqs.durable_seq = seqs.appended_seq;
          if (agent.totals.first_segment == 0) agent.totals.first_segment = segment;
          agent.totals.last_segment = segment;
        }
        entry.durable_seq = seqs.durable_seq;
      }
    }
    if (durable) add_group_to_segment();
    stats_.segments = segments_.size();
  }
  state_ahead_of_disk_ = state_ahead_of_disk_ || !durable;
  for (Batch* batch : batches) deliver_(batch);
  if (!durable) return;
  // After the ACKs: a new segment, or enough more log, is indexed (bounds a
  // restart's re-read); a new segment may also let retention remove old ones.
  if (segment != indexed_.segment) {
    expire_segments();
    write_index_now();
  } else if (log_->current_size_bytes() - indexed_.offset_bytes >= kIndexEveryBytes) {
    write_index_now();
  }
}

// The group now on disk, in its segment's summary.
void EventStore::add_group_to_segment() {
  const uint64_t number = log_->current_segment();
  if (segments_.empty() || segments_.back().number != number) segments_.push_back({.number = number});
  SegmentSummary& segment = segments_.back();
  segment.size_bytes = log_->current_size_bytes();
  segment.events += group_.events;
  segment.payload_bytes += group_.payload_bytes;
  segment.gaps += group_.gaps;
  segment.events_lost += group_.events_lost;
  segment.last_received_unix_us = std::max(segment.last_received_unix_us, group_.last_received_unix_us);
  group_ = {};
}

void EventStore::on_idle() {
  if (state_ahead_of_disk_) return;
  const auto now = std::chrono::steady_clock::now();
  if ((limits_.retention_days != 0 || limits_.retention_max_bytes != 0) && now - retention_checked_at_ >= kRetentionEvery) {
    retention_checked_at_ = now;
    expire_segments();
  }
  if (log_end() != indexed_ && now - indexed_at_ >= kIndexEvery) write_index_now();
}

void EventStore::write_index_now() {
  GH_INVARIANT(pending_.empty() && !state_ahead_of_disk_);
  indexed_at_ = std::chrono::steady_clock::now();
  std::string why;
  if (!write_index(dir_, log_end(), stats_, segments_, agents_, why)) {
    if (!index_write_failing_) {
      log::emit(log::Level::warning, log::EventId::store_index,
                "cannot write the store's index (tried again while the store writes; a start meanwhile reads more "
                "of the log): " + why);
    }
    index_write_failing_ = true;
    return;
  }
  index_write_failing_ = false;
  indexed_ = log_end();
}

// Retention: whole sealed segments, oldest first, while the oldest is past
// retention_days or the store holds more than retention_max_bytes. The
// index without them is written first (the agents' progress stays in it,
// so their seqs are still known as stored), then the files go.
void EventStore::expire_segments() {
  const int64_t now_unix_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::chrono::system_clock::now().time_since_epoch()).count();
  const int64_t oldest_kept_unix_us = now_unix_us - int64_t{limits_.retention_days} * 86'400'000'000;
  uint64_t held_bytes = 0;
  for (const SegmentSummary& segment : segments_) held_bytes += segment.size_bytes;
  size_t expiring = 0;
  StoreStats stats = stats_;
  bool by_age = false;
  while (expiring + 1 < segments_.size()) {  // never the current one
    const SegmentSummary& segment = segments_[expiring];
    const bool too_old = limits_.retention_days != 0 && segment.last_received_unix_us != 0 &&
                         segment.last_received_unix_us < oldest_kept_unix_us;
    const bool too_much = limits_.retention_max_bytes != 0 && held_bytes > limits_.retention_max_bytes;
    if (!too_old && !too_much) break;
    by_age = by_age || too_old;
    held_bytes -= segment.size_bytes;
    stats.events -= segment.events;
    stats.bytes -= segment.payload_bytes;
    stats.gaps -= segment.gaps;
    stats.events_lost -= segment.events_lost;
    stats.events_expired += segment.events;
    ++stats.segments_expired;
    ++expiring;
  }
  if (expiring == 0) return;
  const std::vector<SegmentSummary> kept(segments_.begin() + static_cast<ptrdiff_t>(expiring), segments_.end());
  stats.segments = kept.size();
  std::string why;
  if (!write_index(dir_, log_end(), stats, kept, agents_, why)) {
    log::emit(log::Level::warning, log::EventId::store_retention,
              "retention cannot remove old segments: the index without them cannot be written (tried again in a "
              "minute): " + why);
    return;
  }
  const uint64_t removed_events = stats.events_expired - stats_.events_expired;
  const uint64_t removed_bytes = [&] {
    uint64_t bytes = 0;
    for (size_t i = 0; i < expiring; ++i) bytes += segments_[i].size_bytes;
    return bytes;
  }();
  {
    std::lock_guard lock(mutex_);
    stats_ = stats;
  }
  segments_ = kept;
  indexed_ = log_end();
  indexed_at_ = std::chrono::steady_clock::now();
  if (!log_->remove_segments_below(segments_.front().number, why)) {
    log::emit(log::Level::warning, log::EventId::store_retention,
              "retention cannot delete old segments (the index no longer holds them; they go at the next start): " + why);
    return;
  }
  log::emit(log::Level::info, log::EventId::store_retention,
            by_age ? "old segments removed: their newest event was older than [store] retention_days"
                   : "old segments removed: the store held more than [store] retention_max_bytes",
            {{"segments", static_cast<uint64_t>(expiring)},
             {"events", removed_events},
             {"bytes", removed_bytes},
             {"oldest_kept_segment", segments_.front().number}});
}

// Writes and fsyncs what is pending. A full disk is waited out: nothing is
// acknowledged meanwhile (the agents' windows close, they keep their events)
// and the server goes on serving; a stop meanwhile gives up (false: nothing
// of it was acknowledged, the agents resend after the restart). Any other
// failure stops the process rather than acknowledge.
bool EventStore::write_pending() {
  using clock = std::chrono::steady_clock;
  std::string why;
  const clock::time_point since = clock::now();
  bool waited = false;
  while (!log_->append(pending_, why)) {
    if (!log_->out_of_space()) {
      log::emit(log::Level::error, log::EventId::store_write_failed,
                "the event store cannot write; stopping without acknowledging (agents keep their events): " + why);
      log::stop_writer();
      std::_Exit(EXIT_FAILURE);  // now: no other thread may acknowledge meanwhile
    }
    if (!waited) {
      log::emit(log::Level::error, log::EventId::store_disk_full,
                "the event store's disk is full: nothing more is acknowledged until it has room (agents keep their "
                "events; the server goes on serving); tried again every second: " + why,
                {{"bytes_waiting", static_cast<uint64_t>(pending_.size())}});
      waited = true;
      set_unavailable("the event store's disk is full");
    }
    if (wait_unless_stopping(kDiskFullRetry)) return false;
  }
  if (waited) {
    const auto full_ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - since);
    log::emit(log::Level::info, log::EventId::store_disk_room, "the event store writes again; acknowledgements resume",
              {{"full_ms", static_cast<uint64_t>(full_ms.count())}});
    set_unavailable("");
  }
  return true;
}

bool EventStore::agent_summaries(const std::string& dir, std::vector<AgentSummary>& summaries, std::string& why) {
  StoreIndex index = usable_index(dir);
  SegmentLogRecovery recovery;
  const bool ok = scan_after(dir, index, [&](uint64_t segment, const Record& record) {
    if (record.type == kRecordDuplicates) return;
    AgentProgress& agent = progress_of(index.agents, record.agent);
    agent.incarnations.try_emplace(record.incarnation);
    add_to_totals(agent.totals, record, segment);
  }, recovery, why);
  if (!ok) return false;
  for (const auto& [name, agent] : index.agents) {
    summaries.push_back({.agent = name,
                         .events = agent.totals.events,
                         .declared_dropped = agent.totals.declared_dropped,
                         .incarnations = agent.incarnations.size(),
                         .last_seq = agent.totals.last_seq});
  }
  return true;
}

bool EventStore::read_stats(const std::string& dir, StoreStats& stats, std::string& why) {
  StoreIndex index = usable_index(dir);
  stats = index.stats;
  SegmentLogRecovery recovery;
  const bool ok = scan_after(dir, index, [&](uint64_t, const Record& record) {
    if (record.type == kRecordDuplicates) {
      stats.duplicates_dropped += record.duplicates;
      return;
    }
    progress_of(index.agents, record.agent);
    count(record, stats);
  }, recovery, why);
  if (!ok) return false;
  stats.agents = index.agents.size();
  stats.segments = recovery.segments;
  stats.torn_bytes_truncated = recovery.torn_bytes_truncated;
  return true;
}

namespace {

// Whether a segment the index summarizes can hold nothing for `filter`.
bool skippable(const StoreIndex& index, uint64_t number, const DumpFilter& filter) {
  if (number >= index.covered.segment) return false;  // not (wholly) summarized
  if (!filter.agent.empty()) {
    const auto agent = index.agents.find(filter.agent);
    if (agent == index.agents.end()) return true;
    if (number < agent->second.totals.first_segment || number > agent->second.totals.last_segment) return true;
  }
  if (filter.since_unix_us != 0) {
    for (const SegmentSummary& segment : index.segments) {
      if (segment.number == number) return segment.last_received_unix_us < filter.since_unix_us;
    }
  }
  return false;
}

}  // namespace

bool EventStore::dump(const std::string& dir, const DumpFilter& filter, LogPosition& position,
                      const std::function<void(const StoredEvent&)>& on_event, DumpNotes& notes, std::string& why) {
  const std::vector<uint64_t> numbers = kSegments.numbers(dir);
  if (numbers.empty()) {
    if (std::filesystem::exists(dir)) return true;
    why = dir + ": no event store here";
    return false;
  }
  if (position.segment > numbers.back()) {
    why = "the position (segment " + std::to_string(position.segment) + ") is past the store's last segment (" +
          std::to_string(numbers.back()) + "): a cursor from another store?";
    return false;
  }
  if (position.segment != 0 && position.segment < numbers.front()) notes.expired_through_segment = numbers.front() - 1;
  if (position.segment < numbers.front()) position = {numbers.front(), 0};
  const StoreIndex index = usable_index(dir);
  const SegmentLogOptions options = log_options(dir, 0);
  StoredEvent event;
  const auto on_body = [&](std::span<const std::byte> body) {
    Record record;
    if (!parse_record(body, record)) return false;
    if (record.type == kRecordDuplicates || (!filter.agent.empty() && record.agent != filter.agent)) return true;
    if (filter.since_unix_us != 0 && record.received_unix_us < filter.since_unix_us) return true;
    event.agent = record.agent;
    event.incarnation = record.incarnation;
    event.seq = record.seq;
    event.gap_first_seq = record.gap_first_seq;
    event.payload.assign(record.payload.begin(), record.payload.end());
    event.received_unix_us = record.received_unix_us;
    event.path = record.path;
    on_event(event);
    return true;
  };
  for (size_t i = 0; i < numbers.size(); ++i) {
    const uint64_t number = numbers[i];
    if (number < position.segment) continue;
    const bool sealed = i + 1 < numbers.size();  // a later segment exists: this one is complete
    if (sealed && skippable(index, number, filter)) {
      position = {numbers[i + 1], 0};
      continue;
    }
    SegmentRead read;
    if (!SegmentLog::read_segment_from(options, number, position.offset_bytes, on_body, read, why)) {
      if (std::filesystem::exists(dir + "/" + kSegments.name(number))) return false;
      notes.expired_through_segment = number;  // removed by retention while this read
      if (sealed) position = {numbers[i + 1], 0};
      continue;
    }
    if (read.damaged || (sealed && read.end_bytes < read.file_bytes)) {
      why = dir + "/" + kSegments.name(number) + ": damaged record at byte " + std::to_string(read.end_bytes) +
            " (`gatehouse store verify` lists the damage)";
      position.offset_bytes = read.end_bytes;
      return false;
    }
    position = sealed ? LogPosition{numbers[i + 1], 0} : LogPosition{number, read.end_bytes};
  }
  return true;
}

bool EventStore::salvage(const std::string& dir, const std::string& to_dir, DamageReport& report, std::string& why) {
  report = {};
  std::unique_ptr<SegmentLog> copy;
  if (!to_dir.empty()) {
    std::error_code error;
    if (std::filesystem::exists(to_dir, error) && !std::filesystem::is_empty(to_dir, error)) {
      why = to_dir + " exists and is not empty: salvage writes a new store";
      return false;
    }
    SegmentLogRecovery recovery;
    copy = SegmentLog::open(log_options(to_dir, StoreLimits{}.segment_max_bytes),
                            [](uint64_t, std::span<const std::byte>) { return true; }, recovery, why);
    if (copy == nullptr) return false;
  }
  struct Last {
    uint64_t seq = 0;
    uint64_t damage_seen = 0;  // damaged stretches met before its last record
  };
  std::map<std::pair<std::string, uint64_t>, Last, std::less<>> last;
  std::vector<std::byte> pending;
  bool copied = true;
  const auto flush = [&] {
    if (copy != nullptr && !pending.empty() && copied) copied = copy->append(pending, why);
    pending.clear();
  };
  const auto on_record = [&](uint64_t, std::span<const std::byte> body) {
    Record record;
    if (!parse_record(body, record)) return false;
    ++report.records_kept;
    if (copy != nullptr) {
      append_record(pending, static_cast<uint32_t>(body.size()),
                    [&](std::byte* out) { std::memcpy(out, body.data(), body.size()); });
      if (pending.size() >= StoreLimits{}.commit_bytes) flush();
    }
    if (record.type == kRecordDuplicates) return true;
    Last& seen = last[{std::string(record.agent), record.incarnation}];
    const uint64_t first = record.gap_first_seq != 0 ? record.gap_first_seq : record.seq;
    if (seen.seq != 0 && first > seen.seq + 1 && seen.damage_seen < report.damaged.size()) {
      report.lost.push_back({std::string(record.agent), record.incarnation, seen.seq + 1, first - 1});
    }
    seen.seq = std::max(seen.seq, record.seq);
    seen.damage_seen = report.damaged.size();
    return true;
  };
  const auto on_damage = [&](uint64_t segment, uint64_t from_byte, uint64_t to_byte) {
    report.damaged.push_back({dir + "/" + kSegments.name(segment), from_byte, to_byte});
  };
  if (!SegmentLog::salvage_scan(log_options(dir, 0), on_record, on_damage, why)) return false;
  flush();
  return copied;
}

}  // namespace gatehouse::store
