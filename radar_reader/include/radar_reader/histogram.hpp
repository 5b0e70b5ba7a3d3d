// A latency histogram with a fixed relative precision over 1 ns .. 1 hour.
//
// The bucket scheme is HdrHistogram's (Gil Tene), fixed at compile time to
// lowest = 1 ns, highest = 3,600,000,000,000 ns, 3 significant digits:
//
//   - values 0 .. 2047 each have a counter of their own (exact);
//   - above that, every power-of-two range [2^m, 2^(m+1)) is cut into 1024
//     equal sub-buckets, so a counter spans at most 1/1024 (~0.1%) of its values.
//
// That is 33 * 1024 counters (264 KiB), in a std::array: recording is an index
// computation and an increment, with no allocation ever. Hold long-lived
// histograms in static storage or on the heap (std::make_unique) rather than on
// a small thread stack.
//
// Definitions (what each query returns):
//   record(v)      v < 0 is recorded as 0, v > kHighestValue as kHighestValue; both
//                  are counted in clamped() so an out-of-range run is never hidden.
//   count()        number of values recorded (clamped ones included).
//   min(), max()   the exact smallest and largest value recorded (after clamping).
//   mean()         the exact mean of the recorded values (sum kept in a double:
//                  exact while the sum stays below 2^53 ns, about 104 days).
//   percentile(q)  q is a fraction in [0, 1] (0.99, not 99). As HdrHistogram: the
//                  lowest value v such that a fraction q of the recorded values are
//                  <= v, i.e. the value of rank max(1, ceil(q * count())), reported
//                  as the upper bound of its counter (highest_equivalent()), but
//                  never above max(): the top counter's upper bound lies above the
//                  largest value recorded in it, and a p99.9 above the max is a
//                  contradiction in a report. So it is exact below 2048, at most
//                  1/1024 above the true value, and min() <= percentile(q) <= max().
//   All queries return 0 on an empty histogram: check count() first.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace radar {

namespace detail {
// HdrHistogram's bucket count: doublings of sub_bucket_count until it exceeds highest.
constexpr int histogram_bucket_count(std::int64_t sub_bucket_count, std::int64_t highest) {
  std::int64_t smallest_untrackable = sub_bucket_count;
  int buckets = 1;
  while (smallest_untrackable <= highest) {
    smallest_untrackable <<= 1;
    ++buckets;
  }
  return buckets;
}
}  // namespace detail

class Histogram {
 public:
  static constexpr std::int64_t kLowestValue = 1;                     // 1 ns
  static constexpr std::int64_t kHighestValue = 3'600'000'000'000;    // 1 hour
  static constexpr int kSignificantDigits = 3;

 private:
  // HdrHistogram's derivation, for lowest = 1 (unit magnitude 0) and 3 digits:
  // single-unit resolution up to 2 * 10^3 = 2000, so 2^11 = 2048 sub-buckets of
  // which the lower half overlaps the previous bucket and is not stored twice.
  static constexpr int kSubBucketCountMagnitude = 11;  // ceil(log2(2 * 10^3))
  static constexpr int kSubBucketHalfCountMagnitude = kSubBucketCountMagnitude - 1;
  static constexpr std::int64_t kSubBucketCount = std::int64_t{1} << kSubBucketCountMagnitude;
  static constexpr std::int64_t kSubBucketHalfCount = kSubBucketCount / 2;
  static constexpr std::int64_t kSubBucketMask = kSubBucketCount - 1;

  static constexpr int kBucketCount =
      detail::histogram_bucket_count(kSubBucketCount, kHighestValue);
  static constexpr std::size_t kCounterCount =
      static_cast<std::size_t>(kBucketCount + 1) * kSubBucketHalfCount;
  static_assert(kBucketCount == 32 && kCounterCount == 33 * 1024,
                "the layout documented at the top of this file");

 public:
  // Relative width of a counter above 2048: a reported percentile is at most this
  // fraction above the true value.
  static constexpr double kRelativePrecision = 1.0 / kSubBucketHalfCount;

  void record(std::int64_t value_ns) noexcept {
    if (value_ns < 0 || value_ns > kHighestValue) {
      value_ns = std::clamp<std::int64_t>(value_ns, 0, kHighestValue);
      ++clamped_;
    }
    ++counts_[counter_index(value_ns)];
    ++total_;
    min_ = std::min(min_, value_ns);
    max_ = std::max(max_, value_ns);
    sum_ += static_cast<double>(value_ns);
  }

