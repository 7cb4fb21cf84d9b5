#include "gatehouse/net/gate.h"

#include <algorithm>
#include <cctype>

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

bool same_name(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](char x, char y) { return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y)); });
}

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
// goes away meanwhile, the job takes the acceptor and frees both on return.
struct Gate::AcceptJob {
  runtime::ConnId id;
  krb::Acceptor* acceptor;
  std::vector<uint8_t> token;
  krb::Step result;
  std::string principal;
  std::unique_ptr<krb::Acceptor> orphan;

  static void run(void* argument) {
    auto* job = static_cast<AcceptJob*>(argument);
    job->result = job->acceptor->step(job->token);
    if (job->result.state == krb::Step::complete) job->principal = job->acceptor->client_principal();
  }
};

Gate::Gate(const std::atomic<std::shared_ptr<const krb::AcceptorCredential>>& kerberos, runtime::WorkerPool& pool,
           SessionHandler& handler, uint32_t connections_max, GateOptions options)
    : kerberos_(kerberos), pool_(pool), handler_(handler), options_(std::move(options)),
      spill_pool_(std::min(connections_max, kSpillBuffersMax)), connections_(connections_max), frame_buffer_(proto::kFrameMaxBytes) {}

Gate::~Gate() = default;

const Identity* Gate::identity(runtime::ConnId id) const {
  const Connection& connection = connections_[id.index];
  return connection.id == id && connection.stage == Stage::authenticated ? &connection.identity : nullptr;
}

bool Gate::send(runtime::Shard& shard, runtime::ConnId id, const proto::Frame& frame) {
  const proto::EncodeResult encoded = proto::encode(frame, frame_buffer_);
  GH_INVARIANT(encoded.error == proto::ProtoError::none);
  return send_encoded(shard, id, std::span(frame_buffer_).first(encoded.size_bytes));
}

bool Gate::send_encoded(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> frames) {
  return tls_->send(shard, id, frames);
}

void Gate::set_reading(runtime::Shard& shard, runtime::ConnId id, bool reading) {
  if (reading) {
    shard.resume_reading(id);
  } else {
    shard.pause_reading(id);
  }
}

void Gate::deny(runtime::Shard& shard, runtime::ConnId id, proto::Reason reason, log::EventId event,
                const std::string& why, const std::string& hint) {
  Connection& connection = connections_[id.index];
  if (connection.id != id || connection.stage == Stage::closed) return;
  const std::string_view text = std::string_view(why).substr(0, proto::kTextMaxBytes);
  log::emit(log::Level::warning, event, hint.empty() ? why : why + ": " + hint,
            {{"peer", tls_->peer_text(shard, id)},
             {"name", connection.identity.name},
             {"reason", proto::to_string(reason)}});
  send(shard, id, {0, proto::Deny{reason, static_cast<uint32_t>(event), text}});
  connection.stage = Stage::closed;  // nothing more is read from it
  tls_->close(shard, id);            // after the DENY is sent
}

void Gate::on_established(TlsServer&, runtime::Shard& shard, runtime::ConnId id, const std::string& peer_identity) {
  Connection& connection = connections_[id.index];
  connection = {};
  connection.id = id;
  connection.stage = Stage::hello;
  connection.certificate_identity = peer_identity;
  connection.decoder = std::make_unique<proto::FrameDecoder>(&spill_pool_);
  shard.set_deadline(id, options_.hello_timeout_ms);
}

