#include "agent/query_protocol.hpp"

#include <fmt/core.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace v2p::agent {
namespace {

using nlohmann::json;

const json* field(const json& j, const char* name) {
  const auto it = j.find(name);
  return it == j.end() ? nullptr : &*it;
}

std::string string_field(const json& j, const char* name, bool required) {
  const json* f = field(j, name);
  if (f == nullptr) {
    if (required) throw Error(fmt::format("request field '{}' is missing", name));
    return {};
  }
  if (!f->is_string()) throw Error(fmt::format("request field '{}' must be a string", name));
  auto s = f->get<std::string>();
  if (s.empty() && required) throw Error(fmt::format("request field '{}' is empty", name));
  return s;
}

std::uint64_t number_field(const json& j, const char* name, std::uint64_t fallback) {
  const json* f = field(j, name);
  if (f == nullptr) return fallback;
  if (!f->is_number_unsigned() && !(f->is_number_integer() && f->get<std::int64_t>() >= 0)) {
    throw Error(fmt::format("request field '{}' must be a non-negative integer", name));
  }
  return f->get<std::uint64_t>();
}

// "MAJ:MIN" or a kernel-encoded number.
std::uint32_t device_field(const json& j) {
  const json* f = field(j, "device");
  if (f == nullptr) throw Error("request field 'device' is missing (\"MAJ:MIN\")");
  if (f->is_number_unsigned()) {
    const auto v = f->get<std::uint64_t>();
    if (v > 0xffffffffULL) throw Error("request field 'device' is out of range");
    return static_cast<std::uint32_t>(v);
  }
  if (!f->is_string()) throw Error("request field 'device' must be \"MAJ:MIN\"");
  const auto s = f->get<std::string>();
  const auto colon = s.find(':');
  std::uint32_t major = 0, minor = 0;
  const char* end = s.data() + s.size();
  if (colon == std::string::npos ||
      std::from_chars(s.data(), s.data() + colon, major).ptr != s.data() + colon ||
      std::from_chars(s.data() + colon + 1, end, minor).ptr != end || colon == 0 ||
      colon + 1 == s.size() || major > 0xfff || minor > 0xfffff) {
    throw Error(fmt::format("request field 'device' is not MAJ:MIN: '{}'", s.substr(0, 64)));
  }
  return (major << 20) | minor;
}

}  // namespace

const char* to_string(QueryOp op) noexcept {
  switch (op) {
    case QueryOp::kVms:
      return "vms";
    case QueryOp::kMap:
      return "map";
    case QueryOp::kWhose:
      return "whose";
    case QueryOp::kVerify:
      return "verify";
    case QueryOp::kStats:
      return "stats";
    case QueryOp::kVmAdd:
      return "vm_add";
    case QueryOp::kVmRemove:
      return "vm_remove";
  }
  return "?";
}

Request parse_request(std::string_view line) {
  if (line.size() > kMaxRequestBytes) {
    throw Error(fmt::format("request longer than {} bytes", kMaxRequestBytes));
  }
  const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw Error("request is not valid JSON");
  if (!j.is_object()) throw Error("request must be a JSON object");
  const json* v = field(j, "v");
  if (v == nullptr || !v->is_number_integer() || v->get<std::int64_t>() != kQueryProtocolVersion) {
    throw Error(
        fmt::format("request field 'v' must be {} (the protocol version)", kQueryProtocolVersion));
  }
  Request r;
  if (const json* id = field(j, "id"); id != nullptr) {
    if (!id->is_string() || id->get_ref<const std::string&>().size() > 128) {
      throw Error("request field 'id' must be a string of at most 128 bytes");
    }
    r.id = id->get<std::string>();
  }
  const auto op = string_field(j, "op", true);
  if (op == "vms") {
    r.op = QueryOp::kVms;
  } else if (op == "stats") {
    r.op = QueryOp::kStats;
  } else if (op == "map") {
    r.op = QueryOp::kMap;
    r.vm = string_field(j, "vm", true);
    r.vdisk = string_field(j, "vdisk", false);
    r.offset = number_field(j, "offset", 0);
    r.length = number_field(j, "length", r.length);
    r.limit = number_field(j, "limit", kMaxMapExtents);
    if (r.limit == 0 || r.limit > kMaxMapExtents) {
      throw Error(fmt::format("request field 'limit' must be 1..{}", kMaxMapExtents));
    }
  } else if (op == "whose") {
    r.op = QueryOp::kWhose;
    r.device = device_field(j);
    r.sector = number_field(j, "sector", 0);
    if (field(j, "sector") == nullptr) throw Error("request field 'sector' is missing");
  } else if (op == "verify") {
    r.op = QueryOp::kVerify;
    r.vm = string_field(j, "vm", true);
    r.vdisk = string_field(j, "vdisk", false);
  } else if (op == "vm_add") {
    r.op = QueryOp::kVmAdd;
    r.vm = string_field(j, "vm", true);
    r.vdisk = string_field(j, "vdisk", true);
    r.image = string_field(j, "image", true);
    if (r.image.front() != '/') throw Error("request field 'image' must be an absolute path");
  } else if (op == "vm_remove") {
    r.op = QueryOp::kVmRemove;
    r.vm = string_field(j, "vm", true);
  } else {
    throw Error(fmt::format("unknown op '{}' (vms, map, whose, verify, stats, vm_add, vm_remove)",
                            op.substr(0, 32)));
  }
  return r;
}

}  // namespace v2p::agent
