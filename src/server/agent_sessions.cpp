#include "gatehouse/server/agent_sessions.h"

namespace gatehouse::server {

std::optional<SessionPlace> AgentSessions::claim(const std::string& agent, const SessionPlace& place) {
  std::lock_guard lock(mutex_);
  auto [it, inserted] = sessions_.try_emplace(agent, place);
  if (inserted) return std::nullopt;
  const SessionPlace replaced = it->second;
  it->second = place;
  return replaced == place ? std::nullopt : std::optional(replaced);
}

void AgentSessions::release(const std::string& agent, const SessionPlace& place) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(agent);
  if (it != sessions_.end() && it->second == place) sessions_.erase(it);
}

}  // namespace gatehouse::server
