// The radar's own figures in shared memory: radar.metrics (docs/FORMAT.md, "Radar
// metrics"), read by journal/_radar_metrics.py and served by `journal metrics` as the
// radar_* families. journal/_radar_metrics_layout.py mirrors every constant here;
// tests/test_radar_metrics_layout.py checks both against FORMAT.md's tables.
//
//      0 magic "OBJMETRD" | 8 metrics_version u32 | 12 file_size u32       written once,
//     16 radar_pid u32 | 20 latency_sample_period u32 | 24 radar_started_ns   before the file
//     32 radar_host[64] | 96 radar_name[32]                                  has its name
//    128 stream_capacity | 136 pair_capacity | 144 latency_buckets
//    192 books_total | 200 results_total                           every book, every result
//    208 stream_count | 216 pair_count                             a slot claimed (release)
//    224 streams_without_slot_total | 232 pairs_without_slot_total no room, or a long name
//    240 latency_sum_ns | 256 latency_counts[272]                  every live book
//   4096 stream slots, stream_capacity x 128 bytes, slot i at 4096 + 128 i:
//          0 updates_total | 8 last_local_ns | 16 last_exchange_ms     every book of it
//         64 venue[32] | 96 symbol[32]                                 before stream_count
//   4096 + 128 stream_capacity: pair slots, pair_capacity x 192 bytes:
//          0 sequence (odd while written) | 8 kimchi_premium | 16 edge_bps | 24 fx
//         32 fill_base_quantity | 40 stale | 48 updated_ns | 56 updates_total
//         64 base[32] | 96 krw_exchange[32] | 128 usdt_exchange[32]    before pair_count
//
// One owner, the radar, holds an exclusive flock(2) on the file from before it has
// its name until it exits (a free lock: the radar stopped or died; the file stays
// with its last figures). Every word from 128 on is an aligned u64 the radar stores
// with one relaxed 8-byte store (atomics.hpp), doubles as their IEEE-754 bits; a
// reader may see an older set of words, never half of one. A pair's result words are
// written under the slot's sequence lock, so a reader never mixes two results. A
// slot's names are written once, before the count that covers it is published with
// release. Nothing here is read back by the radar: it keeps its own copy of every
// counter and only stores.
//
// Cost on the radar's path (measured with benchmarks/bench_radar.py, README): per
// book a few stores (book(): the stream's slot is the caller's, found with the
// lookup it does anyway), per live book two more (observed()), per result a lookup
// by the names' addresses and nine stores (results()). No system call, no
// allocation except when a stream or pair is first seen.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "radar_reader/atomics.hpp"
#include "radar_reader/engine.hpp"
#include "radar_reader/mapping.hpp"
#include "radar_reader/metrics.hpp"
#include "radar_reader/paths.hpp"
#include "radar_reader/segment.hpp"
#include "radar_reader/writer.hpp"

