#include "tls/session.h"

#include "tls/pki.h"

#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "gatehouse/log/invariant.h"
#include "x509_text.h"

namespace gatehouse::tls {
namespace {

int session_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// A byte queue as a BIO. BoringSSL's memory BIO moves the rest of its buffer
// forward on every read: with 16 KiB of agent records read ~300 bytes at a
// time, or megabytes queued for an uplink, that was most of a gateway's CPU.
// This one reads from an offset and compacts only once half is consumed.
// Received bytes may also be lent (read in place from the caller's buffer,
// after what is queued): only a partial record's tail is ever copied in.
constexpr size_t kByteQueueKeepBytes = 1'024;  // capacity a drained queue may keep

struct ByteQueue {
  std::vector<uint8_t> bytes;
  size_t read_offset = 0;
  std::span<const uint8_t> lent;  // read after `bytes`, valid until keep_lent()
  bool keep_capacity = false;     // a busy link's queue: no free and regrow every turn
  Session::Sink sink = nullptr;   // sealed bytes go here first, while nothing is queued
  void* sink_context = nullptr;
  size_t queued() const { return bytes.size() - read_offset; }
  size_t pending() const { return queued() + lent.size(); }

  void consume(size_t n) {
    read_offset += n;
    if (read_offset == bytes.size()) {
      // Drained: an idle session keeps no buffer (tens of thousands of them).
      if (!keep_capacity && bytes.capacity() > kByteQueueKeepBytes) std::vector<uint8_t>().swap(bytes);
      bytes.clear();
      read_offset = 0;
    } else if (read_offset > bytes.size() / 2) {
      bytes.erase(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(read_offset));
      read_offset = 0;
    }
  }
};

int byte_queue_write(BIO* bio, const char* data, int size) {
  auto* queue = static_cast<ByteQueue*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const auto* bytes = reinterpret_cast<const uint8_t*>(data);  // same type: a memcpy, not a per-byte loop
  // Straight to the socket's send queue, unless earlier bytes wait (order) or it is full.
  if (queue->sink != nullptr && queue->queued() == 0 &&
      queue->sink(queue->sink_context, std::as_bytes(std::span(bytes, static_cast<size_t>(size))))) {
    return size;
  }
  queue->bytes.insert(queue->bytes.end(), bytes, bytes + size);
  return size;
}

int byte_queue_read(BIO* bio, char* out, int size) {
  auto* queue = static_cast<ByteQueue*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const size_t wanted = static_cast<size_t>(size);
  if (queue->pending() == 0) {
    BIO_set_retry_read(bio);  // empty means "wait for more", never EOF
    return -1;
  }
  if (const size_t n = std::min(queue->queued(), wanted); n > 0) {
    std::memcpy(out, queue->bytes.data() + queue->read_offset, n);
    queue->consume(n);
    return static_cast<int>(n);
  }
  const size_t n = std::min(queue->lent.size(), wanted);
  std::memcpy(out, queue->lent.data(), n);
  queue->lent = queue->lent.subspan(n);
  return static_cast<int>(n);
}

long byte_queue_ctrl(BIO* bio, int command, long, void*) {
  auto* queue = static_cast<ByteQueue*>(BIO_get_data(bio));
  switch (command) {
    case BIO_CTRL_PENDING: return static_cast<long>(queue->pending());
    case BIO_CTRL_FLUSH: return 1;
    default: return 0;
  }
}

int byte_queue_create(BIO* bio) {
  BIO_set_data(bio, new ByteQueue());
  BIO_set_init(bio, 1);
  return 1;
}

int byte_queue_destroy(BIO* bio) {
  delete static_cast<ByteQueue*>(BIO_get_data(bio));
  BIO_set_data(bio, nullptr);
  return 1;
}

const BIO_METHOD* byte_queue_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_TYPE_SOURCE_SINK | 0x80, "gatehouse byte queue");
    BIO_meth_set_write(m, byte_queue_write);
    BIO_meth_set_read(m, byte_queue_read);
    BIO_meth_set_ctrl(m, byte_queue_ctrl);
    BIO_meth_set_create(m, byte_queue_create);
    BIO_meth_set_destroy(m, byte_queue_destroy);
    return m;
  }();
  return method;
}

std::string serial_bytes(const ASN1_INTEGER* serial) {
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(serial)), static_cast<size_t>(ASN1_STRING_length(serial))};
}

