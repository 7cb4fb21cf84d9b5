// Wire protocol v1 codec: round trips, bounds, and frames split anywhere.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "gatehouse/proto/codec.h"

using namespace gatehouse::proto;

namespace {

using Bytes = std::vector<std::byte>;

uint64_t test_seed() {
  if (const char* text = std::getenv("GATEHOUSE_TEST_SEED")) return std::strtoull(text, nullptr, 10);
  return std::random_device{}();
}

// Owns the strings and payloads that a generated Frame's views point into.
class FrameFactory {
 public:
  explicit FrameFactory(uint64_t seed) : rng_(seed) {}

  uint64_t number(uint64_t max) { return std::uniform_int_distribution<uint64_t>(0, max)(rng_); }

  std::string_view name() {
    static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_";
    // Favour the bounds: 1 and kNameMaxBytes appear often.
    const size_t size_bytes = number(3) == 0 ? (number(1) ? 1 : kNameMaxBytes) : 1 + number(kNameMaxBytes - 1);
    std::string& text = strings_.emplace_back(size_bytes, 'a');
    for (char& c : text) c = kAlphabet[number(sizeof kAlphabet - 2)];
    return text;
  }

  std::string_view text() {
    std::string& text = strings_.emplace_back(number(kTextMaxBytes), ' ');
    for (char& c : text) c = static_cast<char>(number(255));
    return text;
  }

  std::span<const std::byte> bytes(size_t min_size_bytes) {
    const size_t size_bytes =
        number(4) == 0 ? kPayloadMaxBytes : min_size_bytes + number(number(1) ? 300 : 5000);
    Bytes& bytes = blobs_.emplace_back(size_bytes);
    for (std::byte& b : bytes) b = static_cast<std::byte>(number(255));
    return bytes;
  }

  Reason reason() { return static_cast<Reason>(number(kReasonMax)); }
  // What a role may announce: an agent none yet, or any id and base; a gateway none.
  Incarnation incarnation(Role role) {
    if (role == Role::gateway || number(3) == 0) return {};
    return {1 + number(UINT64_MAX - 1), number(UINT64_MAX)};
  }
  std::span<const std::byte> incarnation_payload_bytes() {
    const auto payload = incarnation_payload(1 + number(UINT64_MAX - 1));
    return blobs_.emplace_back(payload.begin(), payload.end());
  }
  std::span<const std::byte> heartbeat_channels() {
    std::vector<std::byte> channels;
    const uint64_t count = 1 + number(number(1) ? 4 : kHeartbeatChannelsMax - 1);
    for (uint64_t i = 0; i < count; ++i) append_heartbeat_channel(channels, channel());
    return blobs_.emplace_back(std::move(channels));
  }
  AuthMethod auth() { return number(1) ? AuthMethod::cert : AuthMethod::kerberos; }
  uint32_t channel() { return 1 + static_cast<uint32_t>(number(UINT32_MAX - 1)); }
  uint32_t channel_or_zero() { return number(1) ? channel() : 0; }

  Frame make(FrameType type) {
    switch (type) {
      case FrameType::hello: {
        const auto min = static_cast<uint8_t>(1 + number(254));
        const Role role = number(1) ? Role::agent : Role::gateway;
        return {0, Hello{min, static_cast<uint8_t>(min + number(255 - min)), role, auth(), name(), incarnation(role)}};
      }
      case FrameType::auth: return {0, Auth{AuthMechanism::gssapi_krb5, bytes(1)}};
      case FrameType::hello_ok:
        return {0, HelloOk{kVersion, static_cast<uint16_t>(1 + number(kHeartbeatIntervalMaxS - 1)),
                           static_cast<uint32_t>(number(UINT32_MAX)), number(UINT64_MAX), name()}};
      case FrameType::deny:
        return {0, Deny{reason(), static_cast<uint32_t>(number(UINT32_MAX)), text()}};
      case FrameType::open: {
        const Role role = number(1) ? Role::agent : Role::gateway;
        Open open{role, auth(), name(), static_cast<uint8_t>(number(kHopsMax)), {}, incarnation(role)};
        for (uint8_t i = 0; i < open.hop_count; ++i) open.hops[i] = name();
        return {channel(), open};
      }
      case FrameType::open_ok:
        return {channel(), OpenOk{number(UINT64_MAX), static_cast<uint32_t>(number(UINT32_MAX))}};
      case FrameType::open_deny:
        return {channel(), OpenDeny{{reason(), static_cast<uint32_t>(number(UINT32_MAX)), text()}}};
      case FrameType::close: return {channel(), Close{reason()}};
      case FrameType::data:
        if (number(3) == 0) return {channel_or_zero(), Data{0, DataKind::heartbeat, bytes(0)}};
        if (number(3) == 0) return {channel_or_zero(), Data{1 + number(UINT64_MAX - 1), DataKind::gap, {}}};
        if (number(3) == 0) return {channel_or_zero(), Data{number(UINT64_MAX), DataKind::incarnation, incarnation_payload_bytes()}};
        return {channel_or_zero(), Data{1 + number(UINT64_MAX - 1), DataKind::event, bytes(0)}};
      case FrameType::ack: return {channel_or_zero(), Ack{number(UINT64_MAX)}};
      case FrameType::credit:
        return {channel_or_zero(), Credit{1 + static_cast<uint32_t>(number(UINT32_MAX - 1))}};
      case FrameType::ping: return {0, Ping{number(UINT64_MAX)}};
      case FrameType::pong: return {0, Pong{number(UINT64_MAX)}};
      case FrameType::goaway: return {0, GoAway{reason(), text()}};
      case FrameType::heartbeats: return {0, Heartbeats{heartbeat_channels()}};
    }
    FAIL("unreachable");
    return {};
  }

