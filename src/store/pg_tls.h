// TLS to PostgreSQL for the group's client (pg.cpp): after the server said
// yes to SSLRequest, a blocking BoringSSL session over the connection's
// socket. What the dsn's sslmode asks is checked here: the chain against
// sslrootcert (verify-ca, verify-full, or require with a root given) and the
// host name (verify-full); sslcert/sslkey give a client certificate.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>

struct ssl_st;
struct ssl_ctx_st;

namespace gatehouse::pg {

struct TlsOptions {
  bool verify_chain = false;  // against root_cert
  bool verify_host = false;   // the certificate names `host` (a DNS name or an IP address)
  std::string root_cert;
  std::string cert;
  std::string key;
};

class TlsChannel {
 public:
  // The handshake on connected socket `fd` (blocking; the socket's timeouts
  // bound it). nullptr with `why` (e.g. the verification failure).
  static std::unique_ptr<TlsChannel> start(int fd, const std::string& host, const TlsOptions& options, std::string& why);
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  // Like send()/recv(): bytes moved, 0 at the peer's close, -1 with `why`.
  ssize_t write(const char* data, size_t size, std::string& why);
  ssize_t read(char* data, size_t size, std::string& why);
  // Decrypted bytes waiting (a poll() on the socket would not see them).
  bool pending() const;

 private:
  TlsChannel() = default;
  ssl_ctx_st* context_ = nullptr;
  ssl_st* ssl_ = nullptr;
};

}  // namespace gatehouse::pg
