// TLS termination on the shards, handshakes off them: the shard moves bytes,
// every handshake step runs on the worker pool, and the result comes back to
// the shard as a message. Established records are sealed and opened on the
// shard (AES-GCM is cheap; handshakes are not).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gatehouse/runtime/shard.h"
#include "gatehouse/net/proxy_protocol.h"
#include "gatehouse/runtime/worker_pool.h"
#include "gatehouse/tls/reload.h"

namespace gatehouse::net {

class TlsServer;

// What runs above TLS on an established session.
class PlainHandler {
 public:
  virtual ~PlainHandler() = default;
  virtual void on_established(TlsServer& tls, runtime::Shard& shard, runtime::ConnId id,
                              const std::string& peer_identity) = 0;
  virtual void on_plaintext(TlsServer& tls, runtime::Shard& shard, runtime::ConnId id,
                            std::span<const std::byte> bytes) = 0;
  virtual void on_closed(TlsServer& tls, runtime::Shard& shard, runtime::ConnId id) = 0;
  // A deadline the handler set on an established session.
  virtual void on_deadline(TlsServer&, runtime::Shard&, runtime::ConnId) {}
  virtual void on_send_space(TlsServer&, runtime::Shard&, runtime::ConnId) {}
  // Stop was requested; the TLS layer closes every session after this.
  virtual void on_stop(TlsServer&, runtime::Shard&) {}
  virtual void on_turn_end(TlsServer&, runtime::Shard&) {}
  // False while the handler has work on the pool.
  virtual bool idle() const { return true; }
};

struct TlsServerLimits {
  uint32_t handshake_timeout_ms = 5'000;  // a silent or slow client is closed after this
  std::vector<Subnet> trusted_relays = {};  // peers that must start with a PROXY v2 header
};

// One per shard; the context and the pool are shared by all shards.
class TlsServer final : public runtime::Service, private runtime::Mailbox {
 public:
  TlsServer(const tls::ReloadableContext& context, runtime::WorkerPool& pool, PlainHandler& handler,
            uint32_t connections_max, TlsServerLimits limits);
  ~TlsServer() override;

  // Queues plaintext on an established session. What is queued during a loop
  // turn is sealed at its end in one TLS write (ACK + CREDIT for an agent, a
  // batch's answers for an uplink: one record, one send), or at once past
  // kSealAtBytes. False when the session is not established.
  bool send(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> plaintext);
  static constexpr size_t kSealAtBytes = 16 * 1024;  // one full TLS record
  // Seals what is queued, then closes once it is sent (a DENY, a GOAWAY).
  void close(runtime::Shard& shard, runtime::ConnId id);

  void on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) override;
  void on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) override;
  void on_close(runtime::Shard& shard, runtime::ConnId id, int error) override;
  void on_connect_failed(runtime::Shard&, uint64_t, int) override {}
  void on_deadline(runtime::Shard& shard, runtime::ConnId id) override;
  void on_stop(runtime::Shard& shard) override;
  void on_send_space(runtime::Shard& shard, runtime::ConnId id) override;
  void on_turn_end(runtime::Shard& shard) override;
  bool idle() const override { return steps_out_ == 0 && handler_.idle(); }

  // The established session of `id` (channel binding), or nullptr.
  const tls::Session* session(runtime::ConnId id) const;
  // The peer for log lines: the client's address, and the relay's when it came
  // through a trusted relay ("10.1.2.3:40112 via 127.0.0.1:5000").
  std::string peer_text(const runtime::Shard& shard, runtime::ConnId id) const;

 private:
  struct Step;
  struct Connection {
    runtime::ConnId id;
    std::unique_ptr<tls::Session> session;
    std::vector<std::byte> pending;  // ciphertext that came while a step was on the pool
    Step* step = nullptr;            // the step on the pool, if any
    bool stepped = false;            // a first step has run: later ones go first on the pool
    bool established = false;
    bool failed = false;             // handshake failed: closing, input ignored
    bool awaiting_proxy = false;     // from a trusted relay: the PROXY v2 header comes first
    std::optional<runtime::PeerAddress> relayed_peer;
    std::string relayed_identity;    // the relay verified the client's certificate: its CN
    std::vector<std::byte> outgoing; // plaintext of this turn, not yet sealed (< kSealAtBytes)
    std::vector<std::byte> unsent;   // ciphertext the send queue had no room for; sent first
  };

  void seal(runtime::Shard& shard, Connection& connection);

  bool read_proxy_header(runtime::Shard& shard, Connection& connection);

  void submit_step(runtime::Shard& shard, Connection& connection);
  void on_message(runtime::Shard& shard, uint64_t value, void* step) override;  // a step is back
  void finish_step(runtime::Shard& shard, Step* step);
  void open_records(runtime::Shard& shard, Connection& connection, std::span<const std::byte> ciphertext);
  bool flush_ciphertext(runtime::Shard& shard, Connection& connection);

  const tls::ReloadableContext& context_;
  runtime::WorkerPool& pool_;
  PlainHandler& handler_;
  const TlsServerLimits limits_;
  std::vector<Connection> connections_;  // by connection slot
  // Only for opened plaintext: the handler may send (and so flush ciphertext,
  // through its own buffer) while it still reads what it was given.
  std::vector<std::byte> plaintext_;     // one record's worth, opened, reused
  std::vector<runtime::ConnId> to_seal_; // connections with outgoing plaintext this turn
  uint32_t steps_out_ = 0;               // handshake steps on the pool
};

}  // namespace gatehouse::net
