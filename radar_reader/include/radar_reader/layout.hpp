// The binary layout of a journal segment: the one place C++ writes an offset.
//
// docs/FORMAT.md is the specification; journal/_layout.py mirrors these names, and
// tests/test_cpp_layout.py checks that both agree. Every integer is little-endian.
//
//        0                   1                   2                   3
//        0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//       +---------------------------------------------------------------+
//     0 |                      magic "OBJOURNL" (8)                     |
//       +---------------------------------------------------------------+
//     8 |          format_version (u32)  |       header_size (u32)      |
//    16 |                      segment_size (u64)                       |
//    24 |                      segment_index (u64)                      |
//    32 |      payload_id (4 ASCII)      |       max_record_size (u32)  |
//    40 |                 created_ns (i64, CLOCK_REALTIME)              |
//    48 |        writer_pid (u32)        |          reserved (u32)      |
//    56 |                writer_started_ns (i64)                        |
//    64 |                 writer_host (64 bytes, NUL padded)            |
//   128 |   end_marker_offset (u64): 0 while open                       |
//   136 |   incarnation_ns (i64): created_ns of the incarnation's first   |
//       |   segment, the same in all its segments (0: unknown)          |
//   144 |                          reserved                             |
//       +---------------------------------------------------------------+
//   256 |   commit_offset (u64): writer only, alone on lines 256..383   |
//       +---------------------------------------------------------------+
//   384 |   futex_sleepers (u32): readers set, the writer clears        |
//       +---------------------------------------------------------------+
//   512 |                  reserved (zero) up to kHeaderSize            |
//  4096 | record | pad | record | pad | ... | end marker | zero ...     |
//       +---------------------------------------------------------------+
//
// Record frame at an 8-aligned offset p: u32 size, then a FlatBuffer of `size`
// bytes (its file_identifier at p + 8), zero padding to the next multiple of 8.
// End-of-segment marker: u32 kEndOfSegment, u32 zero.
#pragma once

#include <cstddef>
#include <cstdint>

