// Bounded multi-producer single-consumer queue (Vyukov's bounded array queue):
// a shard's inbox. push() never blocks and fails when full.
#pragma once

#include <atomic>
#include "gatehouse/log/invariant.h"
#include <cstdint>
#include <memory>

namespace gatehouse::runtime {

template <class T>
class MpscQueue {
 public:
  explicit MpscQueue(uint32_t capacity) : mask_(capacity - 1), cells_(new Cell[capacity]) {
    GH_INVARIANT(capacity >= 2 && (capacity & (capacity - 1)) == 0);
    for (uint32_t i = 0; i < capacity; ++i) cells_[i].sequence.store(i, std::memory_order_relaxed);
  }

  bool push(const T& value) {
    uint64_t position = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[position & mask_];
      const uint64_t sequence = cell.sequence.load(std::memory_order_acquire);
      const auto diff = static_cast<int64_t>(sequence - position);
      if (diff == 0) {
        if (tail_.compare_exchange_weak(position, position + 1, std::memory_order_relaxed)) {
          cell.value = value;
          cell.sequence.store(position + 1, std::memory_order_release);
          return true;
        }
      } else if (diff < 0) {
        return false;  // full
      } else {
        position = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  // Consumer only.
  bool pop(T& value) {
    Cell& cell = cells_[head_ & mask_];
    const uint64_t sequence = cell.sequence.load(std::memory_order_acquire);
    if (static_cast<int64_t>(sequence - (head_ + 1)) < 0) return false;  // empty
    value = cell.value;
    cell.sequence.store(head_ + mask_ + 1, std::memory_order_release);
    ++head_;
    return true;
  }

 private:
  struct Cell {
    std::atomic<uint64_t> sequence;
    T value;
  };
  const uint64_t mask_;
  std::unique_ptr<Cell[]> cells_;
  alignas(64) std::atomic<uint64_t> tail_{0};
  alignas(64) uint64_t head_ = 0;
};

}  // namespace gatehouse::runtime
