// Config loading: the contract keys of brief §2, and a precise error (file,
// line, key) for every way a file can be wrong.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gatehouse/config/config.h"
#include "gatehouse/runtime/runtime.h"

using namespace gatehouse::config;
namespace fs = std::filesystem;

namespace {

// A temp folder holding a config and the files it points at.
class ConfigDir {
 public:
  ConfigDir() {
    char pattern[] = "/tmp/gatehouse-config-test-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    dir_ = pattern;
    for (const char* file : {"gw1.crt", "gw1.key", "ca.crt", "crl.pem", "gw1.keytab", "agent.keytab", "ms1.crt", "ms1.key",
                             "web01.crt", "web01.key", "web02.keytab"}) {
      std::ofstream(dir_ / file) << "x";
    }
  }
  ~ConfigDir() { fs::remove_all(dir_); }

  std::string write(const std::string& text, const std::string& name = "test.toml") {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  fs::path dir_;
};

const char* const kTls = R"(
[tls]
cert = "gw1.crt"
key = "gw1.key"
ca = "ca.crt"
)";

const std::string kGateway = std::string(R"(name = "gw1.example.test"
listen = "0.0.0.0:5723"
[[parents]]
address = "ms1.example.test:5723"
name = "ms1.example.test"
[[parents]]
address = "[::1]:5724"
name = "ms2.example.test"
)") + kTls;

std::string joined(const std::vector<ConfigError>& errors) {
  std::string text;
  for (const ConfigError& e : errors) text += format(e) + "\n";
  return text;
}

// Loads `text` and expects exactly one error, on `line` and `key`, containing `fragment`.
void expect_one_error(ConfigDir& dir, const std::string& text, std::optional<Role> role, uint32_t line,
                      const std::string& key, const std::string& fragment) {
  Config config;
  const auto errors = load(dir.write(text), role, config);
  INFO(joined(errors));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].line == line);
  CHECK(errors[0].key == key);
  CHECK(errors[0].message.find(fragment) != std::string::npos);
}

}  // namespace

TEST_CASE("a gateway config loads into typed fields, paths resolved against its folder") {
  ConfigDir dir;
  Config config;
  const auto errors = load(dir.write(kGateway + "[kerberos]\nkeytab = \"gw1.keytab\"\n[runtime]\nshards = 2\n"
                                                "auth_threads = 3\n[admin]\nlisten = \"127.0.0.1:9800\"\n"),
                           Role::gateway, config);
  INFO(joined(errors));
  REQUIRE(errors.empty());
  CHECK(config.role == Role::gateway);
  CHECK(config.name == "gw1.example.test");
  CHECK(config.listen.port == 5723);
  REQUIRE(config.parents.size() == 2);
  CHECK(config.parents[0].address.host == "ms1.example.test");
  CHECK(config.parents[1].address.host == "::1");
  CHECK(config.parents[1].address.port == 5724);
  CHECK(config.tls.cert_path == dir.path("gw1.crt"));
  CHECK(config.tls.crl_path.empty());
  CHECK(config.kerberos.enabled);
  CHECK(config.kerberos.keytab_path == dir.path("gw1.keytab"));
  CHECK(config.kerberos.service == "gatehouse");
  CHECK(config.runtime.shards == 2);
  CHECK(config.auth_threads == 3);
  CHECK(config.admin_listen.port == 9800);
}

