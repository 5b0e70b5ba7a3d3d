// The C++ side's single writer: the radar appends its results journal with it.
//
// Same protocol as journal/_writer.py (docs/FORMAT.md, "Publishing"): one writer
// per journal (flock on the journal directory itself), segments preallocated and
// linked into place complete, each stamped with the incarnation's incarnation_ns,
// each record copied and then published with a release store of the commit offset,
// sleepers woken only when a reader said it sleeps, full segments sealed with the
// end marker once the next segment exists. Reopening resumes after the last
// committed record and clears what is beyond it.
#pragma once

#include <fcntl.h>
#include <linux/futex.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "radar_reader/atomics.hpp"
#include "radar_reader/layout.hpp"
#include "radar_reader/mapping.hpp"
#include "radar_reader/segment.hpp"

namespace radar {

inline std::int64_t realtime_ns() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return std::int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

// For intervals: never steps with the wall clock (vDSO, no system call).
inline std::int64_t monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return std::int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

class JournalWriter {
 public:
  // Creates or reopens journal `directory` for records of `payload_id`; throws
  // JournalError (another live writer, a full tmpfs, a corrupt newest segment).
  JournalWriter(std::string directory, const char (&payload_id)[layout::kPayloadIdSize],
                std::uint64_t segment_size = 16 * 1024 * 1024, mode_t mode = 0600)
      : directory_(std::move(directory)), segment_size_(segment_size), mode_(mode) {
    std::memcpy(payload_id_, payload_id, sizeof payload_id_);
    if (segment_size_ % layout::kPageSize != 0 || segment_size_ < layout::kMinSegmentSize ||
        segment_size_ >= layout::kMaxSegmentSize)
      throw JournalError("segment_size=" + std::to_string(segment_size_) + ": a multiple of " +
                         std::to_string(layout::kPageSize) + " in " +
                         std::to_string(layout::kMinSegmentSize >> 10) + " KiB .. " +
                         std::to_string(layout::kMaxSegmentSize >> 30) + " GiB");
    make_directory();
    lock_directory();
    write_holder();
    started_ns_ = realtime_ns();
    resume();
  }

  // Copies one size-prefixed FlatBuffer (already verified by the caller) and
  // publishes it. Throws JournalError only when a roll fails (tmpfs full) or the
  // record can never fit a segment.
  // On a failed roll nothing is written and the writer stays where it was.
  Position append(const std::uint8_t* record, std::size_t size) {
    const std::uint64_t framed = layout::align_record(size);
    if (framed > segment_size_ - layout::kHeaderSize - layout::kEndMarkerSize)
      throw JournalError("record of " + std::to_string(size) +
                         " bytes is larger than a segment can hold");
    if (position_ + framed + layout::kEndMarkerSize > map_.size()) roll();
    std::uint8_t* at = map_.data() + position_;
    std::memcpy(at, record, size);
    std::memset(at + size, 0, framed - size);
    const Position where{index_, position_};
    position_ += framed;
    atomics::publish_commit(map_.data(), position_);  // pairs with load_commit_acquire
    wake_sleepers();
    return where;
  }

  Position position() const { return {index_, position_}; }
  // The stamp of the incarnation written (docs/FORMAT.md, "Incarnations"): created_ns
  // of its segment 0, or what the segment resumed holds (0 in files of before it).
  std::int64_t incarnation_ns() const { return incarnation_ns_.value_or(0); }

 private:
  void make_directory() {
    const mode_t directory_mode = mode_ | ((mode_ & 0444) >> 2);
    const std::filesystem::path parent = std::filesystem::path(directory_).parent_path();
    std::error_code error;
    if (!parent.empty()) std::filesystem::create_directories(parent, error);
    if (error)
      throw JournalError("cannot create " + parent.string() + ": " + error.message());
    if (::mkdir(directory_.c_str(), directory_mode) == 0) {
      ::chmod(directory_.c_str(), directory_mode);
    } else if (errno != EEXIST) {
      throw JournalError("cannot create " + directory_ + ": " + errno_text(errno));
    }
  }

  // One writer per journal: an exclusive flock on the journal directory itself,
  // held open for the writer's life. Not on a file in it: anyone who may write the
  // directory can unlink a file, and the next writer would lock a new one of the
  // same name while the first still writes. The directory is the one the path
  // names after locking (else it was replaced meanwhile: another journal).
  void lock_directory() {
    lock_ = FileDescriptor::open(directory_, O_RDONLY | O_DIRECTORY);
    struct stat locked {};
    if (::fstat(lock_.get(), &locked) != 0 || !S_ISDIR(locked.st_mode) ||
        locked.st_uid != ::geteuid())
      throw JournalError(directory_ + " is not a directory of ours (or is a symlink)");
    if (::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        throw JournalError("journal " + directory_ + " already has a live writer (" +
                           holder_text() + "); one writer per journal");
      throw JournalError("cannot lock " + directory_ + ": " + errno_text(errno));
    }
    struct stat named {};
    if (::lstat(directory_.c_str(), &named) != 0 ||
        FileIdentity::of(named) != FileIdentity::of(locked))
      throw JournalError("journal directory " + directory_ +
                         " was removed or replaced while its writer was opening it");
  }

