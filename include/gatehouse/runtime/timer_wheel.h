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

  // Advances to now_ms, calling fire(owner) once for each expired node.
  template <class Fire>
  void advance(uint64_t now_ms, Fire&& fire) {
    const uint64_t target = now_ms / tick_ms_;
    while (current_tick_ < target) {
      ++current_tick_;
      TimerNode& head = slots_[current_tick_ % kSlots];
      TimerNode* node = head.next;
      while (node != &head) {
        TimerNode* next = node->next;
        if (node->expiry_tick <= current_tick_) {
          unlink(*node);
          --armed_count_;
          fire(node->owner);  // may re-schedule the node or others
        }
        node = next;
      }
    }
  }

  uint64_t armed_count() const { return armed_count_; }
  uint32_t tick_ms() const { return tick_ms_; }

 private:
  static void unlink(TimerNode& node);

  uint32_t tick_ms_;
  uint64_t current_tick_;
  uint64_t armed_count_ = 0;
  std::vector<TimerNode> slots_;  // sentinels of circular lists
};

}  // namespace gatehouse::runtime
