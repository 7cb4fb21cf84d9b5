#pragma once

#include <string>

namespace gatehouse::tls {

// OpenSSL 3 shares ~2,000 symbol names with BoringSSL: if libcrypto.so.3 or
// libssl.so.3 is mapped into this process (a krb5 PKINIT plugin, an
// LD_PRELOAD), calls may land in the wrong library. Returns the offending
// path from /proc/self/maps, or "" when the process is clean.
std::string forbidden_library_mapped();

// The linked BoringSSL's version line and API version, for `gatehouse version`.
std::string boringssl_version_text();

}  // namespace gatehouse::tls
