// radar: tails order-book journals, computes kimchi premiums and executable edges
// live, shows them, and appends every result to a results journal.
//
//   radar --journal DIR [--journal DIR ...] [--results DIR] [options]
//
// See `radar --help` and README.md. Exit status: 0 after a clean run, 1 if a journal
// was corrupt, at start-up or later (reported with file and offset; that journal
// stops, the others go on), 2 for bad arguments or a journal that cannot be opened
// (a --journal path that is a file, or a directory the radar may not read). A
// --journal that does not exist yet is waited for, said once on stderr.
// It registers as a reader of each journal it tails
// (<journal>/readers/radar-<pid>.metrics), so that `journal top` shows its lag, and
// publishes its own figures (books, results, the latest result per pair, per-stream
// updates and times, its latency histogram) in radar.metrics in the results journal
// or at --metrics-file (radar_metrics.hpp), which `journal metrics` serves. A
// journal directory removed and made again by a new writer is followed into its new
// incarnation, said once on stderr. With --metrics-listen HOST:PORT its own metrics
// (radar.metrics: the radar_* families, not the journals') are served over HTTP by a
// child, `journal metrics --radar FILE` (exporter.hpp), started before anything is
// read and stopped on the way out. The summary says how far behind the
// writers the radar fell. The journals are merged in time order; an old journal is
// replayed on its own clock (ReplayClock), its latency not applicable.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <algorithm>
#include <cmath>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "radar_reader/engine.hpp"
#include "radar_reader/exporter.hpp"
#include "radar_reader/histogram.hpp"
#include "radar_reader/idle.hpp"
#include "radar_reader/paths.hpp"
#include "radar_reader/radar_metrics.hpp"
#include "radar_reader/reader.hpp"
#include "radar_reader/venues.hpp"
#include "radar_reader/writer.hpp"

namespace {

static_assert(sizeof(radar::Level) == sizeof(OrderBookData::PriceLevel) &&
                  alignof(radar::Level) <= alignof(OrderBookData::PriceLevel),
              "a journal's level vector is viewed as radar::Level without copying");

std::atomic<bool> stop_requested{false};

extern "C" void request_stop(int) { stop_requested.store(true, std::memory_order_relaxed); }

constexpr const char* kUsage =
    "usage: radar --journal DIR [--journal DIR ...] [options]\n"
    "\n"
    "Tails order-book journals (merged), computes per base asset the kimchi premium\n"
    "and the executable edge for every (KRW venue, USDT venue) pair, shows them live\n"
    "and appends every result to a results journal.\n"
    "\n"
    "options:\n"
    "  --journal DIR          an order-book journal to tail (repeatable, at least one);\n"
    "                         one that does not exist yet is waited for\n"
    "  --results DIR          append every result to this results journal (RDR1)\n"
    "  --start beginning|end  where to start in each journal (default: end)\n"
    "  --notional-krw X       notional of the executable edge in KRW, > 0 (default 10000000)\n"
    "  --fee VENUE=BPS        a venue's taker fee in basis points (repeatable, once per\n"
    "                         venue; default 0); VENUE as the journals name it\n"
    "  --fx RATE              fixed KRW per USDT (> 0) instead of the USDT-KRW books\n"
    "  --stale-ms MS          books older than this are left out, > 0 (default 5000)\n"
    "  --idle spin|yield|backoff|futex  how to wait for new books (default backoff)\n"
    "  --duration S           stop after S seconds (> 0, finite)\n"
    "  --max-records N        stop after N books (a whole number >= 1)\n"
    "  --no-verify            skip the FlatBuffers Verifier (trusted replay only)\n"
    "  --quiet                no live table, only the summary\n"
    "  --metrics-name NAME    reader name in each journal's readers/, and the radar's\n"
    "                         name in its metrics (default radar)\n"
    "  --metrics-file PATH    publish the radar's figures (results per pair, books per\n"
    "                         stream, latency) in PATH for journal metrics; default\n"
    "                         radar.metrics in the --results directory, none without\n"
    "  --no-metrics           neither register as a reader (journal top will not show\n"
    "                         it) nor write radar.metrics\n"
    "  --metrics-listen HOST:PORT  serve the radar's own metrics (radar_*: premiums,\n"
    "                         edges, book ages, latency) over HTTP for Prometheus\n"
    "                         (/metrics), by a child `journal metrics --radar FILE\n"
    "                         --listen HOST:PORT` it starts and stops; its journals,\n"
    "                         and its reads of them, are their exporter's (journal\n"
    "                         metrics or journal collect); :9109 for every\n"
    "                         interface, 127.0.0.1:0 a free port; its URL is said on\n"
    "                         stderr (\"radar: serving http://...\"); needs radar.metrics\n"
    "                         (--results or --metrics-file)\n"
    "  --journal-program PATH the journal program --metrics-listen runs (default:\n"
    "                         journal beside the radar, as a wheel installs them, else\n"
    "                         journal on PATH)\n"
    "  --print-venues         the venue names --fee takes, one a line, and exit\n"
    "  --help                 this text\n"
    "\n"
    "The journals are merged in time order (local_timestamp_ns). Until it reads a book\n"
    "within 1 s of its publication the radar is replaying (an old journal read from its\n"
    "beginning): staleness is then measured on the data clock (the latest\n"
    "local_timestamp_ns read), and the publish-to-observe latency is not applicable;\n"
    "once caught up it is live, measured on the wall clock.\n"
    "\n"
    "exit status: 0 done, 1 a journal was corrupt (said with file and offset; the\n"
    "others are read on) or the results journal failed, 2 bad arguments, a journal\n"
    "that cannot be read (a file, a directory without read permission), or a\n"
    "--metrics-listen that could not be served (no journal program, a port in use).\n";

struct Options {
  std::vector<std::string> journals;
  std::string results;
  radar::StartAt start = radar::StartAt::end();
  radar::EngineConfig engine;
  radar::IdleKind idle = radar::IdleKind::kBackoff;
  double duration_s = 0;
  std::uint64_t max_records = 0;
  bool verify = true;
  bool quiet = false;
  std::string metrics_name = "radar";
  std::string metrics_file;  // --metrics-file, or empty: radar.metrics in --results
  bool no_metrics = false;
  std::string metrics_listen;   // --metrics-listen HOST:PORT, or empty: none served
  std::string journal_program;  // --journal-program PATH, or empty: looked for
  std::vector<std::pair<std::string, double>> fees;  // --fee VENUE=BPS, as given

