// The venue (exchange) names order-book journals carry.
//
// Collectors normalise every exchange name at the edge (journal/symbols.py,
// normalize_exchange) and refuse any name not in journal.symbols.VENUES, so these
// are the only names the radar ever meets. kKnownVenues mirrors that list:
// tests/test_radar_cli.py compares it with Python's (`radar --print-venues`), so a
// venue added on one side only fails the tests. The radar refuses a --fee for any
// other name: a typo (`--fee upbt=5`) would otherwise leave the venue's fee at 0 and
// overstate every edge through it.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace radar {

// In journal.symbols.VENUES order. bybit-futures (Bybit's USDT linear perpetuals) is
// paired like binance-futures: by base and quote, as every venue is.
inline constexpr std::array<std::string_view, 6> kKnownVenues{
    "upbit", "bithumb", "binance", "binance-futures", "bybit", "bybit-futures"};

inline bool known_venue(std::string_view name) {
  return std::find(kKnownVenues.begin(), kKnownVenues.end(), name) != kKnownVenues.end();
}

// "binance, binance-futures, bithumb, bybit, bybit-futures, upbit": by name, for messages.
inline std::string known_venues_text() {
  std::vector<std::string_view> names(kKnownVenues.begin(), kKnownVenues.end());
  std::sort(names.begin(), names.end());
  std::string text;
  for (const std::string_view name : names) {
    if (!text.empty()) text += ", ";
    text += name;
  }
  return text;
}

// The known venue a mistyped name most likely meant, or empty: the same name in
// lower case with '-' for '_' (how journal/symbols.py spells aliases such as
// BINANCE_FUTURES), else the nearest within two edits (a letter left out, added,
// changed). Ties go to the first in kKnownVenues.
inline std::string_view nearest_venue(std::string_view name) {
  std::string folded(name);
  for (char& c : folded) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (c == '_') c = '-';
  }
  if (known_venue(folded)) {
    return *std::find(kKnownVenues.begin(), kKnownVenues.end(), std::string_view(folded));
  }
  // Levenshtein distance, one row at a time.
  const auto distance = [](std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
      std::size_t diagonal = row[0];
      row[0] = i;
      for (std::size_t j = 1; j <= b.size(); ++j) {
        const std::size_t above = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
        diagonal = above;
      }
    }
    return row[b.size()];
  };
  std::string_view best;
  std::size_t best_distance = 3;  // at most two edits
  for (const std::string_view venue : kKnownVenues) {
    const std::size_t d = distance(folded, venue);
    if (d < best_distance) {
      best = venue;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace radar
