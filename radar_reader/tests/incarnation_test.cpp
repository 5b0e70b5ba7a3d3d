// Journals removed and made again under a reader (docs/FORMAT.md, "Incarnations"),
// on real files in /dev/shm: the reader notices, waits for the new writer, says so
// once, counts it, registers again in the new directory and reads the new journal
// from its first segment, whether it was idle or reached an end marker; nothing
// happens while the journal stays; what must not read as the end (a truncated file,
// a commit cut short, records gone) is reported. And the writer's side: every
// segment stamped with the incarnation, the lock taken on the journal directory.
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "radar_reader/metrics.hpp"
#include "radar_reader/reader.hpp"
#include "radar_reader/writer.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kSegmentSize = 64 * 1024;
// Time the reader gets to notice and follow: several of its check intervals.
constexpr auto kFollowDeadline = std::chrono::seconds(5);

struct TempJournal {
  std::string path;
  TempJournal() {
    path = "/dev/shm/radar-incarnation-test-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter++);
    fs::remove_all(path);
  }
  ~TempJournal() { fs::remove_all(path); }
  static inline int counter = 0;
};

flatbuffers::DetachedBuffer result_record(std::int64_t timestamp_ns) {
  flatbuffers::FlatBufferBuilder builder(256);
  const auto base = builder.CreateString("BTC");
  RadarData::RadarResultBuilder result(builder);
  result.add_timestamp_ns(timestamp_ns);
  result.add_base(base);
  RadarData::FinishSizePrefixedRadarResultBuffer(builder, result.Finish());
  return builder.Release();
}

radar::ReaderOptions results_options(const char* metrics_name = "") {
  radar::ReaderOptions options;
  options.payload = &radar::kRadarResultPayload;
  options.metrics_name = metrics_name;
  return options;
}

radar::Position append(radar::JournalWriter& writer, std::int64_t timestamp_ns) {
  const auto record = result_record(timestamp_ns);
  return writer.append(record.data(), record.size());
}

// A journal of `count` records stamped first, first + 1, ... (its writer closed).
void write_results(const std::string& path, int count, std::int64_t first) {
  radar::JournalWriter writer(path, radar::layout::kRadarResultPayloadId, kSegmentSize);
  for (int i = 0; i < count; ++i) append(writer, first + i);
}

std::vector<std::int64_t> range(std::int64_t first, std::int64_t count) {
  std::vector<std::int64_t> values;
  for (std::int64_t i = 0; i < count; ++i) values.push_back(first + i);
  return values;
}

