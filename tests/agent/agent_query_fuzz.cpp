// libFuzzer harness for the agent's query request parser: any bytes either parse into a Request
// or throw v2p::Error; nothing else (crash, other exception, sanitizer report) is allowed.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/query_protocol.hpp"
#include "common/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto r =
        v2p::agent::parse_request(std::string_view(reinterpret_cast<const char*>(data), size));
    if (r.op == v2p::agent::QueryOp::kMap && (r.limit == 0 || r.limit > v2p::agent::kMaxMapExtents))
      __builtin_trap();
  } catch (const v2p::Error&) {
  }
  return 0;
}
