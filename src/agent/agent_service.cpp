#include "gatehouse/agent/agent_service.h"

#include <algorithm>

#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"
#include "gatehouse/proto/codec.h"

namespace gatehouse::agent {
namespace {

constexpr uint64_t kConnectContext = 1;

net::ChildLinkOptions link_options(const AgentOptions& options) {
  return {.parents = options.gateways,
          .addresses = options.addresses,
          .child = options.child,
          .connect_context = kConnectContext,
          .backoff_initial_ms = options.backoff_initial_ms,
          .backoff_max_ms = options.backoff_max_ms,
          .welcome_timeout_ms = options.welcome_timeout_ms,
          .retry_after_loss_ms = options.retry_after_loss_ms,
          .parent_silence_max_ms = options.parent_silence_max_ms,
          .failback_after_ms = options.failback_after_ms,
          .not_approved_event = log::EventId::agent_not_approved,
          .not_approved_hint = {},
          .report = options.report};
}

}  // namespace

AgentService::AgentService(const AgentOptions& options, DiskQueue& queue, AgentCounters& counters)
    : options_(options), queue_(queue), counters_(counters), link_(link_options(options), spill_pool_, *this) {}

AgentService::~AgentService() = default;

void AgentService::on_message(runtime::Shard& shard, uint64_t value, void* pointer) {
  if (value == kRelist) {
    const std::unique_ptr<net::ParentList> list(static_cast<net::ParentList*>(pointer));
    link_.relist(shard, *list);
    return;
  }
  if (value == kReconfigure) {
    GH_INVARIANT(options_.live != nullptr);
    link_.retime(options_.live->failover());
    return;
  }
  if (value == kStart && !started_) {
    started_ = true;
    link_.start(shard);
  }
  pump(shard);
}

void AgentService::on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) {
  link_.on_open(shard, id, context);
}
void AgentService::on_connect_failed(runtime::Shard& shard, uint64_t context, int error) {
  link_.on_connect_failed(shard, context, error);
}
void AgentService::on_deadline(runtime::Shard& shard, runtime::ConnId id) { link_.on_deadline(shard, id); }
void AgentService::on_send_space(runtime::Shard& shard, runtime::ConnId id) { link_.on_send_space(shard, id); }
void AgentService::on_close(runtime::Shard& shard, runtime::ConnId id, int) { link_.on_close(shard, id); }

void AgentService::on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) {
  if (link_.on_data(shard, id, bytes)) pump(shard);
}

proto::Incarnation AgentService::hello_incarnation(net::ChildLink&) {
  session_incarnation_ = queue_.session_incarnation();
  return session_incarnation_;
}

void AgentService::on_link_up(runtime::Shard&, net::ChildLink&, const proto::HelloOk& hello_ok) {
  window_bytes_ = hello_ok.credit_bytes;
  // From the server's durable seq: what the queue dropped after it is declared (pump).
  sent_through_ = queue_.resume(session_incarnation_, hello_ok.last_durable_seq);
  counters_.acked_seq = queue_.acked_seq();
  counters_.sessions.fetch_add(1);
  counters_.connected = true;
}

void AgentService::on_link_frame(runtime::Shard&, net::ChildLink&, const proto::Frame& frame) {
  if (const auto* ack = std::get_if<proto::Ack>(&frame.body)) {
    // Never past what this session sent: an ACK is for the incarnation the server has.
    queue_.acknowledge(std::min(ack->durable_seq, sent_through_));
    counters_.acked_seq = queue_.acked_seq();
  } else if (const auto* credit = std::get_if<proto::Credit>(&frame.body)) {
    window_bytes_ += credit->credit_bytes;
  }
}

void AgentService::on_link_down(runtime::Shard&, net::ChildLink&, bool) { counters_.connected = false; }

void AgentService::on_link_writable(runtime::Shard& shard, net::ChildLink&) { pump(shard); }

void AgentService::pump(runtime::Shard& shard) {
  if (!link_.welcomed()) return;
  QueuedEvent event;
  // Nothing more is sealed while the socket's send queue refuses what was.
  while (link_.waiting_bytes() < runtime::kSendChunkBytes && queue_.next_after(sent_through_, event)) {
    if (proto::Incarnation next; queue_.next_incarnation(session_incarnation_, next) && event.seq > next.base_seq) {
      if (!send_incarnation(next)) break;
      continue;
    }
    // The queue dropped its oldest (drop-oldest) before they were sent:
    // the server is told which, so a loss is never a silent jump.
    if (event.seq > sent_through_ + 1 && !send_gap(event.seq - 1)) break;
    const uint64_t frame_bytes = proto::kDataPrefixBytes + event.payload.size();
    if (frame_bytes > window_bytes_) break;
    link_.send({0, proto::Data{event.seq, proto::DataKind::event, std::as_bytes(std::span(event.payload))}});
    window_bytes_ -= frame_bytes;
    sent_through_ = event.seq;
    counters_.sent.fetch_add(1, std::memory_order_relaxed);
    if (link_.waiting_bytes() >= runtime::kSendChunkBytes) link_.flush(shard);
  }
  link_.flush(shard);
}

// The events after `last_seq` that were dropped unsent, declared.
bool AgentService::send_gap(uint64_t last_seq) {
  if (proto::kDataPrefixBytes > window_bytes_) return false;
  link_.send({0, proto::Data{last_seq, proto::DataKind::gap, {}}});
  window_bytes_ -= proto::kDataPrefixBytes;
  sent_through_ = last_seq;
  return true;
}

// The events from here on belong to `next`; what the current incarnation
// dropped at its end is declared first.
bool AgentService::send_incarnation(const proto::Incarnation& next) {
  if (sent_through_ < next.base_seq && !send_gap(next.base_seq)) return false;
  const uint64_t frame_bytes = proto::kDataPrefixBytes + proto::kIncarnationPayloadBytes;
  if (frame_bytes > window_bytes_) return false;
  const auto payload = proto::incarnation_payload(next.id);
  link_.send({0, proto::Data{next.base_seq, proto::DataKind::incarnation, payload}});
  window_bytes_ -= frame_bytes;
  session_incarnation_ = next;
  sent_through_ = next.base_seq;
  return true;
}

void AgentService::on_stop(runtime::Shard& shard) {
  link_.stop(shard);
}

}  // namespace gatehouse::agent
