// Wire protocol v1 codec. Each frame body is described once (fields()), and
// that description is run by a Reader (decode), a Sizer and a Writer (encode),
// so the three cannot drift apart. check() holds the bounds for both ways.
#include "gatehouse/proto/codec.h"

#include <sys/random.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "gatehouse/log/invariant.h"

namespace gatehouse::proto {
namespace {

static_assert(std::variant_size_v<FrameBody> == kFrameTypeMax);
static_assert(std::is_same_v<std::variant_alternative_t<0, FrameBody>, Hello>);
static_assert(std::is_same_v<std::variant_alternative_t<kFrameTypeMax - 1, FrameBody>, Heartbeats>);

class Reader {
 public:
  explicit Reader(std::span<const std::byte> bytes) : bytes_(bytes) {}

  template <class T>
  void uint(T& value) {
    static_assert(std::is_unsigned_v<T>);
    if (!take(sizeof(T))) return;
    T result = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      result = static_cast<T>((result << 8) | std::to_integer<uint8_t>(bytes_[pos_ - sizeof(T) + i]));
    }
    value = result;
  }
  template <class E>
  void enumeration(E& value) {
    std::underlying_type_t<E> raw = 0;
    uint(raw);
    value = static_cast<E>(raw);
  }
  void str8(std::string_view& value) {
    uint8_t size_bytes = 0;
    uint(size_bytes);
    if (!take(size_bytes)) return;
    value = {reinterpret_cast<const char*>(bytes_.data() + pos_ - size_bytes), size_bytes};
  }
  void rest(std::span<const std::byte>& value) {
    value = bytes_.subspan(pos_);
    pos_ = bytes_.size();
  }
  bool truncated() const { return truncated_; }
  size_t remaining_bytes() const { return bytes_.size() - pos_; }

 private:
  bool take(size_t size_bytes) {
    if (truncated_ || bytes_.size() - pos_ < size_bytes) {
      truncated_ = true;
      return false;
    }
    pos_ += size_bytes;
    return true;
  }
  std::span<const std::byte> bytes_;
  size_t pos_ = 0;
  bool truncated_ = false;
};

class Writer {
 public:
  explicit Writer(std::byte* out) : out_(out) {}

  template <class T>
  void uint(T value) {
    static_assert(std::is_unsigned_v<T>);
    for (size_t i = 0; i < sizeof(T); ++i) {
      out_[pos_ + i] = static_cast<std::byte>(value >> (8 * (sizeof(T) - 1 - i)));
    }
    pos_ += sizeof(T);
  }
  template <class E>
  void enumeration(E value) { uint(static_cast<std::underlying_type_t<E>>(value)); }
  void str8(std::string_view value) {
    GH_INVARIANT(value.size() <= UINT8_MAX);
    uint(static_cast<uint8_t>(value.size()));
    bytes(std::as_bytes(std::span(value)));
  }
  void rest(std::span<const std::byte> value) { bytes(value); }
  size_t size_bytes() const { return pos_; }

 private:
  void bytes(std::span<const std::byte> value) {
    if (!value.empty()) std::memcpy(out_ + pos_, value.data(), value.size());
    pos_ += value.size();
  }
  std::byte* out_;
  size_t pos_ = 0;
};

class Sizer {
 public:
  template <class T>
  void uint(T) { size_bytes_ += sizeof(T); }
  template <class E>
  void enumeration(E) { size_bytes_ += sizeof(std::underlying_type_t<E>); }
  void str8(std::string_view value) { size_bytes_ += 1 + value.size(); }
  void rest(std::span<const std::byte> value) { size_bytes_ += value.size(); }
  size_t size_bytes() const { return size_bytes_; }