int verify_peer(int ok, X509_STORE_CTX* store) {
  if (ok) return 1;
  SSL* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* session = static_cast<Session*>(SSL_get_ex_data(ssl, session_index()));
  const int error = X509_STORE_CTX_get_error(store);
  // Past its nextUpdate, the CRL's revocations still hold; `crl_expired_allowed` keeps handshakes going.
  if (error == X509_V_ERR_CRL_HAS_EXPIRED && session->context().options().crl_expired_allowed) return 1;
  session->on_verify_failure(error, X509_STORE_CTX_get_current_cert(store));
  return 0;
}

// Also collects the serials the CRLs revoke, to check live and resumed sessions.
bool add_crls(X509_STORE* store, const std::string& path, std::set<std::string, std::less<>>& revoked,
              time_t& next_update, std::string& why) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) {
    why = "cannot read CRL " + path;
    return false;
  }
  const std::string pem = text.str();
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  int count = 0;
  while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
    if (const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl); next != nullptr) {
      const time_t at = unix_time_of(next);
      if (at != 0 && (next_update == 0 || at < next_update)) next_update = at;
    }
    STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(crl);
    for (size_t i = 0; i < sk_X509_REVOKED_num(entries); ++i) {
      revoked.insert(serial_bytes(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(entries, i))));
    }
    X509_STORE_add_crl(store, crl);
    X509_CRL_free(crl);
    ++count;
  }
  ERR_clear_error();
  if (count == 0) {
    why = path + " holds no PEM CRL";
    return false;
  }
  X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  return true;
}

int context_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Seals new tickets with the first key; opens a ticket with the key it names,
// asking for a fresh ticket (2) when that key is no longer the first.
int ticket_key_callback(SSL* ssl, uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher, HMAC_CTX* hmac,
                        int encrypt) {
  const auto* context = static_cast<const Context*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
  const std::vector<TicketKey>& keys = context->ticket_keys();
  if (encrypt) {
    const TicketKey& key = keys.front();
    std::memcpy(key_name, key.name.data(), key.name.size());
    RAND_bytes(iv, 16);
    return EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes_key.data(), iv) == 1 &&
                   HMAC_Init_ex(hmac, key.hmac_key.data(), key.hmac_key.size(), EVP_sha256(), nullptr) == 1
               ? 1
               : -1;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    const TicketKey& key = keys[i];
    if (std::memcmp(key_name, key.name.data(), key.name.size()) != 0) continue;
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes_key.data(), iv) != 1 ||
        HMAC_Init_ex(hmac, key.hmac_key.data(), key.hmac_key.size(), EVP_sha256(), nullptr) != 1) {
      return -1;
    }
    return i == 0 ? 1 : 2;
  }
  return 0;  // unknown key (rotated out, or another tier): a full handshake
}

int keep_new_ticket(SSL* ssl, SSL_SESSION* ticket) {
  const auto* session = static_cast<const Session*>(SSL_get_ex_data(ssl, session_index()));
  if (session->expected_peer_name().empty() || !session->keeps_tickets()) return 0;
  session->context().keep_ticket(session->expected_peer_name(), bssl::UniquePtr<SSL_SESSION>(ticket));
  return 1;  // we own it now
}

// Server or client half of resumption; "" or why.
std::string set_up_resumption(Context& context, SSL_CTX* ctx, const Context::Options& options,
                              std::vector<TicketKey>& keys) {
  SSL_CTX_set_ex_data(ctx, context_index(), &context);
  if (options.side == Side::client) {
    if (!options.resume_sessions) return "";
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, keep_new_ticket);
    return "";
  }
  // Client certificates are verified, so sessions need an id context to resume.
  static constexpr uint8_t kSessionContext[] = "gatehouse";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_session_psk_dhe_timeout(ctx, options.ticket_lifetime_s);
  if (options.ticket_keys_path.empty()) return "";
  if (std::string why = load_ticket_keys(options.ticket_keys_path, keys); !why.empty()) return why;
  SSL_CTX_set_tlsext_ticket_key_cb(ctx, ticket_key_callback);
  return "";
}

}  // namespace

void Context::keep_ticket(const std::string& server_name, bssl::UniquePtr<SSL_SESSION> ticket) const {
  if (options_.resume_across_servers) return keep_ticket_as("", std::move(ticket));
  keep_ticket_as(server_name, std::move(ticket));
}

