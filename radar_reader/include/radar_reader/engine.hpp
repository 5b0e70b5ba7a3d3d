// The radar's calculation engine: latest books in, kimchi premium and executable
// edge per (base asset, KRW venue, USDT venue) out.
//
// Pure computation: no journal, no FlatBuffers, no clock (the caller passes now_ns,
// and optionally the clock staleness is measured on), so every number below can be
// checked by hand in tests/engine_test.cpp.
//
// Definitions
// -----------
// Books. Each update is a BookView of plain memory that may go away after the
// call: the engine copies the latest book per (exchange, symbol), at most
// kMaxLevelsPerSide levels a side. Deeper input is cut to that and counted in
// truncated_books(). Preconditions (the journal writer enforces them): finite
// positive prices, finite non-negative quantities, bids best (highest) first,
// asks best (lowest) first.
//
// Symbols are normalised BASE-QUOTE. A venue is a KRW venue for the books it
// publishes as B-KRW and a USDT venue for those it publishes as B-USDT (a venue
// publishing both is in both roles, and pairs with itself: that is the premium
// between its own KRW and USDT markets). USDT-KRW books are FX books. Any other
// symbol (B-USDC, USDT-USDT, no dash, empty parts) is ignored, counted in
// ignored_updates().
//
// Stale. A book is stale when clock_ns - local_timestamp_ns > stale_ns (strictly).
// clock_ns is now_ns unless the caller passes another clock to update(): the radar
// replaying an old journal passes its data clock (the latest local_timestamp_ns it
// has read), so that books an hour old are judged against each other, not against
// the wall clock, and a replay shows premiums rather than only stale pairs.
// Results are stamped now_ns either way.
//
// FX, KRW per USDT, for a pair whose KRW venue is k:
//   1. config.fixed_fx when set (USDT-KRW books then change nothing);
//   2. else the mid of k's own USDT-KRW book, if fresh with both sides;
//   3. else the mid of the freshest (largest local_timestamp_ns) fresh two-sided
//      USDT-KRW book of any venue (first venue by name on a tie);
//   4. else unknown: fx NaN. It is "stale FX" when some USDT-KRW book exists but is
//      stale (the result is flagged stale), otherwise "missing FX" (counted in
//      missing_fx(), stale stays false unless a leg is stale).
//
// mid = (best bid + best ask) / 2; NaN when a side is empty.
//
// kimchi_premium = mid_k(B-KRW) / (mid_u(B-USDT) * fx) - 1 (a fraction).
//
// Executable edge for notional N KRW (config.notional_krw), fee fraction
// f = taker_fee_bps[venue] / 1e4 (0 for a venue not listed). USDT prices are
// converted to KRW as price * fx. For one direction (buy venue, sell venue):
//   Q_buy = base quantity bought walking the buy venue's asks from the best,
//           spending at most N where quantity q at price p costs q * p * (1 + f_buy)
//           (less than N when the asks run out);
//   Q     = min(Q_buy, total quantity of the sell venue's bids);
//   C     = cost of exactly Q walking the asks,      sum q * p * (1 + f_buy);
//   P     = proceeds of exactly Q walking the bids,  sum q * p * (1 - f_sell);
//   edge_bps = (P - C) / C * 1e4, fill_base_quantity = Q; Q == 0 gives NaN.
// Both directions are computed: (a) buy on u's asks, sell into k's bids; (b) buy on
// k's asks, sell into u's bids. The higher edge_bps is reported with its
// buy_exchange / sell_exchange; a direction without depth (NaN) loses; on a tie (a).
// An empty side therefore kills only the direction that walks it. When neither
// direction fills: edge NaN, fill 0, buy_exchange and sell_exchange empty.
//
// A result is stale when either leg's book is stale or FX is stale; then
// kimchi_premium and edge_bps are NaN (fill 0): stale books are left out of the
// calculation, not mixed with fresh ones. Stale and missing-FX results are still
// emitted, so a consumer sees the pair go dark instead of keeping its last value.
//
// Which results an update appends (all of them affected by it, in a stable order:
// base, then KRW venue, then USDT venue, each by name):
//   B-KRW from k:   every (B, k, u) for each USDT venue u with a B-USDT book;
//   B-USDT from u:  every (B, k, u) for each KRW venue k with a B-KRW book;
//   USDT-KRW:       every pair of every base (FX may have changed for any of them),
//                   nothing when fixed_fx is set.
//
// Names in a Result (base and exchanges) are std::string_views of strings the
// engine owns: valid, and unchanged, until the Engine is destroyed. That is why
// an Engine can be neither copied nor moved.
//
// Cost. update() allocates only when it first sees a (venue, symbol) (and when
// `out` has to grow). In steady state it is a hash lookup of (exchange, symbol)
// that compares no strings (detail::NameKey), the copy of the levels, and per
// result some stores and the two directions of the edge, which take a shortcut
// with the same bits when the best levels suffice (detail::best_levels_edge): no
// map lookup, no string copy, nothing to destroy.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace radar {

