// An ordered list of parents tried in turn (an agent's [[gateways]], a
// gateway's [[parents]]): after a failure the next one at once; once the whole
// list has failed, a wait that doubles up to a bound, with jitter so that
// thousands of children do not come back in step.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>

namespace gatehouse::net {

class Failover {
 public:
  Failover(size_t parents, uint32_t backoff_initial_ms, uint32_t backoff_max_ms)
      : parents_(parents), initial_ms_(backoff_initial_ms), max_ms_(backoff_max_ms), backoff_ms_(backoff_initial_ms),
        jitter_(std::random_device{}()) {}

  size_t current() const { return current_; }
  // The current parent failed; moves to the next. 0: try it now. Otherwise the
  // whole list has failed: wait this many ms (the backoff, jittered).
  uint32_t failed() {
    current_ = (current_ + 1) % parents_;
    if (++failures_in_round_ < parents_) return 0;
    failures_in_round_ = 0;
    const uint32_t delay_ms = std::max<uint32_t>(1, backoff_ms_ / 2 + jitter_() % (backoff_ms_ / 2 + 1));
    backoff_ms_ = std::min(backoff_ms_ * 2, max_ms_);
    return delay_ms;
  }
  // The next failed() ends the round at once (a refusal that takes a human to fix).
  void end_round() { failures_in_round_ = parents_ - 1; }
  void succeeded() {
    failures_in_round_ = 0;
    backoff_ms_ = initial_ms_;
  }
  // A parent dialled us (connect = "parent"): it is the current one now.
  void move_to(size_t parent) {
    current_ = parent % parents_;
    failures_in_round_ = 0;
  }
  // A reload's list of `parents`, the link on `current` of it (the first when
  // its parent is gone from the list).
  void relist(size_t parents, size_t current) {
    parents_ = parents;
    current_ = current % parents;
    failures_in_round_ = 0;
  }
  // Back to the first parent (failback): its next connect goes there.
  void reset_to_first() {
    current_ = 0;
    failures_in_round_ = 0;
  }
  // A reload's backoff bounds: the next round's wait starts from them.
  void retime(uint32_t backoff_initial_ms, uint32_t backoff_max_ms) {
    initial_ms_ = backoff_initial_ms;
    max_ms_ = backoff_max_ms;
    backoff_ms_ = std::min(std::max(backoff_ms_, initial_ms_), max_ms_);
  }
  // A short random pause (reconnecting after a session that was up).
  uint32_t jitter_ms(uint32_t base_ms) { return base_ms == 0 ? 0 : base_ms + jitter_() % base_ms; }

 private:
  size_t parents_;
  uint32_t initial_ms_;
  uint32_t max_ms_;
  size_t current_ = 0;
  size_t failures_in_round_ = 0;
  uint32_t backoff_ms_;
  std::minstd_rand jitter_;
};

}  // namespace gatehouse::net
