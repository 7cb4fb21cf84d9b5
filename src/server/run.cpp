// The server's composition root: the event store, the registry of approvals,
// and the listener stack with one ServerSessions per shard.
#include "gatehouse/server/run.h"

#include "gatehouse/log/log.h"
#include "gatehouse/net/listener_stack.h"
#include "gatehouse/server/gateway_dialer.h"
#include "gatehouse/server/server_role.h"
#include "gatehouse/store/pg_store.h"
#include "gatehouse/store/store.h"

namespace gatehouse::server {

std::string events_dir(const config::Config& config) { return config.data_dir + "/events"; }

namespace {

// The local store (data_dir/events) or the group's PostgreSQL; nullptr after
// saying why (the server does not start).
std::unique_ptr<store::Backend> open_store(const config::Config& config) {
  std::string why;
  store::StoreLimits limits = config.store;
  limits.writer_nice = config.runtime.shard_nice;  // the writer is on every ACK's path
  if (config.store_backend == config::StoreBackend::postgresql) {
    auto store = store::PgStore::open(config.store_dsn, config.name, limits, why);
    if (store == nullptr) {
      log::emit(log::Level::error, log::EventId::database_unavailable,
                "cannot open the group's PostgreSQL store; not starting: " + why);
    }
    return store;
  }
  auto store = store::EventStore::open(events_dir(config), limits, why);
  if (store == nullptr) {
    log::emit(log::Level::error, log::EventId::store_damaged, "cannot open the event store; not starting: " + why,
              {{"data_dir", config.data_dir}});
    return nullptr;
  }
  if (const uint64_t torn = store->stats().torn_bytes_truncated; torn > 0) {
    log::emit(log::Level::warning, log::EventId::store_tail_truncated,
              "the store's last segment ended in a torn record (a crash mid-write); it was cut off, nothing "
              "acknowledged is lost",
              {{"bytes", torn}});
  }
  return store;
}

void expose_store(admin::Exposition& out, const store::Backend& store) {
  const store::StoreStats stats = store.stats();
  admin::expose(out, {
      {"gatehouse_store_events", admin::MetricType::gauge, "Events held by the store.", stats.events},
      {"gatehouse_store_event_bytes", admin::MetricType::gauge, "Event payload bytes held by the store.", stats.bytes},
      {"gatehouse_store_agents", admin::MetricType::gauge, "Agents with at least one stored event.", stats.agents},
      {"gatehouse_store_duplicates_dropped_total", admin::MetricType::counter,
       "Events received again (a resend after a lost ACK) and dropped.", stats.duplicates_dropped},
      {"gatehouse_store_events_lost_total", admin::MetricType::counter,
       "Events agents declared dropped (their queue was full: drop-oldest).", stats.events_lost},
      {"gatehouse_store_batches_waiting", admin::MetricType::gauge,
       "Batches of events waiting for the store's writer.", store.batches_waiting()},
      {"gatehouse_store_available", admin::MetricType::gauge,
       "1 while commits go through; 0 while the disk is full or the database fails commits.",
       store.unavailable().empty() ? 1u : 0u},
  });
  out.family("gatehouse_store_commit_seconds", admin::MetricType::histogram,
             "One group commit: events durable (fdatasync, or the database's COMMIT).");
  out.histogram("gatehouse_store_commit_seconds", "", store.commit_latency().snapshot());
}

void expose_health(admin::Exposition& out, const AgentHealth& health) {
  const AgentHealth::Counts counts = health.counts();
  out.family("gatehouse_agents", admin::MetricType::gauge,
             "Agents this server heard since it started, by health (down: heartbeats_missed_max heartbeats missed).");
  out.sample("gatehouse_agents", R"(state="up")", static_cast<int64_t>(counts.agents_up));
  out.sample("gatehouse_agents", R"(state="down")", static_cast<int64_t>(counts.agents_down));
  out.family("gatehouse_gateways", admin::MetricType::gauge, "Gateways this server heard since it started, by health.");
  out.sample("gatehouse_gateways", R"(state="up")", static_cast<int64_t>(counts.gateways_up));
  out.sample("gatehouse_gateways", R"(state="down")", static_cast<int64_t>(counts.gateways_down));
}

std::string store_status(const store::Backend& store, config::StoreBackend backend) {
  const store::StoreStats stats = store.stats();
  const std::string why = store.unavailable();
  std::string json = "\"store\":{\"backend\":" +
                     std::string(backend == config::StoreBackend::postgresql ? "\"postgresql\"" : "\"local\"") +
                     ",\"available\":" + (why.empty() ? "true" : "false") +
                     ",\"events\":" + std::to_string(stats.events) + ",\"agents\":" + std::to_string(stats.agents) +
                     ",\"duplicates_dropped\":" + std::to_string(stats.duplicates_dropped) +
                     ",\"batches_waiting\":" + std::to_string(store.batches_waiting());
  if (!why.empty()) {
    json += ",\"unavailable_reason\":";
    log::append_json_string(json, why);
  }
  return json + "}";
}

}  // namespace

bool run(const config::Config& config) {
  std::string why;
  // Files another user owns would be written here and refused later: say so now.
  if (const std::string refusal = ownership_refusal(config.data_dir); !refusal.empty()) {
    log::emit(log::Level::error, log::EventId::config_invalid, "cannot use the data folder: " + refusal,
              {{"data_dir", config.data_dir}});
    return false;
  }
  std::unique_ptr<store::Backend> store = open_store(config);
  if (store == nullptr) return false;
  // Before the registry: its thread runs the checks until the registry goes.
  config::LiveSettings live(config);  // what a SIGHUP changes
  AgentHealth health(live);
  auto registry = Registry::open(config, why);
  if (registry == nullptr) {
    log::emit(log::Level::error, log::EventId::config_invalid, "cannot open the server's data: " + why,
              {{"data_dir", config.data_dir}});
    return false;
  }
  const store::StoreStats recovered = store->stats();
  registry->set_round_hook([&health, &registry = *registry] {
    health.check(static_cast<int64_t>(runtime::steady_ms()), registry);
  });
  registry->watch([&live] { return live.approval_poll_ms(); });
  ServerContext context{*store, *registry, live, config.name, ServerLimits{}};
  context.health = &health;
  net::ListenerStack stack(config, live);
  // The gateways this server dials ([[gateways]]), resolved off the shards.
  const uint32_t shards = runtime::shard_count_for(config.runtime);
  auto gateway_addresses = std::make_shared<net::AddressBook>(config.gateways, config.timeouts.resolve_interval_s * 1'000);
  std::vector<GatewayDialer*> dialers;  // by shard; none without [[gateways]]
  if (std::string problem = stack.start([&](uint32_t shard) {
        auto sessions = std::make_unique<ServerSessions>(context);
        ServerSessions* handler = sessions.get();
        if (config.gateways.empty()) {
          return net::ListenerStack::RoleShard{std::move(sessions), nullptr,
                                               [handler](net::Gate& gate) { handler->attach(gate); }};
        }
        auto dialer = std::make_unique<GatewayDialer>(config.gateways, gateway_addresses, shard, shards, DialerOptions{});
        GatewayDialer* dialing = dialer.get();
        dialers.push_back(dialing);
        return net::ListenerStack::RoleShard{std::move(sessions), std::move(dialer),
                                             [handler, dialing](net::Gate& gate) {
                                               handler->attach(gate);
                                               dialing->attach(gate.tls());
                                             }};
      });
      !problem.empty()) {
    log::emit(log::Level::error, log::EventId::runtime_unavailable, "cannot start: " + problem);
    return false;
  }
  const store::Backend& backend = *store;
  if (std::string problem = stack.start_admin(
          {.role = "server",
           .name = config.name,
           .metrics = [&backend, &health](admin::Exposition& out) {
             expose_store(out, backend);
             expose_health(out, health);
           },
           .not_ready = [&backend] { return backend.unavailable(); },
           .status_members = [&backend, &config, &health] {
             const AgentHealth::Counts counts = health.counts();
             return store_status(backend, config.store_backend) + ",\"health\":{\"agents_up\":" +
                    std::to_string(counts.agents_up) + ",\"agents_down\":" + std::to_string(counts.agents_down) +
                    ",\"gateways_up\":" + std::to_string(counts.gateways_up) +
                    ",\"gateways_down\":" + std::to_string(counts.gateways_down) + "}";
           }});
      !problem.empty()) {
    log::emit(log::Level::error, log::EventId::admin_unavailable, "cannot start: " + problem);
    return false;
  }
  runtime::Runtime& runtime = stack.runtime();
  store->start(ServerSessions::deliver);
  for (uint32_t shard = 0; shard < dialers.size(); ++shard) runtime.shard(shard).post({dialers[shard], 0, nullptr});
  log::emit(log::Level::info, log::EventId::process_started, "server started",
            {{"listen", config.listen.host}, {"port", stack.port()}, {"admin_port", stack.admin_port()}, {"shards", runtime.shard_count()},
             {"events", recovered.events}, {"agents", recovered.agents}});
  stack.run_until_stopped();
  store->stop();
  return true;
}

}  // namespace gatehouse::server
