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

// host/NAME@REALM or NAME@REALM → NAME; "" for anything else (a service
// principal such as gatehouse/gw1@REALM is no agent). docs/auth.md.
std::string agent_name_of_principal(std::string_view principal);

class Gate;

// What runs above an authenticated session: the one interface a role
// implements (the server and gateway roles), its children's sessions and, for
// a gateway, its uplinks. Its per-session state lives in
// the record (conn.role).
class SessionHandler {
 public:
  virtual ~SessionHandler() = default;
  // The child proved `conn.gate.identity`: answer HELLO_OK (send) or deny.
  // `children` is the gate (a fake in the roles' unit tests).
  virtual void on_authenticated(Children& children, runtime::Shard& shard, Conn& conn) = 0;
  // Every later frame; views are valid during the call only.
  virtual void on_frame(Children& children, runtime::Shard& shard, Conn& conn, const proto::Frame& frame) = 0;
  // Every session the role heard of, whatever ended it (its own deny too).
  virtual void on_closed(Children& children, runtime::Shard& shard, Conn& conn) = 0;
  virtual void on_send_space(Children&, runtime::Shard&, Conn&) {}
  virtual void on_stop(Children&, runtime::Shard&) {}
  virtual void on_turn_end(Children&, runtime::Shard&) {}
  // False while the role has work outside the shard (e.g. batches in the store).
  virtual bool idle() const { return true; }

  // A role with uplinks of its own (the gateway) hears them here too, from
  // uplink::UplinkPool on the same shard: a frame for one of its channels, the
  // uplink lost, or congested (stop reading its children) and drained again.
  virtual void on_uplink_frame(runtime::Shard&, uint32_t /*uplink*/, const proto::Frame&) {}
  virtual void on_uplink_down(runtime::Shard&, uint32_t /*uplink*/) {}
  virtual void on_uplink_congested(runtime::Shard&, uint32_t /*uplink*/, bool /*congested*/) {}
};

struct GateOptions {
  // hello_timeout_ms (TLS up, HELLO and AUTH not done: closed after this) and
  // child_silence_ms (authenticated, nothing heard: closed), read live.
  const config::LiveSettings& live;
  std::string parent_name;  // ours, sent in HELLO_OK by the role
};

// One per shard, above its TlsServer (attach() before the shard starts).
class Gate final : public PlainHandler, public Children, private runtime::Mailbox {
 public:
  // `kerberos` may hold nullptr (no [kerberos]): Kerberos agents are refused.
  Gate(const std::atomic<std::shared_ptr<const krb::AcceptorCredential>>& kerberos, runtime::WorkerPool& pool,
       SessionHandler& handler, uint32_t connections_max, GateOptions options);
  ~Gate() override;
  void attach(TlsServer& tls) { tls_ = &tls; }
  TlsServer& tls() { return *tls_; }

  bool send(runtime::Shard& shard, Conn& conn, const proto::Frame& frame) override;
  // Sends raw, already encoded frames (a relay passes them through).
  bool send_encoded(runtime::Shard& shard, Conn& conn, std::span<const std::byte> frames);
  void deny(runtime::Shard& shard, Conn& conn, proto::Reason reason, log::EventId event, const std::string& why,
            const std::string& hint) override;
  using Children::deny;
  void close(runtime::Shard& shard, Conn& conn) override { tls_->close(shard, conn); }
  void set_reading(runtime::Shard& shard, Conn& conn, bool reading) override;
  Conn* find(runtime::ConnId id) override;
  void for_each(const std::function<void(Conn&)>& visit) override;
  const GateOptions& options() const { return options_; }

  void on_established(TlsServer& tls, runtime::Shard& shard, Conn& conn, const tls::PeerIdentity& peer) override;
  void on_plaintext(TlsServer& tls, runtime::Shard& shard, Conn& conn, std::span<const std::byte> bytes) override;
  void on_closed(TlsServer& tls, runtime::Shard& shard, Conn& conn) override;
  void on_deadline(TlsServer& tls, runtime::Shard& shard, Conn& conn) override;
  void on_send_space(TlsServer& tls, runtime::Shard& shard, Conn& conn) override;
  void on_stop(TlsServer& tls, runtime::Shard& shard) override;
  void on_turn_end(TlsServer&, runtime::Shard& shard) override { handler_.on_turn_end(*this, shard); }
  bool idle() const override { return accepts_out_ == 0 && handler_.idle(); }

 private:
  bool on_frame(runtime::Shard& shard, Conn& conn, const proto::Frame& frame);
  void on_hello(runtime::Shard& shard, Conn& conn, const proto::Hello& hello);
  void on_auth(runtime::Shard& shard, Conn& conn, const proto::Auth& auth);
  void finish_accept(runtime::Shard& shard, AcceptStep* step);
  void on_message(runtime::Shard& shard, uint64_t value, void* step) override;  // an accept step is back
  void authenticated(runtime::Shard& shard, Conn& conn);
  void timed_out(runtime::Shard& shard, Conn& conn);
  void idle_check(runtime::Shard& shard, Conn& conn);  // DENY timeout, 30031
  void session_opened(runtime::Shard& shard, const Conn& conn);  // 30033
  void session_closed(runtime::Shard& shard, const Conn& conn);  // 30034

  const std::atomic<std::shared_ptr<const krb::AcceptorCredential>>& kerberos_;
  runtime::WorkerPool& pool_;
  SessionHandler& handler_;
  const GateOptions options_;
  TlsServer* tls_ = nullptr;
  proto::SpillPool spill_pool_;
  std::vector<std::byte> frame_buffer_;  // one encoded frame, reused
  uint32_t accepts_out_ = 0;             // Kerberos steps on the pool
};

}  // namespace gatehouse::net
