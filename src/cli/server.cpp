// `gatehouse server`, and `gatehouse approve`, which reads and edits its registry.
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "gatehouse/cli/args.h"
#include "gatehouse/log/log.h"
#include "gatehouse/proto/codec.h"
#include "gatehouse/server/run.h"
#include "gatehouse/server/registry.h"
#include "commands.h"
#include "role_start.h"

namespace gatehouse::cli {

int run_server(int argc, char** argv, int first) {
  static constexpr std::string_view kUsage = "gatehouse server --config FILE";
  static constexpr FlagSpec kFlags[] = {{"--config", true}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse server", why, kUsage);
  config::Config config;
  int exit_code = kExitOk;
  if (!start_role(args, config::Role::server, kUsage, config, exit_code)) return exit_code;

  return server::run(config) ? kExitOk : failed_start_exit();
}

int run_approve(int argc, char** argv, int first) {
  static constexpr std::string_view kUsage =
      "gatehouse approve --config FILE gateway NAME --action create|delete [--tier T]\n"
      "       gatehouse approve --config FILE agent NAME --action create|delete [--tier T | --direct] [--auth cert|kerberos]\n"
      "       gatehouse approve --config FILE list [--pending] [--json]";
  static constexpr FlagSpec kFlags[] = {{"--config", true}, {"--action", true}, {"--pending", false}, {"--json", false},
                                        {"--tier", true},   {"--direct", false}, {"--auth", true}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse approve", why, kUsage);
  config::Config config;
  int exit_code = kExitOk;
  if (!load_server_config(args, config, exit_code)) return exit_code;
  const auto& words = args.positionals;
  const bool listing = words.size() == 1 && words[0] == "list";
  const bool editing = words.size() == 2 && (words[0] == "gateway" || words[0] == "agent");
  if (!listing && !editing) return usage_error("gatehouse approve", "say gateway NAME, agent NAME or list", kUsage);
  const auto action = args.value("--action");
  if (editing && (!action || (*action != "create" && *action != "delete"))) {
    return usage_error("gatehouse approve", "--action create|delete is required", kUsage);
  }
  if (editing && proto::check_name(words[1]) != proto::ProtoError::none) {
    return usage_error("gatehouse approve", "'" + std::string(words[1]) + "' is not a valid name", kUsage);
  }
  // Trust scopes: a gateway's tier; an agent's tier or direct connection, and its auth method.
  const std::string tier(args.value("--tier").value_or(""));
  const std::string auth(args.value("--auth").value_or(""));
  if (!tier.empty() && proto::check_name(tier) != proto::ProtoError::none) {
    return usage_error("gatehouse approve", "--tier '" + tier + "' is not a valid name (letters, digits, . - _)", kUsage);
  }
  if (!editing && (!tier.empty() || !auth.empty() || args.has("--direct"))) {
    return usage_error("gatehouse approve", "--tier, --direct and --auth go with gateway or agent NAME", kUsage);
  }
  if (editing && words[0] == "gateway" && (!auth.empty() || args.has("--direct"))) {
    return usage_error("gatehouse approve", "--direct and --auth are for agents (a gateway is in a tier)", kUsage);
  }
  if (!tier.empty() && args.has("--direct")) return usage_error("gatehouse approve", "say --tier or --direct, not both", kUsage);
  if (!auth.empty() && auth != "cert" && auth != "kerberos") {
    return usage_error("gatehouse approve", "--auth must be cert or kerberos", kUsage);
  }
  auto registry = server::Registry::open(config, why);
  if (registry == nullptr) {
    std::fprintf(stderr, "gatehouse approve: %s\n", why.c_str());
    return kExitFailure;
  }
  if (editing) {
    const bool create = *action == "create";
    const std::string name(words[1]);
    const server::AgentBinding binding{args.has("--direct") ? std::string(server::kDirectScope) : tier, auth};
    why = words[0] == "gateway" ? registry->set_gateway(name, create, tier) : registry->set_agent(name, create, binding);
    if (!why.empty()) {
      std::fprintf(stderr, "gatehouse approve: %s\n", why.c_str());
      return kExitFailure;
    }
    std::printf("%s %s %s (a running server applies it within a second)\n", std::string(words[0]).c_str(),
                name.c_str(), create ? "approved" : "removed");
    return kExitOk;
  }
  const bool pending_only = args.has("--pending");
  const std::vector<server::GatewayRecord> gateways =
      pending_only ? std::vector<server::GatewayRecord>{} : registry->gateways();
  const std::vector<server::AgentRecord> agents = registry->agents(pending_only);
  // A gateway's tier is its own name unless set; an agent's scope and auth are "" until bound.
  auto tier_of = [](const server::GatewayRecord& gateway) { return gateway.tier.empty() ? gateway.name : gateway.tier; };
  auto scope_of = [](const server::AgentBinding& binding) {
    return binding.scope.empty() ? std::string("unbound") : binding.scope == server::kDirectScope ? std::string("direct") : "tier " + binding.scope;
  };
  if (args.has("--json")) {
    std::printf("{\"gateways\":[");
    for (size_t i = 0; i < gateways.size(); ++i) {
      std::printf("%s{\"name\":", i ? "," : "");
      print_json_string(gateways[i].name);
      std::printf(",\"tier\":");
      print_json_string(tier_of(gateways[i]));
      std::printf("}");
    }
    std::printf("],\"agents\":[");
    for (size_t i = 0; i < agents.size(); ++i) {
      std::printf("%s{\"name\":", i ? "," : "");
      print_json_string(agents[i].name);
      std::printf(",\"state\":\"%s\",\"first_seen_unix_s\":%lld,\"last_seen_unix_s\":%lld,\"via\":",
                  server::to_string(agents[i].state), static_cast<long long>(agents[i].first_seen_unix_s),
                  static_cast<long long>(agents[i].last_seen_unix_s));
      print_json_string(agents[i].via);
      std::printf(",\"scope\":");
      print_json_string(agents[i].binding.scope == server::kDirectScope ? "direct" : agents[i].binding.scope);
      std::printf(",\"auth\":");
      print_json_string(agents[i].binding.auth);
      std::printf("}");
    }
    std::printf("]}\n");
    return kExitOk;
  }
  for (const server::GatewayRecord& gateway : gateways) {
    std::printf("gateway %s approved tier %s\n", gateway.name.c_str(), tier_of(gateway).c_str());
  }
  for (const server::AgentRecord& agent : agents) {
    std::printf("agent %s %s%s%s, %s, auth %s\n", agent.name.c_str(), server::to_string(agent.state),
                agent.via.empty() ? "" : " via ", agent.via.c_str(), scope_of(agent.binding).c_str(),
                agent.binding.auth.empty() ? "unbound" : agent.binding.auth.c_str());
  }
  return kExitOk;
}

}  // namespace gatehouse::cli
