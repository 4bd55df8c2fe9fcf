// Feeds arbitrary bytes to the handshake state machine (in chunks whose sizes the input also
// decides), then treats whatever follows the handshake as transmission-phase requests.
// Invariants checked besides memory safety: chunking never changes the handshake's output, and
// validation never asks to consume a payload for commands that have none.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "vfilter/handshake.hpp"
#include "vfilter/nbd_wire.hpp"
#include "vfilter/request.hpp"

using namespace v2p::vfilter;

namespace {

std::vector<ExportInfo> exports() {
  return {{"disk0", "d", 1 << 20, false, 512}, {"ro", "", 4096, true, 1}};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t chunk = (data[0] % 31) + 1;
  const auto bytes =
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(data + 1), size - 1);

  Handshake whole(exports());
  whole.feed(bytes);
  Handshake chunked(exports());
  std::vector<std::byte> out = chunked.take_output();
  std::size_t pos = 0;
  while (pos < bytes.size() && !chunked.done() && !chunked.closed()) {
    const std::size_t n = std::min(chunk, bytes.size() - pos);
    chunked.feed(bytes.subspan(pos, n));
    pos += n;
    const auto o = chunked.take_output();
    out.insert(out.end(), o.begin(), o.end());
  }
  if (out != whole.take_output() || whole.state() != chunked.state()) std::abort();
  if (!whole.done()) return 0;

  // Transmission phase: headers, each followed by the payload validation says to consume.
  const auto rest = whole.leftover();
  const ExportInfo e = exports().at(*whole.selected());
  const ExportLimits limits{e.size, e.read_only, whole.block_size_agreed() ? e.min_block : 1,
                            whole.reply_style() != ReplyStyle::kSimple, whole.base_allocation()};
  std::size_t at = 0;
  while (rest.size() - at >= nbd::kRequestSize) {
    const auto req = parse_request(rest.subspan(at, nbd::kRequestSize));
    if (!req) break;
    at += nbd::kRequestSize;
    const Validated v = validate_request(*req, limits);
    if (v.payload != 0 && req->type != nbd::kCmdWrite) std::abort();
    if (v.action != Action::kReplyError && v.action != Action::kDisconnect &&
        v.action != Action::kFlush && req->offset + req->length > e.size) {
      std::abort();  // an accepted request must lie inside the export
    }
    if (v.action == Action::kBlockStatus && !limits.block_status) std::abort();
    (void)encode_simple_reply(req->cookie, v.error);
    if (v.payload > rest.size() - at) break;
    at += v.payload;
  }
  return 0;
}
