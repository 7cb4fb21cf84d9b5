#include "role_start.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <filesystem>

#include "gatehouse/cli/args.h"
#include "gatehouse/krb/profile.h"
#include "gatehouse/log/log.h"
#include "commands.h"

namespace gatehouse::cli {
namespace {

std::string g_private_dir;  // made by mkdtemp for this process: removed at exit

void remove_private_dir() {
  std::error_code ignored;
  std::filesystem::remove_all(g_private_dir, ignored);
}

// Where the PKINIT-disabling krb5 profile goes: systemd's RuntimeDirectory,
// else the role's own state folder, else a folder of this process's own
// (never a fixed name in /tmp: another user's gateway would share it).
std::string runtime_dir(const config::Config& config) {
  if (const char* dir = std::getenv("RUNTIME_DIRECTORY"); dir != nullptr && dir[0] != '\0') return dir;
  if (config.role == config::Role::server) return config.data_dir;
  if (config.role == config::Role::agent) return config.queue_dir;
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp") + "/gatehouse-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) return "/tmp";  // disable_pkinit then says why it cannot write
  g_private_dir = pattern;
  std::atexit(remove_private_dir);
  return g_private_dir;
}

}  // namespace

bool start_role(const Args& args, config::Role role, std::string_view usage, config::Config& config, int& exit_code) {
  const std::string command = "gatehouse " + std::string(config::to_string(role));
  if (!args.positionals.empty() || !args.has("--config")) {
    exit_code = usage_error(command, "--config FILE is required", usage);
    return false;
  }
  const std::vector<config::ConfigError> errors = config::load(*args.value("--config"), role, config);
  log::set_identity(config::to_string(role), config.name);
  if (!errors.empty()) {
    for (const config::ConfigError& error : errors) {
      log::emit(log::Level::error, log::EventId::config_invalid, config::format(error));
    }
    exit_code = kExitConfig;  // systemd: RestartPreventExitStatus=78
    return false;
  }
  log::Level level;
  if (log::parse_level(config.log_level, level)) log::set_min_level(level);
  ::umask(027);  // data files 0640, folders 0750: events and keys are nobody else's to read
  log::start_writer();  // from here on no thread writes stderr itself
  const std::string dir = runtime_dir(config);
  std::error_code ignored;
  std::filesystem::create_directories(dir, ignored);
  if (const std::string problem = krb::disable_pkinit(dir); !problem.empty()) {
    log::emit(log::Level::error, log::EventId::config_invalid, "cannot keep krb5 PKINIT out: " + problem);
    exit_code = kExitFailure;
    return false;
  }
  return true;
}

bool load_server_config(const Args& args, const std::string& command, std::string_view usage, config::Config& config,
                        int& exit_code) {
  const auto path = args.value("--config");
  if (!path) {
    exit_code = usage_error(command, "--config FILE (the server's) is required", usage);
    return false;
  }
  ::umask(027);  // what the tools make in the data folder is the service's alone, as the server's own files
  const std::vector<config::ConfigError> errors = config::load(*path, config::Role::server, config);
  for (const config::ConfigError& error : errors) std::fprintf(stderr, "%s\n", config::format(error).c_str());
  exit_code = kExitConfig;
  return errors.empty();
}

void print_json_string(std::string_view text) {
  std::string out;
  log::append_json_string(out, text);
  std::fputs(out.c_str(), stdout);
}

}  // namespace gatehouse::cli
