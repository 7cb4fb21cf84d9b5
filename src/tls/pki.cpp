#include "tls/pki.h"

#include "x509_text.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tls/boringssl.h"
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace gatehouse::tls {
namespace {

bool read_file(const std::string& path, std::string& contents, std::string& why) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    why = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  contents = buffer.str();
  return true;
}

// Writes PEM text; keys get mode 0600. Refuses to replace a file unless asked.
std::string write_file(const std::string& path, const std::string& contents, mode_t mode, bool overwrite) {
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL);
  const int fd = ::open(path.c_str(), flags, mode);
  if (fd < 0) {
    return errno == EEXIST ? path + " exists; pass --force to replace it"
                           : "cannot write " + path + ": " + std::strerror(errno);
  }
  const bool ok = ::write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size());
  ::close(fd);
  return ok ? "" : "cannot write " + path + ": " + std::strerror(errno);
}

template <class Write>
std::string pem(Write&& write) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!write(bio.get())) return "";
  const uint8_t* data = nullptr;
  size_t size = 0;
  BIO_mem_contents(bio.get(), &data, &size);
  return std::string(reinterpret_cast<const char*>(data), size);
}

// The key first (mode 0600), then its certificate.
std::string write_pair(const std::string& key_path, EVP_PKEY* key, const std::string& cert_path, X509* cert,
                       bool overwrite) {
  std::string error = write_file(key_path, pem([&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  }), 0600, overwrite);
  if (!error.empty()) return error;
  return write_file(cert_path, pem([&](BIO* bio) { return PEM_write_bio_X509(bio, cert); }), 0644, overwrite);
}

bssl::UniquePtr<EVP_PKEY> generate_key(KeyType type) {
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  if (type == KeyType::ec_p256) {
    bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
    if (!ec || !EC_KEY_generate_key(ec.get()) || !EVP_PKEY_assign_EC_KEY(key.get(), ec.release())) return nullptr;
  } else {
    bssl::UniquePtr<RSA> rsa(RSA_new());
    bssl::UniquePtr<BIGNUM> exponent(BN_new());
    if (!BN_set_word(exponent.get(), RSA_F4) || !RSA_generate_key_ex(rsa.get(), 2048, exponent.get(), nullptr) ||
        !EVP_PKEY_assign_RSA(key.get(), rsa.release())) {
      return nullptr;
    }
  }
  return key;
}

// (X509V3_EXT_conf_nid is not exported by Debian's Android BoringSSL build.)
bool add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx(&context, issuer, cert, nullptr, nullptr, 0);
  bssl::UniquePtr<X509_EXTENSION> extension(X509V3_EXT_nconf_nid(nullptr, &context, nid, value));
  return extension && X509_add_ext(cert, extension.get(), -1);
}

// A certificate for `key`, valid from `not_before` for `days`, subject CN=`common_name`.
bssl::UniquePtr<X509> new_certificate(EVP_PKEY* key, const std::string& common_name, time_t not_before, uint32_t days) {
  bssl::UniquePtr<X509> cert(X509_new());
  bssl::UniquePtr<BIGNUM> serial(BN_new());
  if (!X509_set_version(cert.get(), X509_VERSION_3) || !BN_rand(serial.get(), 127, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
      !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) ||
      !ASN1_TIME_adj(X509_getm_notBefore(cert.get()), not_before, 0, 0) ||
      !ASN1_TIME_adj(X509_getm_notAfter(cert.get()), not_before, static_cast<int>(days), 0) ||
      !X509_set_pubkey(cert.get(), key) ||
      !X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const uint8_t*>(common_name.c_str()), -1, -1, 0)) {
    return nullptr;
  }
  return cert;
}

const char* key_type_text(KeyType type) { return type == KeyType::ec_p256 ? "ECDSA P-256" : "RSA-2048"; }

std::string eku_text(uint32_t eku) {
  std::string text;
  if (eku & XKU_SSL_SERVER) text += "serverAuth";
  if (eku & XKU_SSL_CLIENT) text += text.empty() ? "clientAuth" : "+clientAuth";
  return text.empty() ? "neither serverAuth nor clientAuth" : text;
}

// Every PEM certificate in `text`.
std::vector<bssl::UniquePtr<X509>> read_certificates(const std::string& text) {
  std::vector<bssl::UniquePtr<X509>> certs;
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(cert);
  ERR_clear_error();  // the read past the last one
  return certs;
}

