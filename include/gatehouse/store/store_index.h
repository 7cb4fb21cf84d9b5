// The local store's index (`events/index`): a checkpoint of everything the
// segments before a position say, so that start-up, `store stats`, `store
// agents` and `store dump --agent/--since` read only what came after it, and
// retention can delete whole old segments without forgetting which seqs the
// store holds (the dedupe). Byte layout: docs/server.md ("The store's index").
// It is a summary, never the truth: the segments are; a damaged index is
// rebuilt from them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gatehouse/store/backend.h"
#include "gatehouse/store/store_types.h"

namespace gatehouse::store {

// A byte in the log: a segment's number and an offset in it (a record's start).
struct LogPosition {
  uint64_t segment = 0;  // 0: before the first segment
  uint64_t offset_bytes = 0;
  bool operator==(const LogPosition&) const = default;
};

// What one segment holds; the last one's grows as records are appended.
struct SegmentSummary {
  uint64_t number = 0;
  uint64_t size_bytes = 0;
  uint64_t events = 0;
  uint64_t payload_bytes = 0;
  uint64_t gaps = 0;
  uint64_t events_lost = 0;                // in its gaps
  int64_t last_received_unix_us = 0;       // its newest record's received time (0: none known)
};

struct StoreIndex {
  LogPosition covered;                    // everything before it is summarized here
  StoreStats stats;                       // segments and torn_bytes_truncated are not kept
  std::vector<SegmentSummary> segments;   // held on disk, ascending; the last is covered.segment
  ProgressIndex agents;                   // with each agent's totals
};

// The index's bytes (CRC-32C at the end).
std::vector<std::byte> encode_index(const LogPosition& covered, const StoreStats& stats,
                                    const std::vector<SegmentSummary>& segments, const ProgressIndex& agents);
// False with why when the bytes are not an index this version wrote whole.
bool decode_index(const std::vector<std::byte>& bytes, StoreIndex& index, std::string& why);

enum class IndexRead { found, missing, damaged };
// Reads `dir`/index; `damaged` with why (unreadable, bad checksum, other version).
IndexRead read_index(const std::string& dir, StoreIndex& index, std::string& why);
// Replaces `dir`/index durably (temporary file, fsync, rename, folder fsync).
bool write_index(const std::string& dir, const LogPosition& covered, const StoreStats& stats,
                 const std::vector<SegmentSummary>& segments, const ProgressIndex& agents, std::string& why);
std::string index_path(const std::string& dir);

}  // namespace gatehouse::store
