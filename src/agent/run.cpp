// The agent's composition root: its input (stdin, a file or synthetic
// events) into the durable queue on one thread, the queue to the gateways on
// one shard. With a finite input it returns once every event is durably
// acknowledged.
#include "gatehouse/agent/run.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "gatehouse/admin/endpoint.h"
#include "gatehouse/agent/agent_service.h"
#include "gatehouse/config/config.h"
#include "gatehouse/agent/input_file.h"
#include "gatehouse/agent/input_journal.h"
#include "gatehouse/log/log.h"
#include "gatehouse/runtime/runtime.h"
#include "gatehouse/runtime/watchdog.h"
#include "krb/gss.h"
#include "tls/session.h"

namespace gatehouse::agent {
namespace {

constexpr size_t kInputBatchMax = 512;           // lines appended (and fsynced) together
constexpr size_t kLineMaxBytes = DiskQueue::kEventMaxBytes;
constexpr long kTickMs = 50;                        // the signal wait's tick
constexpr uint64_t kTicksPerHour = 3'600'000 / kTickMs;
constexpr uint64_t kTicksPerDropReport = 200;       // 10 s
constexpr auto kFollowPoll = std::chrono::milliseconds(200);  // --follow at the end of the file: look again after

// drop-oldest losses, said at most once per report interval (4506 with the
// count since the last line), not once per batch: a full queue drops on
// every append.
class DropReport {
 public:
  // Each tick; `force` at the end.
  void report(uint64_t dropped_total, uint64_t tick, bool force) {
    if (dropped_total == reported_ || (!force && reported_at_tick_ != 0 && tick - reported_at_tick_ < kTicksPerDropReport)) {
      return;
    }
    reported_at_tick_ = tick;
    log::emit(log::Level::warning, log::EventId::queue_overflow_dropped,
              "the queue is full: dropped the oldest events (queue_full = \"drop-oldest\"); they are declared to "
              "the server as a gap",
              {{"dropped", dropped_total - reported_}, {"dropped_total", dropped_total}});
    reported_ = dropped_total;
  }

 private:
  uint64_t reported_ = 0;
  uint64_t reported_at_tick_ = 0;  // 0: never yet (the first drop is said at once)
};

struct Input {
  DiskQueue& queue;
  std::atomic<bool> stop{false};
  std::atomic<bool> ended{false};
  std::atomic<bool> failed{false};  // the queue could not write
  std::atomic<uint64_t> dropped{0};
  std::atomic<uint64_t> refused{0};  // input lines longer than an event may be

  // True: the lines are in the queue.
  bool taken(const std::vector<std::string>& lines) {
    uint64_t dropped_now = 0;
    if (!queue.append(lines, dropped_now)) {
      if (const std::string why = queue.failure(); !why.empty()) {
        log::emit(log::Level::error, log::EventId::queue_write_failed,
                  "the disk queue cannot write; no more input is taken (what is queued is still sent): " + why,
                  {{"lines_not_taken", static_cast<uint64_t>(lines.size())}});
        failed = true;
      }
      stop = true;
      return false;
    }
    dropped += dropped_now;  // said by DropReport
    return true;
  }

  // A line past the protocol's payload limit is refused whole, said and
  // counted: never cut to fit (a cut event would look complete).
  void refuse_line(uint64_t size_bytes) {
    refused += 1;
    log::emit(log::Level::warning, log::EventId::input_line_refused,
              "an input line of " + std::to_string(size_bytes) + " bytes is longer than an event may be (" +
                  std::to_string(kLineMaxBytes) + " bytes): refused, not cut",
              {{"size_bytes", size_bytes}, {"refused_total", refused.load()}});
  }

