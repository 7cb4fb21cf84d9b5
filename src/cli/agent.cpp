// `gatehouse agent`: events from stdin, a file, the systemd journal or a
// synthetic source into the durable queue, and from there to the gateways.
// With a finite input it exits 0 once every event is durably acknowledged, so
// scripts can pipe into it.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "gatehouse/agent/run.h"
#include "gatehouse/cli/args.h"
#include "commands.h"
#include "role_start.h"

namespace gatehouse::cli {
namespace {

bool parse_number(std::string_view text, double& value) {
  try {
    size_t used = 0;
    value = std::stod(std::string(text), &used);
    return used == text.size() && value > 0;
  } catch (...) {
    return false;
  }
}

}  // namespace

int run_agent(int argc, char** argv, int first) {
  static constexpr std::string_view kUsage =
      "gatehouse agent --config FILE [--file F | --journal | --journal-dir DIR | --synthetic RATE [--count N]] "
      "[--follow]";
  static constexpr FlagSpec kFlags[] = {{"--config", true},  {"--file", true},        {"--journal", false},
                                        {"--journal-dir", true}, {"--synthetic", true}, {"--count", true},
                                        {"--follow", false}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse agent", why, kUsage);
  double rate = 0;
  double count = 0;
  if (args.has("--synthetic") && !parse_number(*args.value("--synthetic"), rate)) {
    return usage_error("gatehouse agent", "--synthetic takes events per second (> 0)", kUsage);
  }
  if (args.has("--count") && (!args.has("--synthetic") || !parse_number(*args.value("--count"), count))) {
    return usage_error("gatehouse agent", "--count N goes with --synthetic", kUsage);
  }
  int inputs = 0;
  for (const char* input : {"--file", "--journal", "--journal-dir", "--synthetic"}) inputs += args.has(input) ? 1 : 0;
  if (inputs > 1) {
    return usage_error("gatehouse agent", "one input: --file, --journal, --journal-dir or --synthetic", kUsage);
  }
  config::Config config;
  int exit_code = kExitOk;
  if (!start_role(args, config::Role::agent, kUsage, config, exit_code)) return exit_code;

  agent::InputSource source;
  if (auto file = args.value("--file")) {
    source.path = std::string(*file);
    if (::access(source.path.c_str(), R_OK) != 0) {
      std::fprintf(stderr, "gatehouse agent: cannot read %s: %s\n", source.path.c_str(), std::strerror(errno));
      return kExitFailure;
    }
  }
  source.journal = args.has("--journal") || args.has("--journal-dir");
  if (auto directory = args.value("--journal-dir")) source.journal_dir = std::string(*directory);
  source.synthetic_rate = rate;
  source.synthetic_count = static_cast<uint64_t>(count);
  source.follow = args.has("--follow");
  return agent::run(config, source) ? kExitOk : failed_start_exit();
}

}  // namespace gatehouse::cli
