/* journal._creader: the Reader's next-record step, in C.
 *
 * A Cursor walks the frames of one mapped segment of an OBK1 journal: it
 * acquire-loads the commit offset, checks the frame at its offset (size prefix,
 * identifier), checks and decodes the record exactly as journal/_decode.py does
 * (the encoder's own layout by its fixed bytes and offset arithmetic; any other
 * layout through the verifier of journal/_verify.py, then its vtable), and returns
 * the same OrderBookRecord the Python path builds: the same class, its levels
 * zero-copy numpy views of the mapping with the same base (the segment's pinned
 * array), its strings equal. It stores the reader's counters as
 * ReaderMetrics.read does.
 *
 * Everything else is the Python Reader's (journal/_reader.py): the step returns None
 * when there is nothing it reads here, and the Python path takes over, which loads
 * the commit again and does what it always did. That covers an empty poll, the end
 * marker, a commit or offset out of bounds, and every record the C step does not
 * accept: one that fails a check (framing, verification, UTF-8) or that it leaves to
 * Python (another layout with verify off). So every error the reader raises is
 * raised by the Python path, with its type and message, and the C step only has to
 * accept exactly what Python accepts; tests/test_native_reader.py checks both
 * agree, record for record and error for error.
 *
 * The records are of a subclass of OrderBookRecord made here (also named
 * OrderBookRecord, journal._creader.OrderBookRecord): the same attributes, values and
 * types, the level views made on first use rather than with the record, which is a
 * third of a record's cost for a consumer that skips books by symbol or time. The
 * record holds the mapping (its pinned array) until then, as its views would.
 *
 * Offsets come from layout.h (the segment and the record), reader_layout.h (the
 * reader's counters); the commit is loaded with atomics.h.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <stdint.h>
#include <string.h>

#include "atomics.h"
#include "layout.h"
#include "orderbook_read.h"
#include "reader_layout.h"

/* Names (exchange_name, symbol) decoded before, looked up by their bytes: a feed
 * cycles through a few venues and symbols, and a cache hit costs a hash and a
 * memcmp where decoding costs an allocation. Direct-mapped, NAME_CACHE_ENTRIES
 * entries (a power of two) of names up to NAME_CACHE_BYTES bytes. */
#define NAME_CACHE_BYTES 64
#define NAME_CACHE_ENTRIES 64

typedef struct {
  PyObject *text; /* the decoded str, or NULL */
  uint32_t length;
  unsigned char bytes[NAME_CACHE_BYTES];
} NameEntry;

/* Where the interpreter keeps a __slots__ attribute of an instance. */
#define SLOT(object, offset) (*(PyObject **)(void *)((char *)(object) + (offset)))

typedef struct {
  PyObject_HEAD
  /* the segment being read, while bound */
  PyObject *pinned; /* the numpy uint8 view of the whole mapping, or NULL */
  unsigned char *base;
  uint64_t size;
  PyObject *index_object; /* the segment index as a Python int */
  long long index;
  uint64_t offset;
  /* fixed at construction */
  int verify;
  PyObject *metrics;         /* journal._metrics.ReaderMetrics, or NULL */
  Py_ssize_t slot_map, slot_gave_up, slot_records, slot_empty_polls;
  /* values of the last record, reused when the next one has the same */
  PyObject *last_size, *last_timestamp;
  long long last_size_value, last_timestamp_value;
  NameEntry names[NAME_CACHE_ENTRIES];
} Cursor;

/* How much of the next record a step asks the CPU to fetch ahead. */
#define PREFETCH_BYTES 512

/* What a step found at its offset. */
enum { STEP_RECORD = 1, STEP_PYTHON = 0, STEP_ERROR = -1 };

/* -- building the record ------------------------------------------------------------ */

/* The decoded str of a name, from the cache if it was decoded before. NULL with an
 * exception set; NULL without one: not UTF-8 (the Python path says so). */
static PyObject *name_text(Cursor *cursor, const unsigned char *at, uint32_t length) {
  /* The first and last 8 bytes (overlapping, or zero-padded), and the length. */
  uint64_t head = 0, tail = 0;
  memcpy(&head, at, length < 8 ? length : 8);
  if (length > 8) memcpy(&tail, at + length - 8, 8);
  uint64_t hash = (head * 0x9E3779B97F4A7C15u) ^ (tail * 0xC2B2AE3D27D4EB4Fu) ^ length;
  NameEntry *entry = &cursor->names[(hash >> 40) & (NAME_CACHE_ENTRIES - 1)];
  if (entry->text != NULL && entry->length == length && memcmp(entry->bytes, at, length) == 0) {
    return Py_NewRef(entry->text);
  }
  PyObject *text = PyUnicode_DecodeUTF8((const char *)at, (Py_ssize_t)length, "strict");
  if (text == NULL) {
    if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) PyErr_Clear();
    return NULL;
  }
  if (length <= NAME_CACHE_BYTES) {
    Py_XSETREF(entry->text, Py_NewRef(text));
    entry->length = length;
    memcpy(entry->bytes, at, length);
  }
  return text;
}

