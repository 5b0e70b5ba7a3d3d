/* The binary layout, for the C extensions: the one place C writes an offset.
 *
 * Mirrors, name for name, journal/_layout.py (prefix JL_), journal/_orderbook_layout.py
 * (OBL_) and journal/_metrics_layout.py (ML_): the C name is the prefix plus the
 * Python name, derived the same way. docs/FORMAT.md is the specification and has
 * the diagrams; tests/test_native_layout.py checks every constant here against the
 * Python one (the extension exports them all, through LAYOUT_CONSTANTS below, and
 * the test fails on a #define missing from that list).
 *
 * Order-book record, offsets from the size prefix (a record starts 8-aligned):
 *
 *      0  u32  size prefix            32  i32 soffset (TABLE)     64  u32 -> symbol
 *      4  u32  root offset            36  u32 -> exchange_name    68  u32 -> bids
 *      8  4s   "OBK1"                 40  i64 timestamp           72  u32 -> asks
 *     12  vtable (u16 x 9), 2 zero    48  i64 sequence            76  u32 len(bids)
 *                                     56  i64 local_timestamp_ns  80  bids {f64, f64}...
 *     then 4 zero bytes, u32 len(asks), the asks; u32 len(exchange_name), its UTF-8
 *     bytes, NUL, zero to a multiple of 4; u32 len(symbol), bytes, NUL, zero to 8.
 */
#ifndef JOURNAL_LAYOUT_H
#define JOURNAL_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the journal's integers are little-endian and stored natively: little-endian CPUs only"
#endif

/* -- journal/_layout.py: the segment ---------------------------------------------- */

#define JL_FORMAT_VERSION 1
#define JL_HEADER_SIZE 4096
#define JL_MAGIC_OFFSET 0
#define JL_FORMAT_VERSION_OFFSET (JL_MAGIC_OFFSET + 8)
#define JL_HEADER_SIZE_OFFSET (JL_FORMAT_VERSION_OFFSET + 4)
#define JL_SEGMENT_SIZE_OFFSET (JL_HEADER_SIZE_OFFSET + 4)
#define JL_SEGMENT_INDEX_OFFSET (JL_SEGMENT_SIZE_OFFSET + 8)
#define JL_PAYLOAD_ID_OFFSET (JL_SEGMENT_INDEX_OFFSET + 8)
#define JL_MAX_RECORD_SIZE_OFFSET (JL_PAYLOAD_ID_OFFSET + 4)
#define JL_CREATED_NS_OFFSET (JL_MAX_RECORD_SIZE_OFFSET + 4)
#define JL_WRITER_PID_OFFSET (JL_CREATED_NS_OFFSET + 8)
#define JL_WRITER_STARTED_NS_OFFSET (JL_WRITER_PID_OFFSET + 8)
#define JL_WRITER_HOST_OFFSET (JL_WRITER_STARTED_NS_OFFSET + 8)
#define JL_WRITER_HOST_SIZE 64
#define JL_END_MARKER_OFFSET_OFFSET (JL_WRITER_HOST_OFFSET + JL_WRITER_HOST_SIZE)
#define JL_INCARNATION_NS_OFFSET (JL_END_MARKER_OFFSET_OFFSET + 8)

/* Two 64-byte lines: the adjacent-line prefetcher pulls lines in pairs. The commit
 * word is alone on its pair; the readers' futex_sleepers word on the next one. */
#define JL_CACHE_LINE_PAIR 128
#define JL_COMMIT_OFFSET_OFFSET (2 * JL_CACHE_LINE_PAIR)
#define JL_FUTEX_SLEEPERS_OFFSET (JL_COMMIT_OFFSET_OFFSET + JL_CACHE_LINE_PAIR)

#define JL_PAYLOAD_ID_SIZE 4
#define JL_SIZE_PREFIX_SIZE 4
#define JL_RECORD_PAYLOAD_ID_OFFSET (JL_SIZE_PREFIX_SIZE + 4)
#define JL_RECORD_ALIGNMENT 8
#define JL_END_OF_SEGMENT 0xFFFFFFFFu
#define JL_END_MARKER_SIZE 8
#define JL_MIN_RECORD_SIZE 8
#define JL_MIN_SEGMENT_SIZE (64 * 1024)
#define JL_MAX_SEGMENT_SIZE (UINT64_C(1) << 32)
#define JL_PAGE_SIZE 4096

/* -- journal/_orderbook_layout.py: one OrderBook record ------------------------------ */

#define OBL_PAYLOAD_ID "OBK1"

