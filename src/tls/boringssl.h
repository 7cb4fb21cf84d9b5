// The only way gatehouse code includes OpenSSL-API headers: BoringSSL first,
// and the build fails if another OpenSSL's headers were picked up instead.
#pragma once

#include <openssl/is_boringssl.h>  // exists only in BoringSSL
#include <openssl/base.h>

#if !defined(OPENSSL_IS_BORINGSSL)
#error "gatehouse must be built against BoringSSL (android-libboringssl-dev), not OpenSSL"
#endif
