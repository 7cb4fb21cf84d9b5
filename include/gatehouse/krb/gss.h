// Kerberos mutual authentication over GSSAPI (MIT krb5), driven by tokens the
// protocol carries in AUTH frames. Credentials come from keytab files named in
// the config, never from the process environment. Every exchange is bound to
// its TLS session (RFC 9266 tls-exporter), so a relayed exchange fails.
#pragma once

#include <gssapi/gssapi.h>
#include <krb5/krb5.h>

#include <array>
#include <cstdint>
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

// The gateway or server side: accepts service/<host>@REALM from `keytab`.
class Acceptor {
 public:
  Acceptor(const std::string& keytab_path, const ChannelBinding& binding);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  Step step(std::span<const uint8_t> token);
  const std::string& client_principal() const { return client_principal_; }  // after complete

 private:
  gss_cred_id_t credential_ = GSS_C_NO_CREDENTIAL;
  gss_ctx_id_t context_ = GSS_C_NO_CONTEXT;
  std::string keytab_path_;
  std::string setup_error_;
  ChannelBinding binding_;
  std::string client_principal_;
};

// The agent side: authenticates as `principal` from `client_keytab` to
// `service`@`host` (e.g. gatehouse@gw1.example.test) and requires mutual auth.
class Initiator {
 public:
  Initiator(const std::string& client_keytab_path, const std::string& principal, const std::string& service,
            const std::string& host, const ChannelBinding& binding);
  ~Initiator();
  Initiator(const Initiator&) = delete;
  Initiator& operator=(const Initiator&) = delete;

  Step step(std::span<const uint8_t> token);  // first call with an empty token

 private:
  bool get_initial_ticket(const std::string& keytab_path, const std::string& principal);

  krb5_context krb5_ = nullptr;
  krb5_ccache ccache_ = nullptr;  // private MEMORY cache holding this agent's TGT
  gss_cred_id_t credential_ = GSS_C_NO_CREDENTIAL;
  gss_ctx_id_t context_ = GSS_C_NO_CONTEXT;
  gss_name_t target_ = GSS_C_NO_NAME;
  std::string setup_error_;
  ChannelBinding binding_;
};

}  // namespace gatehouse::krb
