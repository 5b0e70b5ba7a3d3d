/* journal._cwriter: the writer's hot path in C, and the shared-memory atomics.
 *
 * The pure-Python writer (journal/_writer.py, journal/_encode.py) is the reference:
 * this module lays out the same bytes and accepts exactly the same books. Where it
 * meets anything it does not handle (an invalid book, an int price, a numpy array,
 * a new segment needed), it leaves the call to the Python path, which refuses or
 * writes as it always has: errors are never reworded here.
 *
 * journal/_native.py decides whether this module is used (JOURNAL_PURE_PYTHON=1
 * forces the pure path).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <string.h>
#include <structmember.h>

#include "atomics.h"
#include "layout.h"
#include "orderbook_read.h"

/* Whether a METH_FASTCALL function got its `expected` positional arguments. */
static int check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t expected) {
  if (nargs == expected) return 1;
  PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, expected, nargs);
  return 0;
}

/* -- the atomics of journal/_publish.py, on its word views -----------------------------
 * journal._publish hands the header of a mapped segment as a memoryview (cast to u64
 * or u32 words); these take any buffer whose first byte is the segment's first. */

static unsigned char *segment_of(PyObject *words, Py_buffer *view, int writable,
                                 size_t need) {
  if (PyObject_GetBuffer(words, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
    return NULL;
  if ((size_t)view->len < need) {
    PyErr_Format(PyExc_ValueError, "a segment header of %zd bytes, need %zu", view->len, need);
    PyBuffer_Release(view);
    return NULL;
  }
  return (unsigned char *)view->buf;
}

static PyObject *py_publish_commit(PyObject *Py_UNUSED(module), PyObject *const *args,
                                   Py_ssize_t nargs) {
  if (!check_nargs("publish_commit", nargs, 2)) return NULL;
  unsigned long long commit = PyLong_AsUnsignedLongLong(args[1]);
  if (commit == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
  Py_buffer view;
  unsigned char *segment = segment_of(args[0], &view, 1, JL_COMMIT_OFFSET_OFFSET + 8);
  if (segment == NULL) return NULL;
  journal_publish_commit(segment, commit);
  PyBuffer_Release(&view);
  Py_RETURN_NONE;
}

static PyObject *py_load_commit_acquire(PyObject *Py_UNUSED(module), PyObject *words) {
  Py_buffer view;
  unsigned char *segment = segment_of(words, &view, 0, JL_COMMIT_OFFSET_OFFSET + 8);
  if (segment == NULL) return NULL;
  uint64_t commit = journal_load_commit_acquire(segment);
  PyBuffer_Release(&view);
  return PyLong_FromUnsignedLongLong(commit);
}

static PyObject *py_publish_seal(PyObject *Py_UNUSED(module), PyObject *const *args,
                                 Py_ssize_t nargs) {
  if (!check_nargs("publish_seal", nargs, 2)) return NULL;
  unsigned long long marker = PyLong_AsUnsignedLongLong(args[1]);
  if (marker == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
  Py_buffer view;
  unsigned char *segment = segment_of(args[0], &view, 1, JL_COMMIT_OFFSET_OFFSET + 8);
  if (segment == NULL) return NULL;
  journal_publish_seal(segment, marker);
  PyBuffer_Release(&view);
  Py_RETURN_NONE;
}

static PyObject *py_load_end_marker_offset(PyObject *Py_UNUSED(module), PyObject *words) {
  Py_buffer view;
  unsigned char *segment = segment_of(words, &view, 0, JL_END_MARKER_OFFSET_OFFSET + 8);
  if (segment == NULL) return NULL;
  uint64_t marker = journal_load_end_marker_offset(segment);
  PyBuffer_Release(&view);
  return PyLong_FromUnsignedLongLong(marker);
}

static PyObject *py_clear_interrupted_seal(PyObject *Py_UNUSED(module), PyObject *words) {
  Py_buffer view;
  unsigned char *segment = segment_of(words, &view, 1, JL_END_MARKER_OFFSET_OFFSET + 8);
  if (segment == NULL) return NULL;
  journal_clear_interrupted_seal(segment);
  PyBuffer_Release(&view);
  Py_RETURN_NONE;
}

static PyObject *py_raise_sleepers_flag(PyObject *Py_UNUSED(module), PyObject *words) {
  Py_buffer view;
  unsigned char *segment = segment_of(words, &view, 1, JL_FUTEX_SLEEPERS_OFFSET + 4);
  if (segment == NULL) return NULL;
  journal_announce_sleeper(segment);
  PyBuffer_Release(&view);
  Py_RETURN_NONE;
}

/* The writer after a commit: the fence, then the flag (journal_take_sleepers without
 * clearing it: journal._publish clears it with clear_sleepers before it wakes). */
static PyObject *py_load_sleepers(PyObject *Py_UNUSED(module), PyObject *words) {
  Py_buffer view;
  unsigned char *segment = segment_of(words, &view, 0, JL_FUTEX_SLEEPERS_OFFSET + 4);
  if (segment == NULL) return NULL;
  atomic_thread_fence(memory_order_seq_cst); /* pairs with journal_announce_sleeper */
  uint32_t sleepers = journal_load_sleepers_estimate(segment);
  PyBuffer_Release(&view);
  return PyLong_FromUnsignedLong(sleepers);
}

static PyObject *py_clear_sleepers(PyObject *Py_UNUSED(module), PyObject *words) {
  Py_buffer view;
  unsigned char *segment = segment_of(words, &view, 1, JL_FUTEX_SLEEPERS_OFFSET + 4);
  if (segment == NULL) return NULL;
  /* Relaxed: readers raise the flag again before each sleep (journal_announce_sleeper). */
  atomic_store_explicit(journal_word32(segment, JL_FUTEX_SLEEPERS_OFFSET), 0,
                        memory_order_relaxed);
  PyBuffer_Release(&view);
  Py_RETURN_NONE;
}

/* -- futex by address, as journal/_futex.py takes it ------------------------------------ */

static PyObject *py_futex_wake(PyObject *Py_UNUSED(module), PyObject *address) {
  void *word = PyLong_AsVoidPtr(address);
  if (word == NULL && PyErr_Occurred()) return NULL;
  long woken = journal_futex_wake((uint32_t *)word);
  if (woken < 0) {
    int error = errno;
    return PyErr_Format(PyExc_OSError, "futex wake at address=%p: %s", word, strerror(error));
  }
  return PyLong_FromLong(woken);
}

static PyObject *py_futex_wait(PyObject *Py_UNUSED(module), PyObject *const *args,
                               Py_ssize_t nargs) {
  if (!check_nargs("futex_wait", nargs, 3)) return NULL;
  void *word = PyLong_AsVoidPtr(args[0]);
  if (word == NULL && PyErr_Occurred()) return NULL;
  unsigned long long expected = PyLong_AsUnsignedLongLongMask(args[1]);
  if (expected == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
  double timeout_s = PyFloat_AsDouble(args[2]);
  if (timeout_s == -1.0 && PyErr_Occurred()) return NULL;
  if (!(timeout_s >= 0.0)) timeout_s = 0.0;
  struct timespec timeout = {(time_t)timeout_s,
                             (long)((timeout_s - (double)(time_t)timeout_s) * 1e9)};
  long result;
  int error;
  Py_BEGIN_ALLOW_THREADS;
  result = journal_futex_wait((uint32_t *)word, (uint32_t)expected, &timeout);
  error = errno;
  Py_END_ALLOW_THREADS;
  if (result < 0 && error != EAGAIN && error != ETIMEDOUT && error != EINTR)
    return PyErr_Format(PyExc_OSError, "futex wait at address=%p: %s", word, strerror(error));
  Py_RETURN_NONE;
}

/* == The writer's hot path ================================================================
 *
 * WriterCore is the base class of journal.Writer when the extension is in use: it
 * holds the hot state (_position, _limit, _index, _records, _next_check_ns,
 * _time_next: the same attributes journal/_writer.py uses on the pure path, so both
 * paths see one state) and buffers on the mapped segment and the metrics counters.
 * Its append_orderbook / append_dict / append_many handle a book when every value is
 * what the generated Python writer takes on its fast path and the record fits the
 * segment; anything else goes, untouched, to the Python method of the same name with
 * a "_python" suffix (the reference), which refuses, converts or rolls.
 */

typedef struct {
  PyObject_HEAD
  long long position;      /* where the next record goes */
  long long limit;         /* no record may end past it; 0 or -1: the Python path */
  long long index;         /* the segment appended to */
  long long records;       /* counted in the metrics */
  long long next_check_ns; /* when the journal is checked again (Python path) */
  char time_next;          /* time this append into the latency histogram */
  char frames_fast;        /* append_frames may check OBK1 records here (the journal's payload) */
  char has_map, has_counters;
  Py_buffer map;      /* the mapped segment, from its first byte */
  Py_buffer counters; /* the writer's metrics file, from its first byte */
  Py_ssize_t max_levels, max_name_bytes;
  struct book *batch; /* append_many's books, parsed */
  Py_ssize_t batch_capacity;
} WriterCore;

/* A book as the fast path takes it: names as UTF-8, integers as int64, the levels
 * (borrowed: the caller's lists or tuples hold them, and no Python code runs
 * between parsing and writing) checked. */
struct book {
  const char *exchange, *symbol;
  Py_ssize_t exchange_len, symbol_len;
  int64_t timestamp, sequence, local_timestamp_ns;
  int stamp; /* no local_timestamp_ns given: the clock's, when published */
  PyObject *bids, *asks;
  Py_ssize_t n_bids, n_asks;
  size_t exchange_pos, symbol_pos, size;
};

static PyObject *zero; /* the int 0 */
static PyObject *str_exchangename, *str_symbol, *str_timestamp, *str_sequence, *str_bids,
    *str_asks, *str_local_timestamp_ns, *str_append_orderbook_python, *str_append_dict_python,
    *str_append_many_python, *str_publish_python, *str_unexpected, *str_append_frames_python,
    *str_check_journal;

static int64_t realtime_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now); /* time.time_ns() */
  return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static int64_t monotonic_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now); /* time.perf_counter_ns() */
  return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* A name the Python path takes as it is (journal/_encode.py _encode_name): an exact
 * str, not empty, UTF-8 encodable, at most max_bytes of it, without a control
 * character (Unicode category Cc: U+0000-U+001F, U+007F-U+009F, NUL included).
 * 0: leave it to the Python path. */
static int parse_name(PyObject *name, Py_ssize_t max_bytes, const char **utf8,
                      Py_ssize_t *length) {
  if (!PyUnicode_CheckExact(name)) return 0;
  const char *bytes = PyUnicode_AsUTF8AndSize(name, length);
  if (bytes == NULL) { /* a lone surrogate: not encodable */
    PyErr_Clear();
    return 0;
  }
  if (*length == 0 || *length > max_bytes) return 0;
  const unsigned char *b = (const unsigned char *)bytes;
  for (Py_ssize_t i = 0; i < *length; i++) {
    if (b[i] < 0x20 || b[i] == 0x7f) return 0;
    /* U+0080-U+009F: 0xC2 then 0x80-0x9F (0xC2 is never a continuation byte) */
    if (b[i] == 0xc2 && i + 1 < *length && b[i + 1] <= 0x9f) return 0;
  }
  *utf8 = bytes;
  return 1;
}

/* An exact int in the int64 range (a bool is not one; the Python path names it). */
static int parse_int64(PyObject *value, int64_t *out) {
  if (!PyLong_CheckExact(value)) return 0;
  int overflow;
  long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
  if (overflow || (v == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    return 0;
  }
  *out = v;
  return 1;
}

/* One side, as the generated writer's fast check takes it: an exact list or tuple of
 * at most max_levels levels, each an exact list or tuple of two exact floats;
 * prices strictly better first (bids: INF > b0 > b1 > ... > 0; asks: 0 < a0 < ... <
 * INF), quantities finite and >= 0 (NaN fails every comparison). */
static int check_side(PyObject *levels, int bids, Py_ssize_t max_levels, Py_ssize_t *count) {
  if (!PyList_CheckExact(levels) && !PyTuple_CheckExact(levels)) return 0;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(levels);
  if (n > max_levels) return 0;
  PyObject **items = PySequence_Fast_ITEMS(levels);
  double previous = bids ? INFINITY : 0.0;
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *level = items[i];
    if (!PyList_CheckExact(level) && !PyTuple_CheckExact(level)) return 0;
    if (PySequence_Fast_GET_SIZE(level) != 2) return 0;
    PyObject **pair = PySequence_Fast_ITEMS(level);
    if (!PyFloat_CheckExact(pair[0]) || !PyFloat_CheckExact(pair[1])) return 0;
    double price = PyFloat_AS_DOUBLE(pair[0]), quantity = PyFloat_AS_DOUBLE(pair[1]);
    if (bids ? !(price < previous) : !(price > previous)) return 0;
    if (!(quantity >= 0.0 && quantity < INFINITY)) return 0;
    previous = price;
  }
  if (n && (bids ? !(previous > 0.0) : !(previous < INFINITY))) return 0;
  *count = n;
  return 1;
}

static double best_price(PyObject *levels) {
  PyObject *level = PySequence_Fast_ITEMS(levels)[0];
  return PyFloat_AS_DOUBLE(PySequence_Fast_ITEMS(level)[0]);
}

/* Everything but the names and the integers: the levels, the crossing, the size. */
static int check_book(WriterCore *self, struct book *book) {
  if (!check_side(book->bids, 1, self->max_levels, &book->n_bids)) return 0;
  if (!check_side(book->asks, 0, self->max_levels, &book->n_asks)) return 0;
  if (book->n_bids && book->n_asks && !(best_price(book->bids) < best_price(book->asks)))
    return 0;
  /* The positions of journal/_encode.py build_shape. */
  size_t asks_vector = OBL_ASKS_VECTOR_POS((size_t)book->n_bids);
  book->exchange_pos = asks_vector + OBL_UOFFSET_SIZE + OBL_LEVEL_SIZE * (size_t)book->n_asks;
  size_t exchange_block = OBL_UOFFSET_SIZE + (size_t)book->exchange_len + 1;
  exchange_block += -exchange_block % OBL_UOFFSET_SIZE;
  book->symbol_pos = book->exchange_pos + exchange_block;
  size_t size = book->symbol_pos + OBL_UOFFSET_SIZE + (size_t)book->symbol_len + 1;
  book->size = size + (-size % JL_RECORD_ALIGNMENT);
  return 1;
}

/* append_orderbook's arguments; `local` NULL or None: stamp. 0: the Python path. */
static int parse_book(WriterCore *self, struct book *book, PyObject *exchange, PyObject *symbol,
                      PyObject *timestamp, PyObject *sequence, PyObject *bids, PyObject *asks,
                      PyObject *local) {
  if (!parse_name(exchange, self->max_name_bytes, &book->exchange, &book->exchange_len) ||
      !parse_name(symbol, self->max_name_bytes, &book->symbol, &book->symbol_len) ||
      !parse_int64(timestamp, &book->timestamp) || !parse_int64(sequence, &book->sequence))
    return 0;
  book->stamp = local == NULL || local == Py_None;
  book->local_timestamp_ns = 0;
  if (!book->stamp && !parse_int64(local, &book->local_timestamp_ns)) return 0;
  book->bids = bids;
  book->asks = asks;
  return check_book(self, book);
}

/* Lay the book out at `record` (8-aligned, book->size bytes), every byte of it, as
 * journal/_encode.py's generated writer does; local_timestamp_ns is stored after. */
static void write_levels(unsigned char *at, PyObject *levels, Py_ssize_t n) {
  PyObject **items = PySequence_Fast_ITEMS(levels);
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject **pair = PySequence_Fast_ITEMS(items[i]);
    double level[2] = {PyFloat_AS_DOUBLE(pair[0]), PyFloat_AS_DOUBLE(pair[1])};
    memcpy(at + OBL_LEVEL_SIZE * (size_t)i, level, OBL_LEVEL_SIZE);
  }
}

static void write_name(unsigned char *at, const char *name, Py_ssize_t length, size_t end) {
  uint32_t prefix = (uint32_t)length;
  memcpy(at, &prefix, OBL_UOFFSET_SIZE);
  memcpy(at + OBL_UOFFSET_SIZE, name, (size_t)length);
  unsigned char *after = at + OBL_UOFFSET_SIZE + length; /* NUL, then zero padding */
  memset(after, 0, end - (size_t)(after - at));
}

static void write_book(unsigned char *record, const struct book *book) {
  struct obl_head head = {
      .size_prefix = (uint32_t)(book->size - JL_SIZE_PREFIX_SIZE),
      .root_offset = OBL_TABLE_POS - OBL_ROOT_OFFSET_POS,
      .payload_id = {OBL_PAYLOAD_ID[0], OBL_PAYLOAD_ID[1], OBL_PAYLOAD_ID[2], OBL_PAYLOAD_ID[3]},
      .vtable_size = OBL_VTABLE_SIZE,
      .table_size = OBL_TABLE_SIZE,
      .vtable_fields =
          {
              [OBL_FIELD_EXCHANGE_NAME] = OBL_EXCHANGE_NAME_FIELD,
              [OBL_FIELD_SYMBOL] = OBL_SYMBOL_FIELD,
              [OBL_FIELD_TIMESTAMP] = OBL_TIMESTAMP_FIELD,
              [OBL_FIELD_SEQUENCE] = OBL_SEQUENCE_FIELD,
              [OBL_FIELD_BIDS] = OBL_BIDS_FIELD,
              [OBL_FIELD_ASKS] = OBL_ASKS_FIELD,
              [OBL_FIELD_LOCAL_TIMESTAMP_NS] = OBL_LOCAL_TIMESTAMP_NS_FIELD,
          },
      .vtable_padding = 0,
      .table_soffset = OBL_TABLE_POS - OBL_VTABLE_POS,
      .exchange_name = (uint32_t)(book->exchange_pos - OBL_EXCHANGE_NAME_POS),
      .timestamp = book->timestamp,
      .sequence = book->sequence,
      .local_timestamp_ns = book->local_timestamp_ns,
      .symbol = (uint32_t)(book->symbol_pos - OBL_SYMBOL_POS),
      .bids = OBL_BIDS_VECTOR_POS - OBL_BIDS_POS,
      .asks = (uint32_t)(OBL_ASKS_VECTOR_POS((size_t)book->n_bids) - OBL_ASKS_POS),
      .bids_count = (uint32_t)book->n_bids,
  };
  memcpy(record, &head, sizeof head);
  write_levels(record + OBL_BIDS_LEVELS_POS, book->bids, book->n_bids);
  size_t asks_vector = OBL_ASKS_VECTOR_POS((size_t)book->n_bids);
  uint32_t asks_padding = 0, asks_count = (uint32_t)book->n_asks;
  memcpy(record + asks_vector - OBL_ASKS_PADDING, &asks_padding, OBL_ASKS_PADDING);
  memcpy(record + asks_vector, &asks_count, OBL_UOFFSET_SIZE);
  write_levels(record + asks_vector + OBL_UOFFSET_SIZE, book->asks, book->n_asks);
  write_name(record + book->exchange_pos, book->exchange, book->exchange_len,
             book->symbol_pos - book->exchange_pos);
  write_name(record + book->symbol_pos, book->symbol, book->symbol_len,
             book->size - book->symbol_pos);
}

static void store_local_timestamp(unsigned char *record, int64_t local_timestamp_ns) {
  memcpy(record + OBL_LOCAL_TIMESTAMP_NS_POS, &local_timestamp_ns, OBL_VALUE_SIZE);
}

/* Release the commit, then the futex handshake: a full fence, the sleepers flag, a
 * wake if a reader said it sleeps (atomics.h). -1 with OSError if the wake fails
 * (the records are committed all the same, as on the Python path). */
static int publish(WriterCore *self, long long end) {
  unsigned char *segment = (unsigned char *)self->map.buf;
  self->position = end;
  journal_publish_commit(segment, (uint64_t)end); /* pairs with readers' acquire */
  if (journal_take_sleepers(segment)) {           /* pairs with journal_announce_sleeper */
    uint32_t *word = journal_commit_futex_word(segment);
    if (journal_futex_wake(word) < 0) {
      int error = errno;
      PyErr_Format(PyExc_OSError, "futex wake at address=%p: %s", (void *)word,
                   strerror(error));
      return -1;
    }
  }
  return 0;
}

/* Publish ``count`` records ending at ``end`` with one commit, and count them for
 * journal top; their count as the Python result, NULL with the error set. */
static PyObject *publish_many(WriterCore *self, long long end, Py_ssize_t count) {
  if (publish(self, end) < 0) return NULL;
  if (self->has_counters) {
    unsigned char *counters = (unsigned char *)self->counters.buf;
    self->records += count;
    journal_store_counter(counters, ML_RECORDS_TOTAL_OFFSET, self->records);
    journal_store_counter(counters, ML_LAST_PUBLISH_NS_OFFSET, realtime_ns());
  }
  return PyLong_FromSsize_t(count);
}

/* The fast path of append_orderbook: 1 written (position in *result), 0 the Python
 * path, -1 an error (set). Nothing is written unless everything passed. */
static int try_append(WriterCore *self, PyObject *exchange, PyObject *symbol, PyObject *timestamp,
                      PyObject *sequence, PyObject *bids, PyObject *asks, PyObject *local,
                      PyObject **result) {
  int64_t started = self->time_next ? monotonic_ns() : 0;
  struct book book;
  if (!self->has_map ||
      !parse_book(self, &book, exchange, symbol, timestamp, sequence, bids, asks, local))
    return 0;
  long long position = self->position, end = position + (long long)book.size;
  if (end > self->limit || end > (long long)self->map.len) return 0; /* a roll, a check */
  unsigned char *record = (unsigned char *)self->map.buf + position;
  write_book(record, &book);
  if (book.stamp) {
    book.local_timestamp_ns = realtime_ns(); /* once laid out, just before the commit */
    store_local_timestamp(record, book.local_timestamp_ns);
    if (book.local_timestamp_ns >= self->next_check_ns) self->limit = 0; /* next: check */
  }
  if (publish(self, end) < 0) return -1;
  if (self->has_counters) {
    /* Figures for journal top: no ordering with the commit is needed. */
    unsigned char *counters = (unsigned char *)self->counters.buf;
    long long records = ++self->records;
    journal_store_counter(counters, ML_RECORDS_TOTAL_OFFSET, records);
    journal_store_counter(counters, ML_LAST_PUBLISH_NS_OFFSET, book.local_timestamp_ns);
    if (started) {
      int64_t latency = monotonic_ns() - started;
      if (latency < 0) latency = 0;
      unsigned bucket = journal_latency_bucket((uint64_t)latency);
      journal_add_counter(counters, ML_LATENCY_COUNTS_OFFSET + 8 * (size_t)bucket, 1);
      journal_add_counter(counters, ML_LATENCY_SUM_NS_OFFSET, latency);
      self->time_next = 0;
    } else if (!(records & (ML_LATENCY_SAMPLE_PERIOD - 1))) {
      self->time_next = 1; /* one append in LATENCY_SAMPLE_PERIOD */
      if (realtime_ns() >= self->next_check_ns) self->limit = 0;
    }
  }
  PyObject *index = PyLong_FromLongLong(self->index);
  PyObject *offset = index ? PyLong_FromLongLong(position) : NULL;
  *result = offset ? PyTuple_Pack(2, index, offset) : NULL;
  Py_XDECREF(index);
  Py_XDECREF(offset);
  return *result ? 1 : -1;
}

/* self.<name>(*args, **kwargs): the Python path, with the arguments as given (a
 * METH_FASTCALL | METH_KEYWORDS method's: positional ones, then the keywords' values). */
static PyObject *python_path(PyObject *self, PyObject *name, PyObject *const *args,
                             size_t nargsf, PyObject *kwnames) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
  PyObject *small[12];
  PyObject **all = total + 1 <= 12 ? small : PyMem_Malloc(sizeof(PyObject *) * (size_t)(total + 1));
  if (all == NULL) return PyErr_NoMemory();
  all[0] = self;
  for (Py_ssize_t i = 0; i < total; i++) all[i + 1] = args[i];
  PyObject *result = PyObject_VectorcallMethod(name, all, (size_t)(nargs + 1), kwnames);
  if (all != small) PyMem_Free(all);
  return result;
}

static PyObject *core_append_orderbook(WriterCore *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames) {
  if (kwnames == NULL && (nargs == 6 || nargs == 7)) {
    PyObject *result;
    int done = try_append(self, args[0], args[1], args[2], args[3], args[4], args[5],
                          nargs == 7 ? args[6] : NULL, &result);
    if (done) return done > 0 ? result : NULL;
  }
  return python_path((PyObject *)self, str_append_orderbook_python, args, (size_t)nargs, kwnames);
}

/* A to_dict() book's values (borrowed): exchangename, symbol, timestamp, sequence,
 * bids, asks, then local_timestamp_ns or NULL; 0 if a required key is missing.
 * One pass over the entries matches the keys by identity (a dict literal's keys are
 * the interned strings these are); keys not found so (built at run time, say by a
 * JSON parser) are then looked up. */
static int dict_values(PyObject *book, PyObject **values) {
  PyObject *keys[7] = {str_exchangename, str_symbol, str_timestamp,         str_sequence,
                       str_bids,         str_asks,   str_local_timestamp_ns};
  for (int i = 0; i < 7; i++) values[i] = NULL;
  Py_ssize_t position = 0, matched = 0;
  PyObject *key, *value;
  while (PyDict_Next(book, &position, &key, &value)) {
    for (int i = 0; i < 7; i++) {
      if (key == keys[i]) {
        values[i] = value;
        matched++;
        break;
      }
    }
  }
  for (int i = 0; i < 7; i++) {
    if (values[i] != NULL || (i == 6 && matched == PyDict_GET_SIZE(book))) continue;
    values[i] = PyDict_GetItemWithError(book, keys[i]);
    if (values[i] == NULL) {
      PyErr_Clear();
      if (i < 6) return 0;
    }
  }
  return 1;
}

static PyObject *append_dict_one(WriterCore *self, PyObject *book) {
  PyObject *values[7], *result;
  if (PyDict_CheckExact(book) && dict_values(book, values)) {
    int done = try_append(self, values[0], values[1], values[2], values[3], values[4],
                          values[5], values[6], &result);
    if (done) return done > 0 ? result : NULL;
  }
  return PyObject_CallMethodOneArg((PyObject *)self, str_append_dict_python, book);
}

/* One book of append_many: a to_dict() dict or a tuple (list) of append_orderbook's
 * arguments. Books without a local_timestamp_ns are stamped as they are written. */
static int parse_batch_book(WriterCore *self, struct book *book, PyObject *item) {
  PyObject *values[7] = {NULL};
  if (PyDict_CheckExact(item)) {
    if (!dict_values(item, values)) return 0;
  } else if (PyTuple_CheckExact(item) || PyList_CheckExact(item)) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(item);
    if (n != 6 && n != 7) return 0;
    for (Py_ssize_t i = 0; i < n; i++) values[i] = PySequence_Fast_ITEMS(item)[i];
  } else {
    return 0;
  }
  return parse_book(self, book, values[0], values[1], values[2], values[3], values[4],
                    values[5], values[6]);
}

