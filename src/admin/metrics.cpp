#include "gatehouse/admin/metrics.h"

#include <cmath>
#include <charconv>

#include "gatehouse/log/invariant.h"

namespace gatehouse::admin {
namespace {

constexpr size_t kShardMetricCount = static_cast<size_t>(ShardMetric::count);

constexpr std::array<MetricDescriptor, kShardMetricCount> kDescriptors = {{
    {"gatehouse_sessions", R"(role="agent",auth="cert")", MetricType::gauge,
     "Authenticated child sessions now, by role and authentication method."},
    {"gatehouse_sessions", R"(role="agent",auth="kerberos")", MetricType::gauge, ""},
    {"gatehouse_sessions", R"(role="gateway",auth="cert")", MetricType::gauge, ""},
    {"gatehouse_channels", "", MetricType::gauge,
     "Agent sessions carried as channels on gateway links (server: from gateways; gateway: on its uplinks)."},
    {"gatehouse_handshakes_total", R"(result="ok")", MetricType::counter,
     "TLS handshakes with children, by result (resumed: ok through a session ticket)."},
    {"gatehouse_handshakes_total", R"(result="resumed")", MetricType::counter, ""},
    {"gatehouse_handshakes_total", R"(result="failed")", MetricType::counter, ""},
    {"gatehouse_events_in_total", "", MetricType::counter, "Events received from children."},
    {"gatehouse_event_bytes_in_total", "", MetricType::counter, "Event payload bytes received from children."},
    {"gatehouse_events_out_total", "", MetricType::counter, "Events sent on towards a parent."},
    {"gatehouse_event_bytes_out_total", "", MetricType::counter, "Event payload bytes sent on towards a parent."},
    {"gatehouse_events_acked_total", "", MetricType::counter,
     "Events acknowledged as durable (server: to children; agent: by its parent)."},
    {"gatehouse_acks_relayed_total", "", MetricType::counter, "Gateway: ACK frames passed down to children."},
    {"gatehouse_heartbeats_in_total", "", MetricType::counter, "Heartbeats (pings) heard from children."},
}};

ShardMetrics g_shards[kMetricShardsMax];

void append_value(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  char text[32];
  const auto result = std::to_chars(text, text + sizeof text, value);  // shortest text that reads back the same
  out.append(text, result.ptr);
}

}  // namespace

const MetricDescriptor& metric_descriptor(ShardMetric metric) {
  GH_INVARIANT(metric < ShardMetric::count);
  return kDescriptors[static_cast<size_t>(metric)];
}

ShardMetrics& shard_metrics(uint32_t shard) {
  GH_INVARIANT(shard < kMetricShardsMax);
  return g_shards[shard];
}

int64_t shard_total(ShardMetric metric) {
  int64_t total = 0;
  for (const ShardMetrics& shard : g_shards) total += shard.values[static_cast<size_t>(metric)].load(std::memory_order_relaxed);
  return total;
}

const char* to_string(LinkState state) {
  switch (state) {
    case LinkState::connecting: return "connecting";
    case LinkState::up: return "up";
    case LinkState::retrying: return "retrying";
    case LinkState::waiting: return "waiting";
    case LinkState::stopped: return "stopped";
  }
  return "unknown";
}

void Histogram::observe_us(uint64_t micros) {
  size_t bucket = 0;
  while (bucket < kBoundsS.size() && static_cast<double>(micros) > kBoundsS[bucket] * 1e6) ++bucket;
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(micros, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snapshot;
  uint64_t running = 0;
  for (size_t i = 0; i < kBoundsS.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    snapshot.cumulative[i] = running;
  }
  snapshot.count = running + buckets_[kBoundsS.size()].load(std::memory_order_relaxed);
  snapshot.sum_s = static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6;
  return snapshot;
}

std::string label(std::string_view key, std::string_view value) {
  std::string out(key);
  out += "=\"";
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  out += '"';
  return out;
}

void Exposition::family(std::string_view name, MetricType type, std::string_view help) {
  text_ += "# HELP ";
  text_ += name;
  text_ += ' ';
  for (char c : help) {  // HELP escapes only backslash and newline
    if (c == '\\') text_ += "\\\\";
    else if (c == '\n') text_ += "\\n";
    else text_ += c;
  }
  text_ += "\n# TYPE ";
  text_ += name;
  text_ += type == MetricType::counter ? " counter\n" : type == MetricType::gauge ? " gauge\n" : " histogram\n";
}

void Exposition::sample_prefix(std::string_view name, std::string_view labels) {
  text_ += name;
  if (!labels.empty()) {
    text_ += '{';
    text_ += labels;
    text_ += '}';
  }
  text_ += ' ';
}

void Exposition::sample(std::string_view name, std::string_view labels, double value) {
  sample_prefix(name, labels);
  append_value(text_, value);
  text_ += '\n';
}

void Exposition::sample(std::string_view name, std::string_view labels, int64_t value) {
  sample_prefix(name, labels);
  text_ += std::to_string(value);
  text_ += '\n';
}

void Exposition::histogram(std::string_view name, std::string_view labels, const Histogram::Snapshot& snapshot) {
  const std::string bucket = std::string(name) + "_bucket";
  const std::string separator = labels.empty() ? "" : ",";
  for (size_t i = 0; i < Histogram::kBoundsS.size(); ++i) {
    std::string bound;
    append_value(bound, Histogram::kBoundsS[i]);
    sample(bucket, std::string(labels) + separator + label("le", bound),
           static_cast<int64_t>(snapshot.cumulative[i]));
  }
  sample(bucket, std::string(labels) + separator + label("le", "+Inf"), static_cast<int64_t>(snapshot.count));
  sample(std::string(name) + "_sum", labels, snapshot.sum_s);
  sample(std::string(name) + "_count", labels, static_cast<int64_t>(snapshot.count));
}

void expose(Exposition& out, std::initializer_list<Single> singles) {
  for (const Single& single : singles) {
    out.family(single.name, single.type, single.help);
    out.sample(single.name, "", static_cast<int64_t>(single.value));
  }
}

void expose_shard_metrics(Exposition& out) {
  std::string_view current;
  for (size_t i = 0; i < kShardMetricCount; ++i) {
    const MetricDescriptor& metric = kDescriptors[i];
    if (metric.family != current) {  // a family's label sets are listed together
      out.family(metric.family, metric.type, metric.help);
      current = metric.family;
    }
    out.sample(metric.family, metric.labels, shard_total(static_cast<ShardMetric>(i)));
  }
}

}  // namespace gatehouse::admin
