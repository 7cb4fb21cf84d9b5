// bench/loadgen: N simulated agents speaking the real protocol with real
// authentication (a certificate minted per agent from a dev CA, or Kerberos
// principals from bench/loadgen/kerberos-agents), on the project's io_uring
// runtime. Each agent numbers its events, resends from the server's durable
// seq after any reconnect, and measures send → durable ACK latency. Agents
// reconnect as `gatehouse agent` does: a lost session retries its gateway
// after 100–200 ms, a failed one moves to the next target (net::Failover).
// --storm-at drops every session at once (W3, W5); --steady keeps a few
// streaming agents out of the storm, on their own shard, to measure what the
// storm does to established sessions; a second --target is the failover
// gateway (W4), and the report says how long all sessions took to flow again.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "gatehouse/cli/args.h"
#include "gatehouse/config/config.h"
#include "gatehouse/log/log.h"
#include "gatehouse/net/address_book.h"
#include "gatehouse/net/child_link.h"
#include "gatehouse/proto/codec.h"
#include "gatehouse/runtime/runtime.h"
#include "tls/session.h"
#include "krb/gss.h"
#include "tls/pki.h"
#include "histogram.h"

using namespace gatehouse;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kTickMs = 10;              // the shard's pacing and reconnect timer
constexpr uint32_t kSendTimesMax = 256;       // per agent: in-flight events whose send time is kept
constexpr uint32_t kReconnectAfterLossMs = 100;  // as `gatehouse agent`: a lost session retries soon
constexpr uint32_t kBackoffInitialMs = 500;       // after every target failed in a row
constexpr uint32_t kBackoffMaxMs = 5'000;
// loadgen measures how long admission takes under a storm; it does not give
// up on a slow one (a retry would only add handshakes to the storm).
constexpr uint32_t kWelcomeTimeoutMs = 120'000;
constexpr double kStormWaitMaxS = 60;  // a storm waits this long at most for the ramp, and is seen to its end as long
constexpr int32_t kSteadyShardNice = -10;        // as a gateway's shards ([runtime] shard_nice)

struct Options {
  std::vector<config::Peer> targets;  // in failover order: address, certificate identity / Kerberos host
  uint32_t agents = 100;
  double rate = 1;             // events per second per agent; 0: as fast as the window allows
  uint32_t size_bytes = 256;
  uint64_t events = 0;         // per agent; 0: run for duration_s
  double duration_s = 10;
  double ramp_s = 1;
  std::string certs_dir;
  std::string keytab;
  std::string auth = "cert";   // cert | kerberos | mixed
  std::string prefix = "lg";
  uint32_t shards = 1;
  int gateway_pid = 0;
  std::string report_path;
  double warmup_s = 0;         // not measured: sessions come up, queues fill
  uint32_t spread = 1;         // targets 127.0.0.1 .. 127.0.0.N (past one address's ~28k source ports)
  double storm_at_s = 0;       // 0: no storm
  uint32_t steady = 0;         // agents 0..steady-1: streaming at steady_rate on shard 0, kept out of the storm
  double steady_rate = 10;
  bool aligned = false;        // paced agents' events all fall due at once (a synchronized burst)
};

// Stores value in `extreme` if it beats what is there (earliest: std::less,
// latest: std::greater), from any shard.
template <class Beats>
void keep_extreme(std::atomic<uint64_t>& extreme, uint64_t value, Beats beats) {
  uint64_t current = extreme.load();
  while (beats(value, current) && !extreme.compare_exchange_weak(current, value)) {
  }
}

// "a,b,c" → {"a", "b", "c"}.
std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  for (size_t start = 0; start <= text.size();) {
    const size_t comma = std::min(text.find(',', start), text.size());
    items.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return items;
}

std::string agent_name(const Options& options, uint32_t i) {
  char name[64];
  std::snprintf(name, sizeof name, "%s%06u.loadgen.test", options.prefix.c_str(), i);
  return name;
}