static PyObject *append_many_one(WriterCore *self, PyObject *books) {
  if (!self->has_map || !(PyList_CheckExact(books) || PyTuple_CheckExact(books)))
    goto python;
  Py_ssize_t count = PySequence_Fast_GET_SIZE(books);
  if (count == 0) goto python;
  if (count > self->batch_capacity) {
    struct book *batch = PyMem_Realloc(self->batch, sizeof(struct book) * (size_t)count);
    if (batch == NULL) return PyErr_NoMemory();
    self->batch = batch;
    self->batch_capacity = count;
  }
  /* Validate the whole batch first (nothing is written if one book is refused); the
   * journal is checked by the Python path when a check is due. */
  long long end = self->position;
  for (Py_ssize_t i = 0; i < count; i++) {
    if (!parse_batch_book(self, &self->batch[i], PySequence_Fast_ITEMS(books)[i])) goto python;
    end += (long long)self->batch[i].size;
  }
  if (end > self->limit || end > (long long)self->map.len || realtime_ns() >= self->next_check_ns)
    goto python;
  long long cursor = self->position;
  for (Py_ssize_t i = 0; i < count; i++) {
    struct book *book = &self->batch[i];
    unsigned char *record = (unsigned char *)self->map.buf + cursor;
    if (book->stamp) book->local_timestamp_ns = realtime_ns();
    write_book(record, book);
    cursor += (long long)book->size;
  }
  return publish_many(self, end, count); /* one commit for the batch */
python:
  return PyObject_CallMethodOneArg((PyObject *)self, str_append_many_python, books);
}

