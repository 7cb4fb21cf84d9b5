// Start-up shared by the long-running roles (server, gateway, agent): config
// with every problem reported, log identity, PKINIT kept out. The roles
// themselves start in their modules (gateway::run, server::run, agent::run).
// And what the server's tools share.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "gatehouse/cli/args.h"
#include "gatehouse/config/config.h"

namespace gatehouse::cli {

// The config file named by --config/-c, else the installed default: for a
// known role CONFIG_DIR/ROLE.toml; without one (status, check-config) the only
// ROLE.toml of the three that exists. "" when none can be chosen (`why` says so).
std::string config_path(const Args& args, std::optional<config::Role> role, std::string& why);

// The exit status of a role whose start failed after its config loaded:
// 75 a port in use, 69 no io_uring, else 1 (runtime::StartFailure).
int failed_start_exit();

// Loads `--config FILE` (from parsed `args`) for `role` (event 30003 per
// problem), sets the log identity and level, and disables krb5 PKINIT.
// False: exit with `exit_code`.
bool start_role(const Args& args, config::Role role, std::string_view usage, config::Config& config, int& exit_code);

// The server's config (config_path), for the tools (approve, store, agents);
// every problem printed. False: exit with `exit_code`.
bool load_server_config(const Args& args, config::Config& config, int& exit_code);

// `text` as a JSON string on stdout.
void print_json_string(std::string_view text);

}  // namespace gatehouse::cli
