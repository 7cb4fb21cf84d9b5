#include "gatehouse/admin/endpoint.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <map>

#include "build_info.h"
#include "gatehouse/log/log.h"
#include "gatehouse/runtime/runtime.h"
#include "gatehouse/runtime/worker_pool.h"

namespace gatehouse::admin {
namespace {

constexpr uint32_t kRecentSampleEveryS = 10;

std::string http_response(int code, std::string_view reason, std::string_view content_type, std::string_view body,
                          bool head) {
  std::string out = "HTTP/1.1 " + std::to_string(code) + " " + std::string(reason) + "\r\n";
  out += "Content-Type: ";
  out += content_type;
  out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n";
  if (!head) out += body;
  return out;
}

// Writes the whole response (small: tens of KiB) within the request's time.
void send_all(int fd, std::string_view bytes, uint64_t deadline_ms) {
  while (!bytes.empty()) {
    const ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent > 0) {
      bytes.remove_prefix(static_cast<size_t>(sent));
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && errno == EAGAIN) {
      const uint64_t now = runtime::steady_ms();
      if (now >= deadline_ms) return;
      pollfd writable{fd, POLLOUT, 0};
      ::poll(&writable, 1, static_cast<int>(deadline_ms - now));
      continue;
    }
    return;  // the client went away
  }
}

void refuse(int fd, const std::string& peer, int code, std::string_view reason, std::string_view why,
            uint64_t deadline_ms) {
  log::emit(log::Level::warning, log::EventId::admin_request_refused, "admin request refused: " + std::string(why),
            {{"peer", peer}, {"status", code}});
  send_all(fd, http_response(code, reason, "text/plain; charset=utf-8", std::string(why) + "\n", false), deadline_ms);
}

std::string peer_text(const sockaddr_storage& address, socklen_t size) {
  runtime::PeerAddress peer;
  peer.storage = address;
  peer.size_bytes = size;
  return peer.to_string();
}

void append_member(std::string& json, std::string_view key, std::string_view raw_value) {
  if (json.size() > 1) json += ',';
  log::append_json_string(json, key);
  json += ':';
  json += raw_value;
}

std::string json_string(std::string_view text) {
  std::string out;
  log::append_json_string(out, text);
  return out;
}

}  // namespace

void expose_runtime(Exposition& out, const runtime::Runtime& runtime) {
  using runtime::Stat;
  expose(out, {
      {"gatehouse_connections", MetricType::gauge, "Sockets open on the shards (children, uplinks, handshakes in progress).",
       runtime.total(Stat::connections_open)},
      {"gatehouse_connections_accepted_total", MetricType::counter, "Connections accepted.",
       runtime.total(Stat::accepted_total)},
      {"gatehouse_connections_dialled_total", MetricType::counter, "Connections this process dialled (to parents).",
       runtime.total(Stat::connected_total)},
      {"gatehouse_received_bytes_total", MetricType::counter, "Bytes received (TLS records).",
       runtime.total(Stat::recv_bytes_total)},
      {"gatehouse_sent_bytes_total", MetricType::counter, "Bytes sent (TLS records).", runtime.total(Stat::sent_bytes_total)},
      {"gatehouse_connections_refused_table_full_total", MetricType::counter,
       "Connections closed at once: the shard's connection table was full (event 30020).",
       runtime.total(Stat::table_full_total)},
      {"gatehouse_send_refused_total", MetricType::counter,
       "Sends held back: a connection's or the shard's send memory was full.", runtime.total(Stat::send_refused_total)},
      {"gatehouse_shards", MetricType::gauge, "Shards (threads with their own io_uring).", runtime.shard_count()},
  });
}

