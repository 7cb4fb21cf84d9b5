// Who is alive in the management group, as SCOM's health service watches
// heartbeats: every agent (and gateway) heard at least once per heartbeat
// interval is up; one silent for heartbeats_missed_max intervals is down
// (event 30100), and up again (30101) when it is heard. The shards note what
// they heard (a direct agent's PING, a gateway's HEARTBEATS naming a
// channel, a session or channel opening); the checks and the registry writes
// run on the registry thread (Registry::set_round_hook).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "gatehouse/config/live.h"
#include "gatehouse/server/registry.h"

namespace gatehouse::server {

enum class PeerKind : uint8_t { agent, gateway };

struct HeardNote {
  PeerKind kind = PeerKind::agent;
  std::string name;
  std::string path;  // agents: the gateways it came through ("" direct)
};

class AgentHealth {
 public:
  static constexpr size_t kPeersMax = 1u << 20;  // names tracked (approved agents and gateways bound it further)

  // [health] heartbeat_interval_s and heartbeats_missed_max (silent this many
  // intervals = down) are read from `live` at each check.
  explicit AgentHealth(const config::LiveSettings& live) : live_(live) {}

  // Any thread (a shard, once per loop turn): these were heard now.
  void heard(std::vector<HeardNote>& notes);
  // Registry thread: about once a second, verdicts (30100 / 30101) and the
  // heartbeats recorded for `gatehouse agents`. `now_ms` is steady time.
  void check(int64_t now_ms, Registry& registry);

  struct Counts {
    uint64_t agents_up = 0;
    uint64_t agents_down = 0;
    uint64_t gateways_up = 0;
    uint64_t gateways_down = 0;
  };
  Counts counts() const;  // any thread

 private:
  struct Peer {
    int64_t heard_ms = 0;        // steady
    int64_t heard_unix_s = 0;
    int64_t recorded_unix_s = 0; // the last heartbeat written to the registry
    std::string path;
    bool down = false;
    int64_t down_since_ms = 0;
    bool came_back = false;      // heard while down: 30101 at the next check
  };
  using Peers = std::map<std::string, Peer, std::less<>>;

  Peers& peers_of(PeerKind kind) { return kind == PeerKind::agent ? agents_ : gateways_; }
  void check_kind(PeerKind kind, int64_t now_ms, Registry& registry);
  void log_down(PeerKind kind, const std::string& name, const Peer& peer, int64_t silent_ms);

  const config::LiveSettings& live_;
  uint32_t interval_s_ = 0;     // registry thread: live_'s, taken at each check
  uint32_t missed_max_ = 0;     // registry thread
  int64_t down_after_ms_ = 0;   // registry thread: interval_s_ × missed_max_
  mutable std::mutex mutex_;  // guards the maps: shards note, the registry thread checks
  Peers agents_;               // bounded by kPeersMax
  Peers gateways_;             // bounded by kPeersMax
  int64_t checked_at_ms_ = 0;  // registry thread
};

const char* to_string(PeerKind kind);

}  // namespace gatehouse::server
