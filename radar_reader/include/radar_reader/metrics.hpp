// Metrics files (docs/FORMAT.md, "Metrics files"): their layout, and a reader's
// registration in <journal>/readers/ so that `journal top` shows it and its lag.
//
// journal/_metrics_layout.py mirrors every name here; tests/test_cpp_layout.py
// checks that both agree. Each file has one owner, which stores every counter as
// one aligned 8-byte word (relaxed atomics: figures for monitoring, ordered with
// nothing, never torn); anyone may map it read-only at any time.
//
// Writer metrics, <journal>/writer.metrics (written by the Python writer only):
//
//      0 magic "OBJMETRW" | 8 metrics_version u32 | 12 file_size u32
//     16 writer_pid u32 | 20 latency_sample_period u32 | 24 writer_started_ns i64
//     32 writer_host[64] | 96 payload_id[4] | 100 latency_buckets u32
//    128 records_total | 136 last_publish_ns                        every commit
//    256 segment_sequence | 264 segment | 272 bytes_base i64          segment changes
//    280 rolls_total | 288 refused_invalid_total | 296 refused_too_large_total
//    304 refused_journal_full_total | 312 latency_sum_ns
//    384 latency_counts[272] (HdrHistogram buckets, 8 per power of two, in ns)
//
// Reader metrics, <journal>/readers/<name>-<pid>[-<n>].metrics (each reader its own):
//
//      0 magic "OBJMETRR" | 8 metrics_version u32 | 12 file_size u32
//     16 reader_pid u32 | 20 reserved u32 | 24 reader_started_ns i64
//     32 reader_host[64] | 96 reader_name[32]
//    128 segment | 136 offset | 144 records_total | 152 last_record_ns   every record
//    160 last_poll_ns                                                    empty polls
//    168 incarnations_total                                              journal recreated
//
// A reader holds an exclusive flock(2) on its file for its whole life: a file whose
// lock is free belongs to a reader that died; `journal top` shows it as dead. A
// reader that follows its journal into a new incarnation (the directory removed and
// made again) registers again in the new directory, its counters carried on.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "radar_reader/layout.hpp"
#include "radar_reader/mapping.hpp"
#include "radar_reader/segment.hpp"
#include "radar_reader/writer.hpp"

