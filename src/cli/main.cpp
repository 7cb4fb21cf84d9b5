// gatehouse: one binary, the role chosen by subcommand (README, `gatehouse --help`).
#include <cstdio>
#include <string>
#include <string_view>

#include "gatehouse/cli/args.h"
#include "commands.h"
#include "help.h"
#include "gatehouse/config/config.h"
#include "gatehouse/log/log.h"
#include "gatehouse/tls/library_guard.h"

namespace gatehouse::cli {
namespace {

struct Command {
  std::string_view name;
  std::string_view usage;
  std::string_view summary;
  int (*run)(int argc, char** argv, int first);
};

constexpr Command kCommands[] = {
    {"gateway", "gatehouse gateway --config FILE",
     "run the gateway: accept agents and child gateways, multiplex them onto uplinks to parents",
     run_gateway},
    {"server", "gatehouse server --config FILE",
     "run the management-server endpoint: approvals, durable exactly-once store", run_server},
    {"agent", "gatehouse agent --config FILE [--file F | --synthetic RATE [--count N]] [--follow]",
     "run an agent: gateway failover list, durable disk queue, events from stdin or a file",
     run_agent},
    {"approve", "gatehouse approve --config FILE gateway|agent NAME --action create|delete | list [--pending]",
     "approve or remove gateways and agents on a running server", run_approve},
    {"certs", "gatehouse certs init-ca | issue --role ROLE --name FQDN | revoke --cert F | check --cert F --key F --ca F",
     "dev PKI (init-ca, issue, revoke) and a checker that says why a cert/key/CA set is unusable", run_certs},
    {"status", "gatehouse status --config FILE [--json] [--timeout-ms N]",
     "health of a running instance through its admin endpoint; exit 0 ready, 1 not ready, 69 cannot ask it",
     run_status},
    {"agents", "gatehouse agents --config FILE [--state up|down|pending] [--json]",
     "the management group's agents with their health (heartbeats): state, last heartbeat, tier, path", run_agents},
    {"store", "gatehouse store --config FILE stats [--json] | dump [--agent NAME]",
     "read the server's event store", run_store},
    {"check-config", "gatehouse check-config --config FILE [--role gateway|server|agent] [--dump]",
     "validate a config file; exit 78 with file:line: key: reason for every problem", run_check_config},
    {"proto", "gatehouse proto decode [FILE] | proto sample",
     "decode a wire-protocol v1 byte stream to JSON lines; write a sample stream", run_proto},
    {"version", "gatehouse version", "versions of gatehouse and the libraries it runs on", run_version},
};

const Command* find_command(std::string_view name) {
  for (const Command& command : kCommands) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

void print_help(FILE* out) {
  std::fprintf(out,
               "gatehouse: a gateway for monitoring agents across trust boundaries\n\n"
               "usage: gatehouse <subcommand> [options]   (gatehouse <subcommand> --help)\n\n"
               "subcommands:\n");
  for (const Command& command : kCommands) {
    std::fprintf(out, "  %-13.*s %.*s\n", static_cast<int>(command.name.size()), command.name.data(),
                 static_cast<int>(command.summary.size()), command.summary.data());
  }
  std::fprintf(out, "\nexit codes (sysexits): 0 ok, 1 failure, 64 usage error, 69 unavailable (no io_uring; status: cannot\n"
                    "ask the instance), 75 temporary failure (a port in use), 78 invalid config\n");
}


}  // namespace
}  // namespace gatehouse::cli

int main(int argc, char** argv) {
  using namespace gatehouse;
  if (const std::string mapped = tls::forbidden_library_mapped(); !mapped.empty()) {
    log::emit(log::Level::error, log::EventId::forbidden_library_loaded,
              "OpenSSL 3 is mapped into this process beside BoringSSL; refusing to run "
              "(remove it from LD_PRELOAD, disable the krb5 PKINIT plugin)",
              {{"library", mapped}});
    return cli::kExitFailure;
  }
  if (argc < 2) {
    cli::print_help(stderr);
    return cli::kExitUsage;
  }
  const std::string_view name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    cli::print_help(stdout);
    return cli::kExitOk;
  }
  if (name == "--version" || name == "-V") return cli::run_version(argc, argv, 2);
  const cli::Command* command = cli::find_command(name);
  if (command == nullptr) {
    std::fprintf(stderr, "gatehouse: unknown subcommand '%s'\nusage: gatehouse <subcommand> [options]; "
                 "see gatehouse --help\n", argv[1]);
    return cli::kExitUsage;
  }
  if (cli::asks_for_help(argc, argv, 2)) {  // `certs issue --help` too
    std::fputs(cli::help_text(command->name).c_str(), stdout);
    return cli::kExitOk;
  }
  return command->run(argc, argv, 2);
}
