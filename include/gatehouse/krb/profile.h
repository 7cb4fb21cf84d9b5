#pragma once

#include <string>

namespace gatehouse::krb {

// Keeps the krb5 PKINIT client plugin out of this process: it links OpenSSL 3,
// which must never share a process with BoringSSL (event 30004). Writes a
// profile that disables `clpreauth pkinit` into a memory file (memfd, read as
// /proc/self/fd/N, so a killed process leaves no file behind) and appends it
// to KRB5_CONFIG (MIT krb5 reads every file of that colon-separated list, so
// the system's /etc/krb5.conf still applies). Call once at start-up, before
// any krb5 or GSSAPI call and before other threads exist. Returns "" or why.
std::string disable_pkinit();

}  // namespace gatehouse::krb