// One price level. Same layout as the FlatBuffers struct OrderBookData::PriceLevel
// (schema/orderbook.fbs), so a journal record's level vector can be viewed as
// `const Level*` without copying.
struct Level {
  double price;
  double quantity;
};
static_assert(sizeof(Level) == 16 && alignof(Level) == 8, "PriceLevel is 16 bytes");
static_assert(offsetof(Level, price) == 0 && offsetof(Level, quantity) == 8,
              "PriceLevel is {price, quantity}");
static_assert(std::is_trivially_copyable_v<Level> && std::is_standard_layout_v<Level>);

// One order-book update, as views into memory the caller owns for the call only.
struct BookView {
  std::string_view exchange;
  std::string_view symbol;  // normalised BASE-QUOTE
  std::int64_t local_timestamp_ns = 0;
  std::int64_t timestamp_ms = 0;
  const Level* bids = nullptr;  // best (highest) first
  std::size_t n_bids = 0;
  const Level* asks = nullptr;  // best (lowest) first
  std::size_t n_asks = 0;
};

struct EngineConfig {
  double notional_krw = 10'000'000;
  // Taker fee per venue in basis points (5 = 0.05%); venues not listed pay 0.
  std::map<std::string, double, std::less<>> taker_fee_bps;
  // KRW per USDT; when set, USDT-KRW books are not used.
  std::optional<double> fixed_fx;
  std::int64_t stale_ns = 5'000'000'000;
};

// Fields as schema/radar.fbs RadarResult (the radar encodes one record per Result).
// The names view strings owned by the Engine that produced the Result (see the
// top): valid until that Engine is destroyed. Views rather than std::string so
// that a Result costs stores, not string copies, and is trivially destructible.
struct Result {
  std::int64_t timestamp_ns = 0;  // now_ns of the update that produced it
  std::string_view base;
  std::string_view krw_exchange;
  std::string_view usdt_exchange;
  double fx = std::numeric_limits<double>::quiet_NaN();
  double kimchi_premium = std::numeric_limits<double>::quiet_NaN();
  std::string_view buy_exchange;   // empty when no direction fills
  std::string_view sell_exchange;  // empty when no direction fills
  double edge_bps = std::numeric_limits<double>::quiet_NaN();
  double fill_base_quantity = 0;
  bool stale = false;
  std::int64_t source_local_timestamp_ns = 0;  // of the book that triggered it
  double notional_krw = 0;
  // Not in schema/radar.fbs (the results journal): for the live view's age column.
  // local_timestamp_ns of the older of the pair's two books (KRW and USDT legs).
  std::int64_t oldest_leg_local_timestamp_ns = 0;
};
static_assert(std::is_trivially_copyable_v<Result> && std::is_trivially_destructible_v<Result>,
              "a Result is plain data: appending copies it, clearing a vector of them is free");

inline constexpr std::size_t kMaxLevelsPerSide = 32;

// The engine's copy of a book.
struct Book {
  std::int64_t local_timestamp_ns = 0;
  std::int64_t timestamp_ms = 0;
  std::size_t n_bids = 0;
  std::size_t n_asks = 0;
  std::array<Level, kMaxLevelsPerSide> bids{};
  std::array<Level, kMaxLevelsPerSide> asks{};
};

// One side of a book and the factor converting its prices to KRW (1 for a KRW
// market, fx for a USDT market).
struct SideInKrw {
  const Level* levels = nullptr;
  std::size_t count = 0;
  double to_krw = 1.0;
};

struct Fill {
  double edge_bps = std::numeric_limits<double>::quiet_NaN();
  double base_quantity = 0;
};

