#include "gatehouse/server/agent_health.h"

#include <algorithm>
#include <ctime>

#include "gatehouse/log/log.h"
#include "gatehouse/runtime/runtime.h"

namespace gatehouse::server {
namespace {

constexpr int64_t kCheckEveryMsMax = 1'000;  // and a quarter interval when that is sooner

}  // namespace

const char* to_string(PeerKind kind) { return kind == PeerKind::agent ? "agent" : "gateway"; }

void AgentHealth::heard(std::vector<HeardNote>& notes) {
  if (notes.empty()) return;
  const auto now_ms = static_cast<int64_t>(runtime::steady_ms());
  const int64_t now_unix_s = std::time(nullptr);
  std::lock_guard lock(mutex_);
  for (HeardNote& note : notes) {
    Peers& peers = peers_of(note.kind);
    auto found = peers.find(note.name);
    if (found == peers.end()) {
      if (peers.size() >= kPeersMax) continue;  // more names than any group has: not tracked
      found = peers.emplace(std::move(note.name), Peer{}).first;
    }
    Peer& peer = found->second;
    peer.heard_ms = now_ms;
    peer.heard_unix_s = now_unix_s;
    if (note.kind == PeerKind::agent) peer.path = std::move(note.path);
    if (peer.down) peer.came_back = true;
  }
  notes.clear();
}

void AgentHealth::check(int64_t now_ms, Registry& registry) {
  interval_s_ = live_.heartbeat_interval_s();
  missed_max_ = live_.heartbeats_missed_max();
  down_after_ms_ = int64_t{interval_s_} * missed_max_ * 1'000;
  if (now_ms - checked_at_ms_ < std::min<int64_t>(kCheckEveryMsMax, interval_s_ * 250)) return;
  checked_at_ms_ = now_ms;
  check_kind(PeerKind::agent, now_ms, registry);
  check_kind(PeerKind::gateway, now_ms, registry);
}

void AgentHealth::check_kind(PeerKind kind, int64_t now_ms, Registry& registry) {
  std::vector<HeartbeatRecord> records;
  std::vector<std::string> silent;
  {
    std::lock_guard lock(mutex_);
    for (auto& [name, peer] : peers_of(kind)) {
      if (peer.came_back) {
        peer.came_back = false;
        peer.down = false;
        log::emit(log::Level::info, log::EventId::heartbeat_restored,
                  std::string(to_string(kind)) + " " + name + " is heard again: up",
                  {{to_string(kind), name}, {"down_ms", now_ms - peer.down_since_ms}, {"path", peer.path}});
        records.push_back({name, peer.heard_unix_s, "up", peer.path});
        peer.recorded_unix_s = peer.heard_unix_s;
      } else if (!peer.down && now_ms - peer.heard_ms > down_after_ms_) {
        silent.push_back(name);
      } else if (!peer.down && peer.heard_unix_s >= peer.recorded_unix_s + interval_s_ / 2 + 1) {
        records.push_back({name, peer.heard_unix_s, "up", peer.path});
        peer.recorded_unix_s = peer.heard_unix_s;
      }
    }
  }
  for (const std::string& name : silent) {
    // In a group the agent may be another server's now (it failed over, this
    // one stopped hearing it): that server's record is newer, and the verdict
    // is its to give.
    const int64_t stored_unix_s = registry.stored_heartbeat(kind == PeerKind::gateway, name);
    std::lock_guard lock(mutex_);
    Peers& peers = peers_of(kind);
    const auto found = peers.find(name);
    if (found == peers.end()) continue;
    Peer& peer = found->second;
    if (now_ms - peer.heard_ms <= down_after_ms_) continue;  // heard meanwhile
    if (stored_unix_s > peer.heard_unix_s + 1) {
      peers.erase(found);
      continue;
    }
    peer.down = true;
    peer.down_since_ms = now_ms;
    log_down(kind, name, peer, now_ms - peer.heard_ms);
    records.push_back({name, peer.heard_unix_s, "down", peer.path});
    peer.recorded_unix_s = peer.heard_unix_s;
  }
  registry.write_heartbeats(kind == PeerKind::gateway, records);
}

void AgentHealth::log_down(PeerKind kind, const std::string& name, const Peer& peer, int64_t silent_ms) {
  log::emit(log::Level::warning, log::EventId::heartbeat_failed,
            std::string(to_string(kind)) + " " + name + " missed its heartbeats for " + std::to_string(silent_ms / 1'000) +
                " s (every " + std::to_string(interval_s_) + " s, " +
                std::to_string(missed_max_) + " missed = down): down",
            {{to_string(kind), name},
             {"last_heartbeat", log::iso8601_utc(peer.heard_unix_s, 0, 3)},
             {"path", peer.path}});
}

AgentHealth::Counts AgentHealth::counts() const {
  Counts counts;
  std::lock_guard lock(mutex_);
  for (const auto& [name, peer] : agents_) (peer.down ? counts.agents_down : counts.agents_up) += 1;
  for (const auto& [name, peer] : gateways_) (peer.down ? counts.gateways_down : counts.gateways_up) += 1;
  return counts;
}

}  // namespace gatehouse::server
