// `gatehouse gateway`: agents (and chained gateways) in, a few pooled uplinks
// per shard out to the first reachable parent.
#include "gatehouse/cli/args.h"
#include "gatehouse/gateway/gateway_sessions.h"
#include "gatehouse/log/log.h"
#include "tls/session.h"
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

  uplink::UplinkOptions options;
  options.parents = config.parents;
  options.addresses = std::make_shared<net::AddressBook>(config.parents, net::kAddressRefreshIntervalMs);
  options.uplinks = config.uplinks_per_shard;
  options.congested_above_bytes = config.uplink_buffer_max_bytes;
  options.drained_below_bytes = config.uplink_buffer_max_bytes / 4;
  options.backoff_max_ms = 5'000;  // one process, not thousands: retry often (an approval comes back fast)
  options.child.role = proto::Role::gateway;
  options.child.auth = proto::AuthMethod::cert;
  options.child.name = config.name;
  // Parents are one tier: a ticket from one resumes with its siblings.
  options.child.tls = tls::Context::load({.side = tls::Side::client, .cert_path = config.tls.cert_path,
                                          .key_path = config.tls.key_path, .ca_path = config.tls.ca_path,
                                          .crl_path = config.tls.crl_path, .resume_across_servers = true},
                                         why);
  if (options.child.tls == nullptr) {
    log::emit(log::Level::error, log::EventId::certificate_invalid, "cannot load the uplinks' TLS material: " + why);
    return kExitFailure;
  }
  constexpr uint16_t kHeartbeatIntervalS = 60;
  ListenerStack stack(config);
  std::vector<uplink::UplinkPool*> pools;  // by shard
  if (std::string problem = stack.start([&](uint32_t) {
        auto sessions = std::make_unique<gateway::GatewaySessions>(config.name, config.runtime.connections_per_shard,
                                                                   kHeartbeatIntervalS);
        auto uplinks = std::make_unique<uplink::UplinkPool>(options, *sessions);
        gateway::GatewaySessions* handler = sessions.get();
        uplink::UplinkPool* pool = uplinks.get();
        pools.push_back(pool);
        return ListenerStack::RoleShard{std::move(sessions), std::move(uplinks),
                                        [handler, pool](net::Gate& gate) { handler->attach(*pool, gate); }};
      });
      !problem.empty()) {
    log::emit(log::Level::error, log::EventId::runtime_unavailable, "cannot start: " + problem);
    return kExitFailure;
  }
  runtime::Runtime& runtime = stack.runtime();
  for (uint32_t shard = 0; shard < runtime.shard_count(); ++shard) runtime.shard(shard).post({pools[shard], 0, nullptr});
  log::emit(log::Level::info, log::EventId::process_started, "gateway started",
            {{"listen", config.listen.host}, {"port", stack.port()}, {"shards", runtime.shard_count()},
             {"uplinks", runtime.shard_count() * config.uplinks_per_shard}});
  stack.run_until_stopped();
  return kExitOk;
}

}  // namespace gatehouse::cli
