#include "gatehouse/krb/profile.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace gatehouse::krb {

std::string disable_pkinit(const std::string& runtime_dir) {
  const std::string path = runtime_dir + "/gatehouse-krb5.conf";
  {
    std::ofstream out(path, std::ios::trunc);
    out << "# written by gatehouse: PKINIT would load OpenSSL 3 beside BoringSSL\n"
           "[plugins]\n  clpreauth = {\n    disable = pkinit\n  }\n";
    if (!out) return "cannot write " + path + ": " + std::strerror(errno);
  }
  const char* current = std::getenv("KRB5_CONFIG");
  const std::string base = current != nullptr && current[0] != '\0' ? current : "/etc/krb5.conf";
  const std::string list = base + ":" + path;
  if (setenv("KRB5_CONFIG", list.c_str(), 1) != 0) return std::string("setenv: ") + std::strerror(errno);
  return "";
}

}  // namespace gatehouse::krb