/* vtable slots in schema order */
#define OBL_FIELD_EXCHANGE_NAME 0
#define OBL_FIELD_SYMBOL 1
#define OBL_FIELD_TIMESTAMP 2
#define OBL_FIELD_SEQUENCE 3
#define OBL_FIELD_BIDS 4
#define OBL_FIELD_ASKS 5
#define OBL_FIELD_LOCAL_TIMESTAMP_NS 6
#define OBL_FIELD_COUNT 7

/* FlatBuffers' own sizes */
#define OBL_VTABLE_HEAD_SIZE 4
#define OBL_VTABLE_ENTRY_SIZE 2
#define OBL_UOFFSET_SIZE 4

#define OBL_ROOT_OFFSET_POS 4
#define OBL_VTABLE_POS 12
#define OBL_VTABLE_SIZE (OBL_VTABLE_HEAD_SIZE + OBL_VTABLE_ENTRY_SIZE * OBL_FIELD_COUNT)
#define OBL_TABLE_POS 32

/* field positions inside the table, as stored in the vtable */
#define OBL_EXCHANGE_NAME_FIELD 4
#define OBL_TIMESTAMP_FIELD 8
#define OBL_SEQUENCE_FIELD 16
#define OBL_LOCAL_TIMESTAMP_NS_FIELD 24
#define OBL_SYMBOL_FIELD 32
#define OBL_BIDS_FIELD 36
#define OBL_ASKS_FIELD 40
#define OBL_TABLE_SIZE 44

/* the same fields from the size prefix */
#define OBL_EXCHANGE_NAME_POS (OBL_TABLE_POS + OBL_EXCHANGE_NAME_FIELD)
#define OBL_TIMESTAMP_POS (OBL_TABLE_POS + OBL_TIMESTAMP_FIELD)
#define OBL_SEQUENCE_POS (OBL_TABLE_POS + OBL_SEQUENCE_FIELD)
#define OBL_LOCAL_TIMESTAMP_NS_POS (OBL_TABLE_POS + OBL_LOCAL_TIMESTAMP_NS_FIELD)
#define OBL_SYMBOL_POS (OBL_TABLE_POS + OBL_SYMBOL_FIELD)
#define OBL_BIDS_POS (OBL_TABLE_POS + OBL_BIDS_FIELD)
#define OBL_ASKS_POS (OBL_TABLE_POS + OBL_ASKS_FIELD)
#define OBL_VALUE_SIZE 8

#define OBL_BIDS_VECTOR_POS (OBL_TABLE_POS + OBL_TABLE_SIZE)
#define OBL_BIDS_LEVELS_POS (OBL_BIDS_VECTOR_POS + OBL_UOFFSET_SIZE)
#define OBL_LEVEL_SIZE 16
#define OBL_LEVEL_ALIGNMENT 8
#define OBL_ASKS_PADDING 4
#define OBL_HEAD_SIZE OBL_BIDS_LEVELS_POS
#define OBL_VALUES_POS OBL_TIMESTAMP_POS
#define OBL_VALUES_END (OBL_LOCAL_TIMESTAMP_NS_POS + OBL_VALUE_SIZE)
#define OBL_WORD_SIZE 8

/* Where len(asks) is in a record of n_bids bid levels (its levels follow). */
#define OBL_ASKS_VECTOR_POS(n_bids) \
  (OBL_BIDS_LEVELS_POS + OBL_LEVEL_SIZE * (n_bids) + OBL_ASKS_PADDING)

/* The record up to its first bid level, field by field (Python: HEAD_STRUCT). Every
 * field is naturally aligned at its offset: no padding, checked below. */
struct obl_head {
  uint32_t size_prefix;
  uint32_t root_offset;
  char payload_id[JL_PAYLOAD_ID_SIZE];
  uint16_t vtable_size;
  uint16_t table_size;
  uint16_t vtable_fields[OBL_FIELD_COUNT];
  uint16_t vtable_padding;
  int32_t table_soffset;
  uint32_t exchange_name;
  int64_t timestamp;
  int64_t sequence;
  int64_t local_timestamp_ns;
  uint32_t symbol;
  uint32_t bids;
  uint32_t asks;
  uint32_t bids_count;
};

_Static_assert(offsetof(struct obl_head, root_offset) == OBL_ROOT_OFFSET_POS, "root offset");
_Static_assert(offsetof(struct obl_head, payload_id) == JL_RECORD_PAYLOAD_ID_OFFSET, "id");
_Static_assert(offsetof(struct obl_head, vtable_size) == OBL_VTABLE_POS, "vtable");
_Static_assert(offsetof(struct obl_head, table_soffset) == OBL_TABLE_POS, "table");
_Static_assert(offsetof(struct obl_head, exchange_name) == OBL_EXCHANGE_NAME_POS, "exchange");
_Static_assert(offsetof(struct obl_head, timestamp) == OBL_TIMESTAMP_POS, "timestamp");
_Static_assert(offsetof(struct obl_head, sequence) == OBL_SEQUENCE_POS, "sequence");
_Static_assert(offsetof(struct obl_head, local_timestamp_ns) == OBL_LOCAL_TIMESTAMP_NS_POS,
               "local_timestamp_ns");
