// libFuzzer: any bytes given to the chunk-header parser end in a header or a refusal, never a
// crash or an over-read; an accepted header re-encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "ec/chunk_format.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto h = v2p::ec::parse_chunk_header(std::span(data, size));
  if (h.ok()) {
    const auto again = v2p::ec::encode_chunk_header(h.value());
    // Reserved fields are checked by the header CRC only; equality holds for all we accept.
    if (again.size() != v2p::ec::kChunkHeaderSize) std::abort();
    const auto reparsed = v2p::ec::parse_chunk_header(again);
    if (!reparsed.ok() || !(reparsed.value() == h.value())) std::abort();
  }
  return 0;
}
