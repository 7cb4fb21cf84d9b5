#include "gatehouse/net/listener_stack.h"

#include <algorithm>

#include "gatehouse/config/config.h"
#include "gatehouse/log/log.h"
#include "gatehouse/runtime/watchdog.h"
#include "krb/gss.h"

namespace gatehouse::net {
namespace {

// Handshake steps waiting for an auth thread: each connection has at most one
// on the pool, so a queue as large as the connection tables never refuses a
// connection the runtime accepted; the tables are the bound (a storm waits in
// the queue, its clients' deadlines paused, rather than being refused and
// coming back as a second storm).
uint32_t auth_queue_max(const runtime::RuntimeLimits& limits) {
  return std::max<uint32_t>(4'096, runtime::shard_count_for(limits) * limits.connections_per_shard);
}

}  // namespace

ListenerStack::ListenerStack(const config::Config& config, config::LiveSettings& live)
    : config_(config),
      running_(config),
      live_(live),
      tls_({.side = tls::Side::server, .cert_path = config.tls.cert_path, .key_path = config.tls.key_path,
            .ca_path = config.tls.ca_path, .crl_path = config.tls.crl_path,
            // Kerberos agents come without a certificate; the gate decides per HELLO.
            .peer_certificate = config.kerberos.enabled ? tls::PeerCertificate::optional : tls::PeerCertificate::required,
            .ticket_keys_path = config.tls.ticket_keys_path, .ticket_lifetime_s = config.tls.ticket_lifetime_s,
            .own_name = config.name,
            .own_role = config.role == config::Role::server ? tls::CertRole::server : tls::CertRole::gateway,
            .crl_expired_allowed = config.tls.crl_expired_allowed}),
      pool_(config.auth_threads, auth_queue_max(config.runtime)) {}

ListenerStack::~ListenerStack() {
  if (runtime_ != nullptr) {
    runtime_->stop();
    runtime_->join();
  }
}

void ListenerStack::reload() {
  tls_.reload();
  for (const auto& tls : also_reloaded_) tls->reload();
  if (!config_.kerberos.enabled) return;
  std::string why;
  if (auto credential = krb::AcceptorCredential::load(config_.kerberos.keytab_path, why)) {
    kerberos_.store(std::move(credential));
  } else {
    log::emit(log::Level::error, log::EventId::mutual_auth_failed,
              "keytab not loaded, the one in use stays: " + why, {{"keytab", config_.kerberos.keytab_path}});
  }
}

std::string ListenerStack::start(const HandlerFactory& make_handler) {
  if (std::string why = tls_.reload(); !why.empty()) return why;
  if (config_.kerberos.enabled) {
    std::string why;
    kerberos_.store(krb::AcceptorCredential::load(config_.kerberos.keytab_path, why));
    if (kerberos_.load() == nullptr) return "[kerberos] keytab: " + why;
  }
  std::vector<std::string> paths = tls_.paths();
  for (const auto& tls : also_reloaded_) {
    for (std::string& path : tls->paths()) paths.push_back(std::move(path));
  }
  if (config_.kerberos.enabled) paths.push_back(config_.kerberos.keytab_path);
  watcher_ = std::make_unique<tls::FileWatcher>(paths, config_.timeouts.reload_debounce_ms, [this] { reload(); });

  runtime::RuntimeLimits limits = config_.runtime;
  runtime_ = std::make_unique<runtime::Runtime>(limits);
  const uint32_t shards = runtime_->shard_count();
  handlers_.resize(shards);
  gates_.resize(shards);
  connected_.resize(shards);
  runtime::PeerAddress address;
  std::string why;
  if (!runtime::make_address(config_.listen.host, config_.listen.port, address, why) ||
      !runtime_->listen(address, 0, port_, why)) {
    return "listen " + config_.listen.text + ": " + why;
  }
  runtime::block_stop_signals();
  const bool started = runtime_->start([&](uint32_t shard) -> std::unique_ptr<runtime::Service> {
    RoleShard role = make_handler(shard);
    handlers_[shard] = std::move(role.handler);
    connected_[shard] = std::move(role.connected);
    gates_[shard] = std::make_unique<Gate>(kerberos_, pool_, *handlers_[shard], limits.connections_per_shard,
                                           GateOptions{live_, config_.name});
    auto tls = std::make_unique<TlsServer>(tls_, pool_, *gates_[shard], limits.connections_per_shard,
                                           TlsServerLimits{live_, config_.trusted_relays},
                                           connected_[shard].get(), role.dialed_in);
    gates_[shard]->attach(*tls);
    if (role.attach) role.attach(*gates_[shard]);
    return tls;
  }, why);
  return started ? "" : why;
}

std::string ListenerStack::start_admin(admin::RoleReport report) {
  if (config_.admin_listen.host.empty()) return "";
  std::function<void(admin::Exposition&)> role_metrics = std::move(report.metrics);
  report.metrics = [this, role_metrics](admin::Exposition& out) {
    admin::expose_runtime(out, *runtime_);
    admin::expose_auth_pool(out, pool_);
    if (role_metrics) role_metrics(out);
  };
  report.certificate_expires_at = [this] { return tls_.certificate_expires_at(); };
  report.crl_next_update = [this] { return tls_.crl_next_update(); };
  admin_ = std::make_unique<admin::Endpoint>(std::move(report));
  return admin_->start(config_.admin_listen);
}

void ListenerStack::run_until_stopped(const Reconfigured& reconfigured) {
  runtime::Watchdog watchdog(*runtime_);  // outlives the shards' last turns (below)
  const std::string ready = "READY=1\nSTATUS=serving on " + config_.listen.text;
  runtime::sd_notify(ready.c_str());
  constexpr uint32_t kHourMs = 3'600'000;
  uint64_t since_housekeeping_ms = 0;
  const uint32_t tick_ms = watchdog.enabled() ? std::min(watchdog.interval_ms(), kHourMs) : kHourMs;
  runtime::wait_for_stop_signal(
      [&] {
        runtime::sd_notify("RELOADING=1");
        if (std::optional<config::Config> merged = config::reread(running_)) {
          std::swap(running_, *merged);
          live_.apply(running_);
          if (reconfigured) reconfigured(*merged, running_);
        }
        reload();
        runtime::sd_notify(ready.c_str());
      },
      [&] {
        watchdog.check();
        since_housekeeping_ms += tick_ms;
        if (since_housekeeping_ms < kHourMs) return;
        since_housekeeping_ms = 0;
        tls_.warn_if_crl_expiring();
        for (const auto& tls : also_reloaded_) tls->warn_if_crl_expiring();
      },
      tick_ms);
  log::emit(log::Level::info, log::EventId::process_stopping, "stopping: draining sessions");
  runtime::sd_notify("STOPPING=1");
  runtime_->stop();
  runtime_->join();
  log::emit(log::Level::info, log::EventId::process_stopping, "stopped cleanly",
            {{"sessions_open", runtime_->total(runtime::Stat::connections_open)}});
}

}  // namespace gatehouse::net