// Shared by all shards.
struct Totals {
  std::atomic<uint64_t> sessions_up{0};
  std::atomic<uint64_t> sessions_established{0};  // HELLO_OKs, reconnects included
  std::atomic<uint64_t> events_sent{0};
  std::atomic<uint64_t> events_acked{0};
  std::atomic<uint64_t> agents_done{0};           // --events mode: all acknowledged
  std::atomic<uint64_t> errors{0};
  std::atomic<bool> measuring{true};              // false during --warmup: no latency recorded
  Clock::time_point started;                      // set before the shards start: their clocks' zero
  // The storm: phase 0 before, 1 while sessions are re-established, 2 after.
  std::atomic<int> storm_phase{0};
  std::atomic<uint32_t> storm_shards_dropped{0};  // shards that have dropped their sessions
  std::atomic<uint64_t> storm_dropped{0};
  std::atomic<uint64_t> storm_reestablished{0};
  std::atomic<uint64_t> storm_last_welcome_us{0};
  // Sessions lost without loadgen closing them (a gateway died), and how many
  // of those agents flow again (an ACK on a new session, or nothing left to send).
  std::atomic<uint64_t> losses{0};
  std::atomic<uint64_t> recovered{0};
  std::atomic<uint64_t> first_loss_us{UINT64_MAX};
  std::atomic<uint64_t> last_recovery_us{0};
  std::mutex mutex;                               // guards the four below
  std::map<std::string, uint64_t> failures;       // by reason
  loadgen::Histogram latency;
  loadgen::Histogram steady_before_storm;         // the --steady agents' latency, by storm phase
  loadgen::Histogram steady_during_storm;

  void failure(const std::string& reason) {
    errors.fetch_add(1);
    std::lock_guard lock(mutex);
    if (failures.size() < 64 || failures.contains(reason)) ++failures[reason];
  }
};

struct Identity {
  std::string name;
  bool steady = false;
  proto::AuthMethod auth = proto::AuthMethod::cert;
  tls::Minted minted;
  std::shared_ptr<const krb::InitiatorCredential> kerberos;
};

// Each agent is a net::ChildLink, as in `gatehouse agent`: connect, TLS,
// HELLO/AUTH, welcome deadline, failover and reconnect are the link's; the
// agents add pacing, sequence numbers and measurements.
class Agents final : public runtime::Service, public runtime::Mailbox, private runtime::TimerHandler {
 public:
  static constexpr uint64_t kStart = 0;  // message values
  static constexpr uint64_t kStorm = 1;

  Agents(const Options& options, const std::vector<Identity*>& identities, std::shared_ptr<net::AddressBook> addresses,
         std::shared_ptr<const tls::ReloadableContext> cert_tls, std::shared_ptr<const tls::ReloadableContext> kerberos_tls,
         uint32_t connections_max, Totals& totals)
      : options_(options), totals_(totals), by_conn_(connections_max, UINT32_MAX) {
    for (uint32_t i = 0; i < identities.size(); ++i) {
      const Identity& identity = *identities[i];
      const bool kerberos = identity.auth == proto::AuthMethod::kerberos;
      net::ChildLinkOptions link;
      link.parents = options.targets;
      link.addresses = addresses;
      link.child = {kerberos ? kerberos_tls : cert_tls, "", proto::Role::agent, identity.auth, identity.name,
                    identity.kerberos, "gatehouse", kerberos ? nullptr : identity.minted.cert.get(),
                    kerberos ? nullptr : identity.minted.key.get()};
      link.connect_context = i + 1;
      link.backoff_initial_ms = kBackoffInitialMs;
      link.backoff_max_ms = kBackoffMaxMs;
      link.retry_after_loss_ms = kReconnectAfterLossMs;
      link.welcome_timeout_ms = kWelcomeTimeoutMs;
      link.address_offset = i % options.spread;
      link.log_events = false;  // counted by reason in the report instead
      agents_.emplace_back(*this, identities[i], link, spill_pool_);
      // Paced agents keep their own phase (a golden-ratio spread): a fleet's
      // events come evenly, not every agent's next one at the same instant.
      if (!options.aligned) agents_.back().phase = std::fmod(static_cast<double>(i) * 0.6180339887498949, 1.0);
    }
    payload_.assign(options.size_bytes, std::byte{'x'});
  }

  void on_message(runtime::Shard& shard, uint64_t command, void*) override {
    if (command == kStorm) return storm(shard);
    started_ = totals_.started;
    // The steady agents are the probe: they stand for agents on their own
    // hosts, so loadgen's own crowd (the storm's client handshakes on the
    // other shards) must not starve them of CPU.
    if (!agents_.empty() && agents_.front().identity->steady && !runtime::set_thread_nice(kSteadyShardNice)) {
      std::fprintf(stderr, "loadgen: cannot raise the steady shard's priority (%s): its latency includes loadgen's own load\n",
                   std::strerror(errno));
    }
    shard.set_timer(tick_, kTickMs);
  }

  void on_timer(runtime::Shard& shard, runtime::Timer&) override {
    const double elapsed_s = std::chrono::duration<double>(Clock::now() - started_).count();
    const auto ramped = static_cast<size_t>(std::min(1.0, options_.ramp_s > 0 ? elapsed_s / options_.ramp_s : 1.0) *
                                            static_cast<double>(agents_.size()));
    for (size_t i = 0; i < agents_.size(); ++i) {
      Agent& agent = agents_[i];
      if (!agent.started && i < ramped) {
        agent.started = true;
        agent.link.start(shard);
      }
      if (agent.up) produce(agent, elapsed_s), pump(shard, agent);
    }
    shard.set_timer(tick_, kTickMs);
  }

