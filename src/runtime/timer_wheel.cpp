#include "gatehouse/runtime/timer_wheel.h"

#include "gatehouse/log/invariant.h"

namespace gatehouse::runtime {

TimerWheel::TimerWheel(uint32_t tick_ms, uint64_t now_ms)
    : tick_ms_(tick_ms), current_tick_(now_ms / tick_ms), slots_(kSlots) {
  GH_INVARIANT(tick_ms > 0);
  for (TimerNode& sentinel : slots_) sentinel.prev = sentinel.next = &sentinel;
}

void TimerWheel::unlink(TimerNode& node) {
  node.prev->next = node.next;
  node.next->prev = node.prev;
  node.prev = node.next = nullptr;
}

void TimerWheel::append(TimerNode& head, TimerNode& node) {
  node.next = &head;
  node.prev = head.prev;
  head.prev->next = &node;
  head.prev = &node;
}

void TimerWheel::detach_due(TimerNode& slot, TimerNode& due) const {
  TimerNode* node = slot.next;
  while (node != &slot) {
    TimerNode* next = node->next;
    if (node->expiry_tick <= current_tick_) {
      unlink(*node);
      append(due, *node);
    }
    node = next;
  }
}

void TimerWheel::schedule(TimerNode& node, uint64_t now_ms, uint64_t delay_ms) {
  cancel(node);
  // Round up: advance() fires tick t once now >= t * tick_ms. A tick already
  // passed would not be visited again for a lap, so use the next one.
  const uint64_t due_tick = (now_ms + delay_ms + tick_ms_ - 1) / tick_ms_;
  node.expiry_tick = due_tick > current_tick_ ? due_tick : current_tick_ + 1;
  append(slots_[node.expiry_tick % kSlots], node);
  ++armed_count_;
}

void TimerWheel::cancel(TimerNode& node) {
  if (!node.armed()) return;
  unlink(node);
  --armed_count_;
}

}  // namespace gatehouse::runtime
