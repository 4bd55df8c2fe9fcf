#include "v2p/types.hpp"

namespace v2p {

const char* to_string(IoOp op) noexcept {
  switch (op) {
    case IoOp::kRead:
      return "read";
    case IoOp::kWrite:
      return "write";
    case IoOp::kFlush:
      return "flush";
    case IoOp::kDiscard:
      return "discard";
    case IoOp::kWriteZeroes:
      return "write-zeroes";
    case IoOp::kOther:
      break;
  }
  return "other";
}

}  // namespace v2p