/* An int for `value`, the last one's object if it is the same (sizes and exchange
 * times repeat from one book to the next). */
static PyObject *repeated_int(PyObject **last_object, long long *last_value, long long value) {
  if (*last_object != NULL && *last_value == value) return Py_NewRef(*last_object);
  PyObject *object = PyLong_FromLongLong(value);
  if (object != NULL) {
    Py_XSETREF(*last_object, Py_NewRef(object));
    *last_value = value;
  }
  return object;
}

/* (count, 2) float64 view of the PriceLevel structs at `at` of the mapping viewed by
 * `pinned`, its base `pinned`: what np.ndarray((count, 2), "<f8", pinned, at) makes.
 * `count` is not 0 (no levels are the shared _NO_LEVELS). */
static PyObject *level_view(PyObject *pinned, uint64_t at, uint32_t count) {
  npy_intp dims[2] = {(npy_intp)count, OBL_LEVEL_SIZE / OBL_VALUE_SIZE};
  PyArray_Descr *descr = PyArray_DescrFromType(NPY_FLOAT64);
  if (descr == NULL) return NULL;
  char *data = PyArray_BYTES((PyArrayObject *)pinned) + at;
  PyObject *view = PyArray_NewFromDescr(&PyArray_Type, descr, 2, dims, NULL, data, 0, NULL);
  if (view == NULL) return NULL;
  if (!PyArray_ISWRITEABLE((PyArrayObject *)pinned)) {
    PyArray_CLEARFLAGS((PyArrayObject *)view, NPY_ARRAY_WRITEABLE);
  }
  if (PyArray_SetBaseObject((PyArrayObject *)view, Py_NewRef(pinned)) < 0) {
    Py_DECREF(view);
    return NULL;
  }
  return view;
}

/* -- records with their level views made on first use ---------------------------------
 * One subclass of the Python OrderBookRecord per process (every cursor's base is
 * that class): its instances have the base's __slots__, then LazyLevels. "bids" and
 * "asks" are descriptors of the subclass over the base's slots: a side whose view
 * is still to be made (count != 0) gets it on first read, then reads as the slot. */

typedef struct {
  PyObject *pinned;  /* the mapping's array while a side's view is to be made */
  uint64_t at[2];    /* bids, asks: their first level, from the start of the mapping */
  uint32_t count[2]; /* levels of a view still to be made; 0 once made, set or deleted */
} LazyLevels;

/* The base's slots, in this order in record_slots. */
enum {
  EXCHANGE_NAME_SLOT,
  SYMBOL_SLOT,
  TIMESTAMP_SLOT,
  SEQUENCE_SLOT,
  LOCAL_TIMESTAMP_NS_SLOT,
  BIDS_SLOT,
  ASKS_SLOT,
  POSITION_SLOT,
  SIZE_SLOT,
  RECORD_SLOTS
};
static PyTypeObject *record_class; /* journal._creader.OrderBookRecord */
static const char *const SLOT_NAMES[RECORD_SLOTS] = {
    "exchange_name", "symbol", "timestamp", "sequence", "local_timestamp_ns",
    "bids",          "asks",   "position",  "size",
};
static Py_ssize_t record_slots[RECORD_SLOTS];
static Py_ssize_t side_slots[2]; /* bids, asks */
static Py_ssize_t levels_offset; /* of LazyLevels in an instance */
static const char *const SIDE_NAMES[2] = {"bids", "asks"};
static PyObject *no_levels; /* journal._decode._NO_LEVELS: every side without levels */

static inline LazyLevels *lazy_levels(PyObject *record) {
  return (LazyLevels *)(void *)((char *)record + levels_offset);
}

/* The view of `side` is made, set or deleted: nothing more to make for it. */
static void settle(LazyLevels *lazy, int side) {
  lazy->count[side] = 0;
  if (lazy->count[0] == 0 && lazy->count[1] == 0) Py_CLEAR(lazy->pinned);
}