  // writer.lock says who holds the lock (pid, host): for messages only, never
  // trusted for the decision. Made relative to the locked directory.
  void write_holder() const {
    const int fd = ::openat(lock_.get(), layout::kLockFileName,
                            O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode_);
    if (fd < 0)
      throw JournalError("cannot open " + directory_ + "/" + layout::kLockFileName + ": " +
                         errno_text(errno) + " (a symbolic link, or another user's file?)");
    FileDescriptor holder{fd};
    char host[layout::kWriterHostSize] = {};
    ::gethostname(host, sizeof host - 1);
    const std::string text =
        "pid=" + std::to_string(::getpid()) + " host=" + std::string(host) + "\n";
    if (::ftruncate(holder.get(), 0) != 0 ||
        ::pwrite(holder.get(), text.data(), text.size(), 0) < 0)
      throw JournalError("cannot write " + directory_ + "/" + layout::kLockFileName + ": " +
                         errno_text(errno));
  }

  // What writer.lock says of the live writer, for the message refusing a second.
  std::string holder_text() const {
    const int fd = ::openat(lock_.get(), layout::kLockFileName, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return "holder unknown";
    FileDescriptor holder{fd};
    char text[256] = {};
    const ssize_t got = ::pread(holder.get(), text, sizeof text - 1, 0);
    std::string said(text, got > 0 ? static_cast<std::size_t>(got) : 0);
    while (!said.empty() && (said.back() == '\n' || said.back() == ' ')) said.pop_back();
    return said.empty() ? "holder unknown" : said;
  }

  // Resume after the last committed record (docs/FORMAT.md, "Recovery").
  void resume() {
    remove_unfinished();
    std::vector<std::uint64_t> indices = segment_indices(directory_);
    if (indices.empty()) {
      create(0);
      indices.push_back(0);
    }
    // The newest, or the open one before an empty segment prepared for a roll.
    std::uint64_t index = indices.back();
    if (indices.size() > 1 && indices[indices.size() - 2] == index - 1) {
      Segment previous = Segment::open(directory_, index - 1, payload_id_);
      Segment newest = Segment::open(directory_, index, payload_id_);
      if (!previous.is_sealed(previous.load_commit_acquire())) {
        if (newest.load_commit_acquire() != layout::kHeaderSize)
          throw CorruptJournalError(newest.path() + ": holds records but segment " +
                             std::to_string(index - 1) + " before it is not sealed (offset=" +
                             std::to_string(layout::kCommitOffsetOffset) + ")");
        --index;
      }
    }
    use(map_segment(index));
    // Every segment created from now on carries the stamp of the one resumed.
    incarnation_ns_ = reinterpret_cast<const layout::SegmentHeader*>(map_.data())->incarnation_ns;
    // Everything after the commit is a dead writer's unpublished bytes; an end
    // marker offset left by a crash between the two stores of a seal goes too.
    std::memset(map_.data() + position_, 0, map_.size() - position_);
    if (atomics::is_sealed(map_.data(), position_)) {
      if (!segment_exists(index + 1)) create(index + 1);
      use(map_segment(index + 1, /*same_incarnation=*/true));
    } else {
      atomics::clear_interrupted_seal(map_.data());  // pairs with load_end_marker_offset
    }
  }

  // A crashed writer's half-created segments (we hold the lock).
  void remove_unfinished() const {
    DIR* dir = ::opendir(directory_.c_str());
    if (dir == nullptr) return;
    while (const dirent* entry = ::readdir(dir)) {
      const std::string_view name = entry->d_name;
      const std::string_view creating = layout::kCreatingSuffix;
      if (name.size() > creating.size() + 1 && name.front() == '.' &&
          name.substr(name.size() - creating.size()) == creating)
        ::unlinkat(::dirfd(dir), entry->d_name, 0);
    }
    ::closedir(dir);
  }

  bool segment_exists(std::uint64_t index) const {
    struct stat info {};
    return ::lstat(segment_path(directory_, index).c_str(), &info) == 0;
  }

  struct Mapped {
    Mapping map;
    std::uint64_t index;
    std::uint64_t commit;
  };

  // Checks the header as readers do (and, for a segment that continues the one
  // written, its incarnation_ns), then maps the segment writable.
  Mapped map_segment(std::uint64_t index, bool same_incarnation = false) const {
    const std::string path = segment_path(directory_, index);
    const Segment checked = Segment::open(directory_, index, payload_id_);
    if (same_incarnation && checked.incarnation_ns() != incarnation_ns())
      throw CorruptJournalError(path + ": incarnation_ns=" +
                                std::to_string(checked.incarnation_ns()) +
                                ", the journal being written " +
                                std::to_string(incarnation_ns()) +
                                ": another writer recreated the journal directory (offset=" +
                                std::to_string(layout::kIncarnationNsOffset) + ")");
    FileDescriptor fd = FileDescriptor::open(path, O_RDWR);
    Mapped mapped{Mapping::map(fd, checked.size(), /*writable=*/true, path, /*populate=*/true),
                  index, 0};
    mapped.commit = atomics::load_commit_acquire(mapped.map.data());
    if (!checked.commit_in_range(mapped.commit))
      throw CorruptJournalError(path + ": commit_offset=" + std::to_string(mapped.commit) +
                         " outside the segment (offset=" +
                         std::to_string(layout::kCommitOffsetOffset) + ")");
    return mapped;
  }

  void use(Mapped mapped) {
    map_ = std::move(mapped.map);
    index_ = mapped.index;
    position_ = mapped.commit;
  }

  // Preallocated in full, header written, then linked into place: a segment file
  // is complete whenever it exists under its name.
  void create(std::uint64_t index) {
    const std::string path = segment_path(directory_, index);
    const std::string temporary =
        directory_ + "/." + segment_file_name(index) + layout::kCreatingSuffix;
    ::unlink(temporary.c_str());  // a crashed writer's leftover; we hold the lock
    FileDescriptor fd = FileDescriptor::open(temporary, O_RDWR | O_CREAT | O_EXCL, mode_);
    ::fchmod(fd.get(), mode_);
    if (const int error = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(segment_size_))) {
      ::unlink(temporary.c_str());
      throw JournalError("no room for segment " + path + " of " +
                         std::to_string(segment_size_) + " bytes: " + errno_text(error));
    }
    layout::SegmentHeader header{};
    std::memcpy(header.magic, layout::kMagic, sizeof header.magic);
    header.format_version = layout::kFormatVersion;
    header.header_size = layout::kHeaderSize;
    header.segment_size = segment_size_;
    header.segment_index = index;
    std::memcpy(header.payload_id, payload_id_, sizeof header.payload_id);
    header.max_record_size = static_cast<std::uint32_t>(layout::max_record_size(segment_size_));
    header.created_ns = realtime_ns();
    // Segment 0 of a new journal starts an incarnation: its own creation time.
    if (!incarnation_ns_) incarnation_ns_ = header.created_ns;
    header.incarnation_ns = *incarnation_ns_;
    header.writer_pid = static_cast<std::uint32_t>(::getpid());
    header.writer_started_ns = started_ns_;
    ::gethostname(header.writer_host, sizeof header.writer_host - 1);
    header.commit_offset = layout::kHeaderSize;
    if (::pwrite(fd.get(), &header, sizeof header, 0) != static_cast<ssize_t>(sizeof header) ||
        ::link(temporary.c_str(), path.c_str()) != 0) {
      const int error = errno;
      ::unlink(temporary.c_str());
      throw JournalError("cannot create " + path + ": " + errno_text(error));
    }
    ::unlink(temporary.c_str());
  }