_Static_assert(offsetof(struct obl_head, symbol) == OBL_SYMBOL_POS, "symbol");
_Static_assert(offsetof(struct obl_head, bids) == OBL_BIDS_POS, "bids");
_Static_assert(offsetof(struct obl_head, asks) == OBL_ASKS_POS, "asks");
_Static_assert(offsetof(struct obl_head, bids_count) == OBL_BIDS_VECTOR_POS, "len(bids)");
_Static_assert(sizeof(struct obl_head) == OBL_HEAD_SIZE, "the head ends at the first bid");
_Static_assert(OBL_VTABLE_POS + OBL_VTABLE_SIZE + 2 == OBL_TABLE_POS, "vtable, 2 zero bytes");
_Static_assert(OBL_HEAD_SIZE % OBL_WORD_SIZE == 0, "levels 8-aligned");
_Static_assert(OBL_ASKS_VECTOR_POS(0) % OBL_LEVEL_ALIGNMENT == OBL_LEVEL_ALIGNMENT - 4,
               "the asks' levels 8-aligned after their u32 length");

/* -- journal/_metrics_layout.py: the writer's counters -------------------------------- */

#define ML_METRICS_COUNTERS_OFFSET 128
#define ML_WRITER_METRICS_SIZE 4096
#define ML_RECORDS_TOTAL_OFFSET ML_METRICS_COUNTERS_OFFSET
#define ML_LAST_PUBLISH_NS_OFFSET (ML_RECORDS_TOTAL_OFFSET + 8)
#define ML_LATENCY_SAMPLE_PERIOD 16
#define ML_SEGMENT_SEQUENCE_OFFSET 256
#define ML_SEGMENT_OFFSET (ML_SEGMENT_SEQUENCE_OFFSET + 8)
#define ML_BYTES_BASE_OFFSET (ML_SEGMENT_OFFSET + 8)
#define ML_ROLLS_TOTAL_OFFSET (ML_BYTES_BASE_OFFSET + 8)
#define ML_REFUSED_INVALID_TOTAL_OFFSET (ML_ROLLS_TOTAL_OFFSET + 8)
#define ML_REFUSED_TOO_LARGE_TOTAL_OFFSET (ML_REFUSED_INVALID_TOTAL_OFFSET + 8)
#define ML_REFUSED_JOURNAL_FULL_TOTAL_OFFSET (ML_REFUSED_TOO_LARGE_TOTAL_OFFSET + 8)
#define ML_LATENCY_SUM_NS_OFFSET (ML_REFUSED_JOURNAL_FULL_TOTAL_OFFSET + 8)
#define ML_LATENCY_COUNTS_OFFSET 384
#define ML_LATENCY_SUB_BUCKET_BITS 3
#define ML_LATENCY_MAX_BITS 36
#define ML_LATENCY_MAX_NS ((UINT64_C(1) << ML_LATENCY_MAX_BITS) - 1)
#define ML_LATENCY_BUCKETS \
  ((ML_LATENCY_MAX_BITS - ML_LATENCY_SUB_BUCKET_BITS + 1) << ML_LATENCY_SUB_BUCKET_BITS)

_Static_assert(ML_LATENCY_COUNTS_OFFSET + 8 * ML_LATENCY_BUCKETS <= ML_WRITER_METRICS_SIZE,
               "the histogram fits the file");
_Static_assert((ML_LATENCY_SAMPLE_PERIOD & (ML_LATENCY_SAMPLE_PERIOD - 1)) == 0,
               "a power of two");

/* The counter that value_ns falls in (Python: latency_bucket; FORMAT.md has the
 * scheme): value_ns below 16, then 8 sub-buckets per power of two. */
static inline unsigned journal_latency_bucket(uint64_t value_ns) {
  if (value_ns > ML_LATENCY_MAX_NS) value_ns = ML_LATENCY_MAX_NS;
  int bits = value_ns ? 64 - __builtin_clzll(value_ns) : 0;
  int shift = bits - ML_LATENCY_SUB_BUCKET_BITS - 1;
  if (shift <= 0) return (unsigned)value_ns;
  return ((unsigned)shift << ML_LATENCY_SUB_BUCKET_BITS) + (unsigned)(value_ns >> shift);
}

/* Every constant above, for the extension to export and tests/test_native_layout.py
 * to compare with Python's (X(name) per constant; OBL_PAYLOAD_ID is compared apart). */
