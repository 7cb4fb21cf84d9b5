#include "gatehouse/config/config.h"
#include "gatehouse/config/live.h"

#include "gatehouse/log/log.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <toml++/toml.h>
#include <utility>

#include "gatehouse/proto/codec.h"

namespace gatehouse::config {
namespace {

struct Context {
  std::string path;
  std::string dir;  // relative paths in the file are resolved against it
  std::vector<ConfigError> errors;

  void error(uint32_t line, std::string key, std::string message) {
    errors.push_back({path, line, std::move(key), std::move(message)});
  }
};

uint32_t line_of(const toml::node& node) { return node.source().begin.line; }

const char* type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    default: return "a date/time";
  }
}

// Reads the keys of one TOML table and reports any key it was not asked for.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string prefix, Context& context)
      : table_(table), prefix_(std::move(prefix)), context_(context) {}

  // The table header's line; 0 for the root, which has none.
  uint32_t line() const { return prefix_.empty() ? 0 : line_of(table_); }
  std::string key_name(std::string_view key) const { return prefix_ + std::string(key); }
  void error(uint32_t line, std::string_view key, std::string message) {
    context_.error(line, key_name(key), std::move(message));
  }

  const toml::node* get(std::string_view key) {
    if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
    return table_.get(key);
  }

  bool string(std::string_view key, std::string& out, bool required) {
    const toml::node* node = get(key);
    if (node == nullptr) {
      if (required) error(line(), key, "missing (required)");
      return false;
    }
    if (!node->is_string()) {
      error(line_of(*node), key, std::string("must be a string, not ") + type_name(*node));
      return false;
    }
    out = node->as_string()->get();
    return true;
  }

  void integer(std::string_view key, int64_t& out, int64_t min, int64_t max) {
    const toml::node* node = get(key);
    if (node == nullptr) return;
    if (!node->is_integer()) {
      error(line_of(*node), key, std::string("must be an integer, not ") + type_name(*node));
      return;
    }
    const int64_t value = node->as_integer()->get();
    if (value < min || value > max) {
      error(line_of(*node), key,
            "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", not " +
                std::to_string(value));
      return;
    }
    out = value;
  }

  void integer(std::string_view key, uint64_t& out, uint64_t min, uint64_t max) {
    int64_t value = static_cast<int64_t>(out);
    integer(key, value, static_cast<int64_t>(min), static_cast<int64_t>(max));
    out = static_cast<uint64_t>(value);
  }

  void integer(std::string_view key, int32_t& out, int32_t min, int32_t max) {
    int64_t value = out;
    integer(key, value, int64_t{min}, int64_t{max});
    out = static_cast<int32_t>(value);
  }

  void integer(std::string_view key, uint32_t& out, uint32_t min, uint32_t max) {
    uint64_t value = out;
    integer(key, value, min, max);
    out = static_cast<uint32_t>(value);
  }

  void boolean(std::string_view key, bool& out) {
    const toml::node* node = get(key);
    if (node == nullptr) return;
    if (!node->is_boolean()) {
      error(line_of(*node), key, std::string("must be true or false, not ") + type_name(*node));
      return;
    }
    out = node->as_boolean()->get();
  }

  void power_of_two(std::string_view key, uint32_t& out, uint32_t min, uint32_t max) {
    const uint32_t before = out;
    integer(key, out, min, max);
    if ((out & (out - 1)) != 0) {
      error(line_of(*table_.get(key)), key, "must be a power of two, not " + std::to_string(out));
      out = before;
    }
  }

  void endpoint(std::string_view key, Endpoint& out, bool ip_literal_only, bool required) {
    std::string text;
    if (!string(key, text, required)) return;
    std::string why;
    if (!parse_endpoint(text, ip_literal_only, out, why)) {
      error(line_of(*table_.get(key)), key, "invalid address '" + text + "': " + why);
    }
  }

  // A file the process must read; relative paths are taken from the config's folder.
  void file(std::string_view key, std::string& out, bool required) {
    if (!string(key, out, required) || out.empty()) return;
    if (out.front() != '/') out = context_.dir + "/" + out;
    if (::access(out.c_str(), R_OK) != 0) {
      error(line_of(*table_.get(key)), key, "cannot read '" + out + "': " + std::strerror(errno));
    }
  }

  void directory(std::string_view key, std::string& out) {
    if (string(key, out, false) && !out.empty() && out.front() != '/') out = context_.dir + "/" + out;
  }

  template <class E>
  void choice(std::string_view key, E& out, std::initializer_list<std::pair<std::string_view, E>> options) {
    std::string text;
    if (!string(key, text, false)) return;
    std::string names;
    for (const auto& [name, value] : options) {
      if (name == text) {
        out = value;
        return;
      }
      names += names.empty() ? "" : "|";
      names += name;
    }
    error(line_of(*table_.get(key)), key, "must be one of " + names + ", not '" + text + "'");
  }

  void name(std::string_view key, std::string& out, bool required) {
    if (!string(key, out, required)) return;
    if (proto::ProtoError e = proto::check_name(out); e != proto::ProtoError::none) {
      error(line_of(*table_.get(key)), key,
            "invalid name '" + out + "': " + proto::to_string(e) +
                " (1-253 characters of A-Z a-z 0-9 . - _)");
    }
  }

  // A sub-table; nullptr when absent (or not a table, which is reported).
  const toml::table* table(std::string_view key) {
    const toml::node* node = get(key);
    if (node == nullptr) return nullptr;
    if (!node->is_table()) {
      error(line_of(*node), key, std::string("must be a table, not ") + type_name(*node));
      return nullptr;
    }
    return node->as_table();
  }

  Context& context() { return context_; }

  // [[key]] entries, each with address and name.
  void subnets(std::string_view key, std::vector<Subnet>& out) {
    const toml::node* node = get(key);
    if (node == nullptr) return;
    const toml::array* entries = node->as_array();
    if (entries == nullptr) {
      error(line_of(*node), key, "must be an array of addresses, e.g. [\"10.0.0.5\", \"192.168.0.0/24\"]");
      return;
    }
    for (const toml::node& entry : *entries) {
      std::string why;
      Subnet subnet;
      if (!entry.is_string()) {
        error(line_of(entry), key, "every entry must be a string (an address or address/prefix)");
      } else if (!parse_subnet(entry.as_string()->get(), subnet, why)) {
        error(line_of(entry), key, why);
      } else {
        out.push_back(subnet);
      }
    }
  }

  // [[parents]] (gateway: may say connect = "parent"), [[gateways]] (agent: its
  // failover list; server: the gateways it dials, with connections).
  void peers(std::string_view key, std::vector<Peer>& out, Role role) {
    const toml::node* node = get(key);
    if (node == nullptr) return;
    if (!node->is_array_of_tables()) {
      error(line_of(*node), key,
            "must be an array of tables ([[" + std::string(key) + "]] with address and name)");
      return;
    }
    const toml::array& entries = *node->as_array();
    if (entries.size() > kParentsMax) {
      error(line_of(*node), key, "at most " + std::to_string(kParentsMax) + " entries");
    }
    for (size_t i = 0; i < entries.size(); ++i) {
      TableReader entry(*entries[i].as_table(), key_name(key) + "[" + std::to_string(i) + "].", context_);
      Peer& peer = out.emplace_back();
      entry.endpoint("address", peer.address, false, true);
      entry.name("name", peer.name, true);
      if (role == Role::gateway) {
        entry.choice<bool>("connect", peer.dialled_by_parent, {{"gateway", false}, {"parent", true}});
      }
      if (role == Role::server) entry.integer("connections", peer.connections, 1, 64);
      entry.finish();
    }
  }

  // Reports keys that nobody asked for: typos must not pass silently.
  void finish() {
    for (const auto& [key, node] : table_) {
      bool known = false;
      for (const std::string& k : known_) known = known || k == key.str();
      if (known) continue;
      std::string list;
      for (const std::string& k : known_) list += (list.empty() ? "" : ", ") + k;
      error(line_of(node), key.str(), "unknown key (known here: " + list + ")");
    }
  }

 private:
  const toml::table& table_;
  std::string prefix_;
  Context& context_;
  std::vector<std::string> known_;
};