 private:
  size_t size_bytes_ = 0;
};

// The byte layout of every frame body, in wire order (docs/protocol.md).
template <class IO, class F>
void fields(IO& io, F& f) {
  using T = std::remove_const_t<F>;
  if constexpr (std::is_same_v<T, Hello>) {
    io.uint(f.version_min); io.uint(f.version_max);
    io.enumeration(f.role); io.enumeration(f.auth); io.str8(f.name);
    io.uint(f.incarnation.id); io.uint(f.incarnation.base_seq);
  } else if constexpr (std::is_same_v<T, Auth>) {
    io.enumeration(f.mechanism); io.rest(f.token);
  } else if constexpr (std::is_same_v<T, HelloOk>) {
    io.uint(f.version); io.uint(f.heartbeat_interval_s);
    io.uint(f.credit_bytes); io.uint(f.last_durable_seq); io.str8(f.name);
  } else if constexpr (std::is_same_v<T, Deny> || std::is_same_v<T, OpenDeny>) {
    io.enumeration(f.reason); io.uint(f.event_id); io.str8(f.text);
  } else if constexpr (std::is_same_v<T, Open>) {
    io.enumeration(f.role); io.enumeration(f.auth); io.str8(f.name); io.uint(f.hop_count);
    const uint8_t hops_present = std::min<uint8_t>(f.hop_count, kHopsMax);
    for (uint8_t i = 0; i < hops_present; ++i) io.str8(f.hops[i]);
    io.uint(f.incarnation.id); io.uint(f.incarnation.base_seq);
  } else if constexpr (std::is_same_v<T, OpenOk>) {
    io.uint(f.last_durable_seq); io.uint(f.credit_bytes);
  } else if constexpr (std::is_same_v<T, Close>) {
    io.enumeration(f.reason);
  } else if constexpr (std::is_same_v<T, Data>) {
    io.uint(f.seq); io.enumeration(f.kind); io.rest(f.payload);
  } else if constexpr (std::is_same_v<T, Ack>) {
    io.uint(f.durable_seq);
  } else if constexpr (std::is_same_v<T, Credit>) {
    io.uint(f.credit_bytes);
  } else if constexpr (std::is_same_v<T, Ping> || std::is_same_v<T, Pong>) {
    io.uint(f.nonce);
  } else if constexpr (std::is_same_v<T, Heartbeats>) {
    io.rest(f.channels);
  } else {
    static_assert(std::is_same_v<T, GoAway>);
    io.enumeration(f.reason); io.str8(f.text);
  }
}

ProtoError check_text(std::string_view text) {
  return text.size() > kTextMaxBytes ? ProtoError::text_too_long : ProtoError::none;
}

ProtoError check_reason(Reason reason) {
  return static_cast<uint16_t>(reason) > kReasonMax ? ProtoError::bad_reason : ProtoError::none;
}

ProtoError check_auth_method(AuthMethod auth) {
  return auth == AuthMethod::cert || auth == AuthMethod::kerberos ? ProtoError::none
                                                                  : ProtoError::bad_auth_method;
}

ProtoError check_role(Role role) {
  return role == Role::agent || role == Role::gateway ? ProtoError::none : ProtoError::bad_role;
}

// A gateway has no incarnation; "none yet" has no base.
ProtoError check_incarnation(Role role, const Incarnation& incarnation) {
  if (incarnation.id == 0 ? incarnation.base_seq != 0 : role != Role::agent) return ProtoError::bad_incarnation;
  return ProtoError::none;
}

ProtoError check(const Hello& f) {
  if (f.version_min == 0 || f.version_min > f.version_max) return ProtoError::bad_version_range;
  if (ProtoError e = check_role(f.role); e != ProtoError::none) return e;
  if (ProtoError e = check_auth_method(f.auth); e != ProtoError::none) return e;
  if (ProtoError e = check_incarnation(f.role, f.incarnation); e != ProtoError::none) return e;
  return check_name(f.name);
}
ProtoError check(const Auth& f) {
  if (f.mechanism != AuthMechanism::gssapi_krb5) return ProtoError::bad_mechanism;
  if (f.token.empty()) return ProtoError::token_empty;
  return f.token.size() > kPayloadMaxBytes ? ProtoError::payload_too_large : ProtoError::none;
}
ProtoError check(const HelloOk& f) {
  if (f.version != kVersion) return ProtoError::bad_version;
  if (f.heartbeat_interval_s == 0 || f.heartbeat_interval_s > kHeartbeatIntervalMaxS) {
    return ProtoError::bad_heartbeat_interval;
  }
  return check_name(f.name);
}
ProtoError check(const Deny& f) {
  if (ProtoError e = check_reason(f.reason); e != ProtoError::none) return e;
  return check_text(f.text);
}
ProtoError check(const Open& f) {
  if (ProtoError e = check_role(f.role); e != ProtoError::none) return e;
  if (ProtoError e = check_auth_method(f.auth); e != ProtoError::none) return e;
  if (ProtoError e = check_name(f.name); e != ProtoError::none) return e;
  if (f.hop_count > kHopsMax) return ProtoError::too_many_hops;
  for (uint8_t i = 0; i < f.hop_count; ++i) {
    if (ProtoError e = check_name(f.hops[i]); e != ProtoError::none) return e;
  }
  return check_incarnation(f.role, f.incarnation);
}
ProtoError check(const OpenOk&) { return ProtoError::none; }
ProtoError check(const Close& f) { return check_reason(f.reason); }
ProtoError check_data(uint64_t seq, DataKind kind, size_t payload_size_bytes) {
  if (kind == DataKind::event || kind == DataKind::gap) {
    if (seq == 0) return ProtoError::bad_seq;
    if (kind == DataKind::gap && payload_size_bytes > 0) return ProtoError::gap_not_empty;
  } else if (kind == DataKind::heartbeat) {
    if (seq != 0) return ProtoError::bad_seq;
  } else if (kind == DataKind::incarnation) {
    if (payload_size_bytes != kIncarnationPayloadBytes) return ProtoError::bad_incarnation;
  } else {
    return ProtoError::bad_kind;
  }
  return payload_size_bytes > kPayloadMaxBytes ? ProtoError::payload_too_large : ProtoError::none;
}
ProtoError check(const Data& f) {
  if (f.kind == DataKind::incarnation && f.payload.size() == kIncarnationPayloadBytes && incarnation_id(f) == 0) {
    return ProtoError::bad_incarnation;
  }
  return check_data(f.seq, f.kind, f.payload.size());
}
ProtoError check(const Ack&) { return ProtoError::none; }
ProtoError check(const Credit& f) {
  return f.credit_bytes == 0 ? ProtoError::zero_credit : ProtoError::none;
}
ProtoError check(const Ping&) { return ProtoError::none; }
ProtoError check(const Pong&) { return ProtoError::none; }
ProtoError check(const GoAway& f) {
  if (ProtoError e = check_reason(f.reason); e != ProtoError::none) return e;
  return check_text(f.text);
}

ProtoError check(const Heartbeats& f) {
  const size_t count = f.channels.size() / 4;
  if (f.channels.empty() || f.channels.size() % 4 != 0 || count > kHeartbeatChannelsMax) return ProtoError::bad_heartbeats;
  for (size_t i = 0; i < count; ++i) {
    if (heartbeat_channel(f, i) == 0) return ProtoError::bad_heartbeats;
  }
  return ProtoError::none;
}

enum class ChannelRule { zero, nonzero, any };

ChannelRule channel_rule(FrameType type) {
  switch (type) {
    case FrameType::open:
    case FrameType::open_ok:
    case FrameType::open_deny:
    case FrameType::close:
      return ChannelRule::nonzero;
    case FrameType::data:
    case FrameType::ack:
    case FrameType::credit:
      return ChannelRule::any;
    default:
      return ChannelRule::zero;
  }
}

ProtoError check_channel(FrameType type, uint32_t channel) {
  const ChannelRule rule = channel_rule(type);
  if (rule == ChannelRule::zero && channel != 0) return ProtoError::channel_must_be_zero;
  if (rule == ChannelRule::nonzero && channel == 0) return ProtoError::channel_must_be_nonzero;
  return ProtoError::none;
}

// Builds the variant alternative for `type` (already range-checked).
template <size_t I = 0>
FrameBody body_for(FrameType type) {
  if constexpr (I + 1 < kFrameTypeMax) {
    if (static_cast<size_t>(type) != I + 1) return body_for<I + 1>(type);
  }
  return FrameBody(std::in_place_index<I>);
}

void write_header(Writer& writer, FrameType type, uint32_t channel, uint32_t body_size_bytes) {
  writer.uint(kVersion);
  writer.enumeration(type);
  writer.uint(uint16_t{0});
  writer.uint(channel);
  writer.uint(body_size_bytes);
}

}  // namespace

