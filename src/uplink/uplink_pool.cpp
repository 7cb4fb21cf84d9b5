#include "gatehouse/uplink/uplink_pool.h"

#include <cstring>

#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"
#include "gatehouse/net/ciphertext.h"
#include "gatehouse/runtime/runtime.h"

namespace gatehouse::uplink {

struct UplinkPool::Uplink final : net::ChildSession::Handler, runtime::TimerHandler {
  UplinkPool* pool = nullptr;
  runtime::Timer reconnect{*this};  // backoff, and the short retry after a loss
  runtime::Shard* shard = nullptr;
  uint32_t index = 0;
  runtime::ConnId conn{};
  bool connected = false;
  std::unique_ptr<net::ChildSession> session;
  std::unique_ptr<net::Failover> failover;  // which parent, and the backoff
  std::vector<std::byte> batch;   // encoded frames of this turn
  std::vector<std::byte> unsent;  // ciphertext the send queue had no room for
  bool congested = false;

  bool welcomed() const { return session != nullptr && session->welcomed(); }
  const config::Peer& peer() const { return pool->options_.parents[failover->current()]; }

  void on_welcome(const proto::HelloOk& hello_ok) override {
    shard->clear_deadline(conn);
    failover->succeeded();
    log::emit(log::Level::info, log::EventId::parent_connected, "uplink up",
              {{"uplink", index}, {"shard", shard->index()}, {"parent", hello_ok.name}, {"address", peer().address.text}});
  }
  void on_frame(const proto::Frame& frame) override {
    if (const auto* ping = std::get_if<proto::Ping>(&frame.body); ping != nullptr && frame.channel == 0) {
      pool->queue(index, {0, proto::Pong{ping->nonce}});
      return;
    }
    if (std::holds_alternative<proto::GoAway>(frame.body) && frame.channel == 0) {
      shard->close(conn);  // the parent is leaving: reconnect, elsewhere if it is gone
      return;
    }
    pool->events_.on_uplink_frame(*shard, index, frame);
  }
  void on_timer(runtime::Shard& timer_shard, runtime::Timer&) override {
    if (!connected) pool->connect(timer_shard, *this);
  }
  void on_failure(const net::ChildFailure& failure) override {
    const bool not_approved = failure.reason == proto::Reason::not_approved;
    log::emit(log::Level::error, not_approved ? log::EventId::gateway_not_approved : failure.event,
              not_approved ? "the parent refused this gateway: not approved (on the server: gatehouse approve gateway " +
                                 pool->options_.child.name + " --action create)"
                           : failure.why,
              {{"uplink", index}, {"parent", peer().name}, {"address", peer().address.text},
               {"reason", proto::to_string(failure.reason)}});
    shard->abort(conn);
  }
};

UplinkPool::UplinkPool(const UplinkOptions& options, UplinkEvents& events)
    : options_(options), events_(events) {
  for (uint32_t i = 0; i < options.uplinks; ++i) {
    auto uplink = std::make_unique<Uplink>();
    uplink->pool = this;
    uplink->index = i;
    uplink->failover = std::make_unique<net::Failover>(options.parents.size(), options.backoff_initial_ms,
                                                       options.backoff_max_ms);
    uplinks_.push_back(std::move(uplink));
  }
}

UplinkPool::~UplinkPool() = default;

UplinkPool::Uplink* UplinkPool::by_conn(runtime::ConnId id) {
  for (auto& uplink : uplinks_) {
    if (uplink->connected && uplink->conn == id) return uplink.get();
  }
  return nullptr;
}

int UplinkPool::pick() {
  int fallback = -1;
  for (size_t tried = 0; tried < uplinks_.size(); ++tried) {
    const uint32_t i = next_pick_++ % static_cast<uint32_t>(uplinks_.size());
    if (!uplinks_[i]->welcomed()) continue;
    if (!uplinks_[i]->congested) return static_cast<int>(i);
    fallback = static_cast<int>(i);
  }
  return fallback;
}

bool UplinkPool::up(uint32_t uplink) const { return uplinks_[uplink]->welcomed(); }

uint64_t UplinkPool::waiting_bytes(uint32_t index) const {
  const Uplink& uplink = *uplinks_[index];
  return uplink.batch.size() + uplink.unsent.size() + (uplink.session ? uplink.session->pending_ciphertext_bytes() : 0);
}

bool UplinkPool::queue(uint32_t index, const proto::Frame& frame) {
  Uplink& uplink = *uplinks_[index];
  if (!uplink.welcomed()) return false;
  const uint32_t size = proto::encoded_size_bytes(frame);
  if (size == 0) return false;
  const size_t start = uplink.batch.size();
  uplink.batch.resize(start + size);
  return proto::encode(frame, std::span(uplink.batch).subspan(start)).error == proto::ProtoError::none;
}

bool UplinkPool::queue_data(uint32_t index, uint32_t channel, const proto::Data& data) {
  Uplink& uplink = *uplinks_[index];
  if (!uplink.welcomed()) return false;
  const size_t start = uplink.batch.size();
  const auto payload_bytes = static_cast<uint32_t>(data.payload.size());
  uplink.batch.resize(start + proto::kDataPrefixBytes + payload_bytes);
  std::byte* out = uplink.batch.data() + start;
  const proto::EncodeResult prefix =
      proto::encode_data_prefix(channel, data.seq, data.kind, payload_bytes, std::span(out, proto::kDataPrefixBytes));
  // The decoder checked this DATA against the same bounds.
  GH_INVARIANT(prefix.error == proto::ProtoError::none);
  if (payload_bytes > 0) std::memcpy(out + proto::kDataPrefixBytes, data.payload.data(), payload_bytes);
  return true;
}

void UplinkPool::on_message(runtime::Shard& shard, uint64_t, void*) {
  for (auto& uplink : uplinks_) {
    uplink->shard = &shard;
    connect(shard, *uplink);
  }
}

void UplinkPool::connect(runtime::Shard& shard, Uplink& uplink) {
  if (stopping_) return;
  runtime::PeerAddress address;
  std::string why;
  if (!options_.addresses->lookup(uplink.failover->current(), address, why) ||
      !shard.connect(address, runtime::ServicePair::kConnectedContextBase + uplink.index)) {
    if (why.empty()) why = "too many connects in flight";
    log::emit(log::Level::warning, log::EventId::parent_connect_failed, "cannot connect to the parent: " + why,
              {{"uplink", uplink.index}, {"parent", uplink.peer().name}, {"address", uplink.peer().address.text}});
    next_parent(shard, uplink);
  }
}

// The current parent failed: the next one now, or after a backoff once the
// whole list has failed.
void UplinkPool::next_parent(runtime::Shard& shard, Uplink& uplink) {
  if (stopping_) return;
  const uint32_t delay_ms = uplink.failover->failed();
  if (delay_ms == 0) {
    connect(shard, uplink);
    return;
  }
  log::emit(log::Level::error, log::EventId::no_parent_available,
            "no parent in the list is reachable; agents on this uplink wait in their queues",
            {{"uplink", uplink.index}, {"shard", shard.index()}, {"retry_ms", delay_ms}});
  shard.set_timer(uplink.reconnect, delay_ms);
}

void UplinkPool::on_connect_failed(runtime::Shard& shard, uint64_t context, int error) {
  Uplink& uplink = *uplinks_[context - runtime::ServicePair::kConnectedContextBase];
  log::emit(log::Level::warning, log::EventId::parent_connect_failed, "cannot connect to the parent",
            {{"uplink", uplink.index}, {"parent", uplink.peer().name}, {"address", uplink.peer().address.text},
             {"error", std::strerror(-error)}});
  options_.addresses->refresh_soon(uplink.failover->current());  // it may have moved
  next_parent(shard, uplink);
}

void UplinkPool::on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) {
  Uplink& uplink = *uplinks_[context - runtime::ServicePair::kConnectedContextBase];
  uplink.shard = &shard;
  uplink.conn = id;
  uplink.connected = true;
  uplink.batch.clear();
  uplink.unsent.clear();
  uplink.congested = false;
  net::ChildOptions child = options_.child;
  child.parent_name = uplink.peer().name;
  uplink.session = std::make_unique<net::ChildSession>(child, spill_pool_);
  uplink.session->start();
  flush(shard, uplink);
  shard.set_deadline(id, options_.welcome_timeout_ms);
}

