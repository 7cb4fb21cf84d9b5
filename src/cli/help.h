// Every subcommand's full help (its verbs and flags).
#pragma once

#include <string>
#include <string_view>

namespace gatehouse::cli {

// "" for an unknown subcommand.
std::string help_text(std::string_view command);
// --help or -h anywhere among argv[first..].
bool asks_for_help(int argc, char** argv, int first);

}  // namespace gatehouse::cli
