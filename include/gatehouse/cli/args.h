// Minimal flag parsing for the gatehouse subcommands and the bench tools:
// every flag is declared, anything else is a usage error (exit 2).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 64;      // EX_USAGE
inline constexpr int kExitUnavailable = 69;  // EX_UNAVAILABLE: not in this build; an instance that cannot be asked
inline constexpr int kExitTemporary = 75;    // EX_TEMPFAIL: a port in use (systemd's Restart= tries again)
inline constexpr int kExitConfig = 78;       // EX_CONFIG: the config file is invalid (a role does not start)

struct FlagSpec {
  std::string_view name;  // "--config"
  bool takes_value;
};

struct Args {
  std::vector<std::pair<std::string_view, std::string_view>> flags;
  std::vector<std::string_view> positionals;

  std::optional<std::string_view> value(std::string_view flag) const;
  bool has(std::string_view flag) const;
};

// Parses argv[first..]; on error returns false and sets `why`.
bool parse_args(int argc, char** argv, int first, std::span<const FlagSpec> specs, Args& args,
                std::string& why);

// Prints "COMMAND: MESSAGE" and the usage line to stderr; returns kExitUsage.
int usage_error(std::string_view command, std::string_view message, std::string_view usage);

}  // namespace gatehouse::cli
