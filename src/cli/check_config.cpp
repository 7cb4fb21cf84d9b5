#include <cstdio>

#include "gatehouse/cli/args.h"
#include "commands.h"
#include "gatehouse/config/config.h"

namespace gatehouse::cli {

int run_check_config(int argc, char** argv, int first) {
  static constexpr std::string_view kUsage = "gatehouse check-config --config FILE [--role gateway|server|agent]";
  static constexpr FlagSpec kFlags[] = {{"--config", true}, {"--role", true}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse check-config", why, kUsage);
  if (!args.positionals.empty()) {
    return usage_error("gatehouse check-config", "unexpected argument '" + std::string(args.positionals[0]) + "'", kUsage);
  }
  const auto path = args.value("--config");
  if (!path) return usage_error("gatehouse check-config", "--config FILE is required", kUsage);
  std::optional<config::Role> role;
  if (const auto role_text = args.value("--role")) {
    config::Role parsed;
    if (!config::parse_role(*role_text, parsed)) {
      return usage_error("gatehouse check-config", "--role must be gateway, server or agent", kUsage);
    }
    role = parsed;
  }

  config::Config config;
  const std::vector<config::ConfigError> errors = config::load(*path, role, config);
  for (const config::ConfigError& error : errors) {
    std::fprintf(stderr, "%s\n", config::format(error).c_str());
  }
  if (!errors.empty()) {
    std::fprintf(stderr, "%s: invalid (%zu problem%s)\n", config.source_path.c_str(), errors.size(),
                 errors.size() == 1 ? "" : "s");
    return kExitConfig;
  }
  const size_t peers = config.role == config::Role::gateway ? config.parents.size() : config.gateways.size();
  std::printf("%s: valid %s config for '%s'", config.source_path.c_str(), config::to_string(config.role),
              config.name.c_str());
  if (config.role != config::Role::agent) std::printf(", listen %s", config.listen.text.c_str());
  if (config.role != config::Role::server) {
    std::printf(", %zu %s", peers, config.role == config::Role::gateway ? "parent(s)" : "gateway(s)");
  }
  std::printf("\n");
  return kExitOk;
}

}  // namespace gatehouse::cli
