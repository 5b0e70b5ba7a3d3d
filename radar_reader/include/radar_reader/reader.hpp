// Tailing a journal: follow the commit offset and the segments, zero copies.
//
// JournalReader::try_next is the whole protocol (docs/FORMAT.md, "Reading"):
// acquire-load the commit; while the next frame lies below it, check the frame,
// run the FlatBuffers Verifier on the record, hand out a view of it in the mapping;
// at an end-of-segment marker, map the next segment. It never blocks and never
// throws: corrupt bytes make it return kError with the file and offset in error().
// Opening (bad start position, unreadable files) throws JournalError. With a
// metrics_name it registers in <journal>/readers/ (radar_reader/metrics.hpp) once
// the journal exists, and keeps its position there with relaxed stores.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "orderbook_generated.h"
#include "radar_generated.h"
#include "radar_reader/atomics.hpp"
#include "radar_reader/layout.hpp"
#include "radar_reader/mapping.hpp"
#include "radar_reader/metrics.hpp"
#include "radar_reader/segment.hpp"

namespace radar {

// How to check and date a record of one schema (journals hold one payload each).
struct Payload {
  char id[4];
  // The FlatBuffers Verifier on a size-prefixed buffer of `size` bytes.
  bool (*verify)(const std::uint8_t* record, std::size_t size);
  // The record's time in ns (collector or radar clock), for starting at a time.
  std::int64_t (*timestamp_ns)(const std::uint8_t* record);
};

inline const Payload kOrderBookPayload{
    {'O', 'B', 'K', '1'},
    [](const std::uint8_t* record, std::size_t size) {
      flatbuffers::Verifier verifier(record, size);
      return OrderBookData::VerifySizePrefixedOrderBookBuffer(verifier);
    },
    [](const std::uint8_t* record) {
      return OrderBookData::GetSizePrefixedOrderBook(record)->local_timestamp_ns();
    }};

inline const Payload kRadarResultPayload{
    {'R', 'D', 'R', '1'},
    [](const std::uint8_t* record, std::size_t size) {
      flatbuffers::Verifier verifier(record, size);
      return RadarData::VerifySizePrefixedRadarResultBuffer(verifier);
    },
    [](const std::uint8_t* record) {
      return RadarData::GetSizePrefixedRadarResult(record)->timestamp_ns();
    }};

struct StartAt {
  enum class Kind { kBeginning, kEnd, kPosition, kTime };
  Kind kind = Kind::kBeginning;
  Position position{};
  std::int64_t time_ns = 0;

  static StartAt beginning() { return {}; }
  static StartAt end() { return {Kind::kEnd, {}, 0}; }
  static StartAt at(Position position) { return {Kind::kPosition, position, 0}; }
  static StartAt at_time(std::int64_t time_ns) { return {Kind::kTime, {}, time_ns}; }
};

struct ReaderOptions {
  const Payload* payload = &kOrderBookPayload;
  // Run the FlatBuffers Verifier on every record (off only for trusted replay).
  bool verify = true;
  // On a record that fails verification inside an intact frame: stop (kError) or
  // skip it, counted in skipped(). A broken frame always stops: nothing after it
  // can be located.
  bool skip_bad_records = false;
  // Register as this reader name in <journal>/readers/ so that `journal top` shows
  // the reader and its lag (empty: do not). Best-effort: a failure is kept for
  // take_registration_error() and reading goes on.
  std::string metrics_name;
};

// A committed record, in place in the mapping: valid until the reader moves past
// its segment (the reader keeps the segment it is in, and the one before).
struct RecordView {
  const std::uint8_t* data = nullptr;  // the size prefix
  std::uint32_t size = 0;              // bytes from the size prefix on (prefix + buffer)
  Position position{};

  const OrderBookData::OrderBook* orderbook() const {
    return OrderBookData::GetSizePrefixedOrderBook(data);
  }
  const RadarData::RadarResult* radar_result() const {
    return RadarData::GetSizePrefixedRadarResult(data);
  }
};

enum class ReadResult { kRecord, kEmpty, kError };

class JournalReader {
 public:
  JournalReader(std::string directory, StartAt start, ReaderOptions options = {})
      : directory_(std::move(directory)), start_(start), options_(options) {
    if (start_.kind == StartAt::Kind::kEnd && segment_indices(directory_).empty()) {
      // No journal yet: every record its writer will publish comes after now.
      start_ = StartAt::beginning();
    }
    open_start();
  }

  JournalReader(JournalReader&&) noexcept = default;
  JournalReader& operator=(JournalReader&&) noexcept = default;
  JournalReader(const JournalReader&) = delete;
  JournalReader& operator=(const JournalReader&) = delete;

