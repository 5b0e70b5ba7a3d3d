/* What the reader's extension needs beyond journal/_c/layout.h: the reader's own
 * counters of journal/_metrics_layout.py (prefix ML_, the Python name after it, as
 * in layout.h), and FlatBuffers' buffer size limit of journal/_verify.py (FB_).
 * tests/test_native_reader.py compares every constant here with the Python one (the
 * extension exports them, through READER_LAYOUT_CONSTANTS, which must list every
 * #define).
 *
 * Reader metrics file, <journal>/readers/<name>-<pid>[-<n>].metrics:
 *
 *   128 | segment | offset | records_total | last_record_ns |   every record
 *   160 | last_poll_ns                                         |   empty polls
 */
#ifndef JOURNAL_READER_LAYOUT_H
#define JOURNAL_READER_LAYOUT_H

#include "layout.h"

/* Guarded: layout.h may come to define them too (the same values, tested). */
#ifndef ML_READER_SEGMENT_OFFSET
#define ML_READER_METRICS_SIZE 256
#define ML_READER_SEGMENT_OFFSET ML_METRICS_COUNTERS_OFFSET
#define ML_READER_OFFSET_OFFSET (ML_READER_SEGMENT_OFFSET + 8)
#define ML_READER_RECORDS_TOTAL_OFFSET (ML_READER_OFFSET_OFFSET + 8)
#define ML_READER_LAST_RECORD_NS_OFFSET (ML_READER_RECORDS_TOTAL_OFFSET + 8)
#define ML_READER_LAST_POLL_NS_OFFSET (ML_READER_LAST_RECORD_NS_OFFSET + 8)
#endif

/* FlatBuffers' limit on a buffer's size (journal/_verify.py _MAX_BUFFER_SIZE). */
#define FB_MAX_BUFFER_SIZE 0x7FFFFFFFu

#define READER_LAYOUT_CONSTANTS(X)                                                  \
  X(ML_READER_METRICS_SIZE) X(ML_READER_SEGMENT_OFFSET) X(ML_READER_OFFSET_OFFSET)   \
  X(ML_READER_RECORDS_TOTAL_OFFSET) X(ML_READER_LAST_RECORD_NS_OFFSET)               \
  X(ML_READER_LAST_POLL_NS_OFFSET) X(FB_MAX_BUFFER_SIZE)

#endif /* JOURNAL_READER_LAYOUT_H */