void expose_auth_pool(Exposition& out, const runtime::WorkerPool& pool) {
  out.family("gatehouse_auth_queue_jobs", MetricType::gauge,
             "TLS handshake and Kerberos steps waiting for an auth thread.");
  out.sample("gatehouse_auth_queue_jobs", "", static_cast<int64_t>(pool.queued()));
  out.family("gatehouse_auth_job_seconds", MetricType::histogram,
             "One handshake or Kerberos step: from hand-off by the shard to done (queue wait included).");
  out.histogram("gatehouse_auth_job_seconds", "", pool.latency().snapshot());
}

namespace {

struct ParentTally {
  int64_t by_state[5] = {};  // by LinkState
  int64_t waiting_bytes = 0;
  int64_t sessions_up = 0;
};

std::vector<ParentTally> tally_links(std::span<const LinkReport> links, size_t parents) {
  std::vector<ParentTally> tallies(parents);
  for (const LinkReport& link : links) {
    const uint32_t parent = link.parent.load(std::memory_order_relaxed);
    if (parent >= parents) continue;
    ParentTally& tally = tallies[parent];
    ++tally.by_state[static_cast<size_t>(link.state.load(std::memory_order_relaxed))];
    tally.waiting_bytes += static_cast<int64_t>(link.waiting_bytes.load(std::memory_order_relaxed));
    tally.sessions_up += static_cast<int64_t>(link.sessions_up.load(std::memory_order_relaxed));
  }
  return tallies;
}

constexpr LinkState kLinkStates[] = {LinkState::connecting, LinkState::up, LinkState::retrying, LinkState::waiting,
                                     LinkState::stopped};

}  // namespace

void expose_links(Exposition& out, std::span<const LinkReport> links, const std::vector<config::Peer>& parents) {
  const std::vector<ParentTally> tallies = tally_links(links, parents.size());
  out.family("gatehouse_parent_links", MetricType::gauge,
             "Links to parents (gateway: uplinks; agent: its session) by parent and state.");
  for (size_t i = 0; i < parents.size(); ++i) {
    for (LinkState state : kLinkStates) {
      out.sample("gatehouse_parent_links",
                 label("parent", parents[i].name) + "," + label("state", to_string(state)),
                 tallies[i].by_state[static_cast<size_t>(state)]);
    }
  }
  out.family("gatehouse_parent_link_sessions_total", MetricType::counter,
             "Sessions a parent welcomed (a reconnect or failover adds one).");
  for (size_t i = 0; i < parents.size(); ++i) {
    out.sample("gatehouse_parent_link_sessions_total", label("parent", parents[i].name), tallies[i].sessions_up);
  }
  out.family("gatehouse_parent_link_waiting_bytes", MetricType::gauge,
             "Bytes sealed for a parent and not yet sent on its socket (a slow parent).");
  for (size_t i = 0; i < parents.size(); ++i) {
    out.sample("gatehouse_parent_link_waiting_bytes", label("parent", parents[i].name), tallies[i].waiting_bytes);
  }
}

std::string links_status(std::span<const LinkReport> links, const std::vector<config::Peer>& parents) {
  const std::vector<ParentTally> tallies = tally_links(links, parents.size());
  std::string json = "[";
  for (size_t i = 0; i < parents.size(); ++i) {
    if (i > 0) json += ',';
    json += "{\"name\":" + json_string(parents[i].name) + ",\"address\":" + json_string(parents[i].address.text);
    for (LinkState state : kLinkStates) {
      json += ",\"" + std::string(to_string(state)) + "\":" + std::to_string(tallies[i].by_state[static_cast<size_t>(state)]);
    }
    json += ",\"waiting_bytes\":" + std::to_string(tallies[i].waiting_bytes) + "}";
  }
  return json + "]";
}

std::string links_not_ready(std::span<const LinkReport> links) {
  for (const LinkReport& link : links) {
    if (link.state.load(std::memory_order_relaxed) == LinkState::up) return "";
  }
  return "no session with any parent is up";
}

struct Endpoint::Client {
  int fd = -1;
  std::string peer;
  std::string request;
  uint64_t deadline_ms = 0;
};

