// `gatehouse server`, and the tools that read and edit its state:
// `gatehouse approve` (registry) and `gatehouse store` (event store).
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <span>

#include "gatehouse/cli/args.h"
#include "gatehouse/log/log.h"
#include "gatehouse/proto/codec.h"
#include "gatehouse/server/run.h"
#include "gatehouse/server/registry.h"
#include "gatehouse/store/pg_store.h"
#include "gatehouse/store/store.h"
#include "commands.h"
#include "role_start.h"

namespace gatehouse::cli {
namespace {

// The server config named by --config, for the tools; false: exit with `exit_code`.
bool load_server_config(const Args& args, const std::string& command, std::string_view usage, config::Config& config,
                        int& exit_code) {
  const auto path = args.value("--config");
  if (!path) {
    exit_code = usage_error(command, "--config FILE (the server's) is required", usage);
    return false;
  }
  const std::vector<config::ConfigError> errors = config::load(*path, config::Role::server, config);
  for (const config::ConfigError& error : errors) std::fprintf(stderr, "%s\n", config::format(error).c_str());
  exit_code = kExitFailure;
  return errors.empty();
}

void print_json_string(std::string_view text) {
  std::string out;
  log::append_json_string(out, text);
  std::fputs(out.c_str(), stdout);
}

std::string base64(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t group = 0;
    for (size_t k = 0; k < 3; ++k) group = (group << 8) | (k < n ? std::to_integer<uint32_t>(bytes[i + k]) : 0);
    for (size_t k = 0; k < 4; ++k) out.push_back(k <= n ? kDigits[(group >> (18 - 6 * k)) & 0x3F] : '=');
  }
  return out;
}

// "2026-12-02T03:00:00Z", with a fraction of up to 6 digits, or "@1796180400" (unix seconds).
bool parse_time(std::string_view text, int64_t& unix_us) {
  if (text.starts_with('@')) {
    const std::string seconds(text.substr(1));
    char* end = nullptr;
    const long long value = std::strtoll(seconds.c_str(), &end, 10);
    if (seconds.empty() || *end != '\0' || value < 0) return false;
    unix_us = value * 1'000'000;
    return true;
  }
  std::tm utc{};
  const std::string copy(text);
  const char* rest = strptime(copy.c_str(), "%Y-%m-%dT%H:%M:%S", &utc);
  if (rest == nullptr) return false;
  int64_t micros = 0;
  if (*rest == '.') {
    int digits = 0;
    for (++rest; *rest >= '0' && *rest <= '9'; ++rest, ++digits) {
      if (digits < 6) micros = micros * 10 + (*rest - '0');
    }
    if (digits == 0) return false;
    for (; digits < 6; ++digits) micros *= 10;
  }
  if (std::string_view(rest) != "Z") return false;
  unix_us = static_cast<int64_t>(timegm(&utc)) * 1'000'000 + micros;
  return true;
}

// One stored event (or declared gap) as one JSON line. A payload that is not
// UTF-8 goes as `payload_base64`, so every line is valid JSON and nothing is
// changed on the way out.
void print_event(const store::StoredEvent& event) {
  std::printf("{\"agent\":");
  print_json_string(event.agent);
  std::printf(",\"incarnation\":\"%s\"", proto::incarnation_hex(event.incarnation).c_str());
  if (event.received_unix_us != 0) {  // when it came and through which gateways (records since received times)
    std::printf(",\"received_at\":\"%s\",\"path\":", log::iso8601_utc_us(event.received_unix_us).c_str());
    print_json_string(event.path);
  }
  if (!event.server.empty()) {  // a group's: which server stored it
    std::printf(",\"server\":");
    print_json_string(event.server);
  }
  if (event.gap_first_seq != 0) {  // the agent declared these dropped (its queue was full)
    std::printf(",\"gap\":{\"first_seq\":%llu,\"last_seq\":%llu}}\n",
                static_cast<unsigned long long>(event.gap_first_seq), static_cast<unsigned long long>(event.seq));
    return;
  }
  std::printf(",\"seq\":%llu", static_cast<unsigned long long>(event.seq));
  const std::string_view payload(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
  if (log::valid_utf8(payload)) {
    std::printf(",\"payload\":");
    print_json_string(payload);
  } else {
    std::printf(",\"payload_base64\":\"%s\"", base64(event.payload).c_str());
  }
  std::printf("}\n");
}

}  // namespace

int run_server(int argc, char** argv, int first) {
  static constexpr std::string_view kUsage = "gatehouse server --config FILE";
  static constexpr FlagSpec kFlags[] = {{"--config", true}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse server", why, kUsage);
  config::Config config;
  int exit_code = kExitOk;
  if (!start_role(args, config::Role::server, kUsage, config, exit_code)) return exit_code;

  return server::run(config) ? kExitOk : kExitFailure;
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
  if (!load_server_config(args, "gatehouse approve", kUsage, config, exit_code)) return exit_code;
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

// `store verify` (exit 0: no damage, 1: damage) and `store salvage --to DIR`:
// every damaged stretch and the events it took, as JSON lines.
int check_store(const config::Config& config, const Args& args, bool salvage, std::string_view usage) {
  const auto to_dir = args.value("--to");
  if (salvage && !to_dir) return usage_error("gatehouse store", "salvage needs --to DIR (a new, empty folder)", usage);
  store::DamageReport report;
  std::string why;
  if (!store::EventStore::salvage(server::events_dir(config), salvage ? std::string(*to_dir) : "", report, why)) {
    std::fprintf(stderr, "gatehouse store: %s\n", why.c_str());
    return kExitFailure;
  }
  uint64_t events_lost = 0;
  for (const store::DamageReport::Stretch& stretch : report.damaged) {
    std::printf("{\"damaged\":{\"file\":");
    print_json_string(stretch.file);
    std::printf(",\"from_byte\":%llu,\"to_byte\":%llu}}\n", static_cast<unsigned long long>(stretch.from_byte),
                static_cast<unsigned long long>(stretch.to_byte));
  }
  for (const store::DamageReport::Lost& lost : report.lost) {
    std::printf("{\"lost\":{\"agent\":");
    print_json_string(lost.agent);
    std::printf(",\"incarnation\":\"%s\",\"first_seq\":%llu,\"last_seq\":%llu}}\n",
                proto::incarnation_hex(lost.incarnation).c_str(), static_cast<unsigned long long>(lost.first_seq),
                static_cast<unsigned long long>(lost.last_seq));
    events_lost += lost.last_seq - lost.first_seq + 1;
  }
  std::printf("{\"records_kept\":%llu,\"damaged_stretches\":%zu,\"events_lost\":%llu",
              static_cast<unsigned long long>(report.records_kept), report.damaged.size(),
              static_cast<unsigned long long>(events_lost));
  if (salvage) {
    std::printf(",\"salvaged_to\":");
    print_json_string(*to_dir);
  }
  std::printf("}\n");
  return report.damaged.empty() ? kExitOk : kExitFailure;
}

namespace {

// Each agent the store holds events of, a JSON line each: how many events,
// the seqs declared dropped, its incarnations and the last seq stored.
int list_store_agents(const config::Config& config) {
  std::vector<store::AgentSummary> summaries;
  std::string why;
  const bool ok = config.store_backend == config::StoreBackend::postgresql
                      ? store::PgStore::agent_summaries(config.store_dsn, summaries, why)
                      : store::EventStore::agent_summaries(server::events_dir(config), summaries, why);
  if (!ok) {
    std::fprintf(stderr, "gatehouse store: %s\n", why.c_str());
    return kExitFailure;
  }
  for (const store::AgentSummary& summary : summaries) {
    std::printf("{\"agent\":");
    print_json_string(summary.agent);
    std::printf(",\"events\":%llu,\"declared_dropped\":%llu,\"incarnations\":%llu,\"last_seq\":%llu}\n",
                static_cast<unsigned long long>(summary.events),
                static_cast<unsigned long long>(summary.declared_dropped),
                static_cast<unsigned long long>(summary.incarnations),
                static_cast<unsigned long long>(summary.last_seq));
  }
  return kExitOk;
}

}  // namespace

int run_store(int argc, char** argv, int first) {
  static constexpr std::string_view kUsage =
      "gatehouse store --config FILE stats [--json]\n"
      "       gatehouse store --config FILE dump [--agent NAME] [--since TIME]\n"
      "       gatehouse store --config FILE agents\n"
      "       gatehouse store --config FILE verify\n"
      "       gatehouse store --config FILE salvage --to DIR";
  static constexpr FlagSpec kFlags[] = {{"--config", true}, {"--json", false}, {"--agent", true}, {"--to", true},
                                        {"--since", true}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse store", why, kUsage);
  config::Config config;
  int exit_code = kExitOk;
  if (!load_server_config(args, "gatehouse store", kUsage, config, exit_code)) return exit_code;
  if (args.positionals.size() != 1) {
    return usage_error("gatehouse store", "say stats, dump, agents, verify or salvage", kUsage);
  }
  const std::string_view action = args.positionals[0];
  const bool group = config.store_backend == config::StoreBackend::postgresql;
  if (action == "verify" || action == "salvage") {
    if (group) {
      std::fprintf(stderr, "gatehouse store: %s is for the local store; PostgreSQL checks its own pages "
                           "(pg_amcheck) and restores from its backups\n", std::string(action).c_str());
      return kExitFailure;
    }
    return check_store(config, args, action == "salvage", kUsage);
  }
  if (action == "stats") {
    store::StoreStats stats;
    if (!(group ? store::PgStore::read_stats(config.store_dsn, stats, why)
                : store::EventStore::read_stats(server::events_dir(config), stats, why))) {
      std::fprintf(stderr, "gatehouse store: %s\n", why.c_str());
      return kExitFailure;
    }
    const std::pair<const char*, uint64_t> fields[] = {{"agents", stats.agents},
                                                       {"events", stats.events},
                                                       {"bytes", stats.bytes},
                                                       {"duplicates_dropped", stats.duplicates_dropped},
                                                       {"gaps", stats.gaps},
                                                       {"events_lost", stats.events_lost},
                                                       {"segments", stats.segments}};
    const bool json = args.has("--json");
    for (size_t i = 0; i < std::size(fields); ++i) {
      const auto value = static_cast<unsigned long long>(fields[i].second);
      if (json) std::printf("%s\"%s\":%llu", i == 0 ? "{" : ",", fields[i].first, value);
      else std::printf("%s %llu\n", fields[i].first, value);
    }
    if (json) std::printf("}\n");
    return kExitOk;
  }
  if (action == "agents") return list_store_agents(config);
  if (action != "dump") return usage_error("gatehouse store", "unknown action '" + std::string(action) + "'", kUsage);
  const std::string agent(args.value("--agent").value_or(""));
  int64_t since_unix_us = 0;
  if (const auto since = args.value("--since"); since && !parse_time(*since, since_unix_us)) {
    return usage_error("gatehouse store", "--since " + std::string(*since) +
                                              ": want UTC as 2026-12-02T03:00:00Z (fraction allowed) or @UNIX_SECONDS",
                       kUsage);
  }
  // Records from before received times have none: --since leaves them out.
  const auto print_since = [since_unix_us](const store::StoredEvent& event) {
    if (since_unix_us == 0 || event.received_unix_us >= since_unix_us) print_event(event);
  };
  const bool ok = group ? store::PgStore::dump(config.store_dsn, agent, print_event, why, since_unix_us)
                        : store::EventStore::dump(server::events_dir(config), agent, print_since, why);
  if (!ok) std::fprintf(stderr, "gatehouse store: %s\n", why.c_str());
  return ok ? kExitOk : kExitFailure;
}

}  // namespace gatehouse::cli