void Gate::on_plaintext(TlsServer&, runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) {
  Connection& connection = connections_[id.index];
  while (!bytes.empty() && connection.id == id && connection.stage != Stage::closed) {
    const proto::DecodeResult result = connection.decoder->next(bytes);
    if (result.status == proto::DecodeStatus::need_more) return;
    if (result.status == proto::DecodeStatus::error && result.error == proto::ProtoError::spill_exhausted) {
      deny(shard, id, proto::Reason::overloaded, log::EventId::protocol_violation,  // ours, not the peer's fault
           "every reassembly buffer of this shard is in use (" + std::to_string(spill_pool_.buffers_max()) +
           "); the peer may reconnect");
      return;
    }
    if (result.status == proto::DecodeStatus::error) {
      deny(shard, id, proto::Reason::protocol_error, log::EventId::protocol_violation,
           std::string("malformed frame: ") + proto::to_string(result.error));
      return;
    }
    if (!on_frame(shard, connection, result.frame)) return;
  }
}

// False when the connection is no longer read (denied or closed).
bool Gate::on_frame(runtime::Shard& shard, Connection& connection, const proto::Frame& frame) {
  const proto::FrameType type = proto::frame_type(frame.body);
  switch (connection.stage) {
    case Stage::authenticated:
      handler_.on_frame(*this, shard, connection.id, frame);
      return shard.alive(connection.id) && connection.stage == Stage::authenticated;
    case Stage::hello:
      if (type == proto::FrameType::hello) {
        on_hello(shard, connection, std::get<proto::Hello>(frame.body));
        return connection.stage != Stage::closed;
      }
      break;
    case Stage::auth:
      if (type == proto::FrameType::auth && connection.job == nullptr) {
        on_auth(shard, connection, std::get<proto::Auth>(frame.body));
        return connection.stage != Stage::closed;
      }
      break;
    case Stage::closed:
      return false;
  }
  deny(shard, connection.id, proto::Reason::protocol_error, log::EventId::protocol_violation,
       std::string(proto::to_string(type)) + " before the session was authenticated");
  return false;
}

void Gate::on_hello(runtime::Shard& shard, Connection& connection, const proto::Hello& hello) {
  connection.identity = {hello.role, hello.auth, std::string(hello.name)};
  const runtime::ConnId id = connection.id;
  if (hello.version_min > proto::kVersion || hello.version_max < proto::kVersion) {
    deny(shard, id, proto::Reason::version_unsupported, log::EventId::protocol_violation,
         "no common protocol version: the child speaks " + std::to_string(hello.version_min) + "-" +
             std::to_string(hello.version_max) + ", this parent 1");
    return;
  }
  if (hello.auth == proto::AuthMethod::kerberos) {
    if (hello.role == proto::Role::gateway) {
      deny(shard, id, proto::Reason::auth_failed, log::EventId::mutual_auth_failed,
           "a gateway link needs mutual TLS (auth = cert), not Kerberos");
    } else if (kerberos_.load() == nullptr) {
      deny(shard, id, proto::Reason::auth_failed, log::EventId::mutual_auth_failed,
           "Kerberos agents are not accepted here: no [kerberos] keytab configured");
    } else {
      connection.stage = Stage::auth;
    }
    return;
  }
  if (connection.certificate_identity.empty()) {
    deny(shard, id, proto::Reason::auth_failed, log::EventId::mutual_auth_failed,
         "HELLO says auth = cert but the client presented no certificate");
  } else if (!same_name(connection.certificate_identity, hello.name)) {
    deny(shard, id, proto::Reason::name_mismatch, log::EventId::mutual_auth_failed,
         "HELLO name " + connection.identity.name + " is not the certificate's identity " +
             connection.certificate_identity);
  } else {
    authenticated(shard, connection);
  }
}

