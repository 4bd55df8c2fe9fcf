#include "common/ingest_wire.hpp"

#include <cstring>
#include <string>

#include "common/error.hpp"
#include "common/frame.hpp"

namespace v2p::ingest {
namespace {

using frame::bytes_of;
using frame::decode_fixed;
using frame::FrameHeader;

}  // namespace

bool MessageBuilder::append(std::uint16_t type, std::span<const std::byte> payload) {
  if (buf_.size() + sizeof(FrameHeader) + payload.size() > kMaxMessageBytes) return false;
  const FrameHeader h{type, 0, static_cast<std::uint32_t>(payload.size())};
  const auto hb = bytes_of(h);
  buf_.insert(buf_.end(), hb.begin(), hb.end());
  buf_.insert(buf_.end(), payload.begin(), payload.end());
  return true;
}

bool MessageBuilder::append(const ContextRecord& r) {
  return append(static_cast<std::uint16_t>(FrameType::kContextRecord), bytes_of(r));
}
bool MessageBuilder::append(const VdiskDeclaration& d) {
  return append(static_cast<std::uint16_t>(FrameType::kVdiskDeclaration),
                encode_vdisk_declaration(d));
}
bool MessageBuilder::append(const BackendProcess& b) {
  return append(static_cast<std::uint16_t>(FrameType::kBackendProcess), bytes_of(b));
}
bool MessageBuilder::append(const Hello& h) {
  return append(kHelloFrame, bytes_of(h));
}
bool MessageBuilder::append(const LostRecords& l) {
  return append(kLostRecordsFrame, bytes_of(l));
}
bool MessageBuilder::append_image(const std::string& path) {
  if (path.size() > kMaxPathBytes) return false;
  return append(kImageFrame, {reinterpret_cast<const std::byte*>(path.data()), path.size()});
}

bool MessageBuilder::append(const SlotTableGrant& g) {
  return append(kSlotTableFrame, bytes_of(g));
}

SlotTableGrant parse_grant(std::span<const std::byte> message) {
  FrameHeader h{};
  if (message.size() != sizeof h + sizeof(SlotTableGrant)) {
    throw Error("agent message of " + std::to_string(message.size()) +
                " bytes (a slot table "
                "grant has " +
                std::to_string(sizeof h + sizeof(SlotTableGrant)) + ")");
  }
  std::memcpy(&h, message.data(), sizeof h);
  if (h.type != kSlotTableFrame || h.length != sizeof(SlotTableGrant)) {
    throw Error("agent message of frame type " + std::to_string(h.type) + " (" +
                std::to_string(h.length) + " bytes): a slot table grant expected");
  }
  return decode_fixed<SlotTableGrant>(message.subspan(sizeof h), "slot table grant");
}

bool MessageBuilder::append(const ExportLatency& l) {
  return append(kExportLatencyFrame, bytes_of(l));
}

void parse_message(std::span<const std::byte> message, MessageVisitor& visitor) {
  std::size_t pos = 0;
  while (pos < message.size()) {
    FrameHeader h{};
    if (message.size() - pos < sizeof h) throw Error("ingest message ends inside a frame header");
    std::memcpy(&h, message.data() + pos, sizeof h);
    pos += sizeof h;
    if (h.length > message.size() - pos) {
      throw Error("ingest frame of " + std::to_string(h.length) + " bytes overruns its message");
    }
    const auto payload = message.subspan(pos, h.length);
    pos += h.length;
    switch (h.type) {
      case static_cast<std::uint16_t>(FrameType::kContextRecord):
        visitor.on_record(decode_fixed<ContextRecord>(payload, "context record frame"));
        break;
      case static_cast<std::uint16_t>(FrameType::kVdiskDeclaration):
        visitor.on_declaration(decode_vdisk_declaration(payload));
        break;
      case static_cast<std::uint16_t>(FrameType::kBackendProcess):
        visitor.on_backend(decode_fixed<BackendProcess>(payload, "backend process frame"));
        break;
      case kHelloFrame:
        visitor.on_hello(decode_fixed<Hello>(payload, "hello frame"));
        break;
      case kLostRecordsFrame:
        visitor.on_lost(decode_fixed<LostRecords>(payload, "lost records frame"));
        break;
      case kImageFrame:
        if (payload.empty() || payload.size() > kMaxPathBytes) {
          throw Error("image frame of " + std::to_string(payload.size()) + " bytes (1.." +
                      std::to_string(kMaxPathBytes) + " expected)");
        }
        visitor.on_image(
            std::string(reinterpret_cast<const char*>(payload.data()), payload.size()));
        break;
      case kExportLatencyFrame: {
        const auto l = decode_fixed<ExportLatency>(payload, "export latency frame");
        if (l.op > 2) throw Error("export latency frame of op class " + std::to_string(l.op));
        visitor.on_export_latency(l);
        break;
      }
      default:
        throw Error("unknown ingest frame type " + std::to_string(h.type));
    }
  }
}

}  // namespace v2p::ingest