static PyObject *record_get_side(PyObject *self, void *closure) {
  int side = (int)(intptr_t)closure;
  LazyLevels *lazy = lazy_levels(self);
  if (lazy->count[side]) {
    PyObject *view = level_view(lazy->pinned, lazy->at[side], lazy->count[side]);
    if (view == NULL) return NULL;
    Py_XSETREF(SLOT(self, side_slots[side]), view);
    settle(lazy, side);
  }
  PyObject *value = SLOT(self, side_slots[side]);
  if (value == NULL) {
    PyObject *type_name = PyType_GetName(Py_TYPE(self));
    if (type_name != NULL) {
      PyErr_Format(PyExc_AttributeError, "'%U' object has no attribute '%s'", type_name,
                   SIDE_NAMES[side]);
      Py_DECREF(type_name);
    }
    return NULL;
  }
  return Py_NewRef(value);
}

static int record_set_side(PyObject *self, PyObject *value, void *closure) {
  int side = (int)(intptr_t)closure;
  LazyLevels *lazy = lazy_levels(self);
  int pending = lazy->count[side] != 0; /* a view to be made: the slot has a value */
  settle(lazy, side);
  PyObject **slot = &SLOT(self, side_slots[side]);
  if (value == NULL && *slot == NULL && !pending) {
    PyErr_SetString(PyExc_AttributeError, SIDE_NAMES[side]);
    return -1;
  }
  Py_XSETREF(*slot, Py_XNewRef(value));
  return 0;
}

static int record_traverse(PyObject *self, visitproc visit, void *arg) {
  for (int i = 0; i < RECORD_SLOTS; i++) Py_VISIT(SLOT(self, record_slots[i]));
  Py_VISIT(lazy_levels(self)->pinned);
  Py_VISIT(Py_TYPE(self));
  return 0;
}

static int record_clear(PyObject *self) {
  for (int i = 0; i < RECORD_SLOTS; i++) Py_CLEAR(SLOT(self, record_slots[i]));
  LazyLevels *lazy = lazy_levels(self);
  lazy->count[0] = lazy->count[1] = 0;
  Py_CLEAR(lazy->pinned);
  return 0;
}

static void record_dealloc(PyObject *self) {
  PyTypeObject *type = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  record_clear(self);
  type->tp_free(self);
  Py_DECREF(type);
}

/* Pickled and copied as the Python OrderBookRecord it is equivalent to (its views
 * made first): the base class called, then its slots set. */
static PyObject *record_reduce(PyObject *self, PyObject *Py_UNUSED(ignored)) {
  for (int side = 0; side < 2; side++) {
    PyObject *view = record_get_side(self, (void *)(intptr_t)side);
    if (view == NULL) {
      if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return NULL;
      PyErr_Clear(); /* deleted: not in the state, as the base leaves it out */
    }
    Py_XDECREF(view);
  }
  PyObject *state = PyDict_New();
  if (state == NULL) return NULL;
  for (int i = 0; i < RECORD_SLOTS; i++) {
    PyObject *value = SLOT(self, record_slots[i]);
    if (value != NULL && PyDict_SetItemString(state, SLOT_NAMES[i], value) < 0) {
      Py_DECREF(state);
      return NULL;
    }
  }
  return Py_BuildValue("O()(ON)", Py_TYPE(self)->tp_base, Py_None, state);
}

