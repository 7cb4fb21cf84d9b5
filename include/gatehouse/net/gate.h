// The door of every listener: a child's first frames (HELLO, and AUTH for
// Kerberos) are checked here before any role code sees the session. A
// certificate identity must equal the HELLO name; a Kerberos agent proves its
// name with GSSAPI bound to the TLS channel, the accept running on the auth
// pool. Role code only ever sees authenticated identities.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/log/events.h"
#include "gatehouse/net/children.h"
#include "gatehouse/net/tls_server.h"
#include "gatehouse/proto/codec.h"

namespace gatehouse::krb {
class AcceptorCredential;
class Acceptor;
}  // namespace gatehouse::krb

namespace gatehouse::net {

// Who a child proved to be.
struct Identity {
  proto::Role role = proto::Role::agent;
  proto::AuthMethod auth = proto::AuthMethod::cert;
  std::string name;
};

// host/NAME@REALM or NAME@REALM → NAME; "" for anything else (a service
// principal such as gatehouse/gw1@REALM is no agent). docs/auth.md.
std::string agent_name_of_principal(std::string_view principal);

class Gate;

// What runs above an authenticated session (the server and gateway roles).
class SessionHandler {
 public:
  virtual ~SessionHandler() = default;
  // The child proved `identity`: answer HELLO_OK (send) or deny. `children`
  // is the gate (a fake in the roles' unit tests).
  virtual void on_authenticated(Children& children, runtime::Shard& shard, runtime::ConnId id, const Identity& identity) = 0;
  // Every later frame; views are valid during the call only.
  virtual void on_frame(Children& children, runtime::Shard& shard, runtime::ConnId id, const proto::Frame& frame) = 0;
  // Every session the role heard of, whatever ended it (its own deny too).
  virtual void on_closed(Children& children, runtime::Shard& shard, runtime::ConnId id) = 0;
  virtual void on_send_space(Children&, runtime::Shard&, runtime::ConnId) {}
  virtual void on_stop(Children&, runtime::Shard&) {}
  virtual void on_turn_end(Children&, runtime::Shard&) {}
  // False while the role has work outside the shard (e.g. batches in the store).
  virtual bool idle() const { return true; }
};

struct GateOptions {
  uint32_t hello_timeout_ms = 5'000;  // TLS up, HELLO (and AUTH) not done: closed after this
  std::string parent_name;            // ours, sent in HELLO_OK by the role
};

// One per shard, beside its TlsServer (attach() before the shard starts).
class Gate final : public PlainHandler, public Children, private runtime::Mailbox {
 public:
  // `kerberos` may hold nullptr (no [kerberos]): Kerberos agents are refused.
  Gate(const std::atomic<std::shared_ptr<const krb::AcceptorCredential>>& kerberos, runtime::WorkerPool& pool,
       SessionHandler& handler, uint32_t connections_max, GateOptions options);
  ~Gate() override;
  void attach(TlsServer& tls) { tls_ = &tls; }

  // Encodes and sends one frame; false when the connection is gone or its
  // send queue is full (on_send_space follows).
  bool send(runtime::Shard& shard, runtime::ConnId id, const proto::Frame& frame) override;
  // Sends raw, already encoded frames (a relay passes them through).
  bool send_encoded(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> frames);
  // DENY with the reason, a log line with the event, then close. `hint` is
  // for the local log only (what the operator here can do about it).
  void deny(runtime::Shard& shard, runtime::ConnId id, proto::Reason reason, log::EventId event, const std::string& why,
            const std::string& hint) override;
  using Children::deny;
  // Closes once what was sent is out (GOAWAY first, for instance).
  void close(runtime::Shard& shard, runtime::ConnId id) override { tls_->close(shard, id); }
  void set_reading(runtime::Shard& shard, runtime::ConnId id, bool reading) override;
  const Identity* identity(runtime::ConnId id) const;
  const GateOptions& options() const { return options_; }

  void on_established(TlsServer& tls, runtime::Shard& shard, runtime::ConnId id, const std::string& peer_identity) override;
  void on_plaintext(TlsServer& tls, runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) override;
  void on_closed(TlsServer& tls, runtime::Shard& shard, runtime::ConnId id) override;
  void on_deadline(TlsServer& tls, runtime::Shard& shard, runtime::ConnId id) override;
  void on_send_space(TlsServer& tls, runtime::Shard& shard, runtime::ConnId id) override;
  void on_stop(TlsServer& tls, runtime::Shard& shard) override;
  void on_turn_end(TlsServer&, runtime::Shard& shard) override { handler_.on_turn_end(*this, shard); }
  bool idle() const override { return accepts_out_ == 0 && handler_.idle(); }

 private:
  struct AcceptJob;
  enum class Stage : uint8_t { closed, hello, auth, authenticated };
  struct Connection {
    runtime::ConnId id;
    Stage stage = Stage::closed;
    std::string certificate_identity;  // "" without a client certificate
    Identity identity;
    std::unique_ptr<proto::FrameDecoder> decoder;
    std::unique_ptr<krb::Acceptor> acceptor;  // Kerberos exchange in progress
    AcceptJob* job = nullptr;                 // the accept step on the pool, if any
    bool role_knows = false;                  // the role heard on_authenticated: it hears on_closed too
  };

  bool on_frame(runtime::Shard& shard, Connection& connection, const proto::Frame& frame);
  void on_hello(runtime::Shard& shard, Connection& connection, const proto::Hello& hello);
  void on_auth(runtime::Shard& shard, Connection& connection, const proto::Auth& auth);
  void finish_accept(runtime::Shard& shard, AcceptJob* job);
  void on_message(runtime::Shard& shard, uint64_t value, void* job) override;  // an accept step is back
  void authenticated(runtime::Shard& shard, Connection& connection);

  const std::atomic<std::shared_ptr<const krb::AcceptorCredential>>& kerberos_;
  runtime::WorkerPool& pool_;
  SessionHandler& handler_;
  const GateOptions options_;
  TlsServer* tls_ = nullptr;
  proto::SpillPool spill_pool_;
  std::vector<Connection> connections_;  // by connection slot
  std::vector<std::byte> frame_buffer_;  // one encoded frame, reused
  uint32_t accepts_out_ = 0;             // Kerberos steps on the pool
};

}  // namespace gatehouse::net