ProtoError check_name(std::string_view name) {
  if (name.empty()) return ProtoError::name_empty;
  if (name.size() > kNameMaxBytes) return ProtoError::name_too_long;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_';
    if (!ok) return ProtoError::name_invalid_char;
  }
  return ProtoError::none;
}

bool same_name(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [&](char x, char y) { return lower(x) == lower(y); });
}

ProtoError parse_header(std::span<const std::byte, kFrameHeaderBytes> bytes, FrameHeader& header) {
  Reader reader(bytes);
  reader.uint(header.version);
  reader.enumeration(header.type);
  reader.uint(header.flags);
  reader.uint(header.channel);
  reader.uint(header.body_size_bytes);
  if (header.version != kVersion) return ProtoError::bad_version;
  const auto type = static_cast<uint8_t>(header.type);
  if (type == 0 || type > kFrameTypeMax) return ProtoError::unknown_type;
  if (header.flags != 0) return ProtoError::flags_nonzero;
  if (header.body_size_bytes > kFrameBodyMaxBytes) return ProtoError::frame_too_large;
  return check_channel(header.type, header.channel);
}

ProtoError parse_body(const FrameHeader& header, std::span<const std::byte> body, Frame& frame) {
  GH_INVARIANT(body.size() == header.body_size_bytes);
  frame.channel = header.channel;
  frame.body = body_for(header.type);
  return std::visit(
      [&](auto& f) {
        Reader reader(body);
        fields(reader, f);
        if (reader.truncated()) return ProtoError::truncated;
        if (ProtoError e = check(f); e != ProtoError::none) return e;
        return reader.remaining_bytes() == 0 ? ProtoError::none : ProtoError::trailing_bytes;
      },
      frame.body);
}