namespace radar::metrics {

inline constexpr char kRadarMetricsMagic[8] = {'O', 'B', 'J', 'M', 'E', 'T', 'R', 'D'};
inline constexpr std::uint32_t kRadarMetricsVersion = 1;
inline constexpr const char* kRadarMetricsName = "radar.metrics";
inline constexpr std::size_t kRadarNameSize = 32;
inline constexpr std::size_t kVenueSize = 32;
inline constexpr std::size_t kSymbolSize = 32;
inline constexpr std::size_t kBaseSize = 32;
// Every live book is counted in the histogram: cheaper than deciding not to.
inline constexpr std::uint32_t kRadarLatencySamplePeriod = 1;
// A desk's whole universe: Upbit, Bithumb, Binance and Bybit list a few hundred
// markets each. 1024 x 128 + 4096 x 192 bytes: a 900 KiB file.
inline constexpr std::uint32_t kDefaultStreamCapacity = 1024;
inline constexpr std::uint32_t kDefaultPairCapacity = 4096;
inline constexpr std::uint32_t kMaxCapacity = 65536;  // a sanity bound for readers

// The header (the first 128 bytes as the other metrics files').
inline constexpr std::size_t kRadarLatencySamplePeriodOffset = kMetricsPidOffset + 4;
inline constexpr std::size_t kRadarNameOffset = kMetricsHostOffset + kMetricsHostSize;
inline constexpr std::size_t kStreamCapacityOffset = kMetricsCountersOffset;
inline constexpr std::size_t kPairCapacityOffset = kStreamCapacityOffset + 8;
inline constexpr std::size_t kRadarLatencyBucketsOffset = kPairCapacityOffset + 8;
inline constexpr std::size_t kBooksTotalOffset = 192;  // its own cache line
inline constexpr std::size_t kResultsTotalOffset = kBooksTotalOffset + 8;
inline constexpr std::size_t kStreamCountOffset = kResultsTotalOffset + 8;
inline constexpr std::size_t kPairCountOffset = kStreamCountOffset + 8;
inline constexpr std::size_t kStreamsWithoutSlotTotalOffset = kPairCountOffset + 8;
inline constexpr std::size_t kPairsWithoutSlotTotalOffset = kStreamsWithoutSlotTotalOffset + 8;
inline constexpr std::size_t kRadarLatencySumNsOffset = kPairsWithoutSlotTotalOffset + 8;
inline constexpr std::size_t kRadarLatencyCountsOffset = 256;
inline constexpr std::size_t kRadarStreamsOffset = 4096;

// A stream slot (offsets from its start).
inline constexpr std::size_t kStreamSlotSize = 128;
inline constexpr std::size_t kStreamUpdatesTotalOffset = 0;
inline constexpr std::size_t kStreamLastLocalNsOffset = kStreamUpdatesTotalOffset + 8;
inline constexpr std::size_t kStreamLastExchangeMsOffset = kStreamLastLocalNsOffset + 8;
inline constexpr std::size_t kStreamVenueOffset = 64;
inline constexpr std::size_t kStreamSymbolOffset = kStreamVenueOffset + kVenueSize;

// A pair slot (offsets from its start).
inline constexpr std::size_t kPairSlotSize = 192;
inline constexpr std::size_t kPairSequenceOffset = 0;
inline constexpr std::size_t kPairKimchiPremiumOffset = kPairSequenceOffset + 8;
inline constexpr std::size_t kPairEdgeBpsOffset = kPairKimchiPremiumOffset + 8;
inline constexpr std::size_t kPairFxOffset = kPairEdgeBpsOffset + 8;
inline constexpr std::size_t kPairFillBaseQuantityOffset = kPairFxOffset + 8;
inline constexpr std::size_t kPairStaleOffset = kPairFillBaseQuantityOffset + 8;
inline constexpr std::size_t kPairUpdatedNsOffset = kPairStaleOffset + 8;
inline constexpr std::size_t kPairUpdatesTotalOffset = kPairUpdatedNsOffset + 8;
inline constexpr std::size_t kPairBaseOffset = 64;
inline constexpr std::size_t kPairKrwExchangeOffset = kPairBaseOffset + kBaseSize;
inline constexpr std::size_t kPairUsdtExchangeOffset = kPairKrwExchangeOffset + kVenueSize;

// Where the pair slots start, and the file's size, for the capacities in its header.
constexpr std::size_t radar_pairs_offset(std::size_t stream_capacity) {
  return kRadarStreamsOffset + stream_capacity * kStreamSlotSize;
}
constexpr std::size_t radar_metrics_size(std::size_t stream_capacity, std::size_t pair_capacity) {
  return radar_pairs_offset(stream_capacity) + pair_capacity * kPairSlotSize;
}

// The counter of latency_counts that value_ns falls in: the writer's scheme
// (metrics.hpp, journal/_metrics_layout.py latency_bucket): value_ns below 16, then
// 8 sub-buckets per power of two; above kLatencyMaxNs, the last counter.
constexpr std::size_t latency_bucket(std::uint64_t value_ns) noexcept {
  if (value_ns > kLatencyMaxNs) value_ns = kLatencyMaxNs;
  const int bits = value_ns ? 64 - __builtin_clzll(value_ns) : 0;
  const int shift = bits - kLatencySubBucketBits - 1;
  if (shift <= 0) return static_cast<std::size_t>(value_ns);
  return (static_cast<std::size_t>(shift) << kLatencySubBucketBits) +
         static_cast<std::size_t>(value_ns >> shift);
}
static_assert(latency_bucket(kLatencyMaxNs) == kLatencyBuckets - 1);

struct RadarMetricsHeader {
  char magic[sizeof kRadarMetricsMagic];
  std::uint32_t metrics_version;
  std::uint32_t file_size;
  std::uint32_t radar_pid;
  std::uint32_t latency_sample_period;
  std::int64_t radar_started_ns;
  char radar_host[kMetricsHostSize];
  char radar_name[kRadarNameSize];
  std::uint64_t stream_capacity;
  std::uint64_t pair_capacity;
  std::uint64_t latency_buckets;
  std::uint8_t reserved0[kBooksTotalOffset - kRadarLatencyBucketsOffset - 8];
  std::uint64_t books_total;
  std::uint64_t results_total;
  std::uint64_t stream_count;
  std::uint64_t pair_count;
  std::uint64_t streams_without_slot_total;
  std::uint64_t pairs_without_slot_total;
  std::uint64_t latency_sum_ns;
  std::uint8_t reserved1[kRadarLatencyCountsOffset - kRadarLatencySumNsOffset - 8];
  std::uint64_t latency_counts[kLatencyBuckets];
  std::uint8_t reserved2[kRadarStreamsOffset - kRadarLatencyCountsOffset - 8 * kLatencyBuckets];
};
static_assert(sizeof(RadarMetricsHeader) == kRadarStreamsOffset);
static_assert(offsetof(RadarMetricsHeader, metrics_version) == kMetricsVersionOffset);
static_assert(offsetof(RadarMetricsHeader, file_size) == kMetricsFileSizeOffset);
static_assert(offsetof(RadarMetricsHeader, radar_pid) == kMetricsPidOffset);
static_assert(offsetof(RadarMetricsHeader, latency_sample_period) ==
              kRadarLatencySamplePeriodOffset);
static_assert(offsetof(RadarMetricsHeader, radar_started_ns) == kMetricsStartedNsOffset);
static_assert(offsetof(RadarMetricsHeader, radar_host) == kMetricsHostOffset);
static_assert(offsetof(RadarMetricsHeader, radar_name) == kRadarNameOffset);
static_assert(offsetof(RadarMetricsHeader, stream_capacity) == kStreamCapacityOffset);
static_assert(offsetof(RadarMetricsHeader, pair_capacity) == kPairCapacityOffset);
static_assert(offsetof(RadarMetricsHeader, latency_buckets) == kRadarLatencyBucketsOffset);
static_assert(offsetof(RadarMetricsHeader, books_total) == kBooksTotalOffset);
static_assert(offsetof(RadarMetricsHeader, results_total) == kResultsTotalOffset);
static_assert(offsetof(RadarMetricsHeader, stream_count) == kStreamCountOffset);
static_assert(offsetof(RadarMetricsHeader, pair_count) == kPairCountOffset);
static_assert(offsetof(RadarMetricsHeader, streams_without_slot_total) ==
              kStreamsWithoutSlotTotalOffset);
static_assert(offsetof(RadarMetricsHeader, pairs_without_slot_total) ==
              kPairsWithoutSlotTotalOffset);
static_assert(offsetof(RadarMetricsHeader, latency_sum_ns) == kRadarLatencySumNsOffset);
static_assert(offsetof(RadarMetricsHeader, latency_counts) == kRadarLatencyCountsOffset);

struct StreamSlotWords {
  std::uint64_t updates_total;
  std::int64_t last_local_ns;
  std::int64_t last_exchange_ms;
  std::uint8_t reserved[kStreamVenueOffset - kStreamLastExchangeMsOffset - 8];
  char venue[kVenueSize];
  char symbol[kSymbolSize];
};
static_assert(sizeof(StreamSlotWords) == kStreamSlotSize);
static_assert(offsetof(StreamSlotWords, last_local_ns) == kStreamLastLocalNsOffset);
static_assert(offsetof(StreamSlotWords, last_exchange_ms) == kStreamLastExchangeMsOffset);
static_assert(offsetof(StreamSlotWords, venue) == kStreamVenueOffset);
static_assert(offsetof(StreamSlotWords, symbol) == kStreamSymbolOffset);

struct PairSlotWords {
  std::uint64_t sequence;
  std::uint64_t kimchi_premium;  // IEEE-754 bits of a double, as every double here
  std::uint64_t edge_bps;
  std::uint64_t fx;
  std::uint64_t fill_base_quantity;
  std::uint64_t stale;  // 0 or 1
  std::int64_t updated_ns;
  std::uint64_t updates_total;
  char base[kBaseSize];
  char krw_exchange[kVenueSize];
  char usdt_exchange[kVenueSize];
  std::uint8_t reserved[kPairSlotSize - kPairUsdtExchangeOffset - kVenueSize];
};
static_assert(sizeof(PairSlotWords) == kPairSlotSize);
static_assert(offsetof(PairSlotWords, kimchi_premium) == kPairKimchiPremiumOffset);
static_assert(offsetof(PairSlotWords, edge_bps) == kPairEdgeBpsOffset);
static_assert(offsetof(PairSlotWords, fx) == kPairFxOffset);
static_assert(offsetof(PairSlotWords, fill_base_quantity) == kPairFillBaseQuantityOffset);
static_assert(offsetof(PairSlotWords, stale) == kPairStaleOffset);
static_assert(offsetof(PairSlotWords, updated_ns) == kPairUpdatedNsOffset);
static_assert(offsetof(PairSlotWords, updates_total) == kPairUpdatesTotalOffset);
static_assert(offsetof(PairSlotWords, base) == kPairBaseOffset);
static_assert(offsetof(PairSlotWords, krw_exchange) == kPairKrwExchangeOffset);
static_assert(offsetof(PairSlotWords, usdt_exchange) == kPairUsdtExchangeOffset);
static_assert(kRadarStreamsOffset % 64 == 0 && kStreamSlotSize % 64 == 0 &&
                  kPairSlotSize % 64 == 0 && kPairUpdatesTotalOffset + 8 <= 64,
              "slots on cache lines; a pair's result words on one line");

struct RadarCapacity {
  std::uint32_t streams = kDefaultStreamCapacity;
  std::uint32_t pairs = kDefaultPairCapacity;
};

// The radar's radar.metrics: created locked, updated on the radar's path, unmapped
// and unlocked when destroyed (the file stays). A default-constructed (or moved-from)
// RadarMetrics is none: every update does nothing.
class RadarMetrics {
 public:
  // How the file is made before it has its name (create()). The default: unnamed
  // (O_TMPFILE) where the filesystem and /proc allow it, else a hidden name.
  // kHiddenName forces the second way, which tests drive as a filesystem without
  // O_TMPFILE would.
  enum class Unborn { kUnnamedWherePossible, kHiddenName };

