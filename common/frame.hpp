// The 8-byte frame header shared by v2p's stream files (common/record_file.*) and the export →
// agent ingest wire (common/ingest_wire.*), and the two helpers both sides need to put a
// fixed-size record into a frame and take it out again with its length checked.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

#include "common/error.hpp"

namespace v2p::frame {

struct FrameHeader {
  std::uint16_t type;
  std::uint16_t reserved;
  std::uint32_t length;  // payload bytes after the header
};
static_assert(sizeof(FrameHeader) == 8);

template <class T>
std::span<const std::byte> bytes_of(const T& v) {
  static_assert(std::is_trivially_copyable_v<T>);
  return {reinterpret_cast<const std::byte*>(&v), sizeof v};
}

// A fixed-size record from a frame's payload; `what` names the frame in the error.
template <class T>
T decode_fixed(std::span<const std::byte> payload, const char* what) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (payload.size() != sizeof(T)) {
    throw Error(std::string(what) + " has " + std::to_string(payload.size()) + " bytes, expected " +
                std::to_string(sizeof(T)));
  }
  T v;
  std::memcpy(&v, payload.data(), sizeof v);
  return v;
}

}  // namespace v2p::frame
