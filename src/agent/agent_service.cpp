#include "gatehouse/agent/agent_service.h"

#include <cstring>

#include "gatehouse/log/log.h"
#include "gatehouse/net/ciphertext.h"
#include "gatehouse/runtime/runtime.h"

namespace gatehouse::agent {
namespace {

constexpr uint32_t kDataFrameFixedBytes = proto::kFrameHeaderBytes + 10;

}  // namespace

AgentService::AgentService(const AgentOptions& options, DiskQueue& queue, AgentCounters& counters)
    : options_(options), queue_(queue), counters_(counters),
      failover_(options.gateways.size(), options.backoff_initial_ms, options.backoff_max_ms) {}

AgentService::~AgentService() = default;

void AgentService::on_message(runtime::Shard& shard, uint64_t value, void*) {
  shard_ = &shard;
  if (!connected_ && session_ == nullptr && !stopping_ && value == kStart) connect(shard);
  pump(shard);
}

void AgentService::connect(runtime::Shard& shard) {
  runtime::PeerAddress address;
  std::string why;
  if (!options_.addresses->lookup(failover_.current(), address, why) || !shard.connect(address, 1)) {
    if (why.empty()) why = "too many connects in flight";
    log::emit(log::Level::warning, log::EventId::parent_connect_failed, "cannot connect to the gateway: " + why,
              {{"gateway", gateway().name}, {"address", gateway().address.text}});
    next_gateway(shard);
  }
}

// The current gateway failed: the next one now, or after a backoff once the
// whole list has failed.
void AgentService::next_gateway(runtime::Shard& shard) {
  if (stopping_) return;
  const uint32_t delay_ms = failover_.failed();
  if (delay_ms == 0) {
    connect(shard);
    return;
  }
  log::emit(log::Level::error, log::EventId::no_parent_available,
            "no gateway in the list is reachable; events wait in the queue",
            {{"gateways", static_cast<uint64_t>(options_.gateways.size())}, {"retry_ms", delay_ms},
             {"queued", queue_.queued_events()}});
  shard.set_timer(reconnect_, delay_ms);
}

void AgentService::on_timer(runtime::Shard& shard, runtime::Timer& timer) {
  if (&timer == &reconnect_ && session_ == nullptr && !stopping_) connect(shard);
  if (&timer == &heartbeat_ && session_ != nullptr && session_->welcomed()) {
    session_->send({0, proto::Ping{shard.now_ms()}});
    flush(shard);
    shard.set_timer(heartbeat_, heartbeat_interval_s_ * 1'000u);
  }
}

void AgentService::on_connect_failed(runtime::Shard& shard, uint64_t, int error) {
  log::emit(log::Level::warning, log::EventId::parent_connect_failed, "cannot connect to the gateway",
            {{"gateway", gateway().name}, {"address", gateway().address.text}, {"error", std::strerror(-error)}});
  options_.addresses->refresh_soon(failover_.current());  // it may have moved
  next_gateway(shard);
}

void AgentService::on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t) {
  shard_ = &shard;
  conn_ = id;
  connected_ = true;
  net::ChildOptions child = options_.child;
  child.parent_name = gateway().name;
  session_ = std::make_unique<net::ChildSession>(child, spill_pool_);
  unsent_.clear();
  session_->start();
  flush(shard);
  shard.set_deadline(id, options_.welcome_timeout_ms);
}

void AgentService::on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) {
  if (id != conn_ || session_ == nullptr) return;
  session_->receive(bytes, *this);
  if (session_ == nullptr || !shard.alive(id)) return;
  flush(shard);
  pump(shard);
}

