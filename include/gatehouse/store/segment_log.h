// An append-only log in numbered segment files of checksummed records (see
// record_io.h), shared by the server's event store and the agent's disk
// queue, with one set of rules for both:
// - open scans every segment in order; damage is allowed only as the tail of
//   the last segment that a crash mid-append leaves (a record cut short by
//   the end of the file, or zeros), which is cut off and made durable; a
//   complete record that fails its checksum is damage, wherever it is;
//   damage anywhere else refuses to open, naming the file and byte;
// - append() is durable on success: write, then fdatasync; a new segment's
//   name is made durable by fsyncing the folder before anything is put in it;
// - a failed write (but for a full file system, which cuts the partial write
//   off and leaves the log usable), fdatasync or rotation fails the log for good (after a
//   failed fsync the kernel may have dropped the dirty pages: retrying could
//   report durable what is not), and every later append() fails with the
//   first reason. The owner stops without acknowledging.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/store/record_io.h"

namespace gatehouse::store {

struct SegmentLogOptions {
  std::string dir;
  SegmentNames names;
  uint64_t segment_max_bytes = 64u << 20;  // rotate before a segment would pass this
  uint32_t record_body_max_bytes = 0;      // larger bodies are damage
  // open() and scan() hand records to on_record from here: what comes before
  // is summarized by the owner (the store's index). Segments below
  // start_segment are only listed; start_segment's records before the offset
  // are still read and checked (damage there refuses to open), not handed on.
  uint64_t start_segment = 0;
  uint64_t start_offset_bytes = 0;
};

// How far a read of one segment got (read_segment_from).
struct SegmentRead {
  uint64_t end_bytes = 0;   // where the records read end: the next one's start
  uint64_t file_bytes = 0;  // the file's size when it was read
  bool damaged = false;     // what follows end_bytes is not what an append in progress or a crash leaves
};

struct SegmentLogRecovery {
  uint64_t segments = 0;
  uint64_t torn_bytes_truncated = 0;  // cut off the last segment at open
};

class SegmentLog {
 public:
  // Called for every valid record at open, with the segment it is in; false
  // from it marks the record as damaged (as a bad checksum would).
  using OnRecord = std::function<bool(uint64_t segment, std::span<const std::byte> body)>;

  // Opens (creating the folder) and recovers; nullptr with `why`.
  static std::unique_ptr<SegmentLog> open(const SegmentLogOptions& options, const OnRecord& on_record,
                                          SegmentLogRecovery& recovery, std::string& why);
  // Read only: the valid records of segment `number` in order, while a
  // writer may append to it (an incomplete last record ends the walk), until
  // on_body returns false. False with why (e.g. the segment was deleted).
  static bool read_segment(const SegmentLogOptions& options, uint64_t number,
                           const std::function<bool(std::span<const std::byte>)>& on_body, std::string& why);
  // The same from byte `offset` (a record's start) of the segment.
  static bool read_segment_from(const SegmentLogOptions& options, uint64_t number, uint64_t offset,
                                const std::function<bool(std::span<const std::byte>)>& on_body, SegmentRead& read,
                                std::string& why);
  // Read only, for `store verify` and `store salvage`: every valid record of
  // every segment, and each damaged stretch [from, to) of bytes in between
  // (to: where valid records start again, or the file's end).
  using OnDamage = std::function<void(uint64_t segment, uint64_t from_byte, uint64_t to_byte)>;
  static bool salvage_scan(const SegmentLogOptions& options, const OnRecord& on_record, const OnDamage& on_damage,
                           std::string& why);
  // Read only, for tools while a writer runs: an incomplete last record is
  // not an error and nothing is changed.
  static bool scan(const SegmentLogOptions& options, const OnRecord& on_record, SegmentLogRecovery& recovery,
                   std::string& why);
  ~SegmentLog();
  SegmentLog(const SegmentLog&) = delete;
  SegmentLog& operator=(const SegmentLog&) = delete;

  // Appends whole records (built with append_record), in a new segment first
  // when the current one would pass segment_max_bytes. True: durable. False
  // and out_of_space(): the file system is full, nothing of them was kept,
  // the log stays usable (append them again later); false otherwise: failed.
  bool append(std::span<const std::byte> records, std::string& why);
  // Deletes the segments numbered below `number` (never the current one),
  // then fsyncs the folder. False with why; the log stays usable.
  bool remove_segments_below(uint64_t number, std::string& why);

  uint64_t current_segment() const { return segment_number_; }
  uint64_t current_size_bytes() const { return segment_size_bytes_; }
  uint64_t oldest_segment() const;
  bool failed() const { return !failure_.empty(); }
  bool out_of_space() const { return out_of_space_; }

 private:
  explicit SegmentLog(SegmentLogOptions options) : options_(std::move(options)) {}
  bool open_segment(uint64_t number, std::string& why);
  bool fail(std::string why_text, std::string& why);
  bool no_space(const std::string& path, std::string& why);

  const SegmentLogOptions options_;
  int segment_fd_ = -1;
  uint64_t segment_number_ = 0;
  uint64_t segment_size_bytes_ = 0;
  std::vector<uint64_t> segments_;  // on disk, ascending; the last is current
  std::string failure_;             // set once, by the first failed write
  bool out_of_space_ = false;       // the last append found the file system full
};

// fsync of a folder: makes the names created or removed in it durable.
bool sync_folder(const std::string& dir, std::string& why);
// Replaces `path` with `text` durably: a temporary file written and fsynced,
// renamed over it, the folder fsynced. False with why (the old file stays).
bool replace_file(const std::string& path, std::string_view text, std::string& why);

}  // namespace gatehouse::store