/* -- append_frames: records another writer laid out, copied as they are ---------------
 * The fast path takes a run of frames when every record is an OBK1 record in the
 * encoder's own layout (what journal.Writer writes) that passes the checks of
 * Writer.append: verification (orderbook_verifies), then the book rules the encoder
 * enforces (names, levels, crossing), checked here on the bytes. Anything else (another
 * layout, a refused record, a roll) goes to _append_frames_python, the reference,
 * which checks again and refuses or writes. */

/* A name append refuses nothing of: strict UTF-8 (the reader decodes so), 1 to
 * max_bytes bytes, no control character (parse_name's rule, on the bytes). */
static int frame_name_ok(const unsigned char *at, uint32_t length, Py_ssize_t max_bytes) {
  if (length == 0 || (Py_ssize_t)length > max_bytes) return 0;
  for (uint32_t i = 0; i < length; i++) {
    if (at[i] < 0x20 || at[i] == 0x7f) return 0;
    if (at[i] == 0xc2 && i + 1 < length && at[i + 1] <= 0x9f) return 0;
    if (at[i] >= 0x80) { /* not ASCII: let the codec judge it once */
      PyObject *text = PyUnicode_DecodeUTF8((const char *)at, length, "strict");
      if (text == NULL) {
        PyErr_Clear();
        return 0;
      }
      Py_DECREF(text);
      for (uint32_t j = i + 1; j < length; j++) {
        if (at[j] < 0x20 || at[j] == 0x7f) return 0;
        if (at[j] == 0xc2 && j + 1 < length && at[j + 1] <= 0x9f) return 0;
      }
      return 1;
    }
  }
  return 1;
}