  // Lines from `fd` until EOF (with `follow`: until stop) or stop. With a
  // `file`, its position is saved after each batch is in the queue, and the
  // lines the queue already holds past the saved one are skipped.
  void read_lines(int fd, InputFile* file, bool follow) {
    std::string partial;
    uint64_t line_bytes = 0;  // the line so far, past what `partial` keeps
    uint64_t offset = 0;      // file: the byte after the last whole line read
    uint64_t skip = file != nullptr ? file->lines_to_skip() : 0;
    if (file != nullptr) offset = static_cast<uint64_t>(std::max<off_t>(lseek(fd, 0, SEEK_CUR), 0));
    std::vector<std::string> lines;
    uint64_t lines_end = offset;  // the byte after the last line in `lines`
    auto end_line = [&] {
      if (line_bytes > kLineMaxBytes) {
        refuse_line(line_bytes);
      } else if (skip > 0) {
        --skip;  // queued by a run that stopped before it saved its position
      } else {
        lines.push_back(std::move(partial));
      }
      partial.clear();
      line_bytes = 0;
    };
    auto take = [&] {
      if (lines.empty()) return;
      const bool queued = taken(lines);
      lines.clear();
      std::string why;
      if (queued && file != nullptr && !file->save(lines_end, queue.last_seq(), why)) {
        log::emit(log::Level::warning, log::EventId::queue_write_failed,
                  "cannot save the input position (a restart would skip what the queue holds): " + why);
      }
    };
    char buffer[64 * 1024];
    while (!stop) {
      pollfd ready{fd, POLLIN, 0};
      if (poll(&ready, 1, 100) == 0) continue;
      const ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      for (ssize_t i = 0; i < n; ++i) {
        if (buffer[i] != '\n') {
          if (++line_bytes <= kLineMaxBytes) partial.push_back(buffer[i]);
          continue;
        }
        end_line();
        lines_end = offset + static_cast<uint64_t>(i) + 1;
        if (lines.size() == kInputBatchMax) take();
      }
      if (n > 0) offset += static_cast<uint64_t>(n);
      take();
      if (n > 0) continue;
      if (!follow || file == nullptr) break;
      // tail -F: a partial last line waits for its newline; a rotated or
      // truncated file is read from its start.
      if (file->moved_on(lines_end, queue.last_seq())) {
        fd = file->fd();
        offset = lines_end = 0;
        partial.clear();
        line_bytes = 0;
        skip = 0;
        continue;
      }
      std::this_thread::sleep_for(kFollowPoll);
    }
    if (line_bytes > 0 && !stop) {
      end_line();
      lines_end = offset;
    }
    if (!stop) take();
  }

  // Journal entries until its end (with `follow`: until stop); the cursor is
  // saved after each batch is in the queue.
  void read_journal(InputJournal& journal, bool follow) {
    InputJournal::Batch batch;
    std::string why;
    while (!stop) {
      if (!journal.next(kInputBatchMax, kLineMaxBytes, batch, why)) {
        log::emit(log::Level::error, log::EventId::input_position, why + "; no more input is taken");
        failed = true;
        return;
      }
      for (uint64_t size_bytes : batch.refused_bytes) refuse_line(size_bytes);
      if (!batch.lines.empty() && !taken(batch.lines)) return;
      if (!journal.save(queue.last_seq(), why)) {
        log::emit(log::Level::warning, log::EventId::queue_write_failed,
                  "cannot save the journal cursor (a restart would skip what the queue holds): " + why);
      }
      if (!batch.at_end) continue;
      if (!follow) return;
      journal.wait(kFollowPoll.count());
    }
  }

