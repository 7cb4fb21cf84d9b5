// Latency histogram, log-linear (HdrHistogram's idea): 16 sub-buckets per
// power of two of microseconds, so any percentile is within 1/16 (6%) of the
// truth at a fixed 1 KiB, whatever the sample count. Mergeable across shards.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace gatehouse::loadgen {

class Histogram {
 public:
  static constexpr uint32_t kSubBuckets = 16;
  static constexpr uint32_t kPowers = 40;  // up to 2^40 us: 12 days

  void record(uint64_t value_us) {
    ++counts_[index(value_us)];
    ++total_;
  }
  void merge(const Histogram& other) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
  }
  uint64_t total() const { return total_; }
  // The upper bound of the bucket holding the q-quantile (0 < q <= 1).
  uint64_t percentile_us(double q) const {
    if (total_ == 0) return 0;
    const auto rank = static_cast<uint64_t>(q * static_cast<double>(total_) + 0.5);
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank && counts_[i] > 0) return upper_bound(static_cast<uint32_t>(i));
    }
    return upper_bound(static_cast<uint32_t>(counts_.size() - 1));
  }

 private:
  static uint32_t index(uint64_t value) {
    if (value < kSubBuckets) return static_cast<uint32_t>(value);
    const uint32_t power = static_cast<uint32_t>(std::bit_width(value)) - 1;  // >= 4
    const uint32_t sub = static_cast<uint32_t>(value >> (power - 4)) & (kSubBuckets - 1);
    const uint32_t i = (power - 3) * kSubBuckets + sub;
    return i < kSubBuckets * kPowers ? i : kSubBuckets * kPowers - 1;
  }
  static uint64_t upper_bound(uint32_t i) {
    if (i < kSubBuckets) return i;
    const uint32_t power = i / kSubBuckets + 3;
    const uint64_t sub = i % kSubBuckets;
    return ((kSubBuckets + sub + 1) << (power - 4)) - 1;
  }

  std::array<uint64_t, kSubBuckets * kPowers> counts_{};
  uint64_t total_ = 0;
};

}  // namespace gatehouse::loadgen
