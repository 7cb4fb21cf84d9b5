// Kerberos mutual authentication over GSSAPI (MIT krb5), driven by tokens the
// protocol carries in AUTH frames. Credentials come from keytab files named in
// the config, never from the process environment. Every exchange is bound to
// its TLS session (RFC 9266 tls-exporter), so a relayed exchange fails.
#pragma once

#include <gssapi/gssapi.h>
#include <krb5/krb5.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace gatehouse::krb {

using ChannelBinding = std::array<uint8_t, 32>;  // tls::Session::channel_binding()

struct Step {
  enum State : uint8_t { continue_needed, complete, failed } state = failed;
  std::vector<uint8_t> token;  // to send to the peer (may be empty)
  std::string error;           // when failed: GSSAPI major and minor status text
};

// Acceptor credentials from a keytab, loaded once and shared by every exchange
// (replaced whole when the keytab is reloaded).
class AcceptorCredential {
 public:
  // nullptr with `why` when the keytab is unusable.
  static std::shared_ptr<const AcceptorCredential> load(const std::string& keytab_path, std::string& why);
  ~AcceptorCredential();
  gss_cred_id_t get() const { return credential_; }

 private:
  AcceptorCredential() = default;
  gss_cred_id_t credential_ = GSS_C_NO_CREDENTIAL;
};

// An agent's credentials: its TGT from the client keytab, in a private
// MEMORY: cache that also keeps the service tickets, so a reconnect costs no
// KDC round trip.
class InitiatorCredential {
 public:
  static std::shared_ptr<const InitiatorCredential> load(const std::string& client_keytab_path,
                                                         const std::string& principal, std::string& why);
  ~InitiatorCredential();
  gss_cred_id_t get() const { return credential_; }

 private:
  InitiatorCredential() = default;
  krb5_context krb5_ = nullptr;
  krb5_ccache ccache_ = nullptr;
  gss_cred_id_t credential_ = GSS_C_NO_CREDENTIAL;
};

// One exchange on the gateway or server side.
class Acceptor {
 public:
  Acceptor(std::shared_ptr<const AcceptorCredential> credential, const ChannelBinding& binding);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  Step step(std::span<const uint8_t> token);
  const std::string& client_principal() const { return client_principal_; }  // after complete

 private:
  std::shared_ptr<const AcceptorCredential> credential_;
  gss_ctx_id_t context_ = GSS_C_NO_CONTEXT;
  ChannelBinding binding_;
  std::string client_principal_;
};

// One exchange on the agent side, to `service`@`host` (e.g.
// gatehouse@gw1.example.test); mutual authentication is required.
class Initiator {
 public:
  Initiator(std::shared_ptr<const InitiatorCredential> credential, const std::string& service, const std::string& host,
            const ChannelBinding& binding);
  ~Initiator();
  Initiator(const Initiator&) = delete;
  Initiator& operator=(const Initiator&) = delete;

  Step step(std::span<const uint8_t> token);  // first call with an empty token

 private:
  std::shared_ptr<const InitiatorCredential> credential_;
  gss_ctx_id_t context_ = GSS_C_NO_CONTEXT;
  gss_name_t target_ = GSS_C_NO_NAME;
  std::string setup_error_;
  ChannelBinding binding_;
};

}  // namespace gatehouse::krb