constexpr std::string_view kRoleNames[] = {"gateway", "server", "agent"};

std::optional<Role> infer_role(const toml::table& root) {
  if (root.contains("parents")) return Role::gateway;
  if (root.contains("data_dir") || root.contains("approval") || root.contains("store")) return Role::server;
  if (root.contains("gateways")) return Role::agent;
  return std::nullopt;
}

// Keys that only make sense for some roles; present elsewhere they are an error.
struct RoleKey {
  std::string_view key;
  std::initializer_list<Role> roles;
};

void check_role_keys(const toml::table& root, Role role, Context& context) {
  static const RoleKey kRoleKeys[] = {
      {"listen", {Role::gateway, Role::server}},
      {"parents", {Role::gateway}},
      {"trusted_relays", {Role::gateway, Role::server}},
      {"uplink", {Role::gateway}},
      {"data_dir", {Role::server}},
      {"approval", {Role::server}},
      {"store", {Role::server}},
      {"gateways", {Role::agent, Role::server}},
      {"auth", {Role::agent}},
      {"queue_dir", {Role::agent}},
      {"queue_max_bytes", {Role::agent}},
      {"queue_full", {Role::agent}},
      {"failover", {Role::gateway, Role::agent}},
      {"health", {Role::gateway, Role::server}},
  };
  for (const RoleKey& role_key : kRoleKeys) {
    const toml::node* node = root.get(role_key.key);
    if (node == nullptr) continue;
    bool allowed = false;
    std::string names;
    for (Role r : role_key.roles) {
      allowed = allowed || r == role;
      names += (names.empty() ? "" : " or ") + std::string(kRoleNames[static_cast<int>(r)]);
    }
    if (!allowed) {
      context.error(line_of(*node), std::string(role_key.key),
                    "not used by role " + std::string(to_string(role)) + " (only " + names + ")");
    }
  }
}

