// Dev PKI and certificate checks (the MOMCertImport analogue): `gatehouse certs`.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gatehouse/tls/tls_types.h"
#include "tls/boringssl.h"
#include <openssl/evp.h>
#include <openssl/x509.h>

namespace gatehouse::tls {

enum class KeyType : uint8_t { ec_p256, rsa_2048 };

const char* to_string(CertRole role);
bool parse_cert_role(const std::string& text, CertRole& role);

struct CaRequest {
  std::string dir;                        // writes dir/ca.crt and dir/ca.key
  std::string common_name = "gatehouse dev CA";
  uint32_t days = 3'650;
  KeyType key_type = KeyType::ec_p256;
  bool overwrite = false;
};

struct IssueRequest {
  std::string ca_dir;                     // holds ca.crt and ca.key
  std::string out_dir;                    // writes out_dir/NAME.crt and out_dir/NAME.key
  CertRole role = CertRole::agent;
  std::string name;                       // FQDN: CN and the only SAN DNS name
  uint32_t days = 397;
  std::optional<time_t> not_before{};     // default: now
  KeyType key_type = KeyType::ec_p256;
  bool overwrite = false;
};

struct RevokeRequest {
  std::string ca_dir;                     // holds ca.crt and ca.key; ca.crl is (re)written there
  std::string cert_path;                  // the certificate to revoke
  uint32_t days = 30;                     // nextUpdate of the new CRL
};

struct CrlRequest {
  std::string ca_dir;                     // holds ca.crt and ca.key; ca.crl is (re)written there
  uint32_t days = 30;                     // nextUpdate of the new CRL
  std::optional<time_t> this_update{};    // default: now
};

// On success returns "" and fills `summary`; otherwise the reason.
std::string init_ca(const CaRequest& request, std::string& summary);
std::string issue(const IssueRequest& request, std::string& summary);
// Adds the certificate to ca_dir/ca.crl (keeping earlier entries) and re-signs it.
std::string revoke(const RevokeRequest& request, std::string& summary);
// Signs ca_dir/ca.crl again with the same entries and a new nextUpdate (or
// creates an empty one): a CRL kept fresh before it expires.
std::string renew_crl(const CrlRequest& request, std::string& summary);

struct CheckRequest {
  std::string cert_path;
  std::string key_path;
  std::string ca_path;
  std::string crl_path;                   // optional
  std::string name;                       // optional: the identity the peer expects
  std::optional<CertRole> role;           // optional: checks the EKUs it needs
  bool crl_expired_allowed = false;       // a CRL past its nextUpdate is not a problem
};

struct CheckReport {
  std::vector<std::string> problems;      // one line each; empty: usable
  std::string summary;                    // subject, names, EKU, expiry
};

CheckReport check(const CheckRequest& request);

// The certificate carries an extendedKeyUsage extension with every EKU the
// role needs (a certificate without the extension has none).
bool has_role_eku(X509* cert, CertRole role);

struct Minted {
  bssl::UniquePtr<X509> cert;
  bssl::UniquePtr<EVP_PKEY> key;
};

// A dev CA (`init-ca` folder) loaded once to mint certificates in memory:
// the load generator gives every simulated agent its own identity.
class CertificateAuthority {
 public:
  static std::unique_ptr<CertificateAuthority> load(const std::string& dir, std::string& why);
  // Uses request.role, name, days, not_before, key_type; "" or why.
  std::string mint(const IssueRequest& request, Minted& out) const;

 private:
  CertificateAuthority() = default;
  bssl::UniquePtr<X509> cert_;
  bssl::UniquePtr<EVP_PKEY> key_;
};

}  // namespace gatehouse::tls