/* check_side on PriceLevel structs: prices strictly better first, finite, > 0;
 * quantities finite and >= 0 (NaN fails every comparison). */
static int frame_side_ok(const unsigned char *at, uint32_t n, int bids, Py_ssize_t max_levels) {
  if ((Py_ssize_t)n > max_levels) return 0;
  double previous = bids ? INFINITY : 0.0;
  for (uint32_t i = 0; i < n; i++) {
    double level[2];
    memcpy(level, at + OBL_LEVEL_SIZE * (size_t)i, sizeof level);
    if (bids ? !(level[0] < previous) : !(level[0] > previous)) return 0;
    if (!(level[1] >= 0.0 && level[1] < INFINITY)) return 0;
    previous = level[0];
  }
  if (n && (bids ? !(previous > 0.0) : !(previous < INFINITY))) return 0;
  return 1;
}

/* The framed size of the record at `p` (`available` bytes left), or 0: the Python path. */
static uint64_t frame_fast(WriterCore *self, const unsigned char *p, uint64_t available) {
  if (available < JL_SIZE_PREFIX_SIZE + JL_MIN_RECORD_SIZE) return 0;
  uint64_t record = (uint64_t)u32_at(p) + JL_SIZE_PREFIX_SIZE;
  uint64_t framed = align_record(record);
  if (framed > available) return 0;
  for (uint64_t i = record; i < framed; i++)
    if (p[i]) return 0;
  Fields fields;
  if (!orderbook_verifies(p, record) || !own_layout(p, record, &fields)) return 0;
  if (!frame_name_ok(p + fields.exchange_name_at, fields.exchange_name_length,
                     self->max_name_bytes) ||
      !frame_name_ok(p + fields.symbol_at, fields.symbol_length, self->max_name_bytes) ||
      !frame_side_ok(p + fields.bids_at, fields.n_bids, 1, self->max_levels) ||
      !frame_side_ok(p + fields.asks_at, fields.n_asks, 0, self->max_levels))
    return 0;
  if (fields.n_bids && fields.n_asks) {
    double best_bid, best_ask;
    memcpy(&best_bid, p + fields.bids_at, sizeof best_bid);
    memcpy(&best_ask, p + fields.asks_at, sizeof best_ask);
    if (!(best_bid < best_ask)) return 0;
  }
  return framed;
}

