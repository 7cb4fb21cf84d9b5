// The child side of a session (agent → gateway or server, gateway → parent):
// TLS client, HELLO, the Kerberos exchange in AUTH frames when asked, then
// frames both ways. Socket-free like tls::Session: the owner feeds received
// ciphertext in and sends what ciphertext() holds. Runs inline on the
// owner's shard (a child has few sessions; a parent's CPU is what the auth
// pool protects).
#pragma once

#include <memory>
#include <string>

#include "gatehouse/log/events.h"
#include "gatehouse/proto/codec.h"
#include "gatehouse/tls/reload.h"
#include "gatehouse/tls/tls_types.h"

struct x509_st;     // BoringSSL's X509
struct evp_pkey_st; // BoringSSL's EVP_PKEY

namespace gatehouse::krb {
class InitiatorCredential;
class Initiator;
}  // namespace gatehouse::krb

namespace gatehouse::net {

struct ChildOptions {
  std::shared_ptr<const tls::ReloadableContext> tls;  // each new session takes the material in force
  std::string parent_name;  // the parent's certificate identity; the Kerberos service host
  proto::Role role = proto::Role::agent;
  proto::AuthMethod auth = proto::AuthMethod::cert;
  std::string name;         // ours, in HELLO
  std::shared_ptr<const krb::InitiatorCredential> kerberos;  // auth = kerberos
  std::string kerberos_service = "gatehouse";
  // auth = cert: this certificate and key instead of the context's (not owned; outlives the session).
  x509_st* certificate = nullptr;
  evp_pkey_st* key = nullptr;
};

// Why a session ended before or instead of HELLO_OK.
struct ChildFailure {
  proto::Reason reason = proto::Reason::normal;  // from DENY, or auth_failed / protocol_error locally
  log::EventId event = log::EventId::mutual_auth_failed;
  std::string why;
};

class ChildSession {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void on_welcome(const proto::HelloOk& hello_ok) = 0;
    // Every frame after HELLO_OK; views valid during the call only.
    virtual void on_frame(const proto::Frame& frame) = 0;
    virtual void on_failure(const ChildFailure& failure) = 0;
    // An agent's HELLO: the incarnation its session starts in (docs/protocol.md).
    virtual proto::Incarnation hello_incarnation() { return {}; }
  };

  ChildSession(const ChildOptions& options, proto::SpillPool& spill_pool);
  ~ChildSession();
  ChildSession(const ChildSession&) = delete;
  ChildSession& operator=(const ChildSession&) = delete;

  // The TCP connection is up: produces the first TLS flight.
  void start();
  // Received ciphertext; calls the handler for what it completes.
  void receive(std::span<const std::byte> ciphertext, Handler& handler);
  // After on_welcome: encodes one frame into the record being filled; it is
  // sealed when full (16 KiB) or on seal(). One record for a burst of
  // events, not one each: the parent opens records, and a record costs it
  // more than the few hundred bytes of an event in it.
  bool send(const proto::Frame& frame);
  // Pre-encoded frames (a relay passes them through): sealed at once, after
  // what send() has gathered.
  bool send_encoded(std::span<const std::byte> frames);
  // Seals what send() has gathered (the owner's flush, before ciphertext()).
  bool seal();

  size_t pending_ciphertext_bytes() const;
  // Where sealed bytes go as they are made (tls::Session::set_sink); what
  // it refuses waits in ciphertext().
  void set_sink(bool (*sink)(void* context, std::span<const std::byte> bytes), void* context);
  // Sealed bytes to send, in place; consume what the socket took.
  std::span<const std::byte> ciphertext() const;
  void consume_ciphertext(size_t size_bytes);
  bool welcomed() const { return stage_ == Stage::welcomed; }
  bool failed() const { return stage_ == Stage::failed; }

 private:
  enum class Stage : uint8_t { tls, hello_sent, welcomed, failed };
  void on_established(Handler& handler);
  void on_plaintext(std::span<const std::byte> bytes, Handler& handler);
  bool on_pre_welcome_frame(const proto::Frame& frame, Handler& handler);
  void fail(Handler& handler, proto::Reason reason, log::EventId event, std::string why);

  ChildOptions options_;
  std::unique_ptr<tls::Session> tls_;
  proto::FrameDecoder decoder_;
  std::unique_ptr<krb::Initiator> initiator_;
  Stage stage_ = Stage::tls;
  bool kerberos_complete_ = false;
  // Encoded frames not sealed yet: at most one record's worth (kRecordPlaintextMaxBytes).
  std::vector<std::byte> plaintext_;
};

}  // namespace gatehouse::net