void UplinkPool::on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) {
  Uplink* uplink = by_conn(id);
  if (uplink == nullptr || uplink->session == nullptr) return;
  uplink->session->receive(bytes, *uplink);
  if (shard.alive(id)) flush(shard, *uplink);
}

void UplinkPool::on_deadline(runtime::Shard& shard, runtime::ConnId id) {
  Uplink* uplink = by_conn(id);
  if (uplink == nullptr || uplink->welcomed()) return;
  log::emit(log::Level::warning, log::EventId::parent_connect_failed, "the parent did not welcome us in time",
            {{"uplink", uplink->index}, {"parent", uplink->peer().name}});
  shard.abort(id);
}

void UplinkPool::on_close(runtime::Shard& shard, runtime::ConnId id, int) {
  Uplink* uplink = by_conn(id);
  if (uplink == nullptr) return;
  const bool was_up = uplink->welcomed();
  uplink->connected = false;
  uplink->session.reset();
  uplink->batch.clear();
  uplink->unsent.clear();
  uplink->congested = false;
  if (was_up) {
    log::emit(log::Level::warning, log::EventId::parent_connect_failed, "uplink lost; reconnecting",
              {{"uplink", uplink->index}, {"parent", uplink->peer().name}});
    events_.on_uplink_down(shard, uplink->index);
    if (!stopping_) shard.set_timer(uplink->reconnect, uplink->failover->jitter_ms(options_.retry_after_loss_ms));
    return;
  }
  next_parent(shard, *uplink);
}

void UplinkPool::on_send_space(runtime::Shard& shard, runtime::ConnId id) {
  if (Uplink* uplink = by_conn(id)) flush(shard, *uplink);
}

// The turn's frames go up in one TLS write: records of up to 16 KiB.
void UplinkPool::on_turn_end(runtime::Shard& shard) {
  for (auto& uplink : uplinks_) {
    if (uplink->batch.empty() || !uplink->welcomed()) continue;
    uplink->session->send_encoded(uplink->batch);
    uplink->batch.clear();
    flush(shard, *uplink);
  }
}

// Ciphertext to the socket as far as the send queue takes it; congestion
// state follows what is left waiting.
void UplinkPool::flush(runtime::Shard& shard, Uplink& uplink) {
  if (uplink.session == nullptr) return;
  net::flush_ciphertext(shard, uplink.conn, *uplink.session, uplink.unsent);
  const uint64_t waiting = waiting_bytes(uplink.index);
  if (!uplink.congested && waiting > options_.congested_above_bytes) {
    uplink.congested = true;
    events_.on_uplink_congested(shard, uplink.index, true);
  } else if (uplink.congested && waiting < options_.drained_below_bytes) {
    uplink.congested = false;
    events_.on_uplink_congested(shard, uplink.index, false);
  }
}

void UplinkPool::on_stop(runtime::Shard& shard) {
  stopping_ = true;
  for (auto& uplink : uplinks_) {
    shard.cancel_timer(uplink->reconnect);
    if (uplink->connected) shard.close(uplink->conn);
  }
}

}  // namespace gatehouse::uplink
