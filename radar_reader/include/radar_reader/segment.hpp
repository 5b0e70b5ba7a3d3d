// One segment file mapped read-only, its header checked; listing a journal's segments.
#pragma once

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
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
    const std::string_view name = entry->d_name;
    if (name.size() != layout::kSegmentNameDigits + suffix.size()) continue;
    if (name.substr(layout::kSegmentNameDigits) != suffix) continue;
    const std::string_view digits = name.substr(0, layout::kSegmentNameDigits);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    indices.push_back(std::stoull(std::string(digits)));
  }
  ::closedir(dir);
  std::sort(indices.begin(), indices.end());
  return indices;
}

class Segment {
 public:
  Segment() = default;

  // Maps segment `index` of `directory` read-only and checks its header. Throws
  // JournalError naming the file and field; a missing file throws too unless
  // `missing_ok`, which returns an empty Segment.
  static Segment open(const std::string& directory, std::uint64_t index,
                      const char (&payload_id)[4], bool missing_ok = false) {
    const std::string path = segment_path(directory, index);
    FileDescriptor fd = FileDescriptor::open(path, O_RDONLY, 0, missing_ok);
    if (!fd.valid()) return Segment{};
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode))
      throw JournalError("refusing " + path + ": not a regular file");
    const auto size = static_cast<std::uint64_t>(info.st_size);
    if (size < layout::kHeaderSize)
      throw JournalError(path + ": file size=" + std::to_string(size) +
                         " is smaller than the header (offset=0)");
    Segment segment;
    segment.path_ = path;
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

  // Pairs with the writer's publish_commit: bytes below it are complete.
  std::uint64_t load_commit_acquire() const { return atomics::load_commit_acquire(data()); }
  bool is_sealed(std::uint64_t commit) const { return atomics::is_sealed(data(), commit); }

  // A commit the format allows; anything else means corruption at the header.
  bool commit_in_range(std::uint64_t commit) const {
    return commit >= layout::kHeaderSize && commit <= size() &&
           commit % layout::kRecordAlignment == 0;
  }

 private:
  void check_header(std::uint64_t index, const char (&payload_id)[4]) const {
    const layout::SegmentHeader& h = header();
    auto fail = [&](const std::string& what, std::size_t offset) {
      throw JournalError(path_ + ": " + what + " (offset=" + std::to_string(offset) + ")");
    };
    if (std::memcmp(h.magic, layout::kMagic, sizeof h.magic) != 0)
      fail("bad magic: not a journal segment", layout::kMagicOffset);
    if (h.format_version != layout::kFormatVersion)
      fail("format_version=" + std::to_string(h.format_version) + ", this reader knows " +
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
      fail("payload_id=" + std::string(h.payload_id, 4) + ", expected " +
               std::string(payload_id, 4),
           layout::kPayloadIdOffset);
    if (h.max_record_size != layout::max_record_size(h.segment_size))
      fail("max_record_size=" + std::to_string(h.max_record_size), layout::kMaxRecordSizeOffset);
  }

  std::string path_;
  Mapping map_;
};

}  // namespace radar
