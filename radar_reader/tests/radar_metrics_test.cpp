// radar.metrics: with --print, "NAME VALUE" lines that tests/test_radar_metrics_layout.py
// compares with journal/_radar_metrics_layout.py; with --buckets, "VALUE BUCKET" lines
// it compares with journal/_metrics_layout.py latency_bucket. Without, the file on
// real files in /dev/shm: created locked with its header, streams and pairs claimed
// and updated, slots beyond capacity counted and said once, a live radar's file
// refused, a dead one's replaced, a link or a foreign file never touched (each with
// the file made unnamed and under a hidden name), no name of another radar's touched,
// and a reader thread that never sees a pair's words from two results.
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "radar_reader/radar_metrics.hpp"

namespace {

namespace fs = std::filesystem;
using namespace radar::metrics;

int print_constants() {
  std::printf("RADAR_METRICS_MAGIC %.8s\n", kRadarMetricsMagic);
  std::printf("RADAR_METRICS_NAME %s\n", kRadarMetricsName);
#define PRINT(name, value) std::printf("%s %llu\n", name, static_cast<unsigned long long>(value))
  PRINT("RADAR_METRICS_VERSION", kRadarMetricsVersion);
  PRINT("HOST_SIZE", kMetricsHostSize);
  PRINT("RADAR_NAME_SIZE", kRadarNameSize);
  PRINT("VENUE_SIZE", kVenueSize);
  PRINT("SYMBOL_SIZE", kSymbolSize);
  PRINT("BASE_SIZE", kBaseSize);
  PRINT("LATENCY_SAMPLE_PERIOD", kRadarLatencySamplePeriod);
  PRINT("LATENCY_BUCKETS", kLatencyBuckets);
  PRINT("DEFAULT_STREAM_CAPACITY", kDefaultStreamCapacity);
  PRINT("DEFAULT_PAIR_CAPACITY", kDefaultPairCapacity);
  PRINT("MAX_CAPACITY", kMaxCapacity);
  PRINT("MAGIC_OFFSET", kMetricsMagicOffset);
  PRINT("VERSION_OFFSET", kMetricsVersionOffset);
  PRINT("FILE_SIZE_OFFSET", kMetricsFileSizeOffset);
  PRINT("PID_OFFSET", kMetricsPidOffset);
  PRINT("LATENCY_SAMPLE_PERIOD_OFFSET", kRadarLatencySamplePeriodOffset);
  PRINT("STARTED_NS_OFFSET", kMetricsStartedNsOffset);
  PRINT("HOST_OFFSET", kMetricsHostOffset);
  PRINT("NAME_OFFSET", kRadarNameOffset);
  PRINT("STREAM_CAPACITY_OFFSET", kStreamCapacityOffset);
  PRINT("PAIR_CAPACITY_OFFSET", kPairCapacityOffset);
  PRINT("LATENCY_BUCKETS_OFFSET", kRadarLatencyBucketsOffset);
  PRINT("BOOKS_TOTAL_OFFSET", kBooksTotalOffset);
  PRINT("RESULTS_TOTAL_OFFSET", kResultsTotalOffset);
  PRINT("STREAM_COUNT_OFFSET", kStreamCountOffset);
  PRINT("PAIR_COUNT_OFFSET", kPairCountOffset);
  PRINT("STREAMS_WITHOUT_SLOT_TOTAL_OFFSET", kStreamsWithoutSlotTotalOffset);
  PRINT("PAIRS_WITHOUT_SLOT_TOTAL_OFFSET", kPairsWithoutSlotTotalOffset);
  PRINT("LATENCY_SUM_NS_OFFSET", kRadarLatencySumNsOffset);
  PRINT("LATENCY_COUNTS_OFFSET", kRadarLatencyCountsOffset);
  PRINT("STREAMS_OFFSET", kRadarStreamsOffset);
  PRINT("STREAM_SLOT_SIZE", kStreamSlotSize);
  PRINT("STREAM_UPDATES_TOTAL_OFFSET", kStreamUpdatesTotalOffset);
  PRINT("STREAM_LAST_LOCAL_NS_OFFSET", kStreamLastLocalNsOffset);
  PRINT("STREAM_LAST_EXCHANGE_MS_OFFSET", kStreamLastExchangeMsOffset);
  PRINT("STREAM_VENUE_OFFSET", kStreamVenueOffset);
  PRINT("STREAM_SYMBOL_OFFSET", kStreamSymbolOffset);
  PRINT("PAIR_SLOT_SIZE", kPairSlotSize);
  PRINT("PAIR_SEQUENCE_OFFSET", kPairSequenceOffset);
  PRINT("PAIR_KIMCHI_PREMIUM_OFFSET", kPairKimchiPremiumOffset);
  PRINT("PAIR_EDGE_BPS_OFFSET", kPairEdgeBpsOffset);
  PRINT("PAIR_FX_OFFSET", kPairFxOffset);
  PRINT("PAIR_FILL_BASE_QUANTITY_OFFSET", kPairFillBaseQuantityOffset);
  PRINT("PAIR_STALE_OFFSET", kPairStaleOffset);
  PRINT("PAIR_UPDATED_NS_OFFSET", kPairUpdatedNsOffset);
  PRINT("PAIR_UPDATES_TOTAL_OFFSET", kPairUpdatesTotalOffset);
  PRINT("PAIR_BASE_OFFSET", kPairBaseOffset);
  PRINT("PAIR_KRW_EXCHANGE_OFFSET", kPairKrwExchangeOffset);
  PRINT("PAIR_USDT_EXCHANGE_OFFSET", kPairUsdtExchangeOffset);
  PRINT("DEFAULT_PAIRS_OFFSET", radar_pairs_offset(kDefaultStreamCapacity));
  PRINT("DEFAULT_FILE_SIZE", radar_metrics_size(kDefaultStreamCapacity, kDefaultPairCapacity));
#undef PRINT
  return 0;
}

// Every value below 4096, then a few around each power of two up to past the last counter.
int print_buckets() {
  std::vector<std::uint64_t> values;
  for (std::uint64_t v = 0; v < 4096; ++v) values.push_back(v);
  for (int bit = 12; bit < 40; ++bit)
    for (const std::int64_t delta : {-3, -1, 0, 1, 5})
      values.push_back((std::uint64_t{1} << bit) + static_cast<std::uint64_t>(delta));
  values.push_back(std::numeric_limits<std::uint64_t>::max() >> 1);
  for (const std::uint64_t v : values)
    std::printf("%llu %zu\n", static_cast<unsigned long long>(v), latency_bucket(v));
  return 0;
}

struct TempDir {
  std::string path;
  TempDir() {
    path = "/dev/shm/radar-metrics-file-test-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter++);
    fs::remove_all(path);
    fs::create_directory(path);
    fs::permissions(path, fs::perms::owner_all);  // 0700, whatever the umask
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file() const { return path + "/" + kRadarMetricsName; }
  static inline int counter = 0;
};

// The whole file, read through a fresh descriptor.
std::vector<std::uint8_t> read_file(const std::string& path) {
  std::vector<std::uint8_t> bytes(fs::file_size(path));
  radar::FileDescriptor fd = radar::FileDescriptor::open(path, O_RDONLY);
  CHECK(::pread(fd.get(), bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
  return bytes;
}

std::uint64_t u64(const std::vector<std::uint8_t>& bytes, std::size_t offset) {
  std::uint64_t word;
  std::memcpy(&word, bytes.data() + offset, sizeof word);
  return word;
}

double f64(const std::vector<std::uint8_t>& bytes, std::size_t offset) {
  double value;
  std::memcpy(&value, bytes.data() + offset, sizeof value);
  return value;
}

std::string text(const std::vector<std::uint8_t>& bytes, std::size_t offset, std::size_t size) {
  const char* start = reinterpret_cast<const char*>(bytes.data() + offset);
  return std::string(start, ::strnlen(start, size));
}

bool throws_with(const std::function<void()>& action, const std::string& expected) {
  try {
    action();
  } catch (const radar::JournalError& e) {
    if (std::string(e.what()).find(expected) != std::string::npos) return true;
    std::fprintf(stderr, "error without \"%s\": %s\n", expected.c_str(), e.what());
    return false;
  }
  return false;
}

// Names that live as long as the test, as an Engine's do.
struct Names {
  std::string btc = "BTC", eth = "ETH", upbit = "upbit", bithumb = "bithumb",
              binance = "binance";
};

radar::Result result_of(const std::string& base, const std::string& krw, const std::string& usdt,
                        double value, std::int64_t at_ns) {
  radar::Result r;
  r.timestamp_ns = at_ns;
  r.base = base;
  r.krw_exchange = krw;
  r.usdt_exchange = usdt;
  r.kimchi_premium = value;
  r.edge_bps = value * 2;
  r.fx = 1400 + value;
  r.fill_base_quantity = value / 10;
  return r;
}

void file_is_created_complete_and_locked(RadarMetrics::Unborn how) {
  TempDir dir;
  RadarMetrics metrics = RadarMetrics::create(dir.file(), "radar-a", {8, 16}, how);
  CHECK(metrics && metrics.path() == dir.file());
  CHECK(reader_alive(dir.file()));  // the lock is held
  const std::vector<std::uint8_t> bytes = read_file(dir.file());
  CHECK(bytes.size() == radar_metrics_size(8, 16));
  RadarMetricsHeader header;
  std::memcpy(&header, bytes.data(), sizeof header);
  CHECK(std::memcmp(header.magic, kRadarMetricsMagic, 8) == 0);
  CHECK(header.metrics_version == kRadarMetricsVersion);
  CHECK(header.file_size == bytes.size());
  CHECK(header.radar_pid == static_cast<std::uint32_t>(::getpid()));
  CHECK(header.latency_sample_period == kRadarLatencySamplePeriod);
  CHECK(header.radar_started_ns == metrics.started_ns() && header.radar_started_ns > 0);
  CHECK(std::string(header.radar_name) == "radar-a");
  CHECK(header.stream_capacity == 8 && header.pair_capacity == 16);
  CHECK(header.latency_buckets == kLatencyBuckets);
  CHECK(header.books_total == 0 && header.stream_count == 0 && header.pair_count == 0);
  struct stat info {};
  CHECK(::stat(dir.file().c_str(), &info) == 0 && (info.st_mode & 0777) == 0600);  // a 0700 dir
  metrics = RadarMetrics{};  // stopped: another in a directory others may read
  fs::permissions(dir.path, fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read |
                                fs::perms::group_exec | fs::perms::others_exec);
  metrics = RadarMetrics::create(dir.file(), "radar-a", {8, 16}, how);
  CHECK(::stat(dir.file().c_str(), &info) == 0 && (info.st_mode & 0777) == 0644);
  for (const auto& entry : fs::directory_iterator(dir.path))  // no temporary left
    CHECK(entry.path().filename() == kRadarMetricsName);
}

void streams_books_and_latency() {
  TempDir dir;
  RadarMetrics metrics = RadarMetrics::create(dir.file(), "radar", {8, 16});
  RadarMetrics::StreamSlot upbit = metrics.claim_stream("upbit", "BTC-KRW");
  RadarMetrics::StreamSlot binance = metrics.claim_stream("binance", "BTC-USDT");
  CHECK(upbit && binance);
  metrics.book(upbit, 1000, 7);
  metrics.book(binance, 2000, 8);
  metrics.book(upbit, 3000, 9);
  metrics.observed(5);
  metrics.observed(1000);
  metrics.observed(-3);  // clocks disagreeing: 0
  const std::vector<std::uint8_t> bytes = read_file(dir.file());
  CHECK(u64(bytes, kBooksTotalOffset) == 3 && u64(bytes, kStreamCountOffset) == 2);
  const std::size_t first = kRadarStreamsOffset, second = first + kStreamSlotSize;
  CHECK(text(bytes, first + kStreamVenueOffset, kVenueSize) == "upbit");
  CHECK(text(bytes, first + kStreamSymbolOffset, kSymbolSize) == "BTC-KRW");
  CHECK(u64(bytes, first + kStreamUpdatesTotalOffset) == 2);
  CHECK(u64(bytes, first + kStreamLastLocalNsOffset) == 3000);
  CHECK(u64(bytes, first + kStreamLastExchangeMsOffset) == 9);
  CHECK(text(bytes, second + kStreamVenueOffset, kVenueSize) == "binance");
  CHECK(u64(bytes, second + kStreamUpdatesTotalOffset) == 1);
  CHECK(u64(bytes, kRadarLatencySumNsOffset) == 1005);
  CHECK(u64(bytes, kRadarLatencyCountsOffset + 8 * 5) == 1);
  CHECK(u64(bytes, kRadarLatencyCountsOffset + 8 * latency_bucket(1000)) == 1);
  CHECK(u64(bytes, kRadarLatencyCountsOffset) == 1);
}

void results_fill_their_pairs_slots() {
  TempDir dir;
  Names names;
  RadarMetrics metrics = RadarMetrics::create(dir.file(), "radar", {8, 16});
  metrics.result(result_of(names.btc, names.upbit, names.binance, 0.01, 100));
  metrics.result(result_of(names.btc, names.bithumb, names.binance, 0.02, 200));
  radar::Result last = result_of(names.btc, names.upbit, names.binance, 0.03, 300);
  last.stale = true;
  last.edge_bps = std::numeric_limits<double>::quiet_NaN();
  metrics.result(last);
  const std::vector<std::uint8_t> bytes = read_file(dir.file());
  CHECK(u64(bytes, kResultsTotalOffset) == 3 && u64(bytes, kPairCountOffset) == 2);
  const std::size_t upbit = radar_pairs_offset(8), bithumb = upbit + kPairSlotSize;
  CHECK(text(bytes, upbit + kPairBaseOffset, kBaseSize) == "BTC");
  CHECK(text(bytes, upbit + kPairKrwExchangeOffset, kVenueSize) == "upbit");
  CHECK(text(bytes, upbit + kPairUsdtExchangeOffset, kVenueSize) == "binance");
  CHECK(u64(bytes, upbit + kPairSequenceOffset) == 4);  // two writes, even
  CHECK(f64(bytes, upbit + kPairKimchiPremiumOffset) == 0.03);
  CHECK(std::isnan(f64(bytes, upbit + kPairEdgeBpsOffset)));
  CHECK(f64(bytes, upbit + kPairFxOffset) == 1400.03);
  CHECK(f64(bytes, upbit + kPairFillBaseQuantityOffset) == 0.003);
  CHECK(u64(bytes, upbit + kPairStaleOffset) == 1);
  CHECK(u64(bytes, upbit + kPairUpdatedNsOffset) == 300);
  CHECK(u64(bytes, upbit + kPairUpdatesTotalOffset) == 2);
  CHECK(text(bytes, bithumb + kPairKrwExchangeOffset, kVenueSize) == "bithumb");
  CHECK(f64(bytes, bithumb + kPairKimchiPremiumOffset) == 0.02);
  CHECK(u64(bytes, bithumb + kPairUpdatesTotalOffset) == 1 && u64(bytes, bithumb) == 2);
}

void slots_beyond_capacity_are_counted_and_said_once() {
  TempDir dir;
  std::vector<std::string> bases;
  for (int i = 0; i < 200; ++i) bases.push_back("B" + std::to_string(i));  // stable names
  Names names;
  RadarMetrics metrics = RadarMetrics::create(dir.file(), "radar", {2, 100});
  CHECK(metrics.claim_stream("upbit", "BTC-KRW") && metrics.claim_stream("upbit", "ETH-KRW"));
  CHECK(!metrics.has_notice());
  RadarMetrics::StreamSlot third = metrics.claim_stream("upbit", "XRP-KRW");
  CHECK(!third);
  CHECK(metrics.has_notice());
  const std::string notice = metrics.take_notice();
  CHECK(notice.find("upbit XRP-KRW: no room left (room for 2 streams)") != std::string::npos);
  CHECK(!metrics.claim_stream("upbit", "SOL-KRW") && !metrics.has_notice());  // once
  metrics.book(third, 1, 1);  // counted in the total only
  // 200 pairs: the table grows past its first size; 100 get slots.
  for (const std::string& base : bases)
    metrics.result(result_of(base, names.upbit, names.binance, 1, 1));
  for (const std::string& base : bases)  // found again, not claimed twice
    metrics.result(result_of(base, names.upbit, names.binance, 2, 2));
  CHECK(metrics.take_notice().find("pair B100 upbit/binance: no room left") != std::string::npos);
  const std::string long_name(33, 'x');
  CHECK(!metrics.claim_stream(long_name, "BTC-KRW"));  // said once already (streams)
  const std::vector<std::uint8_t> bytes = read_file(dir.file());
  CHECK(u64(bytes, kStreamCountOffset) == 2 && u64(bytes, kStreamsWithoutSlotTotalOffset) == 3);
  CHECK(u64(bytes, kBooksTotalOffset) == 1);
  CHECK(u64(bytes, kPairCountOffset) == 100 && u64(bytes, kPairsWithoutSlotTotalOffset) == 100);
  CHECK(u64(bytes, kResultsTotalOffset) == 400);
  const std::size_t last = radar_pairs_offset(2) + 99 * kPairSlotSize;
  CHECK(text(bytes, last + kPairBaseOffset, kBaseSize) == "B99");
  CHECK(u64(bytes, last + kPairUpdatesTotalOffset) == 2 &&
        f64(bytes, last + kPairKimchiPremiumOffset) == 2.0);
}

void long_names_get_no_slot() {
  TempDir dir;
  RadarMetrics metrics = RadarMetrics::create(dir.file(), "radar", {8, 8});
  CHECK(metrics.claim_stream(std::string(32, 'v'), std::string(32, 's')));  // fills the field
  CHECK(!metrics.claim_stream(std::string(33, 'v'), "BTC-KRW"));
  CHECK(metrics.take_notice().find("a name is longer than its 32-byte field") != std::string::npos);
  const std::vector<std::uint8_t> bytes = read_file(dir.file());
  CHECK(text(bytes, kRadarStreamsOffset + kStreamVenueOffset, kVenueSize) == std::string(32, 'v'));
  CHECK(text(bytes, kRadarStreamsOffset + kStreamSymbolOffset, kSymbolSize) == std::string(32, 's'));
}

void live_file_refused_dead_file_replaced(RadarMetrics::Unborn how) {
  TempDir dir;
  struct stat first {}, second {};
  {
    RadarMetrics live = RadarMetrics::create(dir.file(), "radar", {8, 8}, how);
    CHECK(throws_with([&] { RadarMetrics::create(dir.file(), "other", {8, 8}, how); },
                      "belongs to a live radar (pid=" + std::to_string(::getpid())));
    CHECK(live && reader_alive(dir.file()));  // untouched by the attempt
    ::stat(dir.file().c_str(), &first);
  }
  CHECK(fs::exists(dir.file()) && !reader_alive(dir.file()));  // kept, lock free
  RadarMetrics next = RadarMetrics::create(dir.file(), "radar", {8, 8}, how);
  ::stat(dir.file().c_str(), &second);
  CHECK(first.st_ino != second.st_ino && reader_alive(dir.file()));
  // Moved, it still owns the file; the moved-from one owns nothing.
  RadarMetrics moved = std::move(next);
  CHECK(moved && !next && reader_alive(dir.file()));
  for (const auto& entry : fs::directory_iterator(dir.path))  // no temporary left
    CHECK(entry.path().filename() == kRadarMetricsName);
}

void links_and_foreign_files_are_never_touched(RadarMetrics::Unborn how) {
  TempDir dir;
  const std::string target = dir.path + "/target";
  { std::FILE* f = std::fopen(target.c_str(), "w"); std::fputs("keep me", f); std::fclose(f); }
  ::symlink(target.c_str(), dir.file().c_str());
  CHECK(throws_with([&] { RadarMetrics::create(dir.file(), "radar", {}, how); },
                    "is a symbolic link"));
  ::unlink(dir.file().c_str());
  fs::copy_file(target, dir.file());
  CHECK(throws_with([&] { RadarMetrics::create(dir.file(), "radar", {}, how); },
                    "is not a radar's metrics file"));
  CHECK(fs::file_size(dir.file()) == 7 && fs::file_size(target) == 7);
  CHECK(throws_with([&] { RadarMetrics::create(dir.path + "/", "radar"); }, "not a directory"));
  CHECK(throws_with([&] { RadarMetrics::create(dir.path + "/missing/radar.metrics", "radar"); },
                    "directory " + dir.path + "/missing"));
  CHECK(throws_with([&] { RadarMetrics::create(dir.path + "/x.metrics", "bad name"); },
                    "radar name"));
  for (const auto& entry : fs::directory_iterator(dir.path))  // no temporary left
    CHECK(entry.path().filename().string()[0] != '.');
}

void stale_temporary_is_removed() {
  TempDir dir;
  const std::string stale = dir.path + "/." + kRadarMetricsName + ".4000000.creating";
  { radar::FileDescriptor fd = radar::FileDescriptor::open(stale, O_RDWR | O_CREAT, 0600); }
  const timespec old[2] = {{1'000'000'000, 0}, {1'000'000'000, 0}};
  ::utimensat(AT_FDCWD, stale.c_str(), old, 0);
  RadarMetrics metrics = RadarMetrics::create(dir.file(), "radar", {8, 8});
  CHECK(!fs::exists(stale));
}

// The names created in a directory while the radar makes its file, in order
// (inotify): by default none but radar.metrics itself (an O_TMPFILE linked into
// place); with a hidden name, one with 16 random hex digits, removed after.
std::vector<std::string> names_created(const TempDir& dir, RadarMetrics::Unborn how) {
  radar::FileDescriptor watch{::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)};
  CHECK(watch.valid() && ::inotify_add_watch(watch.get(), dir.path.c_str(), IN_CREATE) >= 0);
  { RadarMetrics metrics = RadarMetrics::create(dir.file(), "radar", {8, 8}, how); }
  std::vector<std::string> names;
  alignas(inotify_event) char buffer[4096];
  for (ssize_t got; (got = ::read(watch.get(), buffer, sizeof buffer)) > 0;)
    for (char* at = buffer; at < buffer + got;) {
      const auto* event = reinterpret_cast<const inotify_event*>(at);
      names.emplace_back(event->name);  // NUL padded
      at += sizeof(inotify_event) + event->len;
    }
  fs::remove(dir.file());
  return names;
}

bool is_hidden_name(const std::string& name) {
  const std::string prefix = std::string(".") + kRadarMetricsName + ".", suffix = ".creating";
  if (name.size() != prefix.size() + 16 + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  return name.substr(prefix.size(), 16).find_first_not_of("0123456789abcdef") == std::string::npos;
}

void the_file_has_no_name_before_its_own() {
  TempDir dir;
  CHECK(names_created(dir, RadarMetrics::Unborn::kUnnamedWherePossible) ==
        std::vector<std::string>{kRadarMetricsName});  // /dev/shm: tmpfs has O_TMPFILE
  const std::vector<std::string> first = names_created(dir, RadarMetrics::Unborn::kHiddenName);
  const std::vector<std::string> second = names_created(dir, RadarMetrics::Unborn::kHiddenName);
  CHECK(first.size() == 2 && is_hidden_name(first[0]) && first[1] == kRadarMetricsName);
  CHECK(second.size() == 2 && is_hidden_name(second[0]) && second[0] != first[0]);
}

// A radar in another pid namespace sharing the directory can have this radar's pid,
// and was once given the same hidden name, which this one removed as its own
// leftover. A file of any name the radar did not create is never touched.
void another_radars_file_with_our_pid_is_kept() {
  TempDir dir;
  const std::string theirs =
      dir.path + "/." + kRadarMetricsName + "." + std::to_string(::getpid()) + ".creating";
  radar::FileDescriptor held = radar::FileDescriptor::open(theirs, O_RDWR | O_CREAT, 0600);
  CHECK(::flock(held.get(), LOCK_EX | LOCK_NB) == 0);  // still being created, by them
  struct stat before {}, after {};
  CHECK(::fstat(held.get(), &before) == 0);
  for (const RadarMetrics::Unborn how :
       {RadarMetrics::Unborn::kUnnamedWherePossible, RadarMetrics::Unborn::kHiddenName}) {
    { RadarMetrics metrics = RadarMetrics::create(dir.file(), "radar", {8, 8}, how); }
    CHECK(::stat(theirs.c_str(), &after) == 0 && after.st_ino == before.st_ino);
    fs::remove(dir.file());
  }
}

// A pair's words are all the same number in every result: a reader that validates
// its read with the sequence never sees two numbers.
void seqlock_reader_never_mixes_two_results() {
  TempDir dir;
  Names names;
  RadarMetrics metrics = RadarMetrics::create(dir.file(), "radar", {8, 8});
  metrics.result(result_of(names.btc, names.upbit, names.binance, 0, 0));
  radar::FileDescriptor fd = radar::FileDescriptor::open(dir.file(), O_RDONLY);
  const radar::Mapping view =
      radar::Mapping::map(fd, radar_metrics_size(8, 8), /*writable=*/false, dir.file());
  const auto* slot = reinterpret_cast<const std::uint64_t*>(view.data() + radar_pairs_offset(8));
  const auto* sequence = slot + kPairSequenceOffset / 8;
  std::atomic<bool> done{false};
  std::uint64_t consistent = 0, mixed = 0;
  std::thread reader([&] {
    while (!done.load(std::memory_order_relaxed)) {
      const std::uint64_t begin = radar::atomics::seqlock_read_begin(sequence);
      const std::uint64_t premium =
          radar::atomics::load_word_relaxed(slot + kPairKimchiPremiumOffset / 8);
      const std::uint64_t updated = radar::atomics::load_word_relaxed(slot + kPairUpdatedNsOffset / 8);
      const std::uint64_t updates =
          radar::atomics::load_word_relaxed(slot + kPairUpdatesTotalOffset / 8);
      if (!radar::atomics::seqlock_read_valid(sequence, begin)) continue;
      double value;
      std::memcpy(&value, &premium, sizeof value);
      const bool same = static_cast<std::uint64_t>(value) == updated && updated + 1 == updates;
      ++(same ? consistent : mixed);
    }
  });
  for (int i = 1; i <= 2'000'000; ++i)
    metrics.result(result_of(names.btc, names.upbit, names.binance, i, i));
  done = true;
  reader.join();
  CHECK(mixed == 0);
  CHECK(consistent > 0);
}

void none_does_nothing() {
  RadarMetrics none;
  RadarMetrics::StreamSlot slot = none.claim_stream("upbit", "BTC-KRW");
  none.book(slot, 1, 1);
  none.observed(1);
  Names names;
  none.result(result_of(names.btc, names.upbit, names.binance, 1, 1));
  CHECK(!none && !slot && !none.has_notice());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--print") == 0) return print_constants();
  if (argc > 1 && std::strcmp(argv[1], "--buckets") == 0) return print_buckets();
  for (const RadarMetrics::Unborn how :
       {RadarMetrics::Unborn::kUnnamedWherePossible, RadarMetrics::Unborn::kHiddenName}) {
    file_is_created_complete_and_locked(how);
    live_file_refused_dead_file_replaced(how);
    links_and_foreign_files_are_never_touched(how);
  }
  streams_books_and_latency();
  results_fill_their_pairs_slots();
  slots_beyond_capacity_are_counted_and_said_once();
  long_names_get_no_slot();
  stale_temporary_is_removed();
  the_file_has_no_name_before_its_own();
  another_radars_file_with_our_pid_is_kept();
  seqlock_reader_never_mixes_two_results();
  none_does_nothing();
  TEST_MAIN_END("radar_metrics_test");
}