  // Adds every value recorded in `other` (same fixed layout, so always compatible).
  void merge(const Histogram& other) noexcept {
    for (std::size_t i = 0; i < kCounterCount; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    clamped_ += other.clamped_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
    sum_ += other.sum_;
  }

  // Back to empty, in place (assigning a fresh Histogram would put 264 KiB on the stack).
  void reset() noexcept {
    counts_.fill(0);
    total_ = 0;
    clamped_ = 0;
    min_ = std::numeric_limits<std::int64_t>::max();
    max_ = std::numeric_limits<std::int64_t>::min();
    sum_ = 0.0;
  }

  std::uint64_t count() const noexcept { return total_; }
  std::uint64_t clamped() const noexcept { return clamped_; }
  std::int64_t min() const noexcept { return total_ ? min_ : 0; }
  std::int64_t max() const noexcept { return total_ ? max_ : 0; }
  double mean() const noexcept { return total_ ? sum_ / static_cast<double>(total_) : 0.0; }

  // The lowest v such that a fraction q of the values are <= v (see the top).
  std::int64_t percentile(double q) const noexcept {
    if (total_ == 0) return 0;
    q = std::isnan(q) ? 0.0 : std::clamp(q, 0.0, 1.0);
    const std::uint64_t rank = rank_for(q, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kCounterCount; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(highest_equivalent(value_at_index(i)), max_);
    }
    return max_;  // unreachable: counts_ sum to total_
  }

  // The smallest and largest value sharing v's counter (v in 0 .. kHighestValue).
  static std::int64_t lowest_equivalent(std::int64_t value) noexcept {
    const int bucket = bucket_index(value);
    return sub_bucket_index(value, bucket) << bucket;
  }
  static std::int64_t highest_equivalent(std::int64_t value) noexcept {
    const int bucket = bucket_index(value);
    return lowest_equivalent(value) + (std::int64_t{1} << bucket) - 1;
  }

 private:
  // ceil(q * total), at least 1. The product of a decimal fraction such as 0.99
  // and an integer can land one ulp above an integer (99.00000000000001): those
  // few ulps are taken off first so that rank is the intended one.
  static std::uint64_t rank_for(double q, std::uint64_t total) noexcept {
    const double target = q * static_cast<double>(total);
    const double rank = std::ceil(target - target * 1e-15);
    return std::max<std::uint64_t>(1, static_cast<std::uint64_t>(rank));
  }

  // Which power-of-two bucket holds value: 0 for values below 2048, then one per
  // doubling. OR-ing the mask keeps every value below 2048 in bucket 0.
  static int bucket_index(std::int64_t value) noexcept {
    const auto bits = static_cast<unsigned long long>(value | kSubBucketMask);
    const int pow2_ceiling = 64 - __builtin_clzll(bits);  // bits != 0: mask is set
    return pow2_ceiling - (kSubBucketHalfCountMagnitude + 1);
  }
  static std::int64_t sub_bucket_index(std::int64_t value, int bucket) noexcept {
    return value >> bucket;  // in [1024, 2048) except in bucket 0
  }
  static std::size_t counter_index(std::int64_t value) noexcept {
    const int bucket = bucket_index(value);
    const std::int64_t sub_bucket = sub_bucket_index(value, bucket);
    // Bucket b > 0 only stores its upper half; bucket 0 stores all 2048 values.
    return static_cast<std::size_t>(((std::int64_t{bucket} + 1) << kSubBucketHalfCountMagnitude) +
                                    (sub_bucket - kSubBucketHalfCount));
  }
  // The lowest value counted at index (inverse of counter_index).
  static std::int64_t value_at_index(std::size_t index) noexcept {
    int bucket = static_cast<int>(index >> kSubBucketHalfCountMagnitude) - 1;
    std::int64_t sub_bucket =
        static_cast<std::int64_t>(index & (kSubBucketHalfCount - 1)) + kSubBucketHalfCount;
    if (bucket < 0) {
      sub_bucket -= kSubBucketHalfCount;
      bucket = 0;
    }
    return sub_bucket << bucket;
  }

  std::array<std::uint64_t, kCounterCount> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t clamped_ = 0;
  std::int64_t min_ = std::numeric_limits<std::int64_t>::max();
  std::int64_t max_ = std::numeric_limits<std::int64_t>::min();
  double sum_ = 0.0;
};

}  // namespace radar
