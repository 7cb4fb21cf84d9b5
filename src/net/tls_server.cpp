#include "gatehouse/net/tls_server.h"

#include "gatehouse/admin/metrics.h"
#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"
#include "gatehouse/net/ciphertext.h"
#include "gatehouse/proto/frame_types.h"
#include "tls/session.h"

namespace gatehouse::net {
namespace {

constexpr size_t kScratchBytes = 32 * 1024;

// An established session's sink: sealed records into the send queue as made.
bool send_to_socket(void* record, std::span<const std::byte> bytes) {
  const Conn& conn = *static_cast<const Conn*>(record);
  return conn.tls.shard->send(conn.id, bytes);
}

// How a connection's first bytes compare with a fixed opening line.
enum class Opening : uint8_t { other, partial, whole };
Opening opening(const std::vector<std::byte>& pending, std::string_view line) {
  const std::string_view first(reinterpret_cast<const char*>(pending.data()), std::min(pending.size(), line.size()));
  if (!line.starts_with(first)) return Opening::other;
  return first.size() < line.size() ? Opening::partial : Opening::whole;
}

}  // namespace

// One handshake step, owned by the pool while it runs. If the connection goes
// away meanwhile, the step takes the session and frees both on return.
struct HandshakeStep {
  runtime::ConnId id;
  tls::Session* session;
  std::vector<std::byte> input;
  std::vector<std::byte> output;
  tls::HandshakeState state = tls::HandshakeState::in_progress;
  tls::PeerIdentity peer;
  std::unique_ptr<tls::Session> orphan;

  static void run(void* argument) {
    auto* step = static_cast<HandshakeStep*>(argument);
    step->session->push_ciphertext(step->input);
    step->state = step->session->handshake();
    step->output.resize(step->session->pending_ciphertext_bytes());
    step->output.resize(step->session->pull_ciphertext(step->output));
    if (step->state == tls::HandshakeState::established) step->peer = step->session->peer();
  }
};

TlsServer::TlsServer(const tls::ReloadableContext& context, runtime::WorkerPool& pool, PlainHandler& handler,
                     uint32_t connections_max, TlsServerLimits limits, runtime::Service* connected,
                     DialedInParents* dialed_in)
    : context_(context), pool_(pool), handler_(handler), limits_(limits), connected_(connected), dialed_in_(dialed_in),
      conns_(connections_max),
      plaintext_(kScratchBytes) {}

TlsServer::~TlsServer() = default;

Conn* TlsServer::find(runtime::ConnId id) {
  if (id.index >= conns_.size()) return nullptr;
  Conn& conn = conns_[id.index];
  return conn.id == id && conn.stage != Stage::free ? &conn : nullptr;
}

void TlsServer::on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) {
  if (context >= kConnectedContextBase) {
    GH_INVARIANT(connected_ != nullptr);
    connected_->on_open(shard, id, context);
    return;
  }
  begin_handshake(shard, id, true);
}

void TlsServer::adopt_dialled(runtime::Shard& shard, runtime::ConnId id, const std::string& gateway,
                              DiallingParent& dialler) {
  GH_INVARIANT(dialler_ == nullptr || dialler_ == &dialler);
  dialler_ = &dialler;
  begin_handshake(shard, id, false);
  if (Conn* conn = find(id)) conn->tls.dialled_gateway = gateway;
}

void TlsServer::begin_handshake(runtime::Shard& shard, runtime::ConnId id, bool relays_apply) {
  std::shared_ptr<const tls::Context> tls_context = context_.current();
  if (tls_context == nullptr) {
    shard.abort(id);
    return;
  }
  Conn& conn = conns_[id.index];
  GH_INVARIANT(conn.stage == Stage::free);
  conn.id = id;
  conn.stage = Stage::handshake;
  conn.tls.session = std::make_unique<tls::Session>(std::move(tls_context));
  for (const Subnet& relay : limits_.trusted_relays) {
    conn.tls.awaiting_proxy = conn.tls.awaiting_proxy || (relays_apply && relay.contains(shard.peer(id)));
  }
  const uint32_t handshake_timeout_ms = limits_.live.handshake_timeout_ms();
  conn.tls.clock.start(shard.now_ms(), handshake_timeout_ms);
  shard.set_deadline(id, handshake_timeout_ms);
}