uint32_t encoded_size_bytes(const Frame& frame) {
  return std::visit(
      [&](const auto& f) -> uint32_t {
        if (check(f) != ProtoError::none) return 0;
        Sizer sizer;
        fields(sizer, f);
        return static_cast<uint32_t>(kFrameHeaderBytes + sizer.size_bytes());
      },
      frame.body);
}

EncodeResult encode(const Frame& frame, std::span<std::byte> out) {
  const FrameType type = frame_type(frame.body);
  if (ProtoError e = check_channel(type, frame.channel); e != ProtoError::none) return {0, e};
  return std::visit(
      [&](const auto& f) -> EncodeResult {
        if (ProtoError e = check(f); e != ProtoError::none) return {0, e};
        Sizer sizer;
        fields(sizer, f);
        const size_t frame_size_bytes = kFrameHeaderBytes + sizer.size_bytes();
        GH_INVARIANT(sizer.size_bytes() <= kFrameBodyMaxBytes);
        if (out.size() < frame_size_bytes) return {0, ProtoError::buffer_too_small};
        Writer writer(out.data());
        write_header(writer, type, frame.channel, static_cast<uint32_t>(sizer.size_bytes()));
        fields(writer, f);
        GH_INVARIANT(writer.size_bytes() == frame_size_bytes);
        return {static_cast<uint32_t>(frame_size_bytes), ProtoError::none};
      },
      frame.body);
}

const char* to_string(DataKind kind) {
  switch (kind) {
    case DataKind::event: return "event";
    case DataKind::heartbeat: return "heartbeat";
    case DataKind::gap: return "gap";
    case DataKind::incarnation: return "incarnation";
  }
  return "unknown";
}

std::string incarnation_hex(uint64_t id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text(16, '0');
  for (int i = 15; i >= 0; --i, id >>= 4) text[static_cast<size_t>(i)] = kHex[id & 15];
  return text;
}

std::array<std::byte, kIncarnationPayloadBytes> incarnation_payload(uint64_t id) {
  std::array<std::byte, kIncarnationPayloadBytes> payload{};
  Writer writer(payload.data());
  writer.uint(id);
  return payload;
}

uint64_t new_incarnation_id() {
  uint64_t id = 0;
  while (id == 0) {
    if (getrandom(&id, sizeof id, 0) != static_cast<ssize_t>(sizeof id)) id = 0;
  }
  return id;
}

uint32_t heartbeat_channel(const Heartbeats& heartbeats, size_t index) {
  uint32_t channel = 0;
  for (size_t i = 0; i < 4; ++i) channel = channel << 8 | static_cast<uint8_t>(heartbeats.channels[index * 4 + i]);
  return channel;
}

void append_heartbeat_channel(std::vector<std::byte>& channels, uint32_t channel) {
  for (int shift = 24; shift >= 0; shift -= 8) channels.push_back(static_cast<std::byte>(channel >> shift));
}