bssl::UniquePtr<EVP_PKEY> read_key(const std::string& text) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  return bssl::UniquePtr<EVP_PKEY>(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

uint32_t needed_eku(CertRole role) {
  return role == CertRole::agent ? XKU_SSL_CLIENT : XKU_SSL_SERVER | XKU_SSL_CLIENT;
}

uint32_t eku_of(X509* cert, bool& has_eku) {
  has_eku = X509_get_ext_by_NID(cert, NID_ext_key_usage, -1) >= 0;
  return has_eku ? X509_get_extended_key_usage(cert) & (XKU_SSL_SERVER | XKU_SSL_CLIENT) : 0;
}

// Expiry is reported by check() itself, with dates; the chain walk must not
// stop there and hide a broken chain behind it.
int ignore_validity_period(int ok, X509_STORE_CTX* context) {
  const int error = X509_STORE_CTX_get_error(context);
  if (!ok && (error == X509_V_ERR_CERT_HAS_EXPIRED || error == X509_V_ERR_CERT_NOT_YET_VALID ||
              error == X509_V_ERR_CRL_HAS_EXPIRED)) {
    return 1;
  }
  return ok;
}

void check_validity(X509* cert, const std::string& what, std::vector<std::string>& problems) {
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
    problems.push_back(what + " expired: notAfter " + time_text(X509_get0_notAfter(cert)) +
                       " (issue a new one)");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
    problems.push_back(what + " not yet valid: notBefore " + time_text(X509_get0_notBefore(cert)) +
                       " (check this host's clock)");
  }
}

void check_chain(X509* cert, const std::vector<bssl::UniquePtr<X509>>& cas, const CheckRequest& request,
                 std::vector<std::string>& problems) {
  bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
  for (const auto& ca : cas) X509_STORE_add_cert(store.get(), ca.get());
  if (!request.crl_path.empty()) {
    std::string text;
    std::string why;
    if (!read_file(request.crl_path, text, why)) {
      problems.push_back(why);
      return;
    }
    bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    bssl::UniquePtr<X509_CRL> crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    if (!crl) {
      problems.push_back(request.crl_path + " is not a PEM CRL: " + openssl_error());
      return;
    }
    X509_STORE_add_crl(store.get(), crl.get());
    X509_STORE_set_flags(store.get(), X509_V_FLAG_CRL_CHECK);
    const ASN1_TIME* next_update = X509_CRL_get0_nextUpdate(crl.get());
    if (!request.crl_expired_allowed && next_update != nullptr && X509_cmp_current_time(next_update) < 0) {
      problems.push_back("CRL expired: " + request.crl_path + " has nextUpdate " + time_text(next_update) +
                         " (renew it: gatehouse certs crl --ca-dir DIR)");
    }
  }
  X509_STORE_set_verify_cb(store.get(), ignore_validity_period);
  bssl::UniquePtr<X509_STORE_CTX> context(X509_STORE_CTX_new());
  X509_STORE_CTX_init(context.get(), store.get(), cert, nullptr);
  if (X509_verify_cert(context.get()) == 1) return;
  const int error = X509_STORE_CTX_get_error(context.get());
  const std::string reason = X509_verify_cert_error_string(error);
  if (error == X509_V_ERR_CERT_REVOKED) {
    problems.push_back("revoked: " + request.crl_path + " lists this certificate");
  } else if (error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY || error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
             error == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN || error == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT) {
    problems.push_back("chain broken: issuer " + name_text(X509_get_issuer_name(cert)) + " is not a CA in " +
                       request.ca_path + " (" + reason + "); install the root CA that issued it");
  } else {
    problems.push_back("chain broken: " + reason);
  }
}

// The CA certificate and key of a `gatehouse certs init-ca` folder.
std::string load_ca(const std::string& dir, bssl::UniquePtr<X509>& cert, bssl::UniquePtr<EVP_PKEY>& key) {
  std::string cert_text;
  std::string key_text;
  std::string why;
  if (!read_file(dir + "/ca.crt", cert_text, why) || !read_file(dir + "/ca.key", key_text, why)) {
    return why + " (create a CA with: gatehouse certs init-ca --dir " + dir + ")";
  }
  auto certs = read_certificates(cert_text);
  key = read_key(key_text);
  if (certs.empty() || !key) return dir + "/ca.crt or ca.key is not PEM: " + openssl_error();
  cert = std::move(certs.front());
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return dir + "/ca.key is not the key of " + dir + "/ca.crt";
  }
  return "";
}

}  // namespace

bool has_role_eku(X509* cert, CertRole role) {
  bool has_eku = false;
  return (eku_of(cert, has_eku) & needed_eku(role)) == needed_eku(role);
}