  // The next committed record, kEmpty if there is none yet, or kError (then
  // error() says what, with file and offset; the reader stays where it was).
  ReadResult try_next(RecordView& out) noexcept {
    if (!segment_ && !open_start_noexcept()) return failed_ ? ReadResult::kError : ReadResult::kEmpty;
    while (true) {
      // Pairs with the writer's publish_commit: bytes below `commit` are complete.
      const std::uint64_t commit = segment_.load_commit_acquire();
      if (offset_ >= commit) {
        registration_.polled_empty();
        return ReadResult::kEmpty;
      }
      if (!segment_.commit_in_range(commit))
        return fail("commit_offset=" + std::to_string(commit) + " outside the segment",
                    layout::kCommitOffsetOffset);
      const std::uint8_t* frame = segment_.data() + offset_;
      std::uint32_t size;
      std::memcpy(&size, frame, sizeof size);
      if (size == layout::kEndOfSegment) {
        if (offset_ + layout::kEndMarkerSize != commit || !segment_.is_sealed(commit))
          return fail("end-of-segment marker not at the sealed end (commit_offset=" +
                          std::to_string(commit) + ")",
                      offset_);
        if (!advance_segment()) return ReadResult::kError;
        continue;
      }
      if (size < layout::kMinRecordSize || offset_ + layout::kSizePrefixSize + size > commit)
        return fail("size prefix=" + std::to_string(size) +
                        " does not fit before commit_offset=" + std::to_string(commit),
                    offset_);
      const std::uint64_t frame_size = layout::kSizePrefixSize + std::uint64_t{size};
      if (std::memcmp(frame + layout::kRecordPayloadIdOffset, options_.payload->id, layout::kPayloadIdSize) != 0 ||
          (options_.verify && !options_.payload->verify(frame, frame_size))) {
        if (!options_.skip_bad_records)
          return fail(std::memcmp(frame + layout::kRecordPayloadIdOffset, options_.payload->id, layout::kPayloadIdSize) != 0
                          ? "record's file_identifier is not " +
                                std::string(options_.payload->id, layout::kPayloadIdSize)
                          : std::string("record fails FlatBuffers verification"),
                      offset_);
        ++skipped_;
        offset_ = layout::align_record(offset_ + frame_size);
        continue;
      }
      out.data = frame;
      out.size = static_cast<std::uint32_t>(frame_size);
      out.position = {segment_.index(), offset_};
      offset_ = layout::align_record(offset_ + frame_size);
      if (not_before_ns_ != kNoTime) {
        if (options_.payload->timestamp_ns(frame) < not_before_ns_) continue;
        not_before_ns_ = kNoTime;
      }
      if (registration_)
        registration_.read({segment_.index(), offset_}, options_.payload->timestamp_ns(frame));
      return ReadResult::kRecord;
    }
  }

  // Where the next record will be read: save it to resume there later.
  Position position() const { return {segment_ ? segment_.index() : 0, offset_}; }
  bool started() const { return static_cast<bool>(segment_); }
  const std::string& error() const { return error_; }
  const std::string& directory() const { return directory_; }
  std::uint64_t skipped() const { return skipped_; }
  // Why registering in <journal>/readers/ failed, once (then empty): for a log line.
  std::string take_registration_error() { return std::exchange(registration_error_, {}); }
  const metrics::ReaderRegistration& registration() const { return registration_; }

  // Committed bytes not yet read in the current segment; racy by nature.
  std::uint64_t lag_estimate() const {
    if (!segment_) return 0;
    const std::uint64_t commit = segment_.load_commit_acquire();
    return commit > offset_ ? commit - offset_ : 0;
  }

  // For futex waiting: the current segment's header mapped writable (to raise the
  // sleepers flag) and the commit word's address. Returns false if there is data
  // now or the header cannot be written (then the caller backs off instead).
  struct SleepTarget {
    std::uint32_t* word = nullptr;
    std::uint32_t expected = 0;
  };
  bool prepare_sleep(SleepTarget& target) noexcept {
    if (!segment_) return false;
    if (!sleep_header_) {
      try {
        FileDescriptor fd = FileDescriptor::open(segment_.path(), O_RDWR);
        sleep_header_ = Mapping::map(fd, layout::kHeaderSize, true, segment_.path());
      } catch (const JournalError&) {
        return false;
      }
    }
    atomics::announce_sleeper(sleep_header_.data());
    // After the fence: a commit published from now on finds the flag raised.
    const std::uint64_t commit = segment_.load_commit_acquire();
    if (commit > offset_) return false;
    target.word = atomics::commit_futex_word(sleep_header_.data());
    target.expected = static_cast<std::uint32_t>(commit);
    return true;
  }

 private:
  static constexpr std::int64_t kNoTime = INT64_MIN;

  ReadResult fail(std::string what, std::uint64_t offset) noexcept {
    error_ = segment_.path() + " offset=" + std::to_string(offset) + ": " + what;
    return ReadResult::kError;
  }

  bool open_start_noexcept() noexcept {
    try {
      open_start();
      return static_cast<bool>(segment_);
    } catch (const std::exception& e) {
      error_ = e.what();
      failed_ = true;
      return false;
    }
  }

  bool advance_segment() noexcept {
    const std::uint64_t next = segment_.index() + 1;
    try {
      Segment segment = Segment::open(directory_, next, options_.payload->id, true);
      if (!segment) {
        error_ = segment_path(directory_, next) +
                 " is no longer in tmpfs: the reader fell behind the segments kept; "
                 "read the rest from the archive";
        return false;
      }
      previous_ = std::move(segment_);
      segment_ = std::move(segment);
      sleep_header_.reset();
      offset_ = layout::kHeaderSize;
      return true;
    } catch (const std::exception& e) {
      error_ = e.what();
      return false;
    }
  }