void Context::keep_ticket_as(const std::string& key, bssl::UniquePtr<SSL_SESSION> ticket) const {
  std::lock_guard lock(tickets_mutex_);
  if (tickets_.size() >= kTicketServersMax && !tickets_.contains(key)) tickets_.erase(tickets_.begin());
  std::vector<bssl::UniquePtr<SSL_SESSION>>& kept = tickets_[key];
  if (kept.size() == kTicketsPerServerMax) kept.erase(kept.begin());
  kept.push_back(std::move(ticket));
}

bssl::UniquePtr<SSL_SESSION> Context::take_ticket(const std::string& server_name) const {
  std::lock_guard lock(tickets_mutex_);
  auto found = tickets_.find(options_.resume_across_servers ? "" : server_name);
  if (found == tickets_.end()) return nullptr;
  bssl::UniquePtr<SSL_SESSION> ticket = std::move(found->second.back());
  found->second.pop_back();
  if (found->second.empty()) tickets_.erase(found);
  return ticket;
}

std::shared_ptr<const Context> Context::load(const Options& options, std::string& why) {
  std::shared_ptr<Context> context(new Context());
  context->options_ = options;
  context->context_.reset(SSL_CTX_new(TLS_method()));
  SSL_CTX* ctx = context->context_.get();
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  if (!options.cert_path.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_path.c_str()) != 1) {
      why = options.cert_path + ": not a usable PEM certificate chain (" + openssl_error() + ")";
      return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, options.key_path.c_str(), SSL_FILETYPE_PEM) != 1) {
      const bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
      why = mismatch ? options.key_path + " is not the private key of " + options.cert_path
                     : options.key_path + ": not a usable PEM private key (" + openssl_error() + ")";
      ERR_clear_error();
      return nullptr;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      ERR_clear_error();
      why = options.key_path + " is not the private key of " + options.cert_path;
      return nullptr;
    }
  }
  if (options.peer_certificate != PeerCertificate::none) {
    if (SSL_CTX_load_verify_locations(ctx, options.ca_path.c_str(), nullptr) != 1) {
      why = options.ca_path + ": not a usable PEM CA file (" + openssl_error() + ")";
      return nullptr;
    }
    if (!options.crl_path.empty() && !add_crls(SSL_CTX_get_cert_store(ctx), options.crl_path, context->revoked_serials_, context->crl_next_update_, why)) return nullptr;
  }
  int mode = SSL_VERIFY_NONE;
  if (options.peer_certificate == PeerCertificate::required) {
    mode = SSL_VERIFY_PEER | (options.side == Side::server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
  } else if (options.peer_certificate == PeerCertificate::optional) {
    mode = SSL_VERIFY_PEER;
  }
  SSL_CTX_set_verify(ctx, mode, verify_peer);
  if (std::string problem = set_up_resumption(*context, ctx, options, context->ticket_keys_); !problem.empty()) {
    why = problem;
    return nullptr;
  }
  return context;
}

std::string Context::certificate_subject() const {
  X509* cert = SSL_CTX_get0_certificate(context_.get());
  return cert != nullptr ? name_text(X509_get_subject_name(cert)) : "";
}

std::string Context::certificate_not_after() const {
  X509* cert = SSL_CTX_get0_certificate(context_.get());
  return cert != nullptr ? time_text(X509_get0_notAfter(cert)) : "";
}

time_t Context::certificate_expires_at() const {
  X509* cert = SSL_CTX_get0_certificate(context_.get());
  return cert != nullptr ? unix_time_of(X509_get0_notAfter(cert)) : 0;
}

