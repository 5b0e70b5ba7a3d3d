// The radar's calculation engine: latest books in, kimchi premium and executable
// edge per (base asset, KRW venue, USDT venue) out.
//
// Pure computation: no journal, no FlatBuffers, no clock (the caller passes now_ns),
// so every number below can be checked by hand in tests/engine_test.cpp.
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
// Stale. A book is stale when now_ns - local_timestamp_ns > stale_ns (strictly).
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
// Allocation: update() allocates when it first sees a (venue, symbol) and for the
// strings of each Result (short names fit the small-string buffer); lookups use
// std::string_view keys (heterogeneous std::less<>) and book storage is reused.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
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
struct Result {
  std::int64_t timestamp_ns = 0;  // now_ns of the update that produced it
  std::string base;
  std::string krw_exchange;
  std::string usdt_exchange;
  double fx = std::numeric_limits<double>::quiet_NaN();
  double kimchi_premium = std::numeric_limits<double>::quiet_NaN();
  std::string buy_exchange;   // empty when no direction fills
  std::string sell_exchange;  // empty when no direction fills
  double edge_bps = std::numeric_limits<double>::quiet_NaN();
  double fill_base_quantity = 0;
  bool stale = false;
  std::int64_t source_local_timestamp_ns = 0;  // of the book that triggered it
  double notional_krw = 0;
};

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

inline double total_quantity(const SideInKrw& side) noexcept {
  double quantity = 0;
  for (std::size_t i = 0; i < side.count; ++i) quantity += side.levels[i].quantity;
  return quantity;
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

}  // namespace detail

// One direction of the executable edge (definition at the top): buy up to
// notional_krw on `buy_asks`, sell what was bought, as far as the bids go, into
// `sell_bids`. Fee fractions, not bps (0.0005 for 5 bps).
inline Fill executable_edge(const SideInKrw& buy_asks, double buy_fee_fraction,
                            const SideInKrw& sell_bids, double sell_fee_fraction,
                            double notional_krw) noexcept {
  const double bought = detail::quantity_for_budget(buy_asks, buy_fee_fraction, notional_krw);
  const double quantity = std::min(bought, detail::total_quantity(sell_bids));
  if (!(quantity > 0)) return {};
  // Cost and proceeds of the same Q: when the bids are thinner than what the
  // notional buys, the cost is that of Q, not of the whole notional.
  const double cost = detail::value_of(buy_asks, quantity) * (1 + buy_fee_fraction);
  const double proceeds = detail::value_of(sell_bids, quantity) * (1 - sell_fee_fraction);
  return {(proceeds - cost) / cost * 1e4, quantity};
}