static PyMethodDef record_methods[] = {
    {"__reduce__", record_reduce, METH_NOARGS,
     "Pickled and copied as a journal._decode.OrderBookRecord."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef record_getset[] = {
    {"bids", record_get_side, record_set_side,
     "(n, 2) float64 view of the bid levels, made on first use", (void *)(intptr_t)0},
    {"asks", record_get_side, record_set_side,
     "(n, 2) float64 view of the ask levels, made on first use", (void *)(intptr_t)1},
    {NULL, NULL, NULL, NULL, NULL},
};

static int slot_of(PyTypeObject *type, const char *name, Py_ssize_t *offset);

/* journal._decode's OrderBookRecord, its subclass here, and _NO_LEVELS, at import. */
static int make_record_class(PyObject *module) {
  PyObject *decode = PyImport_ImportModule("journal._decode");
  if (decode == NULL) return -1;
  PyObject *base_object = PyObject_GetAttrString(decode, "OrderBookRecord");
  no_levels = PyObject_GetAttrString(decode, "_NO_LEVELS");
  Py_DECREF(decode);
  if (base_object == NULL || no_levels == NULL) {
    Py_XDECREF(base_object);
    return -1;
  }
  if (!PyType_Check(base_object)) {
    Py_DECREF(base_object);
    PyErr_SetString(PyExc_TypeError, "journal._decode.OrderBookRecord is not a class");
    return -1;
  }
  PyTypeObject *base = (PyTypeObject *)base_object; /* kept: the subclass's base */
  for (int i = 0; i < RECORD_SLOTS; i++) {
    if (slot_of(base, SLOT_NAMES[i], &record_slots[i]) < 0) return -1;
  }
  if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE) || !(base->tp_flags & Py_TPFLAGS_HAVE_GC) ||
      base->tp_dictoffset != 0 || base->tp_weaklistoffset != 0 || base->tp_itemsize != 0) {
    PyErr_Format(PyExc_TypeError, "%s: a class with __slots__ only", base->tp_name);
    return -1;
  }
  side_slots[0] = record_slots[BIDS_SLOT];
  side_slots[1] = record_slots[ASKS_SLOT];
  levels_offset = (base->tp_basicsize + 7) & ~(Py_ssize_t)7;
  PyType_Slot slots[] = {
      {Py_tp_doc, (void *)"An OrderBookRecord of the compiled reader: level views made on "
                          "first use (journal/_c/creader.c)."},
      {Py_tp_dealloc, (void *)record_dealloc},
      {Py_tp_traverse, (void *)record_traverse},
      {Py_tp_clear, (void *)record_clear},
      {Py_tp_getset, (void *)record_getset},
      {Py_tp_methods, (void *)record_methods},
      {0, NULL},
  };
  PyType_Spec spec = {
      .name = "journal._creader.OrderBookRecord",
      .basicsize = (int)(levels_offset + (Py_ssize_t)sizeof(LazyLevels)),
      .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
      .slots = slots,
  };
  PyObject *made = PyType_FromSpecWithBases(&spec, (PyObject *)base);
  if (made == NULL) return -1;
  if (PyModule_AddObjectRef(module, "OrderBookRecord", made) < 0) {
    Py_DECREF(made);
    return -1;
  }
  record_class = (PyTypeObject *)made;
  return 0;
}

/* journal._decode._decode_any_layout of a verified record: follow its vtable. */
static void any_layout(const unsigned char *p, Fields *out) {
  int64_t table = JL_SIZE_PREFIX_SIZE + (int64_t)u32_at(p + JL_SIZE_PREFIX_SIZE);
  int64_t vtable = table - (int64_t)i32_at(p + table);
  uint16_t vtable_size = u16_at(p + vtable);
  uint16_t slots[OBL_FIELD_COUNT];
  for (int slot = 0; slot < OBL_FIELD_COUNT; slot++) {
    int64_t entry = OBL_VTABLE_HEAD_SIZE + OBL_VTABLE_ENTRY_SIZE * slot;
    slots[slot] = entry < vtable_size ? u16_at(p + vtable + entry) : 0;
  }
#define REFERENCE_TARGET(slot) (table + slots[slot] + (int64_t)u32_at(p + table + slots[slot]))
  memset(out, 0, sizeof *out);
  if (slots[OBL_FIELD_EXCHANGE_NAME]) {
    int64_t at = REFERENCE_TARGET(OBL_FIELD_EXCHANGE_NAME);
    out->exchange_name_length = u32_at(p + at);
    out->exchange_name_at = (uint32_t)(at + OBL_UOFFSET_SIZE);
    out->has_exchange_name = 1;
  }
  if (slots[OBL_FIELD_SYMBOL]) {
    int64_t at = REFERENCE_TARGET(OBL_FIELD_SYMBOL);
    out->symbol_length = u32_at(p + at);
    out->symbol_at = (uint32_t)(at + OBL_UOFFSET_SIZE);
    out->has_symbol = 1;
  }
  if (slots[OBL_FIELD_TIMESTAMP]) out->timestamp = i64_at(p + table + slots[OBL_FIELD_TIMESTAMP]);
  if (slots[OBL_FIELD_SEQUENCE]) out->sequence = i64_at(p + table + slots[OBL_FIELD_SEQUENCE]);
  if (slots[OBL_FIELD_LOCAL_TIMESTAMP_NS]) {
    out->local_timestamp_ns = i64_at(p + table + slots[OBL_FIELD_LOCAL_TIMESTAMP_NS]);
  }
  if (slots[OBL_FIELD_BIDS]) {
    int64_t at = REFERENCE_TARGET(OBL_FIELD_BIDS);
    out->n_bids = u32_at(p + at);
    out->bids_at = (uint64_t)at + OBL_UOFFSET_SIZE;
  }
  if (slots[OBL_FIELD_ASKS]) {
    int64_t at = REFERENCE_TARGET(OBL_FIELD_ASKS);
    out->n_asks = u32_at(p + at);
    out->asks_at = (uint64_t)at + OBL_UOFFSET_SIZE;
  }
#undef REFERENCE_TARGET
}

static inline void set_slot(PyObject *object, Py_ssize_t offset, PyObject *value) {
  PyObject *old = SLOT(object, offset);
  SLOT(object, offset) = value; /* the reference is the slot's */
  Py_XDECREF(old);
}

