#include "x509_text.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace gatehouse::tls {

std::string openssl_error() {
  const uint32_t code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

std::string time_text(const ASN1_TIME* time) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), time);
  const uint8_t* data = nullptr;
  size_t size = 0;
  BIO_mem_contents(bio.get(), &data, &size);
  return std::string(reinterpret_cast<const char*>(data), size);
}

time_t unix_time_of(const ASN1_TIME* time) {
  int days = 0;
  int seconds = 0;  // from now (nullptr) to `time`
  if (ASN1_TIME_diff(&days, &seconds, nullptr, time) != 1) return 0;
  return std::time(nullptr) + time_t{days} * 86'400 + seconds;
}

std::string name_text(X509_NAME* name) {
  char text[512];
  X509_NAME_oneline(name, text, sizeof text);
  return text;
}

std::vector<std::string> dns_names(X509* cert) {
  std::vector<std::string> names;
  bssl::UniquePtr<GENERAL_NAMES> sans(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  for (size_t i = 0; sans && i < sk_GENERAL_NAME_num(sans.get()); ++i) {
    const GENERAL_NAME* san = sk_GENERAL_NAME_value(sans.get(), i);
    if (san->type != GEN_DNS) continue;
    names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(san->d.dNSName)),
                       static_cast<size_t>(ASN1_STRING_length(san->d.dNSName)));
  }
  return names;
}

}  // namespace gatehouse::tls
