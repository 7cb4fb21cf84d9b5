#include "gatehouse/store/store_index.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "gatehouse/store/crc32c.h"
#include "gatehouse/store/record_io.h"
#include "gatehouse/store/segment_log.h"

namespace gatehouse::store {
namespace {

constexpr uint32_t kIndexMagic = 0x58494847;  // "GHIX"
constexpr uint32_t kIndexVersion = 1;
constexpr uint64_t kIndexMaxBytes = uint64_t{1} << 32;  // a sanity bound on what is read

class Writer {
 public:
  void u8(uint8_t value) { bytes_.push_back(std::byte{value}); }
  void u32(uint32_t value) { put(value, 4); }
  void u64(uint64_t value) { put(value, 8); }
  void text(const std::string& value) {
    u8(static_cast<uint8_t>(value.size()));
    const auto* data = reinterpret_cast<const std::byte*>(value.data());
    bytes_.insert(bytes_.end(), data, data + value.size());
  }
  std::vector<std::byte>& bytes() { return bytes_; }

 private:
  void put(uint64_t value, int size) {
    for (int i = 0; i < size; ++i) bytes_.push_back(static_cast<std::byte>(value >> (8 * i)));
  }
  std::vector<std::byte> bytes_;
};

// Reads fields in order; any read past the end sets failed() and yields 0.
class Reader {
 public:
  Reader(const std::byte* data, size_t size) : data_(data), size_(size) {}
  uint8_t u8() { return static_cast<uint8_t>(take(1) ? data_[at_ - 1] : std::byte{0}); }
  uint32_t u32() { return take(4) ? get_u32(data_ + at_ - 4) : 0; }
  uint64_t u64() { return take(8) ? get_u64(data_ + at_ - 8) : 0; }
  std::string text() {
    const size_t size = u8();
    if (size == 0 || !take(size)) {
      failed_ = true;
      return {};
    }
    return {reinterpret_cast<const char*>(data_ + at_ - size), size};
  }
  bool failed() const { return failed_; }
  bool done() const { return at_ == size_; }

