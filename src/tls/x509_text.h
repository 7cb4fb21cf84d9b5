// Human-readable certificate facts for messages (internal to src/tls).
#pragma once

#include <ctime>
#include <string>
#include <vector>

#include "tls/boringssl.h"
#include <openssl/x509.h>

namespace gatehouse::tls {

std::string openssl_error();                       // pops the error queue's first entry
std::string time_text(const ASN1_TIME* time);      // "Jan 31 00:00:00 2020 GMT"
time_t unix_time_of(const ASN1_TIME* time);         // seconds since 1970 (0: unreadable)
std::string name_text(X509_NAME* name);            // "/CN=gw1.example.test"
std::vector<std::string> dns_names(X509* cert);    // SAN DNS entries

}  // namespace gatehouse::tls