namespace radar::layout {

inline constexpr char kMagic[8] = {'O', 'B', 'J', 'O', 'U', 'R', 'N', 'L'};
inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::uint32_t kHeaderSize = 4096;

inline constexpr std::size_t kMagicOffset = 0;
inline constexpr std::size_t kFormatVersionOffset = kMagicOffset + sizeof kMagic;
inline constexpr std::size_t kHeaderSizeOffset = kFormatVersionOffset + 4;
inline constexpr std::size_t kSegmentSizeOffset = kHeaderSizeOffset + 4;
inline constexpr std::size_t kSegmentIndexOffset = kSegmentSizeOffset + 8;
inline constexpr std::size_t kPayloadIdOffset = kSegmentIndexOffset + 8;
inline constexpr std::size_t kMaxRecordSizeOffset = kPayloadIdOffset + 4;
inline constexpr std::size_t kCreatedNsOffset = kMaxRecordSizeOffset + 4;
inline constexpr std::size_t kWriterPidOffset = kCreatedNsOffset + 8;
inline constexpr std::size_t kWriterStartedNsOffset = kWriterPidOffset + 8;
inline constexpr std::size_t kWriterHostOffset = kWriterStartedNsOffset + 8;
inline constexpr std::size_t kWriterHostSize = 64;
inline constexpr std::size_t kEndMarkerOffsetOffset = kWriterHostOffset + kWriterHostSize;
// Tells incarnations of one journal directory apart (FORMAT.md, "Incarnations").
inline constexpr std::size_t kIncarnationNsOffset = kEndMarkerOffsetOffset + 8;

// Two 64-byte lines: the adjacent-line prefetcher pulls lines in pairs.
inline constexpr std::size_t kCacheLinePair = 128;
inline constexpr std::size_t kCommitOffsetOffset = 2 * kCacheLinePair;
inline constexpr std::size_t kFutexSleepersOffset = kCommitOffsetOffset + kCacheLinePair;

inline constexpr std::size_t kPayloadIdSize = 4;
inline constexpr std::size_t kSizePrefixSize = 4;
// A record's file_identifier: after its size prefix and the FlatBuffer's root offset.
inline constexpr std::size_t kRecordPayloadIdOffset = kSizePrefixSize + 4;
inline constexpr std::size_t kRecordAlignment = 8;
inline constexpr std::uint32_t kEndOfSegment = 0xFFFF'FFFFu;
inline constexpr std::size_t kEndMarkerSize = 8;
// The smallest FlatBuffer after the prefix: root offset (4) and identifier (4).
inline constexpr std::uint32_t kMinRecordSize = 8;

inline constexpr std::uint64_t kMinSegmentSize = 64 * 1024;
// Offsets must fit the u32 low half of the commit word that futex waits on.
inline constexpr std::uint64_t kMaxSegmentSize = std::uint64_t{1} << 32;
inline constexpr std::uint64_t kPageSize = 4096;

inline constexpr const char* kSegmentSuffix = ".journal";
inline constexpr int kSegmentNameDigits = 8;
inline constexpr const char* kLockFileName = "writer.lock";
// A segment being created is ".<segment name>.creating" until linked into place.
inline constexpr const char* kCreatingSuffix = ".creating";

// Payload identifiers (FlatBuffers file_identifier) of the two record schemas: the
// only place C++ spells them (journal/_orderbook_layout.py PAYLOAD_ID, and
// journal/_verify.py for RDR1, are Python's).
inline constexpr char kOrderBookPayloadId[kPayloadIdSize] = {'O', 'B', 'K', '1'};
inline constexpr char kRadarResultPayloadId[kPayloadIdSize] = {'R', 'D', 'R', '1'};

// The header as a struct, for reading and writing the write-once fields; the shared
// words (commit, end marker, sleepers) are only ever accessed through
// radar_reader/atomics.hpp.
struct SegmentHeader {
  char magic[sizeof kMagic];
  std::uint32_t format_version;
  std::uint32_t header_size;
  std::uint64_t segment_size;
  std::uint64_t segment_index;
  char payload_id[kPayloadIdSize];
  std::uint32_t max_record_size;
  std::int64_t created_ns;
  std::uint32_t writer_pid;
  std::uint32_t reserved0;
  std::int64_t writer_started_ns;
  char writer_host[kWriterHostSize];
  std::uint64_t end_marker_offset;
  std::int64_t incarnation_ns;
  std::uint8_t reserved1[kCommitOffsetOffset - kIncarnationNsOffset - 8];
  std::uint64_t commit_offset;
  std::uint8_t reserved2[kCacheLinePair - 8];
  std::uint32_t futex_sleepers;
  std::uint8_t reserved3[kHeaderSize - kFutexSleepersOffset - 4];
};
static_assert(sizeof(SegmentHeader) == kHeaderSize);
static_assert(offsetof(SegmentHeader, magic) == kMagicOffset);
static_assert(offsetof(SegmentHeader, format_version) == kFormatVersionOffset);
static_assert(offsetof(SegmentHeader, header_size) == kHeaderSizeOffset);
static_assert(offsetof(SegmentHeader, segment_size) == kSegmentSizeOffset);
static_assert(offsetof(SegmentHeader, segment_index) == kSegmentIndexOffset);
static_assert(offsetof(SegmentHeader, payload_id) == kPayloadIdOffset);
static_assert(offsetof(SegmentHeader, max_record_size) == kMaxRecordSizeOffset);
static_assert(offsetof(SegmentHeader, created_ns) == kCreatedNsOffset);
static_assert(offsetof(SegmentHeader, writer_pid) == kWriterPidOffset);
static_assert(offsetof(SegmentHeader, writer_started_ns) == kWriterStartedNsOffset);
static_assert(offsetof(SegmentHeader, writer_host) == kWriterHostOffset);
static_assert(offsetof(SegmentHeader, end_marker_offset) == kEndMarkerOffsetOffset);
static_assert(offsetof(SegmentHeader, incarnation_ns) == kIncarnationNsOffset);
static_assert(offsetof(SegmentHeader, commit_offset) == kCommitOffsetOffset);
static_assert(offsetof(SegmentHeader, futex_sleepers) == kFutexSleepersOffset);
static_assert(kCommitOffsetOffset % kCacheLinePair == 0, "commit alone on its line pair");
static_assert(kFutexSleepersOffset % kCacheLinePair == 0, "reader-written word apart");

constexpr std::uint64_t align_record(std::uint64_t offset) {
  return (offset + kRecordAlignment - 1) & ~std::uint64_t{kRecordAlignment - 1};
}

// Largest size prefix a segment of `segment_size` can hold with its end marker.
constexpr std::uint64_t max_record_size(std::uint64_t segment_size) {
  return segment_size - kHeaderSize - kEndMarkerSize - kSizePrefixSize;
}

}  // namespace radar::layout