namespace detail {

// Base quantity bought walking `asks` from the best while the KRW spent, fee
// included, stays within budget_krw.
inline double quantity_for_budget(const SideInKrw& asks, double fee_fraction,
                                  double budget_krw) noexcept {
  double quantity = 0;
  double remaining = budget_krw;
  for (std::size_t i = 0; i < asks.count && remaining > 0; ++i) {
    const double unit_cost = asks.levels[i].price * asks.to_krw * (1 + fee_fraction);
    const double level_cost = asks.levels[i].quantity * unit_cost;
    if (level_cost >= remaining) return quantity + remaining / unit_cost;
    quantity += asks.levels[i].quantity;
    remaining -= level_cost;
  }
  return quantity;
}

// min(cap, total quantity of `side`), stopping at the level where the running sum
// reaches cap: the edge only needs to know whether the bids hold what was bought,
// and they usually do within a level or two. Same value as summing every level
// first: quantities are non-negative and rounding is monotonic, so a partial sum
// at or above cap means the full sum is too.
inline double capped_quantity(const SideInKrw& side, double cap) noexcept {
  double quantity = 0;
  for (std::size_t i = 0; i < side.count; ++i) {
    quantity += side.levels[i].quantity;
    if (quantity >= cap) return cap;
  }
  return std::min(cap, quantity);
}

// KRW value, before fees, of the first `quantity` of `side` walked from the best.
inline double value_of(const SideInKrw& side, double quantity) noexcept {
  double value = 0;
  double remaining = quantity;
  for (std::size_t i = 0; i < side.count && remaining > 0; ++i) {
    const double taken = std::min(side.levels[i].quantity, remaining);
    value += taken * side.levels[i].price * side.to_krw;
    remaining -= taken;
  }
  return value;
}

struct SymbolParts {
  std::string_view base;
  std::string_view quote;
};

// "BTC-KRW" -> {BTC, KRW}; nullopt unless exactly one dash with text either side.
inline std::optional<SymbolParts> split_symbol(std::string_view symbol) noexcept {
  const std::size_t dash = symbol.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 == symbol.size() ||
      symbol.find('-', dash + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  return SymbolParts{symbol.substr(0, dash), symbol.substr(dash + 1)};
}

inline double mid(const Book& book) noexcept {
  if (book.n_bids == 0 || book.n_asks == 0) return std::numeric_limits<double>::quiet_NaN();
  return (book.bids[0].price + book.asks[0].price) / 2;
}

inline std::uint64_t load_u64(const char* bytes) noexcept {
  std::uint64_t word;
  std::memcpy(&word, bytes, sizeof word);
  return word;
}

inline std::uint32_t load_u32(const char* bytes) noexcept {
  std::uint32_t word;
  std::memcpy(&word, bytes, sizeof word);
  return word;
}

// A name as two words and its size: its first and last 8 bytes (first and last 4
// below 8 bytes; first, middle and last byte below 4). The loads overlap or repeat
// bytes instead of looping, and up to kWholeUpTo bytes they cover the whole name,
// so two such names are equal exactly when their keys are: exchange names and
// symbols compare with three integer compares, not memcmp. Longer names share a
// key with any name equal at both ends and must also compare their bytes.
struct NameKey {
  static constexpr std::size_t kWholeUpTo = 16;

  std::uint64_t head = 0;
  std::uint64_t tail = 0;
  std::size_t size = 0;

  static NameKey of(std::string_view name) noexcept {
    const char* bytes = name.data();
    const std::size_t n = name.size();
    if (n >= 8) return {load_u64(bytes), load_u64(bytes + n - 8), n};
    if (n >= 4) return {load_u32(bytes), load_u32(bytes + n - 4), n};
    if (n == 0) return {};
    const auto byte = [bytes](std::size_t i) -> std::uint64_t {
      return static_cast<unsigned char>(bytes[i]);
    };
    return {byte(0) | byte(n / 2) << 8 | byte(n - 1) << 16, 0, n};
  }

  bool whole() const noexcept { return size <= kWholeUpTo; }

  friend bool operator==(const NameKey& a, const NameKey& b) noexcept {
    return a.head == b.head && a.tail == b.tail && a.size == b.size;
  }
};

// Hash of an (exchange, symbol) pair for the engine's open-addressing table,
// which takes its top bits (Fibonacci hashing). Multiplying a word by an odd
// constant carries every bit of it into the top bits of the product, so those
// depend on every byte of both names, for four multiplications.
inline std::uint64_t stream_hash(const NameKey& exchange, const NameKey& symbol) noexcept {
  return ((exchange.head ^ exchange.size) * 0x9E3779B97F4A7C15ULL) ^
         (exchange.tail * 0xC2B2AE3D27D4EB4FULL) ^
         ((symbol.head ^ symbol.size) * 0x165667B19E3779F9ULL) ^
         (symbol.tail * 0xD6E8FEB86659FD93ULL);
}

// One direction of the executable edge, level by level, exactly as defined at the
// top: any depth, any thin side.
inline Fill walk_edge(const SideInKrw& buy_asks, double buy_fee_fraction,
                      const SideInKrw& sell_bids, double sell_fee_fraction,
                      double notional_krw) noexcept {
  const double bought = quantity_for_budget(buy_asks, buy_fee_fraction, notional_krw);
  if (!(bought > 0)) return {};
  const double quantity = capped_quantity(sell_bids, bought);
  if (!(quantity > 0)) return {};
  // Cost and proceeds of the same Q: when the bids are thinner than what the
  // notional buys, the cost is that of Q, not of the whole notional.
  const double cost = value_of(buy_asks, quantity) * (1 + buy_fee_fraction);
  const double proceeds = value_of(sell_bids, quantity) * (1 - sell_fee_fraction);
  return {(proceeds - cost) / cost * 1e4, quantity};
}

// The usual case without the walks: the best ask alone is worth the notional and
// the best bid alone takes everything it buys. The walks would then each stop
// after their first level; this does the same operations in the same order
// (down to the `0 +` each walk starts from, which matters for signed zeros), so
// the result has the same bits as walk_edge's. nullopt when a best level is not
// enough (or an input is out of range) and the walk is needed. The walks' loop
// set-up and exit tests cost several times these few operations, for every
// result of every update.
inline std::optional<Fill> best_levels_edge(const SideInKrw& buy_asks, double buy_fee_fraction,
                                            const SideInKrw& sell_bids,
                                            double sell_fee_fraction,
                                            double notional_krw) noexcept {
  if (buy_asks.count == 0 || sell_bids.count == 0 || !(notional_krw > 0)) return std::nullopt;
  const Level& ask = buy_asks.levels[0];
  const Level& bid = sell_bids.levels[0];
  const double unit_cost = ask.price * buy_asks.to_krw * (1 + buy_fee_fraction);
  if (!(ask.quantity * unit_cost >= notional_krw)) return std::nullopt;  // the walk goes deeper
  const double bought = 0 + notional_krw / unit_cost;
  // quantity_for_budget's result; capped_quantity keeps it when the best bid holds
  // it, and each value_of takes it from the first level when that level holds it.
  if (!(bought > 0 && bought <= bid.quantity && bought <= ask.quantity)) return std::nullopt;
  const double cost = (0 + bought * ask.price * buy_asks.to_krw) * (1 + buy_fee_fraction);
  const double proceeds = (0 + bought * bid.price * sell_bids.to_krw) * (1 - sell_fee_fraction);
  return Fill{(proceeds - cost) / cost * 1e4, bought};
}

}  // namespace detail

// One direction of the executable edge (definition at the top): buy up to
// notional_krw on `buy_asks`, sell what was bought, as far as the bids go, into
// `sell_bids`. Fee fractions, not bps (0.0005 for 5 bps).
inline Fill executable_edge(const SideInKrw& buy_asks, double buy_fee_fraction,
                            const SideInKrw& sell_bids, double sell_fee_fraction,
                            double notional_krw) noexcept {
  if (const std::optional<Fill> fill = detail::best_levels_edge(
          buy_asks, buy_fee_fraction, sell_bids, sell_fee_fraction, notional_krw)) {
    return *fill;
  }
  return detail::walk_edge(buy_asks, buy_fee_fraction, sell_bids, sell_fee_fraction,
                           notional_krw);
}

class Engine {
 public:
  // Throws std::invalid_argument on a configuration that cannot give meaningful
  // numbers (non-positive notional or FX, fee outside (-1e4, 1e4) bps, negative
  // staleness limit).
  explicit Engine(EngineConfig config)
      : config_(std::move(config)), table_(std::size_t{1} << kInitialTableBits, kEmpty) {
    if (!(std::isfinite(config_.notional_krw) && config_.notional_krw > 0)) {
      throw std::invalid_argument("EngineConfig: notional_krw must be finite and > 0, got " +
                                  std::to_string(config_.notional_krw));
    }
    if (config_.fixed_fx && !(std::isfinite(*config_.fixed_fx) && *config_.fixed_fx > 0)) {
      throw std::invalid_argument("EngineConfig: fixed_fx must be finite and > 0, got " +
                                  std::to_string(*config_.fixed_fx));
    }
    for (const auto& [venue, bps] : config_.taker_fee_bps) {
      // A negative fee is a rebate; 1e4 bps would take the whole trade.
      if (!(std::isfinite(bps) && bps > -1e4 && bps < 1e4)) {
        throw std::invalid_argument("EngineConfig: taker_fee_bps venue=" + venue +
                                    " must be in (-1e4, 1e4), got " + std::to_string(bps));
      }
    }
    if (config_.stale_ns < 0) {
      throw std::invalid_argument("EngineConfig: stale_ns must be >= 0, got " +
                                  std::to_string(config_.stale_ns));
    }
  }

