#include "gatehouse/net/child_session.h"

#include <vector>

#include "krb/gss.h"
#include "tls/session.h"

namespace gatehouse::net {
namespace {

constexpr size_t kRecordPlaintextMaxBytes = 16'384;  // TLS's limit for one record
constexpr size_t kPlaintextKeepBytes = 1'024;        // what a sealed, quiet session keeps

}  // namespace

ChildSession::ChildSession(const ChildOptions& options, proto::SpillPool& spill_pool)
    : options_(options), tls_(std::make_unique<tls::Session>(options.tls->current(), options.parent_name)), decoder_(&spill_pool) {
  if (options.certificate != nullptr) tls_->use_identity(options.certificate, options.key);
  tls_->keep_buffers();  // a child has few links, each with steady traffic
}

ChildSession::~ChildSession() = default;

size_t ChildSession::pending_ciphertext_bytes() const { return tls_->pending_ciphertext_bytes(); }
std::span<const std::byte> ChildSession::ciphertext() const { return tls_->ciphertext(); }
void ChildSession::consume_ciphertext(size_t size_bytes) { tls_->consume_ciphertext(size_bytes); }
void ChildSession::set_sink(bool (*sink)(void*, std::span<const std::byte>), void* context) {
  tls_->set_sink(sink, context);
}

void ChildSession::start() { tls_->handshake(); }

void ChildSession::fail(Handler& handler, proto::Reason reason, log::EventId event, std::string why) {
  if (stage_ == Stage::failed) return;
  stage_ = Stage::failed;
  handler.on_failure({reason, event, std::move(why)});
}

void ChildSession::receive(std::span<const std::byte> ciphertext, Handler& handler) {
  if (stage_ == Stage::failed) return;
  const tls::Session::Lent lent(*tls_, ciphertext);  // read in place; a partial record's tail is kept
  if (stage_ == Stage::tls) {
    const tls::HandshakeState state = tls_->handshake();
    if (state == tls::HandshakeState::failed) {
      fail(handler, proto::Reason::auth_failed, log::EventId::mutual_auth_failed, tls_->failure());
      return;
    }
    if (state == tls::HandshakeState::in_progress) return;
    on_established(handler);
    if (stage_ == Stage::failed) return;
  }
  std::array<std::byte, 16 * 1024> plaintext{};
  for (;;) {
    const int64_t n = tls_->read(plaintext);
    if (n == 0) return;
    if (n < 0) {
      fail(handler, proto::Reason::normal, log::EventId::parent_connect_failed, tls_->failure());
      return;
    }
    on_plaintext(std::span(plaintext).first(static_cast<size_t>(n)), handler);
    if (stage_ == Stage::failed) return;
  }
}

// TLS is up: HELLO, and for Kerberos the first AUTH token right behind it.
void ChildSession::on_established(Handler& handler) {
  stage_ = Stage::hello_sent;
  const proto::Hello hello{proto::kVersion, proto::kVersion, options_.role, options_.auth, options_.name,
                          handler.hello_incarnation()};
  send(proto::Frame{0, hello});
  if (options_.auth != proto::AuthMethod::kerberos) return;
  krb::ChannelBinding binding{};
  if (!tls_->channel_binding(binding)) {
    fail(handler, proto::Reason::internal_error, log::EventId::mutual_auth_failed, "no TLS channel binding");
    return;
  }
  initiator_ = std::make_unique<krb::Initiator>(options_.kerberos, options_.kerberos_service, options_.parent_name, binding);
  const krb::Step step = initiator_->step({});
  if (step.state == krb::Step::failed) {
    fail(handler, proto::Reason::auth_failed, log::EventId::mutual_auth_failed, "Kerberos: " + step.error);
    return;
  }
  send(proto::Frame{0, proto::Auth{proto::AuthMechanism::gssapi_krb5, std::as_bytes(std::span(step.token))}});
}

void ChildSession::on_plaintext(std::span<const std::byte> bytes, Handler& handler) {
  while (!bytes.empty() && stage_ != Stage::failed) {
    const proto::DecodeResult result = decoder_.next(bytes);
    if (result.status == proto::DecodeStatus::need_more) return;
    if (result.status == proto::DecodeStatus::error) {
      fail(handler, proto::Reason::protocol_error, log::EventId::protocol_violation,
           std::string("malformed frame from the parent: ") + proto::to_string(result.error));
      return;
    }
    if (stage_ == Stage::welcomed) {
      handler.on_frame(result.frame);
    } else if (!on_pre_welcome_frame(result.frame, handler)) {
      return;
    }
  }
}

// AUTH (the parent's GSSAPI answer), HELLO_OK or DENY; false once failed.
bool ChildSession::on_pre_welcome_frame(const proto::Frame& frame, Handler& handler) {
  if (const auto* deny = std::get_if<proto::Deny>(&frame.body)) {
    log::EventId event = log::EventId::parent_connect_failed;  // unavailable, overloaded, shutting down
    if (deny->reason == proto::Reason::not_approved) event = log::EventId::agent_not_approved;
    if (deny->reason == proto::Reason::auth_failed || deny->reason == proto::Reason::name_mismatch) {
      event = log::EventId::mutual_auth_failed;
    }
    fail(handler, deny->reason, event, "the parent refused us: " + std::string(deny->text));
    return false;
  }
  if (const auto* auth = std::get_if<proto::Auth>(&frame.body); auth != nullptr && initiator_ != nullptr) {
    const krb::Step step = initiator_->step({reinterpret_cast<const uint8_t*>(auth->token.data()), auth->token.size()});
    if (step.state == krb::Step::failed) {
      fail(handler, proto::Reason::auth_failed, log::EventId::mutual_auth_failed,
           "Kerberos: the parent did not prove its identity: " + step.error);
      return false;
    }
    if (!step.token.empty()) {
      send(proto::Frame{0, proto::Auth{proto::AuthMechanism::gssapi_krb5, std::as_bytes(std::span(step.token))}});
    }
    kerberos_complete_ = step.state == krb::Step::complete;
    return true;
  }
  if (const auto* hello_ok = std::get_if<proto::HelloOk>(&frame.body)) {
    // A Kerberos parent must have proven itself (AP-REP) before welcoming us.
    if (options_.auth == proto::AuthMethod::kerberos && !kerberos_complete_) {
      fail(handler, proto::Reason::auth_failed, log::EventId::mutual_auth_failed,
           "the parent sent HELLO_OK without completing mutual Kerberos authentication");
      return false;
    }
    initiator_.reset();
    stage_ = Stage::welcomed;
    handler.on_welcome(*hello_ok);
    return true;
  }
  fail(handler, proto::Reason::protocol_error, log::EventId::protocol_violation,
       std::string("the parent sent ") + proto::to_string(proto::frame_type(frame.body)) + " before HELLO_OK");
  return false;
}

bool ChildSession::send(const proto::Frame& frame) {
  // One per thread, not per session: a load generator holds tens of thousands.
  thread_local std::vector<std::byte> frame_buffer(proto::kFrameMaxBytes);
  const proto::EncodeResult encoded = proto::encode(frame, frame_buffer);
  if (encoded.error != proto::ProtoError::none) return false;
  const std::span<const std::byte> bytes = std::span(frame_buffer).first(encoded.size_bytes);
  if (plaintext_.size() + bytes.size() > kRecordPlaintextMaxBytes && !seal()) return false;
  if (bytes.size() > kRecordPlaintextMaxBytes) return tls_->write(bytes);
  plaintext_.insert(plaintext_.end(), bytes.begin(), bytes.end());
  return true;
}

bool ChildSession::send_encoded(std::span<const std::byte> frames) { return seal() && tls_->write(frames); }

bool ChildSession::seal() {
  if (plaintext_.empty()) return true;
  const bool sealed = tls_->write(plaintext_);
  plaintext_.clear();
  // A quiet session (one event now and then) keeps no record-sized buffer.
  if (plaintext_.capacity() > kPlaintextKeepBytes) std::vector<std::byte>().swap(plaintext_);
  return sealed;
}

}  // namespace gatehouse::net
