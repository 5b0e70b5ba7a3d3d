// One segment file mapped read-only, its header checked, its identity kept (to tell
// it from another file at its path later); listing a journal's segments.
#pragma once

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "radar_reader/atomics.hpp"
#include "radar_reader/layout.hpp"
#include "radar_reader/mapping.hpp"

namespace radar {

// Where a record is: segment index and byte offset of its size prefix.
struct Position {
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;
};

inline std::string segment_file_name(std::uint64_t index) {
  char name[32];
  std::snprintf(name, sizeof name, "%0*llu%s", layout::kSegmentNameDigits,
                static_cast<unsigned long long>(index), layout::kSegmentSuffix);
  return name;
}

inline std::string segment_path(const std::string& directory, std::uint64_t index) {
  return directory + "/" + segment_file_name(index);
}

// Indices of the complete segments in `directory`, oldest first (empty if the
// directory does not exist yet: a reader may start before its writer).
inline std::vector<std::uint64_t> segment_indices(const std::string& directory) {
  std::vector<std::uint64_t> indices;
  DIR* dir = ::opendir(directory.c_str());
  if (dir == nullptr) return indices;
  const std::string_view suffix = layout::kSegmentSuffix;
  while (const dirent* entry = ::readdir(dir)) {
    // The canonical name of its index only: at least kSegmentNameDigits ASCII digits
    // (more past 10^8), no extra leading zero, at most 19 digits (fits a u64).
    const std::string_view name = entry->d_name;
    if (name.size() < layout::kSegmentNameDigits + suffix.size()) continue;
    const std::size_t length = name.size() - suffix.size();
    if (name.substr(length) != suffix || length > 19) continue;
    const std::string_view digits = name.substr(0, length);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    const std::uint64_t index = std::stoull(std::string(digits));
    if (segment_file_name(index) != name) continue;
    indices.push_back(index);
  }
  ::closedir(dir);
  std::sort(indices.begin(), indices.end());
  return indices;
}

// Which file a path named when it was opened: device and inode (st_dev, st_ino).
struct FileIdentity {
  dev_t device = 0;
  ino_t inode = 0;

  static FileIdentity of(const struct stat& info) { return {info.st_dev, info.st_ino}; }
  bool operator==(const FileIdentity& other) const {
    return device == other.device && inode == other.inode;
  }
  bool operator!=(const FileIdentity& other) const { return !(*this == other); }
};

// The identity of the file `fd` is open on (a zero identity if fstat fails).
inline FileIdentity identity_of(const FileDescriptor& fd) {
  struct stat info {};
  return ::fstat(fd.get(), &info) == 0 ? FileIdentity::of(info) : FileIdentity{};
}

class Segment {
 public:
  Segment() = default;

