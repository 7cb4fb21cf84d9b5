#pragma once

#include <optional>
#include <string_view>

#include "gatehouse/config/config_types.h"

namespace gatehouse::config {

const char* to_string(Role role);
bool parse_role(std::string_view text, Role& role);

// Loads and validates a TOML config. `role` is the role the caller runs as
// (the subcommand); without it the file's `role` key decides, else the tables
// present do ([[parents]]: gateway, [[gateways]]: agent, data_dir/[approval]:
// server). Returns every problem found, each with file, line and key.
std::vector<ConfigError> load(std::string_view path, std::optional<Role> role, Config& config);

// SIGHUP: reads `running`'s file again. An invalid file is refused (30003,
// every problem; nullopt: the running config stays). Otherwise returns the
// config to run with now: `running` with the live keys of the file (the log
// level is set here; the caller hands the rest to its LiveSettings), and one
// line (30005) names the keys applied and the tables that changed but take a
// restart. Certificates and keytabs are reloaded by their owners.
std::optional<Config> reread(const Config& running);

// `running` with the live keys of `fresh` ([log] level, timeouts, [health],
// [approval], [failover] but resolve_interval_s, [uplink] buffer_max_bytes);
// `applied` gets the name of each that changed.
Config with_live_keys(const Config& running, const Config& fresh, std::vector<std::string>& applied);

// The tables and keys that differ but take a restart, as they are written
// ("[runtime]", "[[parents]]", "listen"); the live keys are not among them.
std::vector<std::string> restart_changes(const Config& running, const Config& fresh);

// The effective config as TOML (check-config --dump): every key the role
// reads, with the file's value or the default; loads back to the same config.
// A PostgreSQL password in [store] dsn is not printed.
std::string dump(const Config& config);

// "path:line: key: message".
std::string format(const ConfigError& error);

// "10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8".
bool parse_subnet(std::string_view text, Subnet& subnet, std::string& why);

// Parses "host:port" / "[v6]:port". `ip_literal_only` for listen addresses.
bool parse_endpoint(std::string_view text, bool ip_literal_only, Endpoint& endpoint,
                    std::string& why);

}  // namespace gatehouse::config
