// Every access to a word shared with another process, with its memory ordering.
//
// The writer (Python on x86-64, or radar_reader's ResultsWriter) copies a frame and
// then release-stores the commit offset; readers acquire-load it and read only
// below it. Call sites name the operation they pair with.
#pragma once

#include <cstdint>

#include "radar_reader/layout.hpp"

namespace radar::atomics {

inline const std::uint64_t* word64(const std::uint8_t* segment, std::size_t offset) {
  return reinterpret_cast<const std::uint64_t*>(segment + offset);
}

// Acquire: every byte below the returned commit is complete. Pairs with the
// writer's publish_commit (journal/_publish.py, or publish_commit below).
inline std::uint64_t load_commit_acquire(const std::uint8_t* segment) {
  return __atomic_load_n(word64(segment, layout::kCommitOffsetOffset), __ATOMIC_ACQUIRE);
}

// After load_commit_acquire: the writer stores end_marker_offset before the commit
// that publishes the marker (publish_seal), so this load sees it if that commit
// was seen. Relaxed is enough: the acquire above orders it.
inline std::uint64_t load_end_marker_offset(const std::uint8_t* segment) {
  return __atomic_load_n(word64(segment, layout::kEndMarkerOffsetOffset), __ATOMIC_RELAXED);
}

// Whether `commit` (just acquire-loaded) is the commit that publishes the end marker.
inline bool is_sealed(const std::uint8_t* segment, std::uint64_t commit) {
  const std::uint64_t marker = load_end_marker_offset(segment);
  return marker != 0 && commit == marker + layout::kEndMarkerSize;
}

// Release: every byte below `commit` was written before. Pairs with
// load_commit_acquire in every reader.
inline void publish_commit(std::uint8_t* segment, std::uint64_t commit) {
  __atomic_store_n(reinterpret_cast<std::uint64_t*>(segment + layout::kCommitOffsetOffset),
                   commit, __ATOMIC_RELEASE);
}

// Seal: the end marker's bytes are written at `marker_offset`; store where it is,
// then publish the commit that covers it. Pairs with is_sealed.
inline void publish_seal(std::uint8_t* segment, std::uint64_t marker_offset) {
  __atomic_store_n(reinterpret_cast<std::uint64_t*>(segment + layout::kEndMarkerOffsetOffset),
                   marker_offset, __ATOMIC_RELAXED);
  publish_commit(segment, marker_offset + layout::kEndMarkerSize);
}

inline std::uint32_t* sleepers_word(std::uint8_t* header) {
  return reinterpret_cast<std::uint32_t*>(header + layout::kFutexSleepersOffset);
}

// A reader about to sleep: raise the flag, then a full fence so the commit load
// that follows cannot be satisfied before the flag is visible to the writer (the
// writer stores the commit, then loads the flag: the StoreLoad pair of Dekker).
inline void announce_sleeper(std::uint8_t* header) {
  __atomic_store_n(sleepers_word(header), 1u, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

// The writer, after publish_commit: a full fence, then whether anyone sleeps.
inline bool take_sleepers(std::uint8_t* header) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  if (__atomic_load_n(sleepers_word(header), __ATOMIC_RELAXED) == 0) return false;
  __atomic_store_n(sleepers_word(header), 0u, __ATOMIC_RELAXED);
  return true;
}

// The futex word: the low 32 bits of the commit offset (little-endian: its first 4
// bytes). Segments are below 4 GiB, so it identifies the commit.
inline std::uint32_t* commit_futex_word(std::uint8_t* header) {
  return reinterpret_cast<std::uint32_t*>(header + layout::kCommitOffsetOffset);
}

}  // namespace radar::atomics
