// AgentHealth's verdicts on a real registry (SQLite in a temp folder), with
// the check's clock driven by the test: down only past interval × missed, up
// again when heard, and no verdict on an agent another server of the group
// heard later (it failed over).
#include <doctest/doctest.h>

#include <ctime>

#include "gatehouse/runtime/runtime.h"
#include "gatehouse/server/agent_health.h"
#include "test_support.h"

using namespace gatehouse;
using namespace gatehouse::server;

namespace {

int64_t steady_ms() { return static_cast<int64_t>(runtime::steady_ms()); }  // AgentHealth's clock

AgentRecord find(Registry& registry, const std::string& name) {
  for (const AgentRecord& agent : registry.agents(false)) {
    if (agent.name == name) return agent;
  }
  return {};
}

config::Config health_config(uint32_t interval_s, uint32_t missed_max) {
  config::Config config;
  config.timeouts.heartbeat_interval_s = interval_s;
  config.timeouts.heartbeats_missed_max = missed_max;
  return config;
}

}  // namespace

TEST_CASE("agent health: down past interval × missed (recorded), up when heard again") {
  testing::TempDir dir("gatehouse-health-test");
  std::string why;
  auto registry = Registry::open(dir.path, why);
  REQUIRE(registry != nullptr);
  REQUIRE(registry->set_agent("web1.example.test", true).empty());
  config::LiveSettings live(health_config(2, 3));
  AgentHealth health(live);
  std::vector<HeardNote> notes{{PeerKind::agent, "web1.example.test", "gw1.example.test"}};
  health.heard(notes);
  CHECK(notes.empty());
  const int64_t start_ms = steady_ms();
  health.check(start_ms + 5'000, *registry);  // 5 s silent: within 3 × 2 s
  CHECK(health.counts().agents_up == 1);
  CHECK(health.counts().agents_down == 0);
  AgentRecord record = find(*registry, "web1.example.test");
  CHECK(record.health == "up");
  CHECK(record.path == "gw1.example.test");
  CHECK(record.last_heartbeat_unix_s >= std::time(nullptr) - 5);

  health.check(start_ms + 6'500, *registry);  // past 6 s: down, and the registry says so
  CHECK(health.counts().agents_down == 1);
  CHECK(find(*registry, "web1.example.test").health == "down");

  notes = {{PeerKind::agent, "web1.example.test", ""}};
  health.heard(notes);
  health.check(start_ms + 7'000, *registry);
  CHECK(health.counts().agents_up == 1);
  CHECK(health.counts().agents_down == 0);
  record = find(*registry, "web1.example.test");
  CHECK(record.health == "up");
  CHECK(record.path == "");  // it came back direct
}

TEST_CASE("agent health: no verdict on an agent another server heard later; gateways are watched alike") {
  testing::TempDir dir("gatehouse-health-test");
  std::string why;
  auto registry = Registry::open(dir.path, why);
  REQUIRE(registry != nullptr);
  REQUIRE(registry->set_agent("web2.example.test", true).empty());
  REQUIRE(registry->set_gateway("gw1.example.test", true).empty());
  config::LiveSettings live(health_config(1, 2));
  AgentHealth health(live);
  std::vector<HeardNote> notes{{PeerKind::agent, "web2.example.test", ""}, {PeerKind::gateway, "gw1.example.test", ""}};
  health.heard(notes);
  // Another server of the group heard web2 after us (it failed over there).
  registry->write_heartbeats(false, {{"web2.example.test", std::time(nullptr) + 10, "up", "gw9.example.test"}});
  health.check(steady_ms() + 3'000, *registry);
  const AgentHealth::Counts counts = health.counts();
  CHECK(counts.agents_down == 0);
  CHECK(counts.agents_up == 0);  // no longer ours to watch
  CHECK(counts.gateways_down == 1);
  CHECK(find(*registry, "web2.example.test").health == "up");
}

TEST_CASE("agent health: a reload's new heartbeats_missed_max applies at the next check") {
  testing::TempDir dir("gatehouse-health-test");
  std::string why;
  auto registry = Registry::open(dir.path, why);
  REQUIRE(registry != nullptr);
  REQUIRE(registry->set_agent("web1.example.test", true).empty());
  config::LiveSettings live(health_config(2, 3));
  AgentHealth health(live);
  std::vector<HeardNote> notes{{PeerKind::agent, "web1.example.test", ""}};
  health.heard(notes);
  const int64_t start_ms = steady_ms();
  live.apply(health_config(2, 10));  // SIGHUP: 20 s of silence before down
  health.check(start_ms + 7'000, *registry);  // past the old 6 s, within the new 20 s
  CHECK(health.counts().agents_down == 0);
  health.check(start_ms + 20'500, *registry);
  CHECK(health.counts().agents_down == 1);
}