  // Results and find_book() point into the engine's storage; a copy or a move
  // would leave them pointing into another object.
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Stores the book and appends to `out` the results it affects (see the top).
  // `out` is appended to, never cleared: reuse one vector to keep its capacity.
  void update(const BookView& view, std::int64_t now_ns, std::vector<Result>& out) {
    update(view, now_ns, now_ns, out);
  }

  // The same, with staleness measured at clock_ns instead of now_ns (see "Stale" at
  // the top); results are still stamped now_ns.
  void update(const BookView& view, std::int64_t now_ns, std::int64_t clock_ns,
              std::vector<Result>& out) {
    ++updates_;
    const detail::NameKey exchange = detail::NameKey::of(view.exchange);
    const detail::NameKey symbol = detail::NameKey::of(view.symbol);
    const std::uint64_t hash = detail::stream_hash(exchange, symbol);
    std::size_t index = find_stream(hash, exchange, symbol, view.exchange, view.symbol);
    if (index == kNoStream) {
      index = add_stream(hash, exchange, symbol, view);
      if (index == kNoStream) {
        ++ignored_updates_;
        return;
      }
    }
    const Stream& stream = streams_[index];
    store(*stream.kept, view);
    Pass pass{now_ns, clock_ns, view.local_timestamp_ns, out, std::nullopt};
    switch (stream.role) {
      case Role::kFx:
        if (!config_.fixed_fx) append_all(pass);
        return;
      case Role::kKrw: {
        const Slot krw{stream.venue, stream.kept};
        for (const Slot& usdt : stream.asset->usdt) append_pair(pass, *stream.asset, krw, usdt);
        return;
      }
      case Role::kUsdt: {
        const Slot usdt{stream.venue, stream.kept};
        for (const Slot& krw : stream.asset->krw) append_pair(pass, *stream.asset, krw, usdt);
        return;
      }
    }
  }

