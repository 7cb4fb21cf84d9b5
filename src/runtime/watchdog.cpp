#include "gatehouse/runtime/watchdog.h"

#include <unistd.h>

#include <cstdlib>

namespace gatehouse::runtime {

Watchdog::Watchdog(Runtime& runtime) : runtime_(runtime) {
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  if (usec == nullptr || (pid != nullptr && std::strtol(pid, nullptr, 10) != getpid())) return;
  const unsigned long long timeout_us = std::strtoull(usec, nullptr, 10);
  interval_ms_ = static_cast<uint32_t>(std::min<unsigned long long>(timeout_us / 2'000, 3'600'000));
}

void Watchdog::check() {
  if (!enabled()) return;
  if (answered_.load(std::memory_order_acquire) < asked_) return;  // a shard has not turned since: no ping
  sd_notify("WATCHDOG=1");
  answered_.store(0, std::memory_order_relaxed);
  asked_ = 0;
  for (uint32_t shard = 0; shard < runtime_.shard_count(); ++shard) {
    if (runtime_.shard(shard).post({this, 0, nullptr})) ++asked_;
  }
}

}  // namespace gatehouse::runtime
