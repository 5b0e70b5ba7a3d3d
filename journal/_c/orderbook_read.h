/* orderbook_read.h: checking an OrderBookData.OrderBook record in place, in C.
 *
 * What the reader's step (creader.c) and the writer's append_frames (cwriter.c) both
 * need: the verifier of journal/_verify.py for the OrderBook schema, and the
 * recognition of the encoder's own layout of journal/_decode.py (_read_own_layout),
 * each accepting exactly what its Python reference accepts and saying nothing about
 * why not (the caller leaves such a record to the Python path, which says it).
 * Offsets are from the record's size prefix; layout.h names them.
 */
#ifndef JOURNAL_ORDERBOOK_READ_H
#define JOURNAL_ORDERBOOK_READ_H

#include <stdint.h>
#include <string.h>

#include "layout.h"
#include "reader_layout.h" /* FB_MAX_BUFFER_SIZE */

static inline uint32_t u32_at(const unsigned char *p) {
  uint32_t value;
  memcpy(&value, p, sizeof value);
  return value;
}

static inline uint16_t u16_at(const unsigned char *p) {
  uint16_t value;
  memcpy(&value, p, sizeof value);
  return value;
}

static inline int32_t i32_at(const unsigned char *p) {
  int32_t value;
  memcpy(&value, p, sizeof value);
  return value;
}

static inline int64_t i64_at(const unsigned char *p) {
  int64_t value;
  memcpy(&value, p, sizeof value);
  return value;
}

static inline uint64_t align_record(uint64_t offset) {
  return (offset + JL_RECORD_ALIGNMENT - 1) & ~(uint64_t)(JL_RECORD_ALIGNMENT - 1);
}

/* -- the verifier of journal/_verify.py, for OrderBookData.OrderBook ----------------
 * Accepts exactly what verify_size_prefixed(data, start, start + limit,
 * ORDERBOOK_SCHEMA) accepts; says nothing about why not (the Python path, which
 * the caller leaves the record to, says it). Offsets are from the size prefix. */

typedef struct {
  int slot;
  int string; /* 1: string, 0: a vector of PriceLevel structs, -1: an i64 scalar */
} OrderBookField;

static const OrderBookField ORDERBOOK_FIELDS[OBL_FIELD_COUNT] = {
    {OBL_FIELD_EXCHANGE_NAME, 1}, {OBL_FIELD_SYMBOL, 1}, {OBL_FIELD_TIMESTAMP, -1},
    {OBL_FIELD_SEQUENCE, -1},     {OBL_FIELD_BIDS, 0},   {OBL_FIELD_ASKS, 0},
    {OBL_FIELD_LOCAL_TIMESTAMP_NS, -1},
};

/* _Buffer.check: `size` bytes at `at` inside the buffer, aligned to `alignment`. */
static inline int in_buffer(int64_t at, uint64_t size, uint64_t alignment, uint64_t limit) {
  return at >= 0 && (uint64_t)at + size <= limit && ((uint64_t)at & (alignment - 1)) == 0;
}

static int orderbook_verifies(const unsigned char *p, uint64_t limit) {
  /* _check_size_prefix */
  if (limit < JL_SIZE_PREFIX_SIZE + JL_MIN_RECORD_SIZE) return 0;
  uint32_t size = u32_at(p);
  if ((uint64_t)size + JL_SIZE_PREFIX_SIZE > limit || size > FB_MAX_BUFFER_SIZE) return 0;
  if (size < JL_MIN_RECORD_SIZE) return 0;
  limit = (uint64_t)size + JL_SIZE_PREFIX_SIZE;
  /* _check_identifier */
  if (memcmp(p + JL_RECORD_PAYLOAD_ID_OFFSET, OBL_PAYLOAD_ID, JL_PAYLOAD_ID_SIZE)) return 0;
  /* _check_tables */
  int64_t table = JL_SIZE_PREFIX_SIZE + (int64_t)u32_at(p + JL_SIZE_PREFIX_SIZE);
  if (!in_buffer(table, 4, 4, limit)) return 0;
  int64_t vtable = table - (int64_t)i32_at(p + table);
  if (!in_buffer(vtable, OBL_VTABLE_HEAD_SIZE, 2, limit)) return 0;
  uint16_t vtable_size = u16_at(p + vtable);
  uint16_t table_size = u16_at(p + vtable + 2);
  if (vtable_size % OBL_VTABLE_ENTRY_SIZE || vtable_size < OBL_VTABLE_HEAD_SIZE) return 0;
  if (!in_buffer(vtable, vtable_size, 2, limit)) return 0;
  if (!in_buffer(table, table_size, 4, limit)) return 0;
  /* _check_field, each field of the schema */
  for (int i = 0; i < OBL_FIELD_COUNT; i++) {
    const OrderBookField *field = &ORDERBOOK_FIELDS[i];
    int64_t entry = OBL_VTABLE_HEAD_SIZE + OBL_VTABLE_ENTRY_SIZE * field->slot;
    if (entry >= vtable_size) continue;
    uint16_t offset = u16_at(p + vtable + entry);
    if (offset == 0) continue;
    int64_t at = table + offset;
    uint64_t width = field->string < 0 ? OBL_VALUE_SIZE : OBL_UOFFSET_SIZE;
    if ((uint64_t)offset + width > table_size) return 0;
    if (field->string < 0) {
      if (!in_buffer(at, OBL_VALUE_SIZE, OBL_VALUE_SIZE, limit)) return 0;
      continue;
    }
    /* _check_reference */
    if (!in_buffer(at, OBL_UOFFSET_SIZE, OBL_UOFFSET_SIZE, limit)) return 0;
    uint32_t reference = u32_at(p + at);
    if (reference == 0) return 0;
    int64_t target = at + (int64_t)reference;
    if (!in_buffer(target, OBL_UOFFSET_SIZE, OBL_UOFFSET_SIZE, limit)) return 0;
    uint64_t count = u32_at(p + target);
    int64_t items = target + OBL_UOFFSET_SIZE;
    if (field->string) {
      if (!in_buffer(items, count + 1, 1, limit)) return 0;
      if (p[items + (int64_t)count] != 0) return 0;
    } else if (!in_buffer(items, count * OBL_LEVEL_SIZE, OBL_LEVEL_ALIGNMENT, limit)) {
      return 0;
    }
  }
  return 1;
}

