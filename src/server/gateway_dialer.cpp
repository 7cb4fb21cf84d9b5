#include "gatehouse/server/gateway_dialer.h"

#include <algorithm>

#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"
#include "gatehouse/proto/frame_types.h"

namespace gatehouse::server {

GatewayDialer::GatewayDialer(const std::vector<config::Peer>& gateways, std::shared_ptr<net::AddressBook> addresses,
                             uint32_t shard, uint32_t shards, DialerOptions options)
    : gateways_(gateways), addresses_(std::move(addresses)), options_(options) {
  uint32_t k = 0;  // every gateway's connections, numbered across the shards
  for (uint32_t gateway = 0; gateway < gateways_.size(); ++gateway) {
    for (uint32_t connection = 0; connection < gateways_[gateway].connections; ++connection, ++k) {
      if (k % shards == shard) slots_.push_back({gateway, {}, false, false, 0, 0, options_.backoff_initial_ms});
    }
  }
}

void GatewayDialer::on_message(runtime::Shard& shard, uint64_t, void*) {
  if (!slots_.empty() && !tick_.armed()) on_timer(shard, tick_);
}

void GatewayDialer::on_timer(runtime::Shard& shard, runtime::Timer&) {
  if (stopping_) return;
  const uint64_t now = shard.now_ms();
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = slots_[i];
    if (slot.handed && !shard.alive(slot.id)) ended(shard, slot);  // closed by either side, or never welcomed
    if (!slot.handed && !slot.connecting && now >= slot.due_ms) dial(shard, i);
  }
  shard.set_timer(tick_, options_.tick_ms);
}

void GatewayDialer::ended(runtime::Shard& shard, Slot& slot) {
  const uint64_t now = shard.now_ms();
  slot.handed = false;
  slot.busy_in_a_row = 0;
  if (now - slot.handed_at_ms >= options_.stable_after_ms) slot.backoff_ms = options_.backoff_initial_ms;
  back_off(now, slot);
}

void GatewayDialer::back_off(uint64_t now_ms, Slot& slot) {
  slot.due_ms = now_ms + slot.backoff_ms;
  slot.backoff_ms = std::min(slot.backoff_ms * 2, options_.backoff_max_ms);
}

void GatewayDialer::dial(runtime::Shard& shard, uint32_t index) {
  Slot& slot = slots_[index];
  const config::Peer& gateway = gateways_[slot.gateway];
  runtime::PeerAddress address;
  std::string why;
  if (!shard.can_connect()) return;  // the shard's bound on connects in flight: next tick
  if (!addresses_->lookup(slot.gateway, address, why) ||
      !shard.connect(address, net::TlsServer::kConnectedContextBase + index)) {
    if (why.empty()) why = "no socket (the process's file limit?)";
    log::emit(log::Level::warning, log::EventId::gateway_dial_failed, "cannot dial gateway " + gateway.name + ": " + why,
              {{"gateway", gateway.name}, {"address", gateway.address.text}});
    failed(shard, slot);
    return;
  }
  slot.connecting = true;
}

void GatewayDialer::failed(runtime::Shard& shard, Slot& slot) {
  slot.connecting = false;
  slot.busy_in_a_row = 0;
  back_off(shard.now_ms(), slot);
}

void GatewayDialer::on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) {
  const uint64_t index = context - net::TlsServer::kConnectedContextBase;
  GH_INVARIANT(index < slots_.size() && tls_ != nullptr);
  Slot& slot = slots_[index];
  slot.connecting = false;
  if (stopping_) {
    shard.abort(id);
    return;
  }
  const std::string_view preamble = proto::kParentDialPreamble;
  if (!shard.send(id, std::as_bytes(std::span(preamble)))) {
    shard.abort(id);
    failed(shard, slot);
    return;
  }
  const config::Peer& gateway = gateways_[slot.gateway];
  // Redials after a busy answer are routine, a few a second: not at info.
  log::emit(slot.busy_in_a_row == 0 ? log::Level::info : log::Level::debug, log::EventId::gateway_dialled,
            "dialled gateway " + gateway.name + " (management-server-initiated); TLS and HELLO follow",
            {{"gateway", gateway.name}, {"address", gateway.address.text}});
  tls_->adopt_dialled(shard, id, gateway.name, *this);
  slot.id = id;
  slot.handed = true;
  slot.handed_at_ms = shard.now_ms();
}

void GatewayDialer::on_connect_failed(runtime::Shard& shard, uint64_t context, int error) {
  const uint64_t index = context - net::TlsServer::kConnectedContextBase;
  GH_INVARIANT(index < slots_.size());
  Slot& slot = slots_[index];
  const config::Peer& gateway = gateways_[slot.gateway];
  log::emit(log::Level::warning, log::EventId::gateway_dial_failed,
            "cannot connect to gateway " + gateway.name + ": " + runtime::connect_error_text(error) + "; dialling again in " +
                std::to_string(slot.backoff_ms) + " ms",
            {{"gateway", gateway.name}, {"address", gateway.address.text}});
  addresses_->refresh_soon(slot.gateway);  // it may have moved
  failed(shard, slot);
}

// The TLS layer closes the connection; the slot is free from here.
void GatewayDialer::on_gateway_busy(runtime::Shard& shard, runtime::ConnId id) {
  const auto slot = std::find_if(slots_.begin(), slots_.end(), [id](const Slot& s) { return s.handed && s.id == id; });
  GH_INVARIANT(slot != slots_.end());
  slot->handed = false;
  if (++slot->busy_in_a_row < options_.busy_redials_max) {
    slot->due_ms = shard.now_ms();  // another shard of the gateway may have a free uplink: the next tick dials
    return;
  }
  if (slot->busy_in_a_row == options_.busy_redials_max) {
    const config::Peer& gateway = gateways_[slot->gateway];
    log::emit(log::Level::warning, log::EventId::gateway_dial_failed,
              "gateway " + gateway.name + " answered busy to " + std::to_string(slot->busy_in_a_row) +
                  " dials in a row: every uplink of its shards has a session (are its [[gateways]] connections, " +
                  std::to_string(gateway.connections) +
                  ", more than its shards x [uplink] connections_per_shard?); dialling again with backoff",
              {{"gateway", gateway.name}, {"address", gateway.address.text}});
  }
  back_off(shard.now_ms(), *slot);
}

void GatewayDialer::on_stop(runtime::Shard& shard) {
  stopping_ = true;
  shard.cancel_timer(tick_);
}

}  // namespace gatehouse::server