uint64_t incarnation_id(const Data& data) {
  if (data.payload.size() != kIncarnationPayloadBytes) return 0;
  Reader reader(data.payload);
  uint64_t id = 0;
  reader.uint(id);
  return id;
}

EncodeResult encode_data_prefix(uint32_t channel, uint64_t seq, DataKind kind,
                                uint32_t payload_size_bytes, std::span<std::byte> out) {
  if (ProtoError e = check_data(seq, kind, payload_size_bytes); e != ProtoError::none) return {0, e};
  if (out.size() < kDataPrefixBytes) return {0, ProtoError::buffer_too_small};
  Writer writer(out.data());
  write_header(writer, FrameType::data, channel, kDataPrefixBytes - kFrameHeaderBytes + payload_size_bytes);
  writer.uint(seq);
  writer.enumeration(kind);
  GH_INVARIANT(writer.size_bytes() == kDataPrefixBytes);
  return {kDataPrefixBytes, ProtoError::none};
}

SpillPool::SpillPool(uint32_t buffers_max)
    : buffers_max_(buffers_max),
      storage_(std::make_unique_for_overwrite<std::byte[]>(size_t{buffers_max} * kFrameBodyMaxBytes)) {
  free_.reserve(buffers_max);
  for (uint32_t i = buffers_max; i > 0; --i) free_.push_back(i - 1);
}

std::byte* SpillPool::acquire() {
  if (free_.empty()) return nullptr;
  const uint32_t index = free_.back();
  free_.pop_back();
  return storage_.get() + size_t{index} * kFrameBodyMaxBytes;
}

void SpillPool::release(std::byte* buffer) {
  const size_t offset = static_cast<size_t>(buffer - storage_.get());
  GH_INVARIANT(offset % kFrameBodyMaxBytes == 0 && offset / kFrameBodyMaxBytes < buffers_max_);
  GH_INVARIANT(free_.size() < buffers_max_);
  free_.push_back(static_cast<uint32_t>(offset / kFrameBodyMaxBytes));
}

FrameDecoder::~FrameDecoder() { release_spill(); }

void FrameDecoder::release_spill() {
  if (spill_ != nullptr && spill_ != inline_.data()) pool_->release(spill_);
  spill_ = nullptr;
  spill_pending_release_ = false;
}

DecodeResult FrameDecoder::fail(ProtoError error) {
  error_ = error;
  release_spill();
  return {DecodeStatus::error, error, {}};
}

DecodeResult FrameDecoder::next(std::span<const std::byte>& input) {
  if (error_ != ProtoError::none) return {DecodeStatus::error, error_, {}};
  if (spill_pending_release_) release_spill();
  if (header_filled_bytes_ == 0 && input.size() >= kFrameHeaderBytes) {
    // Fast path: the frame's header is contiguous in `input`.
    if (ProtoError e = parse_header(input.first<kFrameHeaderBytes>(), header_); e != ProtoError::none) {
      return fail(e);
    }
    const size_t frame_size_bytes = kFrameHeaderBytes + header_.body_size_bytes;
    if (input.size() >= frame_size_bytes) {
      DecodeResult result{DecodeStatus::frame, ProtoError::none, {}};
      const auto body = input.subspan(kFrameHeaderBytes, header_.body_size_bytes);
      if (ProtoError e = parse_body(header_, body, result.frame); e != ProtoError::none) return fail(e);
      input = input.subspan(frame_size_bytes);
      return result;
    }
    header_filled_bytes_ = kFrameHeaderBytes;
    input = input.subspan(kFrameHeaderBytes);
  }
  return buffer_partial(input);
}

