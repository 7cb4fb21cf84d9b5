// What a role does to its authenticated children's sessions: the seam between
// role logic and the transport. net::Gate is the real one; the role's unit
// tests drive a role through a fake that records what it was asked to do.
#pragma once

#include <functional>
#include <string>

#include "gatehouse/log/events.h"
#include "gatehouse/net/conn.h"
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
  virtual bool send(runtime::Shard& shard, Conn& conn, const proto::Frame& frame) = 0;
  // DENY with the reason, a log line with the event (and `hint` for the local
  // operator), then close.
  virtual void deny(runtime::Shard& shard, Conn& conn, proto::Reason reason, log::EventId event,
                    const std::string& why, const std::string& hint) = 0;
  void deny(runtime::Shard& shard, Conn& conn, proto::Reason reason, log::EventId event, const std::string& why) {
    deny(shard, conn, reason, event, why, "");
  }
  // Closes once what was sent is out (GOAWAY first, for instance).
  virtual void close(runtime::Shard& shard, Conn& conn) = 0;
  // Stops or resumes reading the child (a congested uplink pauses its agents).
  virtual void set_reading(runtime::Shard& shard, Conn& conn, bool reading) = 0;
  // The record behind an id kept elsewhere (a route, a batch in the store):
  // a session the role was given and has not heard close, else nullptr.
  virtual Conn* find(runtime::ConnId id) = 0;
  // Every such session (an uplink's loss reaches all of its agents).
  virtual void for_each(const std::function<void(Conn&)>& visit) = 0;
};

}  // namespace gatehouse::net
