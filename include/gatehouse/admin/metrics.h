// What the admin endpoint exposes, counted where it happens and read by the
// admin thread. Per-shard counters have one writer each (their shard's
// thread): a relaxed load and store, no locked instruction on the data path,
// one cache line per shard. Counters written by several threads (the auth
// pool, the store's writer) are plain atomics in their own modules.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::admin {

// One value per shard; names and labels in metric_descriptor(). Gauges go up
// and down (sessions open); counters only up.
enum class ShardMetric : uint8_t {
  sessions_agent_cert,       // authenticated children now, by role and auth
  sessions_agent_kerberos,
  sessions_gateway,
  channels,                  // agents riding gateway links: server (from gateways), gateway (on its uplinks)
  handshakes_ok,             // TLS handshakes finished (children)
  handshakes_resumed,        // ... of which resumed a session (a ticket)
  handshakes_failed,
  events_in,                 // events received from children (DATA of kind event)
  event_bytes_in,
  events_out,                // events sent on to a parent (gateway, agent)
  event_bytes_out,
  events_acked,              // events acknowledged durable: server (to children), agent (by its parent)
  acks_relayed,              // gateway: ACK frames passed down to children
  heartbeats_in,             // pings and heartbeats heard from children
  count,
};

enum class MetricType : uint8_t { counter, gauge, histogram };

struct MetricDescriptor {
  std::string_view family;  // gatehouse_ prefix included; counters end in _total
  std::string_view labels;  // `role="agent",auth="cert"`, or empty
  MetricType type;
  std::string_view help;
};
const MetricDescriptor& metric_descriptor(ShardMetric metric);

inline constexpr uint32_t kMetricShardsMax = 256;  // runtime::kRuntimeShardsMax

struct alignas(64) ShardMetrics {
  std::array<std::atomic<int64_t>, static_cast<size_t>(ShardMetric::count)> values{};
};

// The process's per-shard blocks (static: no allocation, no registration).
ShardMetrics& shard_metrics(uint32_t shard);

// Shard thread only (its one writer).
inline void shard_add(uint32_t shard, ShardMetric metric, int64_t delta = 1) {
  std::atomic<int64_t>& value = shard_metrics(shard).values[static_cast<size_t>(metric)];
  value.store(value.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
}
inline void shard_set(uint32_t shard, ShardMetric metric, int64_t value) {
  shard_metrics(shard).values[static_cast<size_t>(metric)].store(value, std::memory_order_relaxed);
}
// Any thread: the sum over the shards.
int64_t shard_total(ShardMetric metric);

// A child link's state (an agent's session, a gateway's uplink), written by
// its shard, read by the admin thread.
enum class LinkState : uint8_t { connecting, up, retrying, waiting, stopped };  // waiting: to be dialled by the parent
const char* to_string(LinkState state);
struct LinkReport {
  std::atomic<LinkState> state{LinkState::connecting};
  std::atomic<uint32_t> parent{0};          // index in the parent list it is on (or dials)
  std::atomic<uint64_t> sessions_up{0};     // welcomed sessions since start
  std::atomic<uint64_t> waiting_bytes{0};   // sealed, not yet sent by the socket (at each flush)
};

// A latency histogram with fixed buckets (seconds, Prometheus's le). Any
// thread may observe (fetch_add); the admin thread reads.
class Histogram {
 public:
  static constexpr std::array<double, 14> kBoundsS = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,    0.25,  0.5,    1.0,   2.5,   5.0,  10.0};
  void observe_us(uint64_t micros);
  struct Snapshot {
    std::array<uint64_t, kBoundsS.size()> cumulative{};  // observations <= each bound
    uint64_t count = 0;
    double sum_s = 0;
  };
  Snapshot snapshot() const;

 private:
  std::array<std::atomic<uint64_t>, kBoundsS.size() + 1> buckets_{};  // last: above every bound
  std::atomic<uint64_t> sum_us_{0};
};

// The exposition text (Prometheus text format 0.0.4). Each family is
// declared once, its samples follow; label values are escaped here.
class Exposition {
 public:
  void family(std::string_view name, MetricType type, std::string_view help);
  // `labels`: already formatted (`a="x",b="y"`) or empty.
  void sample(std::string_view name, std::string_view labels, double value);
  void sample(std::string_view name, std::string_view labels, int64_t value);
  void histogram(std::string_view name, std::string_view labels, const Histogram::Snapshot& snapshot);
  const std::string& text() const { return text_; }

 private:
  void sample_prefix(std::string_view name, std::string_view labels);
  std::string text_;
};

// One unlabelled sample with its family (a role's own gauges and counters).
struct Single {
  std::string_view name;
  MetricType type;
  std::string_view help;
  uint64_t value;
};
void expose(Exposition& out, std::initializer_list<Single> singles);

// `key="value"` with the value escaped (\\, \", \n).
std::string label(std::string_view key, std::string_view value);

// Every per-shard metric, summed over the shards.
void expose_shard_metrics(Exposition& out);

}  // namespace gatehouse::admin
