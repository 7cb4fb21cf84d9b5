// `gatehouse proto`: decode a v1 byte stream (a capture, a dump) into JSON
// lines, and write a sample stream with one frame of every type (also the
// fuzzer's seed corpus: `proto sample --each DIR`).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gatehouse/cli/args.h"
#include "commands.h"
#include "gatehouse/log/log.h"
#include "gatehouse/proto/codec.h"

namespace gatehouse::cli {
namespace {

constexpr std::string_view kUsage = "gatehouse proto decode [FILE] | gatehouse proto sample [--each DIR]";
constexpr size_t kReadChunkBytes = 64 * 1024;

void append_bytes(std::string& out, std::string_view key, std::span<const std::byte> bytes) {
  bool printable = true;
  for (std::byte b : bytes) printable = printable && std::to_integer<int>(b) >= 0x20 && std::to_integer<int>(b) < 0x7f;
  out += ",\"" + std::string(key) + "_bytes\":" + std::to_string(bytes.size());
  if (printable) {
    out += ",\"" + std::string(key) + "\":";
    log::append_json_string(out, {reinterpret_cast<const char*>(bytes.data()), bytes.size()});
    return;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  out += ",\"" + std::string(key) + "_hex\":\"";
  for (std::byte b : bytes) {
    out.push_back(kHex[std::to_integer<int>(b) >> 4]);
    out.push_back(kHex[std::to_integer<int>(b) & 15]);
  }
  out += "\"";
}

void append_field(std::string& out, std::string_view key, std::string_view text) {
  out += ",\"" + std::string(key) + "\":";
  log::append_json_string(out, text);
}

void append_field(std::string& out, std::string_view key, uint64_t number) {
  out += ",\"" + std::string(key) + "\":" + std::to_string(number);
}

void append_incarnation(std::string& out, const proto::Incarnation& incarnation) {
  append_field(out, "incarnation", proto::incarnation_hex(incarnation.id));
  append_field(out, "base_seq", incarnation.base_seq);
}

std::string describe(const proto::Frame& frame, uint64_t offset) {
  using namespace proto;
  std::string out = "{\"offset\":" + std::to_string(offset);
  append_field(out, "type", to_string(frame_type(frame.body)));
  append_field(out, "channel", frame.channel);
  std::visit(
      [&](const auto& f) {
        using T = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<T, Hello>) {
          append_field(out, "version_min", f.version_min);
          append_field(out, "version_max", f.version_max);
          append_field(out, "role", f.role == Role::agent ? "agent" : "gateway");
          append_field(out, "auth", f.auth == AuthMethod::cert ? "cert" : "kerberos");
          append_field(out, "name", f.name);
          append_incarnation(out, f.incarnation);
        } else if constexpr (std::is_same_v<T, Auth>) {
          append_field(out, "mechanism", "gssapi_krb5");
          append_bytes(out, "token", f.token);
        } else if constexpr (std::is_same_v<T, HelloOk>) {
          append_field(out, "version", f.version);
          append_field(out, "heartbeat_interval_s", f.heartbeat_interval_s);
          append_field(out, "credit_bytes", f.credit_bytes);
          append_field(out, "last_durable_seq", f.last_durable_seq);
          append_field(out, "name", f.name);
        } else if constexpr (std::is_same_v<T, Deny> || std::is_same_v<T, OpenDeny>) {
          append_field(out, "reason", to_string(f.reason));
          append_field(out, "event_id", f.event_id);
          append_field(out, "text", f.text);
        } else if constexpr (std::is_same_v<T, Open>) {
          append_field(out, "role", f.role == Role::agent ? "agent" : "gateway");
          append_field(out, "auth", f.auth == AuthMethod::cert ? "cert" : "kerberos");
          append_field(out, "name", f.name);
          out += ",\"hops\":[";
          for (uint8_t i = 0; i < f.hop_count; ++i) {
            if (i > 0) out += ",";
            log::append_json_string(out, f.hops[i]);
          }
          out += "]";
          append_incarnation(out, f.incarnation);
        } else if constexpr (std::is_same_v<T, OpenOk>) {
          append_field(out, "last_durable_seq", f.last_durable_seq);
          append_field(out, "credit_bytes", f.credit_bytes);
        } else if constexpr (std::is_same_v<T, Close>) {
          append_field(out, "reason", to_string(f.reason));
        } else if constexpr (std::is_same_v<T, Data>) {
          append_field(out, "seq", f.seq);
          append_field(out, "kind", to_string(f.kind));
          if (f.kind == DataKind::incarnation) {
            append_field(out, "incarnation", incarnation_hex(incarnation_id(f)));
          } else {
            append_bytes(out, "payload", f.payload);
          }
        } else if constexpr (std::is_same_v<T, Ack>) {
          append_field(out, "durable_seq", f.durable_seq);
        } else if constexpr (std::is_same_v<T, Credit>) {
          append_field(out, "credit_bytes", f.credit_bytes);
        } else if constexpr (std::is_same_v<T, Ping> || std::is_same_v<T, Pong>) {
          append_field(out, "nonce", f.nonce);
        } else if constexpr (std::is_same_v<T, Heartbeats>) {
          std::string list;
          for (size_t i = 0; i < f.channels.size() / 4; ++i) {
            list += (i == 0 ? "" : ",") + std::to_string(heartbeat_channel(f, i));
          }
          out += ",\"channels\":[" + list + "]";
        } else {
          append_field(out, "reason", to_string(f.reason));
          append_field(out, "text", f.text);
        }
      },
      frame.body);
  return out + "}";
}

int decode_stream(int fd, const char* source) {
  proto::SpillPool pool(1);
  proto::FrameDecoder decoder(&pool);
  std::vector<std::byte> chunk(kReadChunkBytes);
  uint64_t consumed_bytes = 0;
  uint64_t frame_start = 0;
  uint64_t frames = 0;
  for (;;) {
    const ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::fprintf(stderr, "gatehouse proto decode: reading %s: %s\n", source, std::strerror(errno));
      return kExitFailure;
    }
    if (n == 0) break;
    std::span<const std::byte> input(chunk.data(), static_cast<size_t>(n));
    while (!input.empty()) {
      const size_t before = input.size();
      const proto::DecodeResult result = decoder.next(input);
      consumed_bytes += before - input.size();
      if (result.status == proto::DecodeStatus::error) {
        std::fflush(stdout);
        std::fprintf(stderr, "gatehouse proto decode: %s: frame at byte %llu: %s\n", source,
                     static_cast<unsigned long long>(frame_start), proto::to_string(result.error));
        return kExitFailure;
      }
      if (result.status == proto::DecodeStatus::frame) {
        std::printf("%s\n", describe(result.frame, frame_start).c_str());
        frame_start = consumed_bytes;
        ++frames;
      }
    }
  }
  std::fflush(stdout);  // frames first, then the verdict on stderr
  if (decoder.mid_frame()) {
    std::fprintf(stderr, "gatehouse proto decode: %s: stream ends inside the frame at byte %llu (truncated)\n",
                 source, static_cast<unsigned long long>(frame_start));
    return kExitFailure;
  }
  std::fprintf(stderr, "gatehouse proto decode: %llu frames, %llu bytes\n",
               static_cast<unsigned long long>(frames), static_cast<unsigned long long>(consumed_bytes));
  return kExitOk;
}

std::span<const std::byte> bytes_of(std::string_view text) { return std::as_bytes(std::span(text)); }

// One frame of every type, as a gateway's uplink and an agent session would carry them.
std::vector<proto::Frame> sample_frames() {
  using namespace proto;
  static constexpr unsigned char kGssToken[] = {0x60, 0x82, 0x02, 0x10, 0x06, 0x09, 0x2a, 0x86,
                                                0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01};
  Open open{Role::agent, AuthMethod::kerberos, "web01.example.test", 1, {}, {0x5eed'0001'cafe'f00d, 40}};
  open.hops[0] = "gw1.example.test";
  static const auto kNextIncarnation = incarnation_payload(0x5eed'0002'cafe'f00d);
  static constexpr unsigned char kHeartbeatChannels[] = {0, 0, 0, 1, 0, 0, 0, 2};  // channels 1 and 2 heard
  Open denied_open{Role::agent, AuthMethod::cert, "db02.example.test", 1, {}, {0x5eed'0003'cafe'f00d, 0}};
  denied_open.hops[0] = "gw1.example.test";
  return {
      {0, Hello{kVersion, kVersion, Role::gateway, AuthMethod::cert, "gw1.example.test", {}}},
      {0, Auth{AuthMechanism::gssapi_krb5, std::as_bytes(std::span(kGssToken))}},
      {0, HelloOk{kVersion, 60, 1u << 20, 0, "ms1.example.test"}},
      {1, open},
      {1, OpenOk{41, 256 * 1024}},
      {1, Data{42, DataKind::event, bytes_of(R"({"level":"warning","msg":"disk /var 91% full"})")}},
      {1, Data{0, DataKind::heartbeat, {}}},
      {1, Data{42, DataKind::incarnation, kNextIncarnation}},
      {1, Ack{42}},
      {1, Credit{4096}},
      {2, denied_open},
      {2, OpenDeny{{Reason::not_approved, 20000, "agent db02.example.test is not approved"}}},
      {1, Close{Reason::normal}},
      {0, Ping{7}},
      {0, Pong{7}},
      {0, Deny{Reason::version_unsupported, 30010, "protocol version 2 is not supported"}},
      {0, Heartbeats{std::as_bytes(std::span(kHeartbeatChannels))}},
      {0, GoAway{Reason::shutting_down, "parent restarting; reconnect to the next parent"}},
  };
}

bool write_all(int fd, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
  return true;
}

int write_sample(std::optional<std::string_view> each_dir) {
  std::vector<std::byte> buffer(proto::kFrameMaxBytes);
  int index = 0;
  for (const proto::Frame& frame : sample_frames()) {
    const proto::EncodeResult encoded = proto::encode(frame, buffer);
    if (encoded.error != proto::ProtoError::none) {
      std::fprintf(stderr, "gatehouse proto sample: cannot encode %s: %s\n",
                   proto::to_string(proto::frame_type(frame.body)), proto::to_string(encoded.error));
      return kExitFailure;
    }
    const std::span<const std::byte> bytes(buffer.data(), encoded.size_bytes);
    int fd = STDOUT_FILENO;
    std::string path;
    if (each_dir) {
      char name[64];
      std::snprintf(name, sizeof name, "/%02d-%s.bin", index++, proto::to_string(proto::frame_type(frame.body)));
      path = std::string(*each_dir) + name;
      fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) {
        std::fprintf(stderr, "gatehouse proto sample: %s: %s\n", path.c_str(), std::strerror(errno));
        return kExitFailure;
      }
    }
    const bool ok = write_all(fd, bytes);
    if (each_dir) ::close(fd);
    if (!ok) {
      std::fprintf(stderr, "gatehouse proto sample: write failed: %s\n", std::strerror(errno));
      return kExitFailure;
    }
  }
  return kExitOk;
}

}  // namespace

int run_proto(int argc, char** argv, int first) {
  static constexpr FlagSpec kFlags[] = {{"--each", true}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse proto", why, kUsage);
  if (args.positionals.empty()) return usage_error("gatehouse proto", "missing action: decode or sample", kUsage);
  const std::string_view action = args.positionals[0];
  if (action == "sample" && args.positionals.size() == 1) return write_sample(args.value("--each"));
  if (action == "decode" && args.positionals.size() <= 2 && !args.has("--each")) {
    if (args.positionals.size() == 1 || args.positionals[1] == "-") return decode_stream(STDIN_FILENO, "stdin");
    const std::string path(args.positionals[1]);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      std::fprintf(stderr, "gatehouse proto decode: %s: %s\n", path.c_str(), std::strerror(errno));
      return kExitFailure;
    }
    const int rc = decode_stream(fd, path.c_str());
    ::close(fd);
    return rc;
  }
  return usage_error("gatehouse proto", "unknown action or arguments", kUsage);
}

}  // namespace gatehouse::cli