  // The stored copy of the latest (exchange, symbol) book; nullptr if never seen
  // (or ignored). Valid until the engine is destroyed; updated in place.
  const Book* find_book(std::string_view exchange, std::string_view symbol) const {
    const detail::NameKey exchange_key = detail::NameKey::of(exchange);
    const detail::NameKey symbol_key = detail::NameKey::of(symbol);
    const std::size_t index = find_stream(detail::stream_hash(exchange_key, symbol_key),
                                          exchange_key, symbol_key, exchange, symbol);
    return index == kNoStream ? nullptr : &streams_[index].kept->book;
  }

  const EngineConfig& config() const noexcept { return config_; }

  // Statistics (counts since construction).
  // Distinct (exchange, symbol) books kept.
  std::size_t books() const noexcept { return streams_.size(); }
  std::uint64_t updates() const noexcept { return updates_; }
  std::uint64_t ignored_updates() const noexcept { return ignored_updates_; }
  // Updates with a side deeper than kMaxLevelsPerSide (kept truncated).
  std::uint64_t truncated_books() const noexcept { return truncated_books_; }
  std::uint64_t results() const noexcept { return results_; }
  std::uint64_t stale_results() const noexcept { return stale_results_; }
  // Results emitted with no FX: no fixed_fx and no usable USDT-KRW book anywhere.
  std::uint64_t missing_fx() const noexcept { return missing_fx_; }

 private:
  static constexpr std::string_view kKrw = "KRW";
  static constexpr std::string_view kUsdt = "USDT";

  enum class FxState { kKnown, kStale, kMissing };
  struct Fx {
    double krw_per_usdt = std::numeric_limits<double>::quiet_NaN();
    FxState state = FxState::kMissing;
  };

  // A stored book and what depends on it alone, worked out once per update of
  // the book rather than once per result using it.
  struct Kept {
    Book book;
    double mid = std::numeric_limits<double>::quiet_NaN();  // detail::mid(book)
  };

  // An exchange, interned on first sight.
  struct Venue {
    std::string name;
    double fee_fraction = 0;        // taker fee / 1e4, looked up in the config once
    const Kept* fx_book = nullptr;  // its USDT-KRW book, if it publishes one
  };

  // One venue's book in one role (KRW market, USDT market or FX).
  struct Slot {
    const Venue* venue = nullptr;
    const Kept* kept = nullptr;
  };

