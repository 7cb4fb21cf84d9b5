#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "gatehouse/cli/args.h"
#include "commands.h"
#include "role_start.h"
#include "gatehouse/config/config.h"
#include "krb/gss.h"
#include "tls/pki.h"

namespace gatehouse::cli {
namespace {

// What the role would refuse at start beyond the file's syntax: its own
// certificate and key (a pair, not expired, its name, its role's EKUs, a
// chain to the CA, the CRL), and a data folder it cannot write.
std::vector<std::string> start_problems(const config::Config& config) {
  std::vector<std::string> problems;
  const bool kerberos_agent = config.role == config::Role::agent && config.auth == config::AgentAuth::kerberos;
  if (!kerberos_agent) {
    const tls::CertRole role = config.role == config::Role::server    ? tls::CertRole::server
                               : config.role == config::Role::gateway ? tls::CertRole::gateway
                                                                      : tls::CertRole::agent;
    const tls::CheckReport report = tls::check({.cert_path = config.tls.cert_path,
                                                .key_path = config.tls.key_path,
                                                .ca_path = config.tls.ca_path,
                                                .crl_path = config.tls.crl_path,
                                                .name = config.name,
                                                .role = role,
                                                .crl_expired_allowed = config.tls.crl_expired_allowed});
    for (const std::string& problem : report.problems) problems.push_back("tls: " + problem);
  }
  // A gateway's or server's acceptor keytab, as the start loads it (an agent's
  // client keytab is read when it first authenticates).
  if (config.kerberos.enabled && config.role != config::Role::agent) {
    std::string why;
    if (krb::AcceptorCredential::load(config.kerberos.keytab_path, why) == nullptr) {
      problems.push_back("kerberos: keytab " + config.kerberos.keytab_path + ": " + why);
    }
  }
  // The folder it writes, or the nearest one above it that exists (it is made at start).
  const std::string& data = config.role == config::Role::agent ? config.queue_dir : config.data_dir;
  const std::string key = config.role == config::Role::agent ? "queue_dir" : "data_dir";
  if (config.role != config::Role::gateway) {
    std::filesystem::path folder = data;
    std::error_code error;
    while (!folder.empty() && !std::filesystem::exists(folder, error) && folder != folder.parent_path()) {
      folder = folder.parent_path();
    }
    if (::access(folder.c_str(), W_OK | X_OK) != 0) {
      problems.push_back(key + ": " + folder.string() + " is not writable by this user (" + std::strerror(errno) +
                         "): the role could not keep its data there");
    }
  }
  return problems;
}

}  // namespace

int run_check_config(int argc, char** argv, int first) {
  static constexpr std::string_view kUsage = "gatehouse check-config --config FILE [--role gateway|server|agent] [--dump]";
  static constexpr FlagSpec kFlags[] = {{"--config", true}, {"--role", true}, {"--dump", false}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse check-config", why, kUsage);
  if (!args.positionals.empty()) {
    return usage_error("gatehouse check-config", "unexpected argument '" + std::string(args.positionals[0]) + "'", kUsage);
  }
  std::optional<config::Role> role;
  if (const auto role_text = args.value("--role")) {
    config::Role parsed;
    if (!config::parse_role(*role_text, parsed)) {
      return usage_error("gatehouse check-config", "--role must be gateway, server or agent", kUsage);
    }
    role = parsed;
  }

  const std::string path = config_path(args, role, why);
  if (path.empty()) return usage_error("gatehouse check-config", why, kUsage);
  config::Config config;
  const std::vector<config::ConfigError> errors = config::load(path, role, config);
  for (const config::ConfigError& error : errors) {
    std::fprintf(stderr, "%s\n", config::format(error).c_str());
  }
  if (!errors.empty()) {
    std::fprintf(stderr, "%s: invalid (%zu problem%s)\n", config.source_path.c_str(), errors.size(),
                 errors.size() == 1 ? "" : "s");
    return kExitConfig;
  }
  if (args.has("--dump")) std::fputs(config::dump(config).c_str(), stdout);
  if (const std::vector<std::string> problems = start_problems(config); !problems.empty()) {
    for (const std::string& problem : problems) std::fprintf(stderr, "%s: %s\n", config.source_path.c_str(), problem.c_str());
    std::fprintf(stderr, "%s: the role would not start (%zu problem%s)\n", config.source_path.c_str(), problems.size(),
                 problems.size() == 1 ? "" : "s");
    return kExitConfig;
  }
  if (args.has("--dump")) return kExitOk;
  const size_t peers = config.role == config::Role::gateway ? config.parents.size() : config.gateways.size();
  std::printf("%s: valid %s config for '%s'", config.source_path.c_str(), config::to_string(config.role),
              config.name.c_str());
  if (config.role != config::Role::agent) std::printf(", listen %s", config.listen.text.c_str());
  if (config.role != config::Role::server) {
    std::printf(", %zu %s", peers, config.role == config::Role::gateway ? "parent(s)" : "gateway(s)");
  }
  std::printf("\n");
  return kExitOk;
}

}  // namespace gatehouse::cli