static PyObject *append_frames_one(WriterCore *self, PyObject *frames) {
  Py_buffer view;
  if (!self->has_map || !self->frames_fast) goto python;
  if (PyObject_GetBuffer(frames, &view, PyBUF_SIMPLE) < 0) {
    PyErr_Clear();
    goto python;
  }
  const unsigned char *data = (const unsigned char *)view.buf;
  uint64_t length = (uint64_t)view.len, offset = 0;
  Py_ssize_t count = 0;
  while (offset < length) {
    uint64_t framed = frame_fast(self, data + offset, length - offset);
    if (framed == 0) goto release;
    offset += framed;
    count++;
  }
  if (count == 0) goto release;
  if (realtime_ns() >= self->next_check_ns) {
    /* The Python path's check (it sets the next deadline); refused, the Python path
     * raises the same error and counts it. */
    PyObject *checked = PyObject_CallMethodNoArgs((PyObject *)self, str_check_journal);
    if (checked == NULL) {
      PyErr_Clear();
      goto release;
    }
    Py_DECREF(checked);
  }
  long long position = self->position, end = position + (long long)length;
  if (end > self->limit || end > (long long)self->map.len) goto release; /* a roll */
  memcpy((unsigned char *)self->map.buf + position, data, (size_t)length);
  PyBuffer_Release(&view);
  return publish_many(self, end, count); /* one commit for the run */
release:
  PyBuffer_Release(&view);
python:
  return PyObject_CallMethodOneArg((PyObject *)self, str_append_frames_python, frames);
}

