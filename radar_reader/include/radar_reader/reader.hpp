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
//
// Incarnations (docs/FORMAT.md): the journal directory may be removed and made
// again by a new writer, which starts at segment 0 with a new incarnation_ns. The
// reader keeps the identity of the file it maps (device, inode, incarnation_ns).
// When a poll finds nothing new, it checks, at most every kIncarnationCheckNs,
// that the segment's path still names that file (one lstat): the writer of an open
// segment never unlinks it and the compactor removes only sealed ones, so if it
// does not, that incarnation is over. The reader then looks (every
// kIncarnationSearchNs) for a segment of another incarnation and goes on at its
// segment 0, offset 4096; so it does too when, at an end marker, segment N+1
// carries another incarnation_ns than N. Each such move is counted
// (incarnations()), said once (take_notice()), and the reader registers again in
// the new directory. Without an archive, a new incarnation whose segment 0 is gone
// already, or an incarnation going on without the segment the reader needs, is a
// gap: kError, never skipped silently. The same check reports what must not read
// as the end of the journal: the file truncated under the reader (touching the
// rest would fault), or, while the file is there, a later segment of its
// incarnation holding records (this one's commit offset was cut short).
// Cost: nothing per record; per empty poll a decrement, and a clock read (vDSO)
// every kPollsPerClockRead polls, or on every poll when polls come slower than
// kSlowPollNs apart (the caller sleeps between them); per check an lstat and a
// directory listing.
#pragma once

#include <time.h>

#include <cstdint>
#include <cstdio>
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
#include "radar_reader/paths.hpp"
#include "radar_reader/segment.hpp"