  void open_start() {
    const std::vector<std::uint64_t> indices = segment_indices(directory_);
    if (indices.empty()) return;  // the writer has not started: wait for it
    switch (start_.kind) {
      case StartAt::Kind::kBeginning:
        use(indices.front(), layout::kHeaderSize);
        break;
      case StartAt::Kind::kEnd:
        open_end(indices);
        break;
      case StartAt::Kind::kPosition:
        open_position(indices);
        break;
      case StartAt::Kind::kTime:
        open_time(indices);
        break;
    }
    register_once();
  }

  void register_once() noexcept {
    if (options_.metrics_name.empty() || registration_tried_) return;
    registration_tried_ = true;
    try {
      registration_ = metrics::ReaderRegistration::create(directory_, options_.metrics_name);
    } catch (const std::exception& e) {
      registration_error_ = "reader " + options_.metrics_name + " is not registered (" + e.what() +
                            "): journal top will not show it";
    }
  }

  void use(std::uint64_t index, std::uint64_t offset) {
    segment_ = Segment::open(directory_, index, options_.payload->id);
    sleep_header_.reset();
    offset_ = offset;
  }

  // The segment being written is the oldest unsealed one (a newer, empty one may
  // be prepared for the next roll); start at its commit.
  void open_end(const std::vector<std::uint64_t>& indices) {
    std::uint64_t index = indices.back();
    for (auto it = indices.rbegin() + 1; it != indices.rend(); ++it) {
      Segment candidate = Segment::open(directory_, *it, options_.payload->id);
      if (candidate.is_sealed(candidate.load_commit_acquire())) break;
      index = *it;
    }
    while (true) {
      use(index, layout::kHeaderSize);
      const std::uint64_t commit = segment_.load_commit_acquire();
      if (!segment_.is_sealed(commit)) {
        offset_ = commit;
        return;
      }
      ++index;
    }
  }

  void open_position(const std::vector<std::uint64_t>& indices) {
    const Position p = start_.position;
    if (p.segment < indices.front() || p.segment > indices.back())
      throw JournalError("start position segment=" + std::to_string(p.segment) +
                         " is not in " + directory_ + " (segments " +
                         std::to_string(indices.front()) + ".." +
                         std::to_string(indices.back()) + "): older ones are in the archive");
    use(p.segment, layout::kHeaderSize);
    const std::uint64_t commit = segment_.load_commit_acquire();
    std::uint64_t offset = layout::kHeaderSize;
    // Walk the frames to make sure the position is a record boundary.
    while (offset < p.offset && offset < commit) {
      std::uint32_t size;
      std::memcpy(&size, segment_.data() + offset, sizeof size);
      if (size == layout::kEndOfSegment) break;
      if (size < layout::kMinRecordSize || offset + layout::kSizePrefixSize + size > commit)
        throw JournalError(segment_.path() + " offset=" + std::to_string(offset) +
                           ": broken frame while seeking the start position");
      offset = layout::align_record(offset + layout::kSizePrefixSize + size);
    }
    if (offset != p.offset)
      throw JournalError("start position offset=" + std::to_string(p.offset) +
                         " is not a record boundary of " + segment_.path());
    offset_ = offset;
  }

  // The newest segment whose first record is not after the time, then records
  // before the time are passed over in try_next.
  void open_time(const std::vector<std::uint64_t>& indices) {
    std::uint64_t chosen = indices.front();
    for (auto it = indices.rbegin(); it != indices.rend(); ++it) {
      Segment candidate = Segment::open(directory_, *it, options_.payload->id);
      const std::uint64_t commit = candidate.load_commit_acquire();
      if (commit <= layout::kHeaderSize) continue;
      const std::uint8_t* first = candidate.data() + layout::kHeaderSize;
      std::uint32_t size;
      std::memcpy(&size, first, sizeof size);
      if (size == layout::kEndOfSegment || size < layout::kMinRecordSize ||
          layout::kHeaderSize + layout::kSizePrefixSize + size > commit ||
          !options_.payload->verify(first, layout::kSizePrefixSize + size))
        continue;
      if (options_.payload->timestamp_ns(first) <= start_.time_ns) {
        chosen = *it;
        break;
      }
    }
    use(chosen, layout::kHeaderSize);
    not_before_ns_ = start_.time_ns;
  }

  std::string directory_;
  StartAt start_;
  ReaderOptions options_;
  Segment segment_;
  Segment previous_;  // keeps views into the segment just left valid a while longer
  Mapping sleep_header_;
  std::uint64_t offset_ = 0;
  std::int64_t not_before_ns_ = kNoTime;
  std::uint64_t skipped_ = 0;
  std::string error_;
  bool failed_ = false;
  metrics::ReaderRegistration registration_;
  std::string registration_error_;
  bool registration_tried_ = false;
};

}  // namespace radar