  // A base asset, interned on first sight, and the venues quoting it, each list
  // by venue name: iterating them gives the result order of the top.
  struct Asset {
    std::string name;
    std::vector<Slot> krw;   // venues with a B-KRW book
    std::vector<Slot> usdt;  // venues with a B-USDT book
  };

  enum class Role : std::uint8_t { kFx, kKrw, kUsdt };

  // One (exchange, symbol) the engine keeps a book for.
  struct Stream {
    std::uint64_t hash = 0;
    detail::NameKey exchange_key;
    detail::NameKey symbol_key;
    Role role = Role::kFx;
    Kept* kept = nullptr;
    const Venue* venue = nullptr;
    const Asset* asset = nullptr;  // nullptr for an FX book
    std::string symbol;            // compared only for names NameKey does not cover
  };

  // What the results of one update share.
  struct Pass {
    std::int64_t now_ns;    // stamped on the results
    std::int64_t clock_ns;  // staleness is measured at this time
    std::int64_t source_ns;
    std::vector<Result>& out;
    // FX rules 3-4 depend on clock_ns only: worked out once per update, when a pair
    // first needs them (an FX book updates every pair of every base).
    std::optional<Fx> shared_fx;
  };

  static constexpr std::size_t kNoStream = std::numeric_limits<std::size_t>::max();
  static constexpr std::uint32_t kEmpty = 0;  // table entries hold stream index + 1
  static constexpr unsigned kInitialTableBits = 4;

  // Index in streams_ of (exchange, symbol), or kNoStream. Linear probing in a
  // power-of-two table kept at most half full, so probes are short.
  std::size_t find_stream(std::uint64_t hash, const detail::NameKey& exchange_key,
                          const detail::NameKey& symbol_key, std::string_view exchange,
                          std::string_view symbol) const noexcept {
    const std::size_t mask = table_.size() - 1;
    for (std::size_t i = hash >> table_shift_;; i = (i + 1) & mask) {
      const std::uint32_t entry = table_[i];
      if (entry == kEmpty) return kNoStream;
      const Stream& stream = streams_[entry - 1];
      if (stream.hash == hash && stream.exchange_key == exchange_key &&
          stream.symbol_key == symbol_key &&
          (exchange_key.whole() || stream.venue->name == exchange) &&
          (symbol_key.whole() || stream.symbol == symbol)) {
        return entry - 1;
      }
    }
  }

  // First sight of (exchange, symbol): classifies the symbol (the rules at the
  // top), interns its names, makes its book and indexes it. kNoStream when the
  // update is to be ignored; ignored pairs are not remembered, so junk symbols
  // cannot grow the engine.
  std::size_t add_stream(std::uint64_t hash, const detail::NameKey& exchange_key,
                         const detail::NameKey& symbol_key, const BookView& view) {
    const std::optional<detail::SymbolParts> parts = detail::split_symbol(view.symbol);
    if (view.exchange.empty() || !parts) return kNoStream;
    const auto [base, quote] = *parts;
    const bool fx = base == kUsdt && quote == kKrw;
    if (!fx && (base == kUsdt || (quote != kKrw && quote != kUsdt))) return kNoStream;
    const Role role = fx ? Role::kFx : quote == kKrw ? Role::kKrw : Role::kUsdt;

    Venue& venue = intern_venue(view.exchange);
    Kept& kept = kept_storage_.emplace_back();
    const Slot slot{&venue, &kept};
    Asset* asset = nullptr;
    if (role == Role::kFx) {
      venue.fx_book = &kept;
      insert_by_venue_name(fx_slots_, slot);
    } else {
      asset = &intern_asset(base);
      insert_by_venue_name(role == Role::kKrw ? asset->krw : asset->usdt, slot);
    }
    streams_.push_back(Stream{hash, exchange_key, symbol_key, role, &kept, &venue, asset,
                              std::string(view.symbol)});
    if (2 * streams_.size() > table_.size()) {
      rehash();
    } else {
      insert_in_table(streams_.size() - 1);
    }
    return streams_.size() - 1;
  }

  void insert_in_table(std::size_t index) {
    const std::size_t mask = table_.size() - 1;
    std::size_t i = streams_[index].hash >> table_shift_;
    while (table_[i] != kEmpty) i = (i + 1) & mask;
    table_[i] = static_cast<std::uint32_t>(index + 1);
  }

  // Doubles the table.
  void rehash() {
    table_.assign(2 * table_.size(), kEmpty);
    --table_shift_;
    for (std::size_t index = 0; index < streams_.size(); ++index) insert_in_table(index);
  }

