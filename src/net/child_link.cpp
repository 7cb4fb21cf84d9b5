#include "gatehouse/net/child_link.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>

#include "gatehouse/log/invariant.h"
#include "gatehouse/log/log.h"
#include "gatehouse/net/ciphertext.h"

namespace gatehouse::net {
namespace {

constexpr uint32_t kConnectSlotRetryMs = 10;  // one timer tick

}  // namespace

namespace {

bool dials_any(const std::vector<config::Peer>& parents) {
  return std::any_of(parents.begin(), parents.end(), [](const config::Peer& parent) { return !parent.dialled_by_parent; });
}

}  // namespace

ChildLink::ChildLink(const ChildLinkOptions& options, proto::SpillPool& spill_pool, ChildLinkEvents& events)
    : options_(options),
      spill_pool_(spill_pool),
      events_(events),
      failover_(options.parents.size(), options.backoff_initial_ms, options.backoff_max_ms),
      dials_any_(dials_any(options.parents)) {}

ChildLink::~ChildLink() = default;

// The session's sink: sealed records into the send queue as they are made.
bool ChildLink::send_to_socket(void* link, std::span<const std::byte> bytes) {
  auto& self = *static_cast<ChildLink*>(link);
  return self.shard_->send(self.conn_, bytes);
}

void ChildLink::retime(const config::LiveSettings::FailoverTimings& timings) {
  options_.backoff_initial_ms = timings.backoff_initial_ms;
  options_.backoff_max_ms = timings.backoff_max_ms;
  options_.welcome_timeout_ms = timings.welcome_timeout_ms;
  options_.retry_after_loss_ms = timings.retry_after_loss_ms;
  options_.parent_silence_max_ms = timings.parent_silence_ms;
  options_.failback_after_ms = timings.failback_ms;
  failover_.retime(timings.backoff_initial_ms, timings.backoff_max_ms);
}

void ChildLink::relist(runtime::Shard& shard, const ParentList& list) {
  GH_INVARIANT(!list.parents.empty());
  const config::Peer current = parent();
  const auto kept = std::find_if(list.parents.begin(), list.parents.end(), [&](const config::Peer& listed) {
    return listed.name == current.name && listed.address == current.address;
  });
  options_.parents = list.parents;
  options_.addresses = list.addresses;
  dials_any_ = dials_any(options_.parents);
  failover_.relist(options_.parents.size(), kept == list.parents.end() ? 0 : size_t(kept - list.parents.begin()));
  shard.cancel_timer(failback_);  // looked at again with the new first parent
  failback_probing_ = false;
  if (kept != list.parents.end()) {
    if (welcomed() && options_.failback_after_ms != 0 && failover_.current() != 0 && !adopted_) {
      shard.set_timer(failback_, options_.failback_after_ms);
    }
    report(welcomed() ? admin::LinkState::up : connected_ ? admin::LinkState::connecting : admin::LinkState::retrying);
    return;
  }
  if (options_.log_events && connected_) {
    log::emit(log::Level::info, log::EventId::config_reloaded,
              "the config no longer lists this parent: moving to the new list's first",
              {{"from", current.name}, {"to", options_.parents[0].name}});
  }
  if (connected_) {
    reconnect_at_once_ = !adopted_;
    close(shard);
  }
}

void ChildLink::start(runtime::Shard& shard) {
  shard_ = &shard;
  connect(shard);
}

void ChildLink::report(admin::LinkState state) {
  if (options_.report == nullptr) return;
  options_.report->state.store(state, std::memory_order_relaxed);
  options_.report->parent.store(failover_.current(), std::memory_order_relaxed);
  if (state == admin::LinkState::up) options_.report->sessions_up.fetch_add(1, std::memory_order_relaxed);
}

void ChildLink::connect(runtime::Shard& shard) {
  if (stopping_ || connected_) return;
  if (!dials_any_) {  // every parent dials us: wait for one
    report(admin::LinkState::waiting);
    return;
  }
  if (parent().dialled_by_parent) {  // not ours to dial: the next in the list
    next_parent(shard);
    return;
  }
  report(admin::LinkState::connecting);
  runtime::PeerAddress address;
  std::string why;
  if (options_.addresses->lookup(failover_.current(), address, why) && address.storage.ss_family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(address.storage);
    in.sin_addr.s_addr = htonl(ntohl(in.sin_addr.s_addr) + options_.address_offset);
  }
  if (why.empty() && !shard.can_connect()) {
    // The shard's own bound on connects in flight (thousands of links dialling
    // at once: loadgen): no fault of the parent, so no failover; again soon.
    shard.set_timer(reconnect_, kConnectSlotRetryMs);
    return;
  }
  if (!why.empty() || !shard.connect(address, options_.connect_context)) {
    if (why.empty()) why = "no socket (the process's file limit?)";
    failed(shard, log::Level::warning, {proto::Reason::normal, log::EventId::parent_connect_failed,
                                        "cannot connect to the parent: " + why},
           {{"parent", parent().name}, {"address", parent().address.text}});
    next_parent(shard);
  }
}

// Logged (unless the owner counts instead) and told to the owner.
void ChildLink::failed(runtime::Shard& shard, log::Level level, const ChildFailure& failure,
                       std::initializer_list<log::Field> fields) {
  failure_heard_ = true;
  if (options_.log_events) log::emit(level, failure.event, failure.why, fields);
  events_.on_link_failed(shard, *this, failure);
}

// The current parent failed: the next one now, or after a backoff once the
// whole list has failed.
void ChildLink::next_parent(runtime::Shard& shard) {
  if (stopping_ || adopted_) return;
  if (!dials_any_) {
    report(admin::LinkState::waiting);
    return;
  }
  const uint32_t delay_ms = failover_.failed();
  if (delay_ms == 0) {
    connect(shard);
    return;
  }
  if (options_.log_events) {
    log::emit(log::Level::error, log::EventId::no_parent_available,
              "no parent in the list is reachable; events wait in the queues",
              {{"parents", static_cast<uint64_t>(options_.parents.size())}, {"retry_ms", delay_ms}});
  }
  shard.set_timer(reconnect_, delay_ms);
}

void ChildLink::on_timer(runtime::Shard& shard, runtime::Timer& timer) {
  if (&timer == &reconnect_) {
    connect(shard);
    return;
  }
  if (&timer == &failback_) {
    failback_check(shard);
    return;
  }
  if (!welcomed()) return;
  const uint64_t silent_ms = shard.now_ms() - heard_at_ms_;
  if (options_.parent_silence_max_ms != 0 && silent_ms >= options_.parent_silence_max_ms) {
    failed(shard, log::Level::warning,
           {proto::Reason::timeout, log::EventId::parent_connect_failed,
            "no answer from the parent for " + std::to_string(silent_ms) +
                " ms (frozen or black-holed; [failover] parent_silence_ms): trying the next"},
           {{"parent", parent().name}, {"address", parent().address.text}});
    parent_silent_ = true;
    shard.abort(conn_);
    return;
  }
  session_->send({0, proto::Ping{shard.now_ms()}});
  flush(shard);
  shard.set_timer(heartbeat_, heartbeat_interval_ms_);
}

// On a later parent: ask for a probe of the first; at the next look, if it
// took a connection, close this session (flushed) and reconnect to the first.
// A first parent that takes TCP but not us sends the link on down the list
// again, and the next look is failback_after_ms later.
void ChildLink::failback_check(runtime::Shard& shard) {
  if (!welcomed() || failover_.current() == 0) return;
  if (!failback_probing_) {
    failback_probing_ = true;
    failback_probe_base_ = options_.addresses->reachable_count(0);
    options_.addresses->probe_soon(0);
    shard.set_timer(failback_, kFailbackProbeWaitMs);
    return;
  }
  failback_probing_ = false;
  if (options_.addresses->reachable_count(0) == failback_probe_base_) {
    shard.set_timer(failback_, options_.failback_after_ms);
    return;
  }
  if (options_.log_events) {
    log::emit(log::Level::info, log::EventId::parent_failback,
              "the first parent takes connections again: going back to it",
              {{"from", parent().name}, {"to", options_.parents[0].name}});
  }
  failover_.reset_to_first();
  failing_back_ = true;
  close(shard);
}

bool ChildLink::on_connect_failed(runtime::Shard& shard, uint64_t context, int error) {
  if (context != options_.connect_context) return false;
  failed(shard, log::Level::warning, {proto::Reason::normal, log::EventId::parent_connect_failed,
                                      "cannot connect to the parent: " + runtime::connect_error_text(error)},
         {{"parent", parent().name}, {"address", parent().address.text}});
  options_.addresses->refresh_soon(failover_.current());  // it may have moved
  next_parent(shard);
  return true;
}

bool ChildLink::on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t context) {
  if (context != options_.connect_context) return false;
  shard_ = &shard;
  conn_ = id;
  connected_ = true;
  failure_heard_ = false;
  ChildOptions child = options_.child;
  child.parent_name = parent().name;
  session_ = std::make_unique<ChildSession>(child, spill_pool_);
  session_->set_sink(send_to_socket, this);
  session_->start();
  flush(shard);
  shard.set_deadline(id, options_.welcome_timeout_ms);
  return true;
}

