#include "gatehouse/store/segment_log.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "gatehouse/log/invariant.h"

namespace gatehouse::store {
namespace {

std::string error_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

// What a crash mid-append leaves after the last good record: a prefix of the
// append (a header or a record cut short by the end of the file) or zeros
// (the file grew, the data never came). A complete record that fails its
// checksum, or anything after which the file goes on, is damage.
bool torn_tail(std::span<const std::byte> bytes, uint64_t good, uint32_t body_max_bytes) {
  if (bytes.size() - good < kRecordHeaderBytes) return true;
  const uint32_t body_size = get_u32(bytes.data() + good);
  if (body_size > 0 && body_size <= body_max_bytes && good + kRecordHeaderBytes + body_size > bytes.size()) return true;
  return std::all_of(bytes.begin() + static_cast<ptrdiff_t>(good), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
}

// The next offset after `from` where a valid record starts that is followed
// by another valid record or by the end of the file (two in a row: a chance
// match of size and checksum is not enough); bytes.size() when none.
uint64_t resync(std::span<const std::byte> bytes, uint64_t from, uint32_t body_max_bytes) {
  const auto valid_at = [&](uint64_t at) -> uint64_t {  // the record's length, 0: none
    if (at + kRecordHeaderBytes > bytes.size()) return 0;
    const uint32_t body_size = get_u32(bytes.data() + at);
    if (body_size == 0 || body_size > body_max_bytes || at + kRecordHeaderBytes + body_size > bytes.size()) return 0;
    const std::byte* body = bytes.data() + at + kRecordHeaderBytes;
    return crc32c(body, body_size) == get_u32(bytes.data() + at + 4) ? kRecordHeaderBytes + body_size : 0;
  };
  for (uint64_t at = from + 1; at + kRecordHeaderBytes <= bytes.size(); ++at) {
    const uint64_t length = valid_at(at);
    if (length != 0 && (at + length == bytes.size() || valid_at(at + length) != 0)) return at;
  }
  return bytes.size();
}

// A segment file mapped read-only for `use(bytes)`; an empty file is empty bytes.
bool with_segment(const std::string& path, const std::function<void(std::span<const std::byte>)>& use,
                  std::string& why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat info {};
  if (fd < 0 || fstat(fd, &info) != 0) {
    why = error_text("cannot read", path);
    if (fd >= 0) ::close(fd);
    return false;
  }
  const auto file_bytes = static_cast<uint64_t>(info.st_size);
  if (file_bytes == 0) {
    ::close(fd);
    use({});
    return true;
  }
  void* mapped = mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapped == MAP_FAILED) {
    why = error_text("cannot map", path);
    return false;
  }
  use({static_cast<const std::byte*>(mapped), file_bytes});
  munmap(mapped, file_bytes);
  return true;
}

// The valid records of one segment from byte `offset`, in order: where
// they end, and whether what follows is damage rather than a torn tail.
bool scan_segment(const std::string& path, uint64_t offset, uint32_t body_max_bytes,
                  const std::function<bool(std::span<const std::byte>)>& on_body, SegmentRead& read,
                  std::string& why) {
  bool short_file = false;
  const bool ok = with_segment(path, [&](std::span<const std::byte> bytes) {
    read.file_bytes = bytes.size();
    short_file = offset > bytes.size();
    if (short_file) return;
    read.end_bytes = offset + scan_records(bytes.subspan(offset), body_max_bytes, on_body);
    read.damaged = read.end_bytes < read.file_bytes && !torn_tail(bytes, read.end_bytes, body_max_bytes);
  }, why);
  if (ok && short_file) {
    why = path + " is " + std::to_string(read.file_bytes) + " bytes, shorter than the " + std::to_string(offset) +
          " to read from";
  }
  return ok && !short_file;
}

// Every segment in order from options' start; damage only as the last
// one's tail. `last_good` is where the last segment's valid records end.
bool scan_all(const SegmentLogOptions& options, const SegmentLog::OnRecord& on_record,
              std::vector<uint64_t>& numbers, SegmentLogRecovery& recovery, uint64_t& last_good, std::string& why) {
  numbers = options.names.numbers(options.dir);
  recovery = {};
  recovery.segments = numbers.size();
  last_good = 0;
  if (options.start_segment != 0 &&
      std::find(numbers.begin(), numbers.end(), options.start_segment) == numbers.end()) {
    why = options.dir + "/" + options.names.name(options.start_segment) + " is missing";
    return false;
  }
  for (size_t i = 0; i < numbers.size(); ++i) {
    if (numbers[i] < options.start_segment) continue;  // summarized by the owner
    const std::string path = options.dir + "/" + options.names.name(numbers[i]);
    const uint64_t handed_from = numbers[i] == options.start_segment ? options.start_offset_bytes : 0;
    uint64_t at = 0;  // the record's start
    SegmentRead read;
    const auto on_body = [&](std::span<const std::byte> body) {
      const uint64_t start = at;
      at += kRecordHeaderBytes + body.size();
      return start < handed_from || on_record(numbers[i], body);
    };
    if (!scan_segment(path, 0, options.record_body_max_bytes, on_body, read, why)) return false;
    if (read.file_bytes < handed_from) {
      why = path + " is " + std::to_string(read.file_bytes) + " bytes, shorter than the " +
            std::to_string(handed_from) + " the store's index holds: acknowledged events would be gone (nothing was "
            "changed)";
      return false;
    }
    if (read.end_bytes < handed_from) {
      why = path + ": damaged record at byte " + std::to_string(read.end_bytes) + ", before the " +
            std::to_string(handed_from) + " bytes the store's index holds (nothing was changed): `gatehouse store "
            "verify` lists the damage, `gatehouse store salvage --to DIR` copies every valid record to a new store";
      return false;
    }
    const uint64_t good = read.end_bytes;
    const uint64_t size = read.file_bytes;
    if (good < size && (i + 1 < numbers.size() || read.damaged)) {
      why = path + ": damaged record at byte " + std::to_string(good) + ", with " + std::to_string(size - good) +
            " bytes after it (not what a crash leaves; nothing was changed): `gatehouse store verify` lists the "
            "damage, `gatehouse store salvage --to DIR` copies every valid record to a new store";
      return false;
    }
    last_good = good;
    recovery.torn_bytes_truncated = size - good;
  }
  return true;
}

}  // namespace

bool sync_folder(const std::string& dir, std::string& why) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) != 0) {
    why = error_text("cannot fsync the folder", dir);
    if (fd >= 0) ::close(fd);
    return false;
  }
  ::close(fd);
  return true;
}