  // The shard's calls, to the agent's link.
  void on_connect_failed(runtime::Shard& shard, uint64_t context, int error) override {
    agents_[context - 1].link.on_connect_failed(shard, context, error);
  }
  void on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) override {
    by_conn_[id.index] = static_cast<uint32_t>(context - 1);
    agents_[context - 1].link.on_open(shard, id, context);
  }
  void on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) override {
    Agent& agent = agents_[by_conn_[id.index]];
    if (agent.link.on_data(shard, id, bytes) && agent.up) pump(shard, agent);
  }
  void on_send_space(runtime::Shard& shard, runtime::ConnId id) override {
    agents_[by_conn_[id.index]].link.on_send_space(shard, id);
  }
  void on_deadline(runtime::Shard& shard, runtime::ConnId id) override {
    agents_[by_conn_[id.index]].link.on_deadline(shard, id);
  }
  void on_close(runtime::Shard& shard, runtime::ConnId id, int) override {
    const uint32_t index = by_conn_[id.index];
    by_conn_[id.index] = UINT32_MAX;
    agents_[index].link.on_close(shard, id);
  }

  void on_stop(runtime::Shard& shard) override {
    stopping_ = true;
    shard.cancel_timer(tick_);
    for (Agent& agent : agents_) agent.link.stop(shard);
  }

 private:
  struct Agent final : net::ChildLinkEvents {
    Agent(Agents& owner_in, Identity* identity_in, const net::ChildLinkOptions& options, proto::SpillPool& spill_pool)
        : owner(owner_in), identity(identity_in), link(options, spill_pool, *this) {}
    // Each run is a new queue: its own incarnation, from seq 1.
    proto::Incarnation hello_incarnation(net::ChildLink&) override { return {incarnation_id, 0}; }
    void on_link_up(runtime::Shard&, net::ChildLink&, const proto::HelloOk& hello) override { owner.welcome(*this, hello); }
    void on_link_frame(runtime::Shard&, net::ChildLink&, const proto::Frame& frame) override { owner.frame(*this, frame); }
    void on_link_down(runtime::Shard&, net::ChildLink&, bool was_up) override { owner.down(*this, was_up); }
    void on_link_writable(runtime::Shard& shard, net::ChildLink&) override { owner.pump(shard, *this); }
    void on_link_failed(runtime::Shard&, net::ChildLink&, const net::ChildFailure& failure) override {
      const std::string why = failure.why.substr(0, 120);
      owner.totals_.failure(failure.reason == proto::Reason::normal ? why
                                                                    : std::string(proto::to_string(failure.reason)) + ": " + why);
    }

    Agents& owner;
    Identity* identity = nullptr;
    net::ChildLink link;
    bool started = false;
    bool up = false;
    bool done = false;
    uint64_t incarnation_id = proto::new_incarnation_id();
    bool storm_pending = false;  // dropped by the storm, not re-established yet
    bool lost = false;           // its session was lost, it does not flow again yet
    uint64_t produced = 0;     // events that exist so far (rate-paced)
    double phase = 0;          // [0, 1): of a period, when its paced events fall due
    uint64_t sent_through = 0;
    uint64_t acked = 0;
    uint64_t window = 0;
    std::array<uint32_t, kSendTimesMax> sent_at_us{};  // by seq % kSendTimesMax, relative to start
  };

  void welcome(Agent& agent, const proto::HelloOk& hello) {
    agent.up = true;
    agent.window = hello.credit_bytes;
    // Events stored while the ACK was lost with the old session count here.
    acknowledged(agent, hello.last_durable_seq);
    agent.sent_through = agent.acked;  // resend whatever was not durable
    totals_.sessions_up.fetch_add(1);
    totals_.sessions_established.fetch_add(1);
    if (agent.storm_pending) {
      agent.storm_pending = false;
      totals_.storm_reestablished.fetch_add(1);
      keep_extreme(totals_.storm_last_welcome_us, elapsed_us(), std::greater<>());
    }
    if (agent.lost && agent.acked >= agent.produced) flowing(agent);  // nothing left to send: flowing as it can
  }

  // The link reconnects by itself: at once after the storm, soon after a loss,
  // to the next target after a failure.
  void down(Agent& agent, bool was_up) {
    if (was_up) totals_.sessions_up.fetch_sub(1);
    agent.up = false;
    if (stopping_ || !was_up || agent.storm_pending) return;
    if (!agent.lost) {
      agent.lost = true;
      totals_.losses.fetch_add(1);
      keep_extreme(totals_.first_loss_us, elapsed_us(), std::less<>());
    }
  }

  // The server holds everything up to durable_seq.
  void acknowledged(Agent& agent, uint64_t durable_seq) {
    if (durable_seq <= agent.acked) return;
    totals_.events_acked.fetch_add(durable_seq - agent.acked);
    agent.acked = durable_seq;
    if (options_.events > 0 && agent.acked >= options_.events && !agent.done) {
      agent.done = true;
      totals_.agents_done.fetch_add(1);
    }
  }

  void flowing(Agent& agent) {
    agent.lost = false;
    totals_.recovered.fetch_add(1);
    keep_extreme(totals_.last_recovery_us, elapsed_us(), std::greater<>());
  }

  // Drops every session but the steady agents', to be re-established at once.
  void storm(runtime::Shard& shard) {
    uint64_t dropped = 0;
    for (Agent& agent : agents_) {
      if (agent.identity->steady || !agent.up) continue;
      agent.storm_pending = true;
      agent.link.reconnect_now(shard);
      ++dropped;
    }
    totals_.storm_dropped.fetch_add(dropped);
    totals_.storm_shards_dropped.fetch_add(1);
  }

  void frame(Agent& agent, const proto::Frame& frame) {
    if (const auto* ack = std::get_if<proto::Ack>(&frame.body)) {
      const uint64_t now_us = elapsed_us();
      const uint64_t first = agent.acked + 1;
      loadgen::Histogram* steady = !agent.identity->steady ? nullptr
                                   : totals_.storm_phase.load(std::memory_order_relaxed) == 0 ? &steady_before_storm_
                                   : totals_.storm_phase.load(std::memory_order_relaxed) == 1 ? &steady_during_storm_
                                                                                              : nullptr;
      for (uint64_t seq = std::max(first, ack->durable_seq > kSendTimesMax ? ack->durable_seq - kSendTimesMax + 1 : 1);
           seq <= ack->durable_seq; ++seq) {
        if (!totals_.measuring.load(std::memory_order_relaxed)) break;
        const uint64_t latency_us = now_us - agent.sent_at_us[seq % kSendTimesMax];
        latency_.record(latency_us);
        if (steady != nullptr) steady->record(latency_us);
      }
      if (agent.lost && ack->durable_seq > agent.acked) flowing(agent);
      acknowledged(agent, ack->durable_seq);
    } else if (const auto* credit = std::get_if<proto::Credit>(&frame.body)) {
      agent.window += credit->credit_bytes;
    }
  }

  uint64_t elapsed_us() const {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_).count());
  }

  void produce(Agent& agent, double elapsed_s) {
    const uint64_t limit = options_.events > 0 ? options_.events : UINT64_MAX;
    const double rate = agent.identity->steady ? options_.steady_rate : options_.rate;
    const uint64_t due = rate > 0 ? static_cast<uint64_t>(elapsed_s * rate + agent.phase) + 1 : limit;
    agent.produced = std::min(limit, due);
  }

  void pump(runtime::Shard& shard, Agent& agent) {
    if (!agent.up) return;
    const uint64_t frame_bytes = proto::kDataPrefixBytes + payload_.size();
    while (!agent.link.blocked() && agent.sent_through < agent.produced && agent.window >= frame_bytes &&
           agent.sent_through - agent.acked < kSendTimesMax) {
      const uint64_t seq = ++agent.sent_through;
      std::memcpy(payload_.data(), &seq, std::min<size_t>(sizeof seq, payload_.size()));
      agent.link.send({0, proto::Data{seq, proto::DataKind::event, payload_}});
      agent.sent_at_us[seq % kSendTimesMax] = static_cast<uint32_t>(elapsed_us());
      agent.window -= frame_bytes;
      totals_.events_sent.fetch_add(1, std::memory_order_relaxed);
    }
    agent.link.flush(shard);
  }

 public:
  void merge_latency() {
    std::lock_guard lock(totals_.mutex);
    totals_.latency.merge(latency_);
    totals_.steady_before_storm.merge(steady_before_storm_);
    totals_.steady_during_storm.merge(steady_during_storm_);
  }

 private:
  const Options& options_;
  Totals& totals_;
  proto::SpillPool spill_pool_{64};
  std::deque<Agent> agents_;  // links keep a reference to their agent: never moved
  std::vector<uint32_t> by_conn_;  // connection slot → agent (slots < the runtime's connections_per_shard)
  std::vector<std::byte> payload_;
  Clock::time_point started_ = Clock::now();
  loadgen::Histogram latency_;
  loadgen::Histogram steady_before_storm_;
  loadgen::Histogram steady_during_storm_;
  bool stopping_ = false;
  runtime::Timer tick_{*this};
};