// Counts of warning and error events, sampled every kRecentSampleEveryS: the
// difference to the oldest sample is "the last 5 minutes".
struct Endpoint::Recent {
  using Counts = std::map<std::pair<uint32_t, log::Level>, uint64_t>;
  std::deque<Counts> samples;  // at most kRecentWindowS / kRecentSampleEveryS + 1
  uint64_t sampled_at_ms = 0;
};

Endpoint::Endpoint(RoleReport report)
    : report_(std::move(report)), started_at_s_(std::time(nullptr)), recent_(std::make_unique<Recent>()) {}

Endpoint::~Endpoint() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

std::string Endpoint::start(const config::Endpoint& listen) {
  runtime::PeerAddress address;
  std::string why;
  if (!runtime::make_address(listen.host, listen.port, address, why)) return "[admin] listen " + listen.text + ": " + why;
  listen_fd_ = ::socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int on = 1;
  if (listen_fd_ < 0 || ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      ::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&address.storage), address.size_bytes) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    if (errno == EADDRINUSE) runtime::note_start_failure(runtime::StartFailure::port_in_use);
    return "[admin] listen " + listen.text + ": " + std::strerror(errno);
  }
  sockaddr_storage bound{};
  socklen_t size = sizeof bound;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &size);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return std::string("[admin]: eventfd: ") + std::strerror(errno);
  sample_recent();
  thread_ = std::thread([this] { run(); });
  return "";
}