const char* to_string(CertRole role) {
  switch (role) {
    case CertRole::server: return "server";
    case CertRole::gateway: return "gateway";
    case CertRole::agent: return "agent";
  }
  return "agent";
}

bool parse_cert_role(const std::string& text, CertRole& role) {
  for (CertRole candidate : {CertRole::server, CertRole::gateway, CertRole::agent}) {
    if (text == to_string(candidate)) {
      role = candidate;
      return true;
    }
  }
  return false;
}

std::string init_ca(const CaRequest& request, std::string& summary) {
  std::error_code ignored;  // a missing folder is made; a failure shows when writing
  std::filesystem::create_directories(request.dir, ignored);
  bssl::UniquePtr<EVP_PKEY> key = generate_key(request.key_type);
  if (!key) return "key generation failed: " + openssl_error();
  bssl::UniquePtr<X509> cert = new_certificate(key.get(), request.common_name, time(nullptr), request.days);
  if (!cert || !X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) ||
      !add_extension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE") ||
      !add_extension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !add_extension(cert.get(), cert.get(), NID_subject_key_identifier, "hash") ||
      !X509_sign(cert.get(), key.get(), EVP_sha256())) {
    return "cannot build the CA certificate: " + openssl_error();
  }
  const std::string cert_path = request.dir + "/ca.crt";
  const std::string key_path = request.dir + "/ca.key";
  if (std::string error = write_pair(key_path, key.get(), cert_path, cert.get(), request.overwrite); !error.empty()) {
    return error;
  }
  summary = "wrote " + cert_path + " and " + key_path + " (CA \"" + request.common_name + "\", " +
            key_type_text(request.key_type) + ", valid until " + time_text(X509_get0_notAfter(cert.get())) + ")";
  return "";
}

namespace {

// A leaf certificate for `key`, signed by the CA: CN and the only SAN DNS name
// = name, the role's EKUs. "" or why.
std::string sign_leaf(X509* ca, EVP_PKEY* ca_key, EVP_PKEY* key, const IssueRequest& request, bssl::UniquePtr<X509>& out) {
  const time_t not_before = request.not_before.value_or(time(nullptr));
  bssl::UniquePtr<X509> cert = new_certificate(key, request.name, not_before, request.days);
  const std::string san = "DNS:" + request.name;
  const char* eku = request.role == CertRole::agent ? "clientAuth" : "serverAuth,clientAuth";
  const char* usage = request.key_type == KeyType::ec_p256 ? "critical,digitalSignature"
                                                           : "critical,digitalSignature,keyEncipherment";
  if (!cert || !X509_set_issuer_name(cert.get(), X509_get_subject_name(ca)) ||
      !add_extension(cert.get(), ca, NID_basic_constraints, "critical,CA:FALSE") ||
      !add_extension(cert.get(), ca, NID_key_usage, usage) ||
      !add_extension(cert.get(), ca, NID_ext_key_usage, eku) ||
      !add_extension(cert.get(), ca, NID_subject_alt_name, san.c_str()) ||
      !add_extension(cert.get(), ca, NID_subject_key_identifier, "hash") ||
      !add_extension(cert.get(), ca, NID_authority_key_identifier, "keyid:always") ||
      !X509_sign(cert.get(), ca_key, EVP_sha256())) {
    return "cannot build the certificate: " + openssl_error();
  }
  out = std::move(cert);
  return "";
}

}  // namespace

std::string issue(const IssueRequest& request, std::string& summary) {
  bssl::UniquePtr<X509> ca_cert;
  bssl::UniquePtr<EVP_PKEY> ca_key;
  if (std::string error = load_ca(request.ca_dir, ca_cert, ca_key); !error.empty()) return error;
  bssl::UniquePtr<EVP_PKEY> key = generate_key(request.key_type);
  if (!key) return "key generation failed: " + openssl_error();
  bssl::UniquePtr<X509> cert;
  if (std::string error = sign_leaf(ca_cert.get(), ca_key.get(), key.get(), request, cert); !error.empty()) return error;
  std::error_code ignored;
  std::filesystem::create_directories(request.out_dir, ignored);
  const std::string cert_path = request.out_dir + "/" + request.name + ".crt";
  const std::string key_path = request.out_dir + "/" + request.name + ".key";
  if (std::string error = write_pair(key_path, key.get(), cert_path, cert.get(), request.overwrite); !error.empty()) {
    return error;
  }
  summary = "wrote " + cert_path + " and " + key_path + " for role " + to_string(request.role) + " (DNS:" +
            request.name + ", EKU " + (request.role == CertRole::agent ? "clientAuth" : "serverAuth,clientAuth") + ", " +
            key_type_text(request.key_type) +
            ", valid " + time_text(X509_get0_notBefore(cert.get())) + " to " + time_text(X509_get0_notAfter(cert.get())) + ")";
  return "";
}