static PyObject *core_append_frames(WriterCore *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames) {
  if (kwnames == NULL && nargs == 1) return append_frames_one(self, args[0]);
  return python_path((PyObject *)self, str_append_frames_python, args, (size_t)nargs, kwnames);
}

/* The METH_FASTCALL | METH_KEYWORDS faces of append_dict and append_many: one
 * positional argument is the fast path's; anything else (a keyword, a wrong count)
 * goes to the Python method, which takes or refuses it as it always has. */
static PyObject *core_append_dict(WriterCore *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames) {
  if (kwnames == NULL && nargs == 1) return append_dict_one(self, args[0]);
  return python_path((PyObject *)self, str_append_dict_python, args, (size_t)nargs, kwnames);
}

static PyObject *core_append_many(WriterCore *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames) {
  if (kwnames == NULL && nargs == 1) return append_many_one(self, args[0]);
  return python_path((PyObject *)self, str_append_many_python, args, (size_t)nargs, kwnames);
}

/* _attach_map(map): append into this writable buffer (the mapped segment). */
static PyObject *core_attach_map(WriterCore *self, PyObject *map) {
  if (self->has_map) {
    PyBuffer_Release(&self->map);
    self->has_map = 0;
  }
  if (PyObject_GetBuffer(map, &self->map, PyBUF_WRITABLE) < 0) return NULL;
  if (self->map.len < JL_HEADER_SIZE) {
    PyBuffer_Release(&self->map);
    return PyErr_Format(PyExc_ValueError, "a segment of %zd bytes", self->map.len);
  }
  self->has_map = 1;
  Py_RETURN_NONE;
}

/* _detach_map(): let the mapping go (before it is closed). */
static PyObject *core_detach_map(WriterCore *self, PyObject *Py_UNUSED(ignored)) {
  if (self->has_map) {
    self->has_map = 0;
    PyBuffer_Release(&self->map);
  }
  Py_RETURN_NONE;
}

/* _attach_counters(counters): the metrics file's words (a writable buffer), or None. */
static PyObject *core_attach_counters(WriterCore *self, PyObject *counters) {
  if (self->has_counters) {
    self->has_counters = 0;
    PyBuffer_Release(&self->counters);
  }
  if (counters == Py_None) Py_RETURN_NONE;
  if (PyObject_GetBuffer(counters, &self->counters, PyBUF_WRITABLE) < 0) return NULL;
  if (self->counters.len < ML_WRITER_METRICS_SIZE) {
    PyBuffer_Release(&self->counters);
    return PyErr_Format(PyExc_ValueError, "a metrics file of %zd bytes", self->counters.len);
  }
  self->has_counters = 1;
  Py_RETURN_NONE;
}

/* _set_limits(max_levels, max_name_bytes): what the encoder accepts. */
static PyObject *core_set_limits(WriterCore *self, PyObject *const *args, Py_ssize_t nargs) {
  if (!check_nargs("_set_limits", nargs, 2)) return NULL;
  Py_ssize_t levels = PyLong_AsSsize_t(args[0]), name_bytes = PyLong_AsSsize_t(args[1]);
  if ((levels == -1 || name_bytes == -1) && PyErr_Occurred()) return NULL;
  self->max_levels = levels;
  self->max_name_bytes = name_bytes;
  Py_RETURN_NONE;
}

static PyObject *core_new(PyTypeObject *type, PyObject *Py_UNUSED(args),
                          PyObject *Py_UNUSED(kwargs)) {
  WriterCore *self = (WriterCore *)type->tp_alloc(type, 0);
  if (self == NULL) return NULL;
  self->limit = -1; /* nothing attached yet: the Python path */
  return (PyObject *)self;
}

