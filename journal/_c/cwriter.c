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

#include "atomics.h"
#include "layout.h"

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
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cwriter_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "journal._cwriter",
    .m_doc = "The journal writer's hot path and shared-memory atomics, in C.",
    .m_size = 0,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__cwriter(void) { return PyModule_Create(&cwriter_module); }
