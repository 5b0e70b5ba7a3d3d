// JournalReader and JournalWriter together, on real files in /dev/shm: records read
// back in order across rolls, every start position, corruption reported with its
// offset (or skipped when asked), one writer per journal, futex arming.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "check.hpp"
#include "radar_reader/idle.hpp"
#include "radar_reader/reader.hpp"
#include "radar_reader/writer.hpp"

namespace {

namespace fs = std::filesystem;

struct TempJournal {
  std::string path;
  TempJournal() {
    path = "/dev/shm/radar-reader-test-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter++);
    fs::remove_all(path);
  }
  ~TempJournal() { fs::remove_all(path); }
  static inline int counter = 0;
};

flatbuffers::DetachedBuffer result_record(std::int64_t timestamp_ns, const char* base) {
  flatbuffers::FlatBufferBuilder builder(256);
  const auto base_offset = builder.CreateString(base);
  const auto krw = builder.CreateString("upbit");
  const auto usdt = builder.CreateString("binance");
  RadarData::RadarResultBuilder result(builder);
  result.add_timestamp_ns(timestamp_ns);
  result.add_base(base_offset);
  result.add_krw_exchange(krw);
  result.add_usdt_exchange(usdt);
  result.add_fx(1400.0);
  result.add_kimchi_premium(0.01 * static_cast<double>(timestamp_ns % 7));
  RadarData::FinishSizePrefixedRadarResultBuffer(builder, result.Finish());
  return builder.Release();
}

radar::ReaderOptions results_options() {
  radar::ReaderOptions options;
  options.payload = &radar::kRadarResultPayload;
  return options;
}

std::vector<radar::Position> write_results(const std::string& path, int count,
                                           std::int64_t first = 0) {
  radar::JournalWriter writer(path, radar::layout::kRadarResultPayloadId, 64 * 1024);
  std::vector<radar::Position> positions;
  for (int i = 0; i < count; ++i) {
    const auto record = result_record(first + i, "BTC");
    positions.push_back(writer.append(record.data(), record.size()));
  }
  return positions;
}

int read_all(radar::JournalReader& reader, std::int64_t first, int expected) {
  radar::RecordView record;
  int count = 0;
  while (reader.try_next(record) == radar::ReadResult::kRecord) {
    CHECK(record.radar_result()->timestamp_ns() == first + count);
    ++count;
  }
  CHECK(count == expected);
  return count;
}

void reads_back_across_rolls() {
  TempJournal journal;
  const auto positions = write_results(journal.path, 2000);
  CHECK(positions.back().segment > 2);  // several rolls with 64 KiB segments
  radar::JournalReader reader(journal.path, radar::StartAt::beginning(), results_options());
  read_all(reader, 0, 2000);
  radar::RecordView record;
  CHECK(reader.try_next(record) == radar::ReadResult::kEmpty);
  CHECK(reader.position().segment == positions.back().segment);
}

void start_positions() {
  TempJournal journal;
  const auto positions = write_results(journal.path, 1500);
  {
    radar::JournalReader reader(journal.path, radar::StartAt::at(positions[700]),
                                results_options());
    read_all(reader, 700, 800);
  }
  {
    radar::JournalReader reader(journal.path, radar::StartAt::end(), results_options());
    radar::RecordView record;
    CHECK(reader.try_next(record) == radar::ReadResult::kEmpty);
    write_results(journal.path, 3, 1500);  // the writer reopens and resumes
    read_all(reader, 1500, 3);
  }
  {
    radar::JournalReader reader(journal.path, radar::StartAt::at_time(1234), results_options());
    read_all(reader, 1234, 1503 - 1234);
  }
  bool refused = false;
  try {
    radar::JournalReader reader(journal.path, radar::StartAt::at({0, 4100}), results_options());
  } catch (const radar::JournalError&) {
    refused = true;  // not a record boundary
  }
  CHECK(refused);
}

void waits_for_the_writer() {
  TempJournal journal;
  radar::JournalReader reader(journal.path, radar::StartAt::end(), results_options());
  radar::RecordView record;
  CHECK(reader.try_next(record) == radar::ReadResult::kEmpty);
  CHECK(!reader.started());
  write_results(journal.path, 5);
  read_all(reader, 0, 5);  // "end" before the journal existed: everything it got
}

void corruption_is_reported_with_its_offset() {
  TempJournal journal;
  const auto positions = write_results(journal.path, 10);
  const std::string segment = radar::segment_path(journal.path, 0);
  {
    // Point the root table of record 4 far outside the record.
    radar::FileDescriptor fd = radar::FileDescriptor::open(segment, O_RDWR);
    const std::uint32_t bad_root = 1u << 30;
    CHECK(::pwrite(fd.get(), &bad_root, 4, static_cast<off_t>(positions[4].offset + 4)) == 4);
  }
  radar::JournalReader reader(journal.path, radar::StartAt::beginning(), results_options());
  radar::RecordView record;
  int good = 0;
  while (reader.try_next(record) == radar::ReadResult::kRecord) ++good;
  CHECK(good == 4);
  CHECK(reader.try_next(record) == radar::ReadResult::kError);
  CHECK(reader.error().find("offset=" + std::to_string(positions[4].offset)) != std::string::npos);

  radar::ReaderOptions skipping = results_options();
  skipping.skip_bad_records = true;
  radar::JournalReader skipper(journal.path, radar::StartAt::beginning(), skipping);
  int read = 0;
  while (skipper.try_next(record) == radar::ReadResult::kRecord) ++read;
  CHECK(read == 9);
  CHECK(skipper.skipped() == 1);

  {
    // A size prefix running past the commit: the frame is broken, skipping or not.
    radar::FileDescriptor fd = radar::FileDescriptor::open(segment, O_RDWR);
    const std::uint32_t huge = 1u << 20;
    CHECK(::pwrite(fd.get(), &huge, 4, static_cast<off_t>(positions[7].offset)) == 4);
  }
  radar::JournalReader broken(journal.path, radar::StartAt::beginning(), skipping);
  read = 0;
  while (broken.try_next(record) == radar::ReadResult::kRecord) ++read;
  CHECK(read == 6);
  CHECK(broken.try_next(record) == radar::ReadResult::kError);
  CHECK(broken.error().find("size prefix=1048576") != std::string::npos);
}

void one_writer_per_journal() {
  TempJournal journal;
  radar::JournalWriter first(journal.path, radar::layout::kRadarResultPayloadId, 64 * 1024);
  bool refused = false;
  try {
    radar::JournalWriter second(journal.path, radar::layout::kRadarResultPayloadId, 64 * 1024);
  } catch (const radar::JournalError& e) {
    refused = std::string(e.what()).find("live writer") != std::string::npos;
  }
  CHECK(refused);
}

void futex_arming() {
  TempJournal journal;
  write_results(journal.path, 1);
  std::vector<radar::JournalReader> readers;
  readers.emplace_back(journal.path, radar::StartAt::beginning(), results_options());
  radar::JournalReader::SleepTarget target;
  CHECK(!readers[0].prepare_sleep(target));  // a record is waiting: do not sleep
  read_all(readers[0], 0, 1);
  CHECK(readers[0].prepare_sleep(target));
  CHECK(target.word != nullptr);
  radar::Idler idler(radar::IdleKind::kFutex, std::chrono::milliseconds(20));
  const auto before = std::chrono::steady_clock::now();
  idler.idle(readers, 0);  // nothing published: sleeps until the timeout
  CHECK(std::chrono::steady_clock::now() - before >= std::chrono::milliseconds(15));
}

// Names get a ninth digit at 10^8; only canonical names of an index are segments.
void lists_segments_past_ten_to_the_eighth() {
  TempJournal journal;
  fs::create_directories(journal.path);
  for (const char* name : {"99999999.journal", "100000000.journal", "0100000000.journal",
                           "00000001.journal", "1.journal", "0000000x.journal"})
    std::fclose(std::fopen((journal.path + "/" + name).c_str(), "w"));
  const std::vector<std::uint64_t> expected{1, 99'999'999, 100'000'000};
  CHECK(radar::segment_indices(journal.path) == expected);
  CHECK(radar::segment_file_name(100'000'000) == "100000000.journal");
}

}  // namespace

int main() {
  reads_back_across_rolls();
  start_positions();
  waits_for_the_writer();
  corruption_is_reported_with_its_offset();
  one_writer_per_journal();
  futex_arming();
  lists_segments_past_ten_to_the_eighth();
  TEST_MAIN_END("reader_test");
}
