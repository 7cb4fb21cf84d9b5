// The server's composition root: the event store, the registry of approvals,
// and the listener stack with one ServerSessions per shard.
#include "gatehouse/server/run.h"

#include "gatehouse/log/log.h"
#include "gatehouse/net/listener_stack.h"
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

}  // namespace

bool run(const config::Config& config) {
  std::string why;
  std::unique_ptr<store::Backend> store = open_store(config);
  if (store == nullptr) return false;
  auto registry = Registry::open(config, why);
  if (registry == nullptr) {
    log::emit(log::Level::error, log::EventId::config_invalid, "cannot open the server's data: " + why,
              {{"data_dir", config.data_dir}});
    return false;
  }
  const store::StoreStats recovered = store->stats();
  registry->watch(config.timeouts.approval_poll_ms);
  ServerLimits limits;
  limits.heartbeat_interval_s = static_cast<uint16_t>(config.timeouts.heartbeat_interval_s);
  limits.new_agents_per_minute = config.new_agents_per_minute;
  ServerContext context{*store, *registry, config.agent_approval, config.name, limits};
  net::ListenerStack stack(config);
  if (std::string problem = stack.start([&](uint32_t) {
        auto sessions = std::make_unique<ServerSessions>(context);
        ServerSessions* handler = sessions.get();
        return net::ListenerStack::RoleShard{std::move(sessions), nullptr,
                                        [handler](net::Gate& gate) { handler->attach(gate); }};
      });
      !problem.empty()) {
    log::emit(log::Level::error, log::EventId::runtime_unavailable, "cannot start: " + problem);
    return false;
  }
  runtime::Runtime& runtime = stack.runtime();
  store->start(ServerSessions::deliver);
  log::emit(log::Level::info, log::EventId::process_started, "server started",
            {{"listen", config.listen.host}, {"port", stack.port()}, {"shards", runtime.shard_count()},
             {"events", recovered.events}, {"agents", recovered.agents}});
  stack.run_until_stopped();
  store->stop();
  return true;
}

}  // namespace gatehouse::server