  Venue& intern_venue(std::string_view name) {
    const auto at = std::lower_bound(venues_by_name_.begin(), venues_by_name_.end(), name,
                                     [](const Venue* venue, std::string_view n) {
                                       return std::string_view(venue->name) < n;
                                     });
    if (at != venues_by_name_.end() && (*at)->name == name) return **at;
    Venue& venue = venue_storage_.emplace_back();
    venue.name = std::string(name);
    const auto fee = config_.taker_fee_bps.find(name);
    venue.fee_fraction = fee == config_.taker_fee_bps.end() ? 0.0 : fee->second / 1e4;
    venues_by_name_.insert(at, &venue);
    return venue;
  }

  Asset& intern_asset(std::string_view name) {
    const auto at = std::lower_bound(assets_by_name_.begin(), assets_by_name_.end(), name,
                                     [](const Asset* asset, std::string_view n) {
                                       return std::string_view(asset->name) < n;
                                     });
    if (at != assets_by_name_.end() && (*at)->name == name) return **at;
    Asset& asset = asset_storage_.emplace_back();
    asset.name = std::string(name);
    assets_by_name_.insert(at, &asset);
    return asset;
  }

  static void insert_by_venue_name(std::vector<Slot>& slots, const Slot& slot) {
    const auto at = std::upper_bound(
        slots.begin(), slots.end(), slot,
        [](const Slot& a, const Slot& b) { return a.venue->name < b.venue->name; });
    slots.insert(at, slot);
  }

  // Copies the view into the stream's book.
  void store(Kept& kept, const BookView& view) {
    Book& book = kept.book;
    book.local_timestamp_ns = view.local_timestamp_ns;
    book.timestamp_ms = view.timestamp_ms;
    const bool cut_bids = copy_levels(view.bids, view.n_bids, book.bids, book.n_bids);
    const bool cut_asks = copy_levels(view.asks, view.n_asks, book.asks, book.n_asks);
    if (cut_bids || cut_asks) ++truncated_books_;
    kept.mid = detail::mid(book);
  }

  // Returns true when the input was deeper than the capacity (and was cut).
  static bool copy_levels(const Level* source, std::size_t count,
                          std::array<Level, kMaxLevelsPerSide>& target, std::size_t& kept) {
    kept = std::min(count, kMaxLevelsPerSide);
    if (kept > 0) std::copy_n(source, kept, target.begin());
    return count > kMaxLevelsPerSide;
  }

  bool is_stale(const Book& book, std::int64_t clock_ns) const noexcept {
    return clock_ns - book.local_timestamp_ns > config_.stale_ns;
  }

  static bool usable_fx(double mid) noexcept { return std::isfinite(mid) && mid > 0; }

  // FX for a pair whose KRW venue is krw_venue (rules 1-4 at the top).
  Fx resolve_fx(const Venue& krw_venue, Pass& pass) const {
    if (config_.fixed_fx) return {*config_.fixed_fx, FxState::kKnown};
    const Kept* own = krw_venue.fx_book;
    if (own != nullptr && !is_stale(own->book, pass.clock_ns)) {
      if (usable_fx(own->mid)) return {own->mid, FxState::kKnown};
    }
    if (!pass.shared_fx) pass.shared_fx = freshest_fx(pass.clock_ns);
    return *pass.shared_fx;
  }

  // Rules 3-4: the freshest fresh usable USDT-KRW book of any venue (the first
  // by name on a tie: fx_slots_ is by name and only a strictly fresher one wins).
  // The venue's own book, if it is stale, is among them and makes the result
  // "stale FX" rather than "missing FX".
  Fx freshest_fx(std::int64_t clock_ns) const {
    bool saw_stale = false;
    const Kept* freshest = nullptr;
    for (const Slot& slot : fx_slots_) {
      const Kept& kept = *slot.kept;
      if (is_stale(kept.book, clock_ns)) {
        saw_stale = true;
      } else if (usable_fx(kept.mid) &&
                 (freshest == nullptr ||
                  kept.book.local_timestamp_ns > freshest->book.local_timestamp_ns)) {
        freshest = &kept;
      }
    }
    if (freshest != nullptr) return {freshest->mid, FxState::kKnown};
    return {std::numeric_limits<double>::quiet_NaN(),
            saw_stale ? FxState::kStale : FxState::kMissing};
  }

  // Every pair of every base, after an FX book changed.
  void append_all(Pass& pass) {
    for (const Asset* asset : assets_by_name_) {
      for (const Slot& krw : asset->krw) {
        for (const Slot& usdt : asset->usdt) append_pair(pass, *asset, krw, usdt);
      }
    }
  }

