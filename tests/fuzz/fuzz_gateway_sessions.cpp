// libFuzzer target: the gateway role driven by random sequences of valid and
// invalid events: children authenticating (agents, chained gateways), their
// frames (DATA, OPEN with any hops, CLOSE, PING, on any channel), the
// uplinks' frames (OPEN_OK, OPEN_DENY, CLOSE, CREDIT, ACK, DATA, on channels
// the role opened or made up), uplinks lost, congested, unavailable, children
// gone (as the gate reports them: whatever the role denied or closed ends
// with on_closed). Beyond the role's own invariants (routes and channels mirror each
// other: GH_INVARIANT aborts), it checks what children receive: nothing
// after they are gone, an agent only ever on channel 0, and no child left
// paused unless its uplink is congested.
#include <cstdlib>
#include <set>
#include <string>

#include "../unit/role_fakes.h"

using namespace gatehouse;
using namespace gatehouse::testing;

namespace {

constexpr uint32_t kSlots = 8;
const char* const kNames[] = {"gw1.example.test", "gw2.example.test", "web01.example.test", "web02.example.test"};

struct Input {
  const uint8_t* data;
  size_t size;
  uint8_t next() {
    if (size == 0) return 0;
    --size;
    return *data++;
  }
};

struct Model {
  std::set<uint32_t> gone;    // slots whose on_closed was delivered, not authenticated since
  std::set<uint32_t> agents;  // slots authenticated as agents (not gateways)
  std::set<uint32_t> known;   // slots ever authenticated
  bool congested[2] = {};     // as the uplinks last told the role
};

proto::Open open_of(Input& in) {
  const proto::Role role = in.next() % 4 == 0 ? proto::Role::gateway : proto::Role::agent;
  const proto::Incarnation incarnation{role == proto::Role::agent ? in.next() : 0u, 0};
  proto::Open open{role, proto::AuthMethod::cert, kNames[2 + in.next() % 2], static_cast<uint8_t>(in.next() % (proto::kHopsMax + 1)), {}, incarnation};
  for (uint8_t i = 0; i < open.hop_count; ++i) open.hops[i] = kNames[in.next() % 4];
  return open;
}

uint32_t uplink_channel(Input& in, const FakeUplinks& uplinks, uint32_t uplink) {
  const auto found = uplinks.queued.find(uplink);
  if (found == uplinks.queued.end() || found->second.empty() || in.next() % 4 == 0) return in.next() % 6;
  return found->second[in.next() % found->second.size()].channel;
}

void step(GatewayUnderTest& gw, Model& model, Input& in) {
  const uint32_t slot = in.next() % kSlots;
  const uint32_t uplink = in.next() % 2;
  const std::string payload(in.next() % 40, 'p');
  const proto::Data data{1 + in.next() % 9u, proto::DataKind::event, std::as_bytes(std::span(payload))};
  switch (in.next() % 12) {
    case 0:
    case 1: {
      if (model.known.contains(slot) && !model.gone.contains(slot)) break;  // a live slot is not accepted again
      const bool gateway = in.next() % 2 == 0;
      model.gone.erase(slot);
      model.known.insert(slot);
      if (gateway) model.agents.erase(slot); else model.agents.insert(slot);
      gw.children.sent[slot].clear();
      gw.children.reading.erase(slot);
      gw.authenticate(slot, {gateway ? proto::Role::gateway : proto::Role::agent, proto::AuthMethod::cert,
                             kNames[in.next() % 4]});
      break;
    }
    case 2:
      if (model.known.contains(slot) && !model.gone.contains(slot)) gw.from_child(slot, {in.next() % 4u, data});
      break;
    case 3:
      if (model.known.contains(slot) && !model.gone.contains(slot)) gw.from_child(slot, {in.next() % 4u, open_of(in)});
      break;
    case 4:
      if (model.known.contains(slot) && !model.gone.contains(slot)) gw.from_child(slot, {in.next() % 4u, proto::Close{}});
      break;
    case 5: {
      const uint32_t channel = uplink_channel(in, gw.uplinks, uplink);
      gw.from_uplink(uplink, {channel, proto::OpenOk{in.next(), in.next() * 100u}});
      break;
    }
    case 6: {
      const uint32_t channel = uplink_channel(in, gw.uplinks, uplink);
      gw.from_uplink(uplink, {channel, proto::OpenDeny{{proto::Reason::not_approved, 20'000, "no"}}});
      break;
    }
    case 7: {
      const uint32_t channel = uplink_channel(in, gw.uplinks, uplink);
      switch (in.next() % 4) {
        case 0: gw.from_uplink(uplink, {channel, proto::Close{}}); break;
        case 1: gw.from_uplink(uplink, {channel, proto::Credit{in.next() + 1u}}); break;
        case 2: gw.from_uplink(uplink, {channel, proto::Ack{in.next()}}); break;
        default: gw.from_uplink(uplink, {channel, data}); break;
      }
      break;
    }
    case 8:
      gw.sessions.on_uplink_down(gw.shard, uplink);
      model.congested[uplink] = false;
      break;
    case 9:
      model.congested[uplink] = in.next() % 2 == 0;
      gw.sessions.on_uplink_congested(gw.shard, uplink, model.congested[uplink]);
      break;
    case 10:
      gw.uplinks.up_[uplink] = !gw.uplinks.up_[uplink];
      break;
    default:
      if (model.known.contains(slot) && !model.gone.contains(slot)) {
        gw.closed(slot);
        model.gone.insert(slot);
        gw.children.sent[slot].clear();
      }
      break;
  }
  // What the role denied or closed, the gate closes: on_closed follows.
  std::set<uint32_t> ended;
  for (const auto& [s, reason] : gw.children.denied) ended.insert(s);
  for (uint32_t s : gw.children.closed) ended.insert(s);
  gw.children.denied.clear();
  gw.children.closed.clear();
  for (uint32_t s : ended) {
    if (model.gone.contains(s)) continue;
    gw.closed(s);
    model.gone.insert(s);
    gw.children.sent[s].clear();
  }
  for (uint32_t s = 0; s < kSlots; ++s) {
    // Only congestion pauses a child, and a drained uplink leaves none paused.
    const auto reading = gw.children.reading.find(s);
    if (reading != gw.children.reading.end() && !reading->second && model.known.contains(s) && !model.gone.contains(s) &&
        !model.congested[gw.children.conns.at(s).role.uplink]) {
      abort();
    }
    const auto found = gw.children.sent.find(s);
    if (found == gw.children.sent.end()) continue;
    if (!found->second.empty() && (model.gone.contains(s) || !model.known.contains(s))) abort();  // sent to nobody
    if (model.agents.contains(s)) {
      for (const Recorded& frame : found->second) {
        if (frame.channel != 0) abort();  // an agent has only its own channel
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  GatewayUnderTest gw;
  Model model;
  Input in{data, size};
  while (in.size > 0) step(gw, model, in);
  return 0;
}
