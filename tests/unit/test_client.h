// A blocking TLS client speaking the wire protocol, for tests that play the
// child side of a listener: real socket, real TLS, real frames.
#pragma once

#include <doctest/doctest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <vector>

#include "gatehouse/proto/codec.h"
#include "tls/session.h"

namespace gatehouse::testing {

class BlockingClient {
 public:
  BlockingClient(std::shared_ptr<const tls::Context> context, const std::string& server_name, uint16_t port)
      : session(std::move(context), server_name) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  }
  ~BlockingClient() { ::close(fd_); }
  BlockingClient(const BlockingClient&) = delete;
  BlockingClient& operator=(const BlockingClient&) = delete;

  // Bytes before TLS (a relay's PROXY header).
  void send_raw(std::span<const std::byte> bytes) {
    REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }

  // Runs the TLS handshake to its end; false when it failed.
  bool handshake(int timeout_ms = 5'000) {
    for (;;) {
      const tls::HandshakeState state = session.handshake();
      flush();
      if (state != tls::HandshakeState::in_progress) return state == tls::HandshakeState::established;
      if (!receive(timeout_ms)) return false;
    }
  }

  void send_frame(const proto::Frame& frame) {
    std::vector<std::byte> bytes(proto::kFrameMaxBytes);
    const proto::EncodeResult encoded = proto::encode(frame, bytes);
    REQUIRE(encoded.error == proto::ProtoError::none);
    send_plaintext(std::span(bytes).first(encoded.size_bytes));
  }
  void send_plaintext(std::span<const std::byte> bytes) {
    REQUIRE(session.write(bytes));
    flush();
  }

  // The next frame (views valid until the next call); false when the
  // connection closed or nothing came within timeout_ms.
  bool next_frame(proto::Frame& frame, int timeout_ms = 5'000) {
    for (;;) {
      std::span<const std::byte> input = std::span(plain_).subspan(offset_);
      const proto::DecodeResult result = decoder_.next(input);
      offset_ = plain_.size() - input.size();
      if (result.status == proto::DecodeStatus::frame) {
        frame = result.frame;
        return true;
      }
      REQUIRE(result.status == proto::DecodeStatus::need_more);
      plain_.clear();
      offset_ = 0;
      if (!receive(timeout_ms)) return false;
      std::array<std::byte, 16 * 1024> plaintext{};
      int64_t n = 0;
      while ((n = session.read(plaintext)) > 0) plain_.insert(plain_.end(), plaintext.begin(), plaintext.begin() + n);
      flush();
      if (n < 0 && plain_.empty()) return false;
    }
  }

  // True when the server closed the connection within timeout_ms.
  bool closed_by_peer(int timeout_ms = 5'000) {
    std::array<std::byte, 4096> buffer{};
    for (;;) {
      pollfd ready{fd_, POLLIN, 0};
      if (poll(&ready, 1, timeout_ms) != 1) return false;
      const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
      if (n <= 0) return true;
    }
  }

  tls::Session session;

 private:
  void flush() {
    std::array<std::byte, 16 * 1024> out{};
    while (size_t n = session.pull_ciphertext(out)) REQUIRE(::send(fd_, out.data(), n, MSG_NOSIGNAL) == static_cast<ssize_t>(n));
  }
  bool receive(int timeout_ms) {
    pollfd ready{fd_, POLLIN, 0};
    if (poll(&ready, 1, timeout_ms) != 1) return false;
    std::array<std::byte, 16 * 1024> in{};
    const ssize_t n = ::recv(fd_, in.data(), in.size(), 0);
    if (n <= 0) return false;
    session.push_ciphertext(std::span(in).first(static_cast<size_t>(n)));
    return true;
  }

  int fd_ = -1;
  proto::SpillPool spill_pool_{4};
  proto::FrameDecoder decoder_{&spill_pool_};
  std::vector<std::byte> plain_;
  size_t offset_ = 0;
};

}  // namespace gatehouse::testing
