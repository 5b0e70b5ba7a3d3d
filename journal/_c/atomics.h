/* Every access of the C extensions to a header word shared with another process,
 * with its memory ordering (C11 <stdatomic.h>), and the futex calls.
 *
 * The same functions as journal/_publish.py (Python) and radar_reader's atomics.hpp
 * (C++), under the same names; each says which access it pairs with. Here the
 * orderings are real on every CPU: the release store and the acquire load compile
 * to plain moves on x86-64 and to stlr/ldar on aarch64; the seq_cst fence of the
 * futex handshake (a StoreLoad barrier, which even x86-64 needs) to mfence / dmb ish.
 *
 * `segment` is the first byte of a mapped segment (its header); header words are
 * naturally aligned, so the casts to _Atomic types below name the same bytes.
 */
#ifndef JOURNAL_ATOMICS_H
#define JOURNAL_ATOMICS_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "layout.h"

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "8-byte atomics without a lock");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "4-byte atomics without a lock");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4,
               "an atomic word is the plain word");
_Static_assert(JL_COMMIT_OFFSET_OFFSET % 8 == 0 && JL_END_MARKER_OFFSET_OFFSET % 8 == 0 &&
                   JL_FUTEX_SLEEPERS_OFFSET % 4 == 0,
               "header words naturally aligned");

static inline _Atomic uint64_t *journal_word64(unsigned char *segment, size_t offset) {
  return (_Atomic uint64_t *)(void *)(segment + offset);
}

static inline _Atomic uint32_t *journal_word32(unsigned char *segment, size_t offset) {
  return (_Atomic uint32_t *)(void *)(segment + offset);
}

/* Release: every byte below `commit` was written before. Pairs with
 * journal_load_commit_acquire in every reader (and atomics.hpp's, _publish.py's). */
static inline void journal_publish_commit(unsigned char *segment, uint64_t commit) {
  atomic_store_explicit(journal_word64(segment, JL_COMMIT_OFFSET_OFFSET), commit,
                        memory_order_release);
}

/* Acquire: every byte below the returned commit is complete. Pairs with the
 * writer's journal_publish_commit (or journal_publish_seal). */
static inline uint64_t journal_load_commit_acquire(unsigned char *segment) {
  return atomic_load_explicit(journal_word64(segment, JL_COMMIT_OFFSET_OFFSET),
                              memory_order_acquire);
}

/* Seal: the end marker's bytes are written at `marker_offset`; store where it is,
 * then release the commit that covers it (the release orders both stores before
 * it). Pairs with journal_load_end_marker_offset after an acquired commit. */
static inline void journal_publish_seal(unsigned char *segment, uint64_t marker_offset) {
  atomic_store_explicit(journal_word64(segment, JL_END_MARKER_OFFSET_OFFSET), marker_offset,
                        memory_order_relaxed);
  journal_publish_commit(segment, marker_offset + JL_END_MARKER_SIZE);
}

/* After journal_load_commit_acquire: relaxed is enough, the acquire orders it.
 * Pairs with journal_publish_seal and journal_clear_interrupted_seal. */
static inline uint64_t journal_load_end_marker_offset(unsigned char *segment) {
  return atomic_load_explicit(journal_word64(segment, JL_END_MARKER_OFFSET_OFFSET),
                              memory_order_relaxed);
}

/* The recovering writer, under the writer lock, before it publishes anything: undo
 * the first store of an interrupted seal. Pairs with journal_load_end_marker_offset. */
static inline void journal_clear_interrupted_seal(unsigned char *segment) {
  atomic_store_explicit(journal_word64(segment, JL_END_MARKER_OFFSET_OFFSET), 0,
                        memory_order_relaxed);
}

/* A reader about to sleep on the commit word: raise the flag, then a full fence, so
 * that its next commit load cannot be satisfied before the flag is visible (Dekker:
 * the writer stores the commit, fences, loads the flag). Pairs with
 * journal_take_sleepers (and atomics.hpp's announce_sleeper / take_sleepers). */
static inline void journal_announce_sleeper(unsigned char *segment) {
  atomic_store_explicit(journal_word32(segment, JL_FUTEX_SLEEPERS_OFFSET), 1,
                        memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst);
}

/* The writer, after journal_publish_commit: a full fence, then whether a reader said
 * it sleeps; the flag is cleared if so and the caller wakes (journal_futex_wake).
 * With the fence on both sides, either this load sees the flag or the reader's
 * commit load sees the new commit: no wake is missed. Pairs with
 * journal_announce_sleeper. */
static inline int journal_take_sleepers(unsigned char *segment) {
  atomic_thread_fence(memory_order_seq_cst);
  _Atomic uint32_t *flag = journal_word32(segment, JL_FUTEX_SLEEPERS_OFFSET);
  if (atomic_load_explicit(flag, memory_order_relaxed) == 0) return 0;
  atomic_store_explicit(flag, 0, memory_order_relaxed);
  return 1;
}

/* The sleepers flag as it is, no fence: for tools and tests, never the handshake. */
static inline uint32_t journal_load_sleepers_estimate(unsigned char *segment) {
  return atomic_load_explicit(journal_word32(segment, JL_FUTEX_SLEEPERS_OFFSET),
                              memory_order_relaxed);
}

/* -- the metrics counters (journal/_metrics.py) --------------------------------------
 * Estimates for `journal top`: each counter one aligned 8-byte word with one owner,
 * stored whole (never torn) but with no ordering against the commit or each other. */

static inline void journal_store_counter(unsigned char *counters, size_t offset, int64_t value) {
  atomic_store_explicit((_Atomic int64_t *)(void *)(counters + offset), value,
                        memory_order_relaxed);
}

/* The owner adds to its own counter: no other process stores it. */
static inline void journal_add_counter(unsigned char *counters, size_t offset, int64_t delta) {
  _Atomic int64_t *word = (_Atomic int64_t *)(void *)(counters + offset);
  atomic_store_explicit(word, atomic_load_explicit(word, memory_order_relaxed) + delta,
                        memory_order_relaxed);
}

/* -- futex(2) on the commit word's low 32 bits (little-endian: its first 4 bytes) -----
 * A shared futex (no FUTEX_PRIVATE_FLAG): the kernel keys it by file and offset, so
 * it works across processes. Segments are below 4 GiB: the low half is the commit. */

static inline uint32_t *journal_commit_futex_word(unsigned char *segment) {
  return (uint32_t *)(void *)(segment + JL_COMMIT_OFFSET_OFFSET);
}

/* Wake every process waiting on `word`; returns how many woke, or -1 with errno. */
static inline long journal_futex_wake(uint32_t *word) {
  return syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Sleep while *word == expected, at most `timeout` (NULL: no limit). Returns 0 on a
 * wake, or -1 with errno EAGAIN (the value had changed), ETIMEDOUT or EINTR: the
 * caller re-checks the commit in every case. */
static inline long journal_futex_wait(uint32_t *word, uint32_t expected,
                                      const struct timespec *timeout) {
  return syscall(SYS_futex, word, FUTEX_WAIT, expected, timeout, NULL, 0);
}

#endif /* JOURNAL_ATOMICS_H */