DecodeResult FrameDecoder::buffer_partial(std::span<const std::byte>& input) {
  if (header_filled_bytes_ < kFrameHeaderBytes) {
    const size_t take = std::min<size_t>(input.size(), kFrameHeaderBytes - header_filled_bytes_);
    std::memcpy(header_bytes_.data() + header_filled_bytes_, input.data(), take);
    header_filled_bytes_ += static_cast<uint32_t>(take);
    input = input.subspan(take);
    if (header_filled_bytes_ < kFrameHeaderBytes) return {};
    if (ProtoError e = parse_header(header_bytes_, header_); e != ProtoError::none) return fail(e);
  }
  if (spill_ == nullptr) {
    if (header_.body_size_bytes <= kSpillInlineBytes) {
      spill_ = inline_.data();
    } else {
      spill_ = pool_ != nullptr ? pool_->acquire() : nullptr;
      if (spill_ == nullptr) return fail(ProtoError::spill_exhausted);
    }
  }
  const size_t take = std::min<size_t>(input.size(), header_.body_size_bytes - body_filled_bytes_);
  if (take > 0) std::memcpy(spill_ + body_filled_bytes_, input.data(), take);
  body_filled_bytes_ += static_cast<uint32_t>(take);
  input = input.subspan(take);
  if (body_filled_bytes_ < header_.body_size_bytes) return {};

  DecodeResult result{DecodeStatus::frame, ProtoError::none, {}};
  const std::span<const std::byte> body(spill_, header_.body_size_bytes);
  if (ProtoError e = parse_body(header_, body, result.frame); e != ProtoError::none) return fail(e);
  header_filled_bytes_ = 0;
  body_filled_bytes_ = 0;
  spill_pending_release_ = true;  // the frame's views point into spill_ until the next call
  return result;
}

const char* to_string(ProtoError error) {
  switch (error) {
    case ProtoError::none: return "none";
    case ProtoError::bad_version: return "bad_version";
    case ProtoError::unknown_type: return "unknown_type";
    case ProtoError::flags_nonzero: return "flags_nonzero";
    case ProtoError::frame_too_large: return "frame_too_large";
    case ProtoError::channel_must_be_zero: return "channel_must_be_zero";
    case ProtoError::channel_must_be_nonzero: return "channel_must_be_nonzero";
    case ProtoError::truncated: return "truncated";
    case ProtoError::trailing_bytes: return "trailing_bytes";
    case ProtoError::name_empty: return "name_empty";
    case ProtoError::name_too_long: return "name_too_long";
    case ProtoError::name_invalid_char: return "name_invalid_char";
    case ProtoError::text_too_long: return "text_too_long";
    case ProtoError::payload_too_large: return "payload_too_large";
    case ProtoError::token_empty: return "token_empty";
    case ProtoError::bad_role: return "bad_role";
    case ProtoError::bad_auth_method: return "bad_auth_method";
    case ProtoError::bad_mechanism: return "bad_mechanism";
    case ProtoError::bad_kind: return "bad_kind";
    case ProtoError::bad_reason: return "bad_reason";
    case ProtoError::bad_seq: return "bad_seq";
    case ProtoError::bad_version_range: return "bad_version_range";
    case ProtoError::bad_heartbeat_interval: return "bad_heartbeat_interval";
    case ProtoError::too_many_hops: return "too_many_hops";
    case ProtoError::zero_credit: return "zero_credit";
    case ProtoError::gap_not_empty: return "gap_not_empty";
    case ProtoError::bad_heartbeats: return "bad_heartbeats";
    case ProtoError::bad_incarnation: return "bad_incarnation";
    case ProtoError::buffer_too_small: return "buffer_too_small";
    case ProtoError::spill_exhausted: return "spill_exhausted";
  }
  return "unknown";
}

const char* to_string(FrameType type) {
  static constexpr const char* kNames[] = {"HELLO", "AUTH", "HELLO_OK", "DENY", "OPEN",
                                           "OPEN_OK", "OPEN_DENY", "CLOSE", "DATA", "ACK",
                                           "CREDIT", "PING", "PONG", "GOAWAY", "HEARTBEATS"};
  const auto index = static_cast<uint8_t>(type);
  return index >= 1 && index <= kFrameTypeMax ? kNames[index - 1] : "UNKNOWN";
}

const char* to_string(Reason reason) {
  static constexpr const char* kNames[] = {
      "normal", "protocol_error", "version_unsupported", "auth_failed", "not_approved",
      "name_mismatch", "overloaded", "shutting_down", "timeout", "loop_detected",
      "flow_control_violation", "channel_unknown", "channel_exists", "channel_limit",
      "parent_unavailable", "internal_error"};
  const auto index = static_cast<uint16_t>(reason);
  return index <= kReasonMax ? kNames[index] : "unknown";
}

}  // namespace gatehouse::proto
