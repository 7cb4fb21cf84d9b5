#include "gatehouse/tls/library_guard.h"

#include <fstream>

#include "tls/boringssl.h"
#include <openssl/crypto.h>

namespace gatehouse::tls {

std::string forbidden_library_mapped() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const size_t slash = line.rfind('/');
    if (slash == std::string::npos) continue;
    const std::string_view file = std::string_view(line).substr(slash + 1);
    if (file == "libcrypto.so.3" || file == "libssl.so.3") return line.substr(line.find('/'));
  }
  return "";
}

std::string boringssl_version_text() {
  return std::string(OpenSSL_version(OPENSSL_VERSION)) + ", API " + std::to_string(BORINGSSL_API_VERSION);
}

}  // namespace gatehouse::tls