TEST_CASE("defaults a user would expect") {
  ConfigDir dir;
  Config config;
  REQUIRE(load(dir.write("name = \"ms1\"\ndata_dir = \"data\"\n" + std::string(kTls)), std::nullopt, config).empty());
  CHECK(config.role == Role::server);  // inferred from data_dir
  CHECK(config.listen.text == "0.0.0.0:5723");
  CHECK(config.admin_listen.text == "127.0.0.1:9723");
  CHECK(config.runtime.shards == 0);
  CHECK(config.runtime.connections_per_shard == 16'384);
  CHECK_FALSE(config.runtime.pin_shards);
  CHECK(config.runtime.shard_nice == -10);  // the data path outranks the auth threads
  CHECK(config.auth_threads == 1);
  CHECK(config.agent_approval == AgentApproval::reject);
  CHECK(config.data_dir == dir.path("data"));
}

TEST_CASE("the store's backend, dsn and retention, each refused where it does not fit") {
  ConfigDir dir;
  const std::string server = "name = \"ms1\"\ndata_dir = \"data\"\n" + std::string(kTls);
  Config config;
  REQUIRE(load(dir.write(server), std::nullopt, config).empty());
  CHECK(config.store_backend == StoreBackend::local);
  CHECK(config.timeouts.failback_s == 60);
  Config group;
  const auto errors = load(dir.write(server + "[store]\nbackend = \"postgresql\"\ndsn = \"host=db1 dbname=g\"\n"
                                     "retention_days = 30\n"),
                           std::nullopt, group);
  INFO(joined(errors));
  REQUIRE(errors.empty());
  CHECK(group.store_backend == StoreBackend::postgresql);
  CHECK(group.store_dsn == "host=db1 dbname=g");
  CHECK(group.store.retention_days == 30);
  const size_t store_line = static_cast<size_t>(std::count(server.begin(), server.end(), '\n')) + 1;
  expect_one_error(dir, server + "[store]\nbackend = \"postgresql\"\n", Role::server, store_line, "store.dsn",
                   "needs a libpq connection string");
  expect_one_error(dir, server + "[store]\ndsn = \"host=db1\"\n", Role::server, store_line, "store.dsn",
                   "only with backend = \"postgresql\"");
  Config local;
  REQUIRE(load(dir.write(server + "[store]\nretention_days = 7\nretention_max_bytes = 1073741824\n"), std::nullopt, local)
              .empty());
  CHECK(local.store.retention_days == 7);
  CHECK(local.store.retention_max_bytes == 1073741824);
  expect_one_error(dir, server + "[store]\nretention_max_bytes = 1048576\n", Role::server, store_line,
                   "store.retention_max_bytes", "at least twice segment_max_bytes (67108864)");
  expect_one_error(dir,
                   server + "[store]\nbackend = \"postgresql\"\ndsn = \"host=db1\"\nretention_max_bytes = 1073741824\n",
                   Role::server, store_line, "store.retention_max_bytes", "only with backend = \"local\"");
  expect_one_error(dir, server + "[store]\nbackend = \"oracle\"\n", Role::server, store_line + 1, "store.backend",
                   "one of local|postgresql");
}

TEST_CASE("agent configs: cert needs TLS files; Kerberos needs a keytab and no CA") {
  ConfigDir dir;
  Config config;
  const std::string gateways = "name = \"web01.example.test\"\nqueue_dir = \"/var/tmp/q\"\n"
                               "[[gateways]]\naddress = \"127.0.0.1:5723\"\nname = \"gw1.example.test\"\n";
  auto errors = load(dir.write(gateways + kTls), Role::agent, config);
  INFO(joined(errors));
  CHECK(errors.empty());
  CHECK(config.auth == AgentAuth::cert);
  CHECK(config.queue_max_bytes == 15ull * 1024 * 1024);
  CHECK(config.runtime.shard_nice == 0);  // an agent keeps its host's priority

  errors = load(dir.write("auth = \"kerberos\"\n" + gateways + "[kerberos]\nkeytab = \"agent.keytab\"\n"), Role::agent, config);
  INFO(joined(errors));
  CHECK(errors.empty());
  CHECK(config.auth == AgentAuth::kerberos);
  CHECK(config.tls.ca_path.empty());

  expect_one_error(dir, "auth = \"kerberos\"\n" + gateways, Role::agent, 0, "kerberos", "keytab");
  expect_one_error(dir, gateways, Role::agent, 0, "tls", "missing table [tls]");
}

TEST_CASE("unknown keys are refused with their line and the keys that are known") {
  ConfigDir dir;
  expect_one_error(dir, kGateway + "[runtime]\nshards = 1\nshard = 2\n", Role::gateway, 16, "runtime.shard",
                   "unknown key (known here: shards, auth_threads, connections_per_shard, recv_buffers");
  expect_one_error(dir, "nmae = \"x\"\n" + kGateway, Role::gateway, 1, "nmae", "unknown key");
  expect_one_error(dir, kGateway + "[tls2]\n", Role::gateway, 14, "tls2", "unknown key");
  expect_one_error(dir, "trusted_relays = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n" + kGateway, Role::gateway, 1,
                   "trusted_relays", "'10.0.0.0/33': the prefix length must be 0 to 32");
  expect_one_error(dir, "trusted_relays = [\"relay.example.test\"]\n" + kGateway, Role::gateway, 1, "trusted_relays",
                   "is not an IP address or address/prefix");
}

TEST_CASE("wrong types, bad values and bad names are refused precisely") {
  ConfigDir dir;
  expect_one_error(dir, "name = 5\n" + kGateway.substr(kGateway.find('\n') + 1), Role::gateway, 1, "name",
                   "must be a string, not an integer");
  expect_one_error(dir, kGateway + "[runtime]\nshards = \"two\"\n", Role::gateway, 15, "runtime.shards",
                   "must be an integer");
  expect_one_error(dir, kGateway + "[runtime]\nshards = 999\n", Role::gateway, 15, "runtime.shards",
                   "between 0 and 256");
  expect_one_error(dir, kGateway + "[runtime]\nrecv_buffers = 1000\n", Role::gateway, 15, "runtime.recv_buffers",
                   "must be a power of two, not 1000");
  expect_one_error(dir, kGateway + "[runtime]\npin_shards = 1\n", Role::gateway, 15, "runtime.pin_shards",
                   "must be true or false, not an integer");
  expect_one_error(dir, kGateway + "[runtime]\nshard_nice = -25\n", Role::gateway, 15, "runtime.shard_nice",
                   "between -20 and 19, not -25");
  expect_one_error(dir, kGateway + "[log]\nlevel = \"loud\"\n", Role::gateway, 15, "log.level",
                   "one of debug|info|warning|error");
  expect_one_error(dir, "name = \"gw 1\"\n" + kGateway.substr(kGateway.find('\n') + 1), Role::gateway, 1,
                   "name", "name_invalid_char");
  expect_one_error(dir, kGateway + "[approval]\nagents = \"auto\"\n", Role::gateway, 14, "approval",
                   "not used by role gateway (only server)");
  expect_one_error(dir, "name = \"ms1\"\ndata_dir = \"d\"\n[approval]\nagents = \"maybe\"\n" + std::string(kTls),
                   Role::server, 4, "approval.agents", "one of reject|review|auto");
}

TEST_CASE("invalid addresses say what is wrong") {
  ConfigDir dir;
  const std::string rest = kGateway.substr(kGateway.find('\n', kGateway.find("listen")) + 1);
  const struct {
    const char* listen;
    const char* fragment;
  } cases[] = {
      {"0.0.0.0", "missing :port"},
      {"0.0.0.0:70000", "port must be a number from 0 to 65535"},
      {"0.0.0.0:http", "port must be a number"},
      {"::1:5723", "IPv6 addresses need brackets"},
      {"[::1:5723", "expected [IPv6]:port"},
      {"[gw1]:5723", "is not an IPv6 address"},
      {"gw1.example.test:5723", "must be an IP literal"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.listen);
    expect_one_error(dir, "name = \"gw1\"\nlisten = \"" + std::string(c.listen) + "\"\n" + rest, Role::gateway, 2,
                     "listen", c.fragment);
  }
  expect_one_error(dir, kGateway + "[[parents]]\naddress = \"bad host!:5723\"\nname = \"ms3\"\n", Role::gateway, 15,
                   "parents[2].address", "neither an IP address nor a host name");
}

TEST_CASE("file-level problems: missing file, syntax error, unreadable referenced files") {
  ConfigDir dir;
  Config config;
  auto errors = load(dir.path("absent.toml"), Role::gateway, config);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].message == "cannot open config file: No such file or directory");

  errors = load(dir.write("name = \"gw1\"\nlisten = \n"), Role::gateway, config);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].line == 2);
  CHECK(errors[0].message.find("TOML syntax error") == 0);

  std::string text = kGateway;
  text.replace(text.find("gw1.crt"), 7, "missing.crt");
  expect_one_error(dir, text, Role::gateway, 11, "tls.cert", "cannot read '" + dir.path("missing.crt") + "'");
}