bool TlsServer::parent_dialled_in(runtime::Shard& shard, Conn& conn, bool& wait) {
  wait = false;
  if (dialed_in_ == nullptr || conn.tls.stepped || conn.tls.step != nullptr) return false;
  const std::string_view preamble = proto::kParentDialPreamble;
  const Opening first = opening(conn.tls.pending, preamble);
  wait = first == Opening::partial;  // the rest of the preamble is on its way
  if (first != Opening::whole) return false;
  const runtime::ConnId id = conn.id;
  const std::string peer = peer_text(shard, conn);
  const bool extra = conn.tls.pending.size() > preamble.size();  // the parent waits for our ClientHello
  conn = Conn{};  // the record is free: the uplinks own the connection now
  shard.clear_deadline(id);
  const DialIn outcome = extra ? DialIn::not_a_parent : dialed_in_->adopt_parent(shard, id);
  if (outcome == DialIn::busy) {
    log::emit(log::Level::debug, log::EventId::parent_dial_refused,
              "a parent dialled in, but this shard's uplinks all have a session; told it is busy (it dials again)",
              {{"peer", peer}});
    const std::string_view busy = proto::kParentDialBusy;
    if (shard.send(id, std::as_bytes(std::span(busy)))) {
      shard.close(id);
      return true;
    }
  } else if (outcome == DialIn::not_a_parent) {
    log::emit(log::Level::warning, log::EventId::parent_dial_refused,
              extra ? "a parent's dial-in sent more than its preamble; closed"
                    : "a connection began as a parent's dial-in, but comes from no address of a [[parents]] entry "
                      "with connect = \"parent\"; closed",
              {{"peer", peer}});
  }
  if (outcome != DialIn::adopted) shard.abort(id);
  return true;
}

bool TlsServer::dialled_gateway_busy(runtime::Shard& shard, Conn& conn, bool& wait) {
  wait = false;
  if (conn.tls.dialled_gateway.empty() || conn.tls.stepped || conn.tls.step != nullptr) return false;
  const Opening first = opening(conn.tls.pending, proto::kParentDialBusy);
  wait = first == Opening::partial;
  if (first != Opening::whole) return false;
  GH_INVARIANT(dialler_ != nullptr);
  dialler_->on_gateway_busy(shard, conn.id);
  conn.stage = Stage::closing;
  shard.abort(conn.id);
  return true;
}

void TlsServer::timed_out(runtime::Shard& shard, Conn& conn) {
  log::emit(log::Level::warning, log::EventId::handshake_timeout, "handshake not completed in time; closed",
            {{"peer", peer_text(shard, conn)}, {"timeout_ms", limits_.live.handshake_timeout_ms()}});
  conn.stage = Stage::closing;
  shard.abort(conn.id);
}

void TlsServer::on_connect_failed(runtime::Shard& shard, uint64_t context, int error) {
  if (connected_ != nullptr) connected_->on_connect_failed(shard, context, error);
}

// False when the connection is refused or the header is not complete yet.
bool TlsServer::read_proxy_header(runtime::Shard& shard, Conn& conn) {
  ProxyHeader header;
  std::string why;
  switch (parse_proxy_header(conn.tls.pending, header, why)) {
    case ProxyParse::need_more:
      return false;
    case ProxyParse::invalid:
      log::emit(log::Level::warning, log::EventId::protocol_violation, "refused a trusted relay's connection: " + why,
                {{"peer", shard.peer(conn.id).to_string()}});
      conn.stage = Stage::closing;
      shard.abort(conn.id);
      return false;
    case ProxyParse::done:
      break;
  }
  conn.tls.awaiting_proxy = false;
  if (!header.local) conn.tls.relayed_peer = header.source;
  conn.tls.relayed_identity = header.verified_client_name;
  conn.tls.pending.erase(conn.tls.pending.begin(), conn.tls.pending.begin() + header.size_bytes);
  return true;
}

std::string TlsServer::peer_text(const runtime::Shard& shard, const Conn& conn) {
  const std::string peer = shard.peer(conn.id).to_string();
  if (!conn.tls.relayed_peer) return peer;
  return conn.tls.relayed_peer->to_string() + " via " + peer;
}

void TlsServer::on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) {
  Conn* found = find(id);
  if (found == nullptr) {
    if (connected_ != nullptr) connected_->on_data(shard, id, bytes);
    return;
  }
  Conn& conn = *found;
  if (conn.stage == Stage::closing) return;
  if (conn.tls.established) {
    open_records(shard, conn, bytes);
    return;
  }
  conn.tls.pending.insert(conn.tls.pending.end(), bytes.begin(), bytes.end());
  if (conn.tls.awaiting_proxy && !read_proxy_header(shard, conn)) return;
  bool wait = false;
  if (parent_dialled_in(shard, conn, wait) || wait) return;
  if (dialled_gateway_busy(shard, conn, wait) || wait) return;
  if (conn.tls.step == nullptr && !conn.tls.pending.empty()) submit_step(shard, conn);
}

