#include "store/pg_tls.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "tls/boringssl.h"
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace gatehouse::pg {
namespace {

std::string last_error() {
  const uint32_t code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return std::strerror(errno);
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

bool ip_literal(const std::string& host) {
  unsigned char address[16];
  return inet_pton(AF_INET, host.c_str(), address) == 1 || inet_pton(AF_INET6, host.c_str(), address) == 1;
}

}  // namespace

std::unique_ptr<TlsChannel> TlsChannel::start(int fd, const std::string& host, const TlsOptions& options,
                                              std::string& why) {
  std::unique_ptr<TlsChannel> channel(new TlsChannel);
  channel->context_ = SSL_CTX_new(TLS_method());
  SSL_CTX* context = channel->context_;
  if (context == nullptr || !SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION)) {
    why = "TLS: " + last_error();
    return nullptr;
  }
  if (options.verify_chain) {
    if (SSL_CTX_load_verify_locations(context, options.root_cert.c_str(), nullptr) != 1) {
      why = "sslrootcert " + options.root_cert + ": " + last_error();
      return nullptr;
    }
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
  }
  if (!options.cert.empty() && (SSL_CTX_use_certificate_chain_file(context, options.cert.c_str()) != 1 ||
                                SSL_CTX_use_PrivateKey_file(context, options.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
                                SSL_CTX_check_private_key(context) != 1)) {
    why = "sslcert " + options.cert + " / sslkey " + options.key + ": " + last_error();
    return nullptr;
  }
  channel->ssl_ = SSL_new(context);
  SSL* ssl = channel->ssl_;
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) {
    why = "TLS: " + last_error();
    return nullptr;
  }
  const bool literal = ip_literal(host);
  if (!literal) SSL_set_tlsext_host_name(ssl, host.c_str());
  if (options.verify_host) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    const int set = literal ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                            : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    if (set != 1) {
      why = "TLS: cannot check the name " + host;
      return nullptr;
    }
  }
  if (SSL_connect(ssl) != 1) {
    const long verified = SSL_get_verify_result(ssl);
    why = "TLS handshake: " + (verified != X509_V_OK ? std::string("the server's certificate: ") +
                                                           X509_verify_cert_error_string(verified)
                                                     : last_error());
    return nullptr;
  }
  return channel;
}

TlsChannel::~TlsChannel() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (context_ != nullptr) SSL_CTX_free(context_);
}

ssize_t TlsChannel::write(const char* data, size_t size, std::string& why) {
  const int n = SSL_write(ssl_, data, static_cast<int>(std::min<size_t>(size, 1u << 30)));
  if (n > 0) return n;
  why = "TLS write: " + last_error();
  return -1;
}

ssize_t TlsChannel::read(char* data, size_t size, std::string& why) {
  const int n = SSL_read(ssl_, data, static_cast<int>(std::min<size_t>(size, 1u << 30)));
  if (n > 0) return n;
  if (SSL_get_error(ssl_, n) == SSL_ERROR_ZERO_RETURN) return 0;
  why = "TLS read: " + last_error();
  return -1;
}

bool TlsChannel::pending() const { return SSL_pending(ssl_) > 0; }

}  // namespace gatehouse::pg
