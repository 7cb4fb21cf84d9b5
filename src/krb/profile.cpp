#include "gatehouse/krb/profile.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace gatehouse::krb {

std::string disable_pkinit() {
  constexpr std::string_view kProfile =
      "# written by gatehouse: PKINIT would load OpenSSL 3 beside BoringSSL\n"
      "[plugins]\n  clpreauth = {\n    disable = pkinit\n  }\n";
  // A memory file, not one on disk: nothing is left behind when the process is
  // killed, and no folder has to be writable.
  const int fd = ::memfd_create("gatehouse-krb5.conf", MFD_CLOEXEC);
  if (fd < 0) return std::string("memfd_create: ") + std::strerror(errno);
  size_t written_bytes = 0;
  while (written_bytes < kProfile.size()) {
    const ssize_t n = ::write(fd, kProfile.data() + written_bytes, kProfile.size() - written_bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::string("cannot write the krb5 profile: ") + std::strerror(errno);
      ::close(fd);
      return why;
    }
    written_bytes += static_cast<size_t>(n);
  }
  // Open for the process's life: krb5 reads the file by this name whenever it makes a context.
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (::access(path.c_str(), R_OK) != 0) {
    const std::string why = "cannot read " + path + " (is /proc mounted?): " + std::strerror(errno);
    ::close(fd);
    return why;
  }
  const char* current = std::getenv("KRB5_CONFIG");
  const std::string base = current != nullptr && current[0] != '\0' ? current : "/etc/krb5.conf";
  const std::string list = base + ":" + path;
  if (setenv("KRB5_CONFIG", list.c_str(), 1) != 0) return std::string("setenv: ") + std::strerror(errno);
  return "";
}

}  // namespace gatehouse::krb
