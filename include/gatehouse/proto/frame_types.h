// Wire protocol v1: frame types and bounds (types only; functions live in
// codec.h). docs/protocol.md is the byte-level reference; keep the two in step.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <variant>

namespace gatehouse::proto {

inline constexpr uint8_t kVersion = 1;

// Every field is bounded; a peer that exceeds a bound is refused.
inline constexpr uint32_t kFrameHeaderBytes = 12;
inline constexpr uint32_t kPayloadMaxBytes = 65'536;     // DATA payload, AUTH token
inline constexpr uint32_t kFrameBodyMaxBytes = kPayloadMaxBytes + 16;
inline constexpr uint32_t kFrameMaxBytes = kFrameHeaderBytes + kFrameBodyMaxBytes;
inline constexpr uint32_t kNameMaxBytes = 253;           // a DNS name
inline constexpr uint32_t kTextMaxBytes = 255;           // DENY/GOAWAY text (u8 length)
inline constexpr uint32_t kHopsMax = 8;                  // gateways an OPEN may have crossed
inline constexpr uint16_t kHeartbeatIntervalMaxS = 3600;
// Management-server-initiated connections: the parent that dialled its
// gateway sends these bytes first, then the gateway runs the child side (TLS
// client, HELLO) over the connection as over one it dialled itself. Neither
// a TLS record (0x16) nor a PROXY v2 signature starts like this.
inline constexpr std::string_view kParentDialPreamble = "GATEHOUSE-PARENT-DIAL/1\n";
// The gateway's answer, then its close, when the shard that accepted the
// dial has no free uplink: the kernel spreads connections over the shards, so
// the parent dials again at once rather than with a growing backoff.
inline constexpr std::string_view kParentDialBusy = "GATEHOUSE-PARENT-BUSY/1\n";

enum class FrameType : uint8_t {
  hello = 0x01,
  auth = 0x02,
  hello_ok = 0x03,
  deny = 0x04,
  open = 0x05,
  open_ok = 0x06,
  open_deny = 0x07,
  close = 0x08,
  data = 0x09,
  ack = 0x0A,
  credit = 0x0B,
  ping = 0x0C,
  pong = 0x0D,
  goaway = 0x0E,
  heartbeats = 0x0F,
};
inline constexpr uint8_t kFrameTypeMax = 0x0F;
// HEARTBEATS: a gateway's report of the agents it heard, by uplink channel.
inline constexpr uint32_t kHeartbeatChannelsMax = kPayloadMaxBytes / 4;

enum class Role : uint8_t { agent = 1, gateway = 2 };
enum class AuthMethod : uint8_t { cert = 1, kerberos = 2 };
enum class AuthMechanism : uint8_t { gssapi_krb5 = 1 };
// gap: the sender dropped events it never sent (its queue was full); seq is
// the last dropped one, and the receiver's next expected seq the first.
// incarnation: the events after it belong to the incarnation in its 8-byte
// payload, which begins after seq (docs/protocol.md, "Incarnations").
enum class DataKind : uint16_t { event = 1, heartbeat = 2, gap = 3, incarnation = 4 };
inline constexpr uint32_t kIncarnationPayloadBytes = 8;

// Why a session, channel or connection was refused or closed (DENY,
// OPEN_DENY, CLOSE, GOAWAY). Values are part of the wire contract.
enum class Reason : uint16_t {
  normal = 0,
  protocol_error = 1,
  version_unsupported = 2,
  auth_failed = 3,
  not_approved = 4,
  name_mismatch = 5,
  overloaded = 6,
  shutting_down = 7,
  timeout = 8,
  loop_detected = 9,
  flow_control_violation = 10,
  channel_unknown = 11,
  channel_exists = 12,
  channel_limit = 13,
  parent_unavailable = 14,
  internal_error = 15,
};
inline constexpr uint16_t kReasonMax = 15;

// Precise decode/encode errors. Every one but spill_exhausted is the peer's
// fault and ends the connection with Reason::protocol_error.
enum class ProtoError : uint8_t {
  none = 0,
  bad_version,
  unknown_type,
  flags_nonzero,
  frame_too_large,
  channel_must_be_zero,
  channel_must_be_nonzero,
  truncated,
  trailing_bytes,
  name_empty,
  name_too_long,
  name_invalid_char,
  text_too_long,      // encoder only: the wire length is one byte
  payload_too_large,
  token_empty,
  bad_role,
  bad_auth_method,
  bad_mechanism,
  bad_kind,
  bad_reason,
  bad_seq,
  bad_version_range,
  bad_heartbeat_interval,
  too_many_hops,
  zero_credit,
  gap_not_empty,      // a DATA gap declaration carries no payload
  bad_heartbeats,     // HEARTBEATS: no channel, a channel 0, more than kHeartbeatChannelsMax, or not 4 bytes each
  bad_incarnation,    // an incarnation of 0 with a base seq, or on a gateway; an incarnation DATA not 8 bytes of a non-zero id
  buffer_too_small,   // encoder: the output span cannot hold the frame
  spill_exhausted,    // decoder: no reassembly buffer free for a split frame
};

struct FrameHeader {
  uint8_t version = kVersion;
  FrameType type = FrameType::hello;
  uint16_t flags = 0;
  uint32_t channel = 0;
  uint32_t body_size_bytes = 0;
};

// An agent queue's lineage. Seqs are unique only within one incarnation: a
// queue takes a new random id each time it starts numbering events in a new
// process (and a new queue starts afresh), so a queue restored from an old
// copy, or created anew after a reinstall, can never reuse a stored
// (agent, incarnation, seq). base_seq: the incarnation's first event is
// base_seq + 1. id 0: the agent has no event yet (base_seq 0).
struct Incarnation {
  uint64_t id = 0;
  uint64_t base_seq = 0;
  bool operator==(const Incarnation&) const = default;
};

// Frame bodies. Views (string_view, span) point into the decoder's input or
// its spill buffer and are valid until the decoder's next call.
struct Hello {
  uint8_t version_min = kVersion;
  uint8_t version_max = kVersion;
  Role role = Role::agent;
  AuthMethod auth = AuthMethod::cert;
  std::string_view name;
  Incarnation incarnation;  // an agent: the incarnation its session starts in; a gateway: none
};
struct Auth {
  AuthMechanism mechanism = AuthMechanism::gssapi_krb5;
  std::span<const std::byte> token;
};
struct HelloOk {
  uint8_t version = kVersion;
  uint16_t heartbeat_interval_s = 60;
  uint32_t credit_bytes = 0;
  uint64_t last_durable_seq = 0;
  std::string_view name;  // the parent's identity
};
struct Deny {
  Reason reason = Reason::normal;
  uint32_t event_id = 0;
  std::string_view text;
};
struct Open {
  Role role = Role::agent;  // gateway: the admission of a chained gateway, for as long as it is connected
  AuthMethod auth = AuthMethod::cert;
  std::string_view name;  // the agent's (or chained gateway's) identity
  uint8_t hop_count = 0;
  std::array<std::string_view, kHopsMax> hops{};  // nearest gateway first
  Incarnation incarnation;  // an agent's, from its HELLO; an admission: none
};
struct OpenOk {
  uint64_t last_durable_seq = 0;
  uint32_t credit_bytes = 0;
};
struct OpenDeny : Deny {};
struct Close {
  Reason reason = Reason::normal;
};
struct Data {
  uint64_t seq = 0;
  DataKind kind = DataKind::event;
  std::span<const std::byte> payload;
};
struct Ack {
  uint64_t durable_seq = 0;
};
struct Credit {
  uint32_t credit_bytes = 0;
};
struct Ping {
  uint64_t nonce = 0;
};
struct Pong {
  uint64_t nonce = 0;
};
struct GoAway {
  Reason reason = Reason::normal;
  std::string_view text;
};
// The channels (u32 each, big-endian) whose agents the gateway heard since
// its last report: the agents' heartbeats, one frame per uplink and interval
// instead of one per agent (codec.h: heartbeat_channel()).
struct Heartbeats {
  std::span<const std::byte> channels;
};

// Alternative index + 1 == FrameType value (checked in codec.cpp).
using FrameBody = std::variant<Hello, Auth, HelloOk, Deny, Open, OpenOk, OpenDeny, Close,
                               Data, Ack, Credit, Ping, Pong, GoAway, Heartbeats>;

struct Frame {
  uint32_t channel = 0;
  FrameBody body;
};

enum class DecodeStatus : uint8_t { need_more, frame, error };

struct DecodeResult {
  DecodeStatus status = DecodeStatus::need_more;
  ProtoError error = ProtoError::none;
  Frame frame;
};

struct EncodeResult {
  uint32_t size_bytes = 0;  // bytes written; 0 when error != none
  ProtoError error = ProtoError::none;
};

}  // namespace gatehouse::proto
