// Starts the server role and runs it until SIGTERM/SIGINT (SIGHUP reloads).
#pragma once

#include <string>

#include "gatehouse/config/config_types.h"

namespace gatehouse::server {

// False when it could not start (the reason is logged).
bool run(const config::Config& config);

// Where the event store lives: data_dir/events.
std::string events_dir(const config::Config& config);

}  // namespace gatehouse::server