/* The OrderBookRecord of `fields` (record at `offset`, `size` bytes with its prefix).
 * NULL with an exception set; NULL without: a name is not UTF-8. */
static PyObject *build_record(Cursor *cursor, const unsigned char *p, const Fields *fields,
                              uint64_t offset, uint64_t size) {
  PyObject *exchange_name = fields->has_exchange_name
                                ? name_text(cursor, p + fields->exchange_name_at,
                                            fields->exchange_name_length)
                                : PyUnicode_FromStringAndSize("", 0);
  if (exchange_name == NULL) return NULL;
  PyObject *symbol = fields->has_symbol ? name_text(cursor, p + fields->symbol_at,
                                                    fields->symbol_length)
                                        : PyUnicode_FromStringAndSize("", 0);
  if (symbol == NULL) {
    Py_DECREF(exchange_name);
    return NULL;
  }
  PyObject *record = record_class->tp_alloc(record_class, 0);
  if (record == NULL) {
    Py_DECREF(exchange_name);
    Py_DECREF(symbol);
    return NULL;
  }
  set_slot(record, record_slots[EXCHANGE_NAME_SLOT], exchange_name);
  set_slot(record, record_slots[SYMBOL_SLOT], symbol);
  PyObject *value;
#define SET(slot, make)                        \
  do {                                         \
    value = (make);                            \
    if (value == NULL) goto failed;            \
    set_slot(record, record_slots[slot], value); \
  } while (0)
  SET(TIMESTAMP_SLOT, repeated_int(&cursor->last_timestamp, &cursor->last_timestamp_value,
                                       fields->timestamp));
  SET(SEQUENCE_SLOT, PyLong_FromLongLong(fields->sequence));
  SET(LOCAL_TIMESTAMP_NS_SLOT, PyLong_FromLongLong(fields->local_timestamp_ns));
  /* The level views: the shared empty one now, the others on first use. */
  LazyLevels *lazy = lazy_levels(record);
  const uint64_t levels_at[2] = {offset + fields->bids_at, offset + fields->asks_at};
  const uint32_t levels[2] = {fields->n_bids, fields->n_asks};
  for (int side = 0; side < 2; side++) {
    if (levels[side] == 0) {
      SLOT(record, side_slots[side]) = Py_NewRef(no_levels);
    } else {
      lazy->at[side] = levels_at[side];
      lazy->count[side] = levels[side];
    }
  }
  if (lazy->count[0] || lazy->count[1]) lazy->pinned = Py_NewRef(cursor->pinned);
  SET(SIZE_SLOT, repeated_int(&cursor->last_size, &cursor->last_size_value, (long long)size));
  SET(POSITION_SLOT, PyTuple_New(2));
  PyObject *at = PyLong_FromUnsignedLongLong(offset);
  if (at == NULL) goto failed;
  PyTuple_SET_ITEM(value, 0, Py_NewRef(cursor->index_object));
  PyTuple_SET_ITEM(value, 1, at);
#undef SET
  return record;
failed:
  Py_DECREF(record);
  if (!PyErr_Occurred()) PyErr_NoMemory();
  return NULL;
}

/* -- the reader's counters (ReaderMetrics.read) --------------------------------------- */

