// TLS: the types other modules name (types only; the BoringSSL-backed
// classes are private to src/tls).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace gatehouse::tls {

enum class Side : uint8_t { server, client };

// Which EKUs a role needs: server and gateway both accept (serverAuth) and
// dial (clientAuth: parent links, server-initiated connections, chains);
// agents only dial.
enum class CertRole : uint8_t { server, gateway, agent };

// What a side asks of its peer's certificate. A server that takes both cert
// and Kerberos agents on one port uses `optional` and decides after HELLO; a
// Kerberos client uses `none` (GSSAPI with channel binding proves the server).
enum class PeerCertificate : uint8_t { required, optional, none };

// What a Context is loaded from.
struct ContextOptions {
  Side side = Side::server;
  std::string cert_path = {};   // optional for a Kerberos client
  std::string key_path = {};
  std::string ca_path = {};     // optional for a Kerberos client (GSSAPI proves the server)
  std::string crl_path = {};    // optional
  PeerCertificate peer_certificate = PeerCertificate::required;
  // Server: the shared ticket key file; empty: keys of this context only
  // (tickets then stop working at the next reload).
  std::string ticket_keys_path = {};
  // Server: how long a ticket resumes a session. It also bounds how long a
  // revoked client certificate can still resume.
  uint32_t ticket_lifetime_s = 7'200;
  // Client: keep the server's tickets and offer one on the next connection.
  bool resume_sessions = true;
  // Client: one ticket for all servers instead of one per server name, for
  // a failover list of gateways that share ticket keys (a tier).
  bool resume_across_servers = false;
  // What our own certificate must be, checked at every (re)load (`gatehouse
  // certs check`): valid now, for this name and role, its key, not revoked.
  std::string own_name = {};
  std::optional<CertRole> own_role = {};
  // The CRL's nextUpdate has passed: false (fail closed, the default) refuses
  // handshakes it would check and refuses to load it; true keeps using its
  // revocations and warns (event 30052).
  bool crl_expired_allowed = false;
};

// Who the peer's certificate says it is ("" without one), and whether it
// carries a gateway's EKUs (serverAuth + clientAuth): only such a certificate
// may act as a gateway.
struct PeerIdentity {
  std::string name;
  bool gateway_eku = false;
  std::string serial;  // the certificate's serial number (bytes): a CRL reload re-checks it
};

enum class HandshakeState : uint8_t { in_progress, established, failed };

class Context;
class Session;

}  // namespace gatehouse::tls
