// Metrics files: with --print, "NAME VALUE" lines that tests/test_cpp_layout.py compares
// with journal/_metrics_layout.py; without, a reader's registration on real files in
// /dev/shm: created locked with its header, updated, seen alive, removed when it
// goes, a dead reader's file replaced, and a JournalReader registering itself.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "check.hpp"
#include "radar_reader/metrics.hpp"
#include "radar_reader/reader.hpp"
#include "radar_reader/writer.hpp"

namespace {

namespace fs = std::filesystem;
using namespace radar::metrics;

int print_constants() {
  std::printf("WRITER_METRICS_MAGIC %.8s\n", kWriterMetricsMagic);
  std::printf("READER_METRICS_MAGIC %.8s\n", kReaderMetricsMagic);
  std::printf("WRITER_METRICS_NAME %s\n", kWriterMetricsName);
  std::printf("READERS_DIRECTORY %s\n", kReadersDirectory);
  std::printf("METRICS_SUFFIX %s\n", kMetricsSuffix);
#define PRINT(name, value) std::printf("%s %llu\n", name, static_cast<unsigned long long>(value))
  PRINT("METRICS_VERSION", kMetricsVersion);
  PRINT("METRICS_HOST_SIZE", kMetricsHostSize);
  PRINT("READER_NAME_SIZE", kReaderNameSize);
  PRINT("METRICS_MAGIC_OFFSET", kMetricsMagicOffset);
  PRINT("METRICS_VERSION_OFFSET", kMetricsVersionOffset);
  PRINT("METRICS_FILE_SIZE_OFFSET", kMetricsFileSizeOffset);
  PRINT("METRICS_PID_OFFSET", kMetricsPidOffset);
  PRINT("METRICS_STARTED_NS_OFFSET", kMetricsStartedNsOffset);
  PRINT("METRICS_HOST_OFFSET", kMetricsHostOffset);
  PRINT("METRICS_COUNTERS_OFFSET", kMetricsCountersOffset);
  PRINT("WRITER_METRICS_SIZE", kWriterMetricsSize);
  PRINT("LATENCY_SAMPLE_PERIOD_OFFSET", kLatencySamplePeriodOffset);
  PRINT("WRITER_PAYLOAD_ID_OFFSET", kWriterPayloadIdOffset);
  PRINT("LATENCY_BUCKETS_OFFSET", kLatencyBucketsOffset);
  PRINT("RECORDS_TOTAL_OFFSET", kRecordsTotalOffset);
  PRINT("LAST_PUBLISH_NS_OFFSET", kLastPublishNsOffset);
  PRINT("SEGMENT_SEQUENCE_OFFSET", kSegmentSequenceOffset);
  PRINT("SEGMENT_OFFSET", kSegmentOffset);
  PRINT("BYTES_BASE_OFFSET", kBytesBaseOffset);
  PRINT("ROLLS_TOTAL_OFFSET", kRollsTotalOffset);
  PRINT("REFUSED_INVALID_TOTAL_OFFSET", kRefusedInvalidTotalOffset);
  PRINT("REFUSED_TOO_LARGE_TOTAL_OFFSET", kRefusedTooLargeTotalOffset);
  PRINT("REFUSED_JOURNAL_FULL_TOTAL_OFFSET", kRefusedJournalFullTotalOffset);
  PRINT("LATENCY_SUM_NS_OFFSET", kLatencySumNsOffset);
  PRINT("LATENCY_COUNTS_OFFSET", kLatencyCountsOffset);
  PRINT("LATENCY_SUB_BUCKET_BITS", kLatencySubBucketBits);
  PRINT("LATENCY_MAX_BITS", kLatencyMaxBits);
  PRINT("LATENCY_MAX_NS", kLatencyMaxNs);
  PRINT("LATENCY_BUCKETS", kLatencyBuckets);
  PRINT("LATENCY_SAMPLE_PERIOD", kLatencySamplePeriod);
  PRINT("READER_METRICS_SIZE", kReaderMetricsSize);
  PRINT("READER_NAME_OFFSET", kReaderNameOffset);
  PRINT("READER_SEGMENT_OFFSET", kReaderSegmentOffset);
  PRINT("READER_OFFSET_OFFSET", kReaderOffsetOffset);
  PRINT("READER_RECORDS_TOTAL_OFFSET", kReaderRecordsTotalOffset);
  PRINT("READER_LAST_RECORD_NS_OFFSET", kReaderLastRecordNsOffset);
  PRINT("READER_LAST_POLL_NS_OFFSET", kReaderLastPollNsOffset);
  PRINT("READER_INCARNATIONS_TOTAL_OFFSET", kReaderIncarnationsTotalOffset);
#undef PRINT
  return 0;
}

struct TempJournal {
  std::string path;
  TempJournal() {
    path = "/dev/shm/radar-metrics-test-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter++);
    fs::remove_all(path);
    fs::create_directory(path);
  }
  ~TempJournal() { fs::remove_all(path); }
  static inline int counter = 0;
};

// The file's bytes as the struct, read through a fresh descriptor.
ReaderMetricsFile read_file(const std::string& path) {
  ReaderMetricsFile file{};
  radar::FileDescriptor fd = radar::FileDescriptor::open(path, O_RDONLY);
  CHECK(::pread(fd.get(), &file, sizeof file, 0) == static_cast<ssize_t>(sizeof file));
  return file;
}

void registration_lives_and_goes() {
  TempJournal journal;
  std::string path;
  {
    ReaderRegistration registration = ReaderRegistration::create(journal.path, "radar");
    path = registration.path();
    CHECK(path == journal.path + "/readers/radar-" + std::to_string(::getpid()) + ".metrics");
    CHECK(fs::exists(path));
    CHECK(reader_alive(path));
    ReaderMetricsFile file = read_file(path);
    CHECK(std::memcmp(file.magic, kReaderMetricsMagic, 8) == 0);
    CHECK(file.metrics_version == kMetricsVersion && file.file_size == kReaderMetricsSize);
    CHECK(file.reader_pid == static_cast<std::uint32_t>(::getpid()));
    CHECK(std::string(file.reader_name) == "radar");
    CHECK(file.records_total == 0);

    registration.read({3, 4104}, 1234);
    registration.read({3, 4536}, 5678);
    registration.polled_empty();
    file = read_file(path);
    CHECK(file.segment == 3 && file.offset == 4536 && file.records_total == 2);
    CHECK(file.last_record_ns == 5678 && file.last_poll_ns > 0);

    // A second reader of the same name in this process gets its own file.
    ReaderRegistration second = ReaderRegistration::create(journal.path, "radar");
    CHECK(second.path() == path.substr(0, path.size() - 8) + "-1.metrics");
    // Moved, it still owns the file; the moved-from one owns nothing.
    ReaderRegistration moved = std::move(second);
    CHECK(moved && !second && fs::exists(moved.path()));
  }
  CHECK(!fs::exists(path));  // removed on destruction
  CHECK(fs::is_empty(journal.path + "/readers"));
}

void dead_readers_file_is_replaced() {
  TempJournal journal;
  fs::create_directory(journal.path + "/readers");
  // What a reader killed with our pid leaves: a complete file, no lock held.
  const std::string stale =
      journal.path + "/readers/radar-" + std::to_string(::getpid()) + ".metrics";
  { radar::FileDescriptor fd = radar::FileDescriptor::open(stale, O_RDWR | O_CREAT, 0600); }
  CHECK(!reader_alive(stale));
  ReaderRegistration registration = ReaderRegistration::create(journal.path, "radar");
  CHECK(registration);
  CHECK(reader_alive(registration.path()));
}

void bad_names_are_refused() {
  TempJournal journal;
  const std::string too_long(kReaderNameSize + 1, 'x');
  for (const std::string& name : {std::string(), std::string(".hidden"), std::string("-dash"),
                                  std::string("a/b"), std::string("sp ace"), too_long}) {
    bool refused = false;
    try {
      ReaderRegistration::create(journal.path, name);
    } catch (const radar::JournalError&) {
      refused = true;
    }
    CHECK(refused);
  }
  CHECK(valid_reader_name("radar.2_a-b"));
}

void journal_reader_registers_and_reports_its_position() {
  TempJournal journal;
  const std::string books = journal.path + "/results";
  radar::Position last{};
  {
    radar::JournalWriter writer(books, radar::layout::kRadarResultPayloadId, 64 * 1024);
    flatbuffers::FlatBufferBuilder builder(256);
    for (int i = 0; i < 3; ++i) {
      builder.Clear();
      const auto base = builder.CreateString("BTC");
      RadarData::RadarResultBuilder result(builder);
      result.add_timestamp_ns(1000 + i);
      result.add_base(base);
      RadarData::FinishSizePrefixedRadarResultBuffer(builder, result.Finish());
      last = writer.append(builder.GetBufferPointer(), builder.GetSize());
    }
  }
  radar::ReaderOptions options;
  options.payload = &radar::kRadarResultPayload;
  options.metrics_name = "radar";
  radar::JournalReader reader(books, radar::StartAt::beginning(), options);
  CHECK(reader.registration());
  radar::RecordView record;
  int count = 0;
  while (reader.try_next(record) == radar::ReadResult::kRecord) ++count;
  CHECK(count == 3);
  const ReaderMetricsFile file = read_file(reader.registration().path());
  CHECK(file.records_total == 3 && file.last_record_ns == 1002);
  CHECK(file.segment == last.segment && file.offset > last.offset);
  CHECK(file.offset == reader.position().offset);
  CHECK(reader.take_registration_error().empty());
}

void unwritable_journal_is_a_kept_error_not_a_failure() {
  if (::geteuid() == 0) return;  // root writes anywhere: nothing to refuse
  TempJournal journal;
  ::chmod(journal.path.c_str(), 0500);
  bool refused = false;
  try {
    ReaderRegistration::create(journal.path, "radar");
  } catch (const radar::JournalError&) {
    refused = true;
  }
  ::chmod(journal.path.c_str(), 0700);
  CHECK(refused);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--print") == 0) return print_constants();
  registration_lives_and_goes();
  dead_readers_file_is_replaced();
  bad_names_are_refused();
  journal_reader_registers_and_reports_its_position();
  unwritable_journal_is_a_kept_error_not_a_failure();
  TEST_MAIN_END("metrics_test");
}