TEST_CASE("role: from the key, the caller, or the tables present; conflicts refused") {
  ConfigDir dir;
  Config config;
  CHECK(load(dir.write("role = \"gateway\"\n" + kGateway), std::nullopt, config).empty());
  expect_one_error(dir, "role = \"gateway\"\n" + kGateway, Role::server, 1, "role", "for role gateway, not server");
  expect_one_error(dir, "role = \"proxy\"\n" + kGateway, std::nullopt, 1, "role", "gateway|server|agent");
  expect_one_error(dir, "name = \"x\"\n", std::nullopt, 0, "role", "cannot tell the role");
  Config gateway;
  const auto errors = load(dir.write("name = \"gw1\"\n" + std::string(kTls)), Role::gateway, gateway);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].key == "parents");
}

TEST_CASE("several problems are all reported at once") {
  ConfigDir dir;
  Config config;
  const auto errors = load(dir.write("listen = \"x\"\nfoo = 1\n[[parents]]\naddress = \"a:1\"\n"), Role::gateway, config);
  INFO(joined(errors));
  REQUIRE(errors.size() == 5);  // each problem once, in file order where it has a line
  CHECK(errors[0].key == "name");
  CHECK(errors[0].line == 0);
  CHECK(errors[1].key == "listen");
  CHECK(errors[2].key == "parents[0].name");
  CHECK(errors[3].key == "tls");
  CHECK(errors[4].key == "foo");
}