  // Where one stream's words are: claimed once per stream with claim_stream(), kept
  // by the caller with its stream and given to every book() of it. An empty slot
  // (no room, a name too long) counts the stream's books in books_total only.
  class StreamSlot {
   public:
    StreamSlot() = default;
    explicit operator bool() const noexcept { return words_ != nullptr; }

   private:
    friend class RadarMetrics;
    explicit StreamSlot(std::uint64_t* words) noexcept : words_(words) {}
    std::uint64_t* words_ = nullptr;
    std::uint64_t updates_ = 0;  // the radar's copy of updates_total
  };

  RadarMetrics() = default;
  RadarMetrics(RadarMetrics&&) noexcept = default;
  RadarMetrics& operator=(RadarMetrics&&) noexcept = default;
  RadarMetrics(const RadarMetrics&) = delete;
  RadarMetrics& operator=(const RadarMetrics&) = delete;
  ~RadarMetrics() = default;  // unmapped, then the descriptor (and the lock) closed

  // Creates `path` for the radar called `name` (its --metrics-name), complete and
  // locked before it has a name (unborn_file()), then linked to its name. An
  // existing file there is replaced only if it is a radar's metrics file whose lock
  // is free (its radar stopped or died). Throws JournalError naming the path and
  // what to do: a live radar's file, a symbolic link or another kind of file at the
  // name, a directory another user controls (paths.hpp), no room in the tmpfs.
  static RadarMetrics create(const std::string& path, const std::string& name,
                             RadarCapacity capacity = {},
                             Unborn how = Unborn::kUnnamedWherePossible) {
    if (!valid_reader_name(name))
      throw JournalError("radar name \"" + name + "\": use 1..32 letters, digits, '_', '.' or '-'");
    if (capacity.streams == 0 || capacity.pairs == 0 || capacity.streams > kMaxCapacity ||
        capacity.pairs > kMaxCapacity)
      throw JournalError("radar metrics capacity streams=" + std::to_string(capacity.streams) +
                         " pairs=" + std::to_string(capacity.pairs) + ": each 1 to " +
                         std::to_string(kMaxCapacity));
    const std::size_t slash = path.rfind('/');
    const std::string directory =
        slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    const std::string file = slash == std::string::npos ? path : path.substr(slash + 1);
    if (file.empty() || file == "." || file == "..")
      throw JournalError("metrics file \"" + path + "\": give a file's path, not a directory");
    if (std::string problem = untrusted_path_problem(directory); !problem.empty())
      throw JournalError("metrics file " + path + ": " + problem);
    FileDescriptor dir{::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (!dir.valid())
      throw JournalError("cannot create metrics file " + path + ": directory " + directory +
                         ": " + errno_text(errno));
    struct stat info {};
    if (::fstat(dir.get(), &info) != 0)
      throw JournalError("cannot look at " + directory + ": " + errno_text(errno));
    // Readable by whoever may read the directory; written by the radar only.
    const mode_t mode = 0600 | (info.st_mode & 0044);

    RadarMetrics metrics;
    metrics.path_ = path;
    metrics.stream_capacity_ = capacity.streams;
    metrics.pair_capacity_ = capacity.pairs;
    const std::size_t size = radar_metrics_size(capacity.streams, capacity.pairs);
    remove_stale_temporaries(dir.get(), file);
    UnbornFile unborn = unborn_file(dir.get(), file, mode, path, how);
    struct Unlink {
      int directory;
      const std::string& name;  // empty: an unnamed file, nothing to remove
      ~Unlink() {  // the hidden name: gone once linked, or failed
        if (!name.empty()) ::unlinkat(directory, name.c_str(), 0);
      }
    } unlink_hidden{dir.get(), unborn.hidden_name};
    FileDescriptor& fd = unborn.fd;
    ::flock(fd.get(), LOCK_EX | LOCK_NB);  // a new file: nobody else holds it
    ::fchmod(fd.get(), mode);              // exactly, whatever the umask
    if (const int error = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size)); error != 0)
      throw JournalError("no room for metrics file " + path + " (" + std::to_string(size) +
                         " bytes): " + errno_text(error));
    const RadarMetricsHeader header = make_header(name, capacity, size);
    if (::pwrite(fd.get(), &header, sizeof header, 0) != static_cast<ssize_t>(sizeof header))
      throw JournalError("cannot write metrics file " + path + ": " + errno_text(errno));
    metrics.map_ = Mapping::map(fd, size, /*writable=*/true, path);
    link_into_place(dir.get(), unborn, file, path);
    metrics.fd_ = std::move(fd);
    metrics.started_ns_ = header.radar_started_ns;
    metrics.pairs_offset_ = radar_pairs_offset(capacity.streams);
    metrics.table_.assign(std::size_t{1} << kInitialTableBits, PairEntry{});
    return metrics;
  }

