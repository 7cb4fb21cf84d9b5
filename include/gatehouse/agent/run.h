// Starts the agent role and runs it until its input is done and acknowledged
// (or SIGTERM/SIGINT; with `follow`, until a signal).
#pragma once

#include <cstdint>
#include <string>

#include "gatehouse/config/config_types.h"

namespace gatehouse::agent {

struct InputSource {
  int fd = 0;                    // lines from this descriptor (stdin) ...
  std::string path;              // ... or this file (--file), resumed where the last run stopped
  bool journal = false;          // ... or the systemd journal (--journal), resumed at its saved cursor:
  std::string journal_dir;       //     of this machine, or the journal files in this folder (--journal-dir)
  double synthetic_rate = 0;     // ... or, above 0, synthetic events per second
  uint64_t synthetic_count = 0;  // how many synthetic events; 0: endless
  bool follow = false;           // keep running once the input ended (a file: follow it like tail -F; the journal: its new entries)
};

// False when it could not start, or the queue could not write (logged).
bool run(const config::Config& config, const InputSource& source);

}  // namespace gatehouse::agent