static void core_dealloc(WriterCore *self) {
  if (self->has_map) PyBuffer_Release(&self->map);
  if (self->has_counters) PyBuffer_Release(&self->counters);
  self->has_map = self->has_counters = 0;
  PyMem_Free(self->batch);
  self->batch = NULL;
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef core_members[] = {
    {"_position", T_LONGLONG, offsetof(WriterCore, position), 0, "where the next record goes"},
    {"_limit", T_LONGLONG, offsetof(WriterCore, limit), 0,
     "no record may end past it; 0 or -1: the Python path (a check due, or refused)"},
    {"_index", T_LONGLONG, offsetof(WriterCore, index), 0, "the segment appended to"},
    {"_records", T_LONGLONG, offsetof(WriterCore, records), 0, "records counted in metrics"},
    {"_next_check_ns", T_LONGLONG, offsetof(WriterCore, next_check_ns), 0,
     "when the journal is checked again"},
    {"_time_next", T_BOOL, offsetof(WriterCore, time_next), 0, "time the next append"},
    {"_frames_fast", T_BOOL, offsetof(WriterCore, frames_fast), 0,
     "append_frames checks records here: the journal holds OBK1 order books"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef core_methods[] = {
    {"append_orderbook", (PyCFunction)(void (*)(void))core_append_orderbook,
     METH_FASTCALL | METH_KEYWORDS,
     "append_orderbook(exchange_name, symbol, timestamp, sequence, bids, asks, "
     "local_timestamp_ns=None) -> (segment, offset)\n\n"
     "Validate one book, write it and publish it; compiled. Anything its fast path does "
     "not take goes to _append_orderbook_python, the reference (see its docstring)."},
    {"append_dict", (PyCFunction)(void (*)(void))core_append_dict, METH_FASTCALL | METH_KEYWORDS,
     "append_dict(book) -> (segment, offset): append OrderBookV2.to_dict(); compiled, "
     "with _append_dict_python as the reference and fallback."},
    {"append_many", (PyCFunction)(void (*)(void))core_append_many, METH_FASTCALL | METH_KEYWORDS,
     "append_many(books) -> int: validate a batch in full, write it, one commit; compiled, "
     "with _append_many_python as the reference and fallback."},
    {"append_frames", (PyCFunction)(void (*)(void))core_append_frames,
     METH_FASTCALL | METH_KEYWORDS,
     "append_frames(frames) -> int: records laid out by another writer, checked, copied "
     "byte for byte, one commit; compiled, with _append_frames_python as the reference "
     "and fallback."},
    {"_attach_map", (PyCFunction)core_attach_map, METH_O, "append into this mapped segment"},
    {"_detach_map", (PyCFunction)core_detach_map, METH_NOARGS, "let the mapped segment go"},
    {"_attach_counters", (PyCFunction)core_attach_counters, METH_O,
     "the writer metrics' words (or None)"},
    {"_set_limits", (PyCFunction)(void (*)(void))core_set_limits, METH_FASTCALL,
     "_set_limits(max_levels, max_name_bytes)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WriterCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "journal._cwriter.WriterCore",
    .tp_doc = "The hot state and compiled appends of journal.Writer (its base class).",
    .tp_basicsize = sizeof(WriterCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = core_new,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_members = core_members,
    .tp_methods = core_methods,
};

/* == BookPublisher's hot path ==============================================================
 *
 * PublisherCore is the base class of journal.collector.BookPublisher when the extension
 * is in use. Its publish(book) takes the collector's dict straight to the writer's fast
 * path: the names through the publisher's cache (_names: (exchangename, symbol) ->
 * normalised names), a sequence of None journaled as 0 (NONE_SENT), as the Python path
 * does. Only while _fast_writer is set (the publisher's normal state: not after a full
 * tmpfs, a removed journal or close); anything else goes to _publish_python. */

typedef struct {
  PyObject_HEAD
  PyObject *fast_writer; /* a WriterCore, or NULL / None */
  PyObject *names;       /* dict */
  long long published;
  /* The last (exchangename, symbol) looked up in names and what it gave: the same
   * objects again (a book manager's own strings) skip the lookup. Sound because a
   * pair's normalised names never change (journal.symbols.normalize). */
  PyObject *last_exchange, *last_symbol, *last_names;
} PublisherCore;

/* The normalised (exchange, symbol) of a book's raw names (borrowed), or NULL for the
 * Python path (a pair not seen yet: _learn_names normalises it, or refuses). */
static PyObject *normalised_names(PublisherCore *self, PyObject *exchange, PyObject *symbol) {
  if (exchange == self->last_exchange && symbol == self->last_symbol) return self->last_names;
  if (self->names == NULL || !PyDict_CheckExact(self->names)) return NULL;
  PyObject *key = PyTuple_Pack(2, exchange, symbol);
  if (key == NULL) {
    PyErr_Clear();
    return NULL;
  }
  PyObject *names = PyDict_GetItemWithError(self->names, key); /* borrowed */
  Py_DECREF(key);
  if (names == NULL) {
    PyErr_Clear(); /* not there, or unhashable: the Python path says which */
    return NULL;
  }
  if (!PyTuple_CheckExact(names) || PyTuple_GET_SIZE(names) != 2) return NULL;
  Py_INCREF(exchange);
  Py_INCREF(symbol);
  Py_INCREF(names);
  Py_XSETREF(self->last_exchange, exchange);
  Py_XSETREF(self->last_symbol, symbol);
  Py_XSETREF(self->last_names, names);
  return names;
}

/* An error once the book may be committed (a failed futex wake, no memory for the
 * position): as _publish_python's `except Exception`, through the same method
 * (_unexpected: logged, counted as unexpected_error); None. Not retried. */
static PyObject *unexpected(PublisherCore *self, PyObject *book) {
  if (!PyErr_ExceptionMatches(PyExc_Exception)) return NULL;
#if PY_VERSION_HEX >= 0x030C0000
  PyObject *error = PyErr_GetRaisedException();
#else
  PyObject *type, *error, *traceback;
  PyErr_Fetch(&type, &error, &traceback);
  PyErr_NormalizeException(&type, &error, &traceback);
  if (traceback != NULL) PyException_SetTraceback(error, traceback);
  Py_XDECREF(type);
  Py_XDECREF(traceback);
#endif
  PyObject *done = PyObject_CallMethodObjArgs((PyObject *)self, str_unexpected, book, error, NULL);
  Py_DECREF(error);
  if (done == NULL) return NULL;
  Py_DECREF(done);
  Py_RETURN_NONE;
}

static PyObject *publish_one(PublisherCore *self, PyObject *book) {
  PyObject *writer = self->fast_writer;
  PyObject *values[7], *names;
  if (writer != NULL && PyObject_TypeCheck(writer, &WriterCoreType) && PyDict_CheckExact(book) &&
      dict_values(book, values) && (names = normalised_names(self, values[0], values[1]))) {
    PyObject *sequence = values[3];
    if (sequence == Py_None) sequence = zero; /* NONE_SENT, as _publish_python */
    PyObject *result;
    Py_INCREF(writer);
    int done = try_append((WriterCore *)writer, PyTuple_GET_ITEM(names, 0),
                          PyTuple_GET_ITEM(names, 1), values[2], sequence, values[4], values[5],
                          values[6], &result);
    Py_DECREF(writer);
    if (done > 0) {
      self->published++;
      return result;
    }
    if (done < 0) return unexpected(self, book); /* after the commit: never again */
  }
  return PyObject_CallMethodOneArg((PyObject *)self, str_publish_python, book);
}

static PyObject *publisher_publish(PublisherCore *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames) {
  if (kwnames == NULL && nargs == 1) return publish_one(self, args[0]);
  return python_path((PyObject *)self, str_publish_python, args, (size_t)nargs, kwnames);
}

static int publisher_traverse(PublisherCore *self, visitproc visit, void *arg) {
  Py_VISIT(self->fast_writer);
  Py_VISIT(self->names);
  Py_VISIT(self->last_exchange);
  Py_VISIT(self->last_symbol);
  Py_VISIT(self->last_names);
  /* Not Py_TYPE(self): a heap subtype's traverse (BookPublisher's) visits it. */
  return 0;
}

static int publisher_clear(PublisherCore *self) {
  Py_CLEAR(self->fast_writer);
  Py_CLEAR(self->names);
  Py_CLEAR(self->last_exchange);
  Py_CLEAR(self->last_symbol);
  Py_CLEAR(self->last_names);
  return 0;
}

static void publisher_dealloc(PublisherCore *self) {
  PyObject_GC_UnTrack(self);
  publisher_clear(self);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef publisher_members[] = {
    {"_fast_writer", T_OBJECT, offsetof(PublisherCore, fast_writer), 0,
     "the writer publish() appends to directly, or None (then: _publish_python)"},
    {"_names", T_OBJECT, offsetof(PublisherCore, names), 0,
     "(exchangename, symbol) -> normalised names"},
    {"_published", T_LONGLONG, offsetof(PublisherCore, published), 0, "books published"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef publisher_methods[] = {
    {"publish", (PyCFunction)(void (*)(void))publisher_publish, METH_FASTCALL | METH_KEYWORDS,
     "publish(book) -> (segment, offset) or None: append one OrderBookV2.to_dict() book; "
     "compiled, with _publish_python as the reference and fallback (see its docstring)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PublisherCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "journal._cwriter.PublisherCore",
    .tp_doc = "The compiled publish() of journal.collector.BookPublisher (its base class).",
    .tp_basicsize = sizeof(PublisherCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)publisher_dealloc,
    .tp_traverse = (traverseproc)publisher_traverse,
    .tp_clear = (inquiry)publisher_clear,
    .tp_members = publisher_members,
    .tp_methods = publisher_methods,
};

/* latency_bucket(value_ns): layout.h's, for the test against Python's. */
static PyObject *py_latency_bucket(PyObject *Py_UNUSED(module), PyObject *value) {
  unsigned long long v = PyLong_AsUnsignedLongLong(value);
  if (v == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
  return PyLong_FromUnsignedLong(journal_latency_bucket(v));
}

/* -- the layout, for tests/test_native_layout.py --------------------------------------- */

static PyObject *py_layout(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored)) {
  PyObject *constants = PyDict_New();
  if (constants == NULL) return NULL;
#define EXPORT_CONSTANT(name)                                                   \
  {                                                                             \
    PyObject *value = PyLong_FromUnsignedLongLong((unsigned long long)(name)); \
    if (value == NULL || PyDict_SetItemString(constants, #name, value) < 0) {   \
      Py_XDECREF(value);                                                        \
      Py_DECREF(constants);                                                     \
      return NULL;                                                              \
    }                                                                           \
    Py_DECREF(value);                                                           \
  }
  LAYOUT_CONSTANTS(EXPORT_CONSTANT)
#undef EXPORT_CONSTANT
  PyObject *payload_id = PyBytes_FromString(OBL_PAYLOAD_ID);
  if (payload_id == NULL || PyDict_SetItemString(constants, "OBL_PAYLOAD_ID", payload_id) < 0) {
    Py_XDECREF(payload_id);
    Py_DECREF(constants);
    return NULL;
  }
  Py_DECREF(payload_id);
  return constants;
}

/* -- the module ----------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"publish_commit", (PyCFunction)(void (*)(void))py_publish_commit, METH_FASTCALL,
     "publish_commit(commit_words, commit): release-store the commit offset."},
    {"load_commit_acquire", py_load_commit_acquire, METH_O,
     "load_commit_acquire(commit_words) -> int: acquire-load the commit offset."},
    {"publish_seal", (PyCFunction)(void (*)(void))py_publish_seal, METH_FASTCALL,
     "publish_seal(commit_words, marker_offset): store end_marker_offset, release the "
     "commit that covers the marker."},
    {"load_end_marker_offset", py_load_end_marker_offset, METH_O,
     "load_end_marker_offset(commit_words) -> int, after an acquired commit."},
    {"clear_interrupted_seal", py_clear_interrupted_seal, METH_O,
     "clear_interrupted_seal(commit_words): end_marker_offset = 0 (recovery)."},
    {"raise_sleepers_flag", py_raise_sleepers_flag, METH_O,
     "raise_sleepers_flag(sleepers_words): set the flag, then a seq_cst fence."},
    {"load_sleepers", py_load_sleepers, METH_O,
     "load_sleepers(sleepers_words) -> int: a seq_cst fence, then the flag."},
    {"clear_sleepers", py_clear_sleepers, METH_O,
     "clear_sleepers(sleepers_words): lower the flag before a wake."},
    {"futex_wake", py_futex_wake, METH_O,
     "futex_wake(address) -> int: wake every waiter on the u32 at address."},
    {"futex_wait", (PyCFunction)(void (*)(void))py_futex_wait, METH_FASTCALL,
     "futex_wait(address, expected, timeout_s): sleep while the u32 at address equals "
     "expected, at most timeout_s; the GIL is released meanwhile."},
    {"layout", py_layout, METH_NOARGS, "layout() -> dict: every constant of layout.h."},
    {"latency_bucket", py_latency_bucket, METH_O, "latency_bucket(value_ns) -> int"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cwriter_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "journal._cwriter",
    .m_doc = "The journal writer's hot path and shared-memory atomics, in C.",
    .m_size = 0,
    .m_methods = module_methods,
};

static PyObject *intern(const char *text) { return PyUnicode_InternFromString(text); }

PyMODINIT_FUNC PyInit__cwriter(void) {
  if (!(str_exchangename = intern("exchangename")) || !(str_symbol = intern("symbol")) ||
      !(str_timestamp = intern("timestamp")) || !(str_sequence = intern("sequence")) ||
      !(str_bids = intern("bids")) || !(str_asks = intern("asks")) ||
      !(str_local_timestamp_ns = intern("local_timestamp_ns")) ||
      !(str_append_orderbook_python = intern("_append_orderbook_python")) ||
      !(str_append_dict_python = intern("_append_dict_python")) ||
      !(str_append_many_python = intern("_append_many_python")) ||
      !(str_publish_python = intern("_publish_python")) ||
      !(str_unexpected = intern("_unexpected")) ||
      !(str_append_frames_python = intern("_append_frames_python")) ||
      !(str_check_journal = intern("_check_journal")) || !(zero = PyLong_FromLong(0)))
    return NULL;
  if (PyType_Ready(&WriterCoreType) < 0 || PyType_Ready(&PublisherCoreType) < 0) return NULL;
  PyObject *module = PyModule_Create(&cwriter_module);
  if (module == NULL) return NULL;
  if (PyModule_AddObjectRef(module, "WriterCore", (PyObject *)&WriterCoreType) < 0 ||
      PyModule_AddObjectRef(module, "PublisherCore", (PyObject *)&PublisherCoreType) < 0) {
    Py_DECREF(module);
    return NULL;
  }
  return module;
}
