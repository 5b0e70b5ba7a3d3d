// Prints a journal's records as JSON lines, as `journal dump` does, for the
// cross-language tests (tests/test_cpp_reader.py): same fields, doubles printed
// exactly (%.17g). Exit status 0 at the end of the committed records, 1 (message
// on stderr) at the first corrupt one or a corrupt header at opening, 2 when it
// cannot open the journal as asked.
//
//   journal_dump_json DIR [--payload OBK1|RDR1] [--from SEGMENT:OFFSET] [--skip-bad]
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

#include "radar_reader/reader.hpp"

namespace {

void print_string(const flatbuffers::String* text) {
  std::putchar('"');
  if (text != nullptr) {
    for (const char c : text->string_view()) {
      const auto byte = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') std::printf("\\%c", c);
      else if (byte < 0x20) std::printf("\\u%04x", byte);
      else std::putchar(c);
    }
  }
  std::putchar('"');
}

void print_levels(const flatbuffers::Vector<const OrderBookData::PriceLevel*>* levels) {
  std::putchar('[');
  if (levels != nullptr) {
    for (flatbuffers::uoffset_t i = 0; i < levels->size(); ++i) {
      const OrderBookData::PriceLevel* level = levels->Get(i);
      std::printf("%s[%.17g,%.17g]", i ? "," : "", level->price(), level->quantity());
    }
  }
  std::putchar(']');
}

void print_orderbook(const radar::RecordView& record) {
  const OrderBookData::OrderBook* book = record.orderbook();
  std::printf("{\"position\":[%" PRIu64 ",%" PRIu64 "],\"exchange_name\":",
              record.position.segment, record.position.offset);
  print_string(book->exchange_name());
  std::printf(",\"symbol\":");
  print_string(book->symbol());
  std::printf(",\"timestamp\":%" PRId64 ",\"sequence\":%" PRId64
              ",\"local_timestamp_ns\":%" PRId64 ",\"bids\":",
              book->timestamp(), book->sequence(), book->local_timestamp_ns());
  print_levels(book->bids());
  std::printf(",\"asks\":");
  print_levels(book->asks());
  std::printf("}\n");
}

void print_double_field(const char* name, double value) {
  if (value != value) std::printf(",\"%s\":NaN", name);
  else std::printf(",\"%s\":%.17g", name, value);
}

void print_radar_result(const radar::RecordView& record) {
  const RadarData::RadarResult* r = record.radar_result();
  std::printf("{\"position\":[%" PRIu64 ",%" PRIu64 "],\"timestamp_ns\":%" PRId64,
              record.position.segment, record.position.offset, r->timestamp_ns());
  std::printf(",\"base\":");
  print_string(r->base());
  std::printf(",\"krw_exchange\":");
  print_string(r->krw_exchange());
  std::printf(",\"usdt_exchange\":");
  print_string(r->usdt_exchange());
  print_double_field("fx", r->fx());
  print_double_field("kimchi_premium", r->kimchi_premium());
  std::printf(",\"buy_exchange\":");
  print_string(r->buy_exchange());
  std::printf(",\"sell_exchange\":");
  print_string(r->sell_exchange());
  print_double_field("edge_bps", r->edge_bps());
  print_double_field("fill_base_quantity", r->fill_base_quantity());
  std::printf(",\"stale\":%s,\"source_local_timestamp_ns\":%" PRId64, r->stale() ? "true" : "false",
              r->source_local_timestamp_ns());
  print_double_field("notional_krw", r->notional_krw());
  std::printf("}\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [--payload OBK1|RDR1] [--from SEG:OFF] [--skip-bad]\n",
                 argv[0]);
    return 2;
  }
  radar::ReaderOptions options;
  radar::StartAt start = radar::StartAt::beginning();
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--payload" && i + 1 < argc) {
      const std::string id = argv[++i];
      options.payload = id == "RDR1" ? &radar::kRadarResultPayload : &radar::kOrderBookPayload;
    } else if (arg == "--from" && i + 1 < argc) {
      unsigned long long segment = 0, offset = 0;
      if (std::sscanf(argv[++i], "%llu:%llu", &segment, &offset) != 2) return 2;
      start = radar::StartAt::at({segment, offset});
    } else if (arg == "--skip-bad") {
      options.skip_bad_records = true;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  const bool radar_results = options.payload == &radar::kRadarResultPayload;
  try {
    radar::JournalReader reader(argv[1], start, options);
    radar::RecordView record;
    while (true) {
      const radar::ReadResult result = reader.try_next(record);
      if (result == radar::ReadResult::kEmpty) break;
      if (result == radar::ReadResult::kError) {
        std::fflush(stdout);
        std::fprintf(stderr, "corrupt: %s\n", reader.error().c_str());
        return 1;
      }
      if (radar_results) print_radar_result(record);
      else print_orderbook(record);
    }
    if (reader.skipped()) std::fprintf(stderr, "skipped %" PRIu64 " bad records\n", reader.skipped());
  } catch (const radar::CorruptJournalError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "corrupt: %s\n", e.what());
    return 1;
  } catch (const radar::JournalError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