void read_tls(TableReader& root, Config& config, bool required) {
  const toml::table* table = root.table("tls");
  if (table == nullptr) {
    if (required) root.error(0, "tls", "missing table [tls] with cert, key and ca (required)");
    return;
  }
  TableReader tls(*table, "tls.", root.context());
  // A Kerberos agent needs no certificate and no CA: every key is optional then.
  tls.file("cert", config.tls.cert_path, required);
  tls.file("key", config.tls.key_path, required);
  tls.file("ca", config.tls.ca_path, required);
  tls.file("crl", config.tls.crl_path, false);
  tls.choice<bool>("crl_expired", config.tls.crl_expired_allowed, {{"refuse", false}, {"allow", true}});
  tls.integer("reload_debounce_ms", config.timeouts.reload_debounce_ms, 0, 60'000);
  if (config.role != Role::agent) {
    tls.file("ticket_keys", config.tls.ticket_keys_path, false);
    tls.integer("ticket_lifetime_s", config.tls.ticket_lifetime_s, 60, 7 * 24 * 3600);
  }
  tls.finish();
}

void read_kerberos(TableReader& root, Config& config, bool required) {
  const toml::table* table = root.table("kerberos");
  if (table == nullptr) {
    if (required) {
      root.error(0, "kerberos", "missing table [kerberos] with keytab (required for auth = \"kerberos\")");
    }
    return;
  }
  TableReader kerberos(*table, "kerberos.", root.context());
  config.kerberos.enabled = true;
  kerberos.file("keytab", config.kerberos.keytab_path, true);
  kerberos.name("service", config.kerberos.service, false);
  kerberos.finish();
}

void read_operations(TableReader& root, Config& config) {
  if (const toml::table* table = root.table("admin")) {
    TableReader admin(*table, "admin.", root.context());
    std::string listen;
    if (admin.string("listen", listen, false) && listen.empty()) {
      config.admin_listen = {};  // "": no admin endpoint
    } else {
      admin.endpoint("listen", config.admin_listen, true, false);
    }
    admin.finish();
  }
  if (const toml::table* table = root.table("runtime")) {
    TableReader runtime(*table, "runtime.", root.context());
    runtime::RuntimeLimits& limits = config.runtime;
    runtime.integer("shards", limits.shards, 0, runtime::kRuntimeShardsMax);
    runtime.integer("auth_threads", config.auth_threads, 1, kAuthThreadsMax);
    runtime.integer("connections_per_shard", limits.connections_per_shard, 16, 1u << 20);
    runtime.power_of_two("recv_buffers", limits.recv_buffers_per_shard, 16, 32'768);
    runtime.integer("recv_buffer_size_bytes", limits.recv_buffer_size_bytes, 1'024, 1u << 20);
    runtime.integer("send_queue_max_bytes", limits.send_queue_max_bytes, 16 * 1024, 64u << 20);
    runtime.integer("send_buffer_max_bytes", limits.send_buffer_max_bytes_per_shard, 1u << 20, 4'095u << 20);
    runtime.integer("shutdown_timeout_ms", limits.shutdown_timeout_ms, 0, 600'000);
    runtime.boolean("pin_shards", limits.pin_shards);
    runtime.integer("shard_nice", limits.shard_nice, -20, 19);
    if (config.role != Role::agent) {
      runtime.integer("handshake_timeout_ms", config.timeouts.handshake_timeout_ms, 100, 600'000);
      runtime.integer("hello_timeout_ms", config.timeouts.hello_timeout_ms, 100, 600'000);
    }
    runtime.finish();
  }
  if (const toml::table* table = root.table("log")) {
    TableReader log(*table, "log.", root.context());
    std::string_view level = config.log_level;
    log.choice<std::string_view>("level", level,
                                 {{"debug", "debug"}, {"info", "info"}, {"warning", "warning"}, {"error", "error"}});
    config.log_level = level;
    log.finish();
  }
}

void read_failover(TableReader& root, Config& config) {
  Timeouts& t = config.timeouts;
  // One process's few uplinks, not thousands of agents: retry often (an approval comes back fast).
  if (config.role == Role::gateway) t.backoff_max_ms = 5'000;
  // Uplinks find a dead parent in seconds; agents, thousands to a gateway, ping less often.
  t.parent_silence_ms = config.role == Role::gateway ? 6'000 : 45'000;
  const toml::table* table = root.table("failover");
  if (table == nullptr) return;
  TableReader failover(*table, "failover.", root.context());
  failover.integer("backoff_initial_ms", t.backoff_initial_ms, 10, 600'000);
  failover.integer("backoff_max_ms", t.backoff_max_ms, 10, 3'600'000);
  failover.integer("welcome_timeout_ms", t.welcome_timeout_ms, 100, 600'000);
  failover.integer("retry_after_loss_ms", t.retry_after_loss_ms, 0, 600'000);
  failover.integer("parent_silence_ms", t.parent_silence_ms, 1'000, 600'000);
  failover.integer("resolve_interval_s", t.resolve_interval_s, 1, 86'400);
  failover.integer("failback_s", t.failback_s, 0, 86'400);
  failover.finish();
  if (t.backoff_max_ms < t.backoff_initial_ms) {
    root.error(0, "failover.backoff_max_ms", "must be at least backoff_initial_ms");
  }
}

void read_health(TableReader& root, Config& config) {
  const toml::table* table = root.table("health");
  if (table == nullptr) return;
  TableReader health(*table, "health.", root.context());
  health.integer("heartbeat_interval_s", config.timeouts.heartbeat_interval_s, 1, 3'600);
  health.integer("missed_heartbeats", config.timeouts.missed_heartbeats, 1, 100);
  if (config.role == Role::server) health.integer("heartbeats_missed_max", config.timeouts.heartbeats_missed_max, 1, 100);
  health.finish();
}

void read_role_keys(TableReader& root, Config& config) {
  if (config.role != Role::agent) root.subnets("trusted_relays", config.trusted_relays);
  if (config.role != Role::server) read_failover(root, config);
  if (config.role != Role::agent) read_health(root, config);
  switch (config.role) {
    case Role::gateway:
      root.peers("parents", config.parents, Role::gateway);
      if (config.parents.empty()) {
        root.error(0, "parents", "missing: a gateway needs at least one [[parents]] entry");
      }
      if (const toml::table* table = root.table("uplink")) {
        TableReader uplink(*table, "uplink.", root.context());
        uplink.integer("connections_per_shard", config.uplinks_per_shard, 1, 8);
        uplink.integer("buffer_max_bytes", config.uplink_buffer_max_bytes, 64 * 1024, uint64_t{1} << 32);
        uplink.finish();
      }
      break;
    case Role::server:
      root.directory("data_dir", config.data_dir);
      root.peers("gateways", config.gateways, Role::server);
      if (const toml::table* table = root.table("approval")) {
        TableReader approval(*table, "approval.", root.context());
        approval.choice<AgentApproval>("agents", config.agent_approval,
                                       {{"reject", AgentApproval::reject},
                                        {"review", AgentApproval::review},
                                        {"auto", AgentApproval::automatic}});
        approval.integer("poll_interval_ms", config.timeouts.approval_poll_ms, 10, 60'000);
        approval.integer("new_agents_per_minute", config.new_agents_per_minute, 1, 1'000'000);
        approval.finish();
      }
      if (const toml::table* table = root.table("store")) {
        TableReader store(*table, "store.", root.context());
        store.integer("commit_interval_ms", config.store.commit_interval_ms, 0, 1'000);
        store.integer("commit_bytes", config.store.commit_bytes, 4 * 1024, uint64_t{1} << 30);
        store.integer("segment_max_bytes", config.store.segment_max_bytes, 1u << 20, uint64_t{1} << 40);
        store.choice<StoreBackend>("backend", config.store_backend,
                                   {{"local", StoreBackend::local}, {"postgresql", StoreBackend::postgresql}});
        const bool has_dsn = store.string("dsn", config.store_dsn, false);
        store.integer("retention_days", config.store.retention_days, 0, 36'500);
        store.integer("retention_max_bytes", config.store.retention_max_bytes, 0, uint64_t{1} << 50);
        if (config.store_backend == StoreBackend::postgresql && config.store.retention_max_bytes != 0) {
          store.error(store.line(), "retention_max_bytes",
                      "only with backend = \"local\" (a group drops whole days: retention_days)");
        }
        if (config.store.retention_max_bytes != 0 && config.store.retention_max_bytes < 2 * config.store.segment_max_bytes) {
          store.error(store.line(), "retention_max_bytes",
                      "at least twice segment_max_bytes (" + std::to_string(config.store.segment_max_bytes) +
                          "): retention removes whole segments and never the one being written");
        }
        if (config.store_backend == StoreBackend::postgresql && (!has_dsn || config.store_dsn.empty())) {
          store.error(store.line(), "dsn",
                      "missing: backend = \"postgresql\" needs a libpq connection string, e.g. "
                      "\"host=db1,db2 dbname=gatehouse user=gatehouse target_session_attrs=read-write\"");
        }
        if (config.store_backend == StoreBackend::local && has_dsn) {
          store.error(store.line(), "dsn", "only with backend = \"postgresql\" (the local store keeps data_dir)");
        }
        store.finish();
      }
      break;
    case Role::agent: {
      root.peers("gateways", config.gateways, Role::agent);
      if (config.gateways.empty()) {
        root.error(0, "gateways", "missing: an agent needs at least one [[gateways]] entry");
      }
      root.choice<AgentAuth>("auth", config.auth, {{"cert", AgentAuth::cert}, {"kerberos", AgentAuth::kerberos}});
      root.directory("queue_dir", config.queue_dir);
      root.integer("queue_max_bytes", config.queue_max_bytes, 64 * 1024, uint64_t{1} << 40);
      root.choice<bool>("queue_full", config.queue_drop_oldest, {{"block", false}, {"drop-oldest", true}});
      break;
    }
  }
}

// Every root key is read (so none is "unknown"); role-foreign ones were reported.
void mark_foreign_keys_known(TableReader& root) {
  for (std::string_view key : {"listen", "trusted_relays", "parents", "uplink", "data_dir", "approval", "store", "gateways", "auth",
                               "queue_dir", "queue_max_bytes", "queue_full", "failover", "health"}) {
    root.get(key);
  }
}

bool read_file(const std::string& path, std::string& text, std::string& why) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    why = std::strerror(errno);
    return false;
  }
  text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

}  // namespace

const char* to_string(Role role) { return kRoleNames[static_cast<int>(role)].data(); }

bool parse_role(std::string_view text, Role& role) {
  for (Role candidate : {Role::gateway, Role::server, Role::agent}) {
    if (text == kRoleNames[static_cast<int>(candidate)]) {
      role = candidate;
      return true;
    }
  }
  return false;
}

std::string format(const ConfigError& error) {
  std::string text = error.path;
  if (error.line != 0) text += ":" + std::to_string(error.line);
  text += ": ";
  if (!error.key.empty()) text += error.key + ": ";
  return text + error.message;
}

bool parse_endpoint(std::string_view text, bool ip_literal_only, Endpoint& endpoint, std::string& why) {
  std::string_view host;
  std::string_view port;
  bool bracketed = false;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      why = "expected [IPv6]:port";
      return false;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    bracketed = true;
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      why = "missing :port (the default port is 5723)";
      return false;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      why = "IPv6 addresses need brackets, e.g. [::1]:5723";
      return false;
    }
  }
  // A listen address may say port 0: the system picks one, and the start
  // event (30001) says which.
  const char* range = ip_literal_only ? "port must be a number from 0 to 65535" : "port must be a number from 1 to 65535";
  uint32_t port_number = 0;
  for (char c : port) {
    if (c < '0' || c > '9' || port_number > 65535) {
      why = range;
      return false;
    }
    port_number = port_number * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port.empty() || (port_number == 0 && !ip_literal_only) || port_number > 65535) {
    why = range;
    return false;
  }
  const std::string host_text(host);
  unsigned char ip[16];
  const bool is_ip = bracketed ? inet_pton(AF_INET6, host_text.c_str(), ip) == 1
                               : inet_pton(AF_INET, host_text.c_str(), ip) == 1;
  if (bracketed && !is_ip) {
    why = "'" + host_text + "' is not an IPv6 address";
    return false;
  }
  if (!is_ip) {
    if (ip_literal_only) {
      why = "a listen address must be an IP literal (0.0.0.0, 127.0.0.1, [::])";
      return false;
    }
    if (host.empty() || proto::check_name(host) != proto::ProtoError::none) {
      why = "'" + host_text + "' is neither an IP address nor a host name";
      return false;
    }
  }
  endpoint = {host_text, static_cast<uint16_t>(port_number), std::string(text)};
  return true;
}

std::vector<ConfigError> load(std::string_view path_view, std::optional<Role> role, Config& config) {
  Context context;
  context.path = path_view;
  const size_t slash = context.path.rfind('/');
  context.dir = slash == std::string::npos ? "." : context.path.substr(0, slash);
  config = Config{};
  config.source_path = context.path;
  config.listen = {"0.0.0.0", kDefaultPort, "0.0.0.0:5723"};
  config.admin_listen = {"127.0.0.1", 9723, "127.0.0.1:9723"};

  std::string text;
  std::string why;
  if (!read_file(context.path, text, why)) {
    context.error(0, "", "cannot open config file: " + why);
    return context.errors;
  }
  toml::table root;
  try {
    root = toml::parse(text, context.path);
  } catch (const toml::parse_error& e) {
    context.error(e.source().begin.line, "", "TOML syntax error: " + std::string(e.description()));
    return context.errors;
  }

  TableReader top(root, "", context);
  std::string role_text;
  if (top.string("role", role_text, false)) {
    Role file_role;
    if (!parse_role(role_text, file_role)) {
      top.error(line_of(*root.get("role")), "role", "must be one of gateway|server|agent, not '" + role_text + "'");
      return context.errors;
    }
    if (role && *role != file_role) {
      top.error(line_of(*root.get("role")), "role",
                "this file is for role " + role_text + ", not " + to_string(*role));
      return context.errors;
    }
    role = file_role;
  }
  if (!role) role = infer_role(root);
  if (!role) {
    context.error(0, "role", "cannot tell the role: set role = \"gateway\"|\"server\"|\"agent\"");
    return context.errors;
  }
  config.role = *role;

  top.name("name", config.name, true);
  check_role_keys(root, config.role, context);
  if (config.role != Role::agent) top.endpoint("listen", config.listen, true, false);
  read_role_keys(top, config);
  const bool kerberos_agent = config.role == Role::agent && config.auth == AgentAuth::kerberos;
  read_tls(top, config, !kerberos_agent);
  read_kerberos(top, config, kerberos_agent);
  // A gateway or server host exists for its traffic; an agent shares its host
  // with the workload it watches, so it keeps the host's priority by default.
  if (config.role == Role::agent) config.runtime.shard_nice = 0;
  // Many agents may share a host (and the default port): an agent's endpoint
  // is opt-in.
  if (config.role == Role::agent) config.admin_listen = {};
  read_operations(top, config);
  mark_foreign_keys_known(top);
  top.finish();
  return context.errors;
}

namespace {

// One key SIGHUP applies: its name as written, and how it moves from the file
// read now into the running config.
struct LiveKey {
  const char* name;
  std::optional<Role> only;  // live for this role alone (elsewhere it takes a restart)
  bool (*differs)(const Config&, const Config&);
  void (*take)(Config& running, const Config& fresh);
};

#define GATEHOUSE_LIVE_KEY(name, field, ...) \
  LiveKey { name, std::optional<Role>{__VA_ARGS__}, [](const Config& a, const Config& b) { return a.field != b.field; }, \
            [](Config& running, const Config& fresh) { running.field = fresh.field; } }

const LiveKey kLiveKeys[] = {
    GATEHOUSE_LIVE_KEY("[log] level", log_level),
    GATEHOUSE_LIVE_KEY("[runtime] handshake_timeout_ms", timeouts.handshake_timeout_ms),
    GATEHOUSE_LIVE_KEY("[runtime] hello_timeout_ms", timeouts.hello_timeout_ms),
    GATEHOUSE_LIVE_KEY("[health] heartbeat_interval_s", timeouts.heartbeat_interval_s),
    GATEHOUSE_LIVE_KEY("[health] missed_heartbeats", timeouts.missed_heartbeats),
    GATEHOUSE_LIVE_KEY("[health] heartbeats_missed_max", timeouts.heartbeats_missed_max),
    GATEHOUSE_LIVE_KEY("[approval] agents", agent_approval),
    GATEHOUSE_LIVE_KEY("[approval] new_agents_per_minute", new_agents_per_minute),
    GATEHOUSE_LIVE_KEY("[approval] poll_interval_ms", timeouts.approval_poll_ms),
    GATEHOUSE_LIVE_KEY("[failover] backoff_initial_ms", timeouts.backoff_initial_ms),
    GATEHOUSE_LIVE_KEY("[failover] backoff_max_ms", timeouts.backoff_max_ms),
    GATEHOUSE_LIVE_KEY("[failover] welcome_timeout_ms", timeouts.welcome_timeout_ms),
    GATEHOUSE_LIVE_KEY("[failover] retry_after_loss_ms", timeouts.retry_after_loss_ms),
    GATEHOUSE_LIVE_KEY("[failover] parent_silence_ms", timeouts.parent_silence_ms),
    GATEHOUSE_LIVE_KEY("[failover] failback_s", timeouts.failback_s),
    GATEHOUSE_LIVE_KEY("[uplink] buffer_max_bytes", uplink_buffer_max_bytes),
    // The links move to the new list; a server's dial list takes a restart.
    GATEHOUSE_LIVE_KEY("[[parents]]", parents, Role::gateway),
    GATEHOUSE_LIVE_KEY("[[gateways]]", gateways, Role::agent),
};

#undef GATEHOUSE_LIVE_KEY

}  // namespace

Config with_live_keys(const Config& running, const Config& fresh, std::vector<std::string>& applied) {
  Config merged = running;
  for (const LiveKey& key : kLiveKeys) {
    if ((key.only && *key.only != running.role) || !key.differs(running, fresh)) continue;
    key.take(merged, fresh);
    applied.emplace_back(key.name);
  }
  return merged;
}

std::vector<std::string> restart_changes(const Config& running, const Config& fresh) {
  std::vector<std::string> changed;
  auto differ = [&](bool differs, const char* key) {
    if (differs) changed.emplace_back(key);
  };
  std::vector<std::string> live;
  const Config merged = with_live_keys(running, fresh, live);  // what is left differs until a restart
  differ(merged.name != fresh.name, "name");
  differ(merged.listen != fresh.listen, "listen");
  differ(merged.tls != fresh.tls || merged.timeouts.reload_debounce_ms != fresh.timeouts.reload_debounce_ms, "[tls]");
  differ(merged.kerberos != fresh.kerberos, "[kerberos]");
  differ(merged.admin_listen != fresh.admin_listen, "[admin]");
  differ(merged.runtime != fresh.runtime || merged.auth_threads != fresh.auth_threads, "[runtime]");
  differ(merged.trusted_relays != fresh.trusted_relays, "trusted_relays");
  differ(merged.timeouts.resolve_interval_s != fresh.timeouts.resolve_interval_s, "[failover] resolve_interval_s");
  differ(merged.parents != fresh.parents, "[[parents]]");
  differ(merged.uplinks_per_shard != fresh.uplinks_per_shard, "[uplink] connections_per_shard");
  differ(merged.data_dir != fresh.data_dir, "data_dir");
  differ(merged.store != fresh.store || merged.store_backend != fresh.store_backend || merged.store_dsn != fresh.store_dsn,
         "[store]");
  differ(merged.gateways != fresh.gateways, "[[gateways]]");
  differ(merged.auth != fresh.auth, "auth");
  differ(merged.queue_dir != fresh.queue_dir || merged.queue_max_bytes != fresh.queue_max_bytes ||
             merged.queue_drop_oldest != fresh.queue_drop_oldest,
         "queue_dir, queue_max_bytes, queue_full");
  return changed;
}

std::optional<Config> reread(const Config& running) {
  Config fresh;
  const std::vector<ConfigError> errors = load(running.source_path, running.role, fresh);
  if (!errors.empty()) {
    for (const ConfigError& error : errors) {
      log::emit(log::Level::error, log::EventId::config_invalid,
                "the changed config is refused, the running one stays: " + format(error));
    }
    return std::nullopt;
  }
  std::vector<std::string> applied;
  Config merged = with_live_keys(running, fresh, applied);
  log::Level level;
  if (log::parse_level(fresh.log_level, level)) log::set_min_level(level);  // the file's, whatever came before
  auto joined = [](const std::vector<std::string>& keys) {
    std::string text;
    for (const std::string& key : keys) text += (text.empty() ? "" : ", ") + key;
    return text;
  };
  const std::string live = joined(applied);
  const std::string restart = joined(restart_changes(running, fresh));
  if (!restart.empty()) {
    log::emit(log::Level::warning, log::EventId::config_reloaded,
              "config re-read: " + (live.empty() ? std::string("nothing applied live") : "applied " + live) +
                  "; these changes take a restart (the running values stay): " + restart,
              {{"applied", live}, {"restart_needed", restart}});
  } else {
    log::emit(log::Level::info, log::EventId::config_reloaded,
              "config re-read: " + (live.empty() ? std::string("no change") : "applied " + live), {{"applied", live}});
  }
  return merged;
}

void LiveSettings::apply(const Config& config) {
  constexpr auto relaxed = std::memory_order_relaxed;
  const Timeouts& t = config.timeouts;
  handshake_timeout_ms_.store(t.handshake_timeout_ms, relaxed);
  hello_timeout_ms_.store(t.hello_timeout_ms, relaxed);
  heartbeat_interval_s_.store(t.heartbeat_interval_s, relaxed);
  child_silence_ms_.store(t.heartbeat_interval_s * t.missed_heartbeats * 1'000, relaxed);
  heartbeats_missed_max_.store(t.heartbeats_missed_max, relaxed);
  approval_poll_ms_.store(t.approval_poll_ms, relaxed);
  agent_approval_.store(config.agent_approval, relaxed);
  new_agents_per_minute_.store(config.new_agents_per_minute, relaxed);
  uplink_buffer_max_bytes_.store(config.uplink_buffer_max_bytes, relaxed);
  backoff_initial_ms_.store(t.backoff_initial_ms, relaxed);
  backoff_max_ms_.store(t.backoff_max_ms, relaxed);
  welcome_timeout_ms_.store(t.welcome_timeout_ms, relaxed);
  retry_after_loss_ms_.store(t.retry_after_loss_ms, relaxed);
  parent_silence_ms_.store(t.parent_silence_ms, relaxed);
  failback_ms_.store(t.failback_s * 1'000, relaxed);
  parents_.store(std::make_shared<const std::vector<Peer>>(config.role == Role::gateway ? config.parents : config.gateways));
}

LiveSettings::FailoverTimings LiveSettings::failover() const {
  return {load(backoff_initial_ms_), load(backoff_max_ms_), load(welcome_timeout_ms_),
          load(retry_after_loss_ms_), load(parent_silence_ms_), load(failback_ms_)};
}

bool Subnet::contains(const runtime::PeerAddress& given) const {
  const runtime::PeerAddress peer = given.unmapped();  // a dual-stack listener's IPv4 relay matches its IPv4 entry
  const uint8_t* bytes = nullptr;
  if (peer.storage.ss_family != family) return false;
  if (family == AF_INET) {
    bytes = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in&>(peer.storage).sin_addr);
  } else {
    bytes = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6&>(peer.storage).sin6_addr);
  }
  for (uint8_t bit = 0; bit < prefix_bits; ++bit) {
    const uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((bytes[bit / 8] & mask) != (address[bit / 8] & mask)) return false;
  }
  return true;
}

bool parse_subnet(std::string_view text, Subnet& subnet, std::string& why) {
  const size_t slash = text.find('/');
  const std::string host(text.substr(0, slash));
  subnet = {};
  if (inet_pton(AF_INET, host.c_str(), subnet.address.data()) == 1) {
    subnet.family = AF_INET;
    subnet.prefix_bits = 32;
  } else if (inet_pton(AF_INET6, host.c_str(), subnet.address.data()) == 1) {
    subnet.family = AF_INET6;
    subnet.prefix_bits = 128;
  } else {
    why = "'" + std::string(text) + "' is not an IP address or address/prefix";
    return false;
  }
  if (slash == std::string_view::npos) return true;
  const std::string_view bits = text.substr(slash + 1);
  uint32_t value = 0;
  for (char c : bits) {
    if (c < '0' || c > '9' || value > 128) {
      why = "'" + std::string(text) + "': the prefix length is not a number";
      return false;
    }
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (bits.empty() || value > subnet.prefix_bits) {
    why = "'" + std::string(text) + "': the prefix length must be 0 to " + std::to_string(subnet.prefix_bits);
    return false;
  }
  subnet.prefix_bits = static_cast<uint8_t>(value);
  return true;
}

}  // namespace gatehouse::config
