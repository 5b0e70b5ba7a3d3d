// Every access to a word shared with another process, with its memory ordering:
// the commit offset, end_marker_offset and the futex sleepers flag are touched only
// through these functions (journal/_publish.py has the same ones for Python), and so
// are the radar's metrics words (radar_metrics.hpp; journal/_radar_metrics.py reads
// them).
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

// -- Metrics words (radar_metrics.hpp): one owner stores, any process loads --------
// A metrics word is an aligned u64 in a file others map read-only. The owner is the
// only writer, so it never needs a read-modify-write: it keeps its own copy of a
// counter and stores the new value.

// A counter or figure: one relaxed 8-byte store, ordered with nothing (a reader may
// see an older set of words, never half of one). Pairs with any reader's plain
// 8-byte load (journal/_radar_metrics.py: a memoryview item).
inline void store_word_relaxed(std::uint64_t* word, std::uint64_t value) {
  __atomic_store_n(word, value, __ATOMIC_RELAXED);
}

inline std::uint64_t load_word_relaxed(const std::uint64_t* word) {
  return __atomic_load_n(word, __ATOMIC_RELAXED);
}

// A count of slots whose contents (names) were written before: release, so a reader
// whose acquire load sees `count` sees every byte of slots below it. Pairs with
// load_count_acquire (Python: a plain load, x86-64 keeps loads in order).
inline void publish_count_release(std::uint64_t* word, std::uint64_t count) {
  __atomic_store_n(word, count, __ATOMIC_RELEASE);
}

// Pairs with publish_count_release.
inline std::uint64_t load_count_acquire(const std::uint64_t* word) {
  return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

// A sequence lock with one writer (Boehm, "Can seqlocks get along with programming
// language memory models?"). The writer makes the sequence odd, then a release fence
// keeps every data store after it from being seen before the odd sequence; it stores
// the data (store_word_relaxed), then the next even sequence with release, after the
// data. Pairs with seqlock_read_begin / seqlock_read_valid (Python: the same loads
// in program order, which x86-64 keeps).
inline void seqlock_write_begin(std::uint64_t* sequence, std::uint64_t odd) {
  __atomic_store_n(sequence, odd, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}

// Pairs with seqlock_read_begin: data stored before it is seen by a reader that
// acquires `even`.
inline void seqlock_write_end(std::uint64_t* sequence, std::uint64_t even) {
  __atomic_store_n(sequence, even, __ATOMIC_RELEASE);
}

// A reader: the sequence before the data (acquire: the data loads that follow see at
// least what the writer stored before it). Odd means a write is under way: retry.
// Pairs with seqlock_write_end.
inline std::uint64_t seqlock_read_begin(const std::uint64_t* sequence) {
  return __atomic_load_n(sequence, __ATOMIC_ACQUIRE);
}

// After the data loads (load_word_relaxed): whether they belong to one write. The
// acquire fence keeps the data loads before the sequence's second load; if a data
// load saw a store of a later write, this load sees that write's odd sequence (the
// writer's release fence), so `begin` differs. Pairs with seqlock_write_begin.
inline bool seqlock_read_valid(const std::uint64_t* sequence, std::uint64_t begin) {
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  return (begin & 1) == 0 && __atomic_load_n(sequence, __ATOMIC_RELAXED) == begin;
}

}  // namespace radar::atomics
