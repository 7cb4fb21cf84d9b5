// Start-up shared by the long-running roles (server, gateway, agent): config
// with every problem reported, log identity, PKINIT kept out. The roles
// themselves start in their modules (gateway::run, server::run, agent::run).
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

}  // namespace gatehouse::cli