void ChildLink::adopt(runtime::Shard& shard, runtime::ConnId id, size_t parent) {
  shard.cancel_timer(reconnect_);  // no dialling of our own while this session lives
  failover_.move_to(parent);
  adopted_ = true;
  report(admin::LinkState::connecting);
  on_open(shard, id, options_.connect_context);
}

bool ChildLink::on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) {
  if (!connected_ || id != conn_ || session_ == nullptr) return false;
  heard_at_ms_ = shard.now_ms();
  session_->receive(bytes, *this);
  if (session_ != nullptr && shard.alive(id)) flush(shard);
  return true;
}

void ChildLink::on_welcome(const proto::HelloOk& hello_ok) {
  shard_->clear_deadline(conn_);
  heartbeat_interval_ms_ = hello_ok.heartbeat_interval_s * 1'000u;
  if (options_.parent_silence_max_ms != 0) {
    heartbeat_interval_ms_ = std::min(heartbeat_interval_ms_, std::max(options_.parent_silence_max_ms / 3, 1u));
  }
  shard_->set_timer(heartbeat_, heartbeat_interval_ms_);
  if (options_.failback_after_ms != 0 && failover_.current() != 0 && !adopted_) {
    failback_probing_ = false;
    shard_->set_timer(failback_, options_.failback_after_ms);
  }
  failover_.succeeded();
  report(admin::LinkState::up);
  if (options_.log_events) {
    log::emit(log::Level::info, log::EventId::parent_connected, "connected to the parent",
              {{"parent", hello_ok.name}, {"address", parent().address.text},
               {"last_durable_seq", hello_ok.last_durable_seq}});
  }
  events_.on_link_up(*shard_, *this, hello_ok);
}

