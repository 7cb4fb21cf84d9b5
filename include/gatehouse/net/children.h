// What a role does to its authenticated children's sessions: the seam between
// role logic and the transport. net::Gate is the real one; the role's unit
// tests drive a role through a fake that records what it was asked to do.
#pragma once

#include <string>

#include "gatehouse/log/events.h"
#include "gatehouse/proto/frame_types.h"
#include "gatehouse/runtime/runtime_types.h"

namespace gatehouse::runtime {
class Shard;
}

namespace gatehouse::net {

class Children {
 public:
  virtual ~Children() = default;
  // Encodes and sends one frame; false when the session is gone or its send
  // queue is full.
  virtual bool send(runtime::Shard& shard, runtime::ConnId id, const proto::Frame& frame) = 0;
  // DENY with the reason, a log line with the event (and `hint` for the local
  // operator), then close.
  virtual void deny(runtime::Shard& shard, runtime::ConnId id, proto::Reason reason, log::EventId event,
                    const std::string& why, const std::string& hint) = 0;
  void deny(runtime::Shard& shard, runtime::ConnId id, proto::Reason reason, log::EventId event,
            const std::string& why) {
    deny(shard, id, reason, event, why, "");
  }
  // Closes once what was sent is out (GOAWAY first, for instance).
  virtual void close(runtime::Shard& shard, runtime::ConnId id) = 0;
  // Stops or resumes reading the child (a congested uplink pauses its agents).
  virtual void set_reading(runtime::Shard& shard, runtime::ConnId id, bool reading) = 0;
};

}  // namespace gatehouse::net