  explicit operator bool() const noexcept { return static_cast<bool>(map_); }
  const std::string& path() const noexcept { return path_; }
  std::int64_t started_ns() const noexcept { return started_ns_; }
  std::uint32_t stream_capacity() const noexcept { return stream_capacity_; }
  std::uint32_t pair_capacity() const noexcept { return pair_capacity_; }

  // A stream (venue, symbol) the radar reads for the first time: its slot, names
  // written, then stream_count published. Call once per stream; an empty slot when
  // there is no room or a name is longer than its field (counted, and said once:
  // take_notice()).
  [[gnu::noinline]] StreamSlot claim_stream(std::string_view venue, std::string_view symbol) {
    if (!map_) return {};
    const char* why = venue.size() > kVenueSize || symbol.size() > kSymbolSize
                          ? "a name is longer than its 32-byte field"
                      : stream_count_ == stream_capacity_ ? "no room left" : nullptr;
    if (why != nullptr) {
      atomics::store_word_relaxed(word(kStreamsWithoutSlotTotalOffset), ++streams_without_slot_);
      say_once(said_stream_, "stream " + std::string(venue) + " " + std::string(symbol) + ": " +
                                 why + " (room for " + std::to_string(stream_capacity_) +
                                 " streams); it and any other stream without a slot are "
                                 "counted in books_total only, and in "
                                 "streams_without_slot_total");
      return {};
    }
    std::uint8_t* slot = map_.data() + kRadarStreamsOffset + stream_count_ * kStreamSlotSize;
    std::memcpy(slot + kStreamVenueOffset, venue.data(), venue.size());
    std::memcpy(slot + kStreamSymbolOffset, symbol.data(), symbol.size());
    // Pairs with the reader's load of stream_count: the names are complete below it.
    atomics::publish_count_release(word(kStreamCountOffset), ++stream_count_);
    return StreamSlot{reinterpret_cast<std::uint64_t*>(slot)};
  }

