#include "role_start.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>

#include "build_info.h"
#include "gatehouse/cli/args.h"
#include "gatehouse/krb/profile.h"
#include "gatehouse/log/log.h"
#include "gatehouse/runtime/runtime.h"
#include "commands.h"

namespace gatehouse::cli {

std::string config_path(const Args& args, std::optional<config::Role> role, std::string& why) {
  if (const auto given = args.value("--config")) return std::string(*given);
  const std::string dir = GATEHOUSE_CONFIG_DIR;
  if (role) return dir + "/" + std::string(config::to_string(*role)) + ".toml";
  std::vector<std::string> present;
  for (const char* name : {"gateway", "server", "agent"}) {
    const std::string path = dir + "/" + name + ".toml";
    if (::access(path.c_str(), F_OK) == 0) present.push_back(path);
  }
  if (present.size() == 1) return present[0];
  why = present.empty() ? "--config FILE is required (no " + dir + "/{gateway,server,agent}.toml installed)"
                        : "--config FILE is required (" + dir + " holds more than one role's file)";
  return "";
}

int failed_start_exit() {
  switch (runtime::start_failure()) {
    case runtime::StartFailure::port_in_use:
      return kExitTemporary;
    case runtime::StartFailure::io_uring_unavailable:
      return kExitUnavailable;
    case runtime::StartFailure::other:
      break;
  }
  return kExitFailure;
}

bool start_role(const Args& args, config::Role role, std::string_view usage, config::Config& config, int& exit_code) {
  // Before any thread starts (the log writer, resolvers, the registry's): a
  // SIGTERM must reach only the main thread's wait, never kill the process
  // through a thread that left it unblocked while the main thread was busy.
  runtime::block_stop_signals();
  const std::string command = "gatehouse " + std::string(config::to_string(role));
  if (!args.positionals.empty()) {
    exit_code = usage_error(command, "unexpected argument '" + std::string(args.positionals[0]) + "'", usage);
    return false;
  }
  std::string why;
  const std::vector<config::ConfigError> errors = config::load(config_path(args, role, why), role, config);
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
  if (const std::string problem = krb::disable_pkinit(); !problem.empty()) {
    log::emit(log::Level::error, log::EventId::config_invalid, "cannot keep krb5 PKINIT out: " + problem);
    exit_code = kExitFailure;
    return false;
  }
  return true;
}

bool load_server_config(const Args& args, config::Config& config, int& exit_code) {
  std::string why;
  const std::string path = config_path(args, config::Role::server, why);
  ::umask(027);  // what the tools make in the data folder is the service's alone, as the server's own files
  const std::vector<config::ConfigError> errors = config::load(path, config::Role::server, config);
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