namespace radar::metrics {

inline constexpr std::uint32_t kMetricsVersion = 1;
inline constexpr char kWriterMetricsMagic[8] = {'O', 'B', 'J', 'M', 'E', 'T', 'R', 'W'};
inline constexpr char kReaderMetricsMagic[8] = {'O', 'B', 'J', 'M', 'E', 'T', 'R', 'R'};
inline constexpr const char* kWriterMetricsName = "writer.metrics";
inline constexpr const char* kReadersDirectory = "readers";
inline constexpr const char* kMetricsSuffix = ".metrics";
inline constexpr std::size_t kMetricsHostSize = 64;
inline constexpr std::size_t kReaderNameSize = 32;

// The header both files start with.
inline constexpr std::size_t kMetricsMagicOffset = 0;
inline constexpr std::size_t kMetricsVersionOffset = kMetricsMagicOffset + 8;
inline constexpr std::size_t kMetricsFileSizeOffset = kMetricsVersionOffset + 4;
inline constexpr std::size_t kMetricsPidOffset = kMetricsFileSizeOffset + 4;
inline constexpr std::size_t kMetricsStartedNsOffset = kMetricsPidOffset + 8;
inline constexpr std::size_t kMetricsHostOffset = kMetricsStartedNsOffset + 8;
inline constexpr std::size_t kMetricsCountersOffset = 128;

// writer.metrics
inline constexpr std::size_t kWriterMetricsSize = 4096;
inline constexpr std::size_t kLatencySamplePeriodOffset = kMetricsPidOffset + 4;
inline constexpr std::size_t kWriterPayloadIdOffset = kMetricsHostOffset + kMetricsHostSize;
inline constexpr std::size_t kLatencyBucketsOffset = kWriterPayloadIdOffset + 4;
inline constexpr std::size_t kRecordsTotalOffset = kMetricsCountersOffset;
inline constexpr std::size_t kLastPublishNsOffset = kRecordsTotalOffset + 8;
inline constexpr std::size_t kSegmentSequenceOffset = 256;
inline constexpr std::size_t kSegmentOffset = kSegmentSequenceOffset + 8;
inline constexpr std::size_t kBytesBaseOffset = kSegmentOffset + 8;
inline constexpr std::size_t kRollsTotalOffset = kBytesBaseOffset + 8;
inline constexpr std::size_t kRefusedInvalidTotalOffset = kRollsTotalOffset + 8;
inline constexpr std::size_t kRefusedTooLargeTotalOffset = kRefusedInvalidTotalOffset + 8;
inline constexpr std::size_t kRefusedJournalFullTotalOffset = kRefusedTooLargeTotalOffset + 8;
inline constexpr std::size_t kLatencySumNsOffset = kRefusedJournalFullTotalOffset + 8;
inline constexpr std::size_t kLatencyCountsOffset = 384;
inline constexpr int kLatencySubBucketBits = 3;
inline constexpr int kLatencyMaxBits = 36;
inline constexpr std::uint64_t kLatencyMaxNs = (std::uint64_t{1} << kLatencyMaxBits) - 1;
inline constexpr std::size_t kLatencyBuckets =
    std::size_t{kLatencyMaxBits - kLatencySubBucketBits + 1} << kLatencySubBucketBits;
inline constexpr std::uint32_t kLatencySamplePeriod = 16;

// A reader's file.
inline constexpr std::size_t kReaderMetricsSize = 256;
inline constexpr std::size_t kReaderNameOffset = kMetricsHostOffset + kMetricsHostSize;
inline constexpr std::size_t kReaderSegmentOffset = kMetricsCountersOffset;
inline constexpr std::size_t kReaderOffsetOffset = kReaderSegmentOffset + 8;
inline constexpr std::size_t kReaderRecordsTotalOffset = kReaderOffsetOffset + 8;
inline constexpr std::size_t kReaderLastRecordNsOffset = kReaderRecordsTotalOffset + 8;
inline constexpr std::size_t kReaderLastPollNsOffset = kReaderLastRecordNsOffset + 8;
inline constexpr std::size_t kReaderIncarnationsTotalOffset = kReaderLastPollNsOffset + 8;

// An idle reader stores its poll time on the first empty poll after a record, then
// every this many: a spinning reader does not read the clock on every spin.
inline constexpr std::uint64_t kPollHeartbeatEvery = 64;

struct WriterMetricsFile {
  char magic[sizeof kWriterMetricsMagic];
  std::uint32_t metrics_version;
  std::uint32_t file_size;
  std::uint32_t writer_pid;
  std::uint32_t latency_sample_period;
  std::int64_t writer_started_ns;
  char writer_host[kMetricsHostSize];
  char payload_id[layout::kPayloadIdSize];
  std::uint32_t latency_buckets;
  std::uint8_t reserved0[kMetricsCountersOffset - kLatencyBucketsOffset - 4];
  std::int64_t records_total;
  std::int64_t last_publish_ns;
  std::uint8_t reserved1[kSegmentSequenceOffset - kLastPublishNsOffset - 8];
  std::uint64_t segment_sequence;
  std::uint64_t segment;
  std::int64_t bytes_base;
  std::uint64_t rolls_total;
  std::uint64_t refused_invalid_total;
  std::uint64_t refused_too_large_total;
  std::uint64_t refused_journal_full_total;
  std::uint64_t latency_sum_ns;
  std::uint8_t reserved2[kLatencyCountsOffset - kLatencySumNsOffset - 8];
  std::uint64_t latency_counts[kLatencyBuckets];
  std::uint8_t reserved3[kWriterMetricsSize - kLatencyCountsOffset - 8 * kLatencyBuckets];
};
static_assert(sizeof(WriterMetricsFile) == kWriterMetricsSize);
static_assert(offsetof(WriterMetricsFile, metrics_version) == kMetricsVersionOffset);
static_assert(offsetof(WriterMetricsFile, file_size) == kMetricsFileSizeOffset);
static_assert(offsetof(WriterMetricsFile, writer_pid) == kMetricsPidOffset);
static_assert(offsetof(WriterMetricsFile, latency_sample_period) == kLatencySamplePeriodOffset);
static_assert(offsetof(WriterMetricsFile, writer_started_ns) == kMetricsStartedNsOffset);
static_assert(offsetof(WriterMetricsFile, writer_host) == kMetricsHostOffset);
static_assert(offsetof(WriterMetricsFile, payload_id) == kWriterPayloadIdOffset);
static_assert(offsetof(WriterMetricsFile, latency_buckets) == kLatencyBucketsOffset);
static_assert(offsetof(WriterMetricsFile, records_total) == kRecordsTotalOffset);
static_assert(offsetof(WriterMetricsFile, last_publish_ns) == kLastPublishNsOffset);
static_assert(offsetof(WriterMetricsFile, segment_sequence) == kSegmentSequenceOffset);
static_assert(offsetof(WriterMetricsFile, segment) == kSegmentOffset);
static_assert(offsetof(WriterMetricsFile, bytes_base) == kBytesBaseOffset);
static_assert(offsetof(WriterMetricsFile, rolls_total) == kRollsTotalOffset);
static_assert(offsetof(WriterMetricsFile, refused_invalid_total) == kRefusedInvalidTotalOffset);
static_assert(offsetof(WriterMetricsFile, refused_too_large_total) ==
              kRefusedTooLargeTotalOffset);
static_assert(offsetof(WriterMetricsFile, refused_journal_full_total) ==
              kRefusedJournalFullTotalOffset);
static_assert(offsetof(WriterMetricsFile, latency_sum_ns) == kLatencySumNsOffset);
static_assert(offsetof(WriterMetricsFile, latency_counts) == kLatencyCountsOffset);

struct ReaderMetricsFile {
  char magic[sizeof kReaderMetricsMagic];
  std::uint32_t metrics_version;
  std::uint32_t file_size;
  std::uint32_t reader_pid;
  std::uint32_t reserved0;
  std::int64_t reader_started_ns;
  char reader_host[kMetricsHostSize];
  char reader_name[kReaderNameSize];
  std::uint64_t segment;
  std::uint64_t offset;
  std::uint64_t records_total;
  std::int64_t last_record_ns;
  std::int64_t last_poll_ns;
  std::uint64_t incarnations_total;
  std::uint8_t reserved1[kReaderMetricsSize - kReaderIncarnationsTotalOffset - 8];
};
static_assert(sizeof(ReaderMetricsFile) == kReaderMetricsSize);
static_assert(offsetof(ReaderMetricsFile, reader_pid) == kMetricsPidOffset);
static_assert(offsetof(ReaderMetricsFile, reader_started_ns) == kMetricsStartedNsOffset);
static_assert(offsetof(ReaderMetricsFile, reader_host) == kMetricsHostOffset);
static_assert(offsetof(ReaderMetricsFile, reader_name) == kReaderNameOffset);
static_assert(offsetof(ReaderMetricsFile, segment) == kReaderSegmentOffset);
static_assert(offsetof(ReaderMetricsFile, offset) == kReaderOffsetOffset);
static_assert(offsetof(ReaderMetricsFile, records_total) == kReaderRecordsTotalOffset);
static_assert(offsetof(ReaderMetricsFile, last_record_ns) == kReaderLastRecordNsOffset);
static_assert(offsetof(ReaderMetricsFile, last_poll_ns) == kReaderLastPollNsOffset);
static_assert(offsetof(ReaderMetricsFile, incarnations_total) == kReaderIncarnationsTotalOffset);
static_assert(kReaderSegmentOffset % 8 == 0 && kRecordsTotalOffset % 8 == 0,
              "every counter one aligned word");

// A name for a reader's file and its metrics label: 1..32 of [A-Za-z0-9_.-], not
// starting with '.' or '-' (the rule of journal/_metrics.py check_reader_name).
inline bool valid_reader_name(const std::string& name) {
  if (name.empty() || name.size() > kReaderNameSize || name[0] == '.' || name[0] == '-')
    return false;
  for (const char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Whether the reader owning metrics file `path` is alive: it holds its exclusive
// lock, so a shared one for an instant fails. A missing file is not alive.
inline bool reader_alive(const std::string& path) {
  FileDescriptor fd{::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)};
  if (!fd.valid()) return false;
  return ::flock(fd.get(), LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
}

// One reader's registration: its file, locked, mapped, and removed when it goes.
// A default-constructed (or moved-from) registration is none: updates do nothing.
class ReaderRegistration {
 public:
  ReaderRegistration() = default;
  ReaderRegistration(ReaderRegistration&& other) noexcept { take(other); }
  ReaderRegistration& operator=(ReaderRegistration&& other) noexcept {
    if (this != &other) {
      remove();
      take(other);
    }
    return *this;
  }
  ReaderRegistration(const ReaderRegistration&) = delete;
  ReaderRegistration& operator=(const ReaderRegistration&) = delete;
  ~ReaderRegistration() { remove(); }

  // Registers as `name` in <journal>/readers/ (created with the journal directory's
  // permissions if missing), as <name>-<pid>.metrics, or -<n> added while that name
  // is taken by a live reader; a dead reader's file of the name is replaced. Throws
  // JournalError saying what failed (no write access, a full tmpfs, a bad name).
  // `started_ns` is the reader's start (0: now; a registration made again in a
  // recreated journal keeps the first one's).
  static ReaderRegistration create(const std::string& journal, const std::string& name,
                                   std::int64_t started_ns = 0) {
    if (!valid_reader_name(name))
      throw JournalError("reader name \"" + name +
                         "\": use 1..32 letters, digits, '_', '.' or '-'");
    const std::string directory = journal + "/" + kReadersDirectory;
    struct stat info {};
    if (::stat(journal.c_str(), &info) != 0)
      throw JournalError("cannot register in " + journal + ": " + errno_text(errno));
    const mode_t directory_mode = info.st_mode & 07777;
    if (::mkdir(directory.c_str(), directory_mode) == 0) {
      ::chmod(directory.c_str(), directory_mode);
    } else if (errno != EEXIST) {
      throw JournalError("cannot create " + directory + ": " + errno_text(errno));
    }
    if (::lstat(directory.c_str(), &info) != 0 || !S_ISDIR(info.st_mode))
      throw JournalError(directory + " is not a directory (or is a symbolic link)");
    const mode_t mode = info.st_mode & 0666;
    const std::string pid = std::to_string(::getpid());
    for (int suffix = 0; suffix < 100; ++suffix) {
      const std::string stem = name + "-" + pid + (suffix ? "-" + std::to_string(suffix) : "");
      ReaderRegistration registration;
      if (registration.try_create(directory, stem, name, mode, started_ns))
        return registration;
    }
    throw JournalError("100 readers named " + name + " in this process already in " + directory);
  }

  explicit operator bool() const { return static_cast<bool>(map_); }
  const std::string& path() const { return path_; }
  std::uint64_t records() const { return records_; }
  std::int64_t started_ns() const { return started_ns_; }

  // A registration made again in a recreated journal: go on from the records the
  // reader read so far, and say how many incarnations it followed.
  void carry_on(std::uint64_t records, std::uint64_t incarnations) noexcept {
    if (!map_) return;
    records_ = records;
    store(kReaderRecordsTotalOffset, records_);
    store(kReaderIncarnationsTotalOffset, incarnations);
  }

  // A record was read; the next one is at `next`. Relaxed: a figure for journal
  // top, ordered with nothing (the reader's own reads need no publication).
  void read(Position next, std::int64_t record_time_ns) noexcept {
    if (!map_) return;
    store(kReaderSegmentOffset, next.segment);
    store(kReaderOffsetOffset, next.offset);
    store(kReaderRecordsTotalOffset, ++records_);
    store(kReaderLastRecordNsOffset, static_cast<std::uint64_t>(record_time_ns));
    empty_polls_ = 0;
  }

  // A poll found nothing new: a heartbeat, stored on the first such poll after a
  // record and then every kPollHeartbeatEvery.
  void polled_empty() noexcept {
    if (!map_ || empty_polls_++ % kPollHeartbeatEvery != 0) return;
    store(kReaderLastPollNsOffset, static_cast<std::uint64_t>(realtime_ns()));
  }

 private:
  void store(std::size_t offset, std::uint64_t value) noexcept {
    __atomic_store_n(reinterpret_cast<std::uint64_t*>(map_.data() + offset), value,
                     __ATOMIC_RELAXED);
  }

  // Builds the file under a hidden name (locked, allocated in full so that a full
  // tmpfs fails here and not as a SIGBUS later, header written), then links it to
  // its name. False if the name is a live reader's.
  bool try_create(const std::string& directory, const std::string& stem, const std::string& name,
                  mode_t mode, std::int64_t started_ns) {
    const std::string final_path = directory + "/" + stem + kMetricsSuffix;
    const std::string temporary = directory + "/." + stem + kMetricsSuffix + ".creating";
    FileDescriptor fd{::open(temporary.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                             mode)};
    if (!fd.valid()) {
      if (errno == EEXIST) return false;  // another registration of ours, half-made
      throw JournalError("cannot create " + temporary + ": " + errno_text(errno));
    }
    struct Unlink {
      const std::string& path;
      ~Unlink() { ::unlink(path.c_str()); }
    } unlink_temporary{temporary};
    ::flock(fd.get(), LOCK_EX | LOCK_NB);  // a new file: nobody else holds it
    ::fchmod(fd.get(), mode);
    if (const int error = ::posix_fallocate(fd.get(), 0, kReaderMetricsSize); error != 0)
      throw JournalError("cannot allocate " + temporary + ": " + errno_text(error));
    ReaderMetricsFile header{};
    std::memcpy(header.magic, kReaderMetricsMagic, sizeof header.magic);
    header.metrics_version = kMetricsVersion;
    header.file_size = kReaderMetricsSize;
    header.reader_pid = static_cast<std::uint32_t>(::getpid());
    header.reader_started_ns = started_ns != 0 ? started_ns : realtime_ns();
    ::gethostname(header.reader_host, sizeof header.reader_host - 1);
    std::memcpy(header.reader_name, name.data(), name.size());
    if (::pwrite(fd.get(), &header, sizeof header, 0) != static_cast<ssize_t>(sizeof header))
      throw JournalError("cannot write " + temporary + ": " + errno_text(errno));
    Mapping map = Mapping::map(fd, kReaderMetricsSize, /*writable=*/true, temporary);
    if (::link(temporary.c_str(), final_path.c_str()) != 0) {
      if (errno != EEXIST)
        throw JournalError("cannot link " + final_path + ": " + errno_text(errno));
      if (!reader_alive(final_path)) ::unlink(final_path.c_str());  // a dead process had our pid
      return false;
    }
    path_ = final_path;
    fd_ = std::move(fd);
    map_ = std::move(map);
    started_ns_ = header.reader_started_ns;
    return true;
  }

  // The file goes first, then the lock with the descriptor: never a live-looking
  // file of a reader that is gone. Only if the path still names our file: in a
  // journal directory removed and made again, it may be another reader's now.
  void remove() noexcept {
    if (map_) {
      struct stat ours {}, named {};
      if (::fstat(fd_.get(), &ours) == 0 && ::lstat(path_.c_str(), &named) == 0 &&
          ours.st_dev == named.st_dev && ours.st_ino == named.st_ino)
        ::unlink(path_.c_str());
    }
    map_.reset();
    fd_.reset();
    path_.clear();
  }

  void take(ReaderRegistration& other) noexcept {
    path_ = std::move(other.path_);
    fd_ = std::move(other.fd_);
    map_ = std::move(other.map_);
    records_ = other.records_;
    empty_polls_ = other.empty_polls_;
    started_ns_ = other.started_ns_;
    other.path_.clear();
  }

  std::string path_;
  FileDescriptor fd_;
  Mapping map_;
  std::uint64_t records_ = 0;
  std::uint64_t empty_polls_ = 0;
  std::int64_t started_ns_ = 0;
};

}  // namespace radar::metrics