void ChildLink::on_frame(const proto::Frame& frame) {
  if (frame.channel == 0) {
    if (const auto* ping = std::get_if<proto::Ping>(&frame.body)) {
      session_->send({0, proto::Pong{ping->nonce}});
      return;
    }
    if (std::holds_alternative<proto::GoAway>(frame.body) || std::holds_alternative<proto::Close>(frame.body)) {
      const auto* go_away = std::get_if<proto::GoAway>(&frame.body);
      parent_stopping_ = go_away != nullptr && go_away->reason == proto::Reason::shutting_down;
      shard_->close(conn_);  // the parent is leaving: reconnect, elsewhere if it is gone
      return;
    }
  }
  events_.on_link_frame(*shard_, *this, frame);
}

void ChildLink::on_failure(const ChildFailure& failure) {
  const bool not_approved = failure.reason == proto::Reason::not_approved;
  ChildFailure told = failure;
  if (not_approved) told.event = options_.not_approved_event;
  if (not_approved && !options_.not_approved_hint.empty()) told.why += " (" + options_.not_approved_hint + ")";
  failed(*shard_, log::Level::error, told,
         {{"parent", parent().name}, {"address", parent().address.text}, {"reason", proto::to_string(failure.reason)}});
  if (not_approved) failover_.end_round();  // wait a backoff: approval takes a human
  shard_->abort(conn_);
}