void TlsServer::submit_step(runtime::Shard& shard, Conn& conn) {
  auto* step = new HandshakeStep{conn.id, conn.tls.session.get(), std::move(conn.tls.pending), {}, {}, {}, {}};
  conn.tls.pending.clear();
  conn.tls.clock.pause(shard.now_ms());
  const runtime::JobClass job_class = conn.tls.stepped ? runtime::JobClass::continuation : runtime::JobClass::fresh;
  conn.tls.stepped = true;
  if (!runtime::hand_off(pool_, job_class, shard, *this, HandshakeStep::run, step)) {
    delete step;
    log::emit(log::Level::warning, log::EventId::handshake_queue_full,
              "handshake refused: the auth queue is full (raise [runtime] auth_threads, or the clients back off)",
              {{"peer", peer_text(shard, conn)}});
    shard.abort(conn.id);
    return;
  }
  conn.tls.step = step;
  ++steps_out_;
}

void TlsServer::on_message(runtime::Shard& shard, uint64_t, void* step) {
  finish_step(shard, static_cast<HandshakeStep*>(step));
}

void TlsServer::on_send_space(runtime::Shard& shard, runtime::ConnId id) {
  Conn* conn = find(id);
  if (conn == nullptr) {
    if (connected_ != nullptr) connected_->on_send_space(shard, id);
    return;
  }
  if (conn->tls.established && flush_ciphertext(shard, *conn)) handler_.on_send_space(*this, shard, *conn);
}

const tls::Session* TlsServer::session(const Conn& conn) {
  return conn.tls.established ? conn.tls.session.get() : nullptr;
}

void TlsServer::finish_step(runtime::Shard& shard, HandshakeStep* step) {
  std::unique_ptr<HandshakeStep> owned(step);
  --steps_out_;
  if (step->orphan != nullptr) return;  // the connection closed while the step ran
  Conn& conn = conns_[step->id.index];
  GH_INVARIANT(conn.id == step->id && conn.tls.step == step);  // a closing record orphans its step
  conn.tls.step = nullptr;
  if (!step->output.empty() && !shard.send(conn.id, step->output)) {
    shard.abort(conn.id);
    return;
  }
  switch (step->state) {
    case tls::HandshakeState::established: {
      admin::shard_add(shard.index(), admin::ShardMetric::handshakes_ok);
      if (conn.tls.session->resumed()) admin::shard_add(shard.index(), admin::ShardMetric::handshakes_resumed);
      conn.tls.established = true;
      conn.tls.shard = &shard;  // no step runs on the pool any more: the shard's thread alone writes
      conn.tls.session->set_sink(send_to_socket, &conn);
      conn.tls.peer_serial = conn.tls.relayed_identity.empty() ? step->peer.serial : "";
      conn.stage = Stage::hello;
      shard.clear_deadline(conn.id);
      // Through a trusted relay that verified the client's certificate, the
      // client is who the relay says; the relay's own certificate is not it.
      // The relay's header names the client but not its EKUs: it speaks for agents only.
      handler_.on_established(*this, shard, conn,
                              conn.tls.relayed_identity.empty() ? step->peer
                                                                : tls::PeerIdentity{conn.tls.relayed_identity, false, {}});
      // Records may have come with the client's Finished (already inside the
      // session) or while the step ran (pending): open both now.
      std::vector<std::byte> early = std::move(conn.tls.pending);
      conn.tls.pending.clear();
      if (shard.alive(conn.id) && conn.stage != Stage::closing) open_records(shard, conn, early);
      break;
    }
    case tls::HandshakeState::failed:
      admin::shard_add(shard.index(), admin::ShardMetric::handshakes_failed);
      conn.stage = Stage::closing;
      log::emit(log::Level::error, log::EventId::mutual_auth_failed, "TLS mutual authentication failed",
                {{"peer", peer_text(shard, conn)}, {"reason", conn.tls.session->failure()}});
      shard.close(conn.id);  // after the alert is sent
      break;
    case tls::HandshakeState::in_progress: {
      // The client's turn: what is left of its time, not a new allowance.
      const uint32_t left_ms = conn.tls.clock.resume(shard.now_ms());
      if (left_ms == 0) {
        timed_out(shard, conn);
      } else if (!conn.tls.pending.empty()) {
        submit_step(shard, conn);
      } else {
        shard.set_deadline(conn.id, left_ms);
      }
      break;
    }
  }
}

void TlsServer::open_records(runtime::Shard& shard, Conn& conn, std::span<const std::byte> ciphertext) {
  const tls::Session::Lent lent(*conn.tls.session, ciphertext);  // read in place; a partial record's tail is kept
  for (;;) {
    const int64_t n = conn.tls.session->read(plaintext_);
    if (n == 0) break;
    if (n < 0) {
      flush_ciphertext(shard, conn);  // a close_notify or alert answer, if any
      shard.close(conn.id);
      return;
    }
    handler_.on_plaintext(*this, shard, conn, std::span(plaintext_).first(static_cast<size_t>(n)));
    if (!shard.alive(conn.id) || conn.stage == Stage::closing) return;
  }
  flush_ciphertext(shard, conn);  // post-handshake messages (tickets, key updates)
}