static int store_counters(Cursor *cursor, uint64_t offset, int64_t time_ns) {
  PyObject *metrics = cursor->metrics;
  if (metrics == NULL) return 0;
  PyObject *map = SLOT(metrics, cursor->slot_map);
  if (map == NULL || map == Py_None) {
    PyObject *gave_up = SLOT(metrics, cursor->slot_gave_up);
    if (gave_up == Py_True) return 0;
    /* Not registered yet: ReaderMetrics.read registers (once). */
    PyObject *done = PyObject_CallMethod(metrics, "read", "OKL", cursor->index_object,
                                         (unsigned long long)offset, (long long)time_ns);
    if (done == NULL) return -1;
    Py_DECREF(done);
    return 0;
  }
  PyObject *records_object = SLOT(metrics, cursor->slot_records);
  if (records_object == NULL) {
    PyErr_SetString(PyExc_AttributeError, "ReaderMetrics._records");
    return -1;
  }
  unsigned long long records = PyLong_AsUnsignedLongLong(records_object);
  if (records == (unsigned long long)-1 && PyErr_Occurred()) return -1;
  records += 1;
  Py_buffer view;
  if (PyObject_GetBuffer(map, &view, PyBUF_WRITABLE) < 0) return -1;
  if (view.len < ML_READER_LAST_POLL_NS_OFFSET) {
    PyBuffer_Release(&view);
    PyErr_SetString(PyExc_ValueError, "reader metrics file shorter than its counters");
    return -1;
  }
  PyObject *records_value = PyLong_FromUnsignedLongLong(records);
  PyObject *zero = PyLong_FromLong(0);
  if (records_value == NULL || zero == NULL) {
    Py_XDECREF(records_value);
    Py_XDECREF(zero);
    PyBuffer_Release(&view);
    return -1;
  }
  set_slot(metrics, cursor->slot_records, records_value);
  set_slot(metrics, cursor->slot_empty_polls, zero);
  /* Each counter one aligned 8-byte store (FORMAT.md, "Metrics files"). */
  unsigned char *words = view.buf;
  atomic_store_explicit(journal_word64(words, ML_READER_SEGMENT_OFFSET),
                        (uint64_t)cursor->index, memory_order_relaxed);
  atomic_store_explicit(journal_word64(words, ML_READER_OFFSET_OFFSET), offset,
                        memory_order_relaxed);
  atomic_store_explicit(journal_word64(words, ML_READER_RECORDS_TOTAL_OFFSET), records,
                        memory_order_relaxed);
  atomic_store_explicit(journal_word64(words, ML_READER_LAST_RECORD_NS_OFFSET),
                        (uint64_t)time_ns, memory_order_relaxed);
  PyBuffer_Release(&view);
  return 0;
}

/* -- the step --------------------------------------------------------------------------- */

/* The record at the cursor's offset: STEP_RECORD (in *out, the offset moved past it),
 * STEP_PYTHON (nothing the C step reads here: the Python path takes over, nothing was
 * changed) or STEP_ERROR (an exception set). */
static int step(Cursor *cursor, PyObject **out) {
  if (cursor->pinned == NULL) return STEP_PYTHON;
  /* Pairs with the writer's release store of the commit. */
  uint64_t commit = journal_load_commit_acquire(cursor->base);
  uint64_t offset = cursor->offset;
  if (offset >= commit || commit > cursor->size || commit % JL_RECORD_ALIGNMENT ||
      offset % JL_RECORD_ALIGNMENT || offset < JL_HEADER_SIZE) {
    return STEP_PYTHON; /* nothing new, or a commit or offset the Python path judges */
  }
  const unsigned char *p = cursor->base + offset;
  /* journal._frames.frame_at */
  uint32_t size = u32_at(p);
  if (size == JL_END_OF_SEGMENT || size < JL_MIN_RECORD_SIZE ||
      offset + JL_SIZE_PREFIX_SIZE + size > commit ||
      memcmp(p + JL_RECORD_PAYLOAD_ID_OFFSET, OBL_PAYLOAD_ID, JL_PAYLOAD_ID_SIZE)) {
    return STEP_PYTHON;
  }
  uint64_t frame = (uint64_t)JL_SIZE_PREFIX_SIZE + size;
  /* journal._decode.read_orderbook */
  /* The next record's first lines, while this one's objects are made. */
  uint64_t next = align_record(offset + frame);
  for (uint64_t line = 0; line < PREFETCH_BYTES && next + line < commit; line += 64) {
    __builtin_prefetch(cursor->base + next + line);
  }
  Fields fields;
  if (!own_layout(p, frame, &fields)) {
    if (!cursor->verify || !orderbook_verifies(p, frame)) return STEP_PYTHON;
    any_layout(p, &fields);
  }
  PyObject *record = build_record(cursor, p, &fields, offset, frame);
  if (record == NULL) return PyErr_Occurred() ? STEP_ERROR : STEP_PYTHON;
  cursor->offset = next;
  if (store_counters(cursor, next, fields.local_timestamp_ns) < 0) {
    Py_DECREF(record);
    return STEP_ERROR;
  }
  *out = record;
  return STEP_RECORD;
}

static PyObject *Cursor_step(Cursor *self, PyObject *Py_UNUSED(ignored)) {
  PyObject *record = NULL;
  switch (step(self, &record)) {
    case STEP_RECORD:
      return record;
    case STEP_PYTHON:
      Py_RETURN_NONE;
    default:
      return NULL;
  }
}

/* wait_commit(spins): busy-poll the commit word (acquire loads, a CPU pause between
 * them) until it passes the cursor's offset or `spins` loads have seen it not move:
 * the idle="spin" strategy without a trip through the interpreter per look. True if
 * there may be something to read (always when unbound: the Python path decides). */
