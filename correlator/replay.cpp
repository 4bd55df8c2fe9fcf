#include "correlator/replay.hpp"

#include <algorithm>

#include "common/record_file.hpp"

namespace v2p::correlator {
namespace {

struct Item {
  std::uint64_t at_ns;
  std::uint32_t file;
  FrameType type;
  ContextRecord record;
  PhysEvent event;
  LostEvents lost;
};

}  // namespace

ReplayResult replay_streams(Correlator& c, const std::vector<std::filesystem::path>& files,
                            std::uint64_t after_ns, std::uint64_t event_lookback_ns) {
  const std::uint64_t events_after = after_ns - std::min(after_ns, event_lookback_ns);
  ReplayResult res;
  std::vector<Item> items;
  std::vector<std::uint64_t> lost(files.size(), 0);
  for (std::uint32_t f = 0; f < files.size(); ++f) {
    StreamReader reader(files[f]);
    while (auto frame = reader.next()) {
      ++res.frames;
      Item it{0, f, frame->type, {}, {}, {}};
      switch (frame->type) {
        case FrameType::kVdiskDeclaration:
          c.declare(decode_vdisk_declaration(frame->payload));
          continue;
        case FrameType::kBackendProcess:
          // Written before any record of its vdisk, and a backend's bios are only ever joined
          // by window: registering it up front is the same as at its place in the stream.
          c.add_backend_process(decode_fixed<BackendProcess>(frame->payload).tgid);
          continue;
        case FrameType::kContextRecord:
          it.record = decode_fixed<ContextRecord>(frame->payload);
          it.at_ns = it.record.complete_ns;
          break;
        case FrameType::kPhysEvent:
          it.event = decode_fixed<PhysEvent>(frame->payload);
          it.at_ns = it.event.ts_ns;
          break;
        case FrameType::kLostEvents:
          it.lost = decode_fixed<LostEvents>(frame->payload);
          it.at_ns = it.lost.ts_ns;
          break;
        default:
          continue;  // frames this reader does not use (device declarations, future types)
      }
      const bool covered =
          after_ns != 0 &&
          (frame->type == FrameType::kPhysEvent ? it.at_ns <= events_after : it.at_ns <= after_ns);
      if (covered) {
        ++res.skipped;
        continue;
      }
      items.push_back(it);
    }
  }
  // Sort (time, position) pairs rather than the 200-byte items; the position keeps equal times
  // in file order.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> order(items.size());
  for (std::uint32_t i = 0; i < items.size(); ++i) order[i] = {items[i].at_ns, i};
  std::sort(order.begin(), order.end());
  for (const auto& [at, index] : order) {
    const Item& it = items[index];
    c.advance(it.at_ns);
    switch (it.type) {
      case FrameType::kContextRecord:
        c.on_record(it.record);
        break;
      case FrameType::kPhysEvent:
        c.on_event(it.event);
        break;
      case FrameType::kLostEvents: {
        lost[it.file] = it.lost.lost_total;
        std::uint64_t total = 0;
        for (const auto l : lost) total += l;
        c.on_lost(total);
        break;
      }
      default:
        break;
    }
  }
  c.drain();
  return res;
}

}  // namespace v2p::correlator
