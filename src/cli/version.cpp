#include <sqlite3.h>
#include <toml++/toml.h>

#include <cstdio>

#include "gatehouse/cli/args.h"
#include "build_info.h"
#include "commands.h"
#include "gatehouse/tls/library_guard.h"
#ifdef GATEHOUSE_MIMALLOC
#include <mimalloc.h>
#endif

namespace gatehouse::cli {

int run_version(int argc, char** argv, int first) {
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, {}, args, why) || !args.positionals.empty()) {
    return usage_error("gatehouse version", why.empty() ? "takes no arguments" : why, "gatehouse version");
  }
  std::printf("gatehouse %s\n", GATEHOUSE_VERSION);
  std::printf("tls: %s\n", tls::boringssl_version_text().c_str());
  std::printf("io_uring: liburing %s (built against)\n", GATEHOUSE_LIBURING_VERSION);
  std::printf("kerberos: MIT krb5 GSSAPI %s (built against)\n", GATEHOUSE_KRB5_VERSION);
  std::printf("config: toml++ %d.%d.%d\n", TOML_LIB_MAJOR, TOML_LIB_MINOR, TOML_LIB_PATCH);
  std::printf("registry: sqlite %s\n", sqlite3_libversion());
#ifdef GATEHOUSE_MIMALLOC
  const int mi = mi_version();
  std::printf("allocator: mimalloc %d.%d.%d\n", mi / 100, (mi / 10) % 10, mi % 10);
#else
  std::printf("allocator: libc (sanitizer build)\n");
#endif
  return kExitOk;
}

}  // namespace gatehouse::cli
