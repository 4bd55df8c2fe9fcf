// The v2p stream file: a versioned, framed container for the records both filters publish, so
// that everything above the filters can run on a replayed stream without privileges.
// Layout (little endian, see docs/formats.md):
//   header  : magic "V2PSTRM\0" (8 bytes), u32 version, u32 reserved
//   frames  : u16 type, u16 reserved, u32 payload length, payload
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "v2p/records.hpp"

namespace v2p {

inline constexpr char kStreamMagic[8] = {'V', '2', 'P', 'S', 'T', 'R', 'M', '\0'};
inline constexpr std::uint32_t kStreamVersion = 1;
// No frame is larger; a reader refuses anything bigger instead of allocating it.
inline constexpr std::uint32_t kMaxFramePayload = 64 * 1024;

enum class FrameType : std::uint16_t {
  kVdiskDeclaration = 1,
  kContextRecord = 2,
  kPhysEvent = 3,
  kDeviceDeclaration = 4,
  kLostEvents = 5,
  kBackendProcess = 6,
};

// Kernel-side ring buffer overflow, reported in the stream so a reader never mistakes a gap
// for silence.
struct LostEvents {
  std::uint64_t ts_ns = 0;
  std::uint64_t lost_total = 0;
};

// A process that does a vdisk's host I/O without the tag (an upstream NBD server such as
// qemu-storage-daemon): the correlator joins its untagged bios by completion window. Written by
// the vfilter right after the vdisk's declaration, before any record of the vdisk.
struct BackendProcess {
  std::uint32_t vm_id = 0;
  std::uint32_t vdisk_id = 0;
  std::uint32_t tgid = 0;
  std::uint32_t reserved = 0;
};
static_assert(sizeof(BackendProcess) == 16);

struct Frame {
  FrameType type{};
  std::vector<std::byte> payload;
};

std::vector<std::byte> encode_vdisk_declaration(const VdiskDeclaration& d);
// Throws v2p::Error on a malformed payload.
VdiskDeclaration decode_vdisk_declaration(std::span<const std::byte> payload);

// Decodes a fixed-size frame payload; throws v2p::Error when the size does not match.
template <class T>
T decode_fixed(std::span<const std::byte> payload);

// Parses frames from bytes in memory; used by the file reader and by the fuzz target.
class FrameParser {
 public:
  // Validates the header at the start of `data`; throws v2p::Error if it is not a v2p stream.
  explicit FrameParser(std::span<const std::byte> data);
  // The next frame, or nullopt at a clean end; throws v2p::Error on a truncated or oversized frame.
  std::optional<Frame> next();

 private:
  std::span<const std::byte> data_;
  std::size_t pos_ = 0;
};

class StreamWriter {
 public:
  // Creates (truncates) `path` and writes the header; throws v2p::Error on failure.
  explicit StreamWriter(const std::filesystem::path& path);
  ~StreamWriter();
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;

  void write(FrameType type, std::span<const std::byte> payload);
  void write(const ContextRecord& r);
  void write(const PhysEvent& e);
  void write(const VdiskDeclaration& d);
  void write(const LostEvents& l);
  void write(const BackendProcess& b);
  // Flushes buffered frames to the file (and to stable storage when `durable`).
  void flush(bool durable = false);

 private:
  std::FILE* file_ = nullptr;
  std::filesystem::path path_;
};

// Reads a whole stream file into memory and iterates its frames.
class StreamReader {
 public:
  explicit StreamReader(const std::filesystem::path& path);
  std::optional<Frame> next() { return parser_->next(); }

 private:
  std::vector<std::byte> data_;
  std::optional<FrameParser> parser_;
};

}  // namespace v2p