// Ciphertext to the socket as far as its send queue takes it; the rest waits
// in the session for on_send_space.
bool TlsServer::flush_ciphertext(runtime::Shard& shard, Conn& conn) {
  return net::flush_ciphertext(shard, conn.id, *conn.tls.session);
}

bool TlsServer::send(runtime::Shard& shard, Conn& conn, std::span<const std::byte> plaintext) {
  if (!conn.tls.established) return false;
  if (conn.tls.outgoing.empty()) to_seal_.push_back(conn.id);
  conn.tls.outgoing.insert(conn.tls.outgoing.end(), plaintext.begin(), plaintext.end());
  if (conn.tls.outgoing.size() >= kSealAtBytes) seal(shard, conn);
  return true;
}

void TlsServer::seal(runtime::Shard& shard, Conn& conn) {
  if (conn.tls.outgoing.empty()) return;
  const bool written = conn.tls.session->write(conn.tls.outgoing);
  // A turn's small plaintext (ACKs, a HELLO_OK) is not kept in every idle
  // session; a busy link's big buffer is.
  if (conn.tls.outgoing.capacity() <= kOutgoingKeepBytes) {
    std::vector<std::byte>().swap(conn.tls.outgoing);
  } else {
    conn.tls.outgoing.clear();
  }
  if (written) flush_ciphertext(shard, conn);
}

void TlsServer::close(runtime::Shard& shard, Conn& conn) {
  if (conn.tls.established) seal(shard, conn);
  conn.stage = Stage::closing;  // nothing more is read from it
  shard.close(conn.id);
}

// A reload brought a new CRL: sessions whose certificate it revokes end now
// (their handshake was checked against the old one).
void TlsServer::close_revoked(runtime::Shard& shard) {
  const std::shared_ptr<const tls::Context> context = context_.current();
  for_each([&](Conn& conn) {
    if (conn.stage == Stage::closing || !context->revokes(conn.tls.peer_serial)) return;
    log::emit(log::Level::error, log::EventId::mutual_auth_failed,
              "the reloaded CRL revokes this peer's certificate: its session is closed",
              {{"peer", peer_text(shard, conn)}, {"name", conn.gate.certificate_identity}});
    close(shard, conn);
  });
}

void TlsServer::on_turn_end(runtime::Shard& shard) {
  if (const uint64_t generation = context_.generation(); generation != context_generation_) {
    context_generation_ = generation;
    close_revoked(shard);
  }
  handler_.on_turn_end(*this, shard);  // the handler's own batches may add to ours
  if (connected_ != nullptr) connected_->on_turn_end(shard);
  for (const runtime::ConnId id : to_seal_) {
    if (Conn* conn = find(id); conn != nullptr && conn->tls.established) seal(shard, *conn);
  }
  to_seal_.clear();
}

void TlsServer::on_close(runtime::Shard& shard, runtime::ConnId id, int error) {
  Conn* found = find(id);
  if (found == nullptr) {
    if (connected_ != nullptr) connected_->on_close(shard, id, error);
    return;
  }
  Conn& conn = *found;
  if (conn.tls.established) handler_.on_closed(*this, shard, conn);
  if (conn.tls.step != nullptr) {
    conn.tls.step->orphan = std::move(conn.tls.session);  // freed when the step returns
  }
  conn = Conn{};
}

void TlsServer::on_deadline(runtime::Shard& shard, runtime::ConnId id) {
  Conn* found = find(id);
  if (found == nullptr) {
    if (connected_ != nullptr) connected_->on_deadline(shard, id);
    return;
  }
  Conn& conn = *found;
  if (conn.tls.established) {
    handler_.on_deadline(*this, shard, conn);
    return;
  }
  if (conn.tls.step != nullptr) {
    // Our auth queue holds this handshake (a reconnect storm): not the
    // client's time; its clock is paused, look again later.
    shard.set_deadline(id, limits_.live.handshake_timeout_ms());
    return;
  }
  timed_out(shard, conn);
}

void TlsServer::on_stop(runtime::Shard& shard) {
  handler_.on_stop(*this, shard);
  if (connected_ != nullptr) connected_->on_stop(shard);
  // Established sessions: what the handler queued (its GOAWAY) is sealed and sent first.
  for_each([&](Conn& conn) {
    if (conn.tls.established && conn.stage != Stage::closing) {
      close(shard, conn);
    } else {
      shard.close(conn.id);
    }
  });
}

}  // namespace gatehouse::net