  Frame any() { return make(static_cast<FrameType>(1 + number(kFrameTypeMax - 1))); }

 private:
  std::mt19937_64 rng_;
  std::deque<std::string> strings_;  // deque: views stay valid as it grows
  std::deque<Bytes> blobs_;
};

Bytes encode_bytes(const Frame& frame) {
  Bytes out(kFrameMaxBytes);
  const EncodeResult result = encode(frame, out);
  REQUIRE_MESSAGE(result.error == ProtoError::none, to_string(result.error));
  CHECK(result.size_bytes == encoded_size_bytes(frame));
  out.resize(result.size_bytes);
  return out;
}

// Decodes everything in `chunks` (fed in order) and returns each frame re-encoded.
std::vector<Bytes> decode_chunks(const std::vector<std::span<const std::byte>>& chunks, SpillPool& pool) {
  FrameDecoder decoder(&pool);
  std::vector<Bytes> frames;
  for (std::span<const std::byte> input : chunks) {
    while (!input.empty()) {
      const DecodeResult result = decoder.next(input);
      REQUIRE_MESSAGE(result.status != DecodeStatus::error, to_string(result.error));
      if (result.status == DecodeStatus::frame) frames.push_back(encode_bytes(result.frame));
    }
  }
  CHECK_FALSE(decoder.mid_frame());
  return frames;
}

ProtoError decode_error(const Bytes& bytes) {
  SpillPool pool(1);
  FrameDecoder decoder(&pool);
  std::span<const std::byte> input(bytes);
  while (!input.empty()) {
    const DecodeResult result = decoder.next(input);
    if (result.status == DecodeStatus::error) return result.error;
  }
  return decoder.mid_frame() ? ProtoError::truncated : ProtoError::none;
}

void put_u32(Bytes& bytes, size_t offset, uint32_t value) {
  for (int i = 0; i < 4; ++i) bytes[offset + i] = static_cast<std::byte>(value >> (24 - 8 * i));
}

// Re-frames `body` with a correct header of `type` on `channel`.
Bytes raw_frame(FrameType type, uint32_t channel, const Bytes& body) {
  Bytes bytes(kFrameHeaderBytes + body.size());
  bytes[0] = std::byte{kVersion};
  bytes[1] = static_cast<std::byte>(type);
  put_u32(bytes, 4, channel);
  put_u32(bytes, 8, static_cast<uint32_t>(body.size()));
  std::copy(body.begin(), body.end(), bytes.begin() + kFrameHeaderBytes);
  return bytes;
}

Bytes body_of(const Bytes& frame) { return Bytes(frame.begin() + kFrameHeaderBytes, frame.end()); }

// A HELLO whose incarnation the encoder would refuse: a valid one, its last
// 16 bytes overwritten.
Bytes encode_unchecked_hello(Role role, const Incarnation& incarnation) {
  Bytes frame = encode_bytes({0, Hello{1, 1, role, AuthMethod::cert, "host1", {}}});
  for (int i = 0; i < 8; ++i) {
    frame[frame.size() - 16 + i] = static_cast<std::byte>(incarnation.id >> (56 - 8 * i));
    frame[frame.size() - 8 + i] = static_cast<std::byte>(incarnation.base_seq >> (56 - 8 * i));
  }
  return frame;
}

}  // namespace