  // A book read: books_total, and its stream's updates and times (three independent
  // words: a reader may see the new count with the previous times).
  void book(StreamSlot& slot, std::int64_t local_ns, std::int64_t exchange_ms) noexcept {
    if (!map_) return;
    atomics::store_word_relaxed(word(kBooksTotalOffset), ++books_);
    if (!slot) return;
    std::uint64_t* words = slot.words_;
    atomics::store_word_relaxed(words + kStreamUpdatesTotalOffset / 8, ++slot.updates_);
    atomics::store_word_relaxed(words + kStreamLastLocalNsOffset / 8,
                                static_cast<std::uint64_t>(local_ns));
    atomics::store_word_relaxed(words + kStreamLastExchangeMsOffset / 8,
                                static_cast<std::uint64_t>(exchange_ms));
  }

  // A live book's publish-to-observe latency (a negative one, clocks disagreeing,
  // counts as 0).
  void observed(std::int64_t latency_ns) noexcept {
    if (!map_) return;
    const std::uint64_t value = latency_ns > 0 ? static_cast<std::uint64_t>(latency_ns) : 0;
    const std::size_t bucket = latency_bucket(value);
    atomics::store_word_relaxed(word(kRadarLatencyCountsOffset) + bucket, ++latency_counts_[bucket]);
    latency_sum_ns_ += value;
    atomics::store_word_relaxed(word(kRadarLatencySumNsOffset), latency_sum_ns_);
  }

  // The results of one book: each pair's slot (claimed on the pair's first result)
  // under the slot's sequence lock, then results_total once. A pair is found by the
  // addresses of its names: an Engine's names are interned and never move
  // (engine.hpp), so each pair has one triple of addresses. Precondition: every
  // result comes from one Engine that outlives this object's use of it.
  void results(const Result* first, std::size_t count) {
    if (!map_ || count == 0) return;
    for (const Result* r = first; r != first + count; ++r) store_result(*r);
    results_ += count;
    atomics::store_word_relaxed(word(kResultsTotalOffset), results_);
  }
  void result(const Result& r) { results(&r, 1); }

  // What the radar should say on stderr (a stream or pair without a slot, once per
  // kind), and whether there is any.
  bool has_notice() const noexcept { return !notice_.empty(); }
  std::string take_notice() { return std::exchange(notice_, {}); }

 private:
  void store_result(const Result& r) {
    PairEntry& pair = pair_entry(r);
    std::uint64_t* words = pair.words;
    if (words == nullptr) return;
    // Each write moves the sequence by 2: odd 2n - 1 while the n-th result is
    // stored, even 2n after. Pairs with the reader's first load of the sequence (and
    // its check after the data).
    const std::uint64_t updates = ++pair.updates;
    atomics::seqlock_write_begin(words + kPairSequenceOffset / 8, 2 * updates - 1);
    atomics::store_word_relaxed(words + kPairKimchiPremiumOffset / 8, bits(r.kimchi_premium));
    atomics::store_word_relaxed(words + kPairEdgeBpsOffset / 8, bits(r.edge_bps));
    atomics::store_word_relaxed(words + kPairFxOffset / 8, bits(r.fx));
    atomics::store_word_relaxed(words + kPairFillBaseQuantityOffset / 8, bits(r.fill_base_quantity));
    atomics::store_word_relaxed(words + kPairStaleOffset / 8, r.stale ? 1 : 0);
    atomics::store_word_relaxed(words + kPairUpdatedNsOffset / 8,
                                static_cast<std::uint64_t>(r.timestamp_ns));
    atomics::store_word_relaxed(words + kPairUpdatesTotalOffset / 8, updates);
    atomics::seqlock_write_end(words + kPairSequenceOffset / 8, 2 * updates);
  }

  static constexpr const char* kCreatingSuffix = ".creating";
  static constexpr int kHiddenNameAttempts = 10;
  static constexpr int kLinkAttempts = 10;
  static constexpr int kLockAttempts = 5;
  static constexpr long kLockRetryNs = 10'000'000;  // a lock probe holds it for an instant
  static constexpr std::int64_t kStaleCreatingNs = 60'000'000'000;
  static constexpr unsigned kInitialTableBits = 6;

