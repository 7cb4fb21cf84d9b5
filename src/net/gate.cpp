#include "gatehouse/net/gate.h"

#include <algorithm>

#include "gatehouse/admin/metrics.h"
#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"
#include "krb/gss.h"
#include "tls/session.h"

namespace gatehouse::net {
namespace {

// Frames split across TLS records wait in a reassembly buffer (64 KiB of
// address space each; only the bytes used become resident, and the free list
// reuses the hottest). One per connection up to this bound, per shard.
constexpr uint32_t kSpillBuffersMax = 8'192;

}  // namespace

std::string agent_name_of_principal(std::string_view principal) {
  const size_t at = principal.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == principal.size()) return "";
  std::string_view name = principal.substr(0, at);
  if (name.starts_with("host/")) name.remove_prefix(5);
  if (name.find('/') != std::string_view::npos || proto::check_name(name) != proto::ProtoError::none) return "";
  return std::string(name);
}

// One GSSAPI accept step, owned by the pool while it runs. If the connection
// goes away meanwhile, the step takes the acceptor and frees both on return.
struct AcceptStep {
  runtime::ConnId id;
  krb::Acceptor* acceptor;
  std::vector<uint8_t> token;
  krb::Step result;
  std::string principal;
  std::unique_ptr<krb::Acceptor> orphan;

  static void run(void* argument) {
    auto* step = static_cast<AcceptStep*>(argument);
    step->result = step->acceptor->step(step->token);
    if (step->result.state == krb::Step::complete) step->principal = step->acceptor->client_principal();
  }
};

Gate::Gate(const std::atomic<std::shared_ptr<const krb::AcceptorCredential>>& kerberos, runtime::WorkerPool& pool,
           SessionHandler& handler, uint32_t connections_max, GateOptions options)
    : kerberos_(kerberos), pool_(pool), handler_(handler), options_(std::move(options)),
      spill_pool_(std::min(connections_max, kSpillBuffersMax)), frame_buffer_(proto::kFrameMaxBytes) {}

Gate::~Gate() = default;

Conn* Gate::find(runtime::ConnId id) {
  Conn* conn = tls_->find(id);
  return conn != nullptr && conn->gate.role_knows ? conn : nullptr;
}

void Gate::for_each(const std::function<void(Conn&)>& visit) {
  tls_->for_each([&](Conn& conn) {
    if (conn.gate.role_knows) visit(conn);
  });
}

bool Gate::send(runtime::Shard& shard, Conn& conn, const proto::Frame& frame) {
  // The child learns its heartbeat from HELLO_OK: its idle time starts here,
  // not at its HELLO (a parent slow to answer the OPEN is not its silence).
  if (std::holds_alternative<proto::HelloOk>(frame.body) && !conn.gate.welcomed) {
    conn.gate.welcomed = true;
    conn.gate.welcomed_at_ms = shard.now_ms();
    conn.gate.idle.heard(shard.now_ms());
    session_opened(shard, conn);
  }
  const proto::EncodeResult encoded = proto::encode(frame, frame_buffer_);
  GH_INVARIANT(encoded.error == proto::ProtoError::none);
  return send_encoded(shard, conn, std::span(frame_buffer_).first(encoded.size_bytes));
}

bool Gate::send_encoded(runtime::Shard& shard, Conn& conn, std::span<const std::byte> frames) {
  conn.gate.bytes_out += frames.size();
  return tls_->send(shard, conn, frames);
}

// One line per session, opened and closed (at high rates the log coalesces
// them per peer host, like every event).
void Gate::session_opened(runtime::Shard& shard, const Conn& conn) {
  const Identity& identity = conn.gate.identity;
  const tls::Session* session = TlsServer::session(conn);
  log::emit(log::Level::info, log::EventId::session_opened,
            std::string(identity.role == proto::Role::gateway ? "gateway " : "agent ") + identity.name + " session opened",
            {{"peer", TlsServer::peer_text(shard, conn)},
             {"name", identity.name},
             {"role", identity.role == proto::Role::gateway ? "gateway" : "agent"},
             {"auth", identity.auth == proto::AuthMethod::kerberos ? "kerberos" : "cert"},
             {"resumed", session != nullptr && session->resumed() ? "yes" : "no"}});
}

void Gate::session_closed(runtime::Shard& shard, const Conn& conn) {
  const GateContext& gate = conn.gate;
  log::emit(log::Level::info, log::EventId::session_closed, gate.identity.name + " session closed",
            {{"peer", TlsServer::peer_text(shard, conn)},
             {"name", gate.identity.name},
             {"duration_ms", shard.now_ms() - gate.welcomed_at_ms},
             {"frames_in", gate.frames_in},
             {"bytes_in", gate.bytes_in},
             {"bytes_out", gate.bytes_out}});
}

