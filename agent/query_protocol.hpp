// The agent's query protocol (docs/agent.md, "Query protocol"): one JSON object per line in each
// direction on a unix stream socket. This file only turns a request line into a Request; it is
// what the fuzz harness drives, so it never trusts the bytes.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace v2p::agent {

inline constexpr int kQueryProtocolVersion = 1;
// A longer line is refused (and the client disconnected): requests are small.
inline constexpr std::size_t kMaxRequestBytes = 4096;
// Most extents one map answer carries; more sets "truncated" (ask again from the last offset).
inline constexpr std::uint64_t kMaxMapExtents = 100'000;

enum class QueryOp { kVms, kMap, kWhose, kVerify, kStats, kVmAdd, kVmRemove };

struct Request {
  QueryOp op = QueryOp::kStats;
  std::string id;  // echoed back when given (a client matching answers to requests)
  std::string vm, vdisk;
  std::string image;  // vm_add: absolute path
  std::uint64_t offset = 0;
  std::uint64_t length = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t limit = kMaxMapExtents;
  std::uint32_t device = 0;  // kernel encoding (major << 20 | minor)
  std::uint64_t sector = 0;
};

// Throws v2p::Error with a sentence naming the field and what is wrong.
Request parse_request(std::string_view line);

// "vms", "map", …
const char* to_string(QueryOp op) noexcept;

}  // namespace v2p::agent
