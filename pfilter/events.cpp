#include "pfilter/events.hpp"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fmt/core.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "v2p/tag.hpp"

namespace v2p::pfilter {
namespace {

bool has(std::uint32_t flags, unsigned bit) {
  return bit < 32 && (flags >> bit) & 1U;
}

}  // namespace

std::optional<unsigned> bio_remapped_bit() {
  btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr || libbpf_get_error(vmlinux) != 0) return std::nullopt;
  std::optional<unsigned> bit;
  const auto types = btf__type_cnt(vmlinux);
  for (unsigned id = 1; id < types && !bit; ++id) {
    const btf_type* t = btf__type_by_id(vmlinux, id);
    if (!btf_is_enum(t)) continue;
    const struct btf_enum* e = btf_enum(t);
    for (int i = 0; i < btf_vlen(t); ++i, ++e) {
      if (std::string_view(btf__name_by_offset(vmlinux, e->name_off)) == "BIO_REMAPPED") {
        bit = static_cast<unsigned>(e->val);
        break;
      }
    }
  }
  btf__free(vmlinux);
  return bit;
}

ReqFlagBits ReqFlagBits::from_kernel() {
  ReqFlagBits bits;
  btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr || libbpf_get_error(vmlinux) != 0) return bits;
  const int id = btf__find_by_name_kind(vmlinux, "req_flag_bits", BTF_KIND_ENUM);
  if (id > 0) {
    const btf_type* t = btf__type_by_id(vmlinux, id);
    const struct btf_enum* e = btf_enum(t);
    for (int i = 0; i < btf_vlen(t); ++i, ++e) {
      const std::string_view name = btf__name_by_offset(vmlinux, e->name_off);
      const auto v = static_cast<unsigned>(e->val);
      if (name == "__REQ_SYNC") bits.sync = v;
      if (name == "__REQ_META") bits.meta = v;
      if (name == "__REQ_FUA") bits.fua = v;
      if (name == "__REQ_PREFLUSH") bits.preflush = v;
      if (name == "__REQ_RAHEAD") bits.rahead = v;
    }
  }
  btf__free(vmlinux);
  return bits;
}

IoOp io_op_from_cmd_flags(std::uint32_t cmd_flags, std::uint32_t bytes, const ReqFlagBits& bits) {
  switch (cmd_flags & kReqOpMask) {
    case kReqOpRead:
      return IoOp::kRead;
    case kReqOpWrite:
      return bytes == 0 && has(cmd_flags, bits.preflush) ? IoOp::kFlush : IoOp::kWrite;
    case kReqOpFlush:
      return IoOp::kFlush;
    case kReqOpDiscard:
    case kReqOpSecureErase:
      return IoOp::kDiscard;
    case kReqOpWriteZeroes:
      return IoOp::kWriteZeroes;
    default:
      return IoOp::kOther;
  }
}

std::string rwbs(std::uint32_t cmd_flags, std::uint32_t bytes, const ReqFlagBits& bits) {
  // A fixed buffer rather than string appends: GCC 12 misreports those (-Wrestrict).
  char out[16] = {};
  std::size_t n = 0;
  auto put = [&out, &n](char c) { out[n++] = c; };
  if (has(cmd_flags, bits.preflush)) put('F');
  switch (cmd_flags & kReqOpMask) {
    case kReqOpRead:
      put('R');
      break;
    case kReqOpWrite:
      put('W');
      break;
    case kReqOpDiscard:
      put('D');
      break;
    case kReqOpSecureErase:
      put('D');
      put('E');
      break;
    case kReqOpFlush:
      break;
    default:
      if (bytes != 0) put('N');
  }
  if (has(cmd_flags, bits.fua)) put('F');
  if (has(cmd_flags, bits.rahead)) put('A');
  if (has(cmd_flags, bits.sync)) put('S');
  if (has(cmd_flags, bits.meta)) put('M');
  if (n == 0) put('N');
  return std::string(out, n);
}

std::uint32_t cmd_flags_from_rwbs(const std::string& text, const ReqFlagBits& bits) {
  std::uint32_t flags = kReqOpRead;
  bool seen_op = false;
  for (const char c : text) {
    switch (c) {
      case 'F':  // before the op letter: preflush; after it: FUA
        flags |= 1U << (seen_op ? bits.fua : bits.preflush);
        break;
      case 'R':
        seen_op = true;
        break;
      case 'W':
        flags = (flags & ~kReqOpMask) | kReqOpWrite;
        seen_op = true;
        break;
      case 'D':
        flags = (flags & ~kReqOpMask) | kReqOpDiscard;
        seen_op = true;
        break;
      case 'E':
        flags = (flags & ~kReqOpMask) | kReqOpSecureErase;
        break;
      case 'N':
        seen_op = true;
        break;
      case 'A':
        flags |= 1U << bits.rahead;
        break;
      case 'S':
        flags |= 1U << bits.sync;
        break;
      case 'M':
        flags |= 1U << bits.meta;
        break;
      default:
        break;
    }
  }
  // A bare "F" (or "FN") is a flush: blktrace shows REQ_OP_FLUSH / empty preflush writes so.
  if (!seen_op && has(flags, bits.preflush)) flags = (flags & ~kReqOpMask) | kReqOpWrite;
  return flags;
}

std::int32_t errno_from_blk_status(std::uint8_t status) noexcept {
  // Index = BLK_STS_* value (include/linux/blk_types.h, Linux 6.x).
  static constexpr int kErrno[] = {
      0,   EOPNOTSUPP, ETIMEDOUT, ENOSPC, ENOLINK,      EREMOTEIO, EBADE,  ENODATA, EILSEQ, ENOMEM,
      EIO, EIO,        EAGAIN,    EBUSY,  ETOOMANYREFS, EOVERFLOW, ENODEV, ETIME,   EINVAL};
  if (status < std::size(kErrno)) return -kErrno[status];
  return -EIO;
}

const char* to_string(PhysEventKind kind) noexcept {
  switch (kind) {
    case PhysEventKind::kQueue:
      return "Q";
    case PhysEventKind::kRemap:
      return "A";
    case PhysEventKind::kComplete:
      return "C";
  }
  return "?";
}

std::string format_event(const PhysEvent& e, const ReqFlagBits& bits) {
  const auto kind = static_cast<PhysEventKind>(e.kind);
  const std::string_view comm(e.comm, strnlen(e.comm, sizeof e.comm));
  std::string line = fmt::format(
      "{}.{:09} {} {},{} {:<4} {}+{} {}B tgid {}/{} {}", e.ts_ns / 1000000000, e.ts_ns % 1000000000,
      to_string(kind), e.device().major(), e.device().minor(), rwbs(e.cmd_flags, e.bytes, bits),
      e.sector, e.bytes / kSectorSize, e.bytes, e.tgid, e.tid, comm);
  if (const auto slot = tag::slot_from_ioprio(e.ioprio); slot != 0) {
    line += fmt::format(" slot {}", slot);
  }
  if (kind == PhysEventKind::kRemap) {
    line += fmt::format(" <- {},{} {}", e.old_dev >> 20, e.old_dev & 0xfffffU, e.old_sector);
  }
  if (kind == PhysEventKind::kComplete) {
    line += fmt::format(" lat {:.1f}us", static_cast<double>(e.latency_ns) / 1000.0);
    if (e.error != 0) line += fmt::format(" error {}", e.error);
  }
  return line;
}

}  // namespace v2p::pfilter