Session::Session(std::shared_ptr<const Context> context, const std::string& expected_peer_name)
    : context_(std::move(context)), ssl_(SSL_new(context_->get())), expected_peer_name_(expected_peer_name) {
  in_ = BIO_new(byte_queue_method());
  out_ = BIO_new(byte_queue_method());
  SSL_set_bio(ssl_.get(), in_, out_);
  SSL_set_ex_data(ssl_.get(), session_index(), this);
  // What the handshake needed of the context's configuration (certificate
  // chain, verify parameters, cipher lists) is freed once it is done: tens of
  // thousands of idle sessions keep only their keys and the peer's identity.
  SSL_set_shed_handshake_config(ssl_.get(), 1);
  if (context_->options().side == Side::client) {
    SSL_set_connect_state(ssl_.get());
    if (!expected_peer_name.empty()) {
      SSL_set_tlsext_host_name(ssl_.get(), expected_peer_name.c_str());
      if (bssl::UniquePtr<SSL_SESSION> ticket = context_->take_ticket(expected_peer_name)) {
        SSL_set_session(ssl_.get(), ticket.get());
      }
      if (context_->options().peer_certificate != PeerCertificate::none) {
        X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl_.get()), expected_peer_name.data(), expected_peer_name.size());
      }
    }
  } else {
    SSL_set_accept_state(ssl_.get());
  }
}

bool Session::use_identity(X509* cert, EVP_PKEY* key) {
  keeps_tickets_ = false;
  SSL_set_session(ssl_.get(), nullptr);  // a ticket taken from the cache was another identity's
  return SSL_use_certificate(ssl_.get(), cert) == 1 && SSL_use_PrivateKey(ssl_.get(), key) == 1;
}

void Session::on_verify_failure(int error, X509* cert) {
  const Context::Options& options = context_->options();
  const std::string peer = options.side == Side::client ? "the server's certificate " : "the client's certificate ";
  const std::string subject = cert != nullptr ? name_text(X509_get_subject_name(cert)) : "?";
  switch (error) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
      verify_failure_ = peer + subject + " is issued by " + (cert ? name_text(X509_get_issuer_name(cert)) : "?") +
                        ", which is not a CA in " + options.ca_path + ": install that root CA here";
      break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      verify_failure_ = peer + subject + " expired on " + time_text(X509_get0_notAfter(cert));
      break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      verify_failure_ = peer + subject + " is not valid before " + time_text(X509_get0_notBefore(cert)) +
                        " (check the clocks)";
      break;
    case X509_V_ERR_CERT_REVOKED:
      verify_failure_ = peer + subject + " is revoked (" + options.crl_path + ")";
      break;
    case X509_V_ERR_CRL_HAS_EXPIRED:
      verify_failure_ = "the CRL " + options.crl_path + " has expired: certificates cannot be checked, so none is "
                        "taken (fail closed; renew it with gatehouse certs crl, or set [tls] crl_expired = \"allow\")";
      break;
    case X509_V_ERR_INVALID_PURPOSE:
      verify_failure_ = peer + subject + " lacks the EKU " + (options.side == Side::client ? "serverAuth" : "clientAuth");
      break;
    case X509_V_ERR_HOSTNAME_MISMATCH: {
      std::string names;
      for (const std::string& name : dns_names(cert)) names += (names.empty() ? "" : ", ") + name;
      verify_failure_ = peer + "names " + (names.empty() ? subject : names) + ", expected " + expected_peer_name_;
      break;
    }
    default:
      verify_failure_ = peer + subject + " rejected: " + X509_verify_cert_error_string(error);
  }
}

void Session::fail_from_error_queue() {
  failed_ = true;
  const uint32_t code = ERR_peek_last_error();
  const char* reason = ERR_reason_error_string(code);
  const std::string reason_text = reason != nullptr ? reason : "unknown";
  ERR_clear_error();
  if (!verify_failure_.empty()) {
    failure_ = verify_failure_;
  } else if (reason_text == "PEER_DID_NOT_RETURN_A_CERTIFICATE") {
    failure_ = "the client presented no certificate (a cert agent must present one)";
  } else if (reason_text.rfind("TLSV1_ALERT_", 0) == 0 || reason_text.rfind("SSLV3_ALERT_", 0) == 0) {
    failure_ = "the peer refused the handshake: " + reason_text;
  } else {
    failure_ = "TLS failed: " + reason_text;
  }
}

void Session::push_ciphertext(std::span<const std::byte> bytes) {
  if (!bytes.empty()) BIO_write(in_, bytes.data(), static_cast<int>(bytes.size()));
}