TEST_CASE("every frame type round-trips with randomized fields") {
  const uint64_t seed = test_seed();
  INFO("GATEHOUSE_TEST_SEED=" << seed);
  FrameFactory factory(seed);
  SpillPool pool(1);
  for (uint8_t type = 1; type <= kFrameTypeMax; ++type) {
    for (int round = 0; round < 200; ++round) {
      const Frame original = factory.make(static_cast<FrameType>(type));
      const Bytes encoded = encode_bytes(original);
      const std::vector<Bytes> decoded = decode_chunks({encoded}, pool);
      REQUIRE(decoded.size() == 1);
      CHECK(decoded[0] == encoded);
    }
  }
}

TEST_CASE("decoded fields equal the encoded ones") {
  const unsigned char payload[] = {0, 1, 2, 255};
  Open open{Role::gateway, AuthMethod::kerberos, "web01.example.test", 2, {}, {}};
  open.hops[0] = "gw2.dmz.example.test";
  open.hops[1] = "gw1.example.test";
  const Bytes hello = encode_bytes({0, Hello{1, 3, Role::gateway, AuthMethod::kerberos, "gw1.example.test", {}}});
  const Bytes open_bytes = encode_bytes({7, open});
  const Bytes data = encode_bytes({9, Data{123456789012345ull, DataKind::event, std::as_bytes(std::span(payload))}});

  SpillPool pool(1);
  FrameDecoder decoder(&pool);
  std::span<const std::byte> input(hello);
  DecodeResult result = decoder.next(input);
  REQUIRE(result.status == DecodeStatus::frame);
  const auto& h = std::get<Hello>(result.frame.body);
  CHECK(h.version_min == 1);
  CHECK(h.version_max == 3);
  CHECK(h.role == Role::gateway);
  CHECK(h.auth == AuthMethod::kerberos);
  CHECK(h.name == "gw1.example.test");

  input = open_bytes;
  result = decoder.next(input);
  REQUIRE(result.status == DecodeStatus::frame);
  CHECK(result.frame.channel == 7);
  const auto& o = std::get<Open>(result.frame.body);
  CHECK(o.role == Role::gateway);
  CHECK(o.name == "web01.example.test");
  REQUIRE(o.hop_count == 2);
  CHECK(o.hops[0] == "gw2.dmz.example.test");
  CHECK(o.hops[1] == "gw1.example.test");

  input = data;
  result = decoder.next(input);
  REQUIRE(result.status == DecodeStatus::frame);
  const auto& d = std::get<Data>(result.frame.body);
  CHECK(d.seq == 123456789012345ull);
  REQUIRE(d.payload.size() == 4);
  CHECK(std::memcmp(d.payload.data(), payload, 4) == 0);
  // A frame that arrives whole is not copied: its payload points into the input.
  CHECK(d.payload.data() == data.data() + kDataPrefixBytes);

  std::vector<std::byte> channels;
  for (uint32_t channel : {1u, 70'000u, UINT32_MAX}) append_heartbeat_channel(channels, channel);
  const Bytes heartbeats = encode_bytes({0, Heartbeats{channels}});
  input = heartbeats;
  result = decoder.next(input);
  REQUIRE(result.status == DecodeStatus::frame);
  const auto& beats = std::get<Heartbeats>(result.frame.body);
  REQUIRE(beats.channels.size() == 12);
  CHECK(heartbeat_channel(beats, 0) == 1);
  CHECK(heartbeat_channel(beats, 1) == 70'000);
  CHECK(heartbeat_channel(beats, 2) == UINT32_MAX);
}

TEST_CASE("a stream split at every byte decodes to the same frames") {
  const uint64_t seed = test_seed();
  INFO("GATEHOUSE_TEST_SEED=" << seed);
  FrameFactory factory(seed);
  Bytes stream;
  std::vector<Bytes> expected;
  // Small frames (so every split point is cheap) of every type.
  while (expected.size() < 3 * kFrameTypeMax) {
    const Frame frame = factory.make(static_cast<FrameType>(1 + expected.size() % kFrameTypeMax));
    if (encoded_size_bytes(frame) > 700) continue;
    expected.push_back(encode_bytes(frame));
    stream.insert(stream.end(), expected.back().begin(), expected.back().end());
  }
  SpillPool pool(1);
  for (size_t split = 0; split <= stream.size(); ++split) {
    const std::span<const std::byte> all(stream);
    const std::vector<Bytes> decoded = decode_chunks({all.first(split), all.subspan(split)}, pool);
    REQUIRE(decoded == expected);
    REQUIRE(pool.buffers_in_use() == 0);
  }
}

TEST_CASE("frames fed one byte at a time, including maximum-size ones, decode intact") {
  const uint64_t seed = test_seed();
  INFO("GATEHOUSE_TEST_SEED=" << seed);
  FrameFactory factory(seed);
  Bytes stream;
  std::vector<Bytes> expected;
  for (int i = 0; i < 40; ++i) {
    expected.push_back(encode_bytes(factory.any()));
    stream.insert(stream.end(), expected.back().begin(), expected.back().end());
  }
  std::vector<std::span<const std::byte>> chunks;
  for (size_t i = 0; i < stream.size(); ++i) chunks.emplace_back(stream.data() + i, 1);
  SpillPool pool(1);
  CHECK(decode_chunks(chunks, pool) == expected);

  // Random chunk sizes, as a socket would deliver them.
  chunks.clear();
  for (size_t offset = 0; offset < stream.size();) {
    const size_t size = std::min<size_t>(stream.size() - offset, 1 + factory.number(9000));
    chunks.emplace_back(stream.data() + offset, size);
    offset += size;
  }
  CHECK(decode_chunks(chunks, pool) == expected);
  CHECK(pool.buffers_in_use() == 0);
}

TEST_CASE("header bounds: each violation gives its own error") {
  const Bytes ping = encode_bytes({0, Ping{1}});
  SUBCASE("bad version") {
    Bytes bytes = ping;
    bytes[0] = std::byte{2};
    CHECK(decode_error(bytes) == ProtoError::bad_version);
  }
  SUBCASE("unknown type") {
    Bytes bytes = ping;
    bytes[1] = std::byte{0};
    CHECK(decode_error(bytes) == ProtoError::unknown_type);
    bytes[1] = std::byte{kFrameTypeMax + 1};
    CHECK(decode_error(bytes) == ProtoError::unknown_type);
  }
  SUBCASE("reserved flags") {
    Bytes bytes = ping;
    bytes[3] = std::byte{1};
    CHECK(decode_error(bytes) == ProtoError::flags_nonzero);
  }
  SUBCASE("oversize length is refused from the header alone") {
    Bytes header(ping.begin(), ping.begin() + kFrameHeaderBytes);
    put_u32(header, 8, kFrameBodyMaxBytes + 1);
    CHECK(decode_error(header) == ProtoError::frame_too_large);
    put_u32(header, 8, UINT32_MAX);
    CHECK(decode_error(header) == ProtoError::frame_too_large);
  }
  SUBCASE("channel rules") {
    Bytes bytes = ping;
    put_u32(bytes, 4, 5);
    CHECK(decode_error(bytes) == ProtoError::channel_must_be_zero);
    Bytes close = encode_bytes({3, Close{Reason::normal}});
    put_u32(close, 4, 0);
    CHECK(decode_error(close) == ProtoError::channel_must_be_nonzero);
  }
  SUBCASE("truncated body and trailing bytes") {
    Bytes body = body_of(ping);
    body.pop_back();
    CHECK(decode_error(raw_frame(FrameType::ping, 0, body)) == ProtoError::truncated);
    body.push_back(std::byte{0});
    body.push_back(std::byte{0});
    CHECK(decode_error(raw_frame(FrameType::ping, 0, body)) == ProtoError::trailing_bytes);
  }
}

TEST_CASE("HEARTBEATS: empty, a channel 0, a partial channel, too many, or not on channel 0 are refused") {
  const std::byte one[] = {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{1}};
  const std::byte zero[] = {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}};
  CHECK(decode_error(raw_frame(FrameType::heartbeats, 0, {})) == ProtoError::bad_heartbeats);
  CHECK(decode_error(raw_frame(FrameType::heartbeats, 0, Bytes(zero, zero + 4))) == ProtoError::bad_heartbeats);
  CHECK(decode_error(raw_frame(FrameType::heartbeats, 0, Bytes(one, one + 3))) == ProtoError::bad_heartbeats);
  CHECK(decode_error(raw_frame(FrameType::heartbeats, 5, Bytes(one, one + 4))) == ProtoError::channel_must_be_zero);
  Bytes too_many;
  for (uint32_t i = 0; i <= kHeartbeatChannelsMax; ++i) too_many.insert(too_many.end(), one, one + 4);
  CHECK(decode_error(raw_frame(FrameType::heartbeats, 0, too_many)) == ProtoError::bad_heartbeats);
  too_many.resize(kHeartbeatChannelsMax * 4);
  CHECK(decode_error(raw_frame(FrameType::heartbeats, 0, too_many)) == ProtoError::none);
}

TEST_CASE("body bounds: each violation gives its own error") {
  const Bytes hello = encode_bytes({0, Hello{1, 1, Role::agent, AuthMethod::cert, "agent1", {}}});
  const size_t name_len_at = 4;  // body offset of HELLO's name length
  const size_t kIncarnationFieldsBytes = 16;  // HELLO's and OPEN's last fields: id, base seq
  SUBCASE("name length field beyond the body is truncation") {
    Bytes body = body_of(hello);
    body[name_len_at] = std::byte{200};
    CHECK(decode_error(raw_frame(FrameType::hello, 0, body)) == ProtoError::truncated);
  }
  SUBCASE("name too long, empty, or with a forbidden character") {
    Bytes body = body_of(hello);
    body.resize(name_len_at);
    body.push_back(std::byte{254});
    body.insert(body.end(), 254, std::byte{'a'});
    body.insert(body.end(), kIncarnationFieldsBytes, std::byte{0});
    CHECK(decode_error(raw_frame(FrameType::hello, 0, body)) == ProtoError::name_too_long);
    body.resize(name_len_at);
    body.push_back(std::byte{0});
    body.insert(body.end(), kIncarnationFieldsBytes, std::byte{0});
    CHECK(decode_error(raw_frame(FrameType::hello, 0, body)) == ProtoError::name_empty);
    body = body_of(hello);
    body[name_len_at + 1] = std::byte{'/'};
    CHECK(decode_error(raw_frame(FrameType::hello, 0, body)) == ProtoError::name_invalid_char);
  }
  SUBCASE("enumerations out of range") {
    Bytes body = body_of(hello);
    body[2] = std::byte{3};
    CHECK(decode_error(raw_frame(FrameType::hello, 0, body)) == ProtoError::bad_role);
    body = body_of(hello);
    body[3] = std::byte{0};
    CHECK(decode_error(raw_frame(FrameType::hello, 0, body)) == ProtoError::bad_auth_method);
    body = body_of(hello);
    body[0] = std::byte{2};
    CHECK(decode_error(raw_frame(FrameType::hello, 0, body)) == ProtoError::bad_version_range);
    body[0] = std::byte{0};
    CHECK(decode_error(raw_frame(FrameType::hello, 0, body)) == ProtoError::bad_version_range);

    const unsigned char token[] = {1};
    Bytes auth = body_of(encode_bytes({0, Auth{AuthMechanism::gssapi_krb5, std::as_bytes(std::span(token))}}));
    auth[0] = std::byte{9};
    CHECK(decode_error(raw_frame(FrameType::auth, 0, auth)) == ProtoError::bad_mechanism);

    Bytes close = body_of(encode_bytes({1, Close{Reason::normal}}));
    close[1] = std::byte{kReasonMax + 1};
    CHECK(decode_error(raw_frame(FrameType::close, 1, close)) == ProtoError::bad_reason);

    Bytes data = body_of(encode_bytes({1, Data{5, DataKind::event, {}}}));
    data[9] = std::byte{5};
    CHECK(decode_error(raw_frame(FrameType::data, 1, data)) == ProtoError::bad_kind);
    data[9] = std::byte{3};  // a gap declaration: no payload
    data.push_back(std::byte{'x'});
    CHECK(decode_error(raw_frame(FrameType::data, 1, data)) == ProtoError::gap_not_empty);
  }
  SUBCASE("incarnations: none for a gateway, no base without one, 8 bytes of a non-zero id") {
    const Incarnation some{0x1234, 40};
    CHECK(decode_error(encode_unchecked_hello(Role::gateway, some)) == ProtoError::bad_incarnation);
    CHECK(decode_error(encode_unchecked_hello(Role::agent, {0, 40})) == ProtoError::bad_incarnation);
    CHECK(decode_error(encode_unchecked_hello(Role::agent, some)) == ProtoError::none);
    const auto payload = incarnation_payload(0x1234);
    Bytes marker = body_of(encode_bytes({1, Data{40, DataKind::incarnation, payload}}));
    CHECK(decode_error(raw_frame(FrameType::data, 1, marker)) == ProtoError::none);
    std::fill(marker.begin() + 10, marker.end(), std::byte{0});
    CHECK(decode_error(raw_frame(FrameType::data, 1, marker)) == ProtoError::bad_incarnation);
    marker.pop_back();
    CHECK(decode_error(raw_frame(FrameType::data, 1, marker)) == ProtoError::bad_incarnation);
    Bytes out(64);
    CHECK(encode({0, Hello{1, 1, Role::gateway, AuthMethod::cert, "gw1", some}}, out).error == ProtoError::bad_incarnation);
  }
  SUBCASE("sequence numbers") {
    Bytes data = body_of(encode_bytes({1, Data{5, DataKind::event, {}}}));
    std::fill(data.begin(), data.begin() + 8, std::byte{0});
    CHECK(decode_error(raw_frame(FrameType::data, 1, data)) == ProtoError::bad_seq);
    Bytes heartbeat = body_of(encode_bytes({1, Data{0, DataKind::heartbeat, {}}}));
    heartbeat[7] = std::byte{1};
    CHECK(decode_error(raw_frame(FrameType::data, 1, heartbeat)) == ProtoError::bad_seq);
  }
  SUBCASE("payload and token sizes") {
    Bytes data = body_of(encode_bytes({1, Data{5, DataKind::event, {}}}));
    data.resize(data.size() + kPayloadMaxBytes + 1);
    CHECK(data.size() <= kFrameBodyMaxBytes);
    CHECK(decode_error(raw_frame(FrameType::data, 1, data)) == ProtoError::payload_too_large);
    const Bytes empty_token{std::byte{1}};
    CHECK(decode_error(raw_frame(FrameType::auth, 0, empty_token)) == ProtoError::token_empty);
  }
  SUBCASE("hops, credit, heartbeat interval") {
    Bytes open = body_of(encode_bytes({1, Open{Role::agent, AuthMethod::cert, "a", 0, {}, {}}}));
    open.resize(open.size() - kIncarnationFieldsBytes);
    open.back() = std::byte{kHopsMax + 1};
    for (uint32_t i = 0; i <= kHopsMax; ++i) {
      open.push_back(std::byte{1});
      open.push_back(std::byte{'h'});
    }
    open.insert(open.end(), kIncarnationFieldsBytes, std::byte{0});
    CHECK(decode_error(raw_frame(FrameType::open, 1, open)) == ProtoError::too_many_hops);
    open[0] = std::byte{3};  // neither agent nor gateway
    CHECK(decode_error(raw_frame(FrameType::open, 1, open)) == ProtoError::bad_role);
    CHECK(decode_error(raw_frame(FrameType::credit, 1, Bytes(4))) == ProtoError::zero_credit);
    Bytes hello_ok = body_of(encode_bytes({0, HelloOk{kVersion, 60, 0, 0, "ms1"}}));
    hello_ok[1] = hello_ok[2] = std::byte{0};
    CHECK(decode_error(raw_frame(FrameType::hello_ok, 0, hello_ok)) == ProtoError::bad_heartbeat_interval);
    hello_ok[0] = std::byte{2};
    CHECK(decode_error(raw_frame(FrameType::hello_ok, 0, hello_ok)) == ProtoError::bad_version);
  }
}

TEST_CASE("after an error the decoder stays failed") {
  Bytes bytes = encode_bytes({0, Ping{1}});
  bytes[0] = std::byte{9};
  const Bytes good = encode_bytes({0, Ping{2}});
  SpillPool pool(1);
  FrameDecoder decoder(&pool);
  std::span<const std::byte> input(bytes);
  CHECK(decoder.next(input).error == ProtoError::bad_version);
  input = good;
  const DecodeResult again = decoder.next(input);
  CHECK(again.status == DecodeStatus::error);
  CHECK(again.error == ProtoError::bad_version);
}

TEST_CASE("split large frames draw on a bounded spill pool and give the buffer back") {
  std::vector<std::byte> payload(kPayloadMaxBytes, std::byte{7});
  const Bytes big = encode_bytes({1, Data{1, DataKind::event, payload}});
  const std::span<const std::byte> all(big);
  SpillPool pool(1);
  FrameDecoder first(&pool);
  FrameDecoder second(&pool);
  std::span<const std::byte> part = all.first(1000);
  CHECK(first.next(part).status == DecodeStatus::need_more);
  CHECK(pool.buffers_in_use() == 1);
  part = all.first(1000);
  const DecodeResult refused = second.next(part);
  CHECK(refused.status == DecodeStatus::error);
  CHECK(refused.error == ProtoError::spill_exhausted);

  part = all.subspan(1000);
  const DecodeResult done = first.next(part);
  REQUIRE(done.status == DecodeStatus::frame);
  CHECK(std::get<Data>(done.frame.body).payload.size() == kPayloadMaxBytes);
  CHECK(pool.buffers_in_use() == 1);  // the frame's views still point into it
  part = {};
  CHECK(first.next(part).status == DecodeStatus::need_more);
  CHECK(pool.buffers_in_use() == 0);

  // Small split frames use the decoder's inline spill, never the pool.
  const Bytes small = encode_bytes({0, Ping{3}});
  FrameDecoder third(nullptr);
  std::span<const std::byte> head = std::span<const std::byte>(small).first(5);
  std::span<const std::byte> tail = std::span<const std::byte>(small).subspan(5);
  CHECK(third.next(head).status == DecodeStatus::need_more);
  CHECK(third.next(tail).status == DecodeStatus::frame);
}

TEST_CASE("a decoder destroyed mid-frame returns its pool buffer") {
  std::vector<std::byte> payload(4096, std::byte{1});
  const Bytes big = encode_bytes({1, Data{1, DataKind::event, payload}});
  SpillPool pool(2);
  {
    FrameDecoder decoder(&pool);
    std::span<const std::byte> part = std::span<const std::byte>(big).first(2000);
    CHECK(decoder.next(part).status == DecodeStatus::need_more);
    CHECK(pool.buffers_in_use() == 1);
  }
  CHECK(pool.buffers_in_use() == 0);
}

TEST_CASE("the encoder refuses what the decoder would refuse") {
  Bytes out(kFrameMaxBytes);
  const std::string long_name(kNameMaxBytes + 1, 'a');
  const std::string long_text(kTextMaxBytes + 1, 'x');
  CHECK(encode({0, Hello{1, 1, Role::agent, AuthMethod::cert, long_name, {}}}, out).error == ProtoError::name_too_long);
  CHECK(encode({0, Hello{1, 1, Role::agent, AuthMethod::cert, "bad name", {}}}, out).error ==
        ProtoError::name_invalid_char);
  CHECK(encode({0, GoAway{Reason::normal, long_text}}, out).error == ProtoError::text_too_long);
  CHECK(encode({5, Ping{1}}, out).error == ProtoError::channel_must_be_zero);
  CHECK(encode({0, Open{Role::agent, AuthMethod::cert, "a", 0, {}, {}}}, out).error == ProtoError::channel_must_be_nonzero);
  CHECK(encode({0, Credit{0}}, out).error == ProtoError::zero_credit);
  CHECK(encode({0, Ping{1}}, std::span(out).first(kFrameHeaderBytes + 7)).error == ProtoError::buffer_too_small);
  CHECK(encoded_size_bytes({0, Hello{1, 1, Role::agent, AuthMethod::cert, long_name, {}}}) == 0);
}

TEST_CASE("a DATA prefix plus its payload is the same frame as encode() writes") {
  const char payload[] = "event body";
  const auto payload_bytes = std::as_bytes(std::span(payload, sizeof payload - 1));
  const Bytes whole = encode_bytes({4, Data{77, DataKind::event, payload_bytes}});
  Bytes gathered(kDataPrefixBytes);
  const EncodeResult prefix =
      encode_data_prefix(4, 77, DataKind::event, static_cast<uint32_t>(payload_bytes.size()), gathered);
  REQUIRE(prefix.error == ProtoError::none);
  CHECK(prefix.size_bytes == kDataPrefixBytes);
  gathered.insert(gathered.end(), payload_bytes.begin(), payload_bytes.end());
  CHECK(gathered == whole);
  CHECK(encode_data_prefix(4, 0, DataKind::event, 1, gathered).error == ProtoError::bad_seq);
  CHECK(encode_data_prefix(4, 1, DataKind::event, kPayloadMaxBytes + 1, gathered).error ==
        ProtoError::payload_too_large);
}
