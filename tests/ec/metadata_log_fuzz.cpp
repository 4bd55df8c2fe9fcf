// libFuzzer: the metadata log replay on arbitrary bytes stops at the first bad record without a
// crash, an over-read or an unbounded allocation, and every record it accepts re-encodes to
// bytes that replay to the same record.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "ec/metadata_log_format.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto parsed = v2p::ec::parse_log(std::span(data, size));
  if (!parsed.ok()) return 0;
  if (parsed.value().valid_bytes > size) std::abort();
  auto bytes = v2p::ec::encode_log_header(parsed.value().pool_id);
  for (const auto& r : parsed.value().records) {
    const auto rec = v2p::ec::encode_log_record(r);
    bytes.insert(bytes.end(), rec.begin(), rec.end());
  }
  const auto again = v2p::ec::parse_log(bytes);
  if (!again.ok() || again.value().records != parsed.value().records ||
      !again.value().tail_problem.empty() || again.value().valid_bytes != bytes.size()) {
    std::abort();
  }
  return 0;
}