  // A pair by the addresses of its names, and its slot (none: counted only).
  struct PairEntry {
    std::uint64_t hash = 0;
    const char* base = nullptr;  // nullptr: a free entry of the table
    const char* krw = nullptr;
    const char* usdt = nullptr;
    std::uint64_t* words = nullptr;
    std::uint64_t updates = 0;  // the radar's copy of updates_total (sequence: 2 x it)
  };

  std::uint64_t* word(std::size_t offset) const noexcept {
    return reinterpret_cast<std::uint64_t*>(map_.data() + offset);
  }

  static std::uint64_t bits(double value) noexcept {
    std::uint64_t word;
    std::memcpy(&word, &value, sizeof word);
    return word;
  }

  // The three addresses folded into one word (rotated apart: their low bits
  // differ, their high bits are alike), then one multiplication carries every bit
  // into the top bits the table takes (Fibonacci hashing, as engine.hpp's).
  static std::uint64_t pair_hash(const Result& r) noexcept {
    const auto rotate = [](std::uint64_t word, int by) { return word << by | word >> (64 - by); };
    const std::uint64_t folded = reinterpret_cast<std::uintptr_t>(r.base.data()) ^
                                 rotate(reinterpret_cast<std::uintptr_t>(r.krw_exchange.data()), 21) ^
                                 rotate(reinterpret_cast<std::uintptr_t>(r.usdt_exchange.data()), 42);
    return folded * 0x9E3779B97F4A7C15ULL;
  }

  // The entry of r's pair, made on its first result. Linear probing in a
  // power-of-two table at most half full.
  PairEntry& pair_entry(const Result& r) {
    const std::uint64_t hash = pair_hash(r);
    const std::size_t mask = table_.size() - 1;
    for (std::size_t i = hash >> table_shift_;; i = (i + 1) & mask) {
      PairEntry& entry = table_[i];
      if (entry.base == nullptr) return add_pair(r, hash, i);
      if (entry.base == r.base.data() && entry.krw == r.krw_exchange.data() &&
          entry.usdt == r.usdt_exchange.data())
        return entry;
    }
  }

  // A pair's first result: its entry at free index i (or after growing the table),
  // and its slot. Out of line: once per pair, not on the path of every result.
  [[gnu::noinline]] PairEntry& add_pair(const Result& r, std::uint64_t hash, std::size_t i) {
    if (2 * (pairs_known_ + 1) > table_.size()) {
      grow();
      const std::size_t mask = table_.size() - 1;
      for (i = hash >> table_shift_; table_[i].base != nullptr; i = (i + 1) & mask) {
      }
    }
    ++pairs_known_;
    PairEntry& entry = table_[i];
    entry.hash = hash;
    entry.base = r.base.data();
    entry.krw = r.krw_exchange.data();
    entry.usdt = r.usdt_exchange.data();
    entry.words = claim_pair(r);
    return entry;
  }

  void grow() {
    std::vector<PairEntry> old = std::exchange(table_, std::vector<PairEntry>(2 * table_.size()));
    --table_shift_;
    const std::size_t mask = table_.size() - 1;
    for (const PairEntry& entry : old) {
      if (entry.base == nullptr) continue;
      std::size_t i = entry.hash >> table_shift_;
      while (table_[i].base != nullptr) i = (i + 1) & mask;
      table_[i] = entry;
    }
  }

  // The slot of r's pair: names written, then pair_count published; nullptr (counted
  // and said once) when there is no room or a name does not fit.
  std::uint64_t* claim_pair(const Result& r) {
    const char* why = r.base.size() > kBaseSize || r.krw_exchange.size() > kVenueSize ||
                              r.usdt_exchange.size() > kVenueSize
                          ? "a name is longer than its 32-byte field"
                      : pair_count_ == pair_capacity_ ? "no room left" : nullptr;
    if (why != nullptr) {
      atomics::store_word_relaxed(word(kPairsWithoutSlotTotalOffset), ++pairs_without_slot_);
      say_once(said_pair_, "pair " + std::string(r.base) + " " + std::string(r.krw_exchange) +
                               "/" + std::string(r.usdt_exchange) + ": " + why + " (room for " +
                               std::to_string(pair_capacity_) +
                               " pairs); it and any other pair without a slot are counted in "
                               "results_total only, and in pairs_without_slot_total");
      return nullptr;
    }
    std::uint8_t* slot = map_.data() + pairs_offset_ + pair_count_ * kPairSlotSize;
    std::memcpy(slot + kPairBaseOffset, r.base.data(), r.base.size());
    std::memcpy(slot + kPairKrwExchangeOffset, r.krw_exchange.data(), r.krw_exchange.size());
    std::memcpy(slot + kPairUsdtExchangeOffset, r.usdt_exchange.data(), r.usdt_exchange.size());
    // Pairs with the reader's load of pair_count: the names are complete below it.
    atomics::publish_count_release(word(kPairCountOffset), ++pair_count_);
    return reinterpret_cast<std::uint64_t*>(slot);
  }

  void say_once(bool& said, const std::string& text) {
    if (said) return;
    said = true;
    notice_ += (notice_.empty() ? "" : "\n") + path_ + ": " + text;
  }

