// The gateway's composition root: uplinks to the parents, the listener stack
// for agents and child gateways, one GatewaySessions per shard between them.
#include "gatehouse/gateway/run.h"

#include <algorithm>

#include "gatehouse/gateway/gateway_sessions.h"
#include "gatehouse/log/log.h"
#include "gatehouse/net/listener_stack.h"
#include "tls/session.h"

namespace gatehouse::gateway {

bool run(const config::Config& config) {
  std::string why;
  uplink::UplinkOptions options;
  options.parents = config.parents;
  net::AddressBooks address_books(
      std::make_shared<net::AddressBook>(config.parents, config.timeouts.resolve_interval_s * 1'000));
  options.addresses = address_books.current();
  options.uplinks = config.uplinks_per_shard;
  options.congested_above_bytes = config.uplink_buffer_max_bytes;
  options.drained_below_bytes = config.uplink_buffer_max_bytes / 4;
  options.backoff_initial_ms = config.timeouts.backoff_initial_ms;
  options.backoff_max_ms = config.timeouts.backoff_max_ms;
  options.welcome_timeout_ms = config.timeouts.welcome_timeout_ms;
  options.retry_after_loss_ms = config.timeouts.retry_after_loss_ms;
  options.failback_after_ms = config.timeouts.failback_s * 1'000;
  options.parent_silence_max_ms = config.timeouts.parent_silence_ms;
  config::LiveSettings live(config);  // what a SIGHUP changes
  options.live = &live;
  options.child.role = proto::Role::gateway;
  options.child.auth = proto::AuthMethod::cert;
  options.child.name = config.name;
  // Parents are one tier: a ticket from one resumes with its siblings.
  auto uplink_tls = std::make_shared<tls::ReloadableContext>(tls::ContextOptions{
      .side = tls::Side::client, .cert_path = config.tls.cert_path, .key_path = config.tls.key_path,
      .ca_path = config.tls.ca_path, .crl_path = config.tls.crl_path, .resume_across_servers = true,
      .own_name = config.name, .own_role = tls::CertRole::gateway,
      .crl_expired_allowed = config.tls.crl_expired_allowed});
  if (const std::string problem = uplink_tls->reload(); !problem.empty()) {
    log::emit(log::Level::error, log::EventId::certificate_invalid, "cannot load the uplinks' TLS material: " + problem);
    return false;
  }
  options.child.tls = uplink_tls;
  // Each uplink's state for the admin endpoint: shards × uplinks, by shard.
  const uint32_t shards = runtime::shard_count_for(config.runtime);
  const auto link_reports = std::make_unique<admin::LinkReport[]>(size_t{shards} * config.uplinks_per_shard);
  net::ListenerStack stack(config, live);
  stack.reload_also(uplink_tls);  // renewed with the listeners' (new uplinks take it)
  std::vector<uplink::UplinkPool*> pools;  // by shard
  if (std::string problem = stack.start([&](uint32_t shard) {
        options.reports = &link_reports[size_t{shard} * config.uplinks_per_shard];
        auto sessions = std::make_unique<gateway::GatewaySessions>(config.name, live);
        auto uplinks = std::make_unique<uplink::UplinkPool>(options, *sessions);
        gateway::GatewaySessions* handler = sessions.get();
        uplink::UplinkPool* pool = uplinks.get();
        pools.push_back(pool);
        return net::ListenerStack::RoleShard{std::move(sessions), std::move(uplinks),
                                             [handler, pool](net::Gate& gate) { handler->attach(*pool, gate); },
                                             pool};  // a reload may add a connect = "parent" entry
      });
      !problem.empty()) {
    log::emit(log::Level::error, log::EventId::runtime_unavailable, "cannot start: " + problem);
    return false;
  }
  const std::span<const admin::LinkReport> links(link_reports.get(), size_t{shards} * config.uplinks_per_shard);
  if (std::string problem = stack.start_admin({.role = "gateway",
                                               .name = config.name,
                                               .metrics = [&, links](admin::Exposition& out) { admin::expose_links(out, links, *live.parents()); },
                                               .not_ready = [links] { return admin::links_not_ready(links); },
                                               .status_members = [&, links] { return "\"parents\":" + admin::links_status(links, *live.parents()); }});
      !problem.empty()) {
    log::emit(log::Level::error, log::EventId::admin_unavailable, "cannot start: " + problem);
    return false;
  }
  runtime::Runtime& runtime = stack.runtime();
  for (uint32_t shard = 0; shard < runtime.shard_count(); ++shard) runtime.shard(shard).post({pools[shard], uplink::UplinkPool::kStart, nullptr});
  log::emit(log::Level::info, log::EventId::process_started, "gateway started",
            {{"listen", config.listen.host}, {"port", stack.port()}, {"admin_port", stack.admin_port()}, {"shards", runtime.shard_count()},
             {"uplinks", runtime.shard_count() * config.uplinks_per_shard}});
  stack.run_until_stopped([&](const config::Config& before, const config::Config& now) {
    const bool relisted = now.parents != before.parents;
    if (relisted) address_books.replace(now.parents, now.timeouts.resolve_interval_s * 1'000);
    for (uint32_t shard = 0; shard < runtime.shard_count(); ++shard) {
      runtime.shard(shard).post_waiting({pools[shard], uplink::UplinkPool::kReconfigure, nullptr});
      if (relisted) {
        runtime.shard(shard).post_waiting({pools[shard], uplink::UplinkPool::kRelist,
                                           new net::ParentList{now.parents, address_books.current()}});
      }
    }
  });
  return true;
}

}  // namespace gatehouse::gateway
