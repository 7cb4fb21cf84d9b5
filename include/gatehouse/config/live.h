// The settings a SIGHUP changes in a running process (docs/operations.md,
// "Reload"). The thread that re-read the file writes them; shards and other
// threads read each where it is used, with relaxed loads: every value stands
// alone, a reader sees the old one or the new one, and what was already armed
// with the old one (a handshake's deadline, a backoff in progress) keeps it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "gatehouse/config/config_types.h"

namespace gatehouse::config {

class LiveSettings {
 public:
  explicit LiveSettings(const Config& config) { apply(config); }
  LiveSettings(const LiveSettings&) = delete;
  LiveSettings& operator=(const LiveSettings&) = delete;

  // Takes the live keys of `config` (config::kLiveKeys names them).
  void apply(const Config& config);

  uint32_t handshake_timeout_ms() const { return load(handshake_timeout_ms_); }
  uint32_t hello_timeout_ms() const { return load(hello_timeout_ms_); }
  uint32_t heartbeat_interval_s() const { return load(heartbeat_interval_s_); }
  // An authenticated child silent this long is closed: missed_heartbeats intervals.
  uint32_t child_silence_ms() const { return load(child_silence_ms_); }
  uint32_t heartbeats_missed_max() const { return load(heartbeats_missed_max_); }
  uint32_t approval_poll_ms() const { return load(approval_poll_ms_); }
  AgentApproval agent_approval() const { return agent_approval_.load(std::memory_order_relaxed); }
  uint32_t new_agents_per_minute() const { return load(new_agents_per_minute_); }
  uint64_t uplink_buffer_max_bytes() const { return uplink_buffer_max_bytes_.load(std::memory_order_relaxed); }
  // [failover], as the links take them (Failover and ChildLinkOptions).
  struct FailoverTimings {
    uint32_t backoff_initial_ms;
    uint32_t backoff_max_ms;
    uint32_t welcome_timeout_ms;
    uint32_t retry_after_loss_ms;
    uint32_t parent_silence_ms;
    uint32_t failback_ms;
  };
  FailoverTimings failover() const;
  // The failover list (a gateway's [[parents]], an agent's [[gateways]]), as
  // the admin endpoint names the links; the links take theirs by message.
  std::shared_ptr<const std::vector<Peer>> parents() const { return parents_.load(); }

 private:
  static uint32_t load(const std::atomic<uint32_t>& value) { return value.load(std::memory_order_relaxed); }

  std::atomic<uint32_t> handshake_timeout_ms_{0};
  std::atomic<uint32_t> hello_timeout_ms_{0};
  std::atomic<uint32_t> heartbeat_interval_s_{0};
  std::atomic<uint32_t> child_silence_ms_{0};
  std::atomic<uint32_t> heartbeats_missed_max_{0};
  std::atomic<uint32_t> approval_poll_ms_{0};
  std::atomic<AgentApproval> agent_approval_{AgentApproval::reject};
  std::atomic<uint32_t> new_agents_per_minute_{0};
  std::atomic<uint64_t> uplink_buffer_max_bytes_{0};
  std::atomic<uint32_t> backoff_initial_ms_{0};
  std::atomic<uint32_t> backoff_max_ms_{0};
  std::atomic<uint32_t> welcome_timeout_ms_{0};
  std::atomic<uint32_t> retry_after_loss_ms_{0};
  std::atomic<uint32_t> parent_silence_ms_{0};
  std::atomic<uint32_t> failback_ms_{0};
  std::atomic<std::shared_ptr<const std::vector<Peer>>> parents_;  // off the data path: a lock inside is fine
};

}  // namespace gatehouse::config
