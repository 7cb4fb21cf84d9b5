// `check-config --dump`: the effective config, every key a role reads with
// the value it runs with (the file's or the default), as TOML that loads back
// to the same config (config_test checks the round trip).
#include <arpa/inet.h>

#include <sstream>
#include <toml++/toml.h>

#include "gatehouse/config/config.h"

namespace gatehouse::config {
namespace {

int64_t as_int(uint64_t value) { return static_cast<int64_t>(value); }

std::string subnet_text(const Subnet& subnet) {
  char host[INET6_ADDRSTRLEN] = {};
  inet_ntop(subnet.family, subnet.address.data(), host, sizeof host);
  const uint8_t whole = subnet.family == AF_INET ? 32 : 128;
  return subnet.prefix_bits == whole ? host : std::string(host) + "/" + std::to_string(subnet.prefix_bits);
}

// A libpq connection string with its password replaced: a dump is printed.
std::string without_password(const std::string& dsn) {
  std::istringstream words(dsn);
  std::string word;
  std::string out;
  while (words >> word) {
    if (word.starts_with("password=")) word = "password=(hidden)";
    out += (out.empty() ? "" : " ") + word;
  }
  return out;
}

toml::array peers(const std::vector<Peer>& list, Role role) {
  toml::array out;
  for (const Peer& peer : list) {
    toml::table entry{{"address", peer.address.text}, {"name", peer.name}};
    if (role == Role::gateway) entry.insert("connect", peer.dialled_by_parent ? "parent" : "gateway");
    if (role == Role::server) entry.insert("connections", as_int(peer.connections));
    out.push_back(std::move(entry));
  }
  return out;
}

toml::table tls_table(const Config& config) {
  toml::table tls;
  for (const auto& [key, path] : {std::pair{"cert", &config.tls.cert_path}, std::pair{"key", &config.tls.key_path},
                                  std::pair{"ca", &config.tls.ca_path}, std::pair{"crl", &config.tls.crl_path}}) {
    if (!path->empty()) tls.insert(key, *path);
  }
  tls.insert("crl_expired", config.tls.crl_expired_allowed ? "allow" : "refuse");
  tls.insert("reload_debounce_ms", as_int(config.timeouts.reload_debounce_ms));
  if (config.role != Role::agent) {
    if (!config.tls.ticket_keys_path.empty()) tls.insert("ticket_keys", config.tls.ticket_keys_path);
    tls.insert("ticket_lifetime_s", as_int(config.tls.ticket_lifetime_s));
  }
  return tls;
}

toml::table runtime_table(const Config& config) {
  const runtime::RuntimeLimits& limits = config.runtime;
  toml::table runtime{{"shards", as_int(limits.shards)},
                      {"auth_threads", as_int(config.auth_threads)},
                      {"connections_per_shard", as_int(limits.connections_per_shard)},
                      {"recv_buffers", as_int(limits.recv_buffers_per_shard)},
                      {"recv_buffer_size_bytes", as_int(limits.recv_buffer_size_bytes)},
                      {"send_queue_max_bytes", as_int(limits.send_queue_max_bytes)},
                      {"send_buffer_max_bytes", as_int(limits.send_buffer_max_bytes_per_shard)},
                      {"shutdown_timeout_ms", as_int(limits.shutdown_timeout_ms)},
                      {"pin_shards", limits.pin_shards},
                      {"shard_nice", limits.shard_nice}};
  if (config.role != Role::agent) {
    runtime.insert("handshake_timeout_ms", as_int(config.timeouts.handshake_timeout_ms));
    runtime.insert("hello_timeout_ms", as_int(config.timeouts.hello_timeout_ms));
  }
  return runtime;
}

toml::table failover_table(const Timeouts& t) {
  return toml::table{{"backoff_initial_ms", as_int(t.backoff_initial_ms)},   {"backoff_max_ms", as_int(t.backoff_max_ms)},
          {"welcome_timeout_ms", as_int(t.welcome_timeout_ms)},   {"retry_after_loss_ms", as_int(t.retry_after_loss_ms)},
          {"parent_silence_ms", as_int(t.parent_silence_ms)},     {"resolve_interval_s", as_int(t.resolve_interval_s)},
          {"failback_s", as_int(t.failback_s)}};
}

toml::table health_table(const Config& config) {
  toml::table health{{"heartbeat_interval_s", as_int(config.timeouts.heartbeat_interval_s)},
                     {"missed_heartbeats", as_int(config.timeouts.missed_heartbeats)}};
  if (config.role == Role::server) health.insert("heartbeats_missed_max", as_int(config.timeouts.heartbeats_missed_max));
  return health;
}

void server_keys(const Config& config, toml::table& root) {
  root.insert("data_dir", config.data_dir);
  if (!config.gateways.empty()) root.insert("gateways", peers(config.gateways, Role::server));
  constexpr const char* kApprovals[] = {"reject", "review", "auto"};
  root.insert("approval", toml::table{{"agents", kApprovals[static_cast<int>(config.agent_approval)]},
                                      {"poll_interval_ms", as_int(config.timeouts.approval_poll_ms)},
                                      {"new_agents_per_minute", as_int(config.new_agents_per_minute)}});
  const store::StoreLimits& store = config.store;
  const bool postgresql = config.store_backend == StoreBackend::postgresql;
  toml::table table{{"backend", postgresql ? "postgresql" : "local"},
                    {"commit_interval_ms", as_int(store.commit_interval_ms)},
                    {"commit_bytes", as_int(store.commit_bytes)},
                    {"segment_max_bytes", as_int(store.segment_max_bytes)},
                    {"retention_days", as_int(store.retention_days)},
                    {"retention_max_bytes", as_int(store.retention_max_bytes)}};
  if (postgresql) table.insert("dsn", without_password(config.store_dsn));
  root.insert("store", std::move(table));
}

void agent_keys(const Config& config, toml::table& root) {
  root.insert("gateways", peers(config.gateways, Role::agent));
  root.insert("auth", config.auth == AgentAuth::kerberos ? "kerberos" : "cert");
  root.insert("queue_dir", config.queue_dir);
  root.insert("queue_max_bytes", as_int(config.queue_max_bytes));
  root.insert("queue_full", config.queue_drop_oldest ? "drop-oldest" : "block");
}

}  // namespace

std::string dump(const Config& config) {
  toml::table root{{"role", to_string(config.role)}, {"name", config.name}};
  if (config.role != Role::agent) {
    root.insert("listen", config.listen.text);
    toml::array relays;
    for (const Subnet& subnet : config.trusted_relays) relays.push_back(subnet_text(subnet));
    root.insert("trusted_relays", std::move(relays));
  }
  switch (config.role) {
    case Role::gateway:
      root.insert("parents", peers(config.parents, Role::gateway));
      root.insert("uplink", toml::table{{"connections_per_shard", as_int(config.uplinks_per_shard)},
                                        {"buffer_max_bytes", as_int(config.uplink_buffer_max_bytes)}});
      break;
    case Role::server:
      server_keys(config, root);
      break;
    case Role::agent:
      agent_keys(config, root);
      break;
  }
  if (config.role != Role::server) root.insert("failover", failover_table(config.timeouts));
  if (config.role != Role::agent) root.insert("health", health_table(config));
  if (!config.tls.cert_path.empty() || !config.tls.ca_path.empty()) root.insert("tls", tls_table(config));
  if (config.kerberos.enabled) {
    root.insert("kerberos", toml::table{{"keytab", config.kerberos.keytab_path}, {"service", config.kerberos.service}});
  }
  root.insert("admin", toml::table{{"listen", config.admin_listen.host.empty() ? "" : config.admin_listen.text}});
  root.insert("runtime", runtime_table(config));
  root.insert("log", toml::table{{"level", config.log_level}});
  std::ostringstream out;
  out << "# " << config.source_path << " as " << to_string(config.role)
      << " runs it: every key, the file's value or the default\n"
      << toml::toml_formatter(root, toml::toml_formatter::default_flags & ~toml::format_flags::indentation) << "\n";
  return out.str();
}

}  // namespace gatehouse::config