void Gate::set_reading(runtime::Shard& shard, Conn& conn, bool reading) {
  // While we do not read, the child's silence is ours: its idle time counts
  // only while we read.
  if (reading == !conn.gate.idle.paused) return;
  if (reading) {
    conn.gate.idle.resume(shard.now_ms());
    shard.resume_reading(conn.id);
  } else {
    conn.gate.idle.pause(shard.now_ms());
    shard.pause_reading(conn.id);
  }
}

void Gate::deny(runtime::Shard& shard, Conn& conn, proto::Reason reason, log::EventId event, const std::string& why,
                const std::string& hint) {
  if (conn.stage == Stage::closing) return;
  const std::string_view text = std::string_view(why).substr(0, proto::kTextMaxBytes);
  log::emit(log::Level::warning, event, hint.empty() ? why : why + ": " + hint,
            {{"peer", TlsServer::peer_text(shard, conn)},
             {"name", conn.gate.identity.name},
             {"reason", proto::to_string(reason)}});
  send(shard, conn, {0, proto::Deny{reason, static_cast<uint32_t>(event), text}});
  tls_->close(shard, conn);  // after the DENY is sent; nothing more is read
}

void Gate::on_established(TlsServer&, runtime::Shard& shard, Conn& conn, const tls::PeerIdentity& peer) {
  conn.gate = {};
  conn.gate.certificate_identity = peer.name;
  conn.gate.certificate_gateway_eku = peer.gateway_eku;
  conn.gate.decoder = std::make_unique<proto::FrameDecoder>(&spill_pool_);
  const uint32_t hello_timeout_ms = options_.live.hello_timeout_ms();
  conn.gate.clock.start(shard.now_ms(), hello_timeout_ms);
  shard.set_deadline(conn.id, hello_timeout_ms);
}

void Gate::on_plaintext(TlsServer&, runtime::Shard& shard, Conn& conn, std::span<const std::byte> bytes) {
  conn.gate.idle.heard(shard.now_ms());
  conn.gate.bytes_in += bytes.size();
  while (!bytes.empty() && conn.stage != Stage::closing) {
    const proto::DecodeResult result = conn.gate.decoder->next(bytes);
    if (result.status == proto::DecodeStatus::need_more) return;
    if (result.status == proto::DecodeStatus::error && result.error == proto::ProtoError::spill_exhausted) {
      deny(shard, conn, proto::Reason::overloaded, log::EventId::protocol_violation,  // ours, not the peer's fault
           "every reassembly buffer of this shard is in use (" + std::to_string(spill_pool_.buffers_max()) +
           "); the peer may reconnect");
      return;
    }
    if (result.status == proto::DecodeStatus::error) {
      deny(shard, conn, proto::Reason::protocol_error, log::EventId::protocol_violation,
           std::string("malformed frame: ") + proto::to_string(result.error));
      return;
    }
    if (!on_frame(shard, conn, result.frame)) return;
  }
}

// False when the connection is no longer read (denied or closed).
bool Gate::on_frame(runtime::Shard& shard, Conn& conn, const proto::Frame& frame) {
  const proto::FrameType type = proto::frame_type(frame.body);
  switch (conn.stage) {
    case Stage::authenticated:
      ++conn.gate.frames_in;
      handler_.on_frame(*this, shard, conn, frame);
      return shard.alive(conn.id) && conn.stage == Stage::authenticated;
    case Stage::hello:
      if (type == proto::FrameType::hello) {
        on_hello(shard, conn, std::get<proto::Hello>(frame.body));
        return conn.stage != Stage::closing;
      }
      break;
    case Stage::auth:
      if (type == proto::FrameType::auth && conn.gate.step == nullptr) {
        on_auth(shard, conn, std::get<proto::Auth>(frame.body));
        return conn.stage != Stage::closing;
      }
      break;
    case Stage::free:
    case Stage::handshake:
    case Stage::closing:
      return false;
  }
  deny(shard, conn, proto::Reason::protocol_error, log::EventId::protocol_violation,
       std::string(proto::to_string(type)) + " before the session was authenticated");
  return false;
}

