// TLS termination on the shards, handshakes off them (AES-GCM is cheap;
// handshakes are not), over the listener stack's connection records.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gatehouse/config/live.h"
#include "gatehouse/net/conn.h"
#include "gatehouse/runtime/shard.h"
#include "gatehouse/net/proxy_protocol.h"
#include "gatehouse/runtime/worker_pool.h"
#include "gatehouse/tls/reload.h"

namespace gatehouse::net {

class TlsServer;

// What runs above TLS on an established session (the gate; a test's echo).
// Every call gets the connection's record, already checked to be live.
class PlainHandler {
 public:
  virtual ~PlainHandler() = default;
  virtual void on_established(TlsServer& tls, runtime::Shard& shard, Conn& conn, const tls::PeerIdentity& peer) = 0;
  virtual void on_plaintext(TlsServer& tls, runtime::Shard& shard, Conn& conn, std::span<const std::byte> bytes) = 0;
  virtual void on_closed(TlsServer& tls, runtime::Shard& shard, Conn& conn) = 0;
  // A deadline the handler set on an established session.
  virtual void on_deadline(TlsServer&, runtime::Shard&, Conn&) {}
  virtual void on_send_space(TlsServer&, runtime::Shard&, Conn&) {}
  // Stop was requested; the TLS layer closes every session after this.
  virtual void on_stop(TlsServer&, runtime::Shard&) {}
  virtual void on_turn_end(TlsServer&, runtime::Shard&) {}
  // False while the handler has work on the pool.
  virtual bool idle() const { return true; }
};

// A gateway whose parents dial it (connect = "parent"): a connection that
// opens with proto::kParentDialPreamble is handed over whole (the uplinks
// run the child side on it), or closed when nobody takes it.
enum class DialIn : uint8_t {
  adopted,
  busy,          // a parent's, but this shard's uplinks all have a session: it dials again (lands elsewhere)
  not_a_parent,  // from no address of a parent with connect = "parent": refused (30056)
};
class DialedInParents {
 public:
  virtual DialIn adopt_parent(runtime::Shard& shard, runtime::ConnId id) = 0;

 protected:
  ~DialedInParents() = default;
};

// A server that dials its gateways (GatewayDialer): told when a gateway
// answered a dial with proto::kParentDialBusy (the connection is closed).
class DiallingParent {
 public:
  virtual void on_gateway_busy(runtime::Shard& shard, runtime::ConnId id) = 0;

 protected:
  ~DiallingParent() = default;
};

struct TlsServerLimits {
  const config::LiveSettings& live;  // handshake_timeout_ms: a silent or slow client is closed after this
  std::vector<Subnet> trusted_relays = {};  // peers that must start with a PROXY v2 header
};

// The listener stack on one shard, where the shard's calls come in: it owns
// the table of connection records (one per slot), checks each call's id once,
// and runs TLS on the record: the shard moves bytes, every handshake step
// runs on the worker pool, and the result comes back as a message.
// Established records are sealed and opened on the shard. Connections the
// shard opened itself (contexts >= kConnectedContextBase: a gateway's
// uplinks) are not ours and go to `connected`.
class TlsServer final : public runtime::Service, private runtime::Mailbox {
 public:
  static constexpr uint64_t kConnectedContextBase = uint64_t{1} << 32;

  TlsServer(const tls::ReloadableContext& context, runtime::WorkerPool& pool, PlainHandler& handler,
            uint32_t connections_max, TlsServerLimits limits, runtime::Service* connected = nullptr,
            DialedInParents* dialed_in = nullptr);
  ~TlsServer() override;