  // Where radar.metrics goes: --metrics-file, else the results journal; "" for none.
  std::string radar_metrics_path() const {
    if (no_metrics) return {};
    if (!metrics_file.empty()) return metrics_file;
    if (results.empty()) return {};
    return results + "/" + radar::metrics::kRadarMetricsName;
  }
};

// "5", "2.5", "-1": a fee as the user gave it.
std::string bps_text(double bps) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", bps);
  return text;
}

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "radar: %s\n\n%s", message.c_str(), kUsage);
  std::exit(2);
}

// A number given for an option, or exit 2 naming the option and the value: it must
// parse in full, be finite (strtod takes "inf", "nan" and "1e999" as numbers) and lie
// in the option's range, which `range` states for the message. Out-of-range values
// are refused rather than converted: a double beyond an integer's range converted
// to that integer is undefined behaviour ("--duration 1e300" ended the radar at
// once).
double parse_number(const std::string& shown, const char* text, bool (*in_range)(double),
                    const char* range) {
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0') usage_error(shown + ": not a number (" + range + ")");
  if (!std::isfinite(value)) usage_error(shown + ": not a finite number (" + range + ")");
  if (!in_range(value)) usage_error(shown + ": out of range (" + range + ")");
  return value;
}

// Ranges of the numeric options: wide enough for any real use, narrow enough that
// every value converts to what the radar computes with (int64 ns, steady_clock).
constexpr double kMaxDurationS = 1e9;          // ~31 years; 1e18 ns < INT64_MAX
constexpr double kMaxStaleMs = 9e12;           // ~285 years; 9e18 ns < INT64_MAX
constexpr double kMaxNotionalKrw = 1e15;       // a thousand trillion KRW
constexpr double kMaxFxKrwPerUsdt = 1e9;
constexpr double kFeeLimitBps = 1e4;           // 10,000 bps would take the whole trade

// A whole number of books from 1 on, digits only ("1.5", "-5", "1e6" refused).
std::uint64_t parse_count(const std::string& option, const char* text) {
  const std::string shown = option + " " + text;
  const char* range = "a whole number of books, 1 to 18446744073709551615";
  if (*text < '0' || *text > '9') usage_error(shown + ": not a whole number (" + range + ")");
  errno = 0;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (*end != '\0') usage_error(shown + ": not a whole number (" + range + ")");
  if (errno == ERANGE || value == 0) usage_error(shown + ": out of range (" + range + ")");
  return value;
}

// parse_number for `option text`, named so in its message.
double option_number(const std::string& option, const char* text, bool (*in_range)(double),
                     const char* range) {
  return parse_number(option + " " + text, text, in_range, range);
}

// --start beginning|end.
radar::StartAt parse_start(const std::string& where) {
  if (where == "beginning") return radar::StartAt::beginning();
  if (where == "end") return radar::StartAt::end();
  usage_error("--start " + where + ": beginning or end");
}

// --fee VENUE=BPS: a venue the journals name, a fee in range, once per venue.
void add_fee(Options& options, const std::string& spec) {
  const auto equals = spec.find('=');
  if (equals == std::string::npos || equals == 0)
    usage_error("--fee " + spec + ": expected VENUE=BPS, e.g. upbit=5");
  const std::string venue = spec.substr(0, equals);
  if (!radar::known_venue(venue)) {
    const std::string_view nearest = radar::nearest_venue(venue);
    usage_error("--fee " + spec + ": " + venue + " is not a venue the journals use (" +
                radar::known_venues_text() + ")" +
                (nearest.empty() ? "" : "; did you mean " + std::string(nearest) + "?"));
  }
  const double bps = parse_number(
      "--fee " + spec, spec.c_str() + equals + 1,
      [](double x) { return x > -kFeeLimitBps && x < kFeeLimitBps; },
      "bps, more than -10000 (a rebate) and less than 10000");
  if (const auto given = options.engine.taker_fee_bps.find(venue);
      given != options.engine.taker_fee_bps.end())
    usage_error("--fee " + spec + ": " + venue + "'s fee was given already (" +
                bps_text(given->second) + ")");
  options.engine.taker_fee_bps[venue] = bps;
  options.fees.emplace_back(venue, bps);
}

// The command line, or exit: 0 after --help or --print-venues, 2 (usage_error) for
// anything not understood or out of range.
Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--print-venues") {
      for (const std::string_view venue : radar::kKnownVenues)
        std::printf("%.*s\n", static_cast<int>(venue.size()), venue.data());
      std::exit(0);
    } else if (arg == "--journal") {
      const std::string journal = value();
      if (journal.empty()) usage_error("--journal \"\": give a journal directory");
      if (std::find(options.journals.begin(), options.journals.end(), journal) !=
          options.journals.end())
        usage_error("--journal " + journal + " given twice: each book would count twice");
      options.journals.push_back(journal);
    } else if (arg == "--results") {
      options.results = value();
    } else if (arg == "--start") {
      options.start = parse_start(value());
    } else if (arg == "--notional-krw") {
      options.engine.notional_krw = option_number(
          arg, value(), [](double x) { return x > 0 && x <= kMaxNotionalKrw; },
          "KRW, more than 0 and at most 1e15");
    } else if (arg == "--fee") {
      add_fee(options, value());
    } else if (arg == "--fx") {
      options.engine.fixed_fx = option_number(
          arg, value(), [](double x) { return x > 0 && x <= kMaxFxKrwPerUsdt; },
          "KRW per USDT, more than 0 and at most 1e9");
    } else if (arg == "--stale-ms") {
      const double ms = option_number(
          arg, value(), [](double x) { return x > 0 && x <= kMaxStaleMs; },
          "milliseconds, more than 0 and at most 9e12, about 285 years");
      options.engine.stale_ns = static_cast<std::int64_t>(ms * 1e6);
    } else if (arg == "--idle") {
      const std::string kind = value();
      if (!radar::parse_idle(kind, options.idle))
        usage_error("--idle " + kind + ": spin, yield, backoff or futex");
    } else if (arg == "--duration") {
      options.duration_s = option_number(
          arg, value(), [](double x) { return x > 0 && x <= kMaxDurationS; },
          "seconds, more than 0 and at most 1e9, about 31 years");
    } else if (arg == "--max-records") {
      options.max_records = parse_count(arg, value());
    } else if (arg == "--no-verify") {
      options.verify = false;
    } else if (arg == "--metrics-name") {
      options.metrics_name = value();
      if (!radar::metrics::valid_reader_name(options.metrics_name))
        usage_error("--metrics-name " + options.metrics_name +
                    ": 1..32 letters, digits, '_', '.' or '-'");
    } else if (arg == "--metrics-file") {
      options.metrics_file = value();
      if (options.metrics_file.empty())
        usage_error("--metrics-file \"\": give a file's path (or --no-metrics)");
    } else if (arg == "--no-metrics") {
      options.no_metrics = true;
    } else if (arg == "--metrics-listen") {
      options.metrics_listen = value();
      if (options.metrics_listen.empty())
        usage_error("--metrics-listen \"\": give HOST:PORT, e.g. 127.0.0.1:9109 or :9109");
    } else if (arg == "--journal-program") {
      options.journal_program = value();
      if (options.journal_program.empty())
        usage_error("--journal-program \"\": give the journal program's path");
    } else if (arg == "--quiet") {
      options.quiet = true;
    } else {
      usage_error("unknown argument " + arg);
    }
  }
  if (options.journals.empty()) usage_error("at least one --journal DIR is needed");
  if (options.no_metrics && !options.metrics_file.empty())
    usage_error("--metrics-file " + options.metrics_file +
                " and --no-metrics: give one or the other");
  if (!options.metrics_listen.empty()) {
    if (options.no_metrics)
      usage_error("--metrics-listen " + options.metrics_listen +
                  " serves the radar's metrics, which --no-metrics turns off: give one or the "
                  "other");
    if (options.radar_metrics_path().empty())
      usage_error("--metrics-listen " + options.metrics_listen +
                  " serves the radar's radar.metrics: give --results DIR (it is written "
                  "there) or --metrics-file PATH");
  } else if (!options.journal_program.empty()) {
    usage_error("--journal-program " + options.journal_program +
                " is the program --metrics-listen runs: give --metrics-listen HOST:PORT too");
  }
  return options;
}

