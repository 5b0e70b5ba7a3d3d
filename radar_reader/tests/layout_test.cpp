// The layout constants: with --print, "NAME VALUE" lines that tests/test_cpp_layout.py
// compares with journal/_layout.py; without, checks of the invariants.
#include <cstdio>
#include <cstring>

#include "check.hpp"
#include "radar_reader/layout.hpp"

using namespace radar::layout;

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--print") == 0) {
    std::printf("MAGIC %.8s\n", kMagic);
    std::printf("FORMAT_VERSION %u\n", kFormatVersion);
#define PRINT(name, value) std::printf("%s %llu\n", name, static_cast<unsigned long long>(value))
    PRINT("HEADER_SIZE", kHeaderSize);
    PRINT("MAGIC_OFFSET", kMagicOffset);
    PRINT("FORMAT_VERSION_OFFSET", kFormatVersionOffset);
    PRINT("HEADER_SIZE_OFFSET", kHeaderSizeOffset);
    PRINT("SEGMENT_SIZE_OFFSET", kSegmentSizeOffset);
    PRINT("SEGMENT_INDEX_OFFSET", kSegmentIndexOffset);
    PRINT("PAYLOAD_ID_OFFSET", kPayloadIdOffset);
    PRINT("MAX_RECORD_SIZE_OFFSET", kMaxRecordSizeOffset);
    PRINT("CREATED_NS_OFFSET", kCreatedNsOffset);
    PRINT("WRITER_PID_OFFSET", kWriterPidOffset);
    PRINT("WRITER_STARTED_NS_OFFSET", kWriterStartedNsOffset);
    PRINT("WRITER_HOST_OFFSET", kWriterHostOffset);
    PRINT("WRITER_HOST_SIZE", kWriterHostSize);
    PRINT("END_MARKER_OFFSET_OFFSET", kEndMarkerOffsetOffset);
    PRINT("INCARNATION_NS_OFFSET", kIncarnationNsOffset);
    PRINT("CACHE_LINE_PAIR", kCacheLinePair);
    PRINT("COMMIT_OFFSET_OFFSET", kCommitOffsetOffset);
    PRINT("FUTEX_SLEEPERS_OFFSET", kFutexSleepersOffset);
    PRINT("PAYLOAD_ID_SIZE", kPayloadIdSize);
    PRINT("SIZE_PREFIX_SIZE", kSizePrefixSize);
    PRINT("RECORD_PAYLOAD_ID_OFFSET", kRecordPayloadIdOffset);
    PRINT("RECORD_ALIGNMENT", kRecordAlignment);
    PRINT("END_OF_SEGMENT", kEndOfSegment);
    PRINT("END_MARKER_SIZE", kEndMarkerSize);
    PRINT("MIN_RECORD_SIZE", kMinRecordSize);
    PRINT("MIN_SEGMENT_SIZE", kMinSegmentSize);
    PRINT("MAX_SEGMENT_SIZE", kMaxSegmentSize);
    PRINT("PAGE_SIZE", kPageSize);
    PRINT("SEGMENT_NAME_DIGITS", kSegmentNameDigits);
#undef PRINT
    std::printf("SEGMENT_SUFFIX %s\n", kSegmentSuffix);
    std::printf("LOCK_FILE_NAME %s\n", kLockFileName);
    return 0;
  }
  CHECK(sizeof(SegmentHeader) == kHeaderSize);
  CHECK(align_record(4096) == 4096);
  CHECK(align_record(4097) == 4104);
  CHECK(max_record_size(1 << 20) == (1 << 20) - 4096 - 8 - 4);
  CHECK(kCommitOffsetOffset + 8 <= kFutexSleepersOffset);
  TEST_MAIN_END("layout_test");
}
