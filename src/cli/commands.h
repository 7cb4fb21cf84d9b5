// Subcommand entry points: each takes the whole argv and the index of its
// first own argument, and returns the process exit code.
#pragma once

namespace gatehouse::cli {

int run_certs(int argc, char** argv, int first);
int run_check_config(int argc, char** argv, int first);
int run_proto(int argc, char** argv, int first);
int run_version(int argc, char** argv, int first);
int run_server(int argc, char** argv, int first);
int run_approve(int argc, char** argv, int first);
int run_store(int argc, char** argv, int first);
int run_agent(int argc, char** argv, int first);
int run_gateway(int argc, char** argv, int first);
int run_status(int argc, char** argv, int first);
int run_agents(int argc, char** argv, int first);

}  // namespace gatehouse::cli
