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

// The records of every segment, parsed; a body that does not parse is damage.
template <class OnRecord>
bool scan(const std::string& dir, OnRecord on_record, StoreStats& stats, std::string& why) {
  SegmentLogRecovery recovery;
  const bool ok = SegmentLog::scan(
      log_options(dir, 0),
      [&](uint64_t, std::span<const std::byte> body) {
        Record record;
        if (!parse_record(body, record)) return false;
        on_record(record);
        return true;
      },
      recovery, why);
  stats.segments = recovery.segments;
  stats.torn_bytes_truncated = recovery.torn_bytes_truncated;
  return ok;
}

}  // namespace

std::unique_ptr<EventStore> EventStore::open(const std::string& dir, const StoreLimits& limits, std::string& why) {
  std::unique_ptr<EventStore> store(new EventStore(dir, limits));
  StoreStats& stats = store->stats_;
  auto on_record = [&store, &stats](uint64_t, std::span<const std::byte> body) {
    Record record;
    if (!parse_record(body, record)) return false;
    if (record.type == kRecordDuplicates) {
      stats.duplicates_dropped += record.duplicates;
      return true;
    }
    AgentProgress& agent = store->agents_[std::string(record.agent)];
    SeqState& seqs = agent.incarnations[record.incarnation];
    if (seqs.appended_seq == 0) seqs.base_seq = (record.gap_first_seq != 0 ? record.gap_first_seq : record.seq) - 1;
    seqs.appended_seq = seqs.durable_seq = std::max(seqs.durable_seq, record.seq);
    agent.latest_incarnation = record.incarnation;
    count(record, stats);
    return true;
  };
  SegmentLogRecovery recovery;
  store->log_ = SegmentLog::open(log_options(dir, limits.segment_max_bytes), on_record, recovery, why);
  if (store->log_ == nullptr) return nullptr;
  stats.agents = store->agents_.size();
  stats.segments = recovery.segments;
  stats.torn_bytes_truncated = recovery.torn_bytes_truncated;
  return store;
}

EventStore::~EventStore() { stop(); }

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
    if (entry.gap_first_seq != 0) {  // a gap: what the agent dropped, never sent (part of it may be stored)
      const uint64_t first_seq = std::max(entry.gap_first_seq, seqs.appended_seq + 1);
      seqs.appended_seq = entry.seq;
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
  {
    std::lock_guard lock(mutex_);
    stats_.duplicates_dropped += pending_duplicates_;
    pending_duplicates_ = 0;
    for (Batch* batch : batches) {
      for (Batch::Entry& entry : batch->entries) {
        SeqState& seqs = agents_[entry.agent].incarnations[entry.incarnation];
        if (durable) seqs.durable_seq = seqs.appended_seq;
        entry.durable_seq = seqs.durable_seq;
      }
    }
    stats_.segments = log_->current_segment();
  }
  for (Batch* batch : batches) deliver_(batch);
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
    }
    if (wait_unless_stopping(kDiskFullRetry)) return false;
  }
  if (waited) {
    const auto full_ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - since);
    log::emit(log::Level::info, log::EventId::store_disk_room, "the event store writes again; acknowledgements resume",
              {{"full_ms", static_cast<uint64_t>(full_ms.count())}});
  }
  return true;
}

bool EventStore::agent_summaries(const std::string& dir, std::vector<AgentSummary>& summaries, std::string& why) {
  std::map<std::string, std::pair<AgentSummary, std::set<uint64_t>>, std::less<>> agents;
  const bool ok = dump(dir, "", [&](const StoredEvent& event) {
    auto& [summary, incarnations] = agents[event.agent];
    incarnations.insert(event.incarnation);
    summary.last_seq = std::max(summary.last_seq, event.seq);
    if (event.gap_first_seq != 0) summary.declared_dropped += event.seq - event.gap_first_seq + 1;
    else summary.events += 1;
  }, why);
  if (!ok) return false;
  for (auto& [name, entry] : agents) {
    entry.first.agent = name;
    entry.first.incarnations = entry.second.size();
    summaries.push_back(std::move(entry.first));
  }
  return true;
}

bool EventStore::read_stats(const std::string& dir, StoreStats& stats, std::string& why) {
  stats = {};
  std::map<std::string, uint64_t, std::less<>> agents;
  auto on_record = [&](const Record& record) {
    if (record.type == kRecordDuplicates) {
      stats.duplicates_dropped += record.duplicates;
      return;
    }
    agents.try_emplace(std::string(record.agent), 0);
    count(record, stats);
  };
  if (!scan(dir, on_record, stats, why)) return false;
  stats.agents = agents.size();
  return true;
}

bool EventStore::dump(const std::string& dir, std::string_view agent,
                      const std::function<void(const StoredEvent&)>& on_event, std::string& why) {
  StoreStats stats;
  StoredEvent event;
  auto on_record = [&](const Record& record) {
    if (record.type == kRecordDuplicates || (!agent.empty() && record.agent != agent)) return;
    event.agent = record.agent;
    event.incarnation = record.incarnation;
    event.seq = record.seq;
    event.gap_first_seq = record.gap_first_seq;
    event.payload.assign(record.payload.begin(), record.payload.end());
    event.received_unix_us = record.received_unix_us;
    event.path = record.path;
    on_event(event);
  };
  return scan(dir, on_record, stats, why);
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
