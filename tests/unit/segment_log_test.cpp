// The segment log under the store and the agent's queue: rotation, removal,
// recovery of a torn tail, refusal of damage elsewhere, and what a failed
// write does (a segment that is /dev/full: every write is ENOSPC).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "gatehouse/agent/disk_queue.h"
#include "gatehouse/store/segment_log.h"
#include "test_support.h"

using namespace gatehouse::store;
namespace fs = std::filesystem;

namespace {

constexpr SegmentNames kNames{"test", ".seg"};
constexpr uint32_t kBodyMaxBytes = 4'096;

struct LogDir : gatehouse::testing::TempDir {
  LogDir() : gatehouse::testing::TempDir("segment-log-test") { REQUIRE(!path.empty()); }
  SegmentLogOptions options() const { return {path, kNames, 1'000, kBodyMaxBytes}; }
};

std::vector<std::byte> record_of(uint64_t value, uint32_t body_bytes = 100) {
  std::vector<std::byte> out;
  append_record(out, body_bytes, [&](std::byte* body) {
    std::fill(body, body + body_bytes, std::byte{0x42});
    put_u64(body, value);
  });
  return out;
}

// Every record's value, by segment.
std::vector<std::pair<uint64_t, uint64_t>> read_all(const SegmentLogOptions& options, SegmentLogRecovery& recovery,
                                                    std::unique_ptr<SegmentLog>& log) {
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  std::string why;
  log = SegmentLog::open(
      options,
      [&](uint64_t segment, std::span<const std::byte> body) {
        seen.emplace_back(segment, get_u64(body.data()));
        return true;
      },
      recovery, why);
  REQUIRE_MESSAGE(log != nullptr, why);
  return seen;
}

}  // namespace

TEST_CASE("segment log: appends rotate past the segment bound, survive a reopen, and old segments go") {
  LogDir dir;
  SegmentLogRecovery recovery;
  std::unique_ptr<SegmentLog> log;
  CHECK(read_all(dir.options(), recovery, log).empty());
  std::string why;
  for (uint64_t i = 1; i <= 30; ++i) REQUIRE_MESSAGE(log->append(record_of(i), why), why);  // 108 bytes each
  CHECK(log->current_segment() == 4);  // 9 records (972 bytes) fit a 1,000-byte segment
  log.reset();
  auto seen = read_all(dir.options(), recovery, log);
  REQUIRE(seen.size() == 30);
  CHECK(seen.front() == std::pair<uint64_t, uint64_t>{1, 1});
  CHECK(seen.back() == std::pair<uint64_t, uint64_t>{4, 30});
  CHECK(recovery.segments == 4);
  REQUIRE(log->remove_segments_below(3, why));
  CHECK(log->oldest_segment() == 3);
  CHECK_FALSE(fs::exists(dir.path + "/" + kNames.name(1)));
  CHECK(fs::exists(dir.path + "/" + kNames.name(3)));
  REQUIRE(log->remove_segments_below(100, why));  // never the current one
  CHECK(log->oldest_segment() == 4);
  CHECK(fs::exists(dir.path + "/" + kNames.name(4)));
}

TEST_CASE("segment log: a torn tail of the last segment is cut at open; damage before it refuses to open") {
  LogDir dir;
  SegmentLogRecovery recovery;
  std::unique_ptr<SegmentLog> log;
  read_all(dir.options(), recovery, log);
  std::string why;
  for (uint64_t i = 1; i <= 12; ++i) REQUIRE(log->append(record_of(i), why));
  log.reset();
  std::ofstream(dir.path + "/" + kNames.name(2), std::ios::app | std::ios::binary).write("\x40\x00\x00", 3);
  auto seen = read_all(dir.options(), recovery, log);
  CHECK(seen.size() == 12);
  CHECK(recovery.torn_bytes_truncated == 3);
  REQUIRE(log->append(record_of(13), why));
  log.reset();
  CHECK(read_all(dir.options(), recovery, log).size() == 13);
  CHECK(recovery.torn_bytes_truncated == 0);
  log.reset();
  {  // one flipped byte in the first (not the last) segment
    std::fstream first(dir.path + "/" + kNames.name(1), std::ios::in | std::ios::out | std::ios::binary);
    first.seekp(50);
    first.put('\x99');
  }
  log = SegmentLog::open(dir.options(), [](uint64_t, std::span<const std::byte>) { return true; }, recovery, why);
  CHECK(log == nullptr);
  CHECK(why.find("damaged record at byte 0, with ") != std::string::npos);
}

TEST_CASE("segment log: only what a crash leaves is a torn tail: a record cut short, or zeros; a bad checksum with bytes after it is damage") {
  for (const char* tail : {"cut short", "zeros", "bad checksum"}) {
    CAPTURE(tail);
    LogDir dir;
    SegmentLogRecovery recovery;
    std::unique_ptr<SegmentLog> log;
    read_all(dir.options(), recovery, log);
    std::string why;
    for (uint64_t i = 1; i <= 3; ++i) REQUIRE(log->append(record_of(i), why));
    log.reset();
    const std::string path = dir.path + "/" + kNames.name(1);
    const auto size = fs::file_size(path);
    if (std::string(tail) == "cut short") {
      fs::resize_file(path, size - 5);  // the last record's end never reached the disk
    } else if (std::string(tail) == "zeros") {
      fs::resize_file(path, size + 4096);  // the file grew, its data never came
    } else {
      std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
      file.seekp(static_cast<std::streamoff>(size) - 3);  // the last record's body: complete, its checksum fails
      file.put('\x77');
    }
    log = SegmentLog::open(dir.options(), [](uint64_t, std::span<const std::byte>) { return true; }, recovery, why);
    if (std::string(tail) == "bad checksum") {
      CHECK(log == nullptr);
      CHECK(why.find(path + ": damaged record at byte ") == 0);
      CHECK(fs::file_size(path) == size);  // nothing was changed
    } else {
      CHECK(log != nullptr);
      CHECK(recovery.torn_bytes_truncated > 0);
    }
  }
}

TEST_CASE("segment log: a failed write fails the log for good, with the first reason") {
  LogDir dir;
  // Every write: ENOSPC, and a device cannot be truncated: the partial write
  // cannot be cut off, so the log cannot wait for room.
  fs::create_symlink("/dev/full", dir.path + "/" + kNames.name(1));
  SegmentLogRecovery recovery;
  std::string why;
  auto log = SegmentLog::open(dir.options(), [](uint64_t, std::span<const std::byte>) { return true; }, recovery, why);
  REQUIRE_MESSAGE(log != nullptr, why);
  CHECK_FALSE(log->append(record_of(1), why));
  CHECK(why.find("No space left on device; and a partial write cannot be cut off") != std::string::npos);
  CHECK(log->failed());
  CHECK_FALSE(log->out_of_space());
  std::string again;
  CHECK_FALSE(log->append(record_of(2), again));
  CHECK(again == why);
}

TEST_CASE("disk queue on a full disk: append fails and says why; nothing is taken as queued") {
  LogDir dir;
  fs::create_symlink("/dev/full", dir.path + "/queue-00000001.log");
  std::string why;
  auto queue = gatehouse::agent::DiskQueue::open(dir.path, 1u << 20, gatehouse::agent::FullPolicy::block, why);
  REQUIRE_MESSAGE(queue != nullptr, why);
  uint64_t dropped = 0;
  CHECK_FALSE(queue->append({"one", "two"}, dropped));
  CHECK(queue->failure().find("No space left on device; and a partial write cannot be cut off") != std::string::npos);
  CHECK(queue->queued_events() == 0);
  CHECK(queue->queued_bytes() == 0);
  CHECK(queue->last_seq() == 0);
  CHECK_FALSE(queue->append({"three"}, dropped));
}