void Gate::on_hello(runtime::Shard& shard, Conn& conn, const proto::Hello& hello) {
  conn.gate.identity = {hello.role, hello.auth, std::string(hello.name), hello.incarnation};
  if (hello.version_min > proto::kVersion || hello.version_max < proto::kVersion) {
    deny(shard, conn, proto::Reason::version_unsupported, log::EventId::protocol_violation,
         "no common protocol version: the child speaks " + std::to_string(hello.version_min) + "-" +
             std::to_string(hello.version_max) + ", this parent 1");
    return;
  }
  if (hello.auth == proto::AuthMethod::kerberos) {
    if (hello.role == proto::Role::gateway) {
      deny(shard, conn, proto::Reason::auth_failed, log::EventId::mutual_auth_failed,
           "a gateway link needs mutual TLS (auth = cert), not Kerberos");
    } else if (kerberos_.load() == nullptr) {
      deny(shard, conn, proto::Reason::auth_failed, log::EventId::mutual_auth_failed,
           "Kerberos agents are not accepted here: no [kerberos] keytab configured");
    } else {
      conn.stage = Stage::auth;
    }
    return;
  }
  if (conn.gate.certificate_identity.empty()) {
    deny(shard, conn, proto::Reason::auth_failed, log::EventId::mutual_auth_failed,
         "HELLO says auth = cert but the client presented no certificate");
  } else if (!proto::same_name(conn.gate.certificate_identity, hello.name)) {
    deny(shard, conn, proto::Reason::name_mismatch, log::EventId::mutual_auth_failed,
         "HELLO name " + conn.gate.identity.name + " is not the certificate's identity " +
             conn.gate.certificate_identity);
  } else if (hello.role == proto::Role::gateway && !conn.gate.certificate_gateway_eku) {
    // An agent's certificate (clientAuth only) must not speak for other agents.
    deny(shard, conn, proto::Reason::auth_failed, log::EventId::mutual_auth_failed,
         "HELLO says role = gateway but the certificate of " + conn.gate.certificate_identity +
             " lacks a gateway's extended key usage (serverAuth + clientAuth; or it came through a relay)",
         "issue it with: gatehouse certs issue --role gateway; check it with: gatehouse certs check --role gateway");
  } else {
    authenticated(shard, conn);
  }
}

void Gate::on_auth(runtime::Shard& shard, Conn& conn, const proto::Auth& auth) {
  if (conn.gate.acceptor == nullptr) {
    krb::ChannelBinding binding{};
    const tls::Session* session = TlsServer::session(conn);
    if (session == nullptr || !session->channel_binding(binding)) {
      deny(shard, conn, proto::Reason::internal_error, log::EventId::mutual_auth_failed,
           "no TLS channel binding for the Kerberos exchange");
      return;
    }
    conn.gate.acceptor = std::make_unique<krb::Acceptor>(kerberos_.load(), binding);
  }
  const auto* token = reinterpret_cast<const uint8_t*>(auth.token.data());
  auto* step = new AcceptStep{conn.id, conn.gate.acceptor.get(),
                              std::vector<uint8_t>(token, token + auth.token.size()), {}, {}, {}};
  conn.gate.clock.pause(shard.now_ms());
  // TLS is done: finish this one first.
  if (!runtime::hand_off(pool_, runtime::JobClass::continuation, shard, *this, AcceptStep::run, step)) {
    delete step;
    deny(shard, conn, proto::Reason::overloaded, log::EventId::handshake_queue_full,
         "Kerberos accept refused: the auth queue is full");
    return;
  }
  conn.gate.step = step;
  ++accepts_out_;
}

void Gate::on_message(runtime::Shard& shard, uint64_t, void* step) { finish_accept(shard, static_cast<AcceptStep*>(step)); }

void Gate::finish_accept(runtime::Shard& shard, AcceptStep* step) {
  std::unique_ptr<AcceptStep> owned(step);
  --accepts_out_;
  if (step->orphan != nullptr) return;  // the connection closed while the step ran
  Conn* found = tls_->find(step->id);
  GH_INVARIANT(found != nullptr && found->gate.step == step);  // a closing record orphans its step
  Conn& conn = *found;
  conn.gate.step = nullptr;
  if (conn.stage == Stage::closing) return;
  const krb::Step& result = step->result;
  if (result.state == krb::Step::failed) {
    deny(shard, conn, proto::Reason::auth_failed, log::EventId::mutual_auth_failed,
         "Kerberos authentication failed: " + result.error);
    return;
  }
  if (!result.token.empty()) {
    const auto* bytes = reinterpret_cast<const std::byte*>(result.token.data());
    send(shard, conn, {0, proto::Auth{proto::AuthMechanism::gssapi_krb5, {bytes, result.token.size()}}});
  }
  if (result.state == krb::Step::continue_needed) {
    // The client's turn: what is left of its time, not a new allowance.
    const uint32_t left_ms = conn.gate.clock.resume(shard.now_ms());
    if (left_ms == 0) {
      timed_out(shard, conn);
    } else {
      shard.set_deadline(conn.id, left_ms);
    }
    return;
  }
  conn.gate.acceptor.reset();
  const std::string name = agent_name_of_principal(step->principal);
  if (!proto::same_name(name, conn.gate.identity.name)) {
    deny(shard, conn, proto::Reason::name_mismatch, log::EventId::mutual_auth_failed,
         "HELLO name " + conn.gate.identity.name + " is not the Kerberos principal " + step->principal +
             " (host/NAME@REALM or NAME@REALM)");
    return;
  }
  authenticated(shard, conn);
}