std::unique_ptr<CertificateAuthority> CertificateAuthority::load(const std::string& dir, std::string& why) {
  std::unique_ptr<CertificateAuthority> ca(new CertificateAuthority());
  why = load_ca(dir, ca->cert_, ca->key_);
  return why.empty() ? std::move(ca) : nullptr;
}

std::string CertificateAuthority::mint(const IssueRequest& request, Minted& out) const {
  out.key = generate_key(request.key_type);
  if (!out.key) return "key generation failed: " + openssl_error();
  return sign_leaf(cert_.get(), key_.get(), out.key.get(), request, out.cert);
}

namespace {

// The CA's CRL written again: its earlier entries, plus `revoked` (unless
// nullptr), lastUpdate `this_update` and nextUpdate `days` later, signed by
// the CA. "" or why; `crl` holds what was written.
std::string write_crl(const std::string& ca_dir, X509* ca, EVP_PKEY* ca_key, X509* revoked, time_t this_update,
                      uint32_t days, bssl::UniquePtr<X509_CRL>& crl, bssl::UniquePtr<ASN1_TIME>& next) {
  crl.reset(X509_CRL_new());
  const std::string crl_path = ca_dir + "/ca.crl";
  std::string old_text;
  std::string why;
  if (read_file(crl_path, old_text, why)) {
    bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(old_text.data(), static_cast<int>(old_text.size())));
    bssl::UniquePtr<X509_CRL> old(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    if (!old) return crl_path + " is not a PEM CRL: " + openssl_error();
    X509_REVOKED* existing = nullptr;
    if (revoked != nullptr && X509_CRL_get0_by_serial(old.get(), &existing, X509_get_serialNumber(revoked)) == 1) {
      return name_text(X509_get_subject_name(revoked)) + " is already revoked in " + crl_path;
    }
    STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(old.get());
    for (size_t i = 0; i < sk_X509_REVOKED_num(entries); ++i) {
      X509_CRL_add0_revoked(crl.get(), X509_REVOKED_dup(sk_X509_REVOKED_value(entries, i)));
    }
  }
  bssl::UniquePtr<ASN1_TIME> now(ASN1_TIME_set(nullptr, this_update));
  next.reset(ASN1_TIME_adj(nullptr, this_update, static_cast<int>(days), 0));
  if (revoked != nullptr) {
    bssl::UniquePtr<X509_REVOKED> entry(X509_REVOKED_new());
    if (!X509_REVOKED_set_serialNumber(entry.get(), X509_get_serialNumber(revoked)) ||
        !X509_REVOKED_set_revocationDate(entry.get(), now.get()) || !X509_CRL_add0_revoked(crl.get(), entry.release())) {
      return "cannot build the CRL: " + openssl_error();
    }
  }
  if (!X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) ||
      !X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca)) ||
      !X509_CRL_set1_lastUpdate(crl.get(), now.get()) || !X509_CRL_set1_nextUpdate(crl.get(), next.get()) ||
      !X509_CRL_sort(crl.get()) || !X509_CRL_sign(crl.get(), ca_key, EVP_sha256())) {
    return "cannot build the CRL: " + openssl_error();
  }
  return write_file(crl_path, pem([&](BIO* bio) { return PEM_write_bio_X509_CRL(bio, crl.get()); }), 0644, true);
}

std::string crl_summary(const std::string& ca_dir, X509_CRL* crl, const ASN1_TIME* next) {
  return ca_dir + "/ca.crl (" + std::to_string(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl))) +
         " revoked, next update " + time_text(next) + ")";
}

}  // namespace

std::string revoke(const RevokeRequest& request, std::string& summary) {
  bssl::UniquePtr<X509> ca;
  bssl::UniquePtr<EVP_PKEY> ca_key;
  if (std::string error = load_ca(request.ca_dir, ca, ca_key); !error.empty()) return error;
  std::string text;
  std::string why;
  if (!read_file(request.cert_path, text, why)) return why;
  auto certs = read_certificates(text);
  if (certs.empty()) return request.cert_path + " holds no PEM certificate";
  X509* cert = certs.front().get();
  if (X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(ca.get())) != 0) {
    return request.cert_path + " was issued by " + name_text(X509_get_issuer_name(cert)) + ", not by this CA";
  }
  bssl::UniquePtr<X509_CRL> crl;
  bssl::UniquePtr<ASN1_TIME> next;
  if (std::string error = write_crl(request.ca_dir, ca.get(), ca_key.get(), cert, time(nullptr), request.days, crl, next);
      !error.empty()) {
    return error;
  }
  summary = "revoked " + name_text(X509_get_subject_name(cert)) + " in " + crl_summary(request.ca_dir, crl.get(), next.get());
  return "";
}