// CPU seconds (utime+stime) and peak RSS (KiB) of a process; false if gone.
bool process_usage(int pid, double& cpu_s, uint64_t& peak_rss_kib) {
  FILE* stat = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (stat == nullptr) return false;
  char text[1024] = "";
  const size_t n = std::fread(text, 1, sizeof text - 1, stat);
  std::fclose(stat);
  text[n] = '\0';
  const char* after_name = std::strrchr(text, ')');
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  if (after_name == nullptr ||
      std::sscanf(after_name + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) {
    return false;
  }
  cpu_s = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  FILE* status = std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
  char line[256];
  while (status != nullptr && std::fgets(line, sizeof line, status)) {
    if (std::sscanf(line, "VmHWM: %llu", reinterpret_cast<unsigned long long*>(&peak_rss_kib)) == 1) break;
  }
  if (status != nullptr) std::fclose(status);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  static constexpr std::string_view kUsage =
      "loadgen --target IP:PORT[,IP:PORT...] [--target-name NAME[,NAME...]] [--agents N] [--auth cert|kerberos|mixed]\n"
      "               [--certs DIR] [--keytab F] [--prefix P] [--rate EVENTS_PER_S_PER_AGENT|max] [--size BYTES]\n"
      "               [--events N | --duration S [--warmup S]] [--ramp S] [--shards N] [--spread N] [--gateway-pid PID]\n"
      "               [--storm-at S] [--steady N [--steady-rate EVENTS_PER_S]] [--aligned] [--report FILE.json]";
  static constexpr cli::FlagSpec kFlags[] = {
      {"--target", true}, {"--target-name", true}, {"--agents", true}, {"--auth", true}, {"--certs", true},
      {"--keytab", true}, {"--prefix", true},      {"--rate", true},   {"--size", true}, {"--events", true},
      {"--duration", true}, {"--ramp", true},      {"--shards", true}, {"--gateway-pid", true}, {"--report", true},
      {"--spread", true}, {"--warmup", true}, {"--storm-at", true}, {"--steady", true}, {"--steady-rate", true},
      {"--aligned", false}};
  cli::Args args;
  std::string why;
  if (!cli::parse_args(argc, argv, 1, kFlags, args, why) || !args.positionals.empty() || !args.has("--target")) {
    return cli::usage_error("loadgen", why.empty() ? "--target IP:PORT is required" : why, kUsage);
  }
  Options options;
  auto text = [&](std::string_view flag) { return std::string(*args.value(flag)); };
  try {
    if (args.has("--agents")) options.agents = static_cast<uint32_t>(std::stoul(text("--agents")));
    if (args.has("--auth")) options.auth = text("--auth");
    if (args.has("--certs")) options.certs_dir = text("--certs");
    if (args.has("--keytab")) options.keytab = text("--keytab");
    if (args.has("--prefix")) options.prefix = text("--prefix");
    if (args.has("--rate")) options.rate = text("--rate") == "max" ? 0 : std::stod(text("--rate"));
    if (args.has("--size")) options.size_bytes = static_cast<uint32_t>(std::stoul(text("--size")));
    if (args.has("--events")) options.events = std::stoull(text("--events"));
    if (args.has("--duration")) options.duration_s = std::stod(text("--duration"));
    if (args.has("--ramp")) options.ramp_s = std::stod(text("--ramp"));
    if (args.has("--shards")) options.shards = static_cast<uint32_t>(std::stoul(text("--shards")));
    if (args.has("--gateway-pid")) options.gateway_pid = std::stoi(text("--gateway-pid"));
    if (args.has("--report")) options.report_path = text("--report");
    if (args.has("--warmup")) options.warmup_s = std::stod(text("--warmup"));
    if (args.has("--spread")) options.spread = static_cast<uint32_t>(std::stoul(text("--spread")));
    options.aligned = args.has("--aligned");
    if (args.has("--storm-at")) options.storm_at_s = std::stod(text("--storm-at"));
    if (args.has("--steady")) options.steady = static_cast<uint32_t>(std::stoul(text("--steady")));
    if (args.has("--steady-rate")) options.steady_rate = std::stod(text("--steady-rate"));
  } catch (const std::exception&) {
    return cli::usage_error("loadgen", "a numeric flag has a value that is not a number", kUsage);
  }
  if (options.auth != "cert" && options.auth != "kerberos" && options.auth != "mixed") {
    return cli::usage_error("loadgen", "--auth must be cert, kerberos or mixed", kUsage);
  }
  if (options.auth != "kerberos" && options.certs_dir.empty()) {
    return cli::usage_error("loadgen", "--certs DIR (a dev CA with its key) is needed for cert agents", kUsage);
  }
  if (options.auth != "cert" && options.keytab.empty()) {
    return cli::usage_error("loadgen", "--keytab F|DIR (bench/loadgen/kerberos-agents makes it) is needed for Kerberos agents", kUsage);
  }
  if (options.size_bytes < 8 || options.size_bytes > proto::kPayloadMaxBytes || options.agents == 0 || options.shards == 0) {
    return cli::usage_error("loadgen", "--size must be 8..65536, --agents and --shards at least 1", kUsage);
  }
  if (options.steady > 0 && (options.shards < 2 || options.steady >= options.agents)) {
    return cli::usage_error("loadgen", "--steady needs --shards 2 or more (they get shard 0) and fewer than --agents", kUsage);
  }
  const std::vector<std::string> names = split_list(args.has("--target-name") ? text("--target-name") : "gw1.example.test");
  for (const std::string& address : split_list(text("--target"))) {
    config::Peer target;
    runtime::PeerAddress numeric;
    if (!config::parse_endpoint(address, true, target.address, why) ||
        !runtime::make_address(target.address.host, target.address.port, numeric, why)) {
      std::fprintf(stderr, "loadgen: --target %s: %s\n", address.c_str(), why.c_str());
      return 2;
    }
    target.name = names[std::min(options.targets.size(), names.size() - 1)];
    options.targets.push_back(std::move(target));
  }

  // Identities: a certificate minted per cert agent, a TGT per Kerberos agent.
  const auto setup_started = Clock::now();
  std::unique_ptr<tls::CertificateAuthority> ca;
  std::shared_ptr<const tls::ReloadableContext> cert_tls;
  std::shared_ptr<const tls::ReloadableContext> kerberos_tls;
  auto load = [&why](const tls::ContextOptions& tls_options) -> std::shared_ptr<const tls::ReloadableContext> {
    auto context = std::make_shared<tls::ReloadableContext>(tls_options);
    why = context->reload();
    return why.empty() ? context : nullptr;
  };
  if (options.auth != "kerberos") {
    ca = tls::CertificateAuthority::load(options.certs_dir, why);
    cert_tls = ca ? load({.side = tls::Side::client, .ca_path = options.certs_dir + "/ca.crt"}) : nullptr;
    if (cert_tls == nullptr) {
      std::fprintf(stderr, "loadgen: %s\n", why.c_str());
      return 1;
    }
  }
  if (options.auth != "cert") {
    kerberos_tls = load({.side = tls::Side::client, .peer_certificate = tls::PeerCertificate::none});
  }
  std::vector<Identity> identities(options.agents);
  for (uint32_t i = 0; i < options.agents; ++i) {
    Identity& identity = identities[i];
    identity.name = agent_name(options, i);
    identity.steady = i < options.steady;
    const bool kerberos = options.auth == "kerberos" || (options.auth == "mixed" && i % 2 == 1);
    identity.auth = kerberos ? proto::AuthMethod::kerberos : proto::AuthMethod::cert;
    if (kerberos) {
      // --keytab is one keytab, or a folder of NAME.keytab (bench/loadgen/kerberos-agents).
      const std::string keytab =
          std::filesystem::is_directory(options.keytab) ? options.keytab + "/" + identity.name + ".keytab" : options.keytab;
      identity.kerberos = krb::InitiatorCredential::load(keytab, "host/" + identity.name, why);
    } else {
      why = ca->mint({.ca_dir = "", .out_dir = "", .role = tls::CertRole::agent, .name = identity.name, .days = 2},
                     identity.minted);
    }
    if (kerberos ? identity.kerberos == nullptr : !why.empty()) {
      std::fprintf(stderr, "loadgen: agent %s: %s\n", identity.name.c_str(), why.c_str());
      return 1;
    }
  }
  const double setup_s = std::chrono::duration<double>(Clock::now() - setup_started).count();

  runtime::RuntimeLimits limits;
  limits.shards = options.shards;
  // Twice the agents: after a storm drops its sessions, their slots stay taken
  // until the kernel has closed them, while the new sessions already connect.
  // A ring's table is bounded by the fd limit.
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  const uint32_t per_shard = options.agents / (options.shards - (options.steady > 0 ? 1 : 0)) + 64;
  limits.connections_per_shard = static_cast<uint32_t>(std::min<uint64_t>(2 * per_shard, std::max<uint64_t>(per_shard, files.rlim_max - 64)));
  limits.recv_buffers_per_shard = 1'024;
  limits.connects_in_flight_max = 4'096;
  runtime::Runtime runtime(limits);
  Totals totals;
  // Numeric targets: no resolver thread, every lookup answers at once.
  auto addresses = std::make_shared<net::AddressBook>(options.targets, net::kAddressRefreshIntervalMs);
  std::vector<Agents*> services;
  runtime::block_stop_signals();
  const bool started = runtime.start([&](uint32_t shard) {
    // With --steady, shard 0 holds the steady agents alone, the others share the rest.
    std::vector<Identity*> mine;
    if (options.steady > 0) {
      for (uint32_t i = 0; i < options.agents; ++i) {
        if (i < options.steady ? shard == 0 : shard != 0 && (i - options.steady) % (options.shards - 1) == shard - 1) {
          mine.push_back(&identities[i]);
        }
      }
    } else {
      for (uint32_t i = shard; i < options.agents; i += options.shards) mine.push_back(&identities[i]);
    }
    auto service = std::make_unique<Agents>(options, mine, addresses, cert_tls, kerberos_tls,
                                            limits.connections_per_shard, totals);
    services.push_back(service.get());
    return service;
  }, why);
  if (!started) {
    std::fprintf(stderr, "loadgen: %s\n", why.c_str());
    return 1;
  }
  double gateway_cpu_before = 0;
  uint64_t gateway_peak_kib = 0;
  if (options.gateway_pid) process_usage(options.gateway_pid, gateway_cpu_before, gateway_peak_kib);
  const auto started_at = Clock::now();
  totals.started = started_at;
  // Measurement starts after --warmup: rates, CPU and latency cover only what follows.
  auto measured_from = started_at;
  uint64_t acked_at_warmup = 0;
  totals.measuring = options.warmup_s <= 0;
  for (uint32_t shard = 0; shard < runtime.shard_count(); ++shard) runtime.shard(shard).post({services[shard], Agents::kStart, nullptr});

  // Progress: one rewritten line on a TTY, a line a second otherwise.
  const bool tty = isatty(STDERR_FILENO);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  uint64_t last_acked = 0;
  auto last_tick = Clock::now();
  bool interrupted = false;
  uint64_t storm_started_us = 0;
  double storm_cpu_before_s = 0;
  double storm_cpu_s = 0;
  for (;;) {
    const timespec wait{0, totals.storm_phase == 1 ? 20'000'000 : 250'000'000};  // a storm's end, to 20 ms
    if (sigtimedwait(&signals, nullptr, &wait) > 0) {
      interrupted = true;
      break;
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - started_at).count();
    const double since = std::chrono::duration<double>(Clock::now() - last_tick).count();
    const uint64_t acked = totals.events_acked.load();
    if (tty || since >= 1.0) {
      std::fprintf(stderr, "%s%6.1fs  sessions %llu/%u  events/s %.0f  sent %llu  acked %llu  errors %llu%s", tty ? "\r" : "",
                   elapsed, static_cast<unsigned long long>(totals.sessions_up.load()), options.agents,
                   static_cast<double>(acked - last_acked) / since, static_cast<unsigned long long>(totals.events_sent.load()),
                   static_cast<unsigned long long>(acked), static_cast<unsigned long long>(totals.errors.load()),
                   tty ? "   " : "\n");
      last_acked = acked;
      last_tick = Clock::now();
    }
    if (!totals.measuring && elapsed >= options.warmup_s) {
      measured_from = Clock::now();
      acked_at_warmup = totals.events_acked.load();
      if (options.gateway_pid) process_usage(options.gateway_pid, gateway_cpu_before, gateway_peak_kib);
      totals.measuring = true;
    }
    // The storm drops every session once all are up (a slow peer's ramp may
    // take longer than planned), at most kStormWaitMaxS late.
    if (options.storm_at_s > 0 && totals.storm_phase == 0 && elapsed >= options.storm_at_s &&
        (totals.sessions_up.load() >= options.agents || elapsed >= options.storm_at_s + kStormWaitMaxS)) {
      storm_started_us = static_cast<uint64_t>(elapsed * 1e6);
      if (options.gateway_pid) process_usage(options.gateway_pid, storm_cpu_before_s, gateway_peak_kib);
      totals.storm_phase = 1;
      for (uint32_t shard = 0; shard < runtime.shard_count(); ++shard) runtime.shard(shard).post({services[shard], Agents::kStorm, nullptr});
    }
    if (totals.storm_phase == 1 && totals.storm_shards_dropped == runtime.shard_count() &&
        totals.storm_reestablished == totals.storm_dropped) {
      totals.storm_phase = 2;
      if (options.gateway_pid && process_usage(options.gateway_pid, storm_cpu_s, gateway_peak_kib)) storm_cpu_s -= storm_cpu_before_s;
    }
    // A storm under way is seen to its end (at most kStormWaitMaxS beyond the run).
    const bool storm_pending = options.storm_at_s > 0 && totals.storm_phase < 2 &&
                               elapsed < options.warmup_s + options.duration_s + kStormWaitMaxS;
    if (options.events > 0 ? totals.agents_done.load() == options.agents
                           : elapsed >= options.warmup_s + options.duration_s && !storm_pending) {
      break;
    }
  }
  const double duration_s = std::chrono::duration<double>(Clock::now() - started_at).count();
  const double measured_s = std::chrono::duration<double>(Clock::now() - measured_from).count();
  double gateway_cpu_after = 0;
  if (options.gateway_pid) process_usage(options.gateway_pid, gateway_cpu_after, gateway_peak_kib);
  runtime.stop();
  runtime.join();
  for (Agents* service : services) service->merge_latency();
  if (tty) std::fprintf(stderr, "\n");

  std::string failures;
  for (const auto& [reason, count] : totals.failures) {
    std::string key;
    log::append_json_string(key, reason);
    failures += (failures.empty() ? "" : ",") + key + ":" + std::to_string(count);
  }
  const double storm_s =
      totals.storm_phase == 2 ? static_cast<double>(totals.storm_last_welcome_us - storm_started_us) / 1e6 : 0;
  const uint64_t last_recovery_us = totals.last_recovery_us;
  const uint64_t first_loss_us = totals.first_loss_us;
  const double failover_s =
      totals.losses > 0 && totals.recovered == totals.losses && last_recovery_us > first_loss_us
          ? static_cast<double>(last_recovery_us - first_loss_us) / 1e6 : 0;
  auto percentiles = [](const loadgen::Histogram& histogram) {
    char json[160];
    std::snprintf(json, sizeof json, "{\"p50\":%llu,\"p99\":%llu,\"p999\":%llu,\"samples\":%llu}",
                  static_cast<unsigned long long>(histogram.percentile_us(0.50)),
                  static_cast<unsigned long long>(histogram.percentile_us(0.99)),
                  static_cast<unsigned long long>(histogram.percentile_us(0.999)),
                  static_cast<unsigned long long>(histogram.total()));
    return std::string(json);
  };
  char storm_report[512];
  std::snprintf(storm_report, sizeof storm_report,
                "\"storm\":{\"dropped\":%llu,\"reestablished\":%llu,\"seconds\":%.3f,\"handshakes_per_s\":%.0f,"
                "\"gateway_cpu_s\":%.3f},\"failover\":{\"sessions_lost\":%llu,\"recovered\":%llu,\"seconds\":%.3f},",
                static_cast<unsigned long long>(totals.storm_dropped.load()),
                static_cast<unsigned long long>(totals.storm_reestablished.load()), storm_s,
                storm_s > 0 ? static_cast<double>(totals.storm_reestablished) / storm_s : 0, storm_cpu_s,
                static_cast<unsigned long long>(totals.losses.load()), static_cast<unsigned long long>(totals.recovered.load()),
                failover_s);
  const std::string steady_report = "\"steady_latency_us\":{\"before_storm\":" + percentiles(totals.steady_before_storm) +
                                    ",\"during_storm\":" + percentiles(totals.steady_during_storm) + "},";
  char report[4096];
  std::snprintf(report, sizeof report,
                "{\"agents\":%u,\"auth\":\"%s\",\"sessions_established\":%llu,\"handshake_failures\":{%s},"
                "\"events_sent\":%llu,\"events_acked\":%llu,\"events_per_s\":%.0f,\"measured_s\":%.3f,\"latency_us\":%s,"
                "%s%s\"duration_s\":%.3f,\"setup_s\":%.3f,"
                "\"gateway_cpu_s\":%.3f,\"gateway_peak_rss_kib\":%llu,\"complete\":%s}\n",
                options.agents, options.auth.c_str(), static_cast<unsigned long long>(totals.sessions_established.load()),
                failures.c_str(), static_cast<unsigned long long>(totals.events_sent.load()),
                static_cast<unsigned long long>(totals.events_acked.load()),
                static_cast<double>(totals.events_acked.load() - acked_at_warmup) / measured_s, measured_s,
                percentiles(totals.latency).c_str(), storm_report, steady_report.c_str(), duration_s, setup_s,
                gateway_cpu_after - gateway_cpu_before, static_cast<unsigned long long>(gateway_peak_kib),
                options.events == 0 || totals.agents_done.load() == options.agents ? "true" : "false");
  std::fputs(report, stdout);
  if (!options.report_path.empty()) {
    if (FILE* out = std::fopen(options.report_path.c_str(), "w")) {
      std::fputs(report, out);
      std::fclose(out);
    }
  }
  if (interrupted) return 130;
  return options.events == 0 || totals.agents_done.load() == options.agents ? 0 : 1;
}