namespace radar {

// How to check and date a record of one schema (journals hold one payload each).
struct Payload {
  const char (&id)[layout::kPayloadIdSize];  // layout::k...PayloadId
  // The FlatBuffers Verifier on a size-prefixed buffer of `size` bytes.
  bool (*verify)(const std::uint8_t* record, std::size_t size);
  // The record's time in ns (collector or radar clock), for starting at a time.
  std::int64_t (*timestamp_ns)(const std::uint8_t* record);
};

inline const Payload kOrderBookPayload{
    layout::kOrderBookPayloadId,
    [](const std::uint8_t* record, std::size_t size) {
      flatbuffers::Verifier verifier(record, size);
      return OrderBookData::VerifySizePrefixedOrderBookBuffer(verifier);
    },
    [](const std::uint8_t* record) {
      return OrderBookData::GetSizePrefixedOrderBook(record)->local_timestamp_ns();
    }};

inline const Payload kRadarResultPayload{
    layout::kRadarResultPayloadId,
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

// "2024-05-01 12:00:01.123 UTC" for a CLOCK_REALTIME time in ns.
inline std::string utc_text(std::int64_t ns, bool with_date = true) {
  const std::int64_t seconds = ns >= 0 ? ns / 1'000'000'000 : (ns + 1) / 1'000'000'000 - 1;
  const auto millis = static_cast<int>((ns - seconds * 1'000'000'000) / 1'000'000);
  const time_t t = static_cast<time_t>(seconds);
  tm parts{};
  if (::gmtime_r(&t, &parts) == nullptr) return std::to_string(ns) + " ns";
  char text[64];
  if (with_date)
    std::snprintf(text, sizeof text, "%04d-%02d-%02d %02d:%02d:%02d.%03d UTC",
                  parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour,
                  parts.tm_min, parts.tm_sec, millis);
  else
    std::snprintf(text, sizeof text, "%02d:%02d:%02d UTC", parts.tm_hour, parts.tm_min,
                  parts.tm_sec);
  return text;
}

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
        const Watch watch = polled_empty();
        if (watch == Watch::kFollowed) continue;
        return watch == Watch::kError ? ReadResult::kError : ReadResult::kEmpty;
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
        // This incarnation ended here (see advance_segment): wait for the next one.
        const Watch watch = gone_ ? polled_empty() : advance_segment();
        if (watch == Watch::kFollowed) continue;
        return watch == Watch::kError ? ReadResult::kError : ReadResult::kEmpty;
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
  // Times the reader moved on to a new incarnation of its journal directory.
  std::uint64_t incarnations() const { return incarnations_; }
  // What changed that a log should say, once (then empty): the journal was
  // recreated and the reader follows it. has_notice() is one load: poll it freely.
  bool has_notice() const { return !notice_.empty(); }
  std::string take_notice() { return std::exchange(notice_, {}); }

  // Committed bytes not yet read in the current segment; racy by nature.
  std::uint64_t lag_estimate() const {
    if (!segment_) return 0;
    const std::uint64_t commit = segment_.load_commit_acquire();
    return commit > offset_ ? commit - offset_ : 0;
  }
  // Whether the writer has sealed the current segment (it writes a later one):
  // then lag_estimate() is only the part of the lag in this segment. Racy too.
  bool segment_sealed_estimate() const {
    return segment_ && segment_.is_sealed(segment_.load_commit_acquire());
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
        // The path may name another file by now (a recreated journal): never sleep
        // on the commit word of a segment the reader does not read.
        if (identity_of(fd) != segment_.identity()) return false;
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

  // At most this often an idle reader checks that its segment is still at its path.
  static constexpr std::int64_t kIncarnationCheckNs = 100'000'000;
  // Once it is not, at most this often it looks for the journal's next incarnation.
  static constexpr std::int64_t kIncarnationSearchNs = 10'000'000;
  // Empty polls between two clock reads while polls come fast (a spinning caller)...
  static constexpr std::uint32_t kPollsPerClockRead = 256;
  // ...and a clock read on every poll once they come this far apart on average.
  static constexpr std::int64_t kSlowPollNs = 1'000;

 private:
  static constexpr std::int64_t kNoTime = INT64_MIN;

  // What a look at the journal's incarnation found.
  enum class Watch { kSame, kFollowed, kError };

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

  // An empty poll: the heartbeat, and now and then a look at the incarnation. The
  // clock is read every clock_window_ polls: kPollsPerClockRead while they come
  // fast, 1 once they come kSlowPollNs or more apart (then a read is nothing).
  Watch polled_empty() noexcept {
    registration_.polled_empty();
    if (--polls_until_clock_ != 0) return Watch::kSame;
    const std::int64_t now = monotonic_ns();
    const bool slow = now - last_clock_ns_ >= kSlowPollNs * std::int64_t{clock_window_};
    clock_window_ = slow ? 1 : kPollsPerClockRead;
    polls_until_clock_ = clock_window_;
    last_clock_ns_ = now;
    if (now - last_check_ns_ < (gone_ ? kIncarnationSearchNs : kIncarnationCheckNs))
      return Watch::kSame;
    last_check_ns_ = now;
    if (!gone_) {
      // The writer of an open segment never unlinks it, the compactor removes only
      // sealed ones: if its path names another file (or none), the journal
      // directory was removed, and this incarnation is over.
      std::uint64_t size_now = 0;
      switch (segment_.path_state(&size_now)) {
        case Segment::PathState::kSame:
          return check_not_cut_short();
        case Segment::PathState::kTruncated:
          fail("truncated to " + std::to_string(size_now) + " bytes (segment_size=" +
                   std::to_string(segment_.size()) +
                   ") by another process: reading on would fault",
               layout::kSegmentSizeOffset);
          return Watch::kError;
        case Segment::PathState::kGone:
          gone_ = true;
          break;
      }
    }
    return follow_next_incarnation();
  }

  // The open segment being read, still at its path, ends where it must not: its
  // end marker offset below its commit, or a later segment of its incarnation
  // holding records while it is not sealed (the writer seals a segment before it
  // writes into the next): its commit offset was cut short, and the records above
  // it must not read as the end.
  Watch check_not_cut_short() noexcept {
    const std::uint64_t commit = segment_.load_commit_acquire();
    const std::uint64_t marker = atomics::load_end_marker_offset(segment_.data());
    if (marker != 0 && marker + layout::kEndMarkerSize < commit) {
      fail("end_marker_offset=" + std::to_string(marker) + " lies below commit_offset=" +
               std::to_string(commit) + "; run 'journal verify'",
           layout::kEndMarkerOffsetOffset);
      return Watch::kError;
    }
    if (marker > commit) {
      // A writer stores the marker offset equal to its commit, then moves the commit
      // past the marker: an offset beyond the commit is never its doing.
      fail("end_marker_offset=" + std::to_string(marker) + " lies past commit_offset=" +
               std::to_string(commit) +
               ": the commit of a sealed segment was cut short, so the records after it "
               "would be skipped; the segment needs restoring from a copy",
           layout::kCommitOffsetOffset);
      return Watch::kError;
    }
    try {
      for (const std::uint64_t index : segment_indices(directory_)) {
        if (index <= segment_.index()) continue;
        const Segment later = Segment::open(directory_, index, options_.payload->id, true);
        if (!later) continue;
        if (incarnation_stamps_differ(segment_, later)) return Watch::kSame;  // followed later
        // Acquire, pairs with the writer's publish_commit of `later`; the writer
        // sealed ours before that, so a seal is visible to the load after it.
        const std::uint64_t later_commit = later.load_commit_acquire();
        if (later_commit <= layout::kHeaderSize) return Watch::kSame;
        const std::uint64_t ours = segment_.load_commit_acquire();
        if (segment_.is_sealed(ours)) return Watch::kSame;  // it rolled meanwhile
        fail("segment " + std::to_string(segment_.index()) + " is not sealed (commit_offset=" +
                 std::to_string(ours) + ") but segment " + std::to_string(index) +
                 " after it holds records (commit_offset=" + std::to_string(later_commit) +
                 "): its commit offset was cut short, records after it would be skipped; "
                 "run 'journal verify'",
             layout::kCommitOffsetOffset);
        return Watch::kError;
      }
    } catch (const std::exception&) {
      // A later segment that cannot be opened is reported when the reader gets there.
    }
    return Watch::kSame;
  }

  // Goes on at the first segment of another incarnation if the directory has one.
  Watch follow_next_incarnation() noexcept {
    try {
      Segment first = first_of_other_incarnation();
      if (!first) return Watch::kSame;  // not yet: wait for its writer
      follow(std::move(first));
      return Watch::kFollowed;
    } catch (const std::exception& e) {
      error_ = e.what();
      return Watch::kError;
    }
  }

  // Segment 0 of the incarnation that follows the current segment's, once the
  // current one is gone from its path; none while the directory has none (a new
  // writer has not started yet). Throws JournalError when the lowest segment left
  // says that records the reader needs are gone: its incarnation is the current
  // one (the reader fell behind the segments kept, or someone removes files of a
  // live journal), or it is a new incarnation's but not its segment 0 (the
  // compactor removed the first ones before the reader saw them).
  Segment first_of_other_incarnation() const {
    const std::vector<std::uint64_t> indices = segment_indices(directory_);
    if (indices.empty()) return Segment{};
    // A journal made anew: whoever made it must be trusted (paths.hpp).
    if (std::string problem = untrusted_path_problem(directory_); !problem.empty())
      throw JournalError(problem);
    Segment lowest = Segment::open(directory_, indices.front(), options_.payload->id, true);
    if (!lowest || lowest.identity() == segment_.identity()) return Segment{};  // look again
    if (!other_incarnation(segment_, lowest)) {
      if (lowest.incarnation_ns() == 0 || segment_.incarnation_ns() == 0) return Segment{};
      throw JournalError(segment_.path() + " is gone but its incarnation goes on from segment " +
                         std::to_string(lowest.index()) +
                         ": the reader fell behind the segments kept in tmpfs (the rest is in "
                         "the archive), or someone removes files of a live journal");
    }
    if (lowest.index() != 0)
      throw JournalError("journal " + directory_ + " was recreated and its new incarnation "
                         "starts at segment " + std::to_string(lowest.index()) +
                         " in tmpfs: the segments before it went to the archive before this "
                         "reader saw them");
    return lowest;
  }

  // Moves to `first`, the first segment of another incarnation: read from its start.
  void follow(Segment first) {
    const std::int64_t created =
        first.incarnation_ns() != 0 ? first.incarnation_ns() : first.header().created_ns;
    previous_ = std::move(segment_);
    segment_ = std::move(first);
    sleep_header_.reset();
    offset_ = layout::kHeaderSize;
    not_before_ns_ = kNoTime;  // every record of the new incarnation is new
    gone_ = false;
    ++incarnations_;
    notice_ = "journal " + directory_ + " was recreated (new incarnation created at " +
              utc_text(created) + "); following it from segment " +
              std::to_string(segment_.index());
    register_again();
  }

  // At the end marker of the current segment: open N+1, unless it tells that this
  // incarnation is over (then follow the next one, or wait for it: kSame).
  Watch advance_segment() noexcept {
    const std::uint64_t next = segment_.index() + 1;
    try {
      Segment segment = Segment::open(directory_, next, options_.payload->id, true);
      if (segment && !incarnation_stamps_differ(segment_, segment)) {
        previous_ = std::move(segment_);
        segment_ = std::move(segment);
        sleep_header_.reset();
        offset_ = layout::kHeaderSize;
        gone_ = false;
        return Watch::kFollowed;
      }
      // N+1 is of another incarnation, or missing (it existed before the marker):
      // either the directory was recreated, or the compactor removed N+1 already
      // (then N, still at its path, is sealed and kept: the reader fell behind).
      if (segment || segment_.path_state() == Segment::PathState::kGone) {
        if (Segment first = first_of_other_incarnation()) {
          follow(std::move(first));
          return Watch::kFollowed;
        }
        gone_ = true;  // no new writer yet: wait for it
        last_check_ns_ = monotonic_ns();
        return Watch::kSame;
      }
      error_ = segment_path(directory_, next) +
               " is no longer in tmpfs: the reader fell behind the segments kept; "
               "read the rest from the archive";
      return Watch::kError;
    } catch (const std::exception& e) {
      error_ = e.what();
      return Watch::kError;
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

  // The registration lived in the directory that was removed: register in the new
  // one, counters carried on (best-effort, as the first time).
  void register_again() noexcept {
    if (options_.metrics_name.empty()) return;
    const std::uint64_t records = registration_.records();
    const std::int64_t started_ns = registration_.started_ns();
    registration_ = metrics::ReaderRegistration{};  // its file first: the name is free
    try {
      registration_ = metrics::ReaderRegistration::create(directory_, options_.metrics_name,
                                                          started_ns);
      registration_.carry_on(records, incarnations_);
    } catch (const std::exception& e) {
      registration_error_ = "reader " + options_.metrics_name + " is not registered in the " +
                            "recreated journal (" + e.what() + "): journal top will not show it";
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
        throw CorruptJournalError(segment_.path() + " offset=" + std::to_string(offset) +
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
  // Incarnations (see the top of the file).
  std::uint32_t polls_until_clock_ = 1;
  std::uint32_t clock_window_ = 1;
  std::int64_t last_clock_ns_ = 0;
  std::int64_t last_check_ns_ = 0;
  bool gone_ = false;  // the current segment is no longer at its path
  std::uint64_t incarnations_ = 0;
  std::string notice_;
};

}  // namespace radar