  // The first 4096 bytes as written before the file has its name.
  static RadarMetricsHeader make_header(const std::string& name, RadarCapacity capacity,
                                        std::size_t size) {
    RadarMetricsHeader header{};
    std::memcpy(header.magic, kRadarMetricsMagic, sizeof header.magic);
    header.metrics_version = kRadarMetricsVersion;
    header.file_size = static_cast<std::uint32_t>(size);
    header.radar_pid = static_cast<std::uint32_t>(::getpid());
    header.latency_sample_period = kRadarLatencySamplePeriod;
    header.radar_started_ns = realtime_ns();
    ::gethostname(header.radar_host, sizeof header.radar_host - 1);
    std::memcpy(header.radar_name, name.data(), name.size());
    header.stream_capacity = capacity.streams;
    header.pair_capacity = capacity.pairs;
    header.latency_buckets = kLatencyBuckets;
    return header;
  }

  // The file the metrics are built in, before it has its name, and how to link it.
  struct UnbornFile {
    FileDescriptor fd;
    std::string hidden_name;  // empty: unnamed (O_TMPFILE), linked by /proc/self/fd
  };

  // Unnamed where it can be (O_TMPFILE, linked by its /proc/self/fd/N link, which,
  // unlike linkat's AT_EMPTY_PATH, needs no CAP_DAC_READ_SEARCH): no name another
  // process could hold or remove, and a radar that dies before the link leaves
  // nothing. Else (a filesystem without O_TMPFILE, no /proc or one of another pid
  // namespace) a hidden name with 64 random bits, created with O_EXCL and another
  // drawn if it exists: never a name derived from the pid, which radars in two pid
  // namespaces sharing a directory can both have, and never one removed because it
  // exists. Either way the radar locks the file before it has its name.
  static UnbornFile unborn_file(int dir, const std::string& file, mode_t mode,
                                const std::string& path, Unborn how) {
    if (how == Unborn::kUnnamedWherePossible) {
      FileDescriptor fd{::openat(dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode)};
      if (fd.valid() && linkable_by_proc(fd.get())) return {std::move(fd), {}};
      // No O_TMPFILE here (EOPNOTSUPP, EISDIR), or no usable /proc: a hidden name. A
      // permission error comes again below, with the name in the message.
    }
    for (int attempt = 0; attempt < kHiddenNameAttempts; ++attempt) {
      std::string name = "." + file + "." + random_hex() + kCreatingSuffix;
      const int fd = ::openat(dir, name.c_str(),
                              O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
      if (fd >= 0) return {FileDescriptor{fd}, std::move(name)};
      if (errno != EEXIST)
        throw JournalError("cannot create metrics file " + path + " (as " + name + "): " +
                           errno_text(errno) + " (no write permission on its directory?)");
    }
    throw JournalError("cannot create metrics file " + path + ": " +
                       std::to_string(kHiddenNameAttempts) +
                       " random hidden names beside it all existed");
  }

  static std::string proc_fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

  // Whether /proc/self/fd/N is this very file (procfs mounted, of our pid namespace
  // or an ancestor's): then linkat can give it its name.
  static bool linkable_by_proc(int fd) {
    struct stat mine {}, through_proc {};
    return ::fstat(fd, &mine) == 0 && ::stat(proc_fd_path(fd).c_str(), &through_proc) == 0 &&
           FileIdentity::of(mine) == FileIdentity::of(through_proc);
  }

  // 16 hex digits from getrandom(2); where it has nothing yet (early boot), the
  // clock mixed with the pid: O_EXCL still refuses a name that exists.
  static std::string random_hex() {
    std::uint64_t bits = 0;
    if (::getrandom(&bits, sizeof bits, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof bits))
      bits = (static_cast<std::uint64_t>(realtime_ns()) ^ static_cast<std::uint64_t>(::getpid())) *
             0x9E3779B97F4A7C15ULL;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(bits));
    return hex;
  }

  // link(2) fails if the name exists: then the file there is a live radar's (an
  // error), a dead one's (removed, and the link tried again) or not a radar's (an
  // error: never replaced). Two radars starting together: one links, the other
  // finds its file locked.
  static void link_into_place(int dir, const UnbornFile& unborn, const std::string& file,
                              const std::string& path) {
    const bool unnamed = unborn.hidden_name.empty();
    const std::string source = unnamed ? proc_fd_path(unborn.fd.get()) : unborn.hidden_name;
    for (int attempt = 0; attempt < kLinkAttempts; ++attempt) {
      if (::linkat(unnamed ? AT_FDCWD : dir, source.c_str(), dir, file.c_str(),
                   unnamed ? AT_SYMLINK_FOLLOW : 0) == 0)
        return;
      if (errno != EEXIST)
        throw JournalError("cannot create metrics file " + path + ": " + errno_text(errno));
      remove_if_dead(dir, file, path);
    }
    throw JournalError(path + " was replaced " + std::to_string(kLinkAttempts) +
                       " times while this radar created it: is another radar restarting in a "
                       "loop with this metrics file?");
  }

