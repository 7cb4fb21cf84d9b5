// `gatehouse gateway`: agents (and chained gateways) in, a few pooled uplinks
// per shard out to the first reachable parent.
#include "gatehouse/cli/args.h"
#include "gatehouse/gateway/run.h"
#include "commands.h"
#include "role_start.h"

namespace gatehouse::cli {

int run_gateway(int argc, char** argv, int first) {
  static constexpr std::string_view kUsage = "gatehouse gateway --config FILE";
  static constexpr FlagSpec kFlags[] = {{"--config", true}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse gateway", why, kUsage);
  config::Config config;
  int exit_code = kExitOk;
  if (!start_role(args, config::Role::gateway, kUsage, config, exit_code)) return exit_code;
  return gateway::run(config) ? kExitOk : failed_start_exit();
}

}  // namespace gatehouse::cli
