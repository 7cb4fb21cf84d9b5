#include "gatehouse/uplink/uplink_pool.h"

#include <algorithm>
#include <cstring>

#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"

namespace gatehouse::uplink {

struct UplinkPool::Uplink {
  Uplink(const net::ChildLinkOptions& options, proto::SpillPool& spill_pool, net::ChildLinkEvents& events,
         uint32_t uplink_index)
      : link(options, spill_pool, events), index(uplink_index) {}
  net::ChildLink link;
  uint32_t index;
  std::vector<std::byte> batch;  // encoded frames of this turn
  bool congested = false;
  uint16_t heartbeat_interval_s = 0;  // the parent's, from its HELLO_OK (0: not up)
};

UplinkPool::UplinkPool(const UplinkOptions& options, net::SessionHandler& role) : options_(options), role_(role) {
  net::ChildLinkEvents& link_events = *this;
  for (uint32_t i = 0; i < options.uplinks; ++i) {
    net::ChildLinkOptions link{.parents = options.parents,
                               .addresses = options.addresses,
                               .child = options.child,
                               .connect_context = net::TlsServer::kConnectedContextBase + i,
                               .backoff_initial_ms = options.backoff_initial_ms,
                               .backoff_max_ms = options.backoff_max_ms,
                               .welcome_timeout_ms = options.welcome_timeout_ms,
                               .retry_after_loss_ms = options.retry_after_loss_ms,
                               .parent_silence_max_ms = options.parent_silence_max_ms,
                               .failback_after_ms = options.failback_after_ms,
                               .not_approved_event = log::EventId::gateway_not_approved,
                               .not_approved_hint = "on the server: gatehouse approve gateway " + options.child.name +
                                                    " --action create",
                               .report = options.reports != nullptr ? &options.reports[i] : nullptr};
    uplinks_.push_back(std::make_unique<Uplink>(link, spill_pool_, link_events, i));
  }
}

UplinkPool::~UplinkPool() = default;

UplinkPool::Uplink& UplinkPool::of(const net::ChildLink& link) {
  for (auto& uplink : uplinks_) {
    if (&uplink->link == &link) return *uplink;
  }
  GH_INVARIANT(false && "a link this pool does not own");
  return *uplinks_.front();
}

int UplinkPool::pick() {
  int fallback = -1;
  for (size_t tried = 0; tried < uplinks_.size(); ++tried) {
    const uint32_t i = next_pick_++ % static_cast<uint32_t>(uplinks_.size());
    if (!uplinks_[i]->link.welcomed()) continue;
    if (!uplinks_[i]->congested) return static_cast<int>(i);
    fallback = static_cast<int>(i);
  }
  return fallback;
}

bool UplinkPool::up(uint32_t uplink) const { return uplinks_[uplink]->link.welcomed(); }

uint16_t UplinkPool::heartbeat_interval_s(uint32_t uplink) const {
  return up(uplink) ? uplinks_[uplink]->heartbeat_interval_s : 0;
}

namespace {

// The same host: the parent's configured address and where the connection
// came from (an IPv4 parent reaching a dual-stack listener included).
bool same_host(const runtime::PeerAddress& configured, const runtime::PeerAddress& came_from) {
  const runtime::PeerAddress a = configured.unmapped();
  const runtime::PeerAddress b = came_from.unmapped();
  if (a.storage.ss_family != b.storage.ss_family) return false;
  if (a.storage.ss_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in&>(a.storage).sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in&>(b.storage).sin_addr.s_addr;
  }
  return std::memcmp(&reinterpret_cast<const sockaddr_in6&>(a.storage).sin6_addr,
                     &reinterpret_cast<const sockaddr_in6&>(b.storage).sin6_addr, sizeof(in6_addr)) == 0;
}

}  // namespace

net::DialIn UplinkPool::adopt_parent(runtime::Shard& shard, runtime::ConnId id) {
  const runtime::PeerAddress& peer = shard.peer(id);
  for (size_t parent = 0; parent < options_.parents.size(); ++parent) {
    runtime::PeerAddress address;
    std::string why;
    if (!options_.parents[parent].dialled_by_parent || !options_.addresses->lookup(parent, address, why) ||
        !same_host(address, peer)) {
      continue;
    }
    for (auto& uplink : uplinks_) {
      if (uplink->link.connected() || uplink->link.stopping()) continue;
      uplink->link.adopt(shard, id, parent);
      return net::DialIn::adopted;
    }
    return net::DialIn::busy;
  }
  return net::DialIn::not_a_parent;
}

void UplinkPool::on_link_up(runtime::Shard& shard, net::ChildLink& link, const proto::HelloOk& hello_ok) {
  Uplink& uplink = of(link);
  uplink.heartbeat_interval_s = hello_ok.heartbeat_interval_s;
  size_send_queue(shard, uplink);
}

// Bytes not yet handed to the kernel: this turn's frames, then what the link sealed.
uint64_t UplinkPool::waiting_bytes(const runtime::Shard& shard, const Uplink& uplink) const {
  return uplink.batch.size() + uplink.link.unsent_bytes(shard);
}

// The uplink's socket queue takes twice the congestion bound: records go from
// the sealer straight into it (no copy waiting in the TLS session, no second
// copy into the queue), and the turns that still arrive after the agents were
// paused (their sockets' backlog, a receive buffer ring each) fit too.
void UplinkPool::size_send_queue(runtime::Shard& shard, const Uplink& uplink) const {
  if (!uplink.link.connected()) return;
  const uint64_t bound = std::clamp<uint64_t>(2 * options_.congested_above_bytes, runtime::kSendChunkBytes, kSendQueueMaxBytes);
  shard.set_send_queue_max(uplink.link.conn(), static_cast<uint32_t>(bound));
}

bool UplinkPool::queue(uint32_t index, const proto::Frame& frame) {
  Uplink& uplink = *uplinks_[index];
  if (!uplink.link.welcomed()) return false;
  const uint32_t size = proto::encoded_size_bytes(frame);
  if (size == 0) return false;
  const size_t start = uplink.batch.size();
  uplink.batch.resize(start + size);
  return proto::encode(frame, std::span(uplink.batch).subspan(start)).error == proto::ProtoError::none;
}

bool UplinkPool::queue_data(uint32_t index, uint32_t channel, const proto::Data& data) {
  Uplink& uplink = *uplinks_[index];
  if (!uplink.link.welcomed()) return false;
  const size_t start = uplink.batch.size();
  const auto payload_bytes = static_cast<uint32_t>(data.payload.size());
  uplink.batch.resize(start + proto::kDataPrefixBytes + payload_bytes);
  std::byte* out = uplink.batch.data() + start;
  const proto::EncodeResult prefix =
      proto::encode_data_prefix(channel, data.seq, data.kind, payload_bytes, std::span(out, proto::kDataPrefixBytes));
  // The decoder checked this DATA against the same bounds.
  GH_INVARIANT(prefix.error == proto::ProtoError::none);
  if (payload_bytes > 0) std::memcpy(out + proto::kDataPrefixBytes, data.payload.data(), payload_bytes);
  return true;
}

void UplinkPool::on_message(runtime::Shard& shard, uint64_t value, void* pointer) {
  if (value == kStart) {
    for (auto& uplink : uplinks_) uplink->link.start(shard);
    return;
  }
  if (value == kRelist) {
    const std::unique_ptr<net::ParentList> list(static_cast<net::ParentList*>(pointer));
    options_.parents = list->parents;
    options_.addresses = list->addresses;
    for (auto& uplink : uplinks_) uplink->link.relist(shard, *list);
    return;
  }
  GH_INVARIANT(value == kReconfigure && options_.live != nullptr);
  options_.congested_above_bytes = options_.live->uplink_buffer_max_bytes();
  options_.drained_below_bytes = options_.congested_above_bytes / 4;
  const config::LiveSettings::FailoverTimings timings = options_.live->failover();
  for (auto& uplink : uplinks_) {
    uplink->link.retime(timings);
    size_send_queue(shard, *uplink);
  }
}

void UplinkPool::on_link_frame(runtime::Shard& shard, net::ChildLink& link, const proto::Frame& frame) {
  role_.on_uplink_frame(shard, of(link).index, frame);
}

void UplinkPool::on_link_down(runtime::Shard& shard, net::ChildLink& link, bool was_up) {
  Uplink& uplink = of(link);
  uplink.batch.clear();
  uplink.congested = false;
  if (was_up) role_.on_uplink_down(shard, uplink.index);
}

void UplinkPool::on_link_writable(runtime::Shard& shard, net::ChildLink& link) { flush(shard, of(link)); }

void UplinkPool::on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) {
  for (auto& uplink : uplinks_) {
    if (uplink->link.on_open(shard, id, context)) return;
  }
}

