// Hashed timing wheel: O(1) schedule and cancel, one intrusive node per
// connection, so 100k connections with deadlines cost no allocation.
#pragma once

#include <cstdint>
#include <vector>

namespace gatehouse::runtime {

struct TimerNode {
  TimerNode* prev = nullptr;
  TimerNode* next = nullptr;
  uint64_t expiry_tick = 0;
  uint64_t owner = 0;  // what the caller wants back when it fires
  bool armed() const { return prev != nullptr; }
};

class TimerWheel {
 public:
  inline static constexpr uint32_t kSlots = 4'096;  // one lap = kSlots ticks

  explicit TimerWheel(uint32_t tick_ms, uint64_t now_ms);

  // Fires `node` once, at the first advance() whose now_ms >= now_ms + delay_ms
  // (never early; late by at most a tick plus the loop's own latency).
  void schedule(TimerNode& node, uint64_t now_ms, uint64_t delay_ms);
  void cancel(TimerNode& node);

  // Advances to now_ms, calling fire(owner) once for each expired node. The
  // due nodes of a tick are first moved to a list of their own, so a callback
  // may cancel or reschedule any timer, including one due in the same tick
  // (cancelling it there unlinks it from that list: it does not fire).
  template <class Fire>
  void advance(uint64_t now_ms, Fire&& fire) {
    const uint64_t target = now_ms / tick_ms_;
    while (current_tick_ < target) {
      ++current_tick_;
      TimerNode due;
      due.prev = due.next = &due;
      detach_due(slots_[current_tick_ % kSlots], due);
      while (due.next != &due) {
        TimerNode& node = *due.next;
        unlink(node);
        --armed_count_;
        fire(node.owner);
      }
    }
  }

  uint64_t armed_count() const { return armed_count_; }
  uint32_t tick_ms() const { return tick_ms_; }

 private:
  static void unlink(TimerNode& node);
  static void append(TimerNode& head, TimerNode& node);
  // Moves every node of `slot` that expires by the current tick to `due`.
  void detach_due(TimerNode& slot, TimerNode& due) const;

  uint32_t tick_ms_;
  uint64_t current_tick_;
  uint64_t armed_count_ = 0;
  std::vector<TimerNode> slots_;  // sentinels of circular lists
};

}  // namespace gatehouse::runtime