void Session::lend_ciphertext(std::span<const std::byte> bytes) {
  auto* queue = static_cast<ByteQueue*>(BIO_get_data(in_));
  GH_INVARIANT(queue->lent.empty());
  queue->lent = {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
}

void Session::keep_lent() {
  auto* queue = static_cast<ByteQueue*>(BIO_get_data(in_));
  queue->bytes.insert(queue->bytes.end(), queue->lent.begin(), queue->lent.end());
  queue->lent = {};
}

void Session::set_sink(Sink sink, void* context) {
  auto* queue = static_cast<ByteQueue*>(BIO_get_data(out_));
  queue->sink = sink;
  queue->sink_context = context;
}

void Session::keep_buffers() {
  static_cast<ByteQueue*>(BIO_get_data(in_))->keep_capacity = true;
  static_cast<ByteQueue*>(BIO_get_data(out_))->keep_capacity = true;
}

std::span<const std::byte> Session::ciphertext() const {
  const auto* queue = static_cast<const ByteQueue*>(BIO_get_data(out_));
  return std::as_bytes(std::span(queue->bytes).subspan(queue->read_offset));
}

void Session::consume_ciphertext(size_t size_bytes) {
  auto* queue = static_cast<ByteQueue*>(BIO_get_data(out_));
  GH_INVARIANT(size_bytes <= queue->queued());
  queue->consume(size_bytes);
}

HandshakeState Session::handshake() {
  if (failed_) return HandshakeState::failed;
  const int result = SSL_do_handshake(ssl_.get());
  if (result == 1) {
    // BoringSSL holds a TLS 1.3 server's tickets until its first write; an
    // empty write sends them now, from the thread that did the handshake.
    if (context_->options().side == Side::server && SSL_write(ssl_.get(), "", 0) < 0) {
      fail_from_error_queue();
      return HandshakeState::failed;
    }
    // A ticket skips certificate verification: its certificate is checked
    // against the CRL in force now, not the one of the session it resumes.
    if (resumed() && context_->revokes(peer().serial)) {
      failed_ = true;
      failure_ = "the peer's certificate (" + peer_identity() + ") is revoked (" + context_->options().crl_path +
                 "): its resumed session is refused";
      return HandshakeState::failed;
    }
    return HandshakeState::established;
  }
  const int error = SSL_get_error(ssl_.get(), result);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return HandshakeState::in_progress;
  fail_from_error_queue();
  return HandshakeState::failed;
}

size_t Session::pending_ciphertext_bytes() const { return BIO_ctrl_pending(out_); }

size_t Session::pull_ciphertext(std::span<std::byte> out) {
  const int n = BIO_read(out_, out.data(), static_cast<int>(out.size()));
  return n > 0 ? static_cast<size_t>(n) : 0;
}

bool Session::write(std::span<const std::byte> plaintext) {
  if (failed_) return false;
  // Memory BIOs never push back, so a write is whole or an error.
  const int n = SSL_write(ssl_.get(), plaintext.data(), static_cast<int>(plaintext.size()));
  if (n == static_cast<int>(plaintext.size())) return true;
  fail_from_error_queue();
  return false;
}

int64_t Session::read(std::span<std::byte> out) {
  if (failed_) return -1;
  const int n = SSL_read(ssl_.get(), out.data(), static_cast<int>(out.size()));
  if (n > 0) return n;
  const int error = SSL_get_error(ssl_.get(), n);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return 0;
  if (error == SSL_ERROR_ZERO_RETURN) {
    failed_ = true;
    failure_ = "the peer closed the TLS session";
    return -1;
  }
  fail_from_error_queue();
  return -1;
}

std::string Session::peer_identity() const {
  bssl::UniquePtr<X509> cert(SSL_get_peer_certificate(ssl_.get()));
  if (!cert) return "";
  const std::vector<std::string> names = dns_names(cert.get());
  if (!names.empty()) return names.front();
  char common_name[256] = "";
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, common_name, sizeof common_name);
  return common_name;
}

PeerIdentity Session::peer() const {
  bssl::UniquePtr<X509> cert(SSL_get_peer_certificate(ssl_.get()));
  if (!cert) return {};
  return {peer_identity(), has_role_eku(cert.get(), CertRole::gateway),
          serial_bytes(X509_get_serialNumber(cert.get()))};
}

bool Session::channel_binding(std::array<uint8_t, 32>& out) const {
  static constexpr char kLabel[] = "EXPORTER-Channel-Binding";  // RFC 9266
  return SSL_export_keying_material(ssl_.get(), out.data(), out.size(), kLabel, sizeof kLabel - 1, nullptr, 0, 0) == 1;
}

}  // namespace gatehouse::tls
