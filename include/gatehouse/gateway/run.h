// Starts the gateway role and runs it until SIGTERM/SIGINT (SIGHUP reloads).
#pragma once

#include "gatehouse/config/config_types.h"

namespace gatehouse::gateway {

// False when it could not start (the reason is logged).
bool run(const config::Config& config);

}  // namespace gatehouse::gateway