// What the radar makes of a --journal path before it reads anything. A path that
// does not exist is waited for (a journal may not exist yet: its writer creates it,
// missing parents included), and said so once. A path that exists but can never be
// a journal it can read (a file, a directory it may not list or search) is refused
// at once: waiting on it would only end in "0 books".
struct JournalPath {
  bool missing = false;  // not there yet: wait for its writer
  std::string problem;   // why it can never be read (empty: fine)
};

JournalPath check_journal_path(const std::string& path) {
  // Records under a directory another user controls could be planted (paths.hpp).
  if (std::string problem = radar::untrusted_path_problem(path); !problem.empty())
    return {false, problem};
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    const int error = errno;
    if (error == ENOENT) return {true, {}};
    if (error == ENOTDIR)
      return {false, "a part of the path is a file, not a directory: no journal can be created "
                     "there"};
    return {false, std::string("cannot be looked at (") + std::strerror(error) + ")"};
  }
  if (!S_ISDIR(info.st_mode)) {
    const char* kind = S_ISREG(info.st_mode) ? "a regular file" : "not a directory";
    return {false, std::string("is ") + kind +
                       ": a journal is a directory of segment files (00000000.journal, ...); "
                       "give the directory its writer was given"};
  }
  DIR* listing = ::opendir(path.c_str());
  if (listing == nullptr)
    return {false, std::string("is a directory the radar cannot read (") + std::strerror(errno) +
                       "): it could never find its segments"};
  ::closedir(listing);
  if (::access(path.c_str(), X_OK) != 0)
    return {false, std::string("is a directory the radar cannot search (") +
                       std::strerror(errno) + "): it could never open its segments"};
  return {};
}

// Encodes a Result as schema/radar.fbs and appends it; the builder is reused.
class ResultsJournal {
 public:
  explicit ResultsJournal(const std::string& directory)
      : writer_(directory, radar::layout::kRadarResultPayloadId) {}

  void append(const radar::Result& r) {
    builder_.Clear();
    const auto base = builder_.CreateString(r.base);
    const auto krw = builder_.CreateString(r.krw_exchange);
    const auto usdt = builder_.CreateString(r.usdt_exchange);
    const auto buy = builder_.CreateString(r.buy_exchange);
    const auto sell = builder_.CreateString(r.sell_exchange);
    RadarData::RadarResultBuilder result(builder_);
    result.add_timestamp_ns(r.timestamp_ns);
    result.add_base(base);
    result.add_krw_exchange(krw);
    result.add_usdt_exchange(usdt);
    result.add_fx(r.fx);
    result.add_kimchi_premium(r.kimchi_premium);
    result.add_buy_exchange(buy);
    result.add_sell_exchange(sell);
    result.add_edge_bps(r.edge_bps);
    result.add_fill_base_quantity(r.fill_base_quantity);
    result.add_stale(r.stale);
    result.add_source_local_timestamp_ns(r.source_local_timestamp_ns);
    result.add_notional_krw(r.notional_krw);
    RadarData::FinishSizePrefixedRadarResultBuffer(builder_, result.Finish());
    writer_.append(builder_.GetBufferPointer(), builder_.GetSize());
    ++appended_;
  }

  std::uint64_t appended() const { return appended_; }

 private:
  radar::JournalWriter writer_;
  flatbuffers::FlatBufferBuilder builder_{512};
  std::uint64_t appended_ = 0;
};

// Per (venue, symbol) stream: books seen, and sequence numbers that went backwards
// or repeated (0 means the venue has none, as Upbit and Bithumb). A desk has tens of
// streams: a linear scan comparing short names beats a map keyed by strings here.
class StreamStats {
 public:
  struct Stream {
    std::string exchange;
    std::string symbol;
    std::uint64_t updates = 0;
    std::uint64_t out_of_order = 0;
    std::int64_t last_sequence = 0;
    bool has_sequence = false;
    // Its slot in radar.metrics, claimed on its first book (the lookup above finds
    // it with the stream: no second one per book).
    bool metrics_claimed = false;
    radar::metrics::RadarMetrics::StreamSlot metrics;
  };

  // The stream of this book, counted.
  Stream& see(std::string_view exchange, std::string_view symbol, std::int64_t sequence) {
    Stream& stream = find(exchange, symbol);
    ++stream.updates;
    if (sequence == 0) return stream;
    if (stream.has_sequence && sequence <= stream.last_sequence) ++stream.out_of_order;
    else stream.last_sequence = sequence;
    stream.has_sequence = true;
    return stream;
  }

  // Books per venue, in name order, and the total out of order.
  std::map<std::string, std::uint64_t> updates_per_venue() const {
    std::map<std::string, std::uint64_t> venues;
    for (const Stream& stream : streams_) venues[stream.exchange] += stream.updates;
    return venues;
  }
  std::uint64_t out_of_order() const {
    std::uint64_t total = 0;
    for (const Stream& stream : streams_) total += stream.out_of_order;
    return total;
  }