void Gate::on_auth(runtime::Shard& shard, Connection& connection, const proto::Auth& auth) {
  if (connection.acceptor == nullptr) {
    krb::ChannelBinding binding{};
    const tls::Session* session = tls_->session(connection.id);
    if (session == nullptr || !session->channel_binding(binding)) {
      deny(shard, connection.id, proto::Reason::internal_error, log::EventId::mutual_auth_failed,
           "no TLS channel binding for the Kerberos exchange");
      return;
    }
    connection.acceptor = std::make_unique<krb::Acceptor>(kerberos_.load(), binding);
  }
  const auto* token = reinterpret_cast<const uint8_t*>(auth.token.data());
  auto* job = new AcceptJob{connection.id, connection.acceptor.get(),
                            std::vector<uint8_t>(token, token + auth.token.size()), {}, {}, {}};
  // TLS is done: finish this one first.
  if (!runtime::hand_off(pool_, runtime::JobClass::continuation, shard, *this, AcceptJob::run, job)) {
    delete job;
    deny(shard, connection.id, proto::Reason::overloaded, log::EventId::handshake_queue_full,
         "Kerberos accept refused: the auth queue is full");
    return;
  }
  connection.job = job;
  ++accepts_out_;
}

void Gate::on_message(runtime::Shard& shard, uint64_t, void* job) { finish_accept(shard, static_cast<AcceptJob*>(job)); }

void Gate::finish_accept(runtime::Shard& shard, AcceptJob* job) {
  std::unique_ptr<AcceptJob> owned(job);
  --accepts_out_;
  if (job->orphan != nullptr) return;  // the connection closed while the step ran
  Connection& connection = connections_[job->id.index];
  connection.job = nullptr;
  const krb::Step& result = job->result;
  if (result.state == krb::Step::failed) {
    deny(shard, connection.id, proto::Reason::auth_failed, log::EventId::mutual_auth_failed,
         "Kerberos authentication failed: " + result.error);
    return;
  }
  if (!result.token.empty()) {
    const auto* bytes = reinterpret_cast<const std::byte*>(result.token.data());
    send(shard, connection.id, {0, proto::Auth{proto::AuthMechanism::gssapi_krb5, {bytes, result.token.size()}}});
  }
  if (result.state == krb::Step::continue_needed) {
    shard.set_deadline(connection.id, options_.hello_timeout_ms);  // the client's turn: its time starts now
    return;
  }
  connection.acceptor.reset();
  const std::string name = agent_name_of_principal(job->principal);
  if (!same_name(name, connection.identity.name)) {
    deny(shard, connection.id, proto::Reason::name_mismatch, log::EventId::mutual_auth_failed,
         "HELLO name " + connection.identity.name + " is not the Kerberos principal " + job->principal +
             " (host/NAME@REALM or NAME@REALM)");
    return;
  }
  authenticated(shard, connection);
}

void Gate::authenticated(runtime::Shard& shard, Connection& connection) {
  connection.stage = Stage::authenticated;
  connection.role_knows = true;
  shard.clear_deadline(connection.id);
  handler_.on_authenticated(*this, shard, connection.id, connection.identity);
}

void Gate::on_closed(TlsServer&, runtime::Shard& shard, runtime::ConnId id) {
  Connection& connection = connections_[id.index];
  if (connection.id != id) return;
  // A role's deny closes the stage first; the role still cleans up its state.
  if (connection.role_knows) handler_.on_closed(*this, shard, id);
  if (connection.job != nullptr) connection.job->orphan = std::move(connection.acceptor);
  connection = {};
}

void Gate::on_deadline(TlsServer&, runtime::Shard& shard, runtime::ConnId id) {
  const Connection& connection = connections_[id.index];
  if (connection.id != id || connection.stage == Stage::authenticated) return;
  if (connection.job != nullptr) {
    // Our auth queue holds the Kerberos accept (a reconnect storm): not the client's delay.
    shard.set_deadline(id, options_.hello_timeout_ms);
    return;
  }
  deny(shard, id, proto::Reason::timeout, log::EventId::handshake_timeout,
       "HELLO/AUTH not completed within " + std::to_string(options_.hello_timeout_ms) + " ms");
}

void Gate::on_send_space(TlsServer&, runtime::Shard& shard, runtime::ConnId id) {
  if (identity(id) != nullptr) handler_.on_send_space(*this, shard, id);
}

void Gate::on_stop(TlsServer&, runtime::Shard& shard) { handler_.on_stop(*this, shard); }

}  // namespace gatehouse::net
