/* The futex handshake of journal/_c/atomics.h as a store-buffering litmus test.
 *
 * Two threads, many iterations, each on a fresh header: the writer publishes commit
 * i + 1 then takes the sleepers flag (journal_take_sleepers); the reader announces
 * itself (journal_announce_sleeper) then loads the commit. A wake is missed when the
 * writer saw no sleeper AND the reader saw the old commit: it would sleep on a
 * commit that already moved, and nobody would wake it. The fences make that outcome
 * impossible; without the writer's fence (`unfenced`, what a plain load after a plain
 * store gives, as Python's) x86-64 shows it: tests/test_futex_wake.py runs both.
 *
 *   litmus_handshake ITERATIONS fenced|unfenced   -> prints "missed N"
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomics.h"

enum { SLOTS = 4096, SLOT_SIZE = 512 };
_Static_assert(JL_FUTEX_SLEEPERS_OFFSET + 4 <= SLOT_SIZE, "a slot holds both words");

static unsigned char *slots;
static long iterations;
static int fenced;
static _Atomic long writer_at, reader_at; /* the iteration each thread has reached */
static unsigned char *took, *stale;

static unsigned char *slot(long i) { return slots + (size_t)(i % SLOTS) * SLOT_SIZE; }

/* Both threads enter iteration i together (a two-thread barrier). Slot i + 1 is
 * cleared by the writer after its iteration i, before it arrives at i + 1 (the
 * reader, past arrive(i), is done with every slot but i's). */
static void arrive(_Atomic long *mine, _Atomic long *other, long i) {
  atomic_store_explicit(mine, i, memory_order_release);
  while (atomic_load_explicit(other, memory_order_acquire) < i) {
  }
}

static int take_unfenced(unsigned char *segment) {
  _Atomic uint32_t *flag = journal_word32(segment, JL_FUTEX_SLEEPERS_OFFSET);
  return atomic_load_explicit(flag, memory_order_relaxed) != 0;
}

static void *writer(void *unused) {
  (void)unused;
  for (long i = 1; i <= iterations; i++) {
    arrive(&writer_at, &reader_at, i);
    unsigned char *segment = slot(i);
    journal_publish_commit(segment, (uint64_t)i);
    took[i] = (unsigned char)(fenced ? journal_take_sleepers(segment) : take_unfenced(segment));
    memset(slot(i + 1), 0, SLOT_SIZE);
  }
  return NULL;
}

static void *reader(void *unused) {
  (void)unused;
  for (long i = 1; i <= iterations; i++) {
    arrive(&reader_at, &writer_at, i);
    unsigned char *segment = slot(i);
    journal_announce_sleeper(segment);
    stale[i] = journal_load_commit_acquire(segment) != (uint64_t)i;
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  iterations = atol(argv[1]);
  fenced = strcmp(argv[2], "fenced") == 0;
  slots = aligned_alloc(64, (size_t)SLOTS * SLOT_SIZE);
  took = calloc((size_t)iterations + 1, 1);
  stale = calloc((size_t)iterations + 1, 1);
  if (slots == NULL || took == NULL || stale == NULL) return 2;
  memset(slots, 0, (size_t)SLOTS * SLOT_SIZE);
  pthread_t threads[2];
  if (pthread_create(&threads[0], NULL, writer, NULL) ||
      pthread_create(&threads[1], NULL, reader, NULL))
    return 2;
  pthread_join(threads[0], NULL);
  pthread_join(threads[1], NULL);
  long missed = 0;
  for (long i = 1; i <= iterations; i++) missed += !took[i] && stale[i];
  printf("missed %ld\n", missed);
  return 0;
}
