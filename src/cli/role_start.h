// Start-up shared by the long-running roles (server, gateway, agent): config
// with every problem reported, log identity, PKINIT kept out. The roles
// themselves start in their modules (gateway::run, server::run, agent::run).
// And what the server's tools share.
#pragma once

#include <string>
#include <string_view>

#include "gatehouse/cli/args.h"
#include "gatehouse/config/config.h"

namespace gatehouse::cli {

// Loads `--config FILE` (from parsed `args`) for `role` (event 30003 per
// problem), sets the log identity and level, and disables krb5 PKINIT.
// False: exit with `exit_code`.
bool start_role(const Args& args, config::Role role, std::string_view usage, config::Config& config, int& exit_code);

// The server's config named by --config, for the tools (approve, store);
// every problem printed. False: exit with `exit_code`.
bool load_server_config(const Args& args, const std::string& command, std::string_view usage, config::Config& config,
                        int& exit_code);

// `text` as a JSON string on stdout.
void print_json_string(std::string_view text);

}  // namespace gatehouse::cli