void UplinkPool::on_connect_failed(runtime::Shard& shard, uint64_t context, int error) {
  for (auto& uplink : uplinks_) {
    if (uplink->link.on_connect_failed(shard, context, error)) return;
  }
}

void UplinkPool::on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) {
  for (auto& uplink : uplinks_) {
    if (uplink->link.on_data(shard, id, bytes)) {
      if (shard.alive(id)) flush(shard, *uplink);
      return;
    }
  }
}

void UplinkPool::on_deadline(runtime::Shard& shard, runtime::ConnId id) {
  for (auto& uplink : uplinks_) {
    if (uplink->link.on_deadline(shard, id)) return;
  }
}

void UplinkPool::on_close(runtime::Shard& shard, runtime::ConnId id, int) {
  for (auto& uplink : uplinks_) {
    if (uplink->link.on_close(shard, id)) return;
  }
}

void UplinkPool::on_send_space(runtime::Shard& shard, runtime::ConnId id) {
  for (auto& uplink : uplinks_) {
    if (uplink->link.on_send_space(shard, id)) return;
  }
}

// The turn's frames go up in one TLS write: records of up to 16 KiB.
void UplinkPool::on_turn_end(runtime::Shard& shard) {
  for (auto& uplink : uplinks_) {
    if (uplink->batch.empty() || !uplink->link.welcomed()) continue;
    uplink->link.send_encoded(uplink->batch);
    uplink->batch.clear();
    flush(shard, *uplink);
  }
}

// Ciphertext to the socket as far as the send queue takes it; congestion
// state follows what is left waiting.
void UplinkPool::flush(runtime::Shard& shard, Uplink& uplink) {
  uplink.link.flush(shard);
  const uint64_t waiting = waiting_bytes(shard, uplink);
  if (!uplink.congested && waiting > options_.congested_above_bytes) {
    uplink.congested = true;
    role_.on_uplink_congested(shard, uplink.index, true);
  } else if (uplink.congested && waiting <= options_.drained_below_bytes) {
    uplink.congested = false;
    role_.on_uplink_congested(shard, uplink.index, false);
  }
  // Congested with everything in the socket's queue: called back (this again)
  // once it drained to the mark. (Records the socket refused asked already.)
  if (uplink.congested && uplink.link.connected() && uplink.link.waiting_bytes() == 0) {
    shard.notify_send_space(uplink.link.conn(), static_cast<uint32_t>(options_.drained_below_bytes));
  }
}

void UplinkPool::on_stop(runtime::Shard& shard) {
  for (auto& uplink : uplinks_) uplink->link.stop(shard);
}

}  // namespace gatehouse::uplink
