// Typed configuration (types only; loading lives in config.h). Every key is
// documented in docs/config.md and in examples/*.toml.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "gatehouse/runtime/runtime_types.h"
#include "gatehouse/store/store_types.h"

namespace gatehouse::config {

enum class Role : uint8_t { gateway, server, agent };
enum class AgentAuth : uint8_t { cert, kerberos };
enum class AgentApproval : uint8_t { reject, review, automatic };
// [store] backend: where a server keeps its events (and, with PostgreSQL, what
// a management group shares).
enum class StoreBackend : uint8_t { local, postgresql };

inline constexpr uint16_t kDefaultPort = 5723;
inline constexpr uint32_t kAuthThreadsMax = 64;
inline constexpr uint32_t kParentsMax = 16;
inline constexpr uint64_t kQueueDefaultBytes = 15ull * 1024 * 1024;  // SCOM's default

// "host:port" as written; host may be a name (resolved at connect time) or an
// IP literal ("[v6]:port" for IPv6).
struct Endpoint {
  std::string host;
  uint16_t port = 0;
  std::string text;  // as written in the file, for messages
  bool operator==(const Endpoint&) const = default;
};

struct TlsConfig {
  std::string cert_path;  // paths are resolved against the config file's folder
  std::string key_path;
  std::string ca_path;
  std::string crl_path;   // empty: no CRL
  bool crl_expired_allowed = false;  // crl_expired = "allow": a CRL past nextUpdate still applies, handshakes go on
  std::string ticket_keys_path;      // gateway, server: shared ticket keys; empty: per process
  uint32_t ticket_lifetime_s = 7'200;
  bool operator==(const TlsConfig&) const = default;
};

struct KerberosConfig {
  bool enabled = false;           // true when the [kerberos] table is present
  std::string keytab_path;        // acceptor keytab (gateway, server) or client keytab (agent)
  std::string service = "gatehouse";
  bool operator==(const KerberosConfig&) const = default;
};

// An address block: "10.0.0.0/8", "127.0.0.1" (a /32), "::1", "fd00::/8".
struct Subnet {
  sa_family_t family = AF_INET;
  std::array<uint8_t, 16> address{};
  uint8_t prefix_bits = 32;
  bool contains(const runtime::PeerAddress& peer) const;
  bool operator==(const Subnet&) const = default;
};

struct Peer {  // a [[parents]] or [[gateways]] entry
  Endpoint address;
  std::string name;  // expected certificate identity (and Kerberos service host)
  bool dialled_by_parent = false;  // gateway's [[parents]]: connect = "parent" (it dials us; we never dial it)
  uint32_t connections = 4;        // server's [[gateways]]: connections it keeps to that gateway
  bool operator==(const Peer&) const = default;
};

// Deadlines and intervals of the links; every one has today's value as its
// default and a key (docs/config.md).
struct Timeouts {
  uint32_t handshake_timeout_ms = 5'000;  // [runtime] gateway, server: TLS handshake (client's time)
  uint32_t hello_timeout_ms = 5'000;      // [runtime] gateway, server: TLS up → HELLO (and AUTH) done
  uint32_t reload_debounce_ms = 500;      // [tls] gateway, server: quiet time before a changed file is reloaded
  uint32_t heartbeat_interval_s = 60;     // [health] gateway, server: told to children in HELLO_OK
  uint32_t missed_heartbeats = 3;         // [health] gateway, server: a child silent this many intervals is closed
  uint32_t heartbeats_missed_max = 4;     // [health] server: an agent or gateway unheard this many intervals is down (30100)
  uint32_t approval_poll_ms = 250;        // [approval] server: how often approvals are re-read
  // [failover] gateway (its uplinks) and agent: the parent list.
  uint32_t backoff_initial_ms = 200;      // after a whole round failed, doubling ...
  uint32_t backoff_max_ms = 30'000;       // ... up to this (gateway default: 5,000)
  uint32_t welcome_timeout_ms = 10'000;   // connect → HELLO_OK
  uint32_t retry_after_loss_ms = 100;     // a session that was up: the same parent again after ~this
  uint32_t parent_silence_ms = 45'000;    // [failover] nothing heard from a parent this long: the next (gateway: 6,000)
  uint32_t resolve_interval_s = 30;       // parents' names are looked up again this often
  uint32_t failback_s = 60;               // [failover] on a later parent this long: back to the first once it takes TCP (0: never)
  bool operator==(const Timeouts&) const = default;
};

struct Config {
  std::string source_path;
  Role role = Role::gateway;
  std::string name;
  Endpoint listen;
  TlsConfig tls;
  KerberosConfig kerberos;
  Endpoint admin_listen;
  runtime::RuntimeLimits runtime{.shard_nice = -10};  // [runtime]: shards, pools and queues
  uint32_t auth_threads = 1;
  std::vector<Subnet> trusted_relays;  // gateway, server: may send PROXY v2 (and must)
  std::string log_level = "info";
  Timeouts timeouts;
  // gateway
  std::vector<Peer> parents;
  uint32_t uplinks_per_shard = 1;                 // [uplink] connections_per_shard
  uint64_t uplink_buffer_max_bytes = 4u << 20;    // [uplink] buffer_max_bytes
  // server
  std::string data_dir = "/var/lib/gatehouse";
  AgentApproval agent_approval = AgentApproval::reject;
  // [approval] server: agents not approved yet that one gateway uplink may
  // bring per minute (a token bucket, this many at once); past it OPEN_DENY
  // overloaded (30060): a gateway cannot flood the registry with made-up names.
  uint32_t new_agents_per_minute = 600;
  store::StoreLimits store;  // [store]: group commit and segments
  StoreBackend store_backend = StoreBackend::local;
  std::string store_dsn;     // [store] dsn: libpq connection string (backend = "postgresql")
  // agent: its failover list; server: the gateways it dials (management-server-initiated)
  std::vector<Peer> gateways;
  AgentAuth auth = AgentAuth::cert;
  std::string queue_dir = "/var/lib/gatehouse/queue";
  uint64_t queue_max_bytes = kQueueDefaultBytes;
  bool queue_drop_oldest = false;  // queue_full = "drop-oldest" (default "block")
  bool operator==(const Config&) const = default;
};

struct ConfigError {
  std::string path;
  uint32_t line = 0;  // 0: not tied to a line
  std::string key;    // dotted, e.g. "tls.cert"; empty for file-level errors
  std::string message;
};

}  // namespace gatehouse::config
