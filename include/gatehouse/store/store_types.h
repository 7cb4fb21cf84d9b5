// The server's event store: types only (functions in store.h). Byte layout of
// a segment file: docs/server.md ("The event store").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gatehouse::runtime {
class Shard;
class Mailbox;
}  // namespace gatehouse::runtime

namespace gatehouse::store {

struct StoreLimits {
  uint32_t commit_interval_ms = 2;            // group commit: waiting writes are fsynced after at most this
  uint64_t commit_bytes = 1u << 20;           // ... or as soon as this many bytes wait
  uint64_t segment_max_bytes = 64u << 20;     // a new segment file after this
  uint32_t batches_waiting_max = 1'024;       // submitted batches not yet taken by the writer
  int32_t writer_nice = 0;                    // every ACK waits for the writer: the shards' priority
  uint32_t retention_days = 0;                // whole days of events kept (older partitions or segments go); 0: all
  uint64_t retention_max_bytes = 0;           // local: the oldest segments go while the store holds more; 0: no bound
  bool operator==(const StoreLimits&) const = default;
};

// One shard's DATA frames from one turn of its loop, sent to the writer as a
// unit; it comes back to the shard with `durable_seq` filled in for every
// entry once its records are on disk.
struct Batch {
  struct Entry {
    uint64_t session = 0;        // the shard's key for where the ACK goes (connection)
    uint32_t channel = 0;        // ... and which channel on it
    std::string agent;
    uint64_t incarnation = 0;    // the agent's queue lineage: seqs are unique within it
    uint64_t seq = 0;
    uint64_t gap_first_seq = 0;  // not 0: a declared gap, the agent dropped gap_first_seq..seq (no payload)
    uint32_t payload_offset = 0;
    uint32_t payload_size_bytes = 0;
    uint64_t durable_seq = 0;    // filled by the writer: the incarnation's durable seq after the commit
    std::string path;            // the gateways it crossed, nearest the agent first, ">"-joined ("" direct)
  };
  // Where the batch goes back once durable: a message to `reply_to` on
  // `reply_shard`, whose inbox slot was reserved before the batch was submitted.
  runtime::Shard* reply_shard = nullptr;
  runtime::Mailbox* reply_to = nullptr;
  std::vector<Entry> entries;
  std::vector<std::byte> payloads;
  int64_t taken_unix_us = 0;  // the writer took it: its events' received time
};

struct StoreStats {
  uint64_t agents = 0;              // agents with at least one stored event
  uint64_t events = 0;
  uint64_t bytes = 0;               // event payload bytes
  uint64_t duplicates_dropped = 0;  // (agent, incarnation, seq) already stored: dropped, across restarts
  uint64_t gaps = 0;                // gaps agents declared (their queue was full: drop-oldest)
  uint64_t events_lost = 0;         // ... the events in them
  uint64_t segments = 0;            // held (local: segment files; a group: the events' partitions)
  uint64_t torn_bytes_truncated = 0;  // at the last open: a torn tail cut off after a crash
  uint64_t events_expired = 0;        // local: removed by retention with their segments (not in `events`)
  uint64_t segments_expired = 0;
};

// Where an agent's incarnation stands in the store (HELLO_OK / OPEN_OK).
struct ResumePoint {
  bool known = false;            // the incarnation has records
  uint64_t base_seq = 0;         // ... it begins after this seq
  uint64_t durable_seq = 0;      // its highest seq on disk (its base while its first records are not)
  uint64_t latest_incarnation = 0;  // the agent's incarnation with the last record (0: none)
  uint64_t latest_durable_seq = 0;
};

// What `store verify` and `store salvage` found: damaged stretches of bytes,
// and, from the seqs on either side, which events they took.
struct DamageReport {
  struct Stretch {
    std::string file;
    uint64_t from_byte = 0;
    uint64_t to_byte = 0;  // where valid records start again (or the file's end)
  };
  struct Lost {
    std::string agent;
    uint64_t incarnation = 0;
    uint64_t first_seq = 0;
    uint64_t last_seq = 0;
  };
  std::vector<Stretch> damaged;
  std::vector<Lost> lost;    // seqs missing between records on either side of damage
  uint64_t records_kept = 0;
};

struct StoredEvent {
  std::string agent;
  uint64_t incarnation = 0;
  uint64_t seq = 0;
  uint64_t gap_first_seq = 0;  // not 0: the agent declared gap_first_seq..seq dropped (no payload)
  std::vector<std::byte> payload;
  int64_t received_unix_us = 0;  // when a server took it (0: a local record from before received times)
  std::string path;              // the gateways it crossed ("" direct)
  std::string server;            // a group's: the server that stored it
};

// One agent's events in a store (`gatehouse store agents`).
struct AgentSummary {
  std::string agent;
  uint64_t events = 0;
  uint64_t declared_dropped = 0;  // seqs its gaps declared
  uint64_t incarnations = 0;
  uint64_t last_seq = 0;
};

}  // namespace gatehouse::store
