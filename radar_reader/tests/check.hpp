// Minimal test assertions for the radar_reader unit tests (no framework needed).
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace radar_test {
inline int failures = 0;
}  // namespace radar_test

#define CHECK(condition)                                                         \
  do {                                                                           \
    if (!(condition)) {                                                          \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,      \
                   #condition);                                                  \
      ++radar_test::failures;                                                    \
    }                                                                            \
  } while (0)

#define CHECK_NEAR(actual, expected, tolerance)                                  \
  do {                                                                           \
    const double a_ = (actual), e_ = (expected);                                 \
    if (!(std::fabs(a_ - e_) <= (tolerance))) {                                  \
      std::fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.17g, expected %.17g\n", \
                   __FILE__, __LINE__, #actual, a_, e_);                         \
      ++radar_test::failures;                                                    \
    }                                                                            \
  } while (0)

// Ends main(): prints a closing line ctest and humans can read, exit 1 on failure.
#define TEST_MAIN_END(name)                                                      \
  do {                                                                           \
    std::printf("%s: %s\n", name, radar_test::failures ? "FAILED" : "passed");   \
    return radar_test::failures ? 1 : 0;                                         \
  } while (0)