  // Queues plaintext on an established session. What is queued during a loop
  // turn is sealed at its end in one TLS write (ACK + CREDIT for an agent, a
  // batch's answers for an uplink: one record, one send), or at once past
  // kSealAtBytes. False when the session is not established.
  bool send(runtime::Shard& shard, Conn& conn, std::span<const std::byte> plaintext);
  static constexpr size_t kSealAtBytes = 16 * 1024;  // one full TLS record
  static constexpr size_t kOutgoingKeepBytes = 1024;  // a sealed turn's buffer kept only above this
  // Seals what is queued, then closes once it is sent (a DENY, a GOAWAY).
  void close(runtime::Shard& shard, Conn& conn);
  // The record of a live connection, or nullptr (a stale id: it closed).
  Conn* find(runtime::ConnId id);
  // Every record in use.
  template <typename Visit>
  void for_each(Visit&& visit) {
    for (Conn& conn : conns_) {
      if (conn.stage != Stage::free) visit(conn);
    }
  }

  // A connection the server dialled to its gateway (the preamble sent):
  // from here on it is a child's connection like an accepted one, whose
  // client must be `gateway` (ServerSessions checks the HELLO), unless the
  // gateway answers that it is busy (`dialler` hears it).
  void adopt_dialled(runtime::Shard& shard, runtime::ConnId id, const std::string& gateway, DiallingParent& dialler);

  void on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) override;
  void on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) override;
  void on_close(runtime::Shard& shard, runtime::ConnId id, int error) override;
  void on_connect_failed(runtime::Shard& shard, uint64_t context, int error) override;
  void on_deadline(runtime::Shard& shard, runtime::ConnId id) override;
  void on_stop(runtime::Shard& shard) override;
  void on_send_space(runtime::Shard& shard, runtime::ConnId id) override;
  void on_turn_end(runtime::Shard& shard) override;
  bool idle() const override {
    return steps_out_ == 0 && handler_.idle() && (connected_ == nullptr || connected_->idle());
  }

  // The established session of `conn` (channel binding), or nullptr.
  static const tls::Session* session(const Conn& conn);
  // The peer for log lines: the client's address, and the relay's when it came
  // through a trusted relay ("10.1.2.3:40112 via 127.0.0.1:5000").
  static std::string peer_text(const runtime::Shard& shard, const Conn& conn);

 private:
  void seal(runtime::Shard& shard, Conn& conn);
  void timed_out(runtime::Shard& shard, Conn& conn);  // 30031, closed
  void close_revoked(runtime::Shard& shard);
  bool read_proxy_header(runtime::Shard& shard, Conn& conn);
  void begin_handshake(runtime::Shard& shard, runtime::ConnId id, bool relays_apply);
  // True when the connection was a parent's dial-in (handed over or refused);
  // false: not one, or not all of its first bytes are here yet (`wait`).
  bool parent_dialled_in(runtime::Shard& shard, Conn& conn, bool& wait);
  // True when a gateway this server dialled answered busy (closed, dialler_ told).
  bool dialled_gateway_busy(runtime::Shard& shard, Conn& conn, bool& wait);
  void submit_step(runtime::Shard& shard, Conn& conn);
  void on_message(runtime::Shard& shard, uint64_t value, void* step) override;  // a step is back
  void finish_step(runtime::Shard& shard, HandshakeStep* step);
  void open_records(runtime::Shard& shard, Conn& conn, std::span<const std::byte> ciphertext);
  bool flush_ciphertext(runtime::Shard& shard, Conn& conn);

  const tls::ReloadableContext& context_;
  runtime::WorkerPool& pool_;
  PlainHandler& handler_;
  const TlsServerLimits limits_;
  runtime::Service* const connected_;  // may be nullptr
  DialedInParents* const dialed_in_;   // may be nullptr
  DiallingParent* dialler_ = nullptr;  // set by the first adopt_dialled
  std::vector<Conn> conns_;            // by connection slot
  // Only for opened plaintext: the handler may send (and so flush ciphertext,
  // through its own buffer) while it still reads what it was given.
  std::vector<std::byte> plaintext_;     // one record's worth, opened, reused
  std::vector<runtime::ConnId> to_seal_; // connections with outgoing plaintext this turn
  uint32_t steps_out_ = 0;               // handshake steps on the pool
  uint64_t context_generation_ = 0;      // the context's, when this shard last checked its sessions' serials
};

}  // namespace gatehouse::net
