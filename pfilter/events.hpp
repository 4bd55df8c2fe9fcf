// Turning raw block-layer values into v2p's vocabulary: REQ_OP_*/REQ_* flags into an IoOp and a
// blktrace-style "rwbs" string, blk_status_t into -errno, and one printable line per event.
// Kept out of the BPF program so GoogleTest reaches it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "v2p/records.hpp"

namespace v2p::pfilter {

// Bit positions of the REQ_* flags in bio->bi_opf. They move between kernel versions, so the
// probe reads them from the running kernel's BTF (enum req_flag_bits); the defaults are 6.x's.
struct ReqFlagBits {
  unsigned sync = 11;
  unsigned meta = 12;
  unsigned fua = 17;
  unsigned preflush = 18;
  unsigned rahead = 19;

  // The running kernel's layout, or the defaults when its BTF cannot be read.
  static ReqFlagBits from_kernel();
};

// The bit of BIO_REMAPPED in bio->bi_flags (an anonymous enum, so CO-RE cannot relocate it; read
// from the running kernel's BTF), or nullopt when the kernel has no such flag.
std::optional<unsigned> bio_remapped_bit();

// REQ_OP_* values (enum req_op), stable since Linux 4.10.
inline constexpr std::uint32_t kReqOpMask = 0xff;
inline constexpr std::uint32_t kReqOpRead = 0;
inline constexpr std::uint32_t kReqOpWrite = 1;
inline constexpr std::uint32_t kReqOpFlush = 2;
inline constexpr std::uint32_t kReqOpDiscard = 3;
inline constexpr std::uint32_t kReqOpSecureErase = 5;
inline constexpr std::uint32_t kReqOpWriteZeroes = 9;

// A write that carries no data and only asks for a cache flush (REQ_PREFLUSH) is a flush.
IoOp io_op_from_cmd_flags(std::uint32_t cmd_flags, std::uint32_t bytes, const ReqFlagBits& bits);

// blktrace's notation: F (preflush), then R/W/D/N, then F (fua), A (readahead), S (sync), M (meta).
std::string rwbs(std::uint32_t cmd_flags, std::uint32_t bytes, const ReqFlagBits& bits);

// The inverse for imported traces: cmd_flags with the op and flags an rwbs string names.
std::uint32_t cmd_flags_from_rwbs(const std::string& rwbs, const ReqFlagBits& bits);

// blk_status_t → -errno, as blk_status_to_errno() maps it; unknown values become -EIO.
std::int32_t errno_from_blk_status(std::uint8_t status) noexcept;

const char* to_string(PhysEventKind kind) noexcept;

// "12.345678901 Q 7,0 W  2048+8 4096B tgid 123/124 fio slot 5 [lat 12.3us]": for --print.
std::string format_event(const PhysEvent& e, const ReqFlagBits& bits);

}  // namespace v2p::pfilter
