// Checksummed length-prefixed records, shared by the server's event store and
// the agent's disk queue: u32 body size, u32 CRC-32C of the body, body (all
// little-endian). A torn or corrupt record is detected by size and checksum.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "gatehouse/store/crc32c.h"

namespace gatehouse::store {

inline constexpr uint32_t kRecordHeaderBytes = 8;

inline void put_u32(std::byte* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<std::byte>(value >> (8 * i));
}
inline void put_u64(std::byte* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(value >> (8 * i));
}
inline uint32_t get_u32(const std::byte* in) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = value << 8 | static_cast<uint8_t>(in[i]);
  return value;
}
inline uint64_t get_u64(const std::byte* in) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = value << 8 | static_cast<uint8_t>(in[i]);
  return value;
}

// Appends one record whose body is `body_size` bytes written by `fill(body)`.
template <class Fill>
void append_record(std::vector<std::byte>& out, uint32_t body_size, Fill fill) {
  const size_t start = out.size();
  out.resize(start + kRecordHeaderBytes + body_size);
  std::byte* body = out.data() + start + kRecordHeaderBytes;
  fill(body);
  put_u32(out.data() + start, body_size);
  put_u32(out.data() + start + 4, crc32c(body, body_size));
}

// Walks the valid records of `bytes` from the front, calling on_body(body) for
// each (false from on_body stops as if damaged); returns where they end. Less
// than bytes.size() means a torn or corrupt tail.
template <class OnBody>
uint64_t scan_records(std::span<const std::byte> bytes, uint32_t body_max_bytes, OnBody on_body) {
  uint64_t offset = 0;
  while (offset + kRecordHeaderBytes <= bytes.size()) {
    const uint32_t body_size = get_u32(bytes.data() + offset);
    if (body_size == 0 || body_size > body_max_bytes || offset + kRecordHeaderBytes + body_size > bytes.size()) break;
    const std::span<const std::byte> body = bytes.subspan(offset + kRecordHeaderBytes, body_size);
    if (crc32c(body.data(), body.size()) != get_u32(bytes.data() + offset + 4) || !on_body(body)) break;
    offset += kRecordHeaderBytes + body_size;
  }
  return offset;
}

// Numbered segment files, e.g. "events-00000001.seg": `prefix`-NNNNNNNN`suffix`.
struct SegmentNames {
  const char* prefix;  // "events"
  const char* suffix;  // ".seg"

  std::string name(uint64_t number) const {
    char text[64];
    std::snprintf(text, sizeof text, "%s-%08llu%s", prefix, static_cast<unsigned long long>(number), suffix);
    return text;
  }
  // The numbers of the segments in `dir`, ascending.
  std::vector<uint64_t> numbers(const std::string& dir) const {
    std::vector<uint64_t> found;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
      const std::string file = entry.path().filename().string();
      const std::string head = std::string(prefix) + "-";
      if (file.rfind(head, 0) != 0) continue;
      const uint64_t number = std::strtoull(file.c_str() + head.size(), nullptr, 10);
      if (file == name(number)) found.push_back(number);
    }
    std::sort(found.begin(), found.end());
    return found;
  }
};

}  // namespace gatehouse::store