TEST_CASE("the example configs in examples/ are valid") {
  ConfigDir dir;
  for (const char* example : {"gateway.toml", "server.toml", "agent-cert.toml", "agent-kerberos.toml"}) {
    CAPTURE(example);
    std::ifstream in(std::string(GATEHOUSE_TEST_SOURCE_ROOT) + "/examples/" + example);
    REQUIRE(in.good());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Config config;
    const auto errors = load(dir.write(text, example), std::nullopt, config);
    INFO(joined(errors));
    CHECK(errors.empty());
  }
}

TEST_CASE("trusted relay blocks match by prefix, IPv4 and IPv6, and IPv4-mapped peers of dual-stack listeners") {
  auto address = [](const char* ip) {
    gatehouse::runtime::PeerAddress peer;
    std::string why;
    REQUIRE(gatehouse::runtime::make_address(ip, 1, peer, why));
    return peer;
  };
  gatehouse::config::Subnet block;
  std::string why;
  REQUIRE(gatehouse::config::parse_subnet("192.168.4.0/22", block, why));
  CHECK(block.contains(address("192.168.7.255")));
  CHECK_FALSE(block.contains(address("192.168.8.1")));
  // A dual-stack listener ("[::]:5723") sees an IPv4 relay as ::ffff:a.b.c.d: still that relay.
  CHECK(block.contains(address("::ffff:192.168.4.1")));
  CHECK_FALSE(block.contains(address("::ffff:192.168.8.1")));
  CHECK_FALSE(block.contains(address("::192.168.4.1")));  // IPv4-compatible (deprecated) is IPv6, not mapped
  REQUIRE(gatehouse::config::parse_subnet("fd00::/8", block, why));
  CHECK(block.contains(address("fd12::1")));
  CHECK_FALSE(block.contains(address("fe80::1")));
  REQUIRE(gatehouse::config::parse_subnet("10.0.0.5", block, why));
  CHECK(block.contains(address("10.0.0.5")));
  CHECK_FALSE(block.contains(address("10.0.0.6")));
}

