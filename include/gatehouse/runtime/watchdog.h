// systemd's watchdog (WatchdogSec=): WATCHDOG=1 only while every shard is
// turning, not merely while the process lives. Each check posts a probe to
// every shard's inbox; the next check pings only when all of them answered.
// A shard stuck in a handler (or an inbox that stays full) stops the pings,
// and systemd restarts the process.
#pragma once

#include <atomic>
#include <cstdint>

#include "gatehouse/runtime/runtime.h"

namespace gatehouse::runtime {

class Watchdog final : private Mailbox {
 public:
  // Enabled when systemd set WATCHDOG_USEC for this process (WATCHDOG_PID, if
  // set, is ours). Must outlive the runtime's shards (probes may be queued).
  explicit Watchdog(Runtime& runtime);
  bool enabled() const { return interval_ms_ != 0; }
  // How often check() runs: half the watchdog's timeout.
  uint32_t interval_ms() const { return interval_ms_; }
  // The signal-waiting thread, every interval_ms().
  void check();

 private:
  void on_message(Shard&, uint64_t, void*) override { answered_.fetch_add(1, std::memory_order_release); }

  Runtime& runtime_;
  uint32_t interval_ms_ = 0;
  std::atomic<uint32_t> answered_{0};
  uint32_t asked_ = 0;  // probes posted by the last check
};

}  // namespace gatehouse::runtime
