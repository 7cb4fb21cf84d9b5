#include "gatehouse/net/tls_server.h"

#include "gatehouse/log/log.h"
#include "gatehouse/net/ciphertext.h"
#include "tls/session.h"

namespace gatehouse::net {
namespace {

constexpr size_t kScratchBytes = 32 * 1024;

}  // namespace

// One handshake step, owned by the pool while it runs. If the connection goes
// away meanwhile, the step takes the session and frees both on return.
struct TlsServer::Step {
  runtime::ConnId id;
  tls::Session* session;
  std::vector<std::byte> input;
  std::vector<std::byte> output;
  tls::HandshakeState state = tls::HandshakeState::in_progress;
  std::string peer_identity;
  std::unique_ptr<tls::Session> orphan;

  static void run(void* argument) {
    auto* step = static_cast<Step*>(argument);
    step->session->push_ciphertext(step->input);
    step->state = step->session->handshake();
    step->output.resize(step->session->pending_ciphertext_bytes());
    step->output.resize(step->session->pull_ciphertext(step->output));
    if (step->state == tls::HandshakeState::established) step->peer_identity = step->session->peer_identity();
  }
};

TlsServer::TlsServer(const tls::ReloadableContext& context, runtime::WorkerPool& pool, PlainHandler& handler,
                     uint32_t connections_max, TlsServerLimits limits)
    : context_(context), pool_(pool), handler_(handler), limits_(limits), connections_(connections_max),
      plaintext_(kScratchBytes) {}

TlsServer::~TlsServer() = default;

void TlsServer::on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t) {
  std::shared_ptr<const tls::Context> context = context_.current();
  if (context == nullptr) {
    shard.abort(id);
    return;
  }
  Connection& connection = connections_[id.index];
  connection = {};
  connection.id = id;
  connection.session = std::make_unique<tls::Session>(std::move(context));
  for (const Subnet& relay : limits_.trusted_relays) {
    connection.awaiting_proxy = connection.awaiting_proxy || relay.contains(shard.peer(id));
  }
  shard.set_deadline(id, limits_.handshake_timeout_ms);
}

// False when the connection is refused or the header is not complete yet.
bool TlsServer::read_proxy_header(runtime::Shard& shard, Connection& connection) {
  ProxyHeader header;
  std::string why;
  switch (parse_proxy_header(connection.pending, header, why)) {
    case ProxyParse::need_more:
      return false;
    case ProxyParse::invalid:
      log::emit(log::Level::warning, log::EventId::protocol_violation, "refused a trusted relay's connection: " + why,
                {{"peer", shard.peer(connection.id).to_string()}});
      connection.failed = true;
      shard.abort(connection.id);
      return false;
    case ProxyParse::done:
      break;
  }
  connection.awaiting_proxy = false;
  if (!header.local) connection.relayed_peer = header.source;
  connection.relayed_identity = header.verified_client_name;
  connection.pending.erase(connection.pending.begin(), connection.pending.begin() + header.size_bytes);
  return true;
}

std::string TlsServer::peer_text(const runtime::Shard& shard, runtime::ConnId id) const {
  const Connection& connection = connections_[id.index];
  const std::string peer = shard.peer(id).to_string();
  if (connection.id != id || !connection.relayed_peer) return peer;
  return connection.relayed_peer->to_string() + " via " + peer;
}

void TlsServer::on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) {
  Connection& connection = connections_[id.index];
  if (connection.session == nullptr || connection.id != id || connection.failed) return;
  if (connection.established) {
    open_records(shard, connection, bytes);
    return;
  }
  connection.pending.insert(connection.pending.end(), bytes.begin(), bytes.end());
  if (connection.awaiting_proxy && !read_proxy_header(shard, connection)) return;
  if (connection.step == nullptr && !connection.pending.empty()) submit_step(shard, connection);
}

void TlsServer::submit_step(runtime::Shard& shard, Connection& connection) {
  auto* step = new Step{connection.id, connection.session.get(), std::move(connection.pending), {}, {}, {}, {}};
  connection.pending.clear();
  const runtime::JobClass job_class = connection.stepped ? runtime::JobClass::continuation : runtime::JobClass::fresh;
  connection.stepped = true;
  if (!runtime::hand_off(pool_, job_class, shard, *this, Step::run, step)) {
    delete step;
    log::emit(log::Level::warning, log::EventId::handshake_queue_full,
              "handshake refused: the auth queue is full (raise [runtime] auth_threads, or the clients back off)",
              {{"peer", peer_text(shard, connection.id)}});
    shard.abort(connection.id);
    return;
  }
  connection.step = step;
  ++steps_out_;
}

void TlsServer::on_message(runtime::Shard& shard, uint64_t, void* step) { finish_step(shard, static_cast<Step*>(step)); }

void TlsServer::on_send_space(runtime::Shard& shard, runtime::ConnId id) {
  Connection& connection = connections_[id.index];
  if (!connection.established || connection.id != id) return;
  if (flush_ciphertext(shard, connection)) handler_.on_send_space(*this, shard, id);
}

const tls::Session* TlsServer::session(runtime::ConnId id) const {
  const Connection& connection = connections_[id.index];
  return connection.established && connection.id == id ? connection.session.get() : nullptr;
}

