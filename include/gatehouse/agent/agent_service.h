// The agent's one session, on a shard of the runtime: connects to the first
// reachable gateway of its list (backoff with jitter between rounds), proves
// itself (certificate or Kerberos), resumes from the server's durable seq,
// sends its queue within the granted window and deletes what is acknowledged.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "gatehouse/agent/disk_queue.h"
#include "gatehouse/config/config_types.h"
#include "gatehouse/net/address_book.h"
#include "gatehouse/net/child_link.h"
#include "gatehouse/runtime/shard.h"

namespace gatehouse::agent {

struct AgentOptions {
  std::vector<config::Peer> gateways;  // ordered failover list
  std::shared_ptr<net::AddressBook> addresses;  // the gateways' addresses, resolved off the shard
  net::ChildOptions child;             // parent_name is set per gateway
  uint32_t backoff_initial_ms = 200;
  uint32_t backoff_max_ms = 30'000;
  uint32_t welcome_timeout_ms = 10'000;  // connect → HELLO_OK
  uint32_t retry_after_loss_ms = 100;    // a session that was up: the same gateway again soon
  uint32_t parent_silence_max_ms = 45'000;  // nothing heard this long: the gateway is dead, the next one
  uint32_t failback_after_ms = 0;        // on a later gateway this long: back to the first once it is up (0: never)
  admin::LinkReport* report = nullptr;   // the session's state for the admin endpoint
  const config::LiveSettings* live = nullptr;  // a reload's [failover] timings (kReconfigure); nullptr: fixed
};

struct AgentCounters {
  std::atomic<uint64_t> sent{0};         // DATA frames sent (resends included)
  std::atomic<uint64_t> acked_seq{0};    // highest durable seq acknowledged
  std::atomic<uint64_t> sessions{0};     // HELLO_OKs received
  std::atomic<bool> connected{false};
};

class AgentService final : public runtime::Service,
                           public runtime::Mailbox,
                           private net::ChildLinkEvents {
 public:
  AgentService(const AgentOptions& options, DiskQueue& queue, AgentCounters& counters);
  ~AgentService() override;

  // The queue has new events (value 0), start (kStart), or a reload changed
  // the [failover] timings (kReconfigure: taken from options.live) or the
  // gateways (kRelist).
  static constexpr uint64_t kStart = 1;
  static constexpr uint64_t kReconfigure = 2;
  static constexpr uint64_t kRelist = 3;  // a new [[gateways]] list: the pointer is a net::ParentList, owned from here
  void on_message(runtime::Shard& shard, uint64_t value, void* pointer) override;

  void on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) override;
  void on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) override;
  void on_close(runtime::Shard& shard, runtime::ConnId id, int error) override;
  void on_connect_failed(runtime::Shard& shard, uint64_t context, int error) override;
  void on_send_space(runtime::Shard& shard, runtime::ConnId id) override;
  void on_deadline(runtime::Shard& shard, runtime::ConnId id) override;
  void on_stop(runtime::Shard& shard) override;

 private:
  proto::Incarnation hello_incarnation(net::ChildLink& link) override;
  void on_link_up(runtime::Shard& shard, net::ChildLink& link, const proto::HelloOk& hello_ok) override;
  void on_link_frame(runtime::Shard& shard, net::ChildLink& link, const proto::Frame& frame) override;
  void on_link_down(runtime::Shard& shard, net::ChildLink& link, bool was_up) override;
  void on_link_writable(runtime::Shard& shard, net::ChildLink& link) override;
  // Sends queued events after sent_through_ while the window allows.
  void pump(runtime::Shard& shard);
  bool send_gap(uint64_t last_seq);
  bool send_incarnation(const proto::Incarnation& next);

  const AgentOptions options_;
  DiskQueue& queue_;
  AgentCounters& counters_;
  proto::SpillPool spill_pool_{4};
  net::ChildLink link_;
  bool started_ = false;
  uint64_t window_bytes_ = 0;      // DATA bytes we may still send
  uint64_t sent_through_ = 0;      // highest seq sent on this session (or acknowledged at its start)
  proto::Incarnation session_incarnation_;  // the one this session's events belong to now
};

}  // namespace gatehouse::agent