void AgentService::on_welcome(const proto::HelloOk& hello_ok) {
  runtime::Shard& shard = *shard_;
  shard.clear_deadline(conn_);
  failover_.succeeded();
  window_bytes_ = hello_ok.credit_bytes;
  heartbeat_interval_s_ = hello_ok.heartbeat_interval_s;
  queue_.acknowledge(hello_ok.last_durable_seq);
  sent_through_ = std::max(hello_ok.last_durable_seq, queue_.acked_seq());
  counters_.acked_seq = sent_through_;
  counters_.sessions.fetch_add(1);
  counters_.connected = true;
  log::emit(log::Level::info, log::EventId::parent_connected, "connected; resending from the server's durable seq",
            {{"gateway", gateway().name}, {"parent", hello_ok.name}, {"last_durable_seq", hello_ok.last_durable_seq},
             {"queued", queue_.queued_events()}});
  shard.set_timer(heartbeat_, heartbeat_interval_s_ * 1'000u);
}

void AgentService::on_frame(const proto::Frame& frame) {
  runtime::Shard& shard = *shard_;
  if (const auto* ack = std::get_if<proto::Ack>(&frame.body)) {
    queue_.acknowledge(ack->durable_seq);
    counters_.acked_seq = queue_.acked_seq();
  } else if (const auto* credit = std::get_if<proto::Credit>(&frame.body)) {
    window_bytes_ += credit->credit_bytes;
  } else if (const auto* ping = std::get_if<proto::Ping>(&frame.body)) {
    session_->send({0, proto::Pong{ping->nonce}});
  } else if (std::holds_alternative<proto::GoAway>(frame.body) || std::holds_alternative<proto::Close>(frame.body)) {
    shard.close(conn_);  // the parent is leaving: reconnect (elsewhere if it is gone)
  }
}

void AgentService::on_failure(const net::ChildFailure& failure) {
  const bool not_approved = failure.reason == proto::Reason::not_approved;
  log::emit(log::Level::error, failure.event, failure.why,
            {{"gateway", gateway().name}, {"address", gateway().address.text}, {"reason", proto::to_string(failure.reason)}});
  if (not_approved) failover_.end_round();  // wait a backoff: approval takes a human
  shard_->abort(conn_);
}

void AgentService::on_close(runtime::Shard& shard, runtime::ConnId id, int) {
  if (id != conn_) return;
  const bool was_welcomed = session_ != nullptr && session_->welcomed();
  session_.reset();
  connected_ = false;
  counters_.connected = false;
  shard.cancel_timer(heartbeat_);
  if (stopping_) return;
  if (was_welcomed) {
    log::emit(log::Level::warning, log::EventId::parent_connect_failed, "lost the session; reconnecting",
              {{"gateway", gateway().name}, {"queued", queue_.queued_events()}});
    shard.set_timer(reconnect_, failover_.jitter_ms(options_.retry_after_loss_ms));
    return;
  }
  next_gateway(shard);
}

void AgentService::on_deadline(runtime::Shard& shard, runtime::ConnId id) {
  if (id != conn_ || session_ == nullptr || session_->welcomed()) return;
  log::emit(log::Level::warning, log::EventId::parent_connect_failed, "the gateway did not welcome us in time",
            {{"gateway", gateway().name}, {"timeout_ms", options_.welcome_timeout_ms}});
  shard.abort(id);
}

void AgentService::on_send_space(runtime::Shard& shard, runtime::ConnId id) {
  if (id != conn_) return;
  flush(shard);
  pump(shard);
}

// Moves ciphertext to the connection; what does not fit waits in unsent_.
void AgentService::flush(runtime::Shard& shard) {
  if (session_ != nullptr) net::flush_ciphertext(shard, conn_, *session_, unsent_);
}

// Sends queued events after sent_through_ while the window allows.
void AgentService::pump(runtime::Shard& shard) {
  if (session_ == nullptr || !session_->welcomed()) return;
  QueuedEvent event;
  while (unsent_.empty() && queue_.next_after(sent_through_, event)) {
    const uint64_t frame_bytes = kDataFrameFixedBytes + event.payload.size();
    if (frame_bytes > window_bytes_) break;
    session_->send({0, proto::Data{event.seq, proto::DataKind::event, std::as_bytes(std::span(event.payload))}});
    window_bytes_ -= frame_bytes;
    sent_through_ = event.seq;
    counters_.sent.fetch_add(1, std::memory_order_relaxed);
    if (session_->pending_ciphertext_bytes() >= runtime::kSendChunkBytes) flush(shard);
  }
  flush(shard);
}

void AgentService::on_stop(runtime::Shard& shard) {
  stopping_ = true;
  shard.cancel_timer(reconnect_);
  shard.cancel_timer(heartbeat_);
  if (connected_) shard.close(conn_);
}

}  // namespace gatehouse::agent