bool replace_file(const std::string& path, std::string_view text, std::string& why) {
  const std::string temporary = path + ".new";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    why = error_text("cannot create", temporary);
    return false;
  }
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  if (!written) why = error_text("cannot write", temporary);
  ::close(fd);
  if (written && ::rename(temporary.c_str(), path.c_str()) != 0) {
    why = error_text("cannot rename over", path);
  } else if (written) {
    return sync_folder(std::filesystem::path(path).parent_path().string(), why);
  }
  ::unlink(temporary.c_str());
  return false;
}

bool SegmentLog::read_segment(const SegmentLogOptions& options, uint64_t number,
                              const std::function<bool(std::span<const std::byte>)>& on_body, std::string& why) {
  SegmentRead read;
  return read_segment_from(options, number, 0, on_body, read, why);
}

bool SegmentLog::read_segment_from(const SegmentLogOptions& options, uint64_t number, uint64_t offset,
                                   const std::function<bool(std::span<const std::byte>)>& on_body, SegmentRead& read,
                                   std::string& why) {
  read = {};
  return scan_segment(options.dir + "/" + options.names.name(number), offset, options.record_body_max_bytes, on_body,
                      read, why);
}

bool SegmentLog::salvage_scan(const SegmentLogOptions& options, const OnRecord& on_record, const OnDamage& on_damage,
                              std::string& why) {
  for (const uint64_t number : options.names.numbers(options.dir)) {
    const std::string path = options.dir + "/" + options.names.name(number);
    const bool read = with_segment(path, [&](std::span<const std::byte> bytes) {
      uint64_t offset = 0;
      while (offset < bytes.size()) {
        offset += scan_records(bytes.subspan(offset), options.record_body_max_bytes,
                               [&](std::span<const std::byte> body) { return on_record(number, body); });
        if (offset == bytes.size()) break;
        const uint64_t next = resync(bytes, offset, options.record_body_max_bytes);
        on_damage(number, offset, next);
        offset = next;
      }
    }, why);
    if (!read) return false;
  }
  return true;
}

bool SegmentLog::scan(const SegmentLogOptions& options, const OnRecord& on_record, SegmentLogRecovery& recovery,
                      std::string& why) {
  std::vector<uint64_t> numbers;
  uint64_t last_good = 0;
  return scan_all(options, on_record, numbers, recovery, last_good, why);
}

