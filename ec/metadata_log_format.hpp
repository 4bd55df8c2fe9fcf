// The metadata log, byte by byte (pure encoding and parsing; metadata_log.hpp does the I/O).
//
// File header (24 bytes): magic "V2PECLOG", u16 version (1), u16 0, u64 pool id, u32 CRC32C of
// bytes 0..19. Then records, each: u32 payload length, u32 CRC32C of the payload, payload. The
// payload starts with a u8 type. Replay stops at the first record that is short or fails its
// CRC: appends are fsync'd one after another, so only the tail can be torn, and everything from
// there on was never acknowledged.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "ec/result.hpp"

namespace v2p::ec {

inline constexpr std::size_t kLogHeaderSize = 24;
inline constexpr std::uint32_t kMaxLogRecord = 4U << 20;

// A store directory joined the pool; the failure domain is kept for when it is offline.
struct StoreAdopted {
  std::uint32_t store = 0;
  std::string domain;
  bool operator==(const StoreAdopted&) const = default;
};

// One block of a vdisk inside a container: the unit a read verifies.
struct BlockRef {
  std::uint64_t voffset = 0;
  std::uint32_t length = 0;
  std::uint32_t offset = 0;  // within the container's data
  std::uint32_t crc = 0;     // CRC32C of the block's bytes
  bool operator==(const BlockRef&) const = default;
};

// A container whose k+m chunks are durable; written after the chunks, before the write is acked.
struct ContainerSealed {
  std::uint64_t id = 0;
  std::uint64_t nonce = 0;
  std::uint32_t vm = 0;
  std::uint32_t vdisk = 0;
  std::uint8_t k = 0;
  std::uint8_t m = 0;
  std::uint32_t data_len = 0;   // bytes of block data; the last data chunk is zero-padded
  std::uint32_t chunk_len = 0;  // payload bytes of every chunk
  std::uint64_t created_ns = 0;
  std::vector<std::uint32_t> stores;  // store id of chunk i, k + m entries
  std::vector<BlockRef> blocks;       // in write order: later entries win
  bool operator==(const ContainerSealed&) const = default;
};

// Chunk `index` of a container now lives on `store` (evacuation of a removed store).
struct ChunkMoved {
  std::uint64_t container = 0;
  std::uint8_t index = 0;
  std::uint32_t store = 0;
  bool operator==(const ChunkMoved&) const = default;
};

using LogRecord = std::variant<StoreAdopted, ContainerSealed, ChunkMoved>;

struct LogContents {
  std::uint64_t pool_id = 0;
  std::vector<LogRecord> records;
  std::size_t valid_bytes = 0;  // header + every record that replayed
  std::string tail_problem;     // empty when the file ended cleanly after the last record
};

[[nodiscard]] std::vector<std::uint8_t> encode_log_header(std::uint64_t pool_id);
// Length, CRC and payload of one record, ready to append.
[[nodiscard]] std::vector<std::uint8_t> encode_log_record(const LogRecord& r);

// Fails only when the file header itself is unusable; a bad record ends the replay there.
Result<LogContents> parse_log(std::span<const std::uint8_t> bytes);

}  // namespace v2p::ec
