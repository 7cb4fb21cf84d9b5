#include "gatehouse/cli/args.h"

#include <cstdio>

namespace gatehouse::cli {

std::optional<std::string_view> Args::value(std::string_view flag) const {
  for (const auto& [name, value] : flags) {
    if (name == flag) return value;
  }
  return std::nullopt;
}

bool Args::has(std::string_view flag) const { return value(flag).has_value(); }

bool parse_args(int argc, char** argv, int first, std::span<const FlagSpec> specs, Args& args,
                std::string& why) {
  for (int i = first; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-c") arg = "--config";  // the short form operators expect (haproxy -f, nginx -c)
    if (arg.size() < 2 || arg.substr(0, 2) != "--") {
      args.positionals.push_back(arg);
      continue;
    }
    std::string_view inline_value;
    bool has_inline_value = false;
    if (const size_t eq = arg.find('='); eq != std::string_view::npos) {
      inline_value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline_value = true;
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& candidate : specs) {
      if (candidate.name == arg) spec = &candidate;
    }
    if (spec == nullptr) {
      why = "unknown option '" + std::string(arg) + "'";
      return false;
    }
    if (!spec->takes_value) {
      if (has_inline_value) {
        why = "option '" + std::string(arg) + "' takes no value";
        return false;
      }
      args.flags.emplace_back(arg, "");
      continue;
    }
    if (!has_inline_value) {
      if (i + 1 >= argc) {
        why = "option '" + std::string(arg) + "' needs a value";
        return false;
      }
      inline_value = argv[++i];
    }
    args.flags.emplace_back(arg, inline_value);
  }
  return true;
}

int usage_error(std::string_view command, std::string_view message, std::string_view usage) {
  std::fprintf(stderr, "%.*s: %.*s\nusage: %.*s\n", static_cast<int>(command.size()),
               command.data(), static_cast<int>(message.size()), message.data(),
               static_cast<int>(usage.size()), usage.data());
  return kExitUsage;
}

}  // namespace gatehouse::cli