void TlsServer::finish_step(runtime::Shard& shard, Step* step) {
  std::unique_ptr<Step> owned(step);
  --steps_out_;
  if (step->orphan != nullptr) return;  // the connection closed while the step ran
  Connection& connection = connections_[step->id.index];
  connection.step = nullptr;
  if (!step->output.empty() && !shard.send(connection.id, step->output)) {
    shard.abort(connection.id);
    return;
  }
  switch (step->state) {
    case tls::HandshakeState::established: {
      connection.established = true;
      shard.clear_deadline(connection.id);
      // Through a trusted relay that verified the client's certificate, the
      // client is who the relay says; the relay's own certificate is not it.
      handler_.on_established(*this, shard, connection.id,
                              connection.relayed_identity.empty() ? step->peer_identity : connection.relayed_identity);
      // Records may have come with the client's Finished (already inside the
      // session) or while the step ran (pending): open both now.
      std::vector<std::byte> early = std::move(connection.pending);
      connection.pending.clear();
      if (shard.alive(connection.id)) open_records(shard, connection, early);
      break;
    }
    case tls::HandshakeState::failed:
      connection.failed = true;
      log::emit(log::Level::error, log::EventId::mutual_auth_failed, "TLS mutual authentication failed",
                {{"peer", peer_text(shard, connection.id)}, {"reason", connection.session->failure()}});
      shard.close(connection.id);  // after the alert is sent
      break;
    case tls::HandshakeState::in_progress:
      // The client's turn: its deadline starts now, not when our queue took the step.
      shard.set_deadline(connection.id, limits_.handshake_timeout_ms);
      if (!connection.pending.empty()) submit_step(shard, connection);
      break;
  }
}

void TlsServer::open_records(runtime::Shard& shard, Connection& connection, std::span<const std::byte> ciphertext) {
  connection.session->push_ciphertext(ciphertext);
  for (;;) {
    const int64_t n = connection.session->read(plaintext_);
    if (n == 0) break;
    if (n < 0) {
      flush_ciphertext(shard, connection);  // a close_notify or alert answer, if any
      shard.close(connection.id);
      return;
    }
    handler_.on_plaintext(*this, shard, connection.id, std::span(plaintext_).first(static_cast<size_t>(n)));
    if (!shard.alive(connection.id)) return;
  }
  flush_ciphertext(shard, connection);  // post-handshake messages (tickets, key updates)
}

// Ciphertext to the socket as far as its send queue takes it; the rest waits
// in `unsent` (and the session) for on_send_space. Nothing is ever dropped:
// a lost piece of a TLS stream would corrupt everything after it.
bool TlsServer::flush_ciphertext(runtime::Shard& shard, Connection& connection) {
  return net::flush_ciphertext(shard, connection.id, *connection.session, connection.unsent);
}

bool TlsServer::send(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> plaintext) {
  Connection& connection = connections_[id.index];
  if (!connection.established || connection.id != id) return false;
  if (connection.outgoing.empty()) to_seal_.push_back(id);
  connection.outgoing.insert(connection.outgoing.end(), plaintext.begin(), plaintext.end());
  if (connection.outgoing.size() >= kSealAtBytes) seal(shard, connection);
  return true;
}

void TlsServer::seal(runtime::Shard& shard, Connection& connection) {
  if (connection.outgoing.empty()) return;
  const bool written = connection.session->write(connection.outgoing);
  connection.outgoing.clear();
  if (written) flush_ciphertext(shard, connection);
}

void TlsServer::close(runtime::Shard& shard, runtime::ConnId id) {
  Connection& connection = connections_[id.index];
  if (connection.id == id && connection.established) seal(shard, connection);
  shard.close(id);
}

void TlsServer::on_turn_end(runtime::Shard& shard) {
  handler_.on_turn_end(*this, shard);  // the handler's own batches may add to ours
  for (const runtime::ConnId id : to_seal_) {
    Connection& connection = connections_[id.index];
    if (connection.id == id && connection.established) seal(shard, connection);
  }
  to_seal_.clear();
}

void TlsServer::on_close(runtime::Shard& shard, runtime::ConnId id, int) {
  Connection& connection = connections_[id.index];
  if (connection.id != id || connection.session == nullptr) return;
  if (connection.established) handler_.on_closed(*this, shard, id);
  if (connection.step != nullptr) {
    connection.step->orphan = std::move(connection.session);  // freed when the step returns
  }
  connection = {};
}

void TlsServer::on_deadline(runtime::Shard& shard, runtime::ConnId id) {
  Connection& connection = connections_[id.index];
  if (connection.id != id) return;
  if (connection.established) {
    handler_.on_deadline(*this, shard, id);
    return;
  }
  if (connection.step != nullptr) {
    // Our auth queue holds this handshake (a reconnect storm): not the client's delay.
    shard.set_deadline(id, limits_.handshake_timeout_ms);
    return;
  }
  log::emit(log::Level::warning, log::EventId::handshake_timeout, "handshake not completed in time; closed",
            {{"peer", peer_text(shard, id)}, {"timeout_ms", limits_.handshake_timeout_ms}});
  shard.abort(id);
}

void TlsServer::on_stop(runtime::Shard& shard) {
  handler_.on_stop(*this, shard);
  for (Connection& connection : connections_) {
    if (connection.session != nullptr) shard.close(connection.id);
  }
}

}  // namespace gatehouse::net