  // Maps segment `index` of `directory` read-only and checks its header. Throws
  // CorruptJournalError naming the file and offset of a field that breaks the
  // format (a truncated file too), JournalError for the rest (no access, another
  // payload or format version); a missing file throws too unless `missing_ok`,
  // which returns an empty Segment.
  static Segment open(const std::string& directory, std::uint64_t index,
                      const char (&payload_id)[layout::kPayloadIdSize],
                      bool missing_ok = false) {
    const std::string path = segment_path(directory, index);
    FileDescriptor fd = FileDescriptor::open(path, O_RDONLY, 0, missing_ok);
    if (!fd.valid()) return Segment{};
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode))
      throw JournalError("refusing " + path + ": not a regular file");
    const auto size = static_cast<std::uint64_t>(info.st_size);
    if (size < layout::kHeaderSize)
      throw CorruptJournalError(path + ": file size=" + std::to_string(size) +
                                " is smaller than the header (offset=0)");
    Segment segment;
    segment.path_ = path;
    segment.identity_ = FileIdentity::of(info);
    segment.map_ = Mapping::map(fd, size, /*writable=*/false, path);
    segment.check_header(index, payload_id);
    return segment;
  }

  explicit operator bool() const { return static_cast<bool>(map_); }
  const std::uint8_t* data() const { return map_.data(); }
  std::uint64_t size() const { return map_.size(); }
  std::uint64_t index() const { return header().segment_index; }
  const std::string& path() const { return path_; }
  const layout::SegmentHeader& header() const {
    return *reinterpret_cast<const layout::SegmentHeader*>(map_.data());
  }
  // The file mapped, as it was at its path when opened.
  const FileIdentity& identity() const { return identity_; }
  // created_ns of the first segment of its incarnation of the journal; 0: unknown.
  std::int64_t incarnation_ns() const { return header().incarnation_ns; }

  // What path() names now, one lstat: the file mapped, in full (kSame; also when it
  // cannot tell, e.g. EACCES); another file or none (kGone: removed, ENOENT, or its
  // directory gone, ENOTDIR; or another file took the name); the file mapped, cut
  // shorter than its mapping (kTruncated, its size in *size_now): touching the rest
  // would fault.
  enum class PathState { kSame, kGone, kTruncated };
  PathState path_state(std::uint64_t* size_now = nullptr) const {
    struct stat info {};
    if (::lstat(path_.c_str(), &info) != 0)
      return errno == ENOENT || errno == ENOTDIR ? PathState::kGone : PathState::kSame;
    if (FileIdentity::of(info) != identity_) return PathState::kGone;
    if (size_now != nullptr) *size_now = static_cast<std::uint64_t>(info.st_size);
    return static_cast<std::uint64_t>(info.st_size) < size() ? PathState::kTruncated
                                                             : PathState::kSame;
  }

  // Pairs with the writer's publish_commit: bytes below it are complete.
  std::uint64_t load_commit_acquire() const { return atomics::load_commit_acquire(data()); }
  bool is_sealed(std::uint64_t commit) const { return atomics::is_sealed(data(), commit); }

  // A commit the format allows; anything else means corruption at the header.
  bool commit_in_range(std::uint64_t commit) const {
    return commit >= layout::kHeaderSize && commit <= size() &&
           commit % layout::kRecordAlignment == 0;
  }

 private:
  void check_header(std::uint64_t index, const char (&payload_id)[layout::kPayloadIdSize]) const {
    const layout::SegmentHeader& h = header();
    auto fail = [&](const std::string& what, std::size_t offset) {
      throw CorruptJournalError(path_ + ": " + what + " (offset=" + std::to_string(offset) +
                                ")");
    };
    // Intact but not for this reader: another version, another payload.
    auto refuse = [&](const std::string& what, std::size_t offset) {
      throw JournalError(path_ + ": " + what + " (offset=" + std::to_string(offset) + ")");
    };
    if (std::memcmp(h.magic, layout::kMagic, sizeof h.magic) != 0)
      fail("bad magic: not a journal segment", layout::kMagicOffset);
    if (h.format_version != layout::kFormatVersion)
      refuse("format_version=" + std::to_string(h.format_version) + ", this reader knows " +
                 std::to_string(layout::kFormatVersion),
             layout::kFormatVersionOffset);
    if (h.header_size != layout::kHeaderSize)
      fail("header_size=" + std::to_string(h.header_size), layout::kHeaderSizeOffset);
    if (h.segment_size != size() || h.segment_size % layout::kPageSize != 0 ||
        h.segment_size < layout::kMinSegmentSize || h.segment_size >= layout::kMaxSegmentSize)
      fail("segment_size=" + std::to_string(h.segment_size) + " but the file is " +
               std::to_string(size()) + " bytes",
           layout::kSegmentSizeOffset);
    if (h.segment_index != index)
      fail("segment_index=" + std::to_string(h.segment_index) + ", the file name says " +
               std::to_string(index),
           layout::kSegmentIndexOffset);
    if (std::memcmp(h.payload_id, payload_id, sizeof h.payload_id) != 0)
      refuse("payload_id=" + std::string(h.payload_id, layout::kPayloadIdSize) + ", expected " +
               std::string(payload_id, layout::kPayloadIdSize),
           layout::kPayloadIdOffset);
    if (h.max_record_size != layout::max_record_size(h.segment_size))
      fail("max_record_size=" + std::to_string(h.max_record_size), layout::kMaxRecordSizeOffset);
  }

  std::string path_;
  FileIdentity identity_;
  Mapping map_;
};

// Whether `candidate`, found in the journal directory of `current`, belongs to
// another incarnation of it (docs/FORMAT.md, "Incarnations"): with both stamps
// known, they differ. Where either is 0 (files of before the stamp), it is another
// file than `current`, created after it, at an index not above it: a recreated
// journal starts again at segment 0, while the segments of `current`'s incarnation
// created after it have higher indices.
inline bool other_incarnation(const Segment& current, const Segment& candidate) {
  const std::int64_t ours = current.incarnation_ns(), theirs = candidate.incarnation_ns();
  if (ours != 0 && theirs != 0) return ours != theirs;
  return candidate.identity() != current.identity() && candidate.index() <= current.index() &&
         candidate.header().created_ns > current.header().created_ns;
}

// Whether both stamps are known and differ: what tells, at an end marker, that
// segment N+1 is not the one the writer of N created before sealing it.
inline bool incarnation_stamps_differ(const Segment& a, const Segment& b) {
  return a.incarnation_ns() != 0 && b.incarnation_ns() != 0 &&
         a.incarnation_ns() != b.incarnation_ns();
}

}  // namespace radar
