// Unit tests of radar::Histogram (histogram.hpp). Expected bucket bounds are worked
// out by hand from the layout at the top of histogram.hpp: a value v >= 2048 with
// highest set bit m (2^m <= v < 2^(m+1)) lies in bucket b = m - 10, whose counters
// are 2^b wide and start at multiples of 2^b.
#include "radar_reader/histogram.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>

#include "check.hpp"

namespace {

using radar::Histogram;

// Histograms are 264 KiB: the tests hold them on the heap, as the header advises.
std::unique_ptr<Histogram> make() { return std::make_unique<Histogram>(); }

void test_empty() {
  const auto h = make();
  CHECK(h->count() == 0);
  CHECK(h->min() == 0);
  CHECK(h->max() == 0);
  CHECK(h->mean() == 0.0);
  CHECK(h->percentile(0.5) == 0);
  CHECK(h->clamped() == 0);
}

void test_exact_below_2048() {
  // 1..1000 once each: every value has its own counter, percentiles are exact.
  const auto h = make();
  for (std::int64_t v = 1; v <= 1000; ++v) h->record(v);
  CHECK(h->count() == 1000);
  CHECK(h->min() == 1);
  CHECK(h->max() == 1000);
  CHECK_NEAR(h->mean(), 500.5, 0.0);  // (1 + 1000) / 2
  CHECK(h->percentile(0.0) == 1);     // rank max(1, ceil(0)) = 1
  CHECK(h->percentile(0.5) == 500);   // rank ceil(500) = 500
  CHECK(h->percentile(0.99) == 990);  // rank 0.99 * 1000 = 990
  CHECK(h->percentile(0.9905) == 991);  // ceil(990.5) = 991
  CHECK(h->percentile(1.0) == 1000);
  CHECK(h->percentile(7.0) == 1000);   // q clamped to [0, 1]
  CHECK(h->percentile(-1.0) == 1);
}

void test_rank_rounding() {
  // 1..100. In doubles 0.07 * 100 = 7.000000000000001 and 0.14 * 100 =
  // 14.000000000000002: a bare ceil would give ranks 8 and 15; the intended ranks
  // are 7 and 14.
  const auto h = make();
  for (std::int64_t v = 1; v <= 100; ++v) h->record(v);
  CHECK(h->percentile(0.07) == 7);
  CHECK(h->percentile(0.14) == 14);
  CHECK(h->percentile(0.57) == 57);  // 56.99999999999999 -> ceil 57
  CHECK(h->percentile(0.99) == 99);
  CHECK(h->percentile(0.5) == 50);
  CHECK(h->percentile(0.505) == 51);  // ceil(50.5)
  CHECK(h->percentile(0.001) == 1);   // ceil(0.1) = 1
}

void test_bucket_bounds() {
  // 500,000: 2^18 <= v < 2^19 -> bucket 8, counters 256 wide:
  //   500,000 / 256 = 1953.125 -> [1953 * 256, +255] = [499,968, 500,223]
  CHECK(Histogram::lowest_equivalent(500'000) == 499'968);
  CHECK(Histogram::highest_equivalent(500'000) == 500'223);
  // 1,000,000: 2^19 <= v < 2^20 -> bucket 9, 512 wide: 1953 * 512 = 999,936 .. 1,000,447
  CHECK(Histogram::highest_equivalent(1'000'000) == 1'000'447);
  // 2047 is still exact; 2048 starts bucket 1 (2 wide): [2048, 2049]
  CHECK(Histogram::highest_equivalent(2047) == 2047);
  CHECK(Histogram::lowest_equivalent(2049) == 2048);
  CHECK(Histogram::highest_equivalent(2048) == 2049);
  // 1 hour = 3.6e12: 2^41 <= v < 2^42 -> bucket 31, 2^31 = 2,147,483,648 wide:
  //   3.6e12 / 2^31 = 1676.38 -> 1676 * 2^31 = 3,599,182,594,048
  //   highest = 3,599,182,594,048 + 2,147,483,647 = 3,601,330,077,695
  CHECK(Histogram::lowest_equivalent(Histogram::kHighestValue) == 3'599'182'594'048);
  CHECK(Histogram::highest_equivalent(Histogram::kHighestValue) == 3'601'330'077'695);
  // Over the whole range (steps of x1.01), v lies within its counter and the counter
  // is at most v / 1024 wide (1 wide below 2048).
  for (double x = 1; x <= static_cast<double>(Histogram::kHighestValue); x *= 1.01) {
    const auto v = static_cast<std::int64_t>(x);
    const std::int64_t low = Histogram::lowest_equivalent(v);
    const std::int64_t high = Histogram::highest_equivalent(v);
    CHECK(low <= v && v <= high);
    CHECK(static_cast<double>(high - low + 1) <=
          std::max(1.0, static_cast<double>(v) * Histogram::kRelativePrecision));
  }
}

void test_uniform_distribution() {
  // 1..1,000,000 once each: the q-percentile is q * 1e6, reported as the upper bound
  // of its counter, so within [true, true * (1 + 1/1024)].
  const auto h = make();
  for (std::int64_t v = 1; v <= 1'000'000; ++v) h->record(v);
  CHECK(h->count() == 1'000'000);
  CHECK_NEAR(h->mean(), 500'000.5, 1e-9);
  CHECK(h->percentile(0.5) == 500'223);  // 500,000 -> [499,968, 500,223] (above)
  // 990,000 -> bucket 9 (512 wide): 990,000 / 512 = 1933.59 -> 1933 * 512 = 989,696,
  // + 511 = 990,207
  CHECK(h->percentile(0.99) == 990'207);
  // 999,000 / 512 = 1951.17 -> 1951 * 512 = 998,912, + 511 = 999,423
  CHECK(h->percentile(0.999) == 999'423);
  // max 1,000,000 lies in [999,936, 1,000,447]: the counter's top would be above
  // the max, so the max itself is reported.
  CHECK(h->percentile(1.0) == 1'000'000);
  CHECK(h->max() == 1'000'000);  // max() itself is exact
  for (const double q : {0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.9999}) {
    const double truth = q * 1e6;
    const auto reported = static_cast<double>(h->percentile(q));
    CHECK(reported >= truth);
    CHECK(reported <= truth * (1 + Histogram::kRelativePrecision));
  }
}

void test_bimodal_distribution() {
  // 1000 x 100 ns and 10 x 1 ms (count 1010): a fast path with a rare slow one.
  const auto h = make();
  for (int i = 0; i < 1000; ++i) h->record(100);
  for (int i = 0; i < 10; ++i) h->record(1'000'000);
  CHECK(h->count() == 1010);
  CHECK(h->min() == 100);
  CHECK(h->max() == 1'000'000);
  // mean = (1000 * 100 + 10 * 1,000,000) / 1010 = 10,100,000 / 1010 = 10,000
  CHECK_NEAR(h->mean(), 10'000.0, 1e-9);
  // p99: rank ceil(0.99 * 1010) = ceil(999.9) = 1000 -> the last 100
  CHECK(h->percentile(0.99) == 100);
  // p99.1: rank ceil(0.991 * 1010) = ceil(1000.91) = 1001 -> 1 ms, whose counter's
  // top (1,000,447) is above the max: the max, 1,000,000
  CHECK(h->percentile(0.991) == 1'000'000);
}

void test_merge() {
  // 1..500,000 and 500,001..1,000,000 merged == 1..1,000,000 recorded in one.
  const auto low = make();
  const auto high = make();
  const auto all = make();
  for (std::int64_t v = 1; v <= 1'000'000; ++v) {
    (v <= 500'000 ? *low : *high).record(v);
    all->record(v);
  }
  const auto merged = make();
  merged->merge(*high);  // into an empty one: min comes from the other
  merged->merge(*low);
  merged->merge(*make());  // an empty one changes nothing
  CHECK(merged->count() == all->count());
  CHECK(merged->min() == 1);
  CHECK(merged->max() == 1'000'000);
  CHECK_NEAR(merged->mean(), all->mean(), 1e-9);
  for (const double q : {0.0, 0.001, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    CHECK(merged->percentile(q) == all->percentile(q));
  }
  CHECK(merged->percentile(0.5) == 500'223);
}

void test_clamped() {
  const auto h = make();
  h->record(-5);                                // below the range: recorded as 0
  h->record(7'200'000'000'000);                 // 2 hours: recorded as 1 hour
  h->record(Histogram::kHighestValue);          // exactly 1 hour: in range
  h->record(0);                                 // 0 is in range
  CHECK(h->count() == 4);
  CHECK(h->clamped() == 2);
  CHECK(h->min() == 0);
  CHECK(h->max() == Histogram::kHighestValue);
  CHECK(h->percentile(0.5) == 0);               // rank 2 of {0, 0, 1h, 1h}
  CHECK(h->percentile(1.0) == Histogram::kHighestValue);  // not its counter's top
  // mean = (0 + 3.6e12 + 3.6e12 + 0) / 4 = 1.8e12
  CHECK_NEAR(h->mean(), 1.8e12, 0.0);
  const auto other = make();
  other->merge(*h);
  CHECK(other->clamped() == 2);  // clamping is remembered through merges
}

void test_reset() {
  const auto h = make();
  h->record(12'345);
  h->record(-1);
  h->reset();
  CHECK(h->count() == 0);
  CHECK(h->clamped() == 0);
  CHECK(h->max() == 0);
  h->record(7);
  CHECK(h->min() == 7 && h->max() == 7 && h->percentile(0.5) == 7);
}


void test_percentiles_never_above_max() {
  // Issue #10: a replay's summary said "p99.9 175825223.68 us, max 175821775.77 us".
  // 175,821,775,770 ns: 2^37 <= v < 2^38 -> bucket 27, counters 2^27 = 134,217,728
  // wide: 175,821,775,770 / 2^27 = 1309.97 -> [1309 * 2^27, +2^27 - 1] =
  // [175,691,005,952, 175,825,223,679]: the top is the p99.9 the issue saw, 3.4 ms
  // above the max.
  const std::int64_t worst = 175'821'775'770;
  CHECK(Histogram::highest_equivalent(worst) == 175'825'223'679);
  const auto h = make();
  for (int i = 0; i < 999; ++i) h->record(175'710'000'000 + i * 100'000);  // same counter
  h->record(worst);
  CHECK(h->max() == worst);
  CHECK(h->percentile(0.5) == worst);    // same counter as the max: clamped to it
  CHECK(h->percentile(0.999) == worst);
  CHECK(h->percentile(1.0) == worst);
  // Whatever the values and q: min() <= percentile(q) <= max().
  const auto spread = make();
  for (std::int64_t v = 3; v < Histogram::kHighestValue; v = v * 7 / 3 + 1) {
    spread->record(v);
    for (const double q : {0.0, 0.5, 0.9, 0.99, 0.999, 1.0}) {
      CHECK(spread->percentile(q) <= spread->max());
      CHECK(spread->percentile(q) >= spread->min());
    }
  }
  // A single value is every percentile of it.
  const auto one = make();
  one->record(123'456'789);
  CHECK(one->percentile(0.0) == 123'456'789 && one->percentile(1.0) == 123'456'789);
}

}  // namespace

int main() {
  test_empty();
  test_exact_below_2048();
  test_rank_rounding();
  test_bucket_bounds();
  test_uniform_distribution();
  test_bimodal_distribution();
  test_merge();
  test_clamped();
  test_reset();
  test_percentiles_never_above_max();
  TEST_MAIN_END("histogram_test");
}