#define LAYOUT_CONSTANTS(X)                                                           \
  X(JL_FORMAT_VERSION) X(JL_HEADER_SIZE) X(JL_MAGIC_OFFSET) X(JL_FORMAT_VERSION_OFFSET) \
  X(JL_HEADER_SIZE_OFFSET) X(JL_SEGMENT_SIZE_OFFSET) X(JL_SEGMENT_INDEX_OFFSET)         \
  X(JL_PAYLOAD_ID_OFFSET) X(JL_MAX_RECORD_SIZE_OFFSET) X(JL_CREATED_NS_OFFSET)          \
  X(JL_WRITER_PID_OFFSET) X(JL_WRITER_STARTED_NS_OFFSET) X(JL_WRITER_HOST_OFFSET)       \
  X(JL_WRITER_HOST_SIZE) X(JL_END_MARKER_OFFSET_OFFSET) X(JL_INCARNATION_NS_OFFSET)     \
  X(JL_CACHE_LINE_PAIR) X(JL_COMMIT_OFFSET_OFFSET) X(JL_FUTEX_SLEEPERS_OFFSET)          \
  X(JL_PAYLOAD_ID_SIZE) X(JL_SIZE_PREFIX_SIZE) X(JL_RECORD_PAYLOAD_ID_OFFSET)           \
  X(JL_RECORD_ALIGNMENT) X(JL_END_OF_SEGMENT) X(JL_END_MARKER_SIZE)                     \
  X(JL_MIN_RECORD_SIZE) X(JL_MIN_SEGMENT_SIZE) X(JL_MAX_SEGMENT_SIZE) X(JL_PAGE_SIZE)   \
  X(OBL_FIELD_EXCHANGE_NAME) X(OBL_FIELD_SYMBOL) X(OBL_FIELD_TIMESTAMP)                 \
  X(OBL_FIELD_SEQUENCE) X(OBL_FIELD_BIDS) X(OBL_FIELD_ASKS)                             \
  X(OBL_FIELD_LOCAL_TIMESTAMP_NS) X(OBL_FIELD_COUNT) X(OBL_VTABLE_HEAD_SIZE)            \
  X(OBL_VTABLE_ENTRY_SIZE) X(OBL_UOFFSET_SIZE) X(OBL_ROOT_OFFSET_POS)                   \
  X(OBL_VTABLE_POS) X(OBL_VTABLE_SIZE) X(OBL_TABLE_POS) X(OBL_EXCHANGE_NAME_FIELD)      \
  X(OBL_TIMESTAMP_FIELD) X(OBL_SEQUENCE_FIELD) X(OBL_LOCAL_TIMESTAMP_NS_FIELD)          \
  X(OBL_SYMBOL_FIELD) X(OBL_BIDS_FIELD) X(OBL_ASKS_FIELD) X(OBL_TABLE_SIZE)             \
  X(OBL_EXCHANGE_NAME_POS) X(OBL_TIMESTAMP_POS) X(OBL_SEQUENCE_POS)                     \
  X(OBL_LOCAL_TIMESTAMP_NS_POS) X(OBL_SYMBOL_POS) X(OBL_BIDS_POS) X(OBL_ASKS_POS)       \
  X(OBL_VALUE_SIZE) X(OBL_BIDS_VECTOR_POS) X(OBL_BIDS_LEVELS_POS) X(OBL_LEVEL_SIZE)     \
  X(OBL_LEVEL_ALIGNMENT) X(OBL_ASKS_PADDING) X(OBL_HEAD_SIZE) X(OBL_VALUES_POS)         \
  X(OBL_VALUES_END) X(OBL_WORD_SIZE) X(ML_METRICS_COUNTERS_OFFSET)                      \
  X(ML_WRITER_METRICS_SIZE) X(ML_RECORDS_TOTAL_OFFSET) X(ML_LAST_PUBLISH_NS_OFFSET)     \
  X(ML_LATENCY_SAMPLE_PERIOD) X(ML_SEGMENT_SEQUENCE_OFFSET) X(ML_SEGMENT_OFFSET)      \
  X(ML_BYTES_BASE_OFFSET) X(ML_ROLLS_TOTAL_OFFSET) X(ML_REFUSED_INVALID_TOTAL_OFFSET)   \
  X(ML_REFUSED_TOO_LARGE_TOTAL_OFFSET) X(ML_REFUSED_JOURNAL_FULL_TOTAL_OFFSET)          \
  X(ML_LATENCY_SUM_NS_OFFSET) X(ML_LATENCY_COUNTS_OFFSET) X(ML_LATENCY_SUB_BUCKET_BITS) \
  X(ML_LATENCY_MAX_BITS) X(ML_LATENCY_MAX_NS) X(ML_LATENCY_BUCKETS)

#endif /* JOURNAL_LAYOUT_H */