 private:
  Stream& find(std::string_view exchange, std::string_view symbol) {
    for (Stream& stream : streams_)
      if (stream.symbol == symbol && stream.exchange == exchange) return stream;
    Stream& added = streams_.emplace_back();
    added.exchange = std::string(exchange);
    added.symbol = std::string(symbol);
    return added;
  }

  std::vector<Stream> streams_;
};

// "47,806"
std::string with_commas(std::uint64_t value) {
  std::string digits = std::to_string(value);
  for (std::size_t at = digits.size(); at > 3; at -= 3) digits.insert(at - 3, 1, ',');
  return digits;
}

// "12 us", "3.4 ms", "1.02 s", "2.5 min", "1.0 h", "3.2 days"
std::string duration_text(std::int64_t ns) {
  char text[32];
  const double value = static_cast<double>(ns);
  if (ns < 1'000'000) std::snprintf(text, sizeof text, "%.0f us", value / 1e3);
  else if (ns < 1'000'000'000) std::snprintf(text, sizeof text, "%.1f ms", value / 1e6);
  else if (ns < 60'000'000'000) std::snprintf(text, sizeof text, "%.2f s", value / 1e9);
  else if (ns < 3'600'000'000'000) std::snprintf(text, sizeof text, "%.1f min", value / 6e10);
  else if (ns < 86'400'000'000'000) std::snprintf(text, sizeof text, "%.1f h", value / 3.6e12);
  else std::snprintf(text, sizeof text, "%.1f days", value / 8.64e13);
  return text;
}

// How far behind the writers the radar fell. In time: the age of the oldest unread
// book, which is the book just read (it was the oldest unread until then), taken on
// every book from the age the latency histogram gets anyway: one comparison. In
// records: every kBacklogSampleEvery books, the committed bytes of that journal's
// segment not read yet, over the frame size of the book just read (books of one
// feed are about the same size): an estimate, and only a floor ("+") when the
// writer had moved on to a later segment.
class LagTracker {
 public:
  static constexpr std::uint64_t kBacklogSampleEvery = 256;
  // A book this old when read means the radar fell behind; below, the noise of
  // idling (a futex wait's timeout is 50 ms). Not a backlog in records: a writer's
  // batch is committed at once, and read at once.
  static constexpr std::int64_t kFellBehindNs = 100'000'000;

  void book(std::int64_t age_ns, std::int64_t now_ns) {
    if (age_ns <= max_age_ns_) return;
    max_age_ns_ = age_ns;
    max_age_at_ns_ = now_ns;
  }

  void sample_backlog(const radar::JournalReader& reader, std::uint32_t record_size) {
    const std::uint64_t frame = radar::layout::align_record(record_size);
    const std::uint64_t records = reader.lag_estimate() / (frame ? frame : 1);
    if (records < max_backlog_) return;
    max_backlog_ = records;
    backlog_is_floor_ = reader.segment_sealed_estimate();
  }

  // "fell behind: max lag ~47,806 records / 1.02 s at 12:00:01 UTC", or "never
  // fell behind (max lag ~3 records / 12 us)".
  std::string summary() const {
    const std::string lag = "max lag ~" + with_commas(max_backlog_) +
                            (backlog_is_floor_ ? "+" : "") + " records / " +
                            duration_text(max_age_ns_);
    if (max_age_ns_ < kFellBehindNs) return "never fell behind (" + lag + ")";
    return "fell behind: " + lag + " at " + radar::utc_text(max_age_at_ns_, false);
  }

 private:
  std::int64_t max_age_ns_ = 0;
  std::int64_t max_age_at_ns_ = 0;
  std::uint64_t max_backlog_ = 0;
  bool backlog_is_floor_ = false;
};

// Replay. A book read long after it was published (an old journal read from its
// beginning, a backlog the radar started behind) says nothing about the radar's
// latency, and judging its staleness on the wall clock marks every pair of an
// hour-old journal stale. So until the radar first reads a book within
// kLiveWithinNs of its publication it is *replaying*: staleness is measured on the
// data clock (the latest local_timestamp_ns read: the journals are merged in time
// order, so this is the replay's "now"), and the books are counted apart from the
// latency histogram and the lag. Once it has caught up it is live for good: a live
// radar that falls behind later must see that in its latency and its "fell behind"
// line, not have it hidden as a replay. A radar reading live books from the start
// (--start end, or a journal written as it reads) is live from its first book:
// unchanged.
class ReplayClock {
 public:
  static constexpr std::int64_t kLiveWithinNs = 1'000'000'000;

  // Takes a book read at now_ns; true while replaying (the book is a replayed one).
  bool replayed(std::int64_t published_ns, std::int64_t now_ns) {
    if (live_) return false;
    const std::int64_t age = now_ns - published_ns;
    if (age <= kLiveWithinNs) {
      live_ = true;
      return false;
    }
    if (books_ == 0 || published_ns > clock_ns_) clock_ns_ = published_ns;
    if (books_ == 0 || age < min_age_ns_) min_age_ns_ = age;
    if (books_ == 0 || age > max_age_ns_) max_age_ns_ = age;
    ++books_;
    return true;
  }

  bool live() const { return live_; }
  // The replay's "now": the latest local_timestamp_ns read (0 before any book).
  std::int64_t clock_ns() const { return clock_ns_; }
  std::uint64_t books() const { return books_; }

  // "read 1.0 h after they were published", "read 1.2 h to 58.3 min after ...".
  std::string ages_text() const {
    const std::string oldest = duration_text(max_age_ns_);
    const std::string newest = duration_text(min_age_ns_);
    return "read " + (oldest == newest ? oldest : oldest + " to " + newest) +
           " after they were published";
  }

 private:
  bool live_ = false;
  std::int64_t clock_ns_ = 0;
  std::int64_t min_age_ns_ = 0;
  std::int64_t max_age_ns_ = 0;
  std::uint64_t books_ = 0;
};

// "10,000,000" for a whole number of KRW, else as given ("2.5e+06", "1234.5").
std::string amount_text(double value) {
  if (value >= 0 && value < 1e15 && value == std::floor(value))
    return with_commas(static_cast<std::uint64_t>(value));
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

// The live view: the latest result per (base, KRW venue, USDT venue). On a
// terminal it is redrawn in place: the settings in use (fees, notional, FX,
// staleness), then one row per pair, every column with its unit, a value not
// computed (no FX yet, a stale leg, no depth) shown as "-", never "nan", and why
// at the end of the row (STALE, no FX). "age ms" is the age of the older of the
// pair's two books, on the wall clock (the replay's while replaying). Otherwise
// one line per change, under the same header printed once, the time first.
class Table {
 public:
  Table(bool terminal, bool lines, const Options& options)
      : terminal_(terminal), lines_(lines), settings_(settings_text(options)) {}

  // The header of the line-per-change output, at start-up.
  void start() const {
    if (!lines_) return;
    std::printf("%s%-19s %s\n", settings_.c_str(), "time (ns)", columns().c_str());
    std::fflush(stdout);
  }

  // clock_ns: the clock ages are measured on (the wall clock, or the replay's).
  void update(const radar::Result& r, std::int64_t clock_ns) {
    // The names are views into the engine (it outlives the table).
    const std::string key = std::string(r.base) + ' ' + std::string(r.krw_exchange) + ' ' +
                            std::string(r.usdt_exchange);
    const auto [at, added] = rows_.try_emplace(key);
    radar::Result& row = at->second;
    const bool changed = added || !same(row.kimchi_premium, r.kimchi_premium) ||
                         !same(row.edge_bps, r.edge_bps) || row.stale != r.stale ||
                         !same(row.fx, r.fx);
    row = r;
    if (changed && lines_)
      std::printf("%-19" PRId64 " %s\n", r.timestamp_ns, row_text(r, clock_ns).c_str());
    dirty_ = dirty_ || changed;
  }

  // Whether draw() would redraw now: on a terminal, at most every 100 ms when a
  // row changed, and every second anyway (the ages move on).
  bool due(std::chrono::steady_clock::time_point now) const {
    if (!terminal_) return false;
    const auto since = now - last_draw_;
    return (dirty_ && since >= std::chrono::milliseconds(100)) ||
           (!rows_.empty() && since >= std::chrono::seconds(1));
  }

  // Redraws in place: `status` (books, latency or replay) on top.
  void draw(std::chrono::steady_clock::time_point now, const std::string& status,
            std::int64_t clock_ns) {
    if (!terminal_) return;
    last_draw_ = now;
    dirty_ = false;
    std::printf("\x1b[H\x1b[2J%s\n%s\n%s\n", status.c_str(), settings_.c_str(),
                columns().c_str());
    for (const auto& [key, r] : rows_) std::printf("%s\n", row_text(r, clock_ns).c_str());
    std::fflush(stdout);
  }

 private:
  // NaN == NaN here: a pair that stays without a value has not changed.
  static bool same(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

  // "fees (bps): upbit 5, binance 10" and the other settings, a line each.
  static std::string settings_text(const Options& options) {
    std::string text = "fees (bps): ";
    if (options.fees.empty()) text += "none given (0 for every venue)";
    for (std::size_t i = 0; i < options.fees.size(); ++i)
      text += (i ? ", " : "") + options.fees[i].first + " " + bps_text(options.fees[i].second);
    const radar::EngineConfig& engine = options.engine;
    text += "\nnotional " + amount_text(engine.notional_krw) + " KRW; fx " +
            (engine.fixed_fx ? "fixed at " + amount_text(*engine.fixed_fx) + " KRW/USDT"
                             : std::string("from the USDT-KRW books")) +
            "; books older than " + amount_text(static_cast<double>(engine.stale_ns) / 1e6) +
            " ms are stale\n";
    return text;
  }

  static std::string columns() {
    char text[160];
    std::snprintf(text, sizeof text, "%-6s %-9s %-15s %11s %9s %9s  %-27s %12s %9s", "base",
                  "KRW venue", "USDT venue", "fx KRW/USDT", "premium %", "edge bps",
                  "buy -> sell", "fill (base)", "age ms");
    return text;
  }

  // A number, or "-" when there is none.
  static std::string number(double value, const char* format) {
    if (!std::isfinite(value)) return "-";
    char text[48];
    std::snprintf(text, sizeof text, format, value);
    return text;
  }

  static std::string row_text(const radar::Result& r, std::int64_t clock_ns) {
    const bool filled = !r.buy_exchange.empty();
    const std::string route =
        filled ? std::string(r.buy_exchange) + " -> " + std::string(r.sell_exchange) : "-";
    // The age of the older of the pair's two books.
    const double age_ms = static_cast<double>(clock_ns - r.oldest_leg_local_timestamp_ns) / 1e6;
    char text[256];
    std::snprintf(text, sizeof text, "%-6s %-9s %-15s %11s %9s %9s  %-27s %12s %9s%s",
                  std::string(r.base).c_str(), std::string(r.krw_exchange).c_str(),
                  std::string(r.usdt_exchange).c_str(), number(r.fx, "%.2f").c_str(),
                  number(r.kimchi_premium * 100, "%.3f").c_str(),
                  number(r.edge_bps, "%.1f").c_str(), route.c_str(),
                  filled ? number(r.fill_base_quantity, "%.6g").c_str() : "-",
                  number(age_ms, "%.0f").c_str(),
                  r.stale ? "  STALE" : std::isnan(r.fx) ? "  no FX" : "");
    return text;
  }

  bool terminal_;
  bool lines_;
  std::string settings_;
  bool dirty_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
  std::map<std::string, radar::Result> rows_;
};

radar::BookView view_of(const OrderBookData::OrderBook& book) {
  radar::BookView view;
  auto text = [](const flatbuffers::String* s) {
    return s != nullptr ? s->string_view() : std::string_view{};
  };
  view.exchange = text(book.exchange_name());
  view.symbol = text(book.symbol());
  view.local_timestamp_ns = book.local_timestamp_ns();
  view.timestamp_ms = book.timestamp();
  if (const auto* bids = book.bids()) {
    view.bids = reinterpret_cast<const radar::Level*>(bids->data());
    view.n_bids = bids->size();
  }
  if (const auto* asks = book.asks()) {
    view.asks = reinterpret_cast<const radar::Level*>(asks->data());
    view.n_asks = asks->size();
  }
  return view;
}

// The --journal paths looked at before anything is opened (see JournalPath): per
// journal whether it is waited for, or nullopt when one can never be read (each
// such one said on stderr).
std::optional<std::vector<bool>> check_journal_paths(const std::vector<std::string>& journals) {
  std::vector<bool> missing;
  bool bad_path = false;
  for (const std::string& journal : journals) {
    const JournalPath checked = check_journal_path(journal);
    if (!checked.problem.empty())
      std::fprintf(stderr, "radar: --journal %s: %s\n", journal.c_str(), checked.problem.c_str());
    bad_path = bad_path || !checked.problem.empty();
    missing.push_back(checked.missing);
  }
  if (bad_path) return std::nullopt;
  return missing;
}

// One run of the radar, in the steps main takes: open() the journals, loop() until
// stopped, then the summary(). Its exit status: 1 once a journal was found corrupt
// or the results journal failed, else 0.
class RadarRun {
 public:
  explicit RadarRun(const Options& options)
      : options_(options),
        terminal_(!options.quiet && ::isatty(STDOUT_FILENO)),
        table_(terminal_, !options.quiet && !terminal_, options),
        idler_(options.idle) {}

  // Opens every journal (one found corrupt is said and left out, as one found
  // corrupt later: the others are read), the engine and the results journal, and
  // says which journals are waited for. Throws CorruptJournalError for a corrupt
  // results journal, std::exception for what cannot be opened.
  void open(const std::vector<bool>& missing) {
    radar::ReaderOptions reader_options;
    reader_options.verify = options_.verify;
    reader_options.metrics_name = options_.no_metrics ? "" : options_.metrics_name;
    for (const std::string& journal : options_.journals) {
      try {
        readers_.emplace_back(journal, options_.start, reader_options);
      } catch (const radar::CorruptJournalError& e) {
        std::fprintf(stderr, "radar: corrupt journal, not reading it: %s\n", e.what());
        ++corrupt_;
        status_ = 1;
      }
    }
    engine_.emplace(options_.engine);
    if (!options_.results.empty()) results_.emplace(options_.results);
    // After the results journal: its writer made the directory radar.metrics goes in.
    if (const std::string path = options_.radar_metrics_path(); !path.empty())
      metrics_ = radar::metrics::RadarMetrics::create(path, options_.metrics_name);
    // Waiting is fine, waiting silently is not: a typo in a path looks just like a
    // writer that has not started.
    for (std::size_t i = 0; i < options_.journals.size(); ++i) {
      const std::string& journal = options_.journals[i];
      if (missing[i])
        std::fprintf(stderr, "radar: waiting for %s to be created by its writer\n",
                     journal.c_str());
      else if (radar::segment_indices(journal).empty())
        std::fprintf(stderr, "radar: waiting for the writer of %s: no segment in it yet\n",
                     journal.c_str());
    }
  }

  // Reads the journals merged in time order, computes, shows and appends, until
  // Ctrl-C or SIGTERM, --duration, --max-records, or no journal is left to read.
  void loop() {
    table_.start();
    started_ = std::chrono::steady_clock::now();
    const auto deadline =
        started_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                       std::chrono::duration<double>(options_.duration_s));
    ahead_.resize(readers_.size());
    while (!stop_requested.load(std::memory_order_relaxed)) {
      read_ahead();
      if (const std::size_t next = oldest(); next != kNone) {
        take(next);
      } else {
        if (readers_.empty()) break;
        idle();
      }
      const auto now = std::chrono::steady_clock::now();
      if (options_.duration_s > 0 && now >= deadline) break;
      if (table_.due(now)) table_.draw(now, top_line(), view_clock());
    }
    // The last state stays on the terminal.
    if (terminal_) table_.draw(std::chrono::steady_clock::now(), top_line(), view_clock());
  }

  // Says on stderr what the run read and computed, how far behind it fell, and
  // what it was given that did not apply; returns the exit status.
  int summary() const {
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    std::fflush(stdout);
    print_counts(elapsed);
    print_latency();
    print_notes();
    return status_;
  }

 private:
  // One record read ahead per journal, and the oldest (local_timestamp_ns) taken
  // first: the journals are merged in time order. A replay of several journals must
  // advance them together, or its clock would run ahead of the slower ones and
  // leave their books stale; live, it costs a comparison per journal. A record's
  // view stays valid while its reader is not called again.
  struct ReadAhead {
    radar::RecordView record;
    std::int64_t published_ns = 0;
    bool held = false;
  };
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

  // A record read into every journal's empty place, if it has one; a journal found
  // corrupt is said and stopped (the others go on), and no longer waited on.
  void read_ahead() {
    for (std::size_t i = 0; i < readers_.size(); ++i) {
      if (ahead_[i].held) continue;
      const radar::ReadResult result = readers_[i].try_next(ahead_[i].record);
      if (readers_[i].has_notice())  // a recreated journal followed: say so, once
        std::fprintf(stderr, "radar: %s\n", readers_[i].take_notice().c_str());
      if (result == radar::ReadResult::kEmpty) continue;
      if (result == radar::ReadResult::kError) {
        std::fprintf(stderr, "radar: corrupt journal, stopped reading it: %s\n",
                     readers_[i].error().c_str());
        skipped_ += readers_[i].skipped();
        readers_.erase(readers_.begin() + static_cast<std::ptrdiff_t>(i));
        ahead_.erase(ahead_.begin() + static_cast<std::ptrdiff_t>(i--));
        ++corrupt_;
        status_ = 1;
        continue;
      }
      ahead_[i].held = true;
      ahead_[i].published_ns = ahead_[i].record.orderbook()->local_timestamp_ns();
    }
  }

  // The journal whose record read ahead is the oldest, or kNone if none holds one.
  std::size_t oldest() const {
    std::size_t next = kNone;
    for (std::size_t i = 0; i < ahead_.size(); ++i)
      if (ahead_[i].held && (next == kNone || ahead_[i].published_ns < ahead_[next].published_ns))
        next = i;
    return next;
  }

  // The book read ahead of journal `next`: measured (live) or counted as replayed,
  // given to the engine, its results appended and shown.
  void take(std::size_t next) {
    idle_rounds_ = 0;
    ahead_[next].held = false;
    const radar::RecordView& record = ahead_[next].record;
    const std::int64_t now = radar::realtime_ns();
    const OrderBookData::OrderBook& book = *record.orderbook();
    const bool replayed = replay_.replayed(book.local_timestamp_ns(), now);
    if (!replayed) {
      const std::int64_t age = now - book.local_timestamp_ns();
      latency_.record(age);
      metrics_.observed(age);
      lag_.book(age, now);
      if (records_ % LagTracker::kBacklogSampleEvery == 0)
        lag_.sample_backlog(readers_[next], record.size);
    }
    const radar::BookView view = view_of(book);
    StreamStats::Stream& stream = streams_.see(view.exchange, view.symbol, book.sequence());
    if (metrics_) {
      if (!stream.metrics_claimed) {
        stream.metrics = metrics_.claim_stream(view.exchange, view.symbol);
        stream.metrics_claimed = true;
      }
      metrics_.book(stream.metrics, view.local_timestamp_ns, view.timestamp_ms);
    }
    produced_.clear();
    const std::int64_t clock = replayed ? replay_.clock_ns() : now;
    engine_->update(view, now, clock, produced_);
    for (const radar::Result& r : produced_) {
      append(r);
      if (!options_.quiet) table_.update(r, clock);
    }
    metrics_.results(produced_.data(), produced_.size());
    // A stream or pair radar.metrics has no slot for: said once.
    if (metrics_.has_notice())
      std::fprintf(stderr, "radar: %s\n", metrics_.take_notice().c_str());
    ++records_;
    if (options_.max_records && records_ >= options_.max_records) stop_requested = true;
  }

  // A result to the results journal, if there is one and it has not failed.
  void append(const radar::Result& r) {
    if (!results_) return;
    try {
      results_->append(r);
    } catch (const radar::JournalError& e) {
      // A full tmpfs at a roll: nothing was written; keep computing and showing,
      // but say so and stop appending.
      std::fprintf(stderr, "radar: results journal stopped: %s\n", e.what());
      results_stopped_ = results_->appended();
      results_.reset();
      status_ = 1;
    }
  }

  // Nothing to read in any journal: wait as --idle says.
  void idle() {
    if (idle_rounds_ == 0) {
      // Once per journal: registration is best-effort, the radar reads on.
      for (radar::JournalReader& reader : readers_)
        if (const std::string error = reader.take_registration_error(); !error.empty())
          std::fprintf(stderr, "radar: %s: %s\n", reader.directory().c_str(), error.c_str());
    }
    idler_.idle(readers_, idle_rounds_++);
  }

  // The clock ages are measured on: the wall clock, or the replay's.
  std::int64_t view_clock() const {
    return replay_.live() ? radar::realtime_ns() : replay_.clock_ns();
  }

  // The table's top line: books, and the latency, or how old the replayed books are.
  std::string top_line() const {
    std::string text = "radar  " + with_commas(records_) + " books  ";
    char numbers[96];
    if (latency_.count()) {
      std::snprintf(numbers, sizeof numbers, "latency p50 %.1f us  p99 %.1f us",
                    static_cast<double>(latency_.percentile(0.5)) / 1e3,
                    static_cast<double>(latency_.percentile(0.99)) / 1e3);
      text += numbers;
    }
    if (!replay_.live() && replay_.books())
      text += "replay: data time " + radar::utc_text(replay_.clock_ns()) + ", books " +
              replay_.ages_text() + " (latency n/a)";
    return text;
  }

  // Books, venues, sequence numbers, results, and what verification stopped.
  void print_counts(double elapsed) const {
    std::fprintf(stderr, "\nradar summary: %" PRIu64 " books in %.1f s (%.0f/s), %zu journals\n",
                 records_, elapsed, elapsed > 0 ? static_cast<double>(records_) / elapsed : 0.0,
                 options_.journals.size());
    std::fprintf(stderr, "  updates per venue:");
    for (const auto& [venue, count] : streams_.updates_per_venue())
      std::fprintf(stderr, " %s=%" PRIu64, venue.c_str(), count);
    std::fprintf(stderr, "\n  sequence numbers out of order or repeated (per symbol): %" PRIu64,
                 streams_.out_of_order());
    std::fprintf(stderr, "\n  results: %" PRIu64 " (%" PRIu64 " stale, %" PRIu64
                         " without FX), appended to the results journal: %" PRIu64 "\n",
                 engine_->results(), engine_->stale_results(), engine_->missing_fx(),
                 results_ ? results_->appended() : results_stopped_);
    std::uint64_t skipped = skipped_;
    for (const auto& reader : readers_) skipped += reader.skipped();
    std::fprintf(stderr, "  verify failures: %zu journals stopped, %" PRIu64 " records skipped\n",
                 corrupt_, skipped);
  }

  // Latency is that of live books; books replayed are counted apart (see ReplayClock).
  void print_latency() const {
    if (latency_.count()) {
      std::fprintf(stderr,
                   "  publish-to-observe latency: p50 %.2f us, p99 %.2f us, p99.9 %.2f us, "
                   "max %.2f us (%" PRIu64 " books)\n",
                   static_cast<double>(latency_.percentile(0.5)) / 1e3,
                   static_cast<double>(latency_.percentile(0.99)) / 1e3,
                   static_cast<double>(latency_.percentile(0.999)) / 1e3,
                   static_cast<double>(latency_.max()) / 1e3, latency_.count());
      if (replay_.books())
        std::fprintf(stderr, "  replayed before catching up: %s books %s (latency n/a)\n",
                     with_commas(replay_.books()).c_str(), replay_.ages_text().c_str());
      std::fprintf(stderr, "  %s\n", lag_.summary().c_str());
    } else if (replay_.books()) {
      std::fprintf(stderr, "  publish-to-observe latency: n/a (replay: %s books %s)\n",
                   with_commas(replay_.books()).c_str(), replay_.ages_text().c_str());
    }
  }

  // What was given and did not apply, and journals recreated under the radar.
  void print_notes() const {
    // A journal waited for the whole run: a writer that never started, or a path
    // that is not the one the writer was given.
    for (const auto& reader : readers_)
      if (!reader.started())
        std::fprintf(stderr,
                     "  %s: waited for the whole run, no writer created a segment in it\n",
                     reader.directory().c_str());
    // A fee that applied to nothing: a venue missing from the journals given (or a
    // journal missing from the command line), which the edges it was meant for lack.
    const auto venues_read = streams_.updates_per_venue();
    for (const auto& [venue, bps] : options_.fees)
      if (venues_read.find(venue) == venues_read.end())
        std::fprintf(stderr, "  fee for %s given but no %s book was read\n", venue.c_str(),
                     venue.c_str());
    std::uint64_t incarnations = 0;
    for (const auto& reader : readers_) incarnations += reader.incarnations();
    if (incarnations)
      std::fprintf(stderr, "  journals recreated and followed: %" PRIu64 "\n", incarnations);
  }

  const Options& options_;
  const bool terminal_;
  std::vector<radar::JournalReader> readers_;
  std::optional<radar::Engine> engine_;  // before the table: its rows view into it
  std::optional<ResultsJournal> results_;
  radar::metrics::RadarMetrics metrics_;  // none without --results or --metrics-file
  Table table_;
  radar::Idler idler_;
  std::vector<ReadAhead> ahead_;  // one per reader, erased with it
  std::vector<radar::Result> produced_;
  radar::Histogram latency_;
  LagTracker lag_;
  ReplayClock replay_;
  StreamStats streams_;
  std::chrono::steady_clock::time_point started_{};
  std::uint64_t records_ = 0;
  std::uint64_t skipped_ = 0;          // by readers that have stopped
  std::uint64_t results_stopped_ = 0;  // results appended before a failure stopped them
  std::uint32_t idle_rounds_ = 0;
  std::size_t corrupt_ = 0;  // journals found corrupt, at start-up or later
  int status_ = 0;
};

// --metrics-listen: how long `journal metrics` may take to say it serves (a Python
// start on a busy machine takes a second or two; never reached when it works), and
// to stop once asked.
constexpr std::chrono::seconds kExporterStart{30};
constexpr std::chrono::seconds kExporterStop{10};

// Why `journal metrics` ended before serving, as one line of the radar's: its last
// line on stderr is the reason (the lines before it, a traceback say, are passed on
// as they are), "journal metrics: --listen X: why" said as the radar's option.
void say_refusal(const Options& options, const std::string& said, int status) {
  std::string text = said;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  const std::size_t last = text.rfind('\n');
  const std::string reason = last == std::string::npos ? text : text.substr(last + 1);
  if (last != std::string::npos) std::fprintf(stderr, "%s\n", text.substr(0, last).c_str());
  const std::string own = "journal metrics: --listen ";
  if (reason.rfind(own, 0) == 0) {
    std::fprintf(stderr, "radar: --metrics-listen %s\n", reason.substr(own.size()).c_str());
    return;
  }
  std::fprintf(stderr,
               "radar: --metrics-listen %s: journal metrics ended before serving (%s)%s%s\n",
               options.metrics_listen.c_str(), radar::exporter::status_text(status).c_str(),
               reason.empty() ? "" : ": ", reason.c_str());
}

// The journal program --metrics-listen runs: --journal-program, else the one beside
// the radar, else on PATH. "" once said why there is none (a usage error).
std::string journal_program(const Options& options) {
  if (!options.journal_program.empty()) {
    const std::string problem = radar::exporter::executable_problem(options.journal_program);
    if (problem.empty()) return options.journal_program;
    std::fprintf(stderr,
                 "radar: --journal-program %s: %s: give the journal program (bin/journal in "
                 "the venv orderbook-journal is installed in)\n",
                 options.journal_program.c_str(), problem.c_str());
    return {};
  }
  std::string found = radar::exporter::find_program("journal");
  if (found.empty())
    std::fprintf(stderr,
                 "radar: --metrics-listen %s: no journal program beside the radar (in %s) nor "
                 "on PATH to serve the metrics: activate the venv orderbook-journal is "
                 "installed in, or give --journal-program PATH\n",
                 options.metrics_listen.c_str(), radar::exporter::own_directory().c_str());
  return found;
}

// --metrics-listen: `journal metrics --radar FILE --listen HOST:PORT` started and
// serving, its URL said on stderr: -1. Otherwise the radar's exit status, the reason
// said in one line: 2 when it cannot serve, 0 when the radar was stopped meanwhile.
// Only the radar's own families (radar_*): the journals it tails, with its
// registrations as their reader, are served by their exporter (journal metrics over
// their root, journal collect), so that a dashboard summing writers or readers over
// every target counts each once. The radar's file need not exist yet
// (--allow-missing): the radar makes radar.metrics once this serves.
int start_exporter(const Options& options, radar::exporter::MetricsExporter& exporter) {
  const std::string program = journal_program(options);
  if (program.empty()) return 2;
  // --OPTION=VALUE: a value starting with '-' stays the option's.
  const std::vector<std::string> argv = {
      program, "metrics", "--listen=" + options.metrics_listen, "--allow-missing",
      "--radar=" + options.radar_metrics_path()};
  using How = radar::exporter::MetricsExporter::Started::How;
  radar::exporter::MetricsExporter::Started started;
  try {
    started = exporter.start(argv, kExporterStart, stop_requested);
  } catch (const std::exception& e) {  // no pipe: out of descriptors
    std::fprintf(stderr, "radar: --metrics-listen %s: %s\n", options.metrics_listen.c_str(),
                 e.what());
    return 2;
  }
  switch (started.how) {
    case How::kServing:
      // What it said before serving (a warning, say) is the user's to see too.
      std::fputs(started.stderr_text.c_str(), stderr);
      std::fprintf(stderr, "radar: serving %s (journal metrics, pid %d: %s)\n",
                   started.url.c_str(), static_cast<int>(exporter.pid()), program.c_str());
      return -1;
    case How::kInterrupted:
      return 0;
    case How::kNotStarted:
      std::fprintf(stderr,
                   "radar: --metrics-listen %s: cannot run %s: %s: give the journal program "
                   "with --journal-program PATH\n",
                   options.metrics_listen.c_str(), program.c_str(), started.error.c_str());
      return 2;
    case How::kTimedOut:
      std::fputs(started.stderr_text.c_str(), stderr);
      std::fprintf(stderr,
                   "radar: --metrics-listen %s: %s metrics did not say it was serving within "
                   "%lld s: stopped it\n",
                   options.metrics_listen.c_str(), program.c_str(),
                   static_cast<long long>(kExporterStart.count()));
      return 2;
    case How::kExited:
      say_refusal(options, started.stderr_text, started.status);
      return 2;
  }
  return 2;
}

// --metrics-listen's child stopped (SIGTERM, reaped) on the radar's way out, and
// said if it had ended on its own meanwhile, or ended badly when stopped.
void stop_exporter(radar::exporter::MetricsExporter& exporter) {
  if (exporter.pid() < 0) return;
  const int pid = static_cast<int>(exporter.pid());
  const bool early = exporter.ended_early();
  const int status = exporter.stop(kExporterStop);
  const bool clean = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                     (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
  if (early || !clean)
    std::fprintf(stderr, "radar: journal metrics (pid %d) %s: %s\n", pid,
                 early ? "had ended" : "ended", radar::exporter::status_text(status).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);
  const std::optional<std::vector<bool>> missing = check_journal_paths(options.journals);
  if (!missing) return 2;
  // Declared before the run: on any way out it is stopped after the run is gone.
  radar::exporter::MetricsExporter exporter;
  if (!options.metrics_listen.empty())
    if (const int status = start_exporter(options, exporter); status >= 0) return status;
  RadarRun run(options);
  try {
    run.open(*missing);
  } catch (const radar::CorruptJournalError& e) {
    std::fprintf(stderr, "radar: corrupt results journal: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "radar: %s\n", e.what());
    return 2;
  }
  run.loop();
  stop_exporter(exporter);
  return run.summary();
}
