// Management-server-initiated connections (SCOM's
// /ManagementServerInitiatesConnection): nothing in the DMZ may dial into the
// trusted side, so the server dials its gateways ([[gateways]] in its
// config). Each connection opens with proto::kParentDialPreamble; then the
// gateway is the TLS client and sends HELLO as on a connection it dialled,
// and the server runs it through its listener stack like an accepted one:
// the same TLS roles, approval, tiers and liveness. Each shard keeps its share
// of every gateway's `connections` and dials again, with backoff, when one ends.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gatehouse/config/config_types.h"
#include "gatehouse/net/address_book.h"
#include "gatehouse/net/tls_server.h"
#include "gatehouse/runtime/shard.h"

namespace gatehouse::server {

struct DialerOptions {
  uint32_t backoff_initial_ms = 200;
  uint32_t backoff_max_ms = 30'000;
  uint32_t tick_ms = 250;             // how often closed connections are noticed and due ones dialled
  uint32_t stable_after_ms = 10'000;  // a connection that lived this long resets its backoff
  // A gateway shard with no free uplink answers busy; the kernel puts the next
  // dial on any of its shards, so it follows at the next tick, this many times
  // in a row before the backoff applies (then the count is more than the
  // gateway's uplinks: warned once, 30055).
  uint32_t busy_redials_max = 32;
};

class GatewayDialer final : public runtime::Service,
                            public runtime::Mailbox,
                            public net::DiallingParent,
                            private runtime::TimerHandler {
 public:
  // This shard's share (slot k of every gateway's connections when k % shards == shard).
  GatewayDialer(const std::vector<config::Peer>& gateways, std::shared_ptr<net::AddressBook> addresses,
                uint32_t shard, uint32_t shards, DialerOptions options);
  void attach(net::TlsServer& tls) { tls_ = &tls; }
  // Post it a message (any value) on its shard to start dialling.
  void on_message(runtime::Shard& shard, uint64_t value, void* pointer) override;

  void on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) override;
  void on_data(runtime::Shard&, runtime::ConnId, std::span<const std::byte>) override {}
  void on_close(runtime::Shard&, runtime::ConnId, int) override {}
  void on_connect_failed(runtime::Shard& shard, uint64_t context, int error) override;
  void on_stop(runtime::Shard& shard) override;
  void on_gateway_busy(runtime::Shard& shard, runtime::ConnId id) override;

 private:
  struct Slot {
    uint32_t gateway = 0;           // index in gateways_
    runtime::ConnId id;
    bool connecting = false;
    bool handed = false;            // to the TLS server: alive until the shard says otherwise
    uint64_t due_ms = 0;            // dial again from then
    uint64_t handed_at_ms = 0;
    uint32_t backoff_ms = 0;
    uint32_t busy_in_a_row = 0;     // dials the gateway answered busy since one that was not
  };
  void on_timer(runtime::Shard& shard, runtime::Timer& timer) override;
  void dial(runtime::Shard& shard, uint32_t slot);
  void failed(runtime::Shard& shard, Slot& slot);
  void ended(runtime::Shard& shard, Slot& slot);
  void back_off(uint64_t now_ms, Slot& slot);

  const std::vector<config::Peer> gateways_;
  const std::shared_ptr<net::AddressBook> addresses_;
  const DialerOptions options_;
  std::vector<Slot> slots_;  // bounded by the gateways' connections
  net::TlsServer* tls_ = nullptr;
  runtime::Timer tick_{*this};
  bool stopping_ = false;
};

}  // namespace gatehouse::server
