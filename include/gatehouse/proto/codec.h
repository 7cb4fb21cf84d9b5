// Wire protocol v1 codec: an incremental decoder over byte spans and an
// encoder into caller-provided buffers. Neither allocates per frame.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gatehouse/proto/frame_types.h"

namespace gatehouse::proto {

const char* to_string(ProtoError error);
const char* to_string(FrameType type);
const char* to_string(Reason reason);
const char* to_string(DataKind kind);
// An incarnation id as logs, dumps and tools print it: 16 hex digits.
std::string incarnation_hex(uint64_t id);

inline FrameType frame_type(const FrameBody& body) {
  return static_cast<FrameType>(body.index() + 1);
}

// A peer or agent name: 1..kNameMaxBytes of [A-Za-z0-9._-] (DNS-name alphabet).
ProtoError check_name(std::string_view name);
// Names are DNS names: they compare without case.
bool same_name(std::string_view a, std::string_view b);

// Exact encoded size of a frame (header included), or 0 if a field is out of
// bounds (encode() then says which).
uint32_t encoded_size_bytes(const Frame& frame);

// Writes one frame into `out`. Validates every field against the same bounds
// the decoder enforces, so we never send what a peer must refuse.
EncodeResult encode(const Frame& frame, std::span<std::byte> out);

// A DATA frame's bytes before its payload; with the payload, what the frame
// counts against a channel's credit window (docs/protocol.md).
inline constexpr uint32_t kDataPrefixBytes = kFrameHeaderBytes + 10;

// Writes the header and fixed fields of a DATA frame whose payload the caller
// sends separately (gathered write, no copy). `out` must hold kDataPrefixBytes.
EncodeResult encode_data_prefix(uint32_t channel, uint64_t seq, DataKind kind,
                                uint32_t payload_size_bytes, std::span<std::byte> out);

// An incarnation DATA's payload: the id, big-endian; and back (0 when the
// payload is not kIncarnationPayloadBytes long).
std::array<std::byte, kIncarnationPayloadBytes> incarnation_payload(uint64_t id);
// A new incarnation's id: random (getrandom), never 0, so no other queue and
// no earlier copy of this one can have it.
uint64_t new_incarnation_id();
uint64_t incarnation_id(const Data& data);
// HEARTBEATS: the index-th channel (index < channels.size() / 4); and one
// more appended to a body being built.
uint32_t heartbeat_channel(const Heartbeats& heartbeats, size_t index);
void append_heartbeat_channel(std::vector<std::byte>& channels, uint32_t channel);

// Validates and parses one complete frame body.
ProtoError parse_header(std::span<const std::byte, kFrameHeaderBytes> bytes, FrameHeader& header);
ProtoError parse_body(const FrameHeader& header, std::span<const std::byte> body, Frame& frame);

// A bounded set of reassembly buffers (kFrameBodyMaxBytes each) shared by the
// decoders of one shard. Only frames that arrive split across receive buffers
// and are too large for a decoder's inline spill use it. Single-threaded.
class SpillPool {
 public:
  explicit SpillPool(uint32_t buffers_max);
  SpillPool(const SpillPool&) = delete;
  SpillPool& operator=(const SpillPool&) = delete;

  std::byte* acquire();  // nullptr when all buffers_max are in use
  void release(std::byte* buffer);
  uint32_t buffers_max() const { return buffers_max_; }
  uint32_t buffers_in_use() const { return buffers_max_ - static_cast<uint32_t>(free_.size()); }

 private:
  uint32_t buffers_max_;
  std::unique_ptr<std::byte[]> storage_;
  std::vector<uint32_t> free_;  // indices; capacity buffers_max_, never grows
};

// Incremental decoder for one connection's byte stream. Feed it whatever the
// socket produced; it consumes from the front of `input` and returns one frame
// at a time. A frame that arrives whole is returned as views into `input`
// (no copy); a frame split across calls is reassembled in an inline spill or a
// SpillPool buffer. After an error the decoder stays failed: close the peer.
class FrameDecoder {
 public:
  inline static constexpr uint32_t kSpillInlineBytes = 256;

  explicit FrameDecoder(SpillPool* pool) : pool_(pool) {}
  ~FrameDecoder();
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  DecodeResult next(std::span<const std::byte>& input);

  // True while a partial frame is buffered (the stream is not at a boundary).
  bool mid_frame() const { return header_filled_bytes_ > 0; }
  ProtoError error() const { return error_; }

 private:
  DecodeResult fail(ProtoError error);
  DecodeResult buffer_partial(std::span<const std::byte>& input);
  void release_spill();

  SpillPool* pool_;
  ProtoError error_ = ProtoError::none;
  FrameHeader header_{};
  uint32_t header_filled_bytes_ = 0;
  uint32_t body_filled_bytes_ = 0;
  std::byte* spill_ = nullptr;             // inline_ or a pool buffer
  bool spill_pending_release_ = false;     // last frame's views still point into spill_
  std::array<std::byte, kFrameHeaderBytes> header_bytes_{};
  std::array<std::byte, kSpillInlineBytes> inline_{};
};

}  // namespace gatehouse::proto
