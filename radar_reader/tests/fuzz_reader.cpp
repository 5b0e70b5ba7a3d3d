// libFuzzer target for the record and segment parser (JournalReader::try_next).
//
// Each input becomes the body of a segment behind a valid header: the first 8 bytes
// choose the commit offset, the rest are the frames. The reader must never crash or
// read out of bounds (built with -fsanitize=fuzzer,address,undefined); it either
// returns records that pass the FlatBuffers Verifier or stops with an error.
//
//   make fuzz            (installs clang if needed, runs 60 s)
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "radar_reader/reader.hpp"

namespace {

constexpr std::uint64_t kSegmentSize = 64 * 1024;

const std::string& directory() {
  static const std::string path = [] {
    std::string dir = "/dev/shm/radar-fuzz-" + std::to_string(::getpid());
    ::mkdir(dir.c_str(), 0700);
    return dir;
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::uint64_t commit_choice = 0;
  if (size >= 8) {
    std::memcpy(&commit_choice, data, 8);
    data += 8;
    size -= 8;
  }
  const std::size_t body = std::min<std::size_t>(size, kSegmentSize - radar::layout::kHeaderSize);
  static std::uint8_t segment[kSegmentSize];
  std::memset(segment, 0, sizeof segment);
  auto* header = reinterpret_cast<radar::layout::SegmentHeader*>(segment);
  std::memcpy(header->magic, radar::layout::kMagic, sizeof header->magic);
  header->format_version = radar::layout::kFormatVersion;
  header->header_size = radar::layout::kHeaderSize;
  header->segment_size = kSegmentSize;
  header->segment_index = 0;
  std::memcpy(header->payload_id, radar::layout::kOrderBookPayloadId, 4);
  header->max_record_size = static_cast<std::uint32_t>(radar::layout::max_record_size(kSegmentSize));
  // Any commit the fuzzer likes, in range or not; the reader must cope.
  header->commit_offset = commit_choice % (kSegmentSize + 4096);
  header->end_marker_offset = commit_choice >> 48;
  std::memcpy(segment + radar::layout::kHeaderSize, data, body);

  const std::string path = radar::segment_path(directory(), 0);
  radar::FileDescriptor fd = radar::FileDescriptor::open(path, O_RDWR | O_CREAT, 0600);
  if (::pwrite(fd.get(), segment, sizeof segment, 0) != static_cast<ssize_t>(sizeof segment))
    return 0;
  try {
    radar::ReaderOptions options;
    options.skip_bad_records = (commit_choice & 1) != 0;
    radar::JournalReader reader(directory(), radar::StartAt::beginning(), options);
    radar::RecordView record;
    for (int i = 0; i < 10000; ++i) {
      const radar::ReadResult result = reader.try_next(record);
      if (result != radar::ReadResult::kRecord) break;
      // Touch every field, as a consumer would.
      const auto* book = record.orderbook();
      volatile double sink = book->bids() && book->bids()->size() ? book->bids()->Get(0)->price() : 0;
      (void)sink;
    }
  } catch (const radar::JournalError&) {
    // Refused at opening (a header the fuzzer broke through commit_offset): fine.
  }
  return 0;
}
