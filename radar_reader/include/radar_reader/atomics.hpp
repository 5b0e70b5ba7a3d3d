// Every access to a word shared with another process, with its memory ordering:
// the commit offset, end_marker_offset and the futex sleepers flag are touched only
// through these functions (journal/_publish.py has the same ones for Python).
//
// The writer (Python on x86-64, or radar_reader's JournalWriter) copies a frame and
// then release-stores the commit offset; readers acquire-load it and read only
// below it. Each function says which access it pairs with; call sites name it too.
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
// that publishes the marker (publish_seal here, or journal/_publish.py's), so this
// load sees it if that commit was seen. Relaxed is enough: the acquire above orders
// it. Pairs with publish_seal and clear_interrupted_seal.
inline std::uint64_t load_end_marker_offset(const std::uint8_t* segment) {
  return __atomic_load_n(word64(segment, layout::kEndMarkerOffsetOffset), __ATOMIC_RELAXED);
}

// Whether `commit` (just acquire-loaded) is the commit that publishes the end marker.
// Pairs with publish_seal.
inline bool is_sealed(const std::uint8_t* segment, std::uint64_t commit) {
  const std::uint64_t marker = load_end_marker_offset(segment);
  return marker != 0 && commit == marker + layout::kEndMarkerSize;
}

// Release: every byte below `commit` was written before. Pairs with
// load_commit_acquire in every reader (here, and journal/_publish.py's).
inline void publish_commit(std::uint8_t* segment, std::uint64_t commit) {
  __atomic_store_n(reinterpret_cast<std::uint64_t*>(segment + layout::kCommitOffsetOffset),
                   commit, __ATOMIC_RELEASE);
}

// Seal: the end marker's bytes are written at `marker_offset`; store where it is,
// then publish the commit that covers it. Pairs with load_end_marker_offset and
// is_sealed (and Python's load_end_marker_offset, is_sealed).
inline void publish_seal(std::uint8_t* segment, std::uint64_t marker_offset) {
  __atomic_store_n(reinterpret_cast<std::uint64_t*>(segment + layout::kEndMarkerOffsetOffset),
                   marker_offset, __ATOMIC_RELAXED);
  publish_commit(segment, marker_offset + layout::kEndMarkerSize);
}

// Undo the first store of a seal a crash interrupted (end_marker_offset stored, the
// commit never moved past the marker): the segment is open again. Only a writer
// resuming the journal calls it, under the writer lock, before it publishes
// anything. Pairs with load_end_marker_offset in readers, which take such an offset
// for a seal under way until it is gone (Python: clear_interrupted_seal).
inline void clear_interrupted_seal(std::uint8_t* segment) {
  __atomic_store_n(reinterpret_cast<std::uint64_t*>(segment + layout::kEndMarkerOffsetOffset),
                   std::uint64_t{0}, __ATOMIC_RELAXED);
}

inline std::uint32_t* sleepers_word(std::uint8_t* header) {
  return reinterpret_cast<std::uint32_t*>(header + layout::kFutexSleepersOffset);
}

// A reader about to sleep: raise the flag, then a full fence so the commit load
// that follows cannot be satisfied before the flag is visible to the writer (the
// writer stores the commit, then loads the flag: the StoreLoad pair of Dekker).
// Pairs with take_sleepers (and Python's load_sleepers / clear_sleepers); Python's
// raise_sleepers_flag is the same store without the fence.
inline void announce_sleeper(std::uint8_t* header) {
  __atomic_store_n(sleepers_word(header), 1u, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

// The writer, after publish_commit: a full fence, then whether anyone sleeps; the
// flag is cleared if so (the caller then wakes them). Pairs with announce_sleeper
// (and Python's raise_sleepers_flag).
inline bool take_sleepers(std::uint8_t* header) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  if (__atomic_load_n(sleepers_word(header), __ATOMIC_RELAXED) == 0) return false;
  __atomic_store_n(sleepers_word(header), 0u, __ATOMIC_RELAXED);
  return true;
}

// The futex word: the low 32 bits of the commit offset (little-endian: its first 4
// bytes). Segments are below 4 GiB, so it identifies the commit. A reader waits on
// it with the value its load_commit_acquire saw; the writer wakes it after
// publish_commit (FUTEX_WAIT / FUTEX_WAKE, not an access of its own).
inline std::uint32_t* commit_futex_word(std::uint8_t* header) {
  return reinterpret_cast<std::uint32_t*>(header + layout::kCommitOffsetOffset);
}

}  // namespace radar::atomics
