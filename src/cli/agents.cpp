// `gatehouse agents`: the management group's agents with their health, from
// the registry the servers write (local SQLite, or the group's PostgreSQL).
#include <cstdio>
#include <ctime>
#include <string>

#include "commands.h"
#include "gatehouse/cli/args.h"
#include "gatehouse/log/log.h"
#include "gatehouse/server/registry.h"
#include "role_start.h"

namespace gatehouse::cli {
namespace {

constexpr std::string_view kUsage = "gatehouse agents --config FILE [--state up|down|pending] [--json]";

// What an operator sees: pending approval; up while heartbeats come; down
// when the server watching it said so, or when its last heartbeat is older
// than the group's limit plus an interval (that server is gone too).
std::string health_of(const server::AgentRecord& agent, const config::Timeouts& timeouts, int64_t now_unix_s) {
  if (agent.state == server::AgentState::pending) return "pending";
  if (agent.state == server::AgentState::rejected) return "rejected";
  const int64_t stale_after_s = int64_t{timeouts.heartbeat_interval_s} * (timeouts.heartbeats_missed_max + 1);
  if (agent.last_heartbeat_unix_s == 0 || agent.health == "down") return "down";
  return now_unix_s - agent.last_heartbeat_unix_s > stale_after_s ? "down" : "up";
}

std::string tier_of(const server::AgentBinding& binding) {
  return binding.scope == server::kDirectScope ? "direct" : binding.scope;
}

}  // namespace

int run_agents(int argc, char** argv, int first) {
  static constexpr FlagSpec kFlags[] = {{"--config", true}, {"--state", true}, {"--json", false}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse agents", why, kUsage);
  if (!args.positionals.empty()) {
    return usage_error("gatehouse agents", "unexpected argument '" + std::string(args.positionals[0]) + "'", kUsage);
  }
  const std::string wanted(args.value("--state").value_or(""));
  if (!wanted.empty() && wanted != "up" && wanted != "down" && wanted != "pending") {
    return usage_error("gatehouse agents", "--state must be up, down or pending", kUsage);
  }
  config::Config config;
  int exit_code = kExitOk;
  if (!load_server_config(args, config, exit_code)) return exit_code;
  auto registry = server::Registry::open(config, why);
  if (registry == nullptr) {
    std::fprintf(stderr, "gatehouse agents: %s\n", why.c_str());
    return kExitFailure;
  }
  const int64_t now_unix_s = std::time(nullptr);
  const bool json = args.has("--json");
  if (json) std::printf("[");
  size_t shown = 0;
  for (const server::AgentRecord& agent : registry->agents(false)) {
    const std::string state = health_of(agent, config.timeouts, now_unix_s);
    if (!wanted.empty() && state != wanted) continue;
    const std::string heartbeat =
        agent.last_heartbeat_unix_s == 0 ? "" : log::iso8601_utc(agent.last_heartbeat_unix_s, 0, 3);
    if (json) {
      std::printf("%s{\"name\":", shown > 0 ? "," : "");
      print_json_string(agent.name);
      std::printf(",\"state\":\"%s\",\"last_heartbeat\":", state.c_str());
      if (heartbeat.empty()) {
        std::printf("null");
      } else {
        print_json_string(heartbeat);
      }
      std::printf(",\"path\":");
      print_json_string(agent.path);
      std::printf(",\"tier\":");
      print_json_string(tier_of(agent.binding));
      std::printf(",\"auth\":");
      print_json_string(agent.binding.auth);
      std::printf("}");
    } else {
      if (shown == 0) std::printf("%-32s %-8s %-24s %-12s %s\n", "NAME", "STATE", "LAST HEARTBEAT", "TIER", "PATH");
      std::printf("%-32s %-8s %-24s %-12s %s\n", agent.name.c_str(), state.c_str(),
                  heartbeat.empty() ? "never" : heartbeat.c_str(),
                  tier_of(agent.binding).empty() ? "-" : tier_of(agent.binding).c_str(),
                  agent.path.empty() ? "direct" : agent.path.c_str());
    }
    ++shown;
  }
  if (json) std::printf("]\n");
  return kExitOk;
}

}  // namespace gatehouse::cli