static PyObject *Cursor_wait_commit(Cursor *self, PyObject *arg) {
  long spins = PyLong_AsLong(arg);
  if (spins == -1 && PyErr_Occurred()) return NULL;
  if (self->pinned == NULL) Py_RETURN_TRUE;
  for (long i = 0; i < spins; i++) {
    /* Pairs with the writer's release store of the commit. */
    if (journal_load_commit_acquire(self->base) != self->offset) Py_RETURN_TRUE;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
  }
  Py_RETURN_FALSE;
}

/* -- the Cursor type ------------------------------------------------------------------- */

static int slot_of(PyTypeObject *type, const char *name, Py_ssize_t *offset) {
  PyObject *descriptor = PyObject_GetAttrString((PyObject *)type, name);
  if (descriptor == NULL) return -1;
  int ok = Py_IS_TYPE(descriptor, &PyMemberDescr_Type) &&
           ((PyMemberDescrObject *)descriptor)->d_member->type == T_OBJECT_EX;
  if (ok) *offset = ((PyMemberDescrObject *)descriptor)->d_member->offset;
  Py_DECREF(descriptor);
  if (!ok) {
    PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ attribute", type->tp_name, name);
    return -1;
  }
  return 0;
}

static void unbind(Cursor *self) {
  Py_CLEAR(self->pinned);
  Py_CLEAR(self->index_object);
  self->base = NULL;
  self->size = 0;
}

static int Cursor_init(Cursor *self, PyObject *args, PyObject *kwargs) {
  static char *keywords[] = {"verify", NULL};
  int verify;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "p", keywords, &verify)) return -1;
  self->verify = verify;
  unbind(self);
  self->index = -1;
  self->offset = 0;
  return 0;
}

/* The slots of the reader's ReaderMetrics that ReaderMetrics.read touches. */
static int attach_metrics(Cursor *self, PyObject *metrics) {
  if (metrics == Py_None) {
    Py_CLEAR(self->metrics);
    return 0;
  }
  PyTypeObject *type = Py_TYPE(metrics);
  if (slot_of(type, "_map", &self->slot_map) < 0 ||
      slot_of(type, "_gave_up", &self->slot_gave_up) < 0 ||
      slot_of(type, "_records", &self->slot_records) < 0 ||
      slot_of(type, "_empty_polls", &self->slot_empty_polls) < 0) {
    return -1;
  }
  Py_XSETREF(self->metrics, Py_NewRef(metrics));
  return 0;
}

static PyObject *Cursor_bind(Cursor *self, PyObject *args) {
  PyObject *pinned, *metrics;
  long long index;
  unsigned long long offset;
  if (!PyArg_ParseTuple(args, "O!LKO", &PyArray_Type, &pinned, &index, &offset, &metrics)) {
    return NULL;
  }
  PyArrayObject *array = (PyArrayObject *)pinned;
  if (PyArray_NDIM(array) != 1 || PyArray_TYPE(array) != NPY_UINT8 ||
      !PyArray_IS_C_CONTIGUOUS(array) || PyArray_NBYTES(array) < JL_HEADER_SIZE ||
      ((uintptr_t)PyArray_DATA(array) % JL_PAGE_SIZE) != 0) {
    PyErr_SetString(PyExc_ValueError,
                    "bind() takes a page-aligned 1-d uint8 array of a whole segment");
    return NULL;
  }
  if (metrics != self->metrics && attach_metrics(self, metrics) < 0) return NULL;
  PyObject *index_object = PyLong_FromLongLong(index);
  if (index_object == NULL) return NULL;
  unbind(self);
  self->pinned = Py_NewRef(pinned);
  self->base = PyArray_DATA(array);
  self->size = (uint64_t)PyArray_NBYTES(array);
  self->index_object = index_object;
  self->index = index;
  self->offset = offset;
  Py_RETURN_NONE;
}

static PyObject *Cursor_unbind(Cursor *self, PyObject *Py_UNUSED(ignored)) {
  unbind(self);
  Py_RETURN_NONE;
}

static PyObject *Cursor_get_offset(Cursor *self, void *Py_UNUSED(closure)) {
  return PyLong_FromUnsignedLongLong(self->offset);
}

static int Cursor_set_offset(Cursor *self, PyObject *value, void *Py_UNUSED(closure)) {
  if (value == NULL) {
    PyErr_SetString(PyExc_AttributeError, "cannot delete offset");
    return -1;
  }
  unsigned long long offset = PyLong_AsUnsignedLongLong(value);
  if (offset == (unsigned long long)-1 && PyErr_Occurred()) return -1;
  self->offset = offset;
  return 0;
}

static PyObject *Cursor_get_bound(Cursor *self, void *Py_UNUSED(closure)) {
  return PyBool_FromLong(self->pinned != NULL);
}

static PyObject *Cursor_get_verify(Cursor *self, void *Py_UNUSED(closure)) {
  return PyBool_FromLong(self->verify);
}