namespace {

admin::ShardMetric session_metric(const Identity& identity) {
  if (identity.role == proto::Role::gateway) return admin::ShardMetric::sessions_gateway;
  return identity.auth == proto::AuthMethod::kerberos ? admin::ShardMetric::sessions_agent_kerberos
                                                      : admin::ShardMetric::sessions_agent_cert;
}

}  // namespace

void Gate::authenticated(runtime::Shard& shard, Conn& conn) {
  conn.stage = Stage::authenticated;
  conn.gate.role_knows = true;
  admin::shard_add(shard.index(), session_metric(conn.gate.identity));
  shard.set_deadline(conn.id, options_.live.child_silence_ms());  // checked when it fires, not moved per read
  handler_.on_authenticated(*this, shard, conn);
}

void Gate::on_closed(TlsServer&, runtime::Shard& shard, Conn& conn) {
  // A role's deny closes the stage first; the role still cleans up its state.
  if (conn.gate.role_knows) {
    admin::shard_add(shard.index(), session_metric(conn.gate.identity), -1);
    handler_.on_closed(*this, shard, conn);
  }
  if (conn.gate.welcomed) session_closed(shard, conn);
  if (conn.gate.step != nullptr) conn.gate.step->orphan = std::move(conn.gate.acceptor);
}

void Gate::on_deadline(TlsServer&, runtime::Shard& shard, Conn& conn) {
  if (conn.stage == Stage::closing) return;
  if (conn.stage == Stage::authenticated) {
    idle_check(shard, conn);
    return;
  }
  if (conn.gate.step != nullptr) {
    // Our auth queue holds the Kerberos accept (a reconnect storm): not the
    // client's time; its clock is paused, look again later.
    shard.set_deadline(conn.id, options_.live.hello_timeout_ms());
    return;
  }
  timed_out(shard, conn);
}

// An authenticated child pings at least every heartbeat: one silent for
// missed_heartbeats intervals is gone (a frozen host, a half-open socket, a
// peer holding a slot), and its slot is freed.
void Gate::idle_check(runtime::Shard& shard, Conn& conn) {
  if (conn.gate.idle.paused) {  // we hold its bytes back (backpressure): look again later
    shard.set_deadline(conn.id, options_.live.child_silence_ms());
    return;
  }
  // Before its HELLO_OK the child cannot keep a heartbeat: its wait for the
  // parent's answer gets hello_timeout_ms more, so a slow parent is not its
  // silence, and a parent that never answers (a rogue one upstream) cannot
  // hold the slot for ever.
  const uint64_t limit_ms = options_.live.child_silence_ms() + (conn.gate.welcomed ? 0 : options_.live.hello_timeout_ms());
  const uint64_t idle_ms = conn.gate.idle.idle_ms(shard.now_ms());
  if (idle_ms < limit_ms) {
    shard.set_deadline(conn.id, static_cast<uint32_t>(limit_ms - idle_ms));
    return;
  }
  if (!conn.gate.welcomed) {
    deny(shard, conn, proto::Reason::timeout, log::EventId::session_idle_timeout,
         "its parent did not welcome it within " + std::to_string(idle_ms) +
             " ms of its HELLO (the OPEN went unanswered upstream); it may try again");
    return;
  }
  deny(shard, conn, proto::Reason::timeout, log::EventId::session_idle_timeout,
       "nothing heard from the child for " + std::to_string(idle_ms) + " ms (it pings every heartbeat; the limit is " +
           std::to_string(options_.live.child_silence_ms()) + " ms, [health] missed_heartbeats × heartbeat_interval_s)");
}

void Gate::timed_out(runtime::Shard& shard, Conn& conn) {
  deny(shard, conn, proto::Reason::timeout, log::EventId::handshake_timeout,
       "HELLO/AUTH not completed within " + std::to_string(options_.live.hello_timeout_ms()) + " ms");
}

void Gate::on_send_space(TlsServer&, runtime::Shard& shard, Conn& conn) {
  if (conn.stage == Stage::authenticated) handler_.on_send_space(*this, shard, conn);
}

// A clean stop says so: every child hears GOAWAY shutting_down and goes to
// its next parent at once, logging it as the parent's stop, not a fault.
void Gate::on_stop(TlsServer&, runtime::Shard& shard) {
  handler_.on_stop(*this, shard);
  for_each([&](Conn& conn) {
    if (conn.stage == Stage::authenticated && conn.gate.welcomed) {
      send(shard, conn, {0, proto::GoAway{proto::Reason::shutting_down, "the parent is stopping"}});
    }
  });
}

}  // namespace gatehouse::net