TEST_CASE("timeouts and intervals: today's values by default, per role; keys with bounds") {
  ConfigDir dir;
  Config gateway;
  REQUIRE(load(dir.write(kGateway), Role::gateway, gateway).empty());
  CHECK(gateway.timeouts.handshake_timeout_ms == 5'000);
  CHECK(gateway.timeouts.hello_timeout_ms == 5'000);
  CHECK(gateway.timeouts.reload_debounce_ms == 500);
  CHECK(gateway.timeouts.heartbeat_interval_s == 60);
  CHECK(gateway.timeouts.backoff_initial_ms == 200);
  CHECK(gateway.timeouts.backoff_max_ms == 5'000);  // one process's uplinks retry often
  CHECK(gateway.timeouts.welcome_timeout_ms == 10'000);
  CHECK(gateway.timeouts.retry_after_loss_ms == 100);
  CHECK(gateway.timeouts.resolve_interval_s == 30);
  Config agent;
  REQUIRE(load(dir.write("name = \"web01\"\nauth = \"kerberos\"\n[kerberos]\nkeytab = \"web02.keytab\"\n"
                         "[[gateways]]\naddress = \"127.0.0.1:5723\"\nname = \"gw1\"\n"
                         "[failover]\nbackoff_initial_ms = 50\nwelcome_timeout_ms = 2000\n"),
               Role::agent, agent)
              .empty());
  CHECK(agent.timeouts.backoff_max_ms == 30'000);  // thousands of agents: back off further
  CHECK(agent.timeouts.backoff_initial_ms == 50);
  CHECK(agent.timeouts.welcome_timeout_ms == 2'000);
  Config server;
  REQUIRE(load(dir.write("name = \"ms1\"\ndata_dir = \"d\"\n[approval]\npoll_interval_ms = 100\n[health]\n"
                         "heartbeat_interval_s = 30\n[runtime]\nhello_timeout_ms = 2000\n" + std::string(kTls)),
               Role::server, server)
              .empty());
  CHECK(server.timeouts.approval_poll_ms == 100);
  CHECK(server.timeouts.heartbeat_interval_s == 30);
  CHECK(server.timeouts.hello_timeout_ms == 2'000);
  expect_one_error(dir, kGateway + "[failover]\nwelcome_timeout_ms = 5\n", Role::gateway, 15,
                   "failover.welcome_timeout_ms", "between 100 and 600000");
  expect_one_error(dir, kGateway + "[failover]\nbackoff_initial_ms = 9000\n", Role::gateway, 0,
                   "failover.backoff_max_ms", "at least backoff_initial_ms");
  expect_one_error(dir, kGateway + "[health]\nheartbeat_interval_s = 0\n", Role::gateway, 15,
                   "health.heartbeat_interval_s", "between 1 and 3600");
  expect_one_error(dir, "name = \"ms1\"\ndata_dir = \"d\"\n[failover]\nbackoff_max_ms = 100\n" + std::string(kTls),
                   Role::server, 3, "failover", "not used by role server (only gateway or agent)");
}

TEST_CASE("SIGHUP's comparison: what takes a restart is named by table; the live keys are applied, not among them") {
  ConfigDir dir;
  Config running;
  REQUIRE(load(dir.write(kGateway), Role::gateway, running).empty());
  Config fresh;
  REQUIRE(load(dir.write(kGateway + "[log]\nlevel = \"debug\"\n"), Role::gateway, fresh).empty());
  CHECK(gatehouse::config::restart_changes(running, fresh).empty());
  const std::string moved = std::string("name = \"gw1.example.test\"\nlisten = \"0.0.0.0:5723\"\n[[parents]]\naddress = \"ms3.example.test:5723\"\n"
                            "name = \"ms3.example.test\"\n[runtime]\nshards = 3\n") + kTls;
  REQUIRE(load(dir.write(moved), Role::gateway, fresh).empty());
  CHECK(gatehouse::config::restart_changes(running, fresh) == std::vector<std::string>{"[runtime]"});
  std::vector<std::string> applied;
  const Config merged = with_live_keys(running, fresh, applied);
  CHECK(applied == std::vector<std::string>{"[[parents]]"});  // a gateway's list moves live
  CHECK(merged.parents == fresh.parents);
  CHECK(merged.runtime == running.runtime);  // the restart-only value stays
  // A server's [[gateways]] (whom it dials) takes a restart; an agent's moves live.
  Config server_running;
  Config server_fresh;
  const std::string server = "role = \"server\"\nname = \"ms1.example.test\"\n" + std::string(kTls);
  REQUIRE(load(dir.write(server), Role::server, server_running).empty());
  REQUIRE(load(dir.write(server + "[[gateways]]\naddress = \"gw1.example.test:5723\"\nname = \"gw1.example.test\"\n"),
               Role::server, server_fresh).empty());
  CHECK(gatehouse::config::restart_changes(server_running, server_fresh) == std::vector<std::string>{"[[gateways]]"});
}

// check-config --dump: what it prints loads back to the same config, for
// every role, with every key away from its default where the file can say so.
TEST_CASE("config dump: every role's effective config loads back unchanged") {
  ConfigDir dir;
  const std::string tls = "[tls]\ncert = \"gw1.crt\"\nkey = \"gw1.key\"\nca = \"ca.crt\"\ncrl = \"crl.pem\"\n"
                          "crl_expired = \"allow\"\nreload_debounce_ms = 700\n";
  const std::string runtime = "[runtime]\nshards = 3\nauth_threads = 2\nconnections_per_shard = 300\nrecv_buffers = 64\n"
                              "recv_buffer_size_bytes = 8192\nsend_queue_max_bytes = 32768\nsend_buffer_max_bytes = 2097152\n"
                              "shutdown_timeout_ms = 900\npin_shards = true\nshard_nice = -3\n";
  const std::string log = "[log]\nlevel = \"debug\"\n";
  const std::string gateway =
      "name = \"gw1.example.test\"\nlisten = \"[::]:6000\"\ntrusted_relays = [\"10.0.0.0/8\", \"::1\", \"192.0.2.7\"]\n"
      "admin = { listen = \"\" }\n"
      "[[parents]]\naddress = \"ms1.example.test:5723\"\nname = \"ms1.example.test\"\n"
      "[[parents]]\naddress = \"10.1.1.1:5724\"\nname = \"ms2.example.test\"\nconnect = \"parent\"\n"
      "[uplink]\nconnections_per_shard = 3\nbuffer_max_bytes = 1048576\n"
      "[failover]\nbackoff_initial_ms = 300\nbackoff_max_ms = 9000\nwelcome_timeout_ms = 4000\nretry_after_loss_ms = 50\n"
      "parent_silence_ms = 8000\nresolve_interval_s = 40\nfailback_s = 70\n"
      "[health]\nheartbeat_interval_s = 20\nmissed_heartbeats = 5\n"
      "[kerberos]\nkeytab = \"gw1.keytab\"\nservice = \"gh\"\n" +
      tls + "ticket_lifetime_s = 600\n" + runtime + "handshake_timeout_ms = 1500\nhello_timeout_ms = 2500\n" + log;
  const std::string server =
      "role = \"server\"\nname = \"ms1.example.test\"\nlisten = \"127.0.0.1:5800\"\ndata_dir = \"/srv/gh\"\n"
      "admin = { listen = \"127.0.0.1:9999\" }\n"
      "[[gateways]]\naddress = \"gw1.example.test:5723\"\nname = \"gw1.example.test\"\nconnections = 2\n"
      "[approval]\nagents = \"review\"\npoll_interval_ms = 100\nnew_agents_per_minute = 30\n"
      "[store]\nbackend = \"postgresql\"\ndsn = \"host=db1 dbname=gh\"\ncommit_interval_ms = 5\ncommit_bytes = 65536\n"
      "segment_max_bytes = 2097152\nretention_days = 9\n"
      "[health]\nheartbeat_interval_s = 30\nmissed_heartbeats = 2\nheartbeats_missed_max = 6\n" + tls + runtime + log;
  const std::string agent =
      "name = \"web01.example.test\"\nauth = \"kerberos\"\nqueue_dir = \"/srv/q\"\nqueue_max_bytes = 131072\n"
      "queue_full = \"drop-oldest\"\nadmin = { listen = \"127.0.0.1:9724\" }\n"
      "[[gateways]]\naddress = \"gw1.example.test:5723\"\nname = \"gw1.example.test\"\n"
      "[kerberos]\nkeytab = \"web02.keytab\"\n" + runtime + log;
  for (const std::string& text : {gateway, server, agent}) {
    Config loaded;
    const std::vector<ConfigError> errors = load(dir.write(text), std::nullopt, loaded);
    REQUIRE_MESSAGE(errors.empty(), gatehouse::config::format(errors.front()));
    const std::string dumped = dump(loaded);
    Config again;
    const std::vector<ConfigError> dump_errors = load(dir.write(dumped, "dumped.toml"), std::nullopt, again);
    REQUIRE_MESSAGE(dump_errors.empty(), (gatehouse::config::format(dump_errors.front()) + "\n" + dumped));
    again.source_path = loaded.source_path;
    CHECK_MESSAGE(again == loaded, dumped);
  }
  Config defaults;  // a minimal file: the defaults are printed
  REQUIRE(load(dir.write("name = \"gw1.example.test\"\n[[parents]]\naddress = \"ms1.example.test:5723\"\n"
                         "name = \"ms1.example.test\"\n" + tls),
               std::nullopt, defaults).empty());
  const std::string dumped = dump(defaults);
  CHECK(dumped.find("handshake_timeout_ms = 5000") != std::string::npos);
  CHECK(dumped.find("listen = '127.0.0.1:9723'") != std::string::npos);
}

TEST_CASE("config dump: a PostgreSQL password is not printed") {
  ConfigDir dir;
  Config config;
  REQUIRE(load(dir.write("role = \"server\"\nname = \"ms1.example.test\"\n[store]\nbackend = \"postgresql\"\n"
                         "dsn = \"host=db1 password=s3cret user=gh\"\n[tls]\ncert = \"ms1.crt\"\nkey = \"ms1.key\"\nca = \"ca.crt\"\n"),
               std::nullopt, config).empty());
  const std::string dumped = dump(config);
  CHECK(dumped.find("s3cret") == std::string::npos);
  CHECK(dumped.find("dsn = 'host=db1 password=(hidden) user=gh'") != std::string::npos);
}
