// Where each agent's one session lives, across the server's shards: a new
// session of an agent (direct, or a channel through a gateway) replaces the
// older one, which its own shard then closes. A reinstalled agent takes over
// at once; two hosts with one identity cannot both stream unnoticed.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "gatehouse/runtime/runtime_types.h"

namespace gatehouse::server {

// One agent session: the shard's sessions that hold it (their mailbox
// closes it when replaced), the connection and the channel (0: direct).
struct SessionPlace {
  runtime::Mailbox* closer = nullptr;
  runtime::Shard* shard = nullptr;
  runtime::ConnId conn;
  uint32_t channel = 0;
  bool operator==(const SessionPlace&) const = default;
};

class AgentSessions {
 public:
  // Any shard. `agent`'s session is now `place`; the one it replaces, if any.
  std::optional<SessionPlace> claim(const std::string& agent, const SessionPlace& place);
  // Any shard. Forgets `agent`'s session if it is still `place` (a newer one
  // may have replaced it meanwhile).
  void release(const std::string& agent, const SessionPlace& place);

 private:
  std::mutex mutex_;  // taken when a session opens or ends, never per event
  std::unordered_map<std::string, SessionPlace> sessions_;  // one per live agent session
};

}  // namespace gatehouse::server
