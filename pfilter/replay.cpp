#include "pfilter/replay.hpp"

namespace v2p::pfilter {

ReplayCounts replay_stream(const std::filesystem::path& path, const ReplayHandlers& h) {
  StreamReader reader(path);
  ReplayCounts counts;
  while (auto frame = reader.next()) {
    switch (frame->type) {
      case FrameType::kPhysEvent: {
        const auto e = decode_fixed<PhysEvent>(frame->payload);
        ++counts.events;
        if (h.on_event) h.on_event(e);
        break;
      }
      case FrameType::kDeviceDeclaration: {
        const auto d = decode_device_declaration(frame->payload);
        ++counts.devices;
        if (h.on_device) h.on_device(d);
        break;
      }
      case FrameType::kLostEvents: {
        const auto l = decode_fixed<LostEvents>(frame->payload);
        ++counts.lost_frames;
        counts.lost_total = l.lost_total;
        if (h.on_lost) h.on_lost(l);
        break;
      }
      default:
        ++counts.other;
        if (h.on_other) h.on_other(*frame);
        break;
    }
  }
  return counts;
}

}  // namespace v2p::pfilter