static int Cursor_set_verify(Cursor *self, PyObject *value, void *Py_UNUSED(closure)) {
  if (value == NULL) {
    PyErr_SetString(PyExc_AttributeError, "cannot delete verify");
    return -1;
  }
  int verify = PyObject_IsTrue(value);
  if (verify < 0) return -1;
  self->verify = verify;
  return 0;
}

static int Cursor_traverse(Cursor *self, visitproc visit, void *arg) {
  Py_VISIT(self->pinned);
  Py_VISIT(self->metrics);
  return 0;
}

static int Cursor_clear(Cursor *self) {
  unbind(self);
  Py_CLEAR(self->metrics);
  Py_CLEAR(self->last_size);
  Py_CLEAR(self->last_timestamp);
  for (int i = 0; i < NAME_CACHE_ENTRIES; i++) Py_CLEAR(self->names[i].text);
  return 0;
}

static void Cursor_dealloc(Cursor *self) {
  PyObject_GC_UnTrack(self);
  Cursor_clear(self);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Cursor_methods[] = {
    {"step", (PyCFunction)Cursor_step, METH_NOARGS,
     "step() -> OrderBookRecord | None\n\nThe record at the offset, the offset moved past "
     "it and the reader's counters stored; None if the Python path reads on from here."},
    {"bind", (PyCFunction)Cursor_bind, METH_VARARGS,
     "bind(pinned, index, offset, metrics)\n\nRead segment `index` (its mapping as a uint8 "
     "array) from `offset`, storing the counters of `metrics` (a ReaderMetrics, or None)."},
    {"wait_commit", (PyCFunction)Cursor_wait_commit, METH_O,
     "wait_commit(spins) -> bool\n\nBusy-poll the commit until it moves past the offset "
     "(True) or `spins` loads saw it still (False)."},
    {"unbind", (PyCFunction)Cursor_unbind, METH_NOARGS,
     "unbind()\n\nLet go of the segment: step() returns None until the next bind."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Cursor_getset[] = {
    {"offset", (getter)Cursor_get_offset, (setter)Cursor_set_offset,
     "where the next frame starts", NULL},
    {"bound", (getter)Cursor_get_bound, NULL, "whether a segment is bound", NULL},
    {"verify", (getter)Cursor_get_verify, (setter)Cursor_set_verify,
     "verify records of other layouts (else the Python path decodes them)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CursorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "journal._creader.Cursor",
    .tp_doc = PyDoc_STR(
        "Cursor(verify)\n\nThe Reader's next-record step over "
        "one mapped segment of an OBK1 journal (see the module's docstring)."),
    .tp_basicsize = sizeof(Cursor),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Cursor_init,
    .tp_dealloc = (destructor)Cursor_dealloc,
    .tp_traverse = (traverseproc)Cursor_traverse,
    .tp_clear = (inquiry)Cursor_clear,
    .tp_methods = Cursor_methods,
    .tp_getset = Cursor_getset,
};

/* -- the module -------------------------------------------------------------------- */

static int add_layout(PyObject *module) {
  PyObject *layout = PyDict_New();
  if (layout == NULL) return -1;
#define ADD(name)                                                              \
  do {                                                                         \
    PyObject *value = PyLong_FromUnsignedLongLong((unsigned long long)(name)); \
    if (value == NULL || PyDict_SetItemString(layout, #name, value) < 0) {     \
      Py_XDECREF(value);                                                       \
      Py_DECREF(layout);                                                       \
      return -1;                                                               \
    }                                                                          \
    Py_DECREF(value);                                                          \
  } while (0);
  READER_LAYOUT_CONSTANTS(ADD)
#undef ADD
  return PyModule_AddObject(module, "LAYOUT", layout) < 0 ? (Py_DECREF(layout), -1) : 0;
}

static struct PyModuleDef creader_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "journal._creader",
    .m_doc = PyDoc_STR("The Reader's next-record step in C (journal/_c/creader.c)."),
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__creader(void) {
  import_array();
  if (PyType_Ready(&CursorType) < 0) return NULL;
  PyObject *module = PyModule_Create(&creader_module_def);
  if (module == NULL) return NULL;
  if (make_record_class(module) < 0) {
    Py_DECREF(module);
    return NULL;
  }
  Py_INCREF(&CursorType);
  if (PyModule_AddObject(module, "Cursor", (PyObject *)&CursorType) < 0) {
    Py_DECREF(&CursorType);
    Py_DECREF(module);
    return NULL;
  }
  if (add_layout(module) < 0) {
    Py_DECREF(module);
    return NULL;
  }
  return module;
}
