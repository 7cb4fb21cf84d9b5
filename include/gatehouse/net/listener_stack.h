// The listening half of the server and gateway roles: one TlsServer + Gate +
// role handler per shard, the auth pool, certificate and keytab reload on
// file change and SIGHUP.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gatehouse/admin/endpoint.h"
#include "gatehouse/config/config_types.h"
#include "gatehouse/config/live.h"
#include "gatehouse/net/gate.h"
#include "gatehouse/runtime/runtime.h"
#include "gatehouse/runtime/worker_pool.h"
#include "gatehouse/tls/reload.h"

namespace gatehouse::net {

class ListenerStack {
 public:
  // What a role runs on one shard: the handler above the gate, optionally a
  // service for the connections the shard opens itself (a gateway's uplinks;
  // their Shard::connect contexts are >= TlsServer::kConnectedContextBase),
  // and a hook to hand the handler its gate.
  struct RoleShard {
    std::unique_ptr<SessionHandler> handler;
    std::unique_ptr<runtime::Service> connected;
    std::function<void(Gate&)> attach;
    DialedInParents* dialed_in = nullptr;  // a gateway with parents that dial it: its uplinks
  };
  using HandlerFactory = std::function<RoleShard(uint32_t shard)>;

  // `live` holds the settings a SIGHUP changes (the gates' and TLS servers'
  // deadlines read it); the role reads it too.
  ListenerStack(const config::Config& config, config::LiveSettings& live);
  ~ListenerStack();
  // Client-side TLS material reloaded with the listeners' (a gateway's
  // uplinks): same files watched, same SIGHUP. Before start().
  void reload_also(std::shared_ptr<tls::ReloadableContext> tls) { also_reloaded_.push_back(std::move(tls)); }
  // Loads the TLS material and keytab, binds, starts the shards. "" or why.
  std::string start(const HandlerFactory& make_handler);
  // After start(): the admin endpoint on [admin] listen (none when it is
  // ""), with the role's report; the shards' counters, the auth pool and the
  // listeners' certificate are added here. "" or why.
  std::string start_admin(admin::RoleReport report);
  // Until SIGTERM/SIGINT; then stops the shards. Each SIGHUP re-reads the
  // config (config::reread), applies its live keys and calls `reconfigured`
  // with the config before and after (the role's parts that keep copies,
  // such as links, take them then), and reloads certificates and keytabs.
  using Reconfigured = std::function<void(const config::Config& before, const config::Config& now)>;
  void run_until_stopped(const Reconfigured& reconfigured = {});
  runtime::Runtime& runtime() { return *runtime_; }
  uint16_t port() const { return port_; }
  uint16_t admin_port() const { return admin_ != nullptr ? admin_->port() : 0; }

 private:
  void reload();

  const config::Config& config_;
  config::Config running_;  // config_ with the live keys a SIGHUP applied
  config::LiveSettings& live_;
  tls::ReloadableContext tls_;
  std::vector<std::shared_ptr<tls::ReloadableContext>> also_reloaded_;
  std::atomic<std::shared_ptr<const krb::AcceptorCredential>> kerberos_;
  runtime::WorkerPool pool_;
  std::vector<std::unique_ptr<SessionHandler>> handlers_;  // per shard
  std::vector<std::unique_ptr<Gate>> gates_;               // per shard
  std::vector<std::unique_ptr<runtime::Service>> connected_;  // per shard, may be nullptr
  std::unique_ptr<tls::FileWatcher> watcher_;
  uint16_t port_ = 0;
  std::unique_ptr<runtime::Runtime> runtime_;  // stopped (in the destructor) before the rest goes
  std::unique_ptr<admin::Endpoint> admin_;     // reads the runtime and the pool: goes first
};

}  // namespace gatehouse::net
