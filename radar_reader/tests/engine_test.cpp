// Unit tests of radar::Engine (engine.hpp). Every expected number is worked out
// by hand in the comment above its check, from the definitions at the top of
// engine.hpp; none is produced by the code under test.
#include "radar_reader/engine.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "check.hpp"

namespace {

using radar::BookView;
using radar::Engine;
using radar::EngineConfig;
using radar::Level;
using radar::Result;

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr double kNotional = 10'000'000;  // the default notional, KRW

// Levels owned by the test; views into them are handed to the engine.
struct Sides {
  std::vector<Level> bids;
  std::vector<Level> asks;
};

BookView view_of(std::string_view exchange, std::string_view symbol, std::int64_t local_ns,
                 const Sides& sides) {
  BookView view;
  view.exchange = exchange;
  view.symbol = symbol;
  view.local_timestamp_ns = local_ns;
  view.timestamp_ms = local_ns / 1'000'000;
  view.bids = sides.bids.data();
  view.n_bids = sides.bids.size();
  view.asks = sides.asks.data();
  view.n_asks = sides.asks.size();
  return view;
}

// One update at now_ns == local_ns (a book just received); returns its results.
std::vector<Result> feed(Engine& engine, std::string_view exchange, std::string_view symbol,
                         std::int64_t local_ns, const Sides& sides) {
  std::vector<Result> out;
  engine.update(view_of(exchange, symbol, local_ns, sides), local_ns, out);
  return out;
}

EngineConfig fixed_fx_config(double fx) {
  EngineConfig config;
  config.fixed_fx = fx;
  return config;
}

// Books shared by the premium tests.
//   upbit   BTC-KRW:  bid 149,000,000  ask 151,000,000  -> mid 150,000,000 KRW
//   binance BTC-USDT: bid 99,990       ask 100,010      -> mid 100,000 USDT
//   upbit   USDT-KRW: bid 1,399        ask 1,401        -> mid 1,400 KRW per USDT
const Sides kUpbitBtcKrw{{{149'000'000, 1}}, {{151'000'000, 1}}};
const Sides kBinanceBtcUsdt{{{99'990, 1}}, {{100'010, 1}}};
const Sides kUsdtKrw1400{{{1'399, 1'000'000}}, {{1'401, 1'000'000}}};

void test_premium_with_usdt_krw_book() {
  Engine engine{EngineConfig{}};
  // No pair exists until both legs of a base are known.
  CHECK(feed(engine, "upbit", "USDT-KRW", 1 * kSecond, kUsdtKrw1400).empty());
  CHECK(feed(engine, "upbit", "BTC-KRW", 2 * kSecond, kUpbitBtcKrw).empty());
  const std::vector<Result> out = feed(engine, "binance", "BTC-USDT", 3 * kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 1);
  if (out.size() != 1) return;
  const Result& r = out[0];
  CHECK(r.base == "BTC");
  CHECK(r.krw_exchange == "upbit");
  CHECK(r.usdt_exchange == "binance");
  CHECK(r.timestamp_ns == 3 * kSecond);
  CHECK(r.source_local_timestamp_ns == 3 * kSecond);
  CHECK(r.notional_krw == kNotional);
  CHECK(!r.stale);
  CHECK_NEAR(r.fx, 1400.0, 0.0);
  // premium = 150,000,000 / (100,000 * 1,400) - 1 = 150/140 - 1 = 1/14 = 0.0714285714...
  CHECK_NEAR(r.kimchi_premium, 1.0 / 14.0, 1e-15);
  // Edge, no fees, fx 1400. (a) buy binance at 100,010 USDT = 140,014,000 KRW:
  //   Q = 10,000,000 / 140,014,000 = 0.0714214293 BTC (1 BTC offered, 1 BTC bid on upbit)
  //   C = 10,000,000; P = Q * 149,000,000 = 10,641,792.96
  //   edge = (149,000,000 / 140,014,000 - 1) * 1e4 = 8,986,000 / 140,014,000 * 1e4 = 641.79296
  // (b) buy upbit at 151,000,000, sell binance at 99,990 * 1400 = 139,986,000:
  //   edge = (139,986,000 / 151,000,000 - 1) * 1e4 = -729.40397. (a) is better.
  CHECK(r.buy_exchange == "binance");
  CHECK(r.sell_exchange == "upbit");
  CHECK_NEAR(r.edge_bps, 8'986'000.0 / 140'014'000.0 * 1e4, 1e-9);
  CHECK_NEAR(r.fill_base_quantity, 10'000'000.0 / 140'014'000.0, 1e-15);
  CHECK(engine.books() == 3);
  CHECK(engine.missing_fx() == 0);
  CHECK(engine.results() == 1);
}

void test_premium_with_fixed_fx() {
  Engine engine{fixed_fx_config(1350)};
  feed(engine, "upbit", "BTC-KRW", 1 * kSecond, kUpbitBtcKrw);
  std::vector<Result> out = feed(engine, "binance", "BTC-USDT", 1 * kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 1);
  if (out.size() != 1) return;
  // premium = 150,000,000 / (100,000 * 1,350) - 1 = 150/135 - 1 = 1/9 = 0.1111...
  CHECK_NEAR(out[0].fx, 1350.0, 0.0);
  CHECK_NEAR(out[0].kimchi_premium, 1.0 / 9.0, 1e-15);
  // A USDT-KRW book (mid 1,400) changes nothing under a fixed rate: no results,
  // and the next result still uses 1,350.
  CHECK(feed(engine, "upbit", "USDT-KRW", 2 * kSecond, kUsdtKrw1400).empty());
  out = feed(engine, "upbit", "BTC-KRW", 2 * kSecond, kUpbitBtcKrw);
  CHECK(out.size() == 1);
  if (out.size() == 1) CHECK_NEAR(out[0].kimchi_premium, 1.0 / 9.0, 1e-15);
}

// Fees: binance 10 bps (x1.001 buying, x0.999 selling), upbit 5 bps (x1.0005, x0.9995);
// fx fixed at 1,000 so 1 USDT = 1,000 KRW.
EngineConfig fees_config() {
  EngineConfig config = fixed_fx_config(1000);
  config.taker_fee_bps = {{"binance", 10.0}, {"upbit", 5.0}};
  return config;
}

void test_edge_both_directions_with_fees() {
  // BTC: KRW rich, so (a) buy binance / sell upbit wins.
  //   binance asks: 10,000 USDT x 0.5, 10,010 USDT x 2    bids: 9,990 USDT x 3
  //   upbit   bids: 10,300,000 x 0.6, 10,290,000 x 2      asks: 10,400,000 x 3
  const Sides binance_btc{{{9'990, 3}}, {{10'000, 0.5}, {10'010, 2}}};
  const Sides upbit_btc{{{10'300'000, 0.6}, {10'290'000, 2}}, {{10'400'000, 3}}};
  // (a) buy binance: level 1 costs 10,000,000 * 1.001 = 10,010,000 a BTC, 0.5 BTC
  //     = 5,005,000, leaving 4,995,000; level 2 costs 10,010,000 * 1.001 = 10,020,010
  //     a BTC: 4,995,000 / 10,020,010 = 0.4985024965 more.
  //     Q = 0.9985024965 (upbit bids hold 2.6), C = 10,000,000 (the whole notional)
  //     P = (0.6 * 10,300,000 + 0.3985024965 * 10,290,000) * 0.9995
  //       = (6,180,000 + 4,100,590.689) * 0.9995 = 10,275,450.394
  //     edge = 275,450.394 / 10,000,000 * 1e4 = 275.45039 bps
  const double btc_q = 0.5 + 4'995'000.0 / 10'020'010.0;
  const double btc_a = ((6'180'000 + (btc_q - 0.6) * 10'290'000) * 0.9995 - 1e7) / 1e7 * 1e4;
  CHECK_NEAR(btc_a, 275.45039368673287, 1e-9);  // the arithmetic above, evaluated
  // (b) buy upbit at 10,400,000 * 1.0005 = 10,405,200: Q = 1e7 / 10,405,200 = 0.9610579
  //     P = Q * 9,990,000 * 0.999 = Q * 9,980,010 = 9,591,367.78
  //     edge = (9,980,010 / 10,405,200 - 1) * 1e4 = -408.63222 bps
  const double btc_b = (9'980'010.0 / 10'405'200.0 - 1) * 1e4;

  // ETH: KRW cheap, so (b) buy upbit / sell binance wins.
  //   upbit   asks: 9,900,000 x 5                         bids: 9,800,000 x 5
  //   binance bids: 10,100 USDT x 0.4, 10,050 USDT x 5     asks: 10,120 USDT x 5
  const Sides upbit_eth{{{9'800'000, 5}}, {{9'900'000, 5}}};
  const Sides binance_eth{{{10'100, 0.4}, {10'050, 5}}, {{10'120, 5}}};
  // (b) buy upbit at 9,900,000 * 1.0005 = 9,904,950: Q = 1e7 / 9,904,950 = 1.0095962
  //     P = (0.4 * 10,100,000 + 0.6095962 * 10,050,000) * 0.999
  //       = (4,040,000 + 6,126,441.93) * 0.999 = 10,156,275.49
  //     edge = 156,275.49 / 1e7 * 1e4 = 156.27549 bps
  const double eth_q = 1e7 / 9'904'950.0;
  const double eth_b = ((4'040'000 + (eth_q - 0.4) * 10'050'000) * 0.999 - 1e7) / 1e7 * 1e4;
  CHECK_NEAR(eth_b, 156.2754886193267, 1e-9);
  // (a) buy binance at 10,120,000 * 1.001 = 10,130,120: Q = 0.98715514
  //     P = Q * 9,800,000 * 0.9995 = Q * 9,795,100 = 9,669,283.29
  //     edge = (9,795,100 / 10,130,120 - 1) * 1e4 = -330.71671 bps
  const double eth_a = (9'795'100.0 / 10'130'120.0 - 1) * 1e4;

  // Each direction on its own, through the public executable_edge().
  using radar::SideInKrw;
  const auto side = [](const std::vector<Level>& levels, double to_krw) {
    return SideInKrw{levels.data(), levels.size(), to_krw};
  };
  radar::Fill fill = radar::executable_edge(side(binance_btc.asks, 1000), 0.001,
                                            side(upbit_btc.bids, 1), 0.0005, kNotional);
  CHECK_NEAR(fill.edge_bps, btc_a, 1e-9);
  CHECK_NEAR(fill.base_quantity, btc_q, 1e-12);
  fill = radar::executable_edge(side(upbit_btc.asks, 1), 0.0005, side(binance_btc.bids, 1000),
                                0.001, kNotional);
  CHECK_NEAR(fill.edge_bps, btc_b, 1e-9);
  CHECK_NEAR(fill.base_quantity, 1e7 / 10'405'200.0, 1e-12);
  fill = radar::executable_edge(side(upbit_eth.asks, 1), 0.0005, side(binance_eth.bids, 1000),
                                0.001, kNotional);
  CHECK_NEAR(fill.edge_bps, eth_b, 1e-9);
  CHECK_NEAR(fill.base_quantity, eth_q, 1e-12);
  fill = radar::executable_edge(side(binance_eth.asks, 1000), 0.001, side(upbit_eth.bids, 1),
                                0.0005, kNotional);
  CHECK_NEAR(fill.edge_bps, eth_a, 1e-9);
  CHECK_NEAR(fill.base_quantity, 1e7 / 10'130'120.0, 1e-12);

  // Through the engine: the better direction of each is reported.
  Engine engine{fees_config()};
  feed(engine, "upbit", "BTC-KRW", kSecond, upbit_btc);
  std::vector<Result> out = feed(engine, "binance", "BTC-USDT", kSecond, binance_btc);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    CHECK(out[0].buy_exchange == "binance");
    CHECK(out[0].sell_exchange == "upbit");
    CHECK_NEAR(out[0].edge_bps, btc_a, 1e-9);
    CHECK_NEAR(out[0].fill_base_quantity, btc_q, 1e-12);
    // premium = mid 10,350,000 / (mid 9,995 * 1,000) - 1 = 0.035517759 (bid 9,990, ask 10,000)
    CHECK_NEAR(out[0].kimchi_premium, 10'350'000.0 / 9'995'000.0 - 1, 1e-15);
  }
  feed(engine, "upbit", "ETH-KRW", kSecond, upbit_eth);
  out = feed(engine, "binance", "ETH-USDT", kSecond, binance_eth);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    CHECK(out[0].base == "ETH");
    CHECK(out[0].buy_exchange == "upbit");
    CHECK(out[0].sell_exchange == "binance");
    CHECK_NEAR(out[0].edge_bps, eth_b, 1e-9);
    CHECK_NEAR(out[0].fill_base_quantity, eth_q, 1e-12);
  }
}

void test_partial_fill_when_asks_run_out() {
  // binance offers only 0.3 BTC at 10,000 USDT (10,000,000 KRW); upbit bids 5 at 10,300,000.
  const Sides binance{{{9'000, 1}}, {{10'000, 0.3}}};
  const Sides upbit{{{10'300'000, 5}}, {{10'400'000, 5}}};
  Engine engine{fees_config()};
  feed(engine, "upbit", "BTC-KRW", kSecond, upbit);
  const std::vector<Result> out = feed(engine, "binance", "BTC-USDT", kSecond, binance);
  CHECK(out.size() == 1);
  if (out.size() != 1) return;
  // (a) the whole ask side costs 0.3 * 10,000,000 * 1.001 = 3,003,000 < 10,000,000:
  //     Q = 0.3, C = 3,003,000, P = 0.3 * 10,300,000 * 0.9995 = 3,088,455
  //     edge = 85,455 / 3,003,000 * 1e4 = 284.56543 bps
  // (b) buy upbit at 10,405,200, sell binance at 9,000,000 * 0.999: about -1359 bps.
  CHECK(out[0].buy_exchange == "binance");
  CHECK(out[0].sell_exchange == "upbit");
  CHECK_NEAR(out[0].fill_base_quantity, 0.3, 1e-15);
  CHECK_NEAR(out[0].edge_bps, 85'455.0 / 3'003'000.0 * 1e4, 1e-9);
}

void test_partial_fill_when_bids_are_thinner() {
  // binance offers 5 BTC at 10,000 USDT; upbit bids only 0.2 at 10,300,000 and
  // 0.1 at 10,200,000.
  const Sides binance{{{9'000, 5}}, {{10'000, 5}}};
  const Sides upbit{{{10'300'000, 0.2}, {10'200'000, 0.1}}, {{10'400'000, 5}}};
  Engine engine{fees_config()};
  feed(engine, "upbit", "BTC-KRW", kSecond, upbit);
  const std::vector<Result> out = feed(engine, "binance", "BTC-USDT", kSecond, binance);
  CHECK(out.size() == 1);
  if (out.size() != 1) return;
  // (a) Q_buy = 1e7 / 10,010,000 = 0.999 BTC, but the bids hold 0.3: Q = 0.3.
  //     C is recomputed for 0.3: 0.3 * 10,010,000 = 3,003,000 (not the notional)
  //     P = (0.2 * 10,300,000 + 0.1 * 10,200,000) * 0.9995 = 3,080,000 * 0.9995 = 3,078,460
  //     edge = 75,460 / 3,003,000 * 1e4 = 251.28205 bps
  CHECK(out[0].buy_exchange == "binance");
  CHECK_NEAR(out[0].fill_base_quantity, 0.3, 1e-15);
  CHECK_NEAR(out[0].edge_bps, 75'460.0 / 3'003'000.0 * 1e4, 1e-9);
}

void test_missing_fx() {
  Engine engine{EngineConfig{}};  // no fixed rate, and no USDT-KRW book anywhere
  feed(engine, "upbit", "BTC-KRW", kSecond, kUpbitBtcKrw);
  std::vector<Result> out = feed(engine, "binance", "BTC-USDT", kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 1);
  if (out.size() != 1) return;
  CHECK(std::isnan(out[0].fx));
  CHECK(std::isnan(out[0].kimchi_premium));
  CHECK(std::isnan(out[0].edge_bps));
  CHECK(out[0].fill_base_quantity == 0);
  CHECK(out[0].buy_exchange.empty() && out[0].sell_exchange.empty());
  CHECK(!out[0].stale);
  CHECK(engine.missing_fx() == 1);
  CHECK(engine.stale_results() == 0);
  // The first USDT-KRW book re-emits the pair with FX known.
  out = feed(engine, "upbit", "USDT-KRW", 2 * kSecond, kUsdtKrw1400);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    CHECK_NEAR(out[0].fx, 1400.0, 0.0);
    CHECK_NEAR(out[0].kimchi_premium, 1.0 / 14.0, 1e-15);
    CHECK(out[0].source_local_timestamp_ns == 2 * kSecond);
  }
  CHECK(engine.missing_fx() == 1);
}

void test_fx_from_another_krw_venue() {
  Engine engine{EngineConfig{}};
  // Two other KRW venues publish USDT-KRW; upbit (the pair's KRW venue) does not yet.
  //   bithumb mid (1,379 + 1,381) / 2 = 1,380 at t = 1 s
  //   korbit  mid (1,389 + 1,391) / 2 = 1,390 at t = 2 s  <- the freshest
  feed(engine, "bithumb", "USDT-KRW", 1 * kSecond, Sides{{{1'379, 1e6}}, {{1'381, 1e6}}});
  feed(engine, "korbit", "USDT-KRW", 2 * kSecond, Sides{{{1'389, 1e6}}, {{1'391, 1e6}}});
  feed(engine, "upbit", "BTC-KRW", 3 * kSecond, kUpbitBtcKrw);
  std::vector<Result> out = feed(engine, "binance", "BTC-USDT", 3 * kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    // premium = 150,000,000 / (100,000 * 1,390) - 1 = 150/139 - 1 = 11/139 = 0.0791366906
    CHECK_NEAR(out[0].fx, 1390.0, 0.0);
    CHECK_NEAR(out[0].kimchi_premium, 11.0 / 139.0, 1e-15);
    CHECK(!out[0].stale);
  }
  // upbit's own book (mid 1,400), though older than korbit's, wins while fresh.
  std::vector<Result> ignored;
  engine.update(view_of("upbit", "USDT-KRW", kSecond / 2, kUsdtKrw1400), 3 * kSecond, ignored);
  out.clear();
  engine.update(view_of("binance", "BTC-USDT", 4 * kSecond, kBinanceBtcUsdt), 4 * kSecond, out);
  CHECK(out.size() == 1);
  if (out.size() == 1) CHECK_NEAR(out[0].fx, 1400.0, 0.0);
  // At now = 5.6 s upbit's (t = 0.5 s) is 5.1 s old, stale; bithumb's (1 s) too;
  // korbit's (2 s) is 3.6 s old: the freshest fresh one, 1,390. Not flagged stale:
  // the FX used is fresh.
  const std::int64_t now = 5'600'000'000;
  out.clear();
  engine.update(view_of("binance", "BTC-USDT", now, kBinanceBtcUsdt), now, out);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    CHECK_NEAR(out[0].fx, 1390.0, 0.0);
    CHECK(!out[0].stale);  // the BTC-KRW leg (3 s) is 2.6 s old
  }
}

void test_stale_books() {
  // A leg exactly at the limit is fresh (age > stale_ns is stale, strictly).
  Engine engine{fixed_fx_config(1400)};
  feed(engine, "upbit", "BTC-KRW", 0, kUpbitBtcKrw);
  std::vector<Result> out = feed(engine, "binance", "BTC-USDT", 5 * kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    CHECK(!out[0].stale);  // upbit's age: 5 s - 0 = 5,000,000,000 ns, not > 5e9
    CHECK_NEAR(out[0].kimchi_premium, 1.0 / 14.0, 1e-15);
  }
  // One nanosecond later the upbit leg is stale: still emitted, flagged, no numbers.
  out = feed(engine, "binance", "BTC-USDT", 5 * kSecond + 1, kBinanceBtcUsdt);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    CHECK(out[0].stale);
    CHECK_NEAR(out[0].fx, 1400.0, 0.0);  // the fixed rate is still known
    CHECK(std::isnan(out[0].kimchi_premium));
    CHECK(std::isnan(out[0].edge_bps));
    CHECK(out[0].fill_base_quantity == 0);
    CHECK(out[0].buy_exchange.empty());
  }
  CHECK(engine.stale_results() == 1);

  // The only FX book is stale: the result is stale (not "missing FX"), fx NaN.
  Engine by_book{EngineConfig{}};
  feed(by_book, "upbit", "USDT-KRW", 0, kUsdtKrw1400);
  feed(by_book, "upbit", "BTC-KRW", 6 * kSecond, kUpbitBtcKrw);
  out = feed(by_book, "binance", "BTC-USDT", 6 * kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    CHECK(out[0].stale);
    CHECK(std::isnan(out[0].fx));
    CHECK(std::isnan(out[0].kimchi_premium));
    CHECK(std::isnan(out[0].edge_bps));
  }
  CHECK(by_book.missing_fx() == 0);
  CHECK(by_book.stale_results() == 1);
}

void test_staleness_on_a_clock_of_its_own() {
  // A replay: books an hour old, read now. On the wall clock both legs are stale;
  // on the data clock (the latest local_timestamp_ns read) they are 2 s apart, fresh.
  const std::int64_t hour_ago = 1'700'000'000 * kSecond;
  const std::int64_t wall = hour_ago + 3600 * kSecond;
  Engine engine{EngineConfig{}};
  std::vector<Result> out;
  engine.update(view_of("upbit", "USDT-KRW", hour_ago, kUsdtKrw1400), wall, hour_ago, out);
  engine.update(view_of("upbit", "BTC-KRW", hour_ago + 1 * kSecond, kUpbitBtcKrw), wall,
                hour_ago + 1 * kSecond, out);
  CHECK(out.empty());
  engine.update(view_of("binance", "BTC-USDT", hour_ago + 2 * kSecond, kBinanceBtcUsdt), wall,
                hour_ago + 2 * kSecond, out);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    const Result& r = out[0];
    CHECK(!r.stale);  // ages on the data clock: FX 2 s, upbit 1 s, binance 0: all <= 5 s
    CHECK(r.timestamp_ns == wall);  // stamped with now_ns, not the data clock
    CHECK_NEAR(r.fx, 1400.0, 0.0);
    // 150,000,000 / (100,000 * 1400) - 1 = 1/14, as test_premium_with_usdt_krw_book
    CHECK_NEAR(r.kimchi_premium, 1.0 / 14.0, 1e-15);
    CHECK(r.source_local_timestamp_ns == hour_ago + 2 * kSecond);
    // The older leg is upbit's BTC-KRW (the FX book is not a leg).
    CHECK(r.oldest_leg_local_timestamp_ns == hour_ago + 1 * kSecond);
  }
  CHECK(engine.stale_results() == 0);
  // The same books on the wall clock (update without a clock of its own): stale.
  out.clear();
  engine.update(view_of("binance", "BTC-USDT", hour_ago + 2 * kSecond, kBinanceBtcUsdt), wall,
                out);
  CHECK(out.size() == 1);
  if (out.size() == 1) CHECK(out[0].stale && std::isnan(out[0].kimchi_premium));
  // Data clock 6.5 s after the upbit leg: stale (> 5 s) on it too.
  out.clear();
  engine.update(view_of("binance", "BTC-USDT", hour_ago + 7 * kSecond + kSecond / 2,
                        kBinanceBtcUsdt),
                wall, hour_ago + 7 * kSecond + kSecond / 2, out);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    CHECK(out[0].stale);
    CHECK(out[0].oldest_leg_local_timestamp_ns == hour_ago + 1 * kSecond);
  }
}

void test_empty_side() {
  Engine engine{fixed_fx_config(1000)};
  // upbit has bids only; binance both sides. No fees.
  const Sides upbit_bids_only{{{10'300'000, 1}}, {}};
  const Sides binance{{{9'990, 5}}, {{10'000, 5}}};
  feed(engine, "upbit", "BTC-KRW", kSecond, upbit_bids_only);
  std::vector<Result> out = feed(engine, "binance", "BTC-USDT", kSecond, binance);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    CHECK(std::isnan(out[0].kimchi_premium));  // upbit's mid is unknown
    // (b) needs upbit's asks: no depth. (a) buy binance at 10,000 * 1000 = 10,000,000:
    //     Q = 1e7 / 1e7 = 1 BTC, upbit bids hold 1: Q = 1, C = 10,000,000,
    //     P = 10,300,000, edge = 300,000 / 10,000,000 * 1e4 = 300 bps.
    CHECK(out[0].buy_exchange == "binance");
    CHECK(out[0].sell_exchange == "upbit");
    CHECK_NEAR(out[0].edge_bps, 300.0, 1e-9);
    CHECK_NEAR(out[0].fill_base_quantity, 1.0, 1e-15);
    CHECK(!out[0].stale);
  }
  // binance loses its asks: (a) has nothing to buy, (b) still nothing: no edge at all.
  const Sides binance_bids_only{{{9'990, 5}}, {}};
  out = feed(engine, "binance", "BTC-USDT", kSecond, binance_bids_only);
  CHECK(out.size() == 1);
  if (out.size() == 1) {
    CHECK(std::isnan(out[0].kimchi_premium));
    CHECK(std::isnan(out[0].edge_bps));
    CHECK(out[0].fill_base_quantity == 0);
    CHECK(out[0].buy_exchange.empty() && out[0].sell_exchange.empty());
    CHECK(!out[0].stale);
  }
}

void test_one_result_per_pair() {
  Engine engine{fixed_fx_config(1400)};
  // BTC on 2 KRW venues and 3 USDT venues; ETH on one of each.
  for (const char* venue : {"upbit", "bithumb"}) {
    feed(engine, venue, "BTC-KRW", kSecond, kUpbitBtcKrw);
  }
  for (const char* venue : {"okx", "binance", "bybit"}) {
    feed(engine, venue, "BTC-USDT", kSecond, kBinanceBtcUsdt);
  }
  feed(engine, "upbit", "ETH-KRW", kSecond, kUpbitBtcKrw);
  feed(engine, "binance", "ETH-USDT", kSecond, kBinanceBtcUsdt);
  CHECK(engine.books() == 7);

  // A KRW book: one result per USDT venue of its base, by venue name.
  std::vector<Result> out = feed(engine, "upbit", "BTC-KRW", 2 * kSecond, kUpbitBtcKrw);
  CHECK(out.size() == 3);
  if (out.size() == 3) {
    CHECK(out[0].usdt_exchange == "binance");
    CHECK(out[1].usdt_exchange == "bybit");
    CHECK(out[2].usdt_exchange == "okx");
    for (const Result& r : out) {
      CHECK(r.base == "BTC" && r.krw_exchange == "upbit");
      CHECK_NEAR(r.kimchi_premium, 1.0 / 14.0, 1e-15);
    }
  }
  // A USDT book: one result per KRW venue of its base.
  out = feed(engine, "bybit", "BTC-USDT", 2 * kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 2);
  if (out.size() == 2) {
    CHECK(out[0].krw_exchange == "bithumb" && out[0].usdt_exchange == "bybit");
    CHECK(out[1].krw_exchange == "upbit" && out[1].usdt_exchange == "bybit");
  }
  out = feed(engine, "binance", "ETH-USDT", 2 * kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 1);

  // An FX book (no fixed rate) re-emits every pair of every base: 2 x 3 + 1 x 1 = 7.
  Engine by_book{EngineConfig{}};
  for (const char* venue : {"upbit", "bithumb"}) feed(by_book, venue, "BTC-KRW", 0, kUpbitBtcKrw);
  for (const char* venue : {"okx", "binance", "bybit"}) {
    feed(by_book, venue, "BTC-USDT", 0, kBinanceBtcUsdt);
  }
  feed(by_book, "upbit", "ETH-KRW", 0, kUpbitBtcKrw);
  feed(by_book, "binance", "ETH-USDT", 0, kBinanceBtcUsdt);
  out = feed(by_book, "bithumb", "USDT-KRW", kSecond, kUsdtKrw1400);
  CHECK(out.size() == 7);
  if (out.size() == 7) {
    CHECK(out[0].base == "BTC" && out[0].krw_exchange == "bithumb" &&
          out[0].usdt_exchange == "binance");
    CHECK(out[5].base == "BTC" && out[5].krw_exchange == "upbit" &&
          out[5].usdt_exchange == "okx");
    CHECK(out[6].base == "ETH" && out[6].krw_exchange == "upbit" &&
          out[6].usdt_exchange == "binance");
    // upbit has no USDT-KRW book: its pairs use bithumb's, the only one.
    for (const Result& r : out) {
      CHECK_NEAR(r.fx, 1400.0, 0.0);
      CHECK(r.source_local_timestamp_ns == kSecond);
    }
  }

  // A venue publishing both BTC-KRW and BTC-USDT is in both roles: it pairs with
  // the other side's venues and with itself.
  out = feed(engine, "upbit", "BTC-USDT", 3 * kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 2);
  if (out.size() == 2) {
    CHECK(out[0].krw_exchange == "bithumb" && out[0].usdt_exchange == "upbit");
    CHECK(out[1].krw_exchange == "upbit" && out[1].usdt_exchange == "upbit");
  }
}

void test_truncation_and_copy() {
  Engine engine{fixed_fx_config(1400)};
  // 40 bids (beyond the 32-level capacity): 100,000,000 - i * 1,000 for i = 0..39.
  Sides deep;
  for (int i = 0; i < 40; ++i) deep.bids.push_back({100'000'000.0 - i * 1'000.0, 1});
  deep.asks = {{100'001'000, 1}};
  feed(engine, "upbit", "BTC-KRW", kSecond, deep);
  CHECK(engine.truncated_books() == 1);
  const radar::Book* book = engine.find_book("upbit", "BTC-KRW");
  CHECK(book != nullptr);
  if (book != nullptr) {
    CHECK(book->n_bids == radar::kMaxLevelsPerSide);
    CHECK(book->n_asks == 1);
    // The 32nd kept level is i = 31: 100,000,000 - 31,000 = 99,969,000.
    CHECK_NEAR(book->bids[31].price, 99'969'000.0, 0.0);
  }
  // The engine keeps a copy: changing the caller's memory changes nothing.
  deep.bids[0].price = 1;
  if (book != nullptr) CHECK_NEAR(book->bids[0].price, 100'000'000.0, 0.0);
  // Exactly at capacity is not truncated; deep asks count the same as deep bids.
  Sides full;
  for (int i = 0; i < 32; ++i) full.bids.push_back({100'000'000.0 - i * 1'000.0, 1});
  full.asks = {{100'001'000, 1}};
  feed(engine, "upbit", "BTC-KRW", kSecond, full);
  CHECK(engine.truncated_books() == 1);
  std::swap(full.bids, full.asks);
  full.asks.push_back(full.asks.back());
  feed(engine, "bithumb", "BTC-KRW", kSecond, full);  // 33 asks
  CHECK(engine.truncated_books() == 2);
  CHECK(engine.books() == 2);
  CHECK(engine.find_book("binance", "BTC-USDT") == nullptr);
}

void test_ignored_symbols() {
  Engine engine{EngineConfig{}};
  const Sides sides{{{1, 1}}, {{2, 1}}};
  for (const char* symbol : {"BTC-USDC", "BTCKRW", "-KRW", "BTC-", "USDT-USDT", "A-B-KRW"}) {
    CHECK(feed(engine, "upbit", symbol, 0, sides).empty());
  }
  CHECK(feed(engine, "", "BTC-KRW", 0, sides).empty());
  CHECK(engine.ignored_updates() == 7);
  CHECK(engine.updates() == 7);
  CHECK(engine.books() == 0);
}

void test_config_validation() {
  const auto rejects = [](EngineConfig config) {
    try {
      Engine engine{std::move(config)};
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  EngineConfig config;
  CHECK(!rejects(config));
  config.notional_krw = 0;
  CHECK(rejects(config));
  config = EngineConfig{};
  config.fixed_fx = std::nan("");
  CHECK(rejects(config));
  config = EngineConfig{};
  config.taker_fee_bps = {{"upbit", 10'000}};
  CHECK(rejects(config));
  config = EngineConfig{};
  config.stale_ns = -1;
  CHECK(rejects(config));
}

// Same bits (NaNs included): the shortcut must give exactly the walk's numbers.
bool same_bits(double a, double b) {
  std::uint64_t x = 0;
  std::uint64_t y = 0;
  std::memcpy(&x, &a, sizeof x);
  std::memcpy(&y, &b, sizeof y);
  return x == y;
}

bool same_fill(const radar::Fill& a, const radar::Fill& b) {
  return same_bits(a.edge_bps, b.edge_bps) && same_bits(a.base_quantity, b.base_quantity);
}

void test_best_levels_shortcut_at_its_edges() {
  using radar::SideInKrw;
  // Ask 1 BTC at 10,000,000 KRW, no fee: the level costs exactly the notional, which
  // it covers (level cost >= budget), so Q = 1e7 / 1e7 = 1, from the best level.
  // Bid 1 BTC at 10,100,000: it takes exactly Q. P = 10,100,000, C = 10,000,000:
  // edge = 100,000 / 10,000,000 * 1e4 = 100 bps.
  const std::vector<Level> ask{{10'000'000, 1}, {10'500'000, 5}};
  const std::vector<Level> bid{{10'100'000, 1}, {9'000'000, 5}};
  const SideInKrw asks{ask.data(), ask.size(), 1.0};
  const SideInKrw bids{bid.data(), bid.size(), 1.0};
  CHECK(radar::detail::best_levels_edge(asks, 0, bids, 0, kNotional).has_value());
  radar::Fill fill = radar::executable_edge(asks, 0, bids, 0, kNotional);
  CHECK_NEAR(fill.edge_bps, 100.0, 0.0);
  CHECK_NEAR(fill.base_quantity, 1.0, 0.0);
  CHECK(same_fill(fill, radar::detail::walk_edge(asks, 0, bids, 0, kNotional)));

  // One ulp less on the best bid: it no longer takes all of Q, the walk goes on to
  // the second bid (1 - 2^-53 at 10,100,000, 2^-53 at 9,000,000).
  const std::vector<Level> thin_bid{{10'100'000, std::nextafter(1.0, 0.0)}, {9'000'000, 5}};
  const SideInKrw thin_bids{thin_bid.data(), thin_bid.size(), 1.0};
  CHECK(!radar::detail::best_levels_edge(asks, 0, thin_bids, 0, kNotional).has_value());
  fill = radar::executable_edge(asks, 0, thin_bids, 0, kNotional);
  CHECK_NEAR(fill.base_quantity, 1.0, 0.0);
  CHECK_NEAR(fill.edge_bps, 100.0, 1e-9);  // 1.1e-16 BTC sold 1,100,000 KRW lower
  CHECK(same_fill(fill, radar::detail::walk_edge(asks, 0, thin_bids, 0, kNotional)));

  // A best ask worth less than the notional: the walk buys into the second level.
  // 0.5 BTC cost 5,000,000; the other 5,000,000 buy 5e6 / 10,500,000 = 0.476190476 BTC.
  const std::vector<Level> thin_ask{{10'000'000, 0.5}, {10'500'000, 5}};
  const SideInKrw thin_asks{thin_ask.data(), thin_ask.size(), 1.0};
  CHECK(!radar::detail::best_levels_edge(thin_asks, 0, bids, 0, kNotional).has_value());
  fill = radar::executable_edge(thin_asks, 0, bids, 0, kNotional);
  CHECK_NEAR(fill.base_quantity, 0.5 + 5e6 / 10'500'000.0, 1e-15);
  CHECK(same_fill(fill, radar::detail::walk_edge(thin_asks, 0, bids, 0, kNotional)));

  // Empty sides and a non-positive notional leave it to the walk (which finds nothing).
  const SideInKrw none{nullptr, 0, 1.0};
  CHECK(!radar::detail::best_levels_edge(none, 0, bids, 0, kNotional).has_value());
  CHECK(!radar::detail::best_levels_edge(asks, 0, none, 0, kNotional).has_value());
  CHECK(!radar::detail::best_levels_edge(asks, 0, bids, 0, 0).has_value());
  CHECK(std::isnan(radar::executable_edge(none, 0, bids, 0, kNotional).edge_bps));
  CHECK(std::isnan(radar::executable_edge(asks, 0, bids, 0, 0).edge_bps));
}

void test_best_levels_shortcut_equals_the_walk() {
  // Random books, some thin at the top and some not, USDT or KRW legs, fees and
  // rebates: executable_edge (shortcut when it applies) and the level-by-level walk
  // agree to the bit, and both paths are exercised.
  using radar::SideInKrw;
  std::mt19937_64 rng(20240601);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double fees[] = {-0.0002, 0.0, 0.0005, 0.001, 0.0025};
  int shortcut = 0;
  int walked = 0;
  for (int trial = 0; trial < 20'000; ++trial) {
    const double to_krw = trial % 2 == 0 ? 1.0 : 1'300 + 200 * unit(rng);
    const double mid = 1e5 + 1e8 * unit(rng);  // KRW
    // Levels worth, in KRW, up to three notionals (the best level then holds the
    // notional two times in three), sometimes nothing.
    const auto side = [&](double best, double step) {
      std::vector<Level> levels(rng() % 5);
      for (std::size_t i = 0; i < levels.size(); ++i) {
        const double price = (best + step * static_cast<double>(i)) / to_krw;
        const double krw = rng() % 10 == 0 ? 0.0 : 3 * kNotional * unit(rng);
        levels[i] = {price, krw / (price * to_krw)};
      }
      return levels;
    };
    const std::vector<Level> ask = side(mid * 1.001, mid * 1e-4);
    const std::vector<Level> bid = side(mid * 0.999, -mid * 1e-4);
    const SideInKrw asks{ask.data(), ask.size(), to_krw};
    const SideInKrw bids{bid.data(), bid.size(), trial % 3 == 0 ? 1.0 : to_krw};
    const double buy_fee = fees[rng() % 5];
    const double sell_fee = fees[rng() % 5];
    const radar::Fill walk = radar::detail::walk_edge(asks, buy_fee, bids, sell_fee, kNotional);
    const radar::Fill fill = radar::executable_edge(asks, buy_fee, bids, sell_fee, kNotional);
    if (!same_fill(fill, walk)) {
      std::fprintf(stderr, "trial %d: edge %.17g vs walk %.17g, quantity %.17g vs %.17g\n",
                   trial, fill.edge_bps, walk.edge_bps, fill.base_quantity, walk.base_quantity);
    }
    CHECK(same_fill(fill, walk));
    if (radar::detail::best_levels_edge(asks, buy_fee, bids, sell_fee, kNotional)) {
      ++shortcut;
    } else {
      ++walked;
    }
  }
  CHECK(shortcut > 2'000);
  CHECK(walked > 2'000);
}

void test_names_of_every_length() {
  // Names are keyed by their first and last bytes (engine.hpp, NameKey): every
  // length from 1 to 24, and for each a variant differing in one byte at each
  // position (the middle bytes of names over 16 bytes are not in the key), are
  // distinct books. About 300 books also make the table grow several times.
  Engine engine{fixed_fx_config(1000)};
  const std::string alphabet = "abcdefghijklmnopqrstuvwx";
  std::vector<std::string> names;
  for (std::size_t size = 1; size <= alphabet.size(); ++size) {
    names.push_back(alphabet.substr(0, size));
    for (std::size_t at = 0; at < size; ++at) {
      std::string variant = alphabet.substr(0, size);
      variant[at] = '#';
      names.push_back(variant);
    }
  }
  // Each venue's BTC-KRW best bid is 1,000 + its index.
  for (std::size_t i = 0; i < names.size(); ++i) {
    const Sides sides{{{1'000.0 + static_cast<double>(i), 1}}, {{5'000'000, 1}}};
    CHECK(feed(engine, names[i], "BTC-KRW", kSecond, sides).empty());
  }
  CHECK(engine.books() == names.size());
  bool all_found = true;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const radar::Book* book = engine.find_book(names[i], "BTC-KRW");
    all_found = all_found && book != nullptr &&
                book->bids[0].price == 1'000.0 + static_cast<double>(i);
  }
  CHECK(all_found);
  CHECK(engine.find_book("abcdefghijklmnopq##", "BTC-KRW") == nullptr);  // two bytes off
  CHECK(engine.find_book("upbit", "BTC-KRW") == nullptr);

  // Long symbols too: two 17-letter bases equal but for their middle byte.
  const std::string base_a = "ABCDEFGHIJKLMNOPQ";
  const std::string base_b = "ABCDEFGH#JKLMNOPQ";
  feed(engine, "upbit", base_a + "-KRW", kSecond, kUpbitBtcKrw);
  feed(engine, "upbit", base_b + "-KRW", kSecond, kUpbitBtcKrw);
  std::vector<Result> out = feed(engine, "binance", base_b + "-USDT", kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 1);
  if (out.size() == 1) CHECK(out[0].base == base_b);
  out = feed(engine, "binance", base_a + "-USDT", kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 1);
  if (out.size() == 1) CHECK(out[0].base == base_a);
  CHECK(engine.find_book("upbit", base_a + "-KRW") != engine.find_book("upbit", base_b + "-KRW"));
}

void test_result_names_outlive_growth() {
  // A Result's names view the engine's own strings: they stay valid while the
  // engine grows by hundreds of venues and bases (under ASan a moved string
  // would be a use after free).
  Engine engine{fixed_fx_config(1400)};
  feed(engine, "upbit", "BTC-KRW", kSecond, kUpbitBtcKrw);
  const std::vector<Result> first = feed(engine, "binance", "BTC-USDT", kSecond, kBinanceBtcUsdt);
  for (int i = 0; i < 300; ++i) {
    const std::string venue = "venue-with-a-long-name-" + std::to_string(i);
    feed(engine, venue, "BTC-USDT", kSecond, kBinanceBtcUsdt);
    feed(engine, venue, "BASE" + std::to_string(i) + "-KRW", kSecond, kUpbitBtcKrw);
  }
  CHECK(engine.books() == 602);
  CHECK(first.size() == 1);
  if (first.size() == 1) {
    CHECK(first[0].base == "BTC");
    CHECK(first[0].krw_exchange == "upbit");
    CHECK(first[0].usdt_exchange == "binance");
    CHECK(first[0].buy_exchange == "binance");
    CHECK(first[0].sell_exchange == "upbit");
  }
  static_assert(!std::is_copy_constructible_v<Engine> && !std::is_move_constructible_v<Engine>,
                "results point into the engine: it stays where it is");
}

void test_order_does_not_depend_on_first_sight() {
  // Bases and venues first seen in reverse name order still come out by name.
  Engine engine{EngineConfig{}};
  feed(engine, "upbit", "USDT-KRW", 0, kUsdtKrw1400);
  for (const char* base : {"XRP", "ETH", "BTC"}) {
    for (const char* venue : {"upbit", "korbit", "bithumb"}) {
      feed(engine, venue, std::string(base) + "-KRW", 0, kUpbitBtcKrw);
    }
    for (const char* venue : {"okx", "bybit", "binance"}) {
      feed(engine, venue, std::string(base) + "-USDT", 0, kBinanceBtcUsdt);
    }
  }
  const std::vector<Result> out = feed(engine, "upbit", "USDT-KRW", kSecond, kUsdtKrw1400);
  CHECK(out.size() == 27);  // 3 bases x 3 KRW venues x 3 USDT venues
  bool ordered = true;
  for (std::size_t i = 1; i < out.size(); ++i) {
    const auto key = [](const Result& r) {
      return std::string(r.base) + ' ' + std::string(r.krw_exchange) + ' ' +
             std::string(r.usdt_exchange);
    };
    ordered = ordered && key(out[i - 1]) < key(out[i]);
  }
  CHECK(ordered);
  if (out.size() == 27) {
    CHECK(out[0].base == "BTC" && out[0].krw_exchange == "bithumb" &&
          out[0].usdt_exchange == "binance");
    CHECK(out[26].base == "XRP" && out[26].krw_exchange == "upbit" &&
          out[26].usdt_exchange == "okx");
  }
}

void test_fx_per_krw_venue_within_one_update() {
  Engine engine{EngineConfig{}};
  // Equal timestamps: the tie goes to the first venue by name, bithumb (mid 1,380),
  // although korbit (mid 1,390) was seen first.
  feed(engine, "korbit", "USDT-KRW", 1 * kSecond, Sides{{{1'389, 1e6}}, {{1'391, 1e6}}});
  feed(engine, "bithumb", "USDT-KRW", 1 * kSecond, Sides{{{1'379, 1e6}}, {{1'381, 1e6}}});
  feed(engine, "upbit", "USDT-KRW", 2 * kSecond, kUsdtKrw1400);
  feed(engine, "coinone", "BTC-KRW", 2 * kSecond, kUpbitBtcKrw);
  feed(engine, "upbit", "BTC-KRW", 2 * kSecond, kUpbitBtcKrw);
  // One USDT book, two KRW venues: coinone has no USDT-KRW book and takes the
  // freshest (upbit's, 2 s, 1,400); upbit its own.
  std::vector<Result> out = feed(engine, "binance", "BTC-USDT", 2 * kSecond, kBinanceBtcUsdt);
  CHECK(out.size() == 2);
  if (out.size() == 2) {
    CHECK(out[0].krw_exchange == "coinone");
    CHECK_NEAR(out[0].fx, 1400.0, 0.0);
    CHECK(out[1].krw_exchange == "upbit");
    CHECK_NEAR(out[1].fx, 1400.0, 0.0);
  }
  // Refresh korbit and bithumb at 5 s (equal again). At 7.5 s upbit's own FX (2 s)
  // is 5.5 s old, stale: both KRW venues fall back to the same tie, won by bithumb,
  // 1,380, fresh (2.5 s), so the results are not stale.
  feed(engine, "korbit", "USDT-KRW", 5 * kSecond, Sides{{{1'389, 1e6}}, {{1'391, 1e6}}});
  feed(engine, "bithumb", "USDT-KRW", 5 * kSecond, Sides{{{1'379, 1e6}}, {{1'381, 1e6}}});
  out.clear();
  const std::int64_t later = 7'500'000'000;
  feed(engine, "upbit", "BTC-KRW", later, kUpbitBtcKrw);
  feed(engine, "coinone", "BTC-KRW", later, kUpbitBtcKrw);
  engine.update(view_of("binance", "BTC-USDT", later, kBinanceBtcUsdt), later, out);
  CHECK(out.size() == 2);
  for (const Result& r : out) {
    CHECK_NEAR(r.fx, 1380.0, 0.0);
    CHECK(!r.stale);
    // premium = 150,000,000 / (100,000 * 1,380) - 1 = 150/138 - 1 = 2/23
    CHECK_NEAR(r.kimchi_premium, 2.0 / 23.0, 1e-15);
  }
  // At 10.5 s every USDT-KRW book is stale (5 s ago at best): both results of the update are stale
  // with fx NaN, and none counts as missing FX.
  const std::int64_t much_later = 10'500'000'000;
  feed(engine, "upbit", "BTC-KRW", much_later, kUpbitBtcKrw);
  feed(engine, "coinone", "BTC-KRW", much_later, kUpbitBtcKrw);
  const std::uint64_t missing_before = engine.missing_fx();
  out.clear();
  engine.update(view_of("binance", "BTC-USDT", much_later, kBinanceBtcUsdt), much_later, out);
  CHECK(out.size() == 2);
  for (const Result& r : out) {
    CHECK(r.stale);
    CHECK(std::isnan(r.fx));
    CHECK(std::isnan(r.kimchi_premium));
  }
  CHECK(engine.missing_fx() == missing_before);
}

void test_ignored_updates_are_not_remembered() {
  Engine engine{EngineConfig{}};
  const Sides sides{{{1, 1}}, {{2, 1}}};
  for (int i = 0; i < 3; ++i) CHECK(feed(engine, "upbit", "BTC-USDC", 0, sides).empty());
  CHECK(engine.ignored_updates() == 3);
  CHECK(engine.books() == 0);
  CHECK(engine.find_book("upbit", "BTC-USDC") == nullptr);
  // The same venue with a symbol it keeps is then a book like any other.
  CHECK(feed(engine, "upbit", "BTC-KRW", 0, sides).empty());
  CHECK(engine.books() == 1);
  CHECK(engine.ignored_updates() == 3);
}

}  // namespace

int main() {
  test_premium_with_usdt_krw_book();
  test_premium_with_fixed_fx();
  test_edge_both_directions_with_fees();
  test_partial_fill_when_asks_run_out();
  test_partial_fill_when_bids_are_thinner();
  test_missing_fx();
  test_fx_from_another_krw_venue();
  test_stale_books();
  test_staleness_on_a_clock_of_its_own();
  test_empty_side();
  test_one_result_per_pair();
  test_truncation_and_copy();
  test_ignored_symbols();
  test_config_validation();
  test_best_levels_shortcut_at_its_edges();
  test_best_levels_shortcut_equals_the_walk();
  test_names_of_every_length();
  test_result_names_outlive_growth();
  test_order_does_not_depend_on_first_sight();
  test_fx_per_krw_venue_within_one_update();
  test_ignored_updates_are_not_remembered();
  TEST_MAIN_END("engine_test");
}