  // The next segment is created and mapped before this one is sealed: if that
  // fails (tmpfs full), nothing is published and this segment stays open.
  void roll() {
    if (!segment_exists(index_ + 1)) create(index_ + 1);
    Mapped next = map_segment(index_ + 1, /*same_incarnation=*/true);
    std::uint8_t* marker = map_.data() + position_;
    const std::uint32_t words[2] = {layout::kEndOfSegment, 0};
    static_assert(sizeof words == layout::kEndMarkerSize);
    std::memcpy(marker, words, sizeof words);
    atomics::publish_seal(map_.data(), position_);  // pairs with is_sealed
    wake_sleepers();
    use(std::move(next));
  }

  void wake_sleepers() {
    if (!atomics::take_sleepers(map_.data())) return;  // nobody sleeps: no syscall
    ::syscall(SYS_futex, atomics::commit_futex_word(map_.data()), FUTEX_WAKE, INT_MAX, nullptr,
              nullptr, 0);
  }

  std::string directory_;
  char payload_id_[layout::kPayloadIdSize]{};
  std::uint64_t segment_size_;
  mode_t mode_;
  FileDescriptor lock_;  // the journal directory, flock()ed
  Mapping map_;
  std::uint64_t index_ = 0;
  std::uint64_t position_ = 0;
  std::int64_t started_ns_ = 0;
  std::optional<std::int64_t> incarnation_ns_;  // none until segment 0 or the one resumed
};

}  // namespace radar