std::string renew_crl(const CrlRequest& request, std::string& summary) {
  bssl::UniquePtr<X509> ca;
  bssl::UniquePtr<EVP_PKEY> ca_key;
  if (std::string error = load_ca(request.ca_dir, ca, ca_key); !error.empty()) return error;
  bssl::UniquePtr<X509_CRL> crl;
  bssl::UniquePtr<ASN1_TIME> next;
  if (std::string error = write_crl(request.ca_dir, ca.get(), ca_key.get(), nullptr,
                                    request.this_update.value_or(time(nullptr)), request.days, crl, next);
      !error.empty()) {
    return error;
  }
  summary = "renewed " + crl_summary(request.ca_dir, crl.get(), next.get());
  return "";
}

CheckReport check(const CheckRequest& request) {
  CheckReport report;
  std::vector<std::string>& problems = report.problems;
  std::string cert_text;
  std::string key_text;
  std::string ca_text;
  std::string why;
  for (const auto& [path, text] : {std::pair{&request.cert_path, &cert_text}, std::pair{&request.key_path, &key_text},
                                   std::pair{&request.ca_path, &ca_text}}) {
    if (!read_file(*path, *text, why)) problems.push_back(why);
  }
  if (!problems.empty()) return report;
  auto certs = read_certificates(cert_text);
  if (certs.empty()) {
    problems.push_back(request.cert_path + " holds no PEM certificate");
    return report;
  }
  X509* cert = certs.front().get();
  bssl::UniquePtr<EVP_PKEY> key = read_key(key_text);
  auto cas = read_certificates(ca_text);

  check_validity(cert, "certificate", problems);
  if (!key) {
    problems.push_back(request.key_path + " holds no PEM private key (" + openssl_error() + ")");
  } else if (X509_check_private_key(cert, key.get()) != 1) {
    ERR_clear_error();
    problems.push_back("key mismatch: " + request.key_path + " is not the private key of " + request.cert_path);
  }
  bool has_eku = false;
  const uint32_t eku = eku_of(cert, has_eku);
  if (request.role && (eku & needed_eku(*request.role)) != needed_eku(*request.role)) {
    problems.push_back(std::string("wrong EKU: role ") + to_string(*request.role) + " needs " +
                       eku_text(needed_eku(*request.role)) + "; this certificate has " +
                       (has_eku ? eku_text(eku) : "no extendedKeyUsage extension"));
  } else if (!request.role && eku == 0) {
    problems.push_back("wrong EKU: neither serverAuth nor clientAuth; gatehouse peers need at least one");
  }
  const std::vector<std::string> names = dns_names(cert);
  if (!request.name.empty() &&
      X509_check_host(cert, request.name.data(), request.name.size(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, nullptr) != 1) {
    std::string listed;
    for (const std::string& n : names) listed += (listed.empty() ? "" : ", ") + n;
    problems.push_back("name mismatch: expected " + request.name + ", the certificate names " +
                       (listed.empty() ? name_text(X509_get_subject_name(cert)) : listed));
  }
  if (cas.empty()) {
    problems.push_back(request.ca_path + " holds no PEM certificate");
  } else {
    for (const auto& ca : cas) {
      if (X509_check_ca(ca.get()) == 0) problems.push_back(request.ca_path + ": " + name_text(X509_get_subject_name(ca.get())) + " is not a CA certificate");
      check_validity(ca.get(), "CA " + name_text(X509_get_subject_name(ca.get())), problems);
    }
    check_chain(cert, cas, request, problems);
  }
  std::string listed;
  for (const std::string& n : names) listed += (listed.empty() ? "" : ",") + ("DNS:" + n);
  report.summary = name_text(X509_get_subject_name(cert)) + ", " + (listed.empty() ? "no SAN" : listed) + ", EKU " +
                   (has_eku ? eku_text(eku) : "none") + ", valid until " + time_text(X509_get0_notAfter(cert)) +
                   ", issued by " + name_text(X509_get_issuer_name(cert));
  return report;
}

}  // namespace gatehouse::tls