typedef struct {
  uint32_t exchange_name_at, exchange_name_length;
  uint32_t symbol_at, symbol_length;
  int64_t timestamp, sequence, local_timestamp_ns;
  uint64_t bids_at, asks_at; /* from the size prefix: the first level */
  uint32_t n_bids, n_asks;
  int has_exchange_name, has_symbol;
} Fields;

/* journal._decode._read_own_layout: 1 if the record at `p` (its frame `frame`
 * bytes) is in the encoder's layout, its fields in `out`; 0 if not. The same
 * conditions, in the same order. */
static int own_layout(const unsigned char *p, uint64_t frame, Fields *out) {
  if (frame < OBL_HEAD_SIZE) return 0;
  struct obl_head head;
  memcpy(&head, p, sizeof head);
  static const uint16_t vtable_fields[OBL_FIELD_COUNT] = {
      OBL_EXCHANGE_NAME_FIELD, OBL_SYMBOL_FIELD, OBL_TIMESTAMP_FIELD,
      OBL_SEQUENCE_FIELD,      OBL_BIDS_FIELD,   OBL_ASKS_FIELD,
      OBL_LOCAL_TIMESTAMP_NS_FIELD,
  };
  if (head.root_offset != OBL_TABLE_POS - OBL_ROOT_OFFSET_POS ||
      memcmp(head.payload_id, OBL_PAYLOAD_ID, JL_PAYLOAD_ID_SIZE) ||
      head.vtable_size != OBL_VTABLE_SIZE || head.table_size != OBL_TABLE_SIZE ||
      memcmp(head.vtable_fields, vtable_fields, sizeof vtable_fields) ||
      head.table_soffset != OBL_TABLE_POS - OBL_VTABLE_POS ||
      head.bids != OBL_BIDS_VECTOR_POS - OBL_BIDS_POS) {
    return 0;
  }
  uint64_t size = (uint64_t)head.size_prefix + JL_SIZE_PREFIX_SIZE;
  uint64_t n_bids = head.bids_count;
  uint64_t asks_at = OBL_ASKS_VECTOR_POS(0) + OBL_LEVEL_SIZE * n_bids;
  if (size > frame || asks_at + OBL_UOFFSET_SIZE > size) return 0;
  uint64_t n_asks = u32_at(p + asks_at);
  uint64_t exchange_at = asks_at + OBL_UOFFSET_SIZE + OBL_LEVEL_SIZE * n_asks;
  if ((uint64_t)head.asks != asks_at - OBL_ASKS_POS ||
      (uint64_t)head.exchange_name != exchange_at - OBL_EXCHANGE_NAME_POS ||
      exchange_at + OBL_UOFFSET_SIZE > size) {
    return 0;
  }
  uint64_t exchange_end = exchange_at + OBL_UOFFSET_SIZE + u32_at(p + exchange_at);
  uint64_t symbol_at = OBL_SYMBOL_POS + (uint64_t)head.symbol;
  if (symbol_at <= exchange_end || symbol_at % OBL_UOFFSET_SIZE ||
      symbol_at + OBL_UOFFSET_SIZE > size) {
    return 0;
  }
  uint64_t symbol_end = symbol_at + OBL_UOFFSET_SIZE + u32_at(p + symbol_at);
  if (symbol_end >= size || p[exchange_end] || p[symbol_end]) return 0;
  out->exchange_name_at = (uint32_t)(exchange_at + OBL_UOFFSET_SIZE);
  out->exchange_name_length = (uint32_t)(exchange_end - exchange_at - OBL_UOFFSET_SIZE);
  out->symbol_at = (uint32_t)(symbol_at + OBL_UOFFSET_SIZE);
  out->symbol_length = (uint32_t)(symbol_end - symbol_at - OBL_UOFFSET_SIZE);
  out->has_exchange_name = out->has_symbol = 1;
  out->timestamp = head.timestamp;
  out->sequence = head.sequence;
  out->local_timestamp_ns = head.local_timestamp_ns;
  out->bids_at = OBL_BIDS_LEVELS_POS;
  out->n_bids = (uint32_t)n_bids;
  out->asks_at = asks_at + OBL_UOFFSET_SIZE;
  out->n_asks = (uint32_t)n_asks;
  return 1;
}

#endif /* JOURNAL_ORDERBOOK_READ_H */