std::unique_ptr<SegmentLog> SegmentLog::open(const SegmentLogOptions& options, const OnRecord& on_record,
                                             SegmentLogRecovery& recovery, std::string& why) {
  GH_INVARIANT(options.record_body_max_bytes > 0);
  std::error_code error;
  std::filesystem::create_directories(options.dir, error);
  if (error) {
    why = "cannot create " + options.dir + ": " + error.message();
    return nullptr;
  }
  std::vector<uint64_t> numbers;
  uint64_t last_good = 0;
  if (!scan_all(options, on_record, numbers, recovery, last_good, why)) return nullptr;
  std::unique_ptr<SegmentLog> log(new SegmentLog(options));
  log->segments_ = numbers;
  if (numbers.empty()) {
    if (!log->open_segment(1, why)) return nullptr;
    return log;
  }
  log->segments_.pop_back();  // open_segment() lists the current one again
  if (!log->open_segment(numbers.back(), why)) return nullptr;
  const std::string path = options.dir + "/" + options.names.name(numbers.back());
  if (recovery.torn_bytes_truncated > 0 &&
      (ftruncate(log->segment_fd_, static_cast<off_t>(last_good)) != 0 || fsync(log->segment_fd_) != 0)) {
    why = error_text("cannot cut the torn tail of", path);
    return nullptr;
  }
  log->segment_size_bytes_ = last_good;
  return log;
}

SegmentLog::~SegmentLog() {
  if (segment_fd_ >= 0) ::close(segment_fd_);
}

bool SegmentLog::open_segment(uint64_t number, std::string& why) {
  const std::string path = options_.dir + "/" + options_.names.name(number);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    why = error_text("cannot open", path);
    return false;
  }
  // The new file's name must be durable before records that are acknowledged
  // go into it, or a crash could lose the file whole.
  if (!sync_folder(options_.dir, why)) {
    ::close(fd);
    return false;
  }
  if (segment_fd_ >= 0) ::close(segment_fd_);
  segment_fd_ = fd;
  segment_number_ = number;
  segment_size_bytes_ = 0;
  segments_.push_back(number);
  return true;
}

bool SegmentLog::fail(std::string why_text, std::string& why) {
  if (failure_.empty()) failure_ = std::move(why_text);
  why = failure_;
  return false;
}

// A full file system: what was written of these records is cut off again
// (nothing of them is durable or acknowledged), and the log stays usable:
// the owner waits for room and appends them again.
bool SegmentLog::no_space(const std::string& path, std::string& why) {
  why = error_text("no space left to write", path);
  if (ftruncate(segment_fd_, static_cast<off_t>(segment_size_bytes_)) != 0) {
    return fail(why + "; and a partial write cannot be cut off: " + std::strerror(errno), why);
  }
  out_of_space_ = true;
  return false;
}

bool SegmentLog::append(std::span<const std::byte> records, std::string& why) {
  out_of_space_ = false;
  if (failed()) return fail("", why);
  if (records.empty()) return true;
  const std::string path = options_.dir + "/" + options_.names.name(segment_number_);
  if (segment_size_bytes_ > 0 && segment_size_bytes_ + records.size() > options_.segment_max_bytes) {
    // What is in the full segment is durable already (every append syncs).
    std::string rotate_why;
    if (!open_segment(segment_number_ + 1, rotate_why)) {
      if (errno == ENOSPC || errno == EDQUOT) return no_space(options_.dir, why);
      return fail("cannot start a new segment: " + rotate_why, why);
    }
    return append(records, why);
  }
  size_t written = 0;
  while (written < records.size()) {
    const ssize_t n = ::write(segment_fd_, records.data() + written, records.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == ENOSPC || errno == EDQUOT)) return no_space(path, why);
    if (n < 0) return fail(error_text("cannot write", path), why);
    if (n == 0) return fail("cannot write " + path + ": no progress", why);
    written += static_cast<size_t>(n);
  }
  segment_size_bytes_ += records.size();
  if (fdatasync(segment_fd_) != 0) return fail(error_text("cannot fdatasync", path), why);
  return true;
}

bool SegmentLog::remove_segments_below(uint64_t number, std::string& why) {
  bool removed = false;
  while (segments_.size() > 1 && segments_.front() < number) {
    const std::string path = options_.dir + "/" + options_.names.name(segments_.front());
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      why = error_text("cannot remove", path);
      return false;
    }
    segments_.erase(segments_.begin());
    removed = true;
  }
  return !removed || sync_folder(options_.dir, why);
}

uint64_t SegmentLog::oldest_segment() const { return segments_.front(); }

}  // namespace gatehouse::store
