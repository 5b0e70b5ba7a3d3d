// How a reader waits when there is nothing new: its own choice (docs/FORMAT.md).
//
//   spin     re-check at once: lowest latency, one core at 100%
//   yield    sched_yield between checks: gives the core away when others need it
//   backoff  spin, then yield, then sleep 1 us doubling to 1 ms: cheap when idle
//   futex    sleep in the kernel until a writer publishes (it wakes only sleepers
//            that said so, so a writer with none pays nothing); several journals
//            are waited on at once with futex_waitv (Linux 5.16+)
#pragma once

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <thread>
#include <vector>

#include "radar_reader/reader.hpp"

namespace radar {

enum class IdleKind { kSpin, kYield, kBackoff, kFutex };

inline bool parse_idle(std::string_view text, IdleKind& kind) {
  if (text == "spin") kind = IdleKind::kSpin;
  else if (text == "yield") kind = IdleKind::kYield;
  else if (text == "backoff") kind = IdleKind::kBackoff;
  else if (text == "futex") kind = IdleKind::kFutex;
  else return false;
  return true;
}

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

// Waits for any of `readers` to have data, as `kind` says. `idle_rounds` counts
// consecutive empty polls (backoff grows with it); reset it when a record arrives.
// Returns after at most `max_wait` (futex) or one idle step (others).
class Idler {
 public:
  explicit Idler(IdleKind kind, std::chrono::nanoseconds max_wait = std::chrono::milliseconds(50))
      : kind_(kind), max_wait_(max_wait) {}

  void idle(std::vector<JournalReader>& readers, std::uint32_t idle_rounds) {
    switch (kind_) {
      case IdleKind::kSpin:
        return;
      case IdleKind::kYield:
        sched_yield();
        return;
      case IdleKind::kBackoff:
        return backoff(idle_rounds);
      case IdleKind::kFutex:
        if (!futex_wait(readers)) backoff(idle_rounds);
        return;
    }
  }

 private:
  static void backoff(std::uint32_t rounds) {
    if (rounds < 100) return;
    if (rounds < 200) {
      sched_yield();
      return;
    }
    const std::uint32_t doublings = std::min<std::uint32_t>(rounds - 200, 10);
    std::this_thread::sleep_for(std::chrono::microseconds(1u << doublings));
  }

  // Arms every reader (raise its sleepers flag, re-check its commit), then sleeps
  // on all their commit words at once. False if a reader cannot be armed.
  bool futex_wait(std::vector<JournalReader>& readers) {
    std::vector<WaitEntry>& entries = entries_;
    entries.clear();
    for (JournalReader& reader : readers) {
      JournalReader::SleepTarget target;
      if (!reader.prepare_sleep(target)) return reader.started() && reader.lag_estimate() > 0;
      // FUTEX_32 and no FUTEX_PRIVATE_FLAG: a shared futex, keyed by file and offset.
      entries.push_back(
          WaitEntry{target.expected, reinterpret_cast<std::uint64_t>(target.word), 2, 0});
    }
    if (entries.empty()) return false;
    timespec deadline{};
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    const auto wait_ns = max_wait_.count();
    deadline.tv_sec += static_cast<time_t>(wait_ns / 1'000'000'000);
    deadline.tv_nsec += static_cast<long>(wait_ns % 1'000'000'000);
    if (deadline.tv_nsec >= 1'000'000'000) {
      deadline.tv_sec += 1;
      deadline.tv_nsec -= 1'000'000'000;
    }
    // EAGAIN (a word already moved), ETIMEDOUT, EINTR: the caller re-polls anyway.
    const long result = syscall(SYS_futex_waitv, entries.data(), entries.size(), 0, &deadline,
                                CLOCK_MONOTONIC);
    return result >= 0 || errno != ENOSYS;
  }

  // struct futex_waitv of the kernel ABI.
  struct WaitEntry {
    std::uint64_t val;
    std::uint64_t uaddr;
    std::uint32_t flags;
    std::uint32_t reserved;
  };

  IdleKind kind_;
  std::chrono::nanoseconds max_wait_;
  std::vector<WaitEntry> entries_;  // reused: no allocation per wait
};

}  // namespace radar