  // `count` events (0: endless) at `rate` per second.
  void synthesize(const std::string& name, double rate, uint64_t count) {
    const auto started = std::chrono::steady_clock::now();
    uint64_t made = 0;
    while (!stop && (count == 0 || made < count)) {
      const auto due = static_cast<uint64_t>(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() * rate) + 1;
      std::vector<std::string> lines;
      while (made < due && (count == 0 || made < count) && lines.size() < kInputBatchMax) {
        lines.push_back("{\"agent\":\"" + name + "\",\"synthetic\":" + std::to_string(++made) + "}");
      }
      if (!lines.empty()) taken(lines);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
};

void expose_agent(admin::Exposition& out, const DiskQueue& queue, const AgentCounters& counters) {
  admin::expose(out, {
      {"gatehouse_queue_events", admin::MetricType::gauge, "Events in the disk queue not yet acknowledged durable.",
       queue.queued_events()},
      {"gatehouse_queue_bytes", admin::MetricType::gauge, "Bytes those events take on disk.", queue.queued_bytes()},
      {"gatehouse_queue_acked_seq", admin::MetricType::gauge, "The highest seq the server acknowledged durable.",
       counters.acked_seq.load()},
      {"gatehouse_queue_last_seq", admin::MetricType::gauge, "The seq of the newest queued event.", queue.last_seq()},
      {"gatehouse_agent_data_frames_sent_total", admin::MetricType::counter,
       "Events sent (resends after a reconnect included).", counters.sent.load()},
  });
}

}  // namespace

bool run(const config::Config& config, const InputSource& source) {
  std::string why;
  const bool kerberos = config.auth == config::AgentAuth::kerberos;
  AgentOptions options;
  options.gateways = config.gateways;
  net::AddressBooks address_books(
      std::make_shared<net::AddressBook>(config.gateways, config.timeouts.resolve_interval_s * 1'000));
  options.addresses = address_books.current();
  options.backoff_initial_ms = config.timeouts.backoff_initial_ms;
  options.backoff_max_ms = config.timeouts.backoff_max_ms;
  options.welcome_timeout_ms = config.timeouts.welcome_timeout_ms;
  options.retry_after_loss_ms = config.timeouts.retry_after_loss_ms;
  options.parent_silence_max_ms = config.timeouts.parent_silence_ms;
  options.failback_after_ms = config.timeouts.failback_s * 1'000;
  admin::LinkReport link_report;
  options.report = &link_report;
  config::LiveSettings live(config);  // what a SIGHUP changes
  options.live = &live;
  options.child.role = proto::Role::agent;
  options.child.auth = kerberos ? proto::AuthMethod::kerberos : proto::AuthMethod::cert;
  options.child.name = config.name;
  options.child.kerberos_service = config.kerberos.service;
  // A Kerberos agent needs no certificate and no CA: GSSAPI with channel binding proves the gateway.
  auto agent_tls = std::make_shared<tls::ReloadableContext>(tls::ContextOptions{
      .side = tls::Side::client, .cert_path = kerberos ? "" : config.tls.cert_path,
      .key_path = kerberos ? "" : config.tls.key_path, .ca_path = kerberos ? "" : config.tls.ca_path,
      .crl_path = kerberos ? "" : config.tls.crl_path,
      .peer_certificate = kerberos ? tls::PeerCertificate::none : tls::PeerCertificate::required,
      .resume_across_servers = true, .own_name = config.name, .own_role = tls::CertRole::agent,
      .crl_expired_allowed = config.tls.crl_expired_allowed});
  if (const std::string problem = agent_tls->reload(); !problem.empty()) {
    log::emit(log::Level::error, log::EventId::certificate_invalid, "cannot load the agent's TLS material: " + problem);
    return false;
  }
  options.child.tls = agent_tls;
  // A renewed certificate (file change or SIGHUP) is taken by the next session.
  tls::FileWatcher watcher(agent_tls->paths(), config.timeouts.reload_debounce_ms, [&] { agent_tls->reload(); });
  if (kerberos) {
    options.child.kerberos = krb::InitiatorCredential::load(config.kerberos.keytab_path, "host/" + config.name, why);
    if (options.child.kerberos == nullptr) {
      log::emit(log::Level::error, log::EventId::mutual_auth_failed, "cannot get Kerberos credentials: " + why);
      return false;
    }
  }
  auto queue = DiskQueue::open(config.queue_dir, config.queue_max_bytes,
                                      config.queue_drop_oldest ? FullPolicy::drop_oldest : FullPolicy::block, why);
  if (queue == nullptr) {
    log::emit(log::Level::error, log::EventId::config_invalid, why);
    return false;
  }

  // Where the input resumes, before anything runs.
  std::unique_ptr<InputFile> input_file;
  std::unique_ptr<InputJournal> input_journal;
  if (!source.path.empty()) input_file = InputFile::open(source.path, config.queue_dir, queue->last_seq(), why);
  if (source.journal) input_journal = InputJournal::open(source.journal_dir, config.queue_dir, queue->last_seq(), why);
  if ((!source.path.empty() && input_file == nullptr) || (source.journal && input_journal == nullptr)) {
    log::emit(log::Level::error, log::EventId::config_invalid, why);
    return false;
  }

  runtime::RuntimeLimits limits = config.runtime;
  limits.shards = 1;
  limits.connections_per_shard = 16;
  limits.recv_buffers_per_shard = 64;
  limits.send_queue_max_bytes = 1u << 20;
  runtime::Runtime runtime(limits);
  AgentCounters counters;
  runtime::block_stop_signals();
  AgentService* service = nullptr;
  if (!runtime.start(
          [&](uint32_t) {
            auto made = std::make_unique<AgentService>(options, *queue, counters);
            service = made.get();
            return made;
          },
          why)) {
    log::emit(log::Level::error, log::EventId::runtime_unavailable, why);
    return false;
  }
  std::unique_ptr<admin::Endpoint> admin_endpoint;  // [admin] listen: opt-in for an agent
  if (!config.admin_listen.host.empty()) {
    const std::span<const admin::LinkReport> links(&link_report, 1);
    admin_endpoint = std::make_unique<admin::Endpoint>(admin::RoleReport{
        .role = "agent",
        .name = config.name,
        .metrics = [&, links](admin::Exposition& out) {  // `links` by value: it is this block's
          admin::expose_runtime(out, runtime);
          admin::expose_links(out, links, *live.parents());
          expose_agent(out, *queue, counters);
        },
        .not_ready = [links] { return admin::links_not_ready(links); },
        .status_members = [&, links] {
          return "\"parents\":" + admin::links_status(links, *live.parents()) +
                 ",\"queue\":{\"events\":" + std::to_string(queue->queued_events()) +
                 ",\"bytes\":" + std::to_string(queue->queued_bytes()) +
                 ",\"acked_seq\":" + std::to_string(counters.acked_seq.load()) + "}";
        },
        .certificate_expires_at = [&agent_tls] { return agent_tls->certificate_expires_at(); },
        .crl_next_update = [&agent_tls] { return agent_tls->crl_next_update(); }});
    if (const std::string problem = admin_endpoint->start(config.admin_listen); !problem.empty()) {
      log::emit(log::Level::error, log::EventId::admin_unavailable, "cannot start: " + problem);
      runtime.stop();
      runtime.join();
      return false;
    }
  }
  log::emit(log::Level::info, log::EventId::process_started, "agent started",
            {{"gateways", static_cast<uint64_t>(config.gateways.size())}, {"queued", queue->queued_events()},
             {"acked_seq", queue->acked_seq()},
             {"admin_port", admin_endpoint != nullptr ? admin_endpoint->port() : 0}});
  runtime.shard(0).post({service, AgentService::kStart, nullptr});
  // Events written or read ahead from disk: the sender goes on.
  queue->set_on_ready([&runtime, service] { runtime.shard(0).post({service, 0, nullptr}); });

  Input input{*queue};
  std::thread reader([&] {
    if (source.synthetic_rate > 0) {
      input.synthesize(config.name, source.synthetic_rate, source.synthetic_count);
    } else if (input_journal != nullptr) {
      input.read_journal(*input_journal, source.follow);
    } else {
      input.read_lines(input_file != nullptr ? input_file->fd() : source.fd, input_file.get(), source.follow);
    }
    input.ended = true;
  });

  sigset_t signals;
  sigemptyset(&signals);
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, signal);
  uint64_t ticks = 0;
  DropReport drops;
  runtime::Watchdog watchdog(runtime);
  const uint64_t ticks_per_watchdog = std::max<uint64_t>(watchdog.interval_ms() / kTickMs, 1);
  runtime::sd_notify("READY=1\nSTATUS=sending");
  config::Config running = config;  // with the live keys a SIGHUP applied
  for (;;) {
    const timespec tick{0, kTickMs * 1'000'000};
    const int signal = sigtimedwait(&signals, nullptr, &tick);
    if (signal == SIGINT || signal == SIGTERM) break;
    if (signal == SIGHUP) {
      runtime::sd_notify("RELOADING=1");
      if (std::optional<config::Config> merged = config::reread(running)) {
        std::swap(running, *merged);
        live.apply(running);
        runtime.shard(0).post_waiting({service, AgentService::kReconfigure, nullptr});
        if (running.gateways != merged->gateways) {
          address_books.replace(running.gateways, running.timeouts.resolve_interval_s * 1'000);
          runtime.shard(0).post_waiting(
              {service, AgentService::kRelist, new net::ParentList{running.gateways, address_books.current()}});
        }
      }
      agent_tls->reload();
      runtime::sd_notify("READY=1");
    }
    if (++ticks % kTicksPerHour == 0) agent_tls->warn_if_crl_expiring();
    if (ticks % ticks_per_watchdog == 0) watchdog.check();
    drops.report(input.dropped.load(), ticks, false);
    if (input.ended && !source.follow && queue->queued_events() == 0) break;
  }
  runtime::sd_notify("STOPPING=1");
  input.stop = true;
  queue->close_input();
  reader.join();
  drops.report(input.dropped.load(), ticks, true);
  queue->set_on_ready({});
  runtime.stop();
  runtime.join();
  log::emit(log::Level::info, log::EventId::process_stopping, "agent stopped",
            {{"last_seq", queue->last_seq()}, {"acked_seq", queue->acked_seq()}, {"queued", queue->queued_events()},
             {"sent", counters.sent.load()}, {"sessions", counters.sessions.load()}, {"dropped", input.dropped.load()},
             {"refused", input.refused.load()}});
  return !input.failed;
}

}  // namespace gatehouse::agent