 private:
  bool take(size_t size) {
    if (failed_ || size_ - at_ < size) {
      failed_ = true;
      return false;
    }
    at_ += size;
    return true;
  }
  const std::byte* data_;
  size_t size_;
  size_t at_ = 0;
  bool failed_ = false;
};

}  // namespace

std::string index_path(const std::string& dir) { return dir + "/index"; }

std::vector<std::byte> encode_index(const LogPosition& covered, const StoreStats& stats,
                                    const std::vector<SegmentSummary>& segments, const ProgressIndex& agents) {
  Writer out;
  out.u32(kIndexMagic);
  out.u32(kIndexVersion);
  out.u64(covered.segment);
  out.u64(covered.offset_bytes);
  for (const uint64_t value : {stats.events, stats.bytes, stats.duplicates_dropped, stats.gaps, stats.events_lost,
                               stats.events_expired, stats.segments_expired}) {
    out.u64(value);
  }
  out.u32(static_cast<uint32_t>(segments.size()));
  for (const SegmentSummary& segment : segments) {
    for (const uint64_t value : {segment.number, segment.size_bytes, segment.events, segment.payload_bytes,
                                 segment.gaps, segment.events_lost,
                                 static_cast<uint64_t>(segment.last_received_unix_us)}) {
      out.u64(value);
    }
  }
  out.u32(static_cast<uint32_t>(agents.size()));
  for (const auto& [name, agent] : agents) {
    out.text(name);
    out.u64(agent.latest_incarnation);
    const AgentTotals& totals = agent.totals;
    for (const uint64_t value :
         {totals.events, totals.declared_dropped, totals.last_seq, totals.first_segment, totals.last_segment}) {
      out.u64(value);
    }
    out.u32(static_cast<uint32_t>(agent.incarnations.size()));
    for (const auto& [id, seqs] : agent.incarnations) {
      out.u64(id);
      out.u64(seqs.base_seq);
      out.u64(seqs.durable_seq);
    }
  }
  const uint32_t crc = crc32c(out.bytes().data(), out.bytes().size());
  out.u32(crc);
  return std::move(out.bytes());
}

bool decode_index(const std::vector<std::byte>& bytes, StoreIndex& index, std::string& why) {
  index = {};
  if (bytes.size() < 12 || crc32c(bytes.data(), bytes.size() - 4) != get_u32(bytes.data() + bytes.size() - 4)) {
    why = "its checksum fails";
    return false;
  }
  Reader in(bytes.data(), bytes.size() - 4);
  if (in.u32() != kIndexMagic || in.u32() != kIndexVersion) {
    why = "not an index of this version";
    return false;
  }
  index.covered.segment = in.u64();
  index.covered.offset_bytes = in.u64();
  StoreStats& stats = index.stats;
  for (uint64_t* value : {&stats.events, &stats.bytes, &stats.duplicates_dropped, &stats.gaps, &stats.events_lost,
                          &stats.events_expired, &stats.segments_expired}) {
    *value = in.u64();
  }
  const uint32_t segment_count = in.u32();
  for (uint32_t i = 0; i < segment_count && !in.failed(); ++i) {
    SegmentSummary segment;
    for (uint64_t* value : {&segment.number, &segment.size_bytes, &segment.events, &segment.payload_bytes,
                            &segment.gaps, &segment.events_lost}) {
      *value = in.u64();
    }
    segment.last_received_unix_us = static_cast<int64_t>(in.u64());
    index.segments.push_back(segment);
  }
  const uint32_t agent_count = in.u32();
  bool consistent = true;
  for (uint32_t i = 0; i < agent_count && !in.failed(); ++i) {
    AgentProgress& agent = index.agents[in.text()];
    agent.latest_incarnation = in.u64();
    AgentTotals& totals = agent.totals;
    for (uint64_t* value :
         {&totals.events, &totals.declared_dropped, &totals.last_seq, &totals.first_segment, &totals.last_segment}) {
      *value = in.u64();
    }
    const uint32_t incarnation_count = in.u32();
    for (uint32_t k = 0; k < incarnation_count && !in.failed(); ++k) {
      SeqState& seqs = agent.incarnations[in.u64()];
      seqs.base_seq = in.u64();
      seqs.durable_seq = seqs.appended_seq = in.u64();
    }
    consistent = consistent && agent.incarnations.contains(agent.latest_incarnation);
  }
  consistent = consistent && (index.segments.empty() || index.segments.back().number == index.covered.segment);
  if (in.failed() || !in.done() || !consistent || index.agents.size() != agent_count) {
    why = "its fields do not add up";
    return false;
  }
  return true;
}

IndexRead read_index(const std::string& dir, StoreIndex& index, std::string& why) {
  const std::string path = index_path(dir);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return IndexRead::missing;
  struct stat info {};
  if (fd < 0 || fstat(fd, &info) != 0 || static_cast<uint64_t>(info.st_size) > kIndexMaxBytes) {
    why = path + ": cannot read: " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return IndexRead::damaged;
  }
  std::vector<std::byte> bytes(static_cast<size_t>(info.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (done != bytes.size()) {
    why = path + ": cannot read it whole";
    return IndexRead::damaged;
  }
  if (!decode_index(bytes, index, why)) {
    why = path + ": " + why;
    return IndexRead::damaged;
  }
  return IndexRead::found;
}

bool write_index(const std::string& dir, const LogPosition& covered, const StoreStats& stats,
                 const std::vector<SegmentSummary>& segments, const ProgressIndex& agents, std::string& why) {
  const std::vector<std::byte> bytes = encode_index(covered, stats, segments, agents);
  return replace_file(index_path(dir), {reinterpret_cast<const char*>(bytes.data()), bytes.size()}, why);
}

}  // namespace gatehouse::store
