// TLS 1.3 over memory buffers: the shard moves bytes, whoever calls
// handshake() (an auth thread) spends the CPU. One Session per connection.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <set>
#include <string>

#include "gatehouse/tls/ticket_keys.h"
#include "gatehouse/tls/tls_types.h"
#include "tls/boringssl.h"
#include <openssl/ssl.h>

namespace gatehouse::tls {

// Loaded TLS material for one side; immutable once loaded, shared by every
// session made from it, replaced whole on reload (new sessions only).
class Context {
 public:
  using Options = ContextOptions;

  // nullptr with `why` saying which file and what is wrong with it.
  static std::shared_ptr<const Context> load(const Options& options, std::string& why);

  SSL_CTX* get() const { return context_.get(); }
  const Options& options() const { return options_; }
  // Our certificate's subject and expiry ("" without a certificate).
  std::string certificate_subject() const;
  std::string certificate_not_after() const;
  time_t certificate_expires_at() const;  // unix seconds (0: no certificate)
  // The CRL this context was loaded with lists this certificate serial.
  bool revokes(std::string_view serial) const { return !serial.empty() && revoked_serials_.contains(serial); }
  // The earliest nextUpdate of its CRLs (0: no CRL, or none says).
  time_t crl_next_update() const { return crl_next_update_; }

  // Server: the keys sealing and opening tickets (first one seals).
  const std::vector<TicketKey>& ticket_keys() const { return ticket_keys_; }

  // Client: the newest tickets per server name (or for all, see
  // resume_across_servers); each is taken by one later session to that server
  // (TLS 1.3 tickets are single use), so parallel reconnects all resume.
  // Thread-safe.
  void keep_ticket(const std::string& server_name, bssl::UniquePtr<SSL_SESSION> ticket) const;
  bssl::UniquePtr<SSL_SESSION> take_ticket(const std::string& server_name) const;

 private:
  static constexpr size_t kTicketServersMax = 1'024;  // server names a client remembers
  static constexpr size_t kTicketsPerServerMax = 32;   // newest kept; ≥ 2 per handshake arrive

  Context() = default;
  void keep_ticket_as(const std::string& key, bssl::UniquePtr<SSL_SESSION> ticket) const;
  bssl::UniquePtr<SSL_CTX> context_;
  Options options_;
  std::vector<TicketKey> ticket_keys_;
  std::set<std::string, std::less<>> revoked_serials_;  // from the CRL file
  time_t crl_next_update_ = 0;
  mutable std::mutex tickets_mutex_;
  // Bounded by kTicketServersMax names × kTicketsPerServerMax tickets, newest last.
  mutable std::map<std::string, std::vector<bssl::UniquePtr<SSL_SESSION>>> tickets_;
};

class Session {
 public:
  // Lends received bytes for a scope (reads in place); the unread rest is
  // kept when it ends, whatever way it ends.
  class Lent {
   public:
    Lent(Session& session, std::span<const std::byte> bytes) : session_(session) { session_.lend_ciphertext(bytes); }
    ~Lent() { session_.keep_lent(); }
    Lent(const Lent&) = delete;
    Lent& operator=(const Lent&) = delete;

   private:
    Session& session_;
  };

  // Client sessions verify the server's certificate against `expected_peer_name`.
  explicit Session(std::shared_ptr<const Context> context, const std::string& expected_peer_name = "");
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Ciphertext received from the peer, copied in.
  void push_ciphertext(std::span<const std::byte> bytes);
  // Or lent: read in place (after what is queued) until keep_lent(), which
  // copies in only what is left unread (a partial record's tail). Lent bytes
  // must stay valid until then; see Lent.
  void lend_ciphertext(std::span<const std::byte> bytes);
  void keep_lent();
  // A link with steady traffic (an uplink): its queues keep their capacity
  // when drained instead of freeing and regrowing it every turn.
  void keep_buffers();
  // Advances the handshake as far as the received bytes allow.
  HandshakeState handshake();
  // Ciphertext to send to the peer (handshake flights, records, alerts).
  size_t pending_ciphertext_bytes() const;
  size_t pull_ciphertext(std::span<std::byte> out);
  // Where sealed bytes go as they are made (the socket's send queue), saving
  // a copy; false from the sink keeps them queued here, in order, for
  // ciphertext(). Only on the thread that owns the socket: set it once the
  // handshake no longer runs on the pool.
  using Sink = bool (*)(void* context, std::span<const std::byte> bytes);
  void set_sink(Sink sink, void* context);
  // The same bytes in place: send from the view, then consume what was taken.
  std::span<const std::byte> ciphertext() const;
  void consume_ciphertext(size_t size_bytes);

  // Established sessions only. write() encrypts; read() returns the number of
  // plaintext bytes (0: need more ciphertext), or -1 when the session failed
  // or the peer closed.
  bool write(std::span<const std::byte> plaintext);
  int64_t read(std::span<std::byte> out);

  // Client: presents this certificate and key instead of the context's (one
  // context, many identities: the load generator's simulated agents). Such a
  // session neither offers nor keeps tickets: the context's ticket cache is
  // per server, and a ticket carries the identity that earned it.
  bool use_identity(X509* cert, EVP_PKEY* key);
  bool keeps_tickets() const { return keeps_tickets_; }

  // True when the handshake resumed a session from a ticket.
  bool resumed() const { return SSL_session_reused(ssl_.get()) == 1; }
  const std::string& expected_peer_name() const { return expected_peer_name_; }
  const Context& context() const { return *context_; }

  // The peer certificate's first SAN DNS name, else its CN; "" without one.
  std::string peer_identity() const;
  // The identity with what the certificate allows it to act as.
  PeerIdentity peer() const;

  // Why the handshake or session failed, precise enough to act on.
  const std::string& failure() const { return failure_; }
  // RFC 9266 tls-exporter channel binding (32 bytes), for GSSAPI.
  bool channel_binding(std::array<uint8_t, 32>& out) const;
  SSL* ssl() const { return ssl_.get(); }

  // Called by the certificate verifier when it rejects the peer's certificate.
  void on_verify_failure(int error, X509* cert);

 private:
  void fail_from_error_queue();

  std::shared_ptr<const Context> context_;
  bssl::UniquePtr<SSL> ssl_;
  BIO* in_ = nullptr;   // owned by ssl_: ciphertext from the peer
  BIO* out_ = nullptr;  // owned by ssl_: ciphertext for the peer
  std::string expected_peer_name_;
  std::string verify_failure_;
  std::string failure_;
  bool failed_ = false;
  bool keeps_tickets_ = true;
};

}  // namespace gatehouse::tls