// Polls as a radar does (the reader checks its journal on its own clock) until
// `count` records came, the deadline passed or an error; a short sleep between
// empty polls when `sleepy`, as an idle strategy would.
std::vector<std::int64_t> poll_records(radar::JournalReader& reader, std::size_t count,
                                       bool sleepy = true) {
  std::vector<std::int64_t> got;
  const auto deadline = Clock::now() + kFollowDeadline;
  radar::RecordView record;
  while (got.size() < count && Clock::now() < deadline) {
    const radar::ReadResult result = reader.try_next(record);
    if (result == radar::ReadResult::kError) {
      std::fprintf(stderr, "reader error: %s\n", reader.error().c_str());
      break;
    }
    if (result == radar::ReadResult::kRecord) got.push_back(record.radar_result()->timestamp_ns());
    else if (sleepy) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return got;
}

// Polls for `how_long` (several check intervals): only kEmpty may come.
bool stays_empty(radar::JournalReader& reader, std::chrono::milliseconds how_long) {
  const auto until = Clock::now() + how_long;
  radar::RecordView record;
  bool empty = true;
  while (Clock::now() < until) {
    empty = empty && reader.try_next(record) == radar::ReadResult::kEmpty;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return empty;
}

const auto kSeveralChecks =
    std::chrono::milliseconds(3 * radar::JournalReader::kIncarnationCheckNs / 1'000'000);

// The reader's metrics file as the struct (zero if it cannot be read).
radar::metrics::ReaderMetricsFile read_metrics(const std::string& path) {
  radar::metrics::ReaderMetricsFile file{};
  radar::FileDescriptor fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  CHECK(fd.valid());
  if (fd.valid())
    CHECK(::pread(fd.get(), &file, sizeof file, 0) == static_cast<ssize_t>(sizeof file));
  return file;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Idle in the journal's open segment when the directory goes (its writer still
// alive: rm -rf under a running collector), then a new writer makes it again.
void follows_a_journal_recreated_while_idle() {
  TempJournal journal;
  radar::JournalWriter first(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
  for (int i = 0; i < 10; ++i) append(first, i);
  radar::JournalReader reader(journal.path, radar::StartAt::beginning(), results_options("radar"));
  CHECK(poll_records(reader, 10) == range(0, 10));
  CHECK(reader.registration());

  fs::remove_all(journal.path);
  // Gone, no new writer yet: the reader waits, neither records nor an error.
  CHECK(stays_empty(reader, kSeveralChecks));
  CHECK(reader.incarnations() == 0 && !reader.has_notice());

  // The directory is another inode: another lock, so a second writer gets in.
  write_results(journal.path, 20, 1000);
  CHECK(poll_records(reader, 20) == range(1000, 20));
  CHECK(reader.incarnations() == 1);
  CHECK(reader.position().segment == 0);
  const std::string notice = reader.take_notice();
  CHECK(contains(notice,
                 "journal " + journal.path + " was recreated (new incarnation created at "));
  CHECK(contains(notice, " UTC); following it from segment 0"));
  CHECK(reader.take_notice().empty() && !reader.has_notice());  // said once

  // Registered again in the new directory, its counters carried on.
  CHECK(reader.registration());
  CHECK(contains(reader.registration().path(), journal.path + "/readers/radar-"));
  CHECK(fs::exists(reader.registration().path()));
  const auto file = read_metrics(reader.registration().path());
  CHECK(file.incarnations_total == 1);
  CHECK(file.records_total == 30);
  CHECK(file.segment == 0 && file.offset == reader.position().offset);
  CHECK(reader.take_registration_error().empty());

  // And on: the new journal is tailed as any.
  {
    radar::JournalWriter again(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
    for (int i = 0; i < 5; ++i) append(again, 1020 + i);
  }
  CHECK(poll_records(reader, 5) == range(1020, 5));
  CHECK(reader.incarnations() == 1);
}

// A spinning reader (no sleep between polls) notices too, on its clock.
void a_spinning_reader_follows_too() {
  TempJournal journal;
  write_results(journal.path, 3, 0);
  radar::JournalReader reader(journal.path, radar::StartAt::end(), results_options());
  radar::RecordView record;
  CHECK(reader.try_next(record) == radar::ReadResult::kEmpty);
  fs::remove_all(journal.path);
  write_results(journal.path, 7, 500);
  CHECK(poll_records(reader, 7, /*sleepy=*/false) == range(500, 7));
  CHECK(reader.incarnations() == 1);
}

// The old journal's writer had rolled (segment 0 sealed, 1 open) and the reader is
// still in segment 0; the new incarnation has segments 0..k. At the end marker of
// the old segment 0, segment 1 is the new incarnation's: not its successor.
void at_an_end_marker_the_next_incarnation_is_not_the_next_segment() {
  TempJournal journal;
  std::int64_t old_in_segment_0 = 0;
  {
    radar::JournalWriter first(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
    for (std::int64_t i = 0; append(first, i).segment == 0; ++i) old_in_segment_0 = i + 1;
  }
  radar::JournalReader reader(journal.path, radar::StartAt::beginning(), results_options());
  CHECK(poll_records(reader, 3) == range(0, 3));

  fs::remove_all(journal.path);
  radar::Position last{};
  {
    radar::JournalWriter second(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
    for (int i = 0; i < 6000; ++i) last = append(second, 100'000 + i);
  }
  CHECK(last.segment >= 2);
  // The rest of the old segment 0 (its mapping holds it), then the new journal
  // from its start: its segment 0, not from the old one's successor on.
  std::vector<std::int64_t> expected = range(3, old_in_segment_0 - 3);
  for (const std::int64_t t : range(100'000, 6000)) expected.push_back(t);
  CHECK(poll_records(reader, expected.size()) == expected);
  CHECK(reader.incarnations() == 1);
  CHECK(contains(reader.take_notice(), "following it from segment 0"));
  CHECK(reader.position().segment == last.segment);
}

// The same, but the reader reaches the end marker before anything is made again:
// segment N+1 is missing, and so is the directory. It waits there, then follows.
void at_an_end_marker_of_a_removed_journal_it_waits_for_the_next() {
  TempJournal journal;
  {
    // Segments 0 and 1 sealed, 2 open.
    radar::JournalWriter first(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
    for (std::int64_t i = 0; append(first, i).segment < 2; ++i) {
    }
  }
  radar::JournalReader reader(journal.path, radar::StartAt::beginning(), results_options());
  radar::RecordView record;
  while (reader.position().segment < 1)
    CHECK(reader.try_next(record) == radar::ReadResult::kRecord);
  fs::remove_all(journal.path);
  // It reads what its mapping of segment 1 holds, then meets the end marker with
  // segment 2 and the directory gone: it waits there, no error.
  std::uint64_t read = 0;
  while (reader.try_next(record) == radar::ReadResult::kRecord) ++read;
  CHECK(read > 0);
  CHECK(reader.position().segment == 1);
  CHECK(stays_empty(reader, kSeveralChecks));
  CHECK(reader.incarnations() == 0);

  write_results(journal.path, 4, 9000);  // only segment 0 in the new journal
  CHECK(poll_records(reader, 4) == range(9000, 4));
  CHECK(reader.incarnations() == 1);
  CHECK(contains(reader.take_notice(), "following it from segment 0"));
}

// Nothing happens while the journal stays, even when the compactor removes a sealed
// segment the reader has left.
void a_journal_that_stays_is_not_followed_anywhere() {
  TempJournal journal;
  radar::JournalWriter writer(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
  std::int64_t count = 0;
  while (append(writer, count).segment < 1) ++count;
  ++count;
  radar::JournalReader reader(journal.path, radar::StartAt::beginning(), results_options());
  CHECK(poll_records(reader, static_cast<std::size_t>(count)) == range(0, count));
  fs::remove(radar::segment_path(journal.path, 0));  // what the compactor does
  CHECK(stays_empty(reader, kSeveralChecks));
  CHECK(reader.incarnations() == 0 && !reader.has_notice());
  append(writer, count);
  CHECK(poll_records(reader, 1) == range(count, 1));
}

// Files of before the stamp (incarnation_ns 0): another file, made later, at an
// index not above the one held, is the new incarnation.
void unstamped_journals_are_followed_by_file_identity() {
  TempJournal journal;
  write_results(journal.path, 5, 0);
  {
    radar::FileDescriptor fd =
        radar::FileDescriptor::open(radar::segment_path(journal.path, 0), O_RDWR);
    const std::int64_t unknown = 0;
    CHECK(::pwrite(fd.get(), &unknown, sizeof unknown, radar::layout::kIncarnationNsOffset) ==
          static_cast<ssize_t>(sizeof unknown));
  }
  radar::JournalReader reader(journal.path, radar::StartAt::beginning(), results_options());
  CHECK(poll_records(reader, 5) == range(0, 5));
  fs::remove_all(journal.path);
  write_results(journal.path, 2, 70);
  CHECK(poll_records(reader, 2) == range(70, 2));
  CHECK(reader.incarnations() == 1);
}

// Two readers of one name in one process (radar-<pid> and radar-<pid>-1): the one
// that follows first may take the other's old name in the new directory; the
// other, following, must not remove that file as its own.
void registrations_of_one_name_survive_each_other() {
  TempJournal journal;
  write_results(journal.path, 2, 0);
  radar::JournalReader a(journal.path, radar::StartAt::beginning(), results_options("radar"));
  radar::JournalReader b(journal.path, radar::StartAt::beginning(), results_options("radar"));
  CHECK(poll_records(a, 2) == range(0, 2) && poll_records(b, 2) == range(0, 2));
  CHECK(a.registration().path() != b.registration().path());
  fs::remove_all(journal.path);
  write_results(journal.path, 1, 10);
  CHECK(poll_records(b, 1) == range(10, 1));  // b first: takes the name a had
  CHECK(poll_records(a, 1) == range(10, 1));
  CHECK(a.registration() && b.registration());
  CHECK(a.registration().path() != b.registration().path());
  CHECK(fs::exists(a.registration().path()) && fs::exists(b.registration().path()));
  CHECK(radar::metrics::reader_alive(a.registration().path()));
  CHECK(radar::metrics::reader_alive(b.registration().path()));
}

// Polls until the reader reports an error (true) or the deadline passes.
bool polls_to_an_error(radar::JournalReader& reader) {
  const auto deadline = Clock::now() + kFollowDeadline;
  radar::RecordView record;
  while (Clock::now() < deadline) {
    if (reader.try_next(record) == radar::ReadResult::kError) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return false;
}

// The file cut shorter than its mapping under an idle reader: reported (file and
// offset of segment_size) before anything touches the cut pages.
void a_segment_truncated_under_the_reader_is_reported() {
  TempJournal journal;
  write_results(journal.path, 5, 0);
  radar::JournalReader reader(journal.path, radar::StartAt::beginning(), results_options());
  CHECK(poll_records(reader, 5) == range(0, 5));
  const std::string segment = radar::segment_path(journal.path, 0);
  CHECK(::truncate(segment.c_str(), static_cast<off_t>(kSegmentSize / 2)) == 0);
  CHECK(polls_to_an_error(reader));
  CHECK(contains(reader.error(), segment + " offset=" +
                                     std::to_string(radar::layout::kSegmentSizeOffset) +
                                     ": truncated to 32768 bytes (segment_size=65536)"));
}

// Segment 0's commit lowered (and its seal undone) while segment 1 holds records:
// the records above the commit must not read as the end of the journal.
void a_commit_cut_short_is_not_read_as_the_end() {
  TempJournal journal;
  std::vector<radar::Position> positions;
  {
    radar::JournalWriter writer(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
    for (std::int64_t i = 0; positions.empty() || positions.back().segment < 1; ++i)
      positions.push_back(append(writer, i));
  }
  {
    radar::FileDescriptor fd =
        radar::FileDescriptor::open(radar::segment_path(journal.path, 0), O_RDWR);
    const std::uint64_t cut = positions[10].offset, unsealed = 0;
    CHECK(::pwrite(fd.get(), &cut, sizeof cut, radar::layout::kCommitOffsetOffset) == 8);
    CHECK(::pwrite(fd.get(), &unsealed, sizeof unsealed, radar::layout::kEndMarkerOffsetOffset) ==
          8);
  }
  radar::JournalReader reader(journal.path, radar::StartAt::beginning(), results_options());
  CHECK(poll_records(reader, 10) == range(0, 10));
  CHECK(polls_to_an_error(reader));
  CHECK(contains(reader.error(), "offset=" + std::to_string(radar::layout::kCommitOffsetOffset) +
                                     ": segment 0 is not sealed"));
  CHECK(contains(reader.error(), "segment 1 after it holds records"));
}

// Without an archive, records the reader needs that are gone are a gap, reported:
// a new incarnation whose segment 0 went already...
void a_new_incarnation_without_its_first_segment_is_a_gap() {
  TempJournal journal;
  write_results(journal.path, 3, 0);
  radar::JournalReader reader(journal.path, radar::StartAt::beginning(), results_options());
  CHECK(poll_records(reader, 3) == range(0, 3));
  fs::remove_all(journal.path);
  {
    radar::JournalWriter writer(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
    for (int i = 0; append(writer, i).segment < 2; ++i) {
    }
  }
  fs::remove(radar::segment_path(journal.path, 0));  // archived and removed
  fs::remove(radar::segment_path(journal.path, 1));
  CHECK(polls_to_an_error(reader));
  CHECK(contains(reader.error(), "new incarnation starts at segment 2"));
  CHECK(reader.incarnations() == 0);
}

// ...or the open segment removed while its incarnation goes on (someone removes
// files of a live journal): not waited on forever.
void an_open_segment_removed_from_a_live_journal_is_reported() {
  TempJournal journal;
  radar::JournalWriter writer(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
  std::int64_t count = 0;
  while (append(writer, count).segment < 1) ++count;
  ++count;
  radar::JournalReader reader(journal.path, radar::StartAt::beginning(), results_options());
  CHECK(poll_records(reader, static_cast<std::size_t>(count)) == range(0, count));
  fs::remove(radar::segment_path(journal.path, 1));
  CHECK(polls_to_an_error(reader));
  CHECK(contains(reader.error(), "00000001.journal is gone but its incarnation goes on from "
                                 "segment 0"));
}

std::int64_t stamp_of(const std::string& journal, std::uint64_t index) {
  return radar::Segment::open(journal, index, radar::layout::kRadarResultPayloadId)
      .incarnation_ns();
}

void the_writer_stamps_every_segment_with_its_incarnation() {
  TempJournal journal;
  radar::Position last{};
  std::int64_t stamp = 0;
  {
    radar::JournalWriter writer(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
    for (int i = 0; i < 6000; ++i) last = append(writer, i);
    stamp = writer.incarnation_ns();
  }
  CHECK(last.segment >= 2);
  const radar::Segment first =
      radar::Segment::open(journal.path, 0, radar::layout::kRadarResultPayloadId);
  CHECK(stamp != 0 && stamp == first.header().created_ns);
  for (std::uint64_t index = 0; index <= last.segment; ++index)
    CHECK(stamp_of(journal.path, index) == stamp);
  {
    // Reopened, it goes on with the stamp of the segment it resumes.
    radar::JournalWriter writer(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
    CHECK(writer.incarnation_ns() == stamp);
    radar::Position more{};
    for (int i = 0; i < 6000; ++i) more = append(writer, i);
    for (std::uint64_t index = last.segment; index <= more.segment; ++index)
      CHECK(stamp_of(journal.path, index) == stamp);
  }
  fs::remove_all(journal.path);
  write_results(journal.path, 1, 0);
  CHECK(stamp_of(journal.path, 0) != stamp && stamp_of(journal.path, 0) != 0);
}

// flock on the directory: unlinking writer.lock lets no second writer in.
void the_writer_locks_the_directory_itself() {
  TempJournal journal;
  {
    radar::JournalWriter first(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
    const std::string lock_file = journal.path + "/" + radar::layout::kLockFileName;
    char text[128] = {};
    {
      radar::FileDescriptor fd = radar::FileDescriptor::open(lock_file, O_RDONLY);
      CHECK(::pread(fd.get(), text, sizeof text - 1, 0) > 0);
    }
    CHECK(contains(text, "pid=" + std::to_string(::getpid()) + " host="));
    CHECK(::unlink(lock_file.c_str()) == 0);  // anyone who may write the directory can
    std::string refusal;
    try {
      radar::JournalWriter second(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
    } catch (const radar::JournalError& e) {
      refusal = e.what();
    }
    CHECK(contains(refusal, "already has a live writer"));
    radar::FileDescriptor directory =
        radar::FileDescriptor::open(journal.path, O_RDONLY | O_DIRECTORY);
    CHECK(::flock(directory.get(), LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK);
  }
  // Gone with its writer: the next one gets it.
  radar::JournalWriter next(journal.path, radar::layout::kRadarResultPayloadId, kSegmentSize);
  CHECK(next.position().segment == 0);
}

}  // namespace

int main() {
  follows_a_journal_recreated_while_idle();
  a_spinning_reader_follows_too();
  at_an_end_marker_the_next_incarnation_is_not_the_next_segment();
  at_an_end_marker_of_a_removed_journal_it_waits_for_the_next();
  a_journal_that_stays_is_not_followed_anywhere();
  unstamped_journals_are_followed_by_file_identity();
  registrations_of_one_name_survive_each_other();
  a_segment_truncated_under_the_reader_is_reported();
  a_commit_cut_short_is_not_read_as_the_end();
  a_new_incarnation_without_its_first_segment_is_a_gap();
  an_open_segment_removed_from_a_live_journal_is_reported();
  the_writer_stamps_every_segment_with_its_incarnation();
  the_writer_locks_the_directory_itself();
  TEST_MAIN_END("incarnation_test");
}