bool ChildLink::on_deadline(runtime::Shard& shard, runtime::ConnId id) {
  if (!connected_ || id != conn_) return false;
  if (session_ != nullptr && !session_->welcomed()) {
    failed(shard, log::Level::warning, {proto::Reason::timeout, log::EventId::parent_connect_failed,
                                        "the parent did not welcome us in time"},
           {{"parent", parent().name}, {"timeout_ms", options_.welcome_timeout_ms}});
    shard.abort(id);
  }
  return true;
}

bool ChildLink::on_close(runtime::Shard& shard, runtime::ConnId id) {
  if (!connected_ || id != conn_) return false;
  const bool was_up = welcomed();
  shard.cancel_timer(heartbeat_);
  shard.cancel_timer(failback_);
  session_.reset();
  connected_ = false;
  report(stopping_ ? admin::LinkState::stopped : admin::LinkState::retrying);
  if (!was_up && !failure_heard_ && !stopping_) {
    failed(shard, log::Level::warning, {proto::Reason::normal, log::EventId::parent_connect_failed,
                                        "the parent closed the connection before HELLO_OK"},
           {{"parent", parent().name}, {"address", parent().address.text}});
  }
  events_.on_link_down(shard, *this, was_up);
  if (adopted_) {  // the parent dials again; meanwhile we dial those we may
    adopted_ = false;
    if (!stopping_) shard.set_timer(reconnect_, failover_.jitter_ms(options_.retry_after_loss_ms));
    return true;
  }
  if (stopping_) return true;
  if (reconnect_at_once_) {
    reconnect_at_once_ = false;
    connect(shard);
    return true;
  }
  if (was_up && parent_silent_) {
    parent_silent_ = false;
    next_parent(shard);
    return true;
  }
  if (was_up && failing_back_) {
    failing_back_ = false;
    shard.set_timer(reconnect_, failover_.jitter_ms(options_.retry_after_loss_ms));
    return true;
  }
  if (was_up) {
    if (options_.log_events) {  // a parent that said it stops is no fault of anyone's
      log::emit(parent_stopping_ ? log::Level::info : log::Level::warning, log::EventId::parent_connect_failed,
                parent_stopping_ ? "the parent is stopping (GOAWAY); reconnecting" : "lost the parent; reconnecting",
                {{"parent", parent().name}});
    }
    parent_stopping_ = false;
    shard.set_timer(reconnect_, failover_.jitter_ms(options_.retry_after_loss_ms));
    return true;
  }
  next_parent(shard);
  return true;
}

bool ChildLink::on_send_space(runtime::Shard& shard, runtime::ConnId id) {
  if (!connected_ || id != conn_) return false;
  flush(shard);
  events_.on_link_writable(shard, *this);
  return true;
}

bool ChildLink::send(const proto::Frame& frame) { return welcomed() && session_->send(frame); }

bool ChildLink::send_encoded(std::span<const std::byte> frames) { return welcomed() && session_->send_encoded(frames); }

void ChildLink::flush(runtime::Shard& shard) {
  if (session_ == nullptr) return;
  session_->seal();
  flush_ciphertext(shard, conn_, *session_);
  if (options_.report != nullptr) {
    options_.report->waiting_bytes.store(unsent_bytes(shard), std::memory_order_relaxed);
  }
}

void ChildLink::close(runtime::Shard& shard) {
  if (!connected_) return;
  flush(shard);  // what was sent goes before the close
  shard.close(conn_);
}

void ChildLink::reconnect_now(runtime::Shard& shard) {
  if (!connected_) return;
  reconnect_at_once_ = true;
  shard.abort(conn_);
}

uint64_t ChildLink::waiting_bytes() const {
  return session_ != nullptr ? session_->pending_ciphertext_bytes() : 0;
}

uint64_t ChildLink::unsent_bytes(const runtime::Shard& shard) const {
  return connected_ ? waiting_bytes() + shard.send_queued_bytes(conn_) : 0;
}

void ChildLink::stop(runtime::Shard& shard) {
  stopping_ = true;
  report(admin::LinkState::stopped);
  shard.cancel_timer(reconnect_);
  shard.cancel_timer(heartbeat_);
  shard.cancel_timer(failback_);
  close(shard);
}

}  // namespace gatehouse::net