void Endpoint::run() {
  std::vector<Client> clients;  // at most kClientsMax
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({stop_fd_, POLLIN, 0});
    // A full client list leaves new connections in the backlog until one ends.
    fds.push_back({listen_fd_, static_cast<short>(clients.size() < kClientsMax ? POLLIN : 0), 0});
    uint64_t now = runtime::steady_ms();
    int wait_ms = static_cast<int>(kRecentSampleEveryS * 1'000);
    for (const Client& client : clients) {
      fds.push_back({client.fd, POLLIN, 0});
      wait_ms = std::min<int>(wait_ms, client.deadline_ms > now ? static_cast<int>(client.deadline_ms - now) : 0);
    }
    if (::poll(fds.data(), fds.size(), wait_ms) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) break;
    now = runtime::steady_ms();
    if (now - recent_->sampled_at_ms >= kRecentSampleEveryS * 1'000) sample_recent();
    for (size_t i = clients.size(); i-- > 0;) {
      Client& client = clients[i];
      const short events = fds[i + 2].revents;
      bool done = false;
      if (events != 0) {
        char chunk[2'048];
        const ssize_t got = ::recv(client.fd, chunk, sizeof chunk, 0);
        if (got <= 0) {
          done = got == 0 || (errno != EAGAIN && errno != EINTR);
        } else {
          client.request.append(chunk, static_cast<size_t>(got));
          if (client.request.find("\r\n\r\n") != std::string::npos ||
              client.request.find("\n\n") != std::string::npos || client.request.size() > kRequestBytesMax) {
            serve(client);
            done = true;
          }
        }
      }
      if (!done && now >= client.deadline_ms) {
        refuse(client.fd, client.peer, 408, "Request Timeout",
               "the request was not whole within " + std::to_string(kRequestTimeoutMs) + " ms", client.deadline_ms + 1'000);
        done = true;
      }
      if (done) {
        ::close(client.fd);
        clients.erase(clients.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    while (clients.size() < kClientsMax) {
      sockaddr_storage peer{};
      socklen_t size = sizeof peer;
      const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &size, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;
      clients.push_back({fd, peer_text(peer, size), {}, runtime::steady_ms() + kRequestTimeoutMs});
    }
  }
  for (const Client& client : clients) ::close(client.fd);
}

void Endpoint::serve(Client& client) {
  const uint64_t deadline_ms = client.deadline_ms + 1'000;
  if (client.request.size() > kRequestBytesMax) {
    refuse(client.fd, client.peer, 431, "Request Header Fields Too Large",
           "request line and headers over " + std::to_string(kRequestBytesMax) + " bytes", deadline_ms);
    return;
  }
  const std::string_view request(client.request);
  const size_t line_end = request.find_first_of("\r\n");
  const std::string_view line = request.substr(0, line_end);
  const size_t first_space = line.find(' ');
  const size_t second_space = first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
  if (second_space == std::string_view::npos || !line.substr(second_space + 1).starts_with("HTTP/1.")) {
    refuse(client.fd, client.peer, 400, "Bad Request", "not an HTTP/1.x request line", deadline_ms);
    return;
  }
  const std::string_view method = line.substr(0, first_space);
  std::string_view path = line.substr(first_space + 1, second_space - first_space - 1);
  path = path.substr(0, path.find('?'));
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    refuse(client.fd, client.peer, 405, "Method Not Allowed", "only GET and HEAD are served", deadline_ms);
    return;
  }
  std::string response;
  if (path == "/metrics") {
    response = http_response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", metrics_text(), head);
  } else if (path == "/health") {
    response = http_response(200, "OK", "text/plain; charset=utf-8", "ok\n", head);
  } else if (path == "/ready") {
    const std::string why = report_.not_ready ? report_.not_ready() : "";
    response = why.empty() ? http_response(200, "OK", "text/plain; charset=utf-8", "ready\n", head)
                           : http_response(503, "Service Unavailable", "text/plain; charset=utf-8",
                                           "not ready: " + why + "\n", head);
  } else if (path == "/status") {  // 503 when not ready, as /ready: a script can use either
    const std::string json = status_json();
    response = json.find("\"ready\":true") != std::string::npos
                   ? http_response(200, "OK", "application/json", json + "\n", head)
                   : http_response(503, "Service Unavailable", "application/json", json + "\n", head);
  } else {
    response = http_response(404, "Not Found", "text/plain; charset=utf-8",
                             "not found: the paths are /metrics, /health, /ready and /status\n", head);
  }
  send_all(client.fd, response, deadline_ms);
  log::emit(log::Level::debug, log::EventId::admin_request, "admin request served",
            {{"peer", client.peer}, {"path", path}, {"status", std::atoi(response.c_str() + 9)}});
}

void Endpoint::sample_recent() {
  Recent::Counts counts;
  for (const log::EventTally& tally : log::event_tallies()) {
    if (tally.level >= log::Level::warning) counts[{static_cast<uint32_t>(tally.id), tally.level}] = tally.count;
  }
  recent_->samples.push_back(std::move(counts));
  while (recent_->samples.size() > kRecentWindowS / kRecentSampleEveryS + 1) recent_->samples.pop_front();
  recent_->sampled_at_ms = runtime::steady_ms();
}

std::string Endpoint::metrics_text() {
  Exposition out;
  out.family("gatehouse_build_info", MetricType::gauge, "Always 1; the labels say which build and role this is.");
  out.sample("gatehouse_build_info",
             label("version", GATEHOUSE_VERSION) + "," + label("role", report_.role) + "," + label("name", report_.name),
             int64_t{1});
  out.family("gatehouse_start_time_seconds", MetricType::gauge, "When the process started (unix seconds).");
  out.sample("gatehouse_start_time_seconds", "", static_cast<int64_t>(started_at_s_));
  out.family("gatehouse_ready", MetricType::gauge, "1 when the role can do its job (as GET /ready), else 0.");
  out.sample("gatehouse_ready", "", int64_t{report_.not_ready && !report_.not_ready().empty() ? 0 : 1});
  const time_t now = std::time(nullptr);
  if (report_.certificate_expires_at) {
    out.family("gatehouse_certificate_expiry_seconds", MetricType::gauge,
               "Seconds until our certificate's notAfter (negative: expired).");
    const time_t at = report_.certificate_expires_at();
    if (at != 0) out.sample("gatehouse_certificate_expiry_seconds", "", static_cast<int64_t>(at - now));
  }
  if (report_.crl_next_update && report_.crl_next_update() != 0) {
    out.family("gatehouse_crl_next_update_seconds", MetricType::gauge,
               "Seconds until the CRL's nextUpdate (negative: past it).");
    out.sample("gatehouse_crl_next_update_seconds", "", static_cast<int64_t>(report_.crl_next_update() - now));
  }
  out.family("gatehouse_log_events_total", MetricType::counter,
             "Log events by ID and level (docs/events.md): refusals and failures by reason.");
  for (const log::EventTally& tally : log::event_tallies()) {
    out.sample("gatehouse_log_events_total",
               label("event", std::to_string(static_cast<uint32_t>(tally.id))) + "," +
                   label("name", log::event_name(tally.id)) + "," + label("level", log::level_name(tally.level)),
               static_cast<int64_t>(tally.count));
  }
  expose_shard_metrics(out);
  if (report_.metrics) report_.metrics(out);
  return out.text();
}

std::string Endpoint::status_json() {
  std::string json = "{";
  const std::string why = report_.not_ready ? report_.not_ready() : "";
  const time_t now = std::time(nullptr);
  append_member(json, "role", json_string(report_.role));
  append_member(json, "name", json_string(report_.name));
  append_member(json, "version", json_string(GATEHOUSE_VERSION));
  append_member(json, "uptime_s", std::to_string(now - started_at_s_));
  append_member(json, "ready", why.empty() ? "true" : "false");
  if (!why.empty()) append_member(json, "not_ready_reason", json_string(why));
  const int64_t agents = shard_total(ShardMetric::sessions_agent_cert) + shard_total(ShardMetric::sessions_agent_kerberos);
  append_member(json, "sessions",
                "{\"agents\":" + std::to_string(agents) +
                    ",\"agents_kerberos\":" + std::to_string(shard_total(ShardMetric::sessions_agent_kerberos)) +
                    ",\"gateways\":" + std::to_string(shard_total(ShardMetric::sessions_gateway)) +
                    ",\"channels\":" + std::to_string(shard_total(ShardMetric::channels)) + "}");
  append_member(json, "events",
                "{\"in\":" + std::to_string(shard_total(ShardMetric::events_in)) +
                    ",\"out\":" + std::to_string(shard_total(ShardMetric::events_out)) +
                    ",\"acked\":" + std::to_string(shard_total(ShardMetric::events_acked)) + "}");
  if (report_.certificate_expires_at && report_.certificate_expires_at() != 0) {
    append_member(json, "certificate_expires_in_s", std::to_string(report_.certificate_expires_at() - now));
  }
  if (report_.crl_next_update && report_.crl_next_update() != 0) {
    append_member(json, "crl_next_update_in_s", std::to_string(report_.crl_next_update() - now));
  }
  // Warnings and errors since the oldest sample (up to 5 minutes ago).
  std::string recent = "[";
  const Recent::Counts& oldest = recent_->samples.front();
  for (const log::EventTally& tally : log::event_tallies()) {
    if (tally.level < log::Level::warning) continue;
    const auto before = oldest.find({static_cast<uint32_t>(tally.id), tally.level});
    const uint64_t count = tally.count - (before != oldest.end() ? before->second : 0);
    if (count == 0) continue;
    if (recent.size() > 1) recent += ',';
    recent += "{\"event\":" + std::to_string(static_cast<uint32_t>(tally.id)) + ",\"name\":" +
              json_string(log::event_name(tally.id)) + ",\"level\":" + json_string(log::level_name(tally.level)) +
              ",\"count\":" + std::to_string(count) + "}";
  }
  append_member(json, "recent_problems", recent + "]");
  append_member(json, "recent_window_s", std::to_string(kRecentWindowS));
  if (report_.status_members) {
    const std::string members = report_.status_members();
    if (!members.empty()) json += "," + members;
  }
  return json + "}";
}

}  // namespace gatehouse::admin