  // Removes the radar metrics file at `file` if its lock is free. The lock is taken
  // on the file first and the name checked to be that file, so a live radar's file
  // that took its place meanwhile is never removed.
  static void remove_if_dead(int dir, const std::string& file, const std::string& path) {
    FileDescriptor there{::openat(dir, file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)};
    if (!there.valid()) {
      if (errno == ENOENT) return;  // gone meanwhile: link again
      if (errno == ELOOP)
        throw JournalError(path + " is a symbolic link: the radar neither follows nor replaces "
                           "it; remove it or give another --metrics-file");
      throw JournalError("cannot open " + path + " to replace it: " + errno_text(errno));
    }
    struct stat mine {};
    char magic[sizeof kRadarMetricsMagic] = {};
    if (::fstat(there.get(), &mine) != 0 || !S_ISREG(mine.st_mode) ||
        ::pread(there.get(), magic, sizeof magic, 0) != static_cast<ssize_t>(sizeof magic) ||
        std::memcmp(magic, kRadarMetricsMagic, sizeof magic) != 0)
      throw JournalError(path + " exists and is not a radar's metrics file (no \"OBJMETRD\" at "
                         "offset 0): the radar does not replace it; remove it or give another "
                         "--metrics-file");
    for (int attempt = 0;; ++attempt) {
      if (::flock(there.get(), LOCK_EX | LOCK_NB) == 0) break;
      if (errno != EWOULDBLOCK)
        throw JournalError("cannot lock " + path + ": " + errno_text(errno));
      if (attempt + 1 == kLockAttempts)
        throw JournalError(path + " belongs to a live radar (" + holder_text(there.get()) +
                           "; it holds the file's lock): one radar per metrics file; give this "
                           "one another --metrics-file, or --no-metrics");
      const timespec pause{0, kLockRetryNs};
      ::nanosleep(&pause, nullptr);
    }
    struct stat named {};
    if (::fstatat(dir, file.c_str(), &named, AT_SYMLINK_NOFOLLOW) != 0) return;  // gone
    if (FileIdentity::of(named) == FileIdentity::of(mine) && ::unlinkat(dir, file.c_str(), 0) != 0)
      throw JournalError("cannot replace " + path + ", the metrics file of a radar that "
                         "stopped: " + errno_text(errno) + " (another user's file?)");
  }

  // "pid=12 host=h name=radar" from a radar metrics file's header, for messages.
  static std::string holder_text(int fd) {
    RadarMetricsHeader header{};
    constexpr std::size_t kIdentity = kRadarNameOffset + kRadarNameSize;
    if (::pread(fd, &header, kIdentity, 0) != static_cast<ssize_t>(kIdentity))
      return "pid unknown";
    header.radar_host[sizeof header.radar_host - 1] = '\0';
    return "pid=" + std::to_string(header.radar_pid) + " host=" + header.radar_host +
           " name=" + std::string(header.radar_name, ::strnlen(header.radar_name, kRadarNameSize));
  }

  // Hidden files of radars that died while creating theirs (where the file could
  // not be unnamed): unlocked and over a minute old.
  static void remove_stale_temporaries(int dir, const std::string& file) {
    const int listing_fd = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (listing_fd < 0) return;
    DIR* listing = ::fdopendir(listing_fd);
    if (listing == nullptr) {
      ::close(listing_fd);
      return;
    }
    const std::string prefix = "." + file + ".";
    const std::string_view suffix = kCreatingSuffix;
    while (const dirent* entry = ::readdir(listing)) {
      const std::string_view name = entry->d_name;
      if (name.size() <= prefix.size() + suffix.size() || name.substr(0, prefix.size()) != prefix ||
          name.substr(name.size() - suffix.size()) != suffix)
        continue;
      FileDescriptor fd{::openat(dir, entry->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)};
      struct stat info {};
      if (!fd.valid() || ::fstat(fd.get(), &info) != 0) continue;
      const std::int64_t modified = std::int64_t{info.st_mtim.tv_sec} * 1'000'000'000 +
                                    info.st_mtim.tv_nsec;
      if (realtime_ns() - modified < kStaleCreatingNs) continue;
      if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) ::unlinkat(dir, entry->d_name, 0);
    }
    ::closedir(listing);
  }

  std::string path_;
  FileDescriptor fd_;  // holds the lock; closed after the mapping goes
  Mapping map_;
  std::int64_t started_ns_ = 0;
  std::uint32_t stream_capacity_ = 0;
  std::uint32_t pair_capacity_ = 0;
  std::size_t pairs_offset_ = 0;
  // The radar's copies of what it stores (it never reads the file back).
  std::uint64_t books_ = 0;
  std::uint64_t results_ = 0;
  std::uint64_t stream_count_ = 0;
  std::uint64_t pair_count_ = 0;
  std::uint64_t streams_without_slot_ = 0;
  std::uint64_t pairs_without_slot_ = 0;
  std::uint64_t latency_sum_ns_ = 0;
  std::array<std::uint64_t, kLatencyBuckets> latency_counts_{};
  // Every pair seen (with a slot or not), by its names' addresses.
  std::vector<PairEntry> table_;
  unsigned table_shift_ = 64 - kInitialTableBits;
  std::size_t pairs_known_ = 0;
  std::string notice_;
  bool said_stream_ = false;
  bool said_pair_ = false;
};

}  // namespace radar::metrics