class Engine {
 public:
  // Throws std::invalid_argument on a configuration that cannot give meaningful
  // numbers (non-positive notional or FX, fee outside (-1e4, 1e4) bps, negative
  // staleness limit).
  explicit Engine(EngineConfig config) : config_(std::move(config)) {
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

  // Stores the book and appends to `out` the results it affects (see the top).
  // `out` is appended to, never cleared: reuse one vector to keep its capacity.
  void update(const BookView& view, std::int64_t now_ns, std::vector<Result>& out) {
    ++updates_;
    const std::optional<detail::SymbolParts> parts = detail::split_symbol(view.symbol);
    if (view.exchange.empty() || !parts) {
      ++ignored_updates_;
      return;
    }
    const auto [base, quote] = *parts;
    if (base == kUsdt && quote == kKrw) {
      store(fx_books_, view);
      if (!config_.fixed_fx) append_all(view.local_timestamp_ns, now_ns, out);
      return;
    }
    if (base == kUsdt || (quote != kKrw && quote != kUsdt)) {
      ++ignored_updates_;
      return;
    }
    auto asset = assets_.find(base);
    if (asset == assets_.end()) asset = assets_.emplace(std::string(base), Asset{}).first;
    const std::string& base_name = asset->first;
    Asset& books = asset->second;
    if (quote == kKrw) {
      const auto krw = store(books.krw_venues, view);
      for (const auto& [usdt_venue, usdt_book] : books.usdt_venues) {
        append_pair(base_name, krw->first, krw->second, usdt_venue, usdt_book,
                    view.local_timestamp_ns, now_ns, out);
      }
    } else {
      const auto usdt = store(books.usdt_venues, view);
      for (const auto& [krw_venue, krw_book] : books.krw_venues) {
        append_pair(base_name, krw_venue, krw_book, usdt->first, usdt->second,
                    view.local_timestamp_ns, now_ns, out);
      }
    }
  }

  // The stored copy of the latest (exchange, symbol) book; nullptr if never seen
  // (or ignored). Valid until the engine is destroyed; updated in place.
  const Book* find_book(std::string_view exchange, std::string_view symbol) const {
    const std::optional<detail::SymbolParts> parts = detail::split_symbol(symbol);
    if (!parts) return nullptr;
    if (parts->base == kUsdt && parts->quote == kKrw) return find_in(fx_books_, exchange);
    const auto asset = assets_.find(parts->base);
    if (asset == assets_.end()) return nullptr;
    if (parts->quote == kKrw) return find_in(asset->second.krw_venues, exchange);
    if (parts->quote == kUsdt) return find_in(asset->second.usdt_venues, exchange);
    return nullptr;
  }

  const EngineConfig& config() const noexcept { return config_; }

  // Statistics (counts since construction).
  std::size_t books() const noexcept { return books_; }  // distinct (exchange, symbol) kept
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

  using BooksByVenue = std::map<std::string, Book, std::less<>>;
  struct Asset {
    BooksByVenue krw_venues;   // venue -> its B-KRW book
    BooksByVenue usdt_venues;  // venue -> its B-USDT book
  };

  enum class FxState { kKnown, kStale, kMissing };
  struct Fx {
    double krw_per_usdt = std::numeric_limits<double>::quiet_NaN();
    FxState state = FxState::kMissing;
  };

  static const Book* find_in(const BooksByVenue& books, std::string_view venue) {
    const auto it = books.find(venue);
    return it == books.end() ? nullptr : &it->second;
  }

  // Copies the view into the venue's slot (created on first sight). Returns the entry.
  BooksByVenue::iterator store(BooksByVenue& books, const BookView& view) {
    auto it = books.find(view.exchange);
    if (it == books.end()) {
      it = books.emplace(std::string(view.exchange), Book{}).first;
      ++books_;
    }
    Book& book = it->second;
    book.local_timestamp_ns = view.local_timestamp_ns;
    book.timestamp_ms = view.timestamp_ms;
    const bool cut_bids = copy_levels(view.bids, view.n_bids, book.bids, book.n_bids);
    const bool cut_asks = copy_levels(view.asks, view.n_asks, book.asks, book.n_asks);
    if (cut_bids || cut_asks) ++truncated_books_;
    return it;
  }

  // Returns true when the input was deeper than the capacity (and was cut).
  static bool copy_levels(const Level* source, std::size_t count,
                          std::array<Level, kMaxLevelsPerSide>& target, std::size_t& kept) {
    kept = std::min(count, kMaxLevelsPerSide);
    if (kept > 0) std::copy_n(source, kept, target.begin());
    return count > kMaxLevelsPerSide;
  }

  bool is_stale(const Book& book, std::int64_t now_ns) const noexcept {
    return now_ns - book.local_timestamp_ns > config_.stale_ns;
  }

  double fee_fraction(std::string_view venue) const {
    const auto it = config_.taker_fee_bps.find(venue);
    return it == config_.taker_fee_bps.end() ? 0.0 : it->second / 1e4;
  }

  // FX for a pair whose KRW venue is krw_venue (rules 1-4 at the top).
  Fx resolve_fx(std::string_view krw_venue, std::int64_t now_ns) const {
    if (config_.fixed_fx) return {*config_.fixed_fx, FxState::kKnown};
    const auto usable = [](double mid) { return std::isfinite(mid) && mid > 0; };
    bool saw_stale = false;
    if (const Book* own = find_in(fx_books_, krw_venue)) {
      if (is_stale(*own, now_ns)) {
        saw_stale = true;
      } else if (const double mid = detail::mid(*own); usable(mid)) {
        return {mid, FxState::kKnown};
      }
    }
    const Book* freshest = nullptr;
    for (const auto& [venue, book] : fx_books_) {
      if (is_stale(book, now_ns)) {
        saw_stale = true;
      } else if (usable(detail::mid(book)) &&
                 (freshest == nullptr || book.local_timestamp_ns > freshest->local_timestamp_ns)) {
        freshest = &book;
      }
    }
    if (freshest != nullptr) return {detail::mid(*freshest), FxState::kKnown};
    return {std::numeric_limits<double>::quiet_NaN(),
            saw_stale ? FxState::kStale : FxState::kMissing};
  }

  // Every pair of every base, after an FX book changed.
  void append_all(std::int64_t source_ns, std::int64_t now_ns, std::vector<Result>& out) {
    for (const auto& [base, books] : assets_) {
      for (const auto& [krw_venue, krw_book] : books.krw_venues) {
        for (const auto& [usdt_venue, usdt_book] : books.usdt_venues) {
          append_pair(base, krw_venue, krw_book, usdt_venue, usdt_book, source_ns, now_ns, out);
        }
      }
    }
  }

  void append_pair(const std::string& base, const std::string& krw_venue, const Book& krw_book,
                   const std::string& usdt_venue, const Book& usdt_book, std::int64_t source_ns,
                   std::int64_t now_ns, std::vector<Result>& out) {
    Result& result = out.emplace_back();
    result.timestamp_ns = now_ns;
    result.base = base;
    result.krw_exchange = krw_venue;
    result.usdt_exchange = usdt_venue;
    result.source_local_timestamp_ns = source_ns;
    result.notional_krw = config_.notional_krw;
    ++results_;

    const Fx fx = resolve_fx(krw_venue, now_ns);
    result.fx = fx.krw_per_usdt;
    if (fx.state == FxState::kMissing) ++missing_fx_;
    result.stale = is_stale(krw_book, now_ns) || is_stale(usdt_book, now_ns) ||
                   fx.state == FxState::kStale;
    if (result.stale) ++stale_results_;
    if (result.stale || fx.state != FxState::kKnown) return;  // NaN premium and edge

    result.kimchi_premium = detail::mid(krw_book) / (detail::mid(usdt_book) * fx.krw_per_usdt) - 1;

    const double krw_fee = fee_fraction(krw_venue);
    const double usdt_fee = fee_fraction(usdt_venue);
    const SideInKrw krw_bids{krw_book.bids.data(), krw_book.n_bids, 1.0};
    const SideInKrw krw_asks{krw_book.asks.data(), krw_book.n_asks, 1.0};
    const SideInKrw usdt_bids{usdt_book.bids.data(), usdt_book.n_bids, fx.krw_per_usdt};
    const SideInKrw usdt_asks{usdt_book.asks.data(), usdt_book.n_asks, fx.krw_per_usdt};
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
    result.buy_exchange = krw_side_better ? krw_venue : usdt_venue;
    result.sell_exchange = krw_side_better ? usdt_venue : krw_venue;
  }

  EngineConfig config_;
  std::map<std::string, Asset, std::less<>> assets_;  // base -> its KRW and USDT books
  BooksByVenue fx_books_;                              // venue -> its USDT-KRW book
  std::size_t books_ = 0;
  std::uint64_t updates_ = 0;
  std::uint64_t ignored_updates_ = 0;
  std::uint64_t truncated_books_ = 0;
  std::uint64_t results_ = 0;
  std::uint64_t stale_results_ = 0;
  std::uint64_t missing_fx_ = 0;
};

}  // namespace radar