  // One result, built in a local and appended once: emplace_back() would zero-fill
  // the new element (value-initialisation) before the fields are written.
  void append_pair(Pass& pass, const Asset& asset, const Slot& krw, const Slot& usdt) {
    const Venue& krw_venue = *krw.venue;
    const Venue& usdt_venue = *usdt.venue;
    const Kept& krw_kept = *krw.kept;
    const Kept& usdt_kept = *usdt.kept;
    Result result;
    result.timestamp_ns = pass.now_ns;
    result.base = asset.name;
    result.krw_exchange = krw_venue.name;
    result.usdt_exchange = usdt_venue.name;
    result.source_local_timestamp_ns = pass.source_ns;
    result.notional_krw = config_.notional_krw;
    result.oldest_leg_local_timestamp_ns =
        std::min(krw_kept.book.local_timestamp_ns, usdt_kept.book.local_timestamp_ns);
    ++results_;

    const Fx fx = resolve_fx(krw_venue, pass);
    result.fx = fx.krw_per_usdt;
    if (fx.state == FxState::kMissing) ++missing_fx_;
    result.stale = is_stale(krw_kept.book, pass.clock_ns) ||
                   is_stale(usdt_kept.book, pass.clock_ns) || fx.state == FxState::kStale;
    if (result.stale) ++stale_results_;
    if (!result.stale && fx.state == FxState::kKnown) fill_in(result, krw, usdt, fx.krw_per_usdt);
    pass.out.push_back(result);
  }

  // Premium and edge of a result whose legs and FX are all usable.
  void fill_in(Result& result, const Slot& krw, const Slot& usdt, double fx) const noexcept {
    const Book& krw_book = krw.kept->book;
    const Book& usdt_book = usdt.kept->book;
    result.kimchi_premium = krw.kept->mid / (usdt.kept->mid * fx) - 1;

    const double krw_fee = krw.venue->fee_fraction;
    const double usdt_fee = usdt.venue->fee_fraction;
    const SideInKrw krw_bids{krw_book.bids.data(), krw_book.n_bids, 1.0};
    const SideInKrw krw_asks{krw_book.asks.data(), krw_book.n_asks, 1.0};
    const SideInKrw usdt_bids{usdt_book.bids.data(), usdt_book.n_bids, fx};
    const SideInKrw usdt_asks{usdt_book.asks.data(), usdt_book.n_asks, fx};
    const Fill buy_usdt = executable_edge(usdt_asks, usdt_fee, krw_bids, krw_fee,
                                          config_.notional_krw);  // direction (a)
    const Fill buy_krw = executable_edge(krw_asks, krw_fee, usdt_bids, usdt_fee,
                                         config_.notional_krw);  // direction (b)
    // NaN compares false: a direction that does not fill never wins.
    const bool krw_side_better =
        std::isnan(buy_usdt.edge_bps) ? !std::isnan(buy_krw.edge_bps)
                                      : buy_krw.edge_bps > buy_usdt.edge_bps;
    const Fill& best = krw_side_better ? buy_krw : buy_usdt;
    if (std::isnan(best.edge_bps)) return;
    result.edge_bps = best.edge_bps;
    result.fill_base_quantity = best.base_quantity;
    result.buy_exchange = krw_side_better ? krw.venue->name : usdt.venue->name;
    result.sell_exchange = krw_side_better ? usdt.venue->name : krw.venue->name;
  }

  EngineConfig config_;
  // Element addresses must not change (Slots, Streams and Results point at them):
  // deques, appended to only.
  std::deque<Venue> venue_storage_;
  std::deque<Asset> asset_storage_;
  std::deque<Kept> kept_storage_;
  std::vector<Venue*> venues_by_name_;  // to intern a name (first sight only)
  std::vector<Asset*> assets_by_name_;  // the base order of the results
  std::vector<Slot> fx_slots_;          // USDT-KRW books, by venue name
  std::vector<Stream> streams_;         // every book kept, in order of first sight
  std::vector<std::uint32_t> table_;    // (exchange, symbol) -> stream index + 1
  unsigned table_shift_ = 64 - kInitialTableBits;  // hash >> table_shift_: a table index
  std::uint64_t updates_ = 0;
  std::uint64_t ignored_updates_ = 0;
  std::uint64_t truncated_books_ = 0;
  std::uint64_t results_ = 0;
  std::uint64_t stale_results_ = 0;
  std::uint64_t missing_fx_ = 0;
};

}  // namespace radar
