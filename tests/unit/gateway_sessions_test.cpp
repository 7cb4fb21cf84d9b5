// The roles' logic through their seam: fakes of the children's sessions
// (net::Children) and of the uplinks (uplink::Uplinks) record what
// GatewaySessions and ServerSessions ask for; no sockets, no TLS. The shard is
// a real one that never runs (the roles only pass it through); the server's
// store and registry are real, in a temp folder.
#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gatehouse/gateway/gateway_sessions.h"
#include "gatehouse/server/server_role.h"
#include "gatehouse/store/store.h"
#include "role_fakes.h"
#include "test_support.h"

using namespace gatehouse;
using namespace gatehouse::testing;

namespace {

// The agents' queues here: one incarnation from seq 1.
constexpr proto::Incarnation kAgentIncarnation{0xa11ce, 0};

proto::Data data_of(uint64_t seq, const std::string& payload) {
  return {seq, proto::DataKind::event, std::as_bytes(std::span(payload))};
}

}  // namespace

TEST_CASE("gateway role: an agent's OPEN goes up with this hop; OPEN_OK comes back as its HELLO_OK") {
  GatewayUnderTest gw;
  gw.agent(5, "web01.example.test");
  REQUIRE(gw.uplinks.queued[0].size() == 1);
  const Recorded open = gw.uplinks.queued[0][0];
  CHECK(open.type == proto::FrameType::open);
  CHECK(open.name == "web01.example.test");
  CHECK(open.hops == std::vector<std::string>{"gw1.example.test"});
  CHECK(open.channel != 0);
  gw.from_uplink(0, {open.channel, proto::OpenOk{4'242, 65'536}});
  REQUIRE(gw.children.sent[5].size() == 1);
  const Recorded hello_ok = gw.children.sent[5][0];
  CHECK(hello_ok.type == proto::FrameType::hello_ok);
  CHECK(hello_ok.channel == 0);
  CHECK(hello_ok.seq == 4'242);
  CHECK(hello_ok.credit == 65'536);
  CHECK(hello_ok.name == "gw1.example.test");
  // DATA goes up on the uplink's channel, payload as it came; ACK and CREDIT come down on channel 0.
  const std::string payload = "{\"event\":1}";
  gw.from_child(5, {0, proto::Data{1, proto::DataKind::event, std::as_bytes(std::span(payload))}});
  REQUIRE(gw.uplinks.queued[0].size() == 2);
  CHECK(gw.uplinks.queued[0][1].type == proto::FrameType::data);
  CHECK(gw.uplinks.queued[0][1].channel == open.channel);
  CHECK(gw.uplinks.queued[0][1].payload == payload);
  gw.from_uplink(0, {open.channel, proto::Credit{300}});
  REQUIRE(gw.children.sent[5].size() == 2);
  CHECK(gw.children.sent[5][1].type == proto::FrameType::credit);
  CHECK(gw.children.sent[5][1].channel == 0);
  CHECK(gw.children.sent[5][1].credit == 300);
}

TEST_CASE("gateway role: OPEN_DENY reaches the agent as its DENY; no parent at all is a DENY at once") {
  GatewayUnderTest gw;
  gw.agent(3, "web02.example.test");
  const uint32_t channel = gw.uplinks.queued[0][0].channel;
  gw.from_uplink(0, {channel, proto::OpenDeny{{proto::Reason::not_approved, 20'000, "not approved"}}});
  CHECK(gw.children.denied[3] == proto::Reason::not_approved);
  gw.from_uplink(0, {channel, proto::Credit{1}});  // the route is gone: nothing reaches anyone
  CHECK(gw.children.sent[3].empty());
  gw.uplinks.up_ = {false, false};
  gw.agent(4, "web03.example.test");
  CHECK(gw.children.denied[4] == proto::Reason::parent_unavailable);
}

TEST_CASE("gateway role: a chained gateway is admitted by the parent first (its OPEN goes up); then its agents' OPENs go up with this hop") {
  GatewayUnderTest gw;
  gw.authenticate(7, {proto::Role::gateway, proto::AuthMethod::cert, "gw2.example.test", {}});
  CHECK(gw.children.sent[7].empty());  // no HELLO_OK before the management group said yes
  REQUIRE(gw.uplinks.queued[0].size() == 1);
  const Recorded admission = gw.uplinks.queued[0][0];
  CHECK(admission.type == proto::FrameType::open);
  CHECK(admission.name == "gw2.example.test");
  CHECK(admission.hops == std::vector<std::string>{"gw1.example.test"});
  proto::Open early{proto::Role::agent, proto::AuthMethod::cert, "web09.example.test", 1, {}, kAgentIncarnation};
  early.hops[0] = "gw2.example.test";
  gw.from_child(7, {3, early});  // before its admission came back: refused here
  REQUIRE(gw.children.sent[7].size() == 1);
  CHECK(gw.children.sent[7][0].type == proto::FrameType::open_deny);
  CHECK(gw.uplinks.queued[0].size() == 1);
  gw.from_uplink(0, {admission.channel, proto::OpenOk{0, 0}});
  REQUIRE(gw.children.sent[7].size() == 2);
  CHECK(gw.children.sent[7][1].type == proto::FrameType::hello_ok);
  CHECK(gw.children.sent[7][1].credit == 0);
  gw.from_child(7, {3, early});
  REQUIRE(gw.uplinks.queued[0].size() == 2);
  CHECK(gw.uplinks.queued[0][1].hops == std::vector<std::string>{"gw2.example.test", "gw1.example.test"});
  // The parent withdraws the admission (the approval was deleted): the child gateway goes.
  gw.from_uplink(0, {admission.channel, proto::Close{proto::Reason::not_approved}});
  CHECK(gw.children.sent[7].back().type == proto::FrameType::goaway);
  CHECK(gw.children.closed == std::vector<uint32_t>{7});
}

TEST_CASE("gateway role: a refused admission is the chained gateway's DENY; DATA on its channel 0 is a protocol error") {
  GatewayUnderTest gw;
  gw.authenticate(7, {proto::Role::gateway, proto::AuthMethod::cert, "gw2.example.test", {}});
  gw.from_uplink(0, {gw.uplinks.queued[0][0].channel, proto::OpenDeny{{proto::Reason::not_approved, 20'000, "no"}}});
  CHECK(gw.children.denied[7] == proto::Reason::not_approved);
  gw.child_gateway(8, "gw3.example.test");
  gw.from_child(8, {0, data_of(1, "x")});
  CHECK(gw.children.denied[8] == proto::Reason::protocol_error);
}

TEST_CASE("gateway role: a chained gateway may only claim paths that end with itself; a path through this gateway is a loop") {
  GatewayUnderTest gw;
  gw.child_gateway(7, "gw2.example.test");
  REQUIRE(gw.children.sent[7].size() == 1);  // its HELLO_OK
  auto refused = [&](uint32_t channel, const proto::Open& open) {
    const size_t before = gw.children.sent[7].size();
    gw.from_child(7, {channel, open});
    REQUIRE(gw.children.sent[7].size() == before + 1);
    CHECK(gw.children.sent[7].back().type == proto::FrameType::open_deny);
    CHECK(gw.children.sent[7].back().channel == channel);
    return gw.children.sent[7].back().reason;
  };
  // Forged: an agent "behind" another gateway, or straight from gw2 with no hop, or naming this gateway as the child.
  proto::Open forged{proto::Role::agent, proto::AuthMethod::cert, "direct01.example.test", 1, {}, kAgentIncarnation};
  forged.hops[0] = "gw9.example.test";
  CHECK(refused(2, forged) == proto::Reason::not_approved);
  forged.hop_count = 0;
  CHECK(refused(2, forged) == proto::Reason::not_approved);
  proto::Open looped{proto::Role::agent, proto::AuthMethod::cert, "web09.example.test", 2, {}, kAgentIncarnation};
  looped.hops[0] = "gw1.example.test";
  looped.hops[1] = "gw2.example.test";
  CHECK(refused(3, looped) == proto::Reason::loop_detected);
  proto::Open too_far{proto::Role::agent, proto::AuthMethod::cert, "web10.example.test", proto::kHopsMax, {}, kAgentIncarnation};
  for (auto& hop : too_far.hops) hop = "gw9.example.test";
  too_far.hops[proto::kHopsMax - 1] = "GW2.example.test";  // names compare without case
  CHECK(refused(4, too_far) == proto::Reason::loop_detected);
  CHECK(gw.uplinks.queued[0].empty());  // none went up
  proto::Open fine{proto::Role::agent, proto::AuthMethod::kerberos, "web11.example.test", 1, {}, kAgentIncarnation};
  fine.hops[0] = "gw2.example.test";
  gw.from_child(7, {5, fine});
  REQUIRE(gw.uplinks.queued[0].size() == 1);
  CHECK(gw.uplinks.queued[0][0].hops == std::vector<std::string>{"gw2.example.test", "gw1.example.test"});
}

TEST_CASE("gateway role: an uplink lost sends its agents away (GOAWAY, close); others stay; congestion pauses and resumes") {
  GatewayUnderTest gw;
  gw.agent(1, "web01.example.test");  // uplink 0
  gw.uplinks.up_ = {false, true};
  gw.agent(2, "web02.example.test");  // uplink 1
  gw.uplinks.up_ = {true, true};
  gw.agent(3, "web03.example.test");  // uplink 0
  gw.sessions.on_uplink_congested(gw.shard, 0, true);
  CHECK(gw.children.reading.empty());  // an agent of a congested uplink is paused when it sends, not before
  gw.from_child(1, {0, proto::Ping{1}});
  gw.from_child(1, {0, proto::Ping{2}});  // (a few frames may follow a pause: listed once)
  gw.from_child(2, {0, proto::Ping{3}});
  gw.from_child(3, {0, proto::Ping{4}});
  CHECK(gw.children.reading[1] == false);
  CHECK(gw.children.reading[3] == false);
  CHECK_FALSE(gw.children.reading.contains(2));  // uplink 1 is not congested
  CHECK(gw.children.sent[1].size() == 2);  // what it sent was handled: its PONGs
  gw.closed(3);  // a paused agent that goes is not resumed
  gw.children.reading.clear();
  gw.sessions.on_uplink_congested(gw.shard, 0, false);
  CHECK(gw.children.reading == std::map<uint32_t, bool>{{1, true}});
  gw.from_child(1, {0, proto::Ping{5}});  // drained: read as usual
  CHECK(gw.children.reading == std::map<uint32_t, bool>{{1, true}});
  const uint32_t channel = gw.uplinks.queued[0][0].channel;
  gw.sessions.on_uplink_congested(gw.shard, 0, true);
  gw.from_child(1, {0, proto::Ping{6}});  // paused when its uplink goes: it goes too
  gw.children.sent[1].clear();
  gw.children.sent[2].clear();
  gw.sessions.on_uplink_down(gw.shard, 0);
  REQUIRE(gw.children.sent[1].size() == 1);
  CHECK(gw.children.sent[1][0].type == proto::FrameType::goaway);
  CHECK(gw.children.sent[1][0].reason == proto::Reason::parent_unavailable);
  CHECK(gw.children.closed == std::vector<uint32_t>{1});
  gw.from_uplink(0, {channel, proto::OpenOk{1, 1}});  // a stale answer on the lost uplink's channel
  CHECK(gw.children.sent[1].size() == 1);
  CHECK(gw.children.sent[2].empty());
}

namespace {

// ServerSessions between the fake children, over a real store and registry in
// a temp folder; `approve` runs before the registry is opened (it reads the
// approvals at open).
struct ServerUnderTest {
  ServerUnderTest(const char* name, server::ServerLimits limits,
                  const std::function<void(server::Registry&)>& approve = {}, uint32_t new_agents_allowed = 600)
      : dir(name), new_agents_per_minute(new_agents_allowed), live(settings(new_agents_allowed)) {
    REQUIRE(!dir.path.empty());
    std::string why;
    store = store::EventStore::open(dir.path + "/events", {}, why);
    REQUIRE_MESSAGE(store != nullptr, why);
    if (approve) {
      auto setup = server::Registry::open(dir.path, why);
      REQUIRE_MESSAGE(setup != nullptr, why);
      approve(*setup);
    }
    registry = server::Registry::open(dir.path, why);
    REQUIRE_MESSAGE(registry != nullptr, why);
    context = std::make_unique<server::ServerContext>(*store, *registry, live, "ms1.example.test", limits);
    sessions = std::make_unique<server::ServerSessions>(*context);
    sessions->attach(children);
  }
  net::Conn& authenticate(uint32_t slot, const net::Identity& identity) {
    net::Conn& conn = children.admit(slot, identity);
    sessions->on_authenticated(children, shard, conn);
    return conn;
  }
  void from_child(net::Conn& conn, const proto::Frame& frame) { sessions->on_frame(children, shard, conn, frame); }

  // As a SIGHUP with a changed [approval] agents would.
  void reload_approval(config::AgentApproval approval) {
    config::Config changed = settings(new_agents_per_minute);
    changed.agent_approval = approval;
    live.apply(changed);
  }
  static config::Config settings(uint32_t new_agents_per_minute) {
    config::Config config;
    config.agent_approval = config::AgentApproval::automatic;
    config.new_agents_per_minute = new_agents_per_minute;
    return config;
  }

  gatehouse::testing::TempDir dir;
  uint32_t new_agents_per_minute;
  config::LiveSettings live;
  std::unique_ptr<store::EventStore> store;
  std::unique_ptr<server::Registry> registry;
  std::unique_ptr<server::ServerContext> context;
  runtime::Shard& shard = passive_shard();  // its clock stands still
  FakeChildren children;
  std::unique_ptr<server::ServerSessions> sessions;
};

}  // namespace

TEST_CASE("gateway role: an agent sending beyond the window its parent granted loses its own session; a bystander on the same uplink keeps flowing") {
  GatewayUnderTest gw;
  gw.agent(1, "web01.example.test");
  gw.agent(2, "web02.example.test");
  const uint32_t violator = gw.uplinks.queued[0][0].channel;
  const uint32_t bystander = gw.uplinks.queued[0][1].channel;
  gw.from_uplink(0, {violator, proto::OpenOk{0, 1'000}});
  gw.from_uplink(0, {bystander, proto::OpenOk{0, 1'000}});
  const std::string payload(400, 'x');  // 422 bytes with the frame's fixed part: two fit in 1,000
  gw.from_child(1, {0, data_of(1, payload)});
  gw.from_child(1, {0, data_of(2, payload)});
  CHECK(gw.uplinks.queued[0].size() == 4);
  gw.from_child(1, {0, data_of(3, payload)});
  CHECK(gw.uplinks.queued[0].size() == 4);  // not forwarded: the shared uplink never carries it
  REQUIRE(gw.children.denied.contains(1));
  CHECK(gw.children.denied[1] == proto::Reason::flow_control_violation);
  gw.closed(1);
  REQUIRE(gw.uplinks.queued[0].size() == 5);
  CHECK(gw.uplinks.queued[0][4].type == proto::FrameType::close);  // its channel, and only it
  CHECK(gw.uplinks.queued[0][4].channel == violator);
  // The bystander: its window is its own, and CREDIT from the parent extends it.
  gw.from_child(2, {0, data_of(1, payload)});
  gw.from_child(2, {0, data_of(2, payload)});
  CHECK(gw.uplinks.queued[0].size() == 7);
  gw.from_uplink(0, {bystander, proto::Credit{422}});
  gw.from_child(2, {0, data_of(3, payload)});
  CHECK(gw.uplinks.queued[0].size() == 8);
  CHECK_FALSE(gw.children.denied.contains(2));
}

TEST_CASE("gateway role: a chained gateway's agent beyond its window loses its channel; the child gateway and its other agents stay") {
  GatewayUnderTest gw;
  gw.child_gateway(7, "gw2.example.test");
  for (uint32_t child_channel : {3u, 4u}) {
    proto::Open open{proto::Role::agent, proto::AuthMethod::cert, child_channel == 3 ? "web09.example.test" : "web10.example.test", 1, {}, kAgentIncarnation};
    open.hops[0] = "gw2.example.test";
    gw.from_child(7, {child_channel, open});
  }
  const uint32_t up3 = gw.uplinks.queued[0][0].channel;
  const uint32_t up4 = gw.uplinks.queued[0][1].channel;
  gw.from_uplink(0, {up3, proto::OpenOk{0, 500}});
  gw.from_uplink(0, {up4, proto::OpenOk{0, 500}});
  const std::string payload(400, 'x');
  gw.from_child(7, {3, data_of(1, payload)});
  CHECK(gw.uplinks.queued[0].size() == 3);
  gw.from_child(7, {3, data_of(2, payload)});  // 844 bytes > 500
  CHECK_FALSE(gw.children.denied.contains(7));
  CHECK(gw.children.closed.empty());
  REQUIRE(!gw.children.sent[7].empty());
  CHECK(gw.children.sent[7].back().type == proto::FrameType::close);
  CHECK(gw.children.sent[7].back().channel == 3);
  CHECK(gw.children.sent[7].back().reason == proto::Reason::flow_control_violation);
  REQUIRE(gw.uplinks.queued[0].size() == 4);
  CHECK(gw.uplinks.queued[0][3].type == proto::FrameType::close);
  CHECK(gw.uplinks.queued[0][3].channel == up3);
  gw.from_child(7, {4, data_of(1, payload)});
  REQUIRE(gw.uplinks.queued[0].size() == 5);
  CHECK(gw.uplinks.queued[0][4].type == proto::FrameType::data);
  CHECK(gw.uplinks.queued[0][4].channel == up4);
}

TEST_CASE("server role: DATA beyond the granted window is refused (flow_control_violation); within it, it is taken") {
  server::ServerLimits limits;
  limits.channel_window_bytes = 1'024;
  ServerUnderTest server("server-role-test", limits);
  FakeChildren& children = server.children;
  net::Conn& conn = server.authenticate(9, {proto::Role::agent, proto::AuthMethod::cert, "web01.example.test", kAgentIncarnation});
  REQUIRE(children.sent[9].size() == 1);
  CHECK(children.sent[9][0].type == proto::FrameType::hello_ok);
  CHECK(children.sent[9][0].credit == 1'024);
  const std::string payload(400, 'x');  // 422 bytes with the frame's fixed part
  for (uint64_t seq = 1; seq <= 2; ++seq) server.from_child(conn, {0, data_of(seq, payload)});
  CHECK_FALSE(children.denied.contains(9));
  server.from_child(conn, {0, data_of(3, payload)});
  REQUIRE(children.denied.contains(9));
  CHECK(children.denied[9] == proto::Reason::flow_control_violation);
}

TEST_CASE("server role: one agent beyond its window on a gateway's uplink loses its channel, not the uplink") {
  server::ServerLimits limits;
  limits.channel_window_bytes = 1'024;
  ServerUnderTest server("server-role-isolation-test", limits,
                         [](server::Registry& r) { REQUIRE(r.set_gateway("gw1.example.test", true).empty()); });
  FakeChildren& children = server.children;
  net::Conn& uplink = server.authenticate(5, {proto::Role::gateway, proto::AuthMethod::cert, "gw1.example.test", {}});
  REQUIRE_FALSE(children.denied.contains(5));
  for (uint32_t channel : {1u, 2u}) {
    proto::Open open{proto::Role::agent, proto::AuthMethod::cert, channel == 1 ? "web01.example.test" : "web02.example.test", 1, {}, kAgentIncarnation};
    open.hops[0] = "gw1.example.test";
    server.from_child(uplink, {channel, open});
  }
  REQUIRE(children.sent[5].size() == 3);  // HELLO_OK, two OPEN_OKs
  const std::string payload(400, 'x');
  for (uint64_t seq = 1; seq <= 3; ++seq) server.from_child(uplink, {1, data_of(seq, payload)});
  CHECK_FALSE(children.denied.contains(5));
  REQUIRE(children.sent[5].size() == 4);
  CHECK(children.sent[5][3].type == proto::FrameType::close);
  CHECK(children.sent[5][3].channel == 1);
  CHECK(children.sent[5][3].reason == proto::Reason::flow_control_violation);
  server.from_child(uplink, {2, data_of(1, payload)});  // the other agent: taken
  CHECK(children.sent[5].size() == 4);
  server.from_child(uplink, {1, data_of(4, payload)});  // its channel is gone
  REQUIRE(children.sent[5].size() == 5);
  CHECK(children.sent[5][4].reason == proto::Reason::channel_unknown);
  CHECK_FALSE(children.denied.contains(5));
}

TEST_CASE("server role: a gateway uplink bringing new agents past its allowance gets OPEN_DENY overloaded; approved agents still pass") {
  ServerUnderTest server("server-role-new-agents-test", {}, [](server::Registry& r) {
    REQUIRE(r.set_gateway("gw1.example.test", true).empty());
    REQUIRE(r.set_agent("web01.example.test", true).empty());
  }, 3);
  FakeChildren& children = server.children;
  net::Conn& uplink = server.authenticate(5, {proto::Role::gateway, proto::AuthMethod::cert, "gw1.example.test", {}});
  auto open = [&](uint32_t channel, const std::string& name) {
    proto::Open frame{proto::Role::agent, proto::AuthMethod::cert, name, 1, {}, kAgentIncarnation};
    frame.hops[0] = "gw1.example.test";
    server.from_child(uplink, {channel, frame});
    return children.sent[5].back();
  };
  for (uint32_t channel = 1; channel <= 3; ++channel) {
    CHECK(open(channel, "made-up-" + std::to_string(channel) + ".example.test").type == proto::FrameType::open_ok);
  }
  const Recorded refused = open(4, "made-up-4.example.test");  // the bucket is empty; the shard's clock stands still
  CHECK(refused.type == proto::FrameType::open_deny);
  CHECK(refused.reason == proto::Reason::overloaded);
  CHECK(open(5, "web01.example.test").type == proto::FrameType::open_ok);  // approved: never counted
  CHECK_FALSE(children.denied.contains(5));
}

TEST_CASE("server role: one session per agent: a new one replaces the older, direct or through a gateway; the gateway's other agents stay") {
  ServerUnderTest server("server-role-one-session-test", {},
                         [](server::Registry& r) { REQUIRE(r.set_gateway("gw1.example.test", true).empty()); });
  FakeChildren& children = server.children;
  const net::Identity web01{proto::Role::agent, proto::AuthMethod::cert, "web01.example.test", kAgentIncarnation};
  server.authenticate(1, web01);
  server.authenticate(2, web01);  // the same agent again (a reinstalled host, or a stolen identity)
  REQUIRE(children.sent[1].size() == 2);  // HELLO_OK, then sent away
  CHECK(children.sent[1][1].type == proto::FrameType::goaway);
  CHECK(children.closed == std::vector<uint32_t>{1});
  CHECK(children.sent[2].back().type == proto::FrameType::hello_ok);
  server.sessions->on_closed(children, server.shard, children.conns.at(1));  // the gate reports it gone
  children.forget(1);
  // Now through a gateway: the direct session goes.
  net::Conn& uplink = server.authenticate(5, {proto::Role::gateway, proto::AuthMethod::cert, "gw1.example.test", {}});
  auto open = [&](uint32_t channel, const char* name) {
    proto::Open frame{proto::Role::agent, proto::AuthMethod::cert, name, 1, {}, kAgentIncarnation};
    frame.hops[0] = "gw1.example.test";
    server.from_child(uplink, {channel, frame});
  };
  open(3, "web01.example.test");
  open(4, "web02.example.test");
  CHECK(children.sent[2].back().type == proto::FrameType::goaway);
  CHECK(children.closed == std::vector<uint32_t>{1, 2});
  server.sessions->on_closed(children, server.shard, children.conns.at(2));
  children.forget(2);
  // And back to direct: only web01's channel on the uplink closes.
  const size_t before = children.sent[5].size();
  server.authenticate(6, web01);
  REQUIRE(children.sent[5].size() == before + 1);
  CHECK(children.sent[5].back().type == proto::FrameType::close);
  CHECK(children.sent[5].back().channel == 3);
  CHECK_FALSE(children.denied.contains(5));
  const std::string payload(10, 'x');
  server.from_child(uplink, {4, data_of(1, payload)});  // web02 still flows
  CHECK(children.sent[5].size() == before + 1);
  // A session that ended is forgotten: web02 leaving and coming back replaces nothing.
  server.from_child(uplink, {4, proto::Close{proto::Reason::normal}});
  server.authenticate(7, {proto::Role::agent, proto::AuthMethod::cert, "web02.example.test", kAgentIncarnation});
  CHECK(children.sent[5].size() == before + 1);
  CHECK(children.sent[7].back().type == proto::FrameType::hello_ok);
}

TEST_CASE("server role: every gateway on a path is approved, the last is the uplink's own, the others were admitted through it") {
  ServerUnderTest server("server-role-chain-test", {}, [](server::Registry& r) {
    REQUIRE(r.set_gateway("gw1.example.test", true, "dmz").empty());
    REQUIRE(r.set_gateway("gw2.example.test", true, "dmz").empty());
    REQUIRE(r.set_gateway("gw1b.example.test", true, "dmz").empty());
  });
  FakeChildren& children = server.children;
  net::Conn& uplink = server.authenticate(5, {proto::Role::gateway, proto::AuthMethod::cert, "gw1.example.test", {}});
  auto open = [&](uint32_t channel, proto::Role role, const char* name, std::vector<const char*> hops) {
    proto::Open frame{role, proto::AuthMethod::cert, name, static_cast<uint8_t>(hops.size()), {}, {}};
    for (size_t i = 0; i < hops.size(); ++i) frame.hops[i] = hops[i];
    server.from_child(uplink, {channel, frame});
    return children.sent[5].back();
  };
  using proto::Role;
  const char* gw1 = "gw1.example.test";
  const char* gw2 = "gw2.example.test";
  // An agent "behind" gw2 before gw2 was admitted through this uplink, or behind an unapproved gateway,
  // or on a path that does not end with gw1 (gw1 forging another approved gateway's traffic).
  CHECK(open(1, Role::agent, "web09.example.test", {gw2, gw1}).reason == proto::Reason::not_approved);
  CHECK(open(2, Role::agent, "web09.example.test", {"gw3.example.test", gw1}).reason == proto::Reason::not_approved);
  CHECK(open(3, Role::agent, "web09.example.test", {"gw1b.example.test"}).reason == proto::Reason::not_approved);
  CHECK(open(4, Role::gateway, "gw3.example.test", {gw1}).reason == proto::Reason::not_approved);  // unapproved chained gateway
  const Recorded admitted = open(5, Role::gateway, gw2, {gw1});
  CHECK(admitted.type == proto::FrameType::open_ok);
  CHECK(open(6, Role::agent, "web09.example.test", {gw2, gw1}).type == proto::FrameType::open_ok);
  // The admission carries no events: DATA on it closes it, and gw2's paths are refused again.
  server.from_child(uplink, {5, data_of(1, "x")});
  CHECK(children.sent[5].back().type == proto::FrameType::close);
  CHECK(children.sent[5].back().channel == 5);
  CHECK(open(7, Role::agent, "web10.example.test", {gw2, gw1}).reason == proto::Reason::not_approved);
  CHECK_FALSE(children.denied.contains(5));
}

TEST_CASE("server role: incarnations: events come after one; a new one begins after the last seq (or below it: restored); never a rewind onto the same") {
  ServerUnderTest server("server-role-incarnation-test", {},
                         [](server::Registry& r) { REQUIRE(r.set_gateway("gw1.example.test", true).empty()); });
  FakeChildren& children = server.children;
  net::Conn& uplink = server.authenticate(5, {proto::Role::gateway, proto::AuthMethod::cert, "gw1.example.test", {}});
  const std::vector<proto::Incarnation> announced{{}, {}, kAgentIncarnation, {0xbee, 40}};
  for (uint32_t channel = 1; channel <= announced.size(); ++channel) {
    proto::Open open{proto::Role::agent, proto::AuthMethod::cert, "", 1, {}, announced[channel - 1]};
    const std::string name = "web0" + std::to_string(channel) + ".example.test";
    open.name = name;
    open.hops[0] = "gw1.example.test";
    server.from_child(uplink, {channel, open});
  }
  REQUIRE(children.sent[5].size() == 5);
  CHECK(children.sent[5][4].type == proto::FrameType::open_ok);  // an incarnation the store has none of: its base
  const auto first = proto::incarnation_payload(0xf1);
  const auto second = proto::incarnation_payload(0xf2);
  const std::string payload = "x";
  // Channel 1 (no event yet): an event before any incarnation is refused.
  server.from_child(uplink, {1, data_of(1, payload)});
  CHECK(children.sent[5].back().type == proto::FrameType::close);
  CHECK(children.sent[5].back().channel == 1);
  CHECK(children.sent[5].back().reason == proto::Reason::protocol_error);
  // Channel 2: begins 0xf1 after seq 0, sends 1..3, then 0xf2 after 3, then 4.
  size_t before = children.sent[5].size();
  server.from_child(uplink, {2, proto::Data{0, proto::DataKind::incarnation, first}});
  for (uint64_t seq = 1; seq <= 3; ++seq) server.from_child(uplink, {2, data_of(seq, payload)});
  server.from_child(uplink, {2, proto::Data{3, proto::DataKind::incarnation, second}});
  server.from_child(uplink, {2, data_of(4, payload)});
  CHECK_FALSE(server.sessions->idle());  // the four events wait for the store
  for (const Recorded& sent : std::span(children.sent[5]).subspan(before)) {
    CHECK(sent.type == proto::FrameType::credit);  // each incarnation DATA's window back at once; nothing closed
  }
  // ... and may not begin one after a seq it has not sent, nor the same one again.
  server.from_child(uplink, {2, proto::Data{9, proto::DataKind::incarnation, first}});
  CHECK(children.sent[5].back().type == proto::FrameType::close);
  CHECK(children.sent[5].back().channel == 2);
  // Channel 3 (announced 0xa11ce, at seq 2): a restored queue begins anew below what was sent.
  server.from_child(uplink, {3, data_of(1, payload)});
  server.from_child(uplink, {3, data_of(2, payload)});
  before = children.sent[5].size();
  server.from_child(uplink, {3, proto::Data{1, proto::DataKind::incarnation, first}});
  server.from_child(uplink, {3, data_of(2, payload)});
  CHECK(children.sent[5].size() == before + 1);  // the CREDIT only
  server.from_child(uplink, {3, proto::Data{2, proto::DataKind::incarnation, first}});  // the same one again
  CHECK(children.sent[5].back().type == proto::FrameType::close);
  CHECK(children.sent[5].back().channel == 3);
  // Channel 4 (announced 0xbee after 40): its events go on from 41.
  before = children.sent[5].size();
  server.from_child(uplink, {4, data_of(41, payload)});
  CHECK(children.sent[5].size() == before);
  server.from_child(uplink, {4, data_of(43, payload)});
  CHECK(children.sent[5].back().type == proto::FrameType::close);
  CHECK(children.sent[5].back().channel == 4);
  CHECK_FALSE(children.denied.contains(5));
}

TEST_CASE("server role: DATA only in order: a jump or a rewind closes that agent's channel (a direct agent: DENY); a declared gap is taken and counted") {
  ServerUnderTest server("server-role-order-test", {},
                         [](server::Registry& r) { REQUIRE(r.set_gateway("gw1.example.test", true).empty()); });
  FakeChildren& children = server.children;
  net::Conn& uplink = server.authenticate(5, {proto::Role::gateway, proto::AuthMethod::cert, "gw1.example.test", {}});
  for (uint32_t channel : {1u, 2u, 3u}) {
    proto::Open open{proto::Role::agent, proto::AuthMethod::cert, "", 1, {}, kAgentIncarnation};
    const std::string name = "web0" + std::to_string(channel) + ".example.test";
    open.name = name;
    open.hops[0] = "gw1.example.test";
    server.from_child(uplink, {channel, open});
  }
  const std::string payload = "x";
  server.from_child(uplink, {1, data_of(1, payload)});
  server.from_child(uplink, {1, data_of(1'000'000'000'000, payload)});  // seq poisoning: a jump
  CHECK(children.sent[5].back().type == proto::FrameType::close);
  CHECK(children.sent[5].back().channel == 1);
  CHECK(children.sent[5].back().reason == proto::Reason::protocol_error);
  server.from_child(uplink, {2, data_of(1, payload)});
  server.from_child(uplink, {2, data_of(2, payload)});
  server.from_child(uplink, {2, data_of(1, payload)});  // a rewind
  CHECK(children.sent[5].back().channel == 2);
  CHECK(children.sent[5].back().type == proto::FrameType::close);
  const size_t before = children.sent[5].size();
  server.from_child(uplink, {3, proto::Data{5, proto::DataKind::gap, {}}});  // 1..5 dropped by its queue
  server.from_child(uplink, {3, data_of(6, payload)});
  server.from_child(uplink, {3, proto::Data{4, proto::DataKind::gap, {}}});  // a gap behind what was sent: a rewind
  CHECK(children.sent[5].size() == before + 1);
  CHECK(children.sent[5].back().channel == 3);
  CHECK_FALSE(children.denied.contains(5));
  // A direct agent's jump is its own session's end.
  net::Conn& direct = server.authenticate(9, {proto::Role::agent, proto::AuthMethod::cert, "web09.example.test", kAgentIncarnation});
  server.from_child(direct, {0, data_of(2, payload)});
  CHECK(children.denied[9] == proto::Reason::protocol_error);
}

TEST_CASE("server role: a deleted approval ends the live sessions it covered at the next turn: an agent's channel, a chained gateway's admission, a direct agent, a gateway's whole uplink") {
  ServerUnderTest server("server-role-revocation-test", {}, [](server::Registry& r) {
    for (const char* gateway : {"gw1.example.test", "gw2.example.test"}) REQUIRE(r.set_gateway(gateway, true, "dmz").empty());
    for (const char* agent : {"web01.example.test", "web02.example.test", "web03.example.test"}) {
      REQUIRE(r.set_agent(agent, true).empty());
    }
  });
  server.reload_approval(config::AgentApproval::review);
  FakeChildren& children = server.children;
  net::Conn& uplink = server.authenticate(5, {proto::Role::gateway, proto::AuthMethod::cert, "gw1.example.test", {}});
  auto open = [&](uint32_t channel, proto::Role role, const char* name) {
    proto::Open frame{role, proto::AuthMethod::cert, name, 1, {}, {}};
    frame.hops[0] = "gw1.example.test";
    server.from_child(uplink, {channel, frame});
    REQUIRE(children.sent[5].back().type == proto::FrameType::open_ok);
  };
  open(1, proto::Role::gateway, "gw2.example.test");
  open(2, proto::Role::agent, "web01.example.test");
  open(3, proto::Role::agent, "web02.example.test");
  server.authenticate(9, {proto::Role::agent, proto::AuthMethod::cert, "web03.example.test", kAgentIncarnation});
  REQUIRE_FALSE(children.denied.contains(9));

  std::string why;
  auto operator_cli = server::Registry::open(server.dir.path, why);  // `gatehouse approve` in another process
  REQUIRE_MESSAGE(operator_cli != nullptr, why);
  server.registry->watch([] { return uint32_t{10}; });
  // Waits for the deletion itself to be in force (`name` gone), not for any
  // new version: the watcher's first inventory write (bindings on first use)
  // makes one too, and once made the shard saw the old approvals.
  auto after_delete = [&](const std::function<void()>& edit, const std::string& name) {
    edit();
    REQUIRE(wait_until(
        [&] {
          const auto approvals = server.registry->approvals();
          return !approvals->agents.contains(name) && !approvals->gateways.contains(name);
        },
        std::chrono::seconds(5)));
    server.sessions->on_turn_end(children, server.shard);
  };
  after_delete([&] { REQUIRE(operator_cli->set_agent("web01.example.test", false).empty()); }, "web01.example.test");
  CHECK(children.sent[5].back().type == proto::FrameType::close);
  CHECK(children.sent[5].back().channel == 2);
  CHECK(children.sent[5].back().reason == proto::Reason::not_approved);
  CHECK(uplink.role.channels.contains(3));  // web02's channel stays
  after_delete([&] { REQUIRE(operator_cli->set_gateway("gw2.example.test", false).empty()); }, "gw2.example.test");
  CHECK(children.sent[5].back().channel == 1);
  CHECK(children.sent[5].back().reason == proto::Reason::not_approved);
  after_delete([&] { REQUIRE(operator_cli->set_agent("web03.example.test", false).empty()); }, "web03.example.test");
  CHECK(children.denied[9] == proto::Reason::not_approved);
  CHECK_FALSE(children.denied.contains(5));
  after_delete([&] { REQUIRE(operator_cli->set_gateway("gw1.example.test", false).empty()); }, "gw1.example.test");
  CHECK(children.denied[5] == proto::Reason::not_approved);
}

TEST_CASE("server role: trust scopes: an agent comes only through its tier (or directly) with its auth method; a chain is one tier; unbound agents bind at their first session") {
  ServerUnderTest server("server-role-tiers-test", {}, [](server::Registry& r) {
    REQUIRE(r.set_gateway("gw1.example.test", true, "dmz").empty());
    REQUIRE(r.set_gateway("gw2.example.test", true, "dmz").empty());
    REQUIRE(r.set_gateway("gw3.example.test", true).empty());  // a tier of its own
    REQUIRE(r.set_agent("web01.example.test", true, {"dmz", "cert"}).empty());
    REQUIRE(r.set_agent("direct01.example.test", true, {std::string(server::kDirectScope), ""}).empty());
    REQUIRE(r.set_agent("krb01.example.test", true, {"", "kerberos"}).empty());
    REQUIRE(r.set_agent("new01.example.test", true).empty());  // unbound
  });
  server.reload_approval(config::AgentApproval::review);
  FakeChildren& children = server.children;
  net::Conn& gw1 = server.authenticate(5, {proto::Role::gateway, proto::AuthMethod::cert, "gw1.example.test", {}});
  net::Conn& gw3 = server.authenticate(6, {proto::Role::gateway, proto::AuthMethod::cert, "gw3.example.test", {}});
  auto open = [&](net::Conn& uplink, uint32_t channel, proto::Role role, proto::AuthMethod auth, const char* name,
                  std::vector<const char*> hops) {
    proto::Open frame{role, auth, name, static_cast<uint8_t>(hops.size()), {}, {}};
    for (size_t i = 0; i < hops.size(); ++i) frame.hops[i] = hops[i];
    server.from_child(uplink, {channel, frame});
    return children.sent[uplink.id.index].back();
  };
  using proto::AuthMethod;
  using proto::Role;
  const char* gw1_name = "gw1.example.test";
  const char* gw3_name = "gw3.example.test";
  CHECK(open(gw1, 1, Role::agent, AuthMethod::cert, "web01.example.test", {gw1_name}).type == proto::FrameType::open_ok);
  // gw3 is approved, but not web01's tier: it cannot speak for web01, nor for a direct agent.
  CHECK(open(gw3, 1, Role::agent, AuthMethod::cert, "web01.example.test", {gw3_name}).reason == proto::Reason::not_approved);
  CHECK(open(gw3, 2, Role::agent, AuthMethod::cert, "direct01.example.test", {gw3_name}).reason == proto::Reason::not_approved);
  CHECK(open(gw1, 2, Role::agent, AuthMethod::kerberos, "direct01.example.test", {gw1_name}).reason == proto::Reason::not_approved);
  // Approved with Kerberos: an OPEN claiming cert is refused, Kerberos taken (its tier binds now).
  CHECK(open(gw1, 3, Role::agent, AuthMethod::cert, "krb01.example.test", {gw1_name}).reason == proto::Reason::not_approved);
  CHECK(open(gw1, 4, Role::agent, AuthMethod::kerberos, "krb01.example.test", {gw1_name}).type == proto::FrameType::open_ok);
  // A chain is one tier: gw3 may not chain below gw1.
  CHECK(open(gw1, 5, Role::gateway, AuthMethod::cert, gw3_name, {gw1_name}).reason == proto::Reason::not_approved);
  CHECK(open(gw1, 6, Role::gateway, AuthMethod::cert, "gw2.example.test", {gw1_name}).type == proto::FrameType::open_ok);
  // A direct agent bound to direct connection: its own session is taken.
  server.authenticate(9, {Role::agent, AuthMethod::cert, "direct01.example.test", kAgentIncarnation});
  CHECK_FALSE(children.denied.contains(9));
  // An unbound agent binds to how its first session came (written by the registry thread).
  server.registry->watch([] { return uint32_t{10}; });
  CHECK(open(gw3, 3, Role::agent, AuthMethod::cert, "new01.example.test", {gw3_name}).type == proto::FrameType::open_ok);
  REQUIRE(wait_until([&] { return server.registry->approvals()->agents.at("new01.example.test").scope == "gw3.example.test"; },
                     std::chrono::seconds(5)));
  server.sessions->on_turn_end(children, server.shard);
  CHECK(open(gw1, 7, Role::agent, AuthMethod::cert, "new01.example.test", {gw1_name}).reason == proto::Reason::not_approved);
  std::vector<server::AgentRecord> records = server.registry->agents(false);
  const auto krb01 = std::find_if(records.begin(), records.end(), [](const auto& r) { return r.name == "krb01.example.test"; });
  REQUIRE(krb01 != records.end());
  CHECK(krb01->binding == server::AgentBinding{"dmz", "kerberos"});
}

TEST_CASE("gateway role: agents' pings and a chained gateway's HEARTBEATS go up as one HEARTBEATS per uplink and round") {
  GatewayUnderTest gw;
  gw.uplinks.parent_heartbeat_s = 20;  // the group's interval, shorter than ours (60): the children are told 20
  gw.agent(5, "web05.example.test");
  const uint32_t web05 = gw.uplinks.queued[0].back().channel;
  gw.from_uplink(0, {web05, proto::OpenOk{0, 65'536}});
  CHECK(gw.children.sent[5].back().interval_s == 20);
  gw.agent(6, "web06.example.test");
  const uint32_t web06 = gw.uplinks.queued[0].back().channel;
  gw.from_uplink(0, {web06, proto::OpenOk{0, 65'536}});
  gw.child_gateway(7, "gw2.example.test");
  const uint32_t gw2 = gw.children.conns.at(7).role.channels.at(0).uplink_channel;
  proto::Open web09{proto::Role::agent, proto::AuthMethod::cert, "web09.example.test", 1, {}, kAgentIncarnation};
  web09.hops[0] = "gw2.example.test";
  gw.from_child(7, {3, web09});
  const uint32_t web09_up = gw.uplinks.queued[0].back().channel;
  gw.from_uplink(0, {web09_up, proto::OpenOk{0, 65'536}});

  gw.from_child(5, {0, proto::Ping{1}});
  gw.from_child(5, {0, proto::Ping{2}});  // twice in a round: listed once
  gw.from_child(6, {0, proto::Ping{3}});
  std::vector<std::byte> below;
  for (uint32_t channel : {3u, 99u}) proto::append_heartbeat_channel(below, channel);  // 99: not open (closed meanwhile)
  gw.from_child(7, {0, proto::Heartbeats{below}});
  gw.from_child(7, {0, proto::Ping{4}});  // the chained gateway's own, for its admission
  const size_t before = gw.uplinks.queued[0].size();
  gw.sessions.report_heartbeats(gw.shard);
  REQUIRE(gw.uplinks.queued[0].size() == before + 1);
  const Recorded report = gw.uplinks.queued[0].back();
  CHECK(report.type == proto::FrameType::heartbeats);
  CHECK(report.channel == 0);
  CHECK(report.channels == std::vector<uint32_t>{web05, web06, web09_up, gw2});
  gw.sessions.report_heartbeats(gw.shard);  // nothing heard since: no frame
  CHECK(gw.uplinks.queued[0].size() == before + 1);
  gw.from_child(6, {0, proto::Ping{5}});
  gw.sessions.report_heartbeats(gw.shard);
  CHECK(gw.uplinks.queued[0].back().channels == std::vector<uint32_t>{web06});
  // An agent has no channels of its own to report: HEARTBEATS from it is a violation.
  gw.from_child(5, {0, proto::Heartbeats{below}});
  CHECK(gw.children.denied[5] == proto::Reason::protocol_error);
}
