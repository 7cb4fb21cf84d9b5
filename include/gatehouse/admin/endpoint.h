// The admin endpoint ([admin] listen, loopback by default): a small HTTP/1.1
// server on its own thread, never on a shard. GET /metrics (Prometheus text
// format), /health (200 while the process runs), /ready (200 only when the
// role can do its job, else 503 and why), /status (JSON for `gatehouse
// status`). docs/admin.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>

#include "gatehouse/admin/metrics.h"
#include "gatehouse/config/config_types.h"

namespace gatehouse::runtime {
class Runtime;
class WorkerPool;
}  // namespace gatehouse::runtime

namespace gatehouse::admin {

inline constexpr uint32_t kClientsMax = 16;              // admin connections at once; more wait in the backlog
inline constexpr uint32_t kRequestBytesMax = 8 * 1024;   // request line and headers
inline constexpr uint32_t kRequestTimeoutMs = 5'000;     // from accept to a whole request
inline constexpr uint32_t kRecentWindowS = 300;          // /status: warnings and errors of the last 5 minutes

// What a role tells the endpoint; every function runs on the admin thread
// and reads only what other threads may read (atomics, snapshots).
struct RoleReport {
  std::string role;  // "gateway", "server", "agent"
  std::string name;
  // Role-specific families, after the common ones.
  std::function<void(Exposition& out)> metrics{};
  // "" when ready, else why not (a sentence for /ready and status).
  std::function<std::string()> not_ready{};
  // Role-specific members of the /status object: `"key":value,...` (no braces).
  std::function<std::string()> status_members{};
  // Our certificate's notAfter, the CRL's nextUpdate (unix s; 0: none).
  std::function<time_t()> certificate_expires_at{};
  std::function<time_t()> crl_next_update{};
};

// The shards' socket counters (connections, bytes, refusals by the runtime).
void expose_runtime(Exposition& out, const runtime::Runtime& runtime);
// The auth pool: jobs waiting, and each job's time from hand-off to done.
void expose_auth_pool(Exposition& out, const runtime::WorkerPool& pool);
// Links to parents (a gateway's uplinks, an agent's session) by parent and state.
void expose_links(Exposition& out, std::span<const LinkReport> links, const std::vector<config::Peer>& parents);
// The same as /status members: "parents":[{"name","address","up","connecting","retrying","waiting_bytes"}].
std::string links_status(std::span<const LinkReport> links, const std::vector<config::Peer>& parents);
// "" when one of the links is up, else why not.
std::string links_not_ready(std::span<const LinkReport> links);

class Endpoint {
 public:
  explicit Endpoint(RoleReport report);
  ~Endpoint();  // stops and joins the thread
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  // Binds `listen` and starts the thread: "" or why (the port in use, ...).
  std::string start(const config::Endpoint& listen);
  uint16_t port() const { return port_; }

  // The responses, for the thread and the unit tests.
  std::string metrics_text();
  std::string status_json();

 private:
  struct Client;
  void run();
  void serve(Client& client);
  void sample_recent();

  RoleReport report_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  uint16_t port_ = 0;
  const time_t started_at_s_;
  std::thread thread_;
  struct Recent;
  std::unique_ptr<Recent> recent_;  // admin thread: event counts sampled every 10 s
};

}  // namespace gatehouse::admin
