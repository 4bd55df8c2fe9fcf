// libFuzzer: any bytes handed to the stream parser end in frames or a v2p::Error, never a crash,
// an over-read or an unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/error.hpp"
#include "common/record_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    v2p::FrameParser parser(bytes);
    while (auto frame = parser.next()) {
      switch (frame->type) {
        case v2p::FrameType::kVdiskDeclaration:
          (void)v2p::decode_vdisk_declaration(frame->payload);
          break;
        case v2p::FrameType::kContextRecord:
          (void)v2p::decode_fixed<v2p::ContextRecord>(frame->payload);
          break;
        case v2p::FrameType::kPhysEvent:
          (void)v2p::decode_fixed<v2p::PhysEvent>(frame->payload);
          break;
        case v2p::FrameType::kLostEvents:
          (void)v2p::decode_fixed<v2p::LostEvents>(frame->payload);
          break;
        case v2p::FrameType::kBackendProcess:
          (void)v2p::decode_fixed<v2p::BackendProcess>(frame->payload);
          break;
        default:
          break;
      }
    }
  } catch (const v2p::Error&) {
  }
  return 0;
}
