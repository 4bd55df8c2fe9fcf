#include "agent/query_protocol.hpp"

#include <gtest/gtest.h>

#include "common/error.hpp"

namespace v2p::agent {
namespace {

std::string error_of(std::string_view line) {
  try {
    parse_request(line);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(QueryProtocol, ParsesEachOp) {
  auto r = parse_request(
      R"({"v":1,"op":"map","vm":"vm1","vdisk":"d0","offset":4096,"length":8192,"limit":5,"id":"q1"})");
  EXPECT_EQ(r.op, QueryOp::kMap);
  EXPECT_EQ(r.vm, "vm1");
  EXPECT_EQ(r.vdisk, "d0");
  EXPECT_EQ(r.offset, 4096u);
  EXPECT_EQ(r.length, 8192u);
  EXPECT_EQ(r.limit, 5u);
  EXPECT_EQ(r.id, "q1");
  r = parse_request(R"({"v":1,"op":"whose","device":"7:3","sector":99})");
  EXPECT_EQ(r.op, QueryOp::kWhose);
  EXPECT_EQ(r.device, (7u << 20) | 3u);
  EXPECT_EQ(r.sector, 99u);
  EXPECT_EQ(parse_request(R"({"v":1,"op":"vms"})").op, QueryOp::kVms);
  EXPECT_EQ(parse_request(R"({"v":1,"op":"stats"})").op, QueryOp::kStats);
  EXPECT_EQ(parse_request(R"({"v":1,"op":"verify","vm":"a"})").op, QueryOp::kVerify);
}

TEST(QueryProtocol, ErrorsNameTheFieldAndTheProblem) {
  EXPECT_EQ(error_of("not json"), "request is not valid JSON");
  EXPECT_EQ(error_of("[1]"), "request must be a JSON object");
  EXPECT_EQ(error_of(R"({"op":"vms"})"), "request field 'v' must be 1 (the protocol version)");
  EXPECT_EQ(error_of(R"({"v":2,"op":"vms"})"),
            "request field 'v' must be 1 (the protocol version)");
  EXPECT_EQ(error_of(R"({"v":1,"op":"map"})"), "request field 'vm' is missing");
  EXPECT_EQ(error_of(R"({"v":1,"op":"map","vm":3})"), "request field 'vm' must be a string");
  EXPECT_EQ(error_of(R"({"v":1,"op":"map","vm":"a","offset":-1})"),
            "request field 'offset' must be a non-negative integer");
  EXPECT_EQ(error_of(R"({"v":1,"op":"map","vm":"a","limit":0})"),
            "request field 'limit' must be 1..100000");
  EXPECT_EQ(error_of(R"({"v":1,"op":"whose","device":"7-0","sector":1})"),
            "request field 'device' is not MAJ:MIN: '7-0'");
  EXPECT_EQ(error_of(R"({"v":1,"op":"whose","device":"7:0"})"),
            "request field 'sector' is missing");
  EXPECT_EQ(error_of(R"({"v":1,"op":"drop_tables"})"),
            "unknown op 'drop_tables' (vms, map, whose, verify, stats, vm_add, vm_remove)");
  EXPECT_EQ(error_of(std::string(kMaxRequestBytes + 1, ' ')), "request longer than 4096 bytes");
  EXPECT_EQ(error_of(R"({"v":1,"op":"vm_add","vm":"a","vdisk":"d","image":"rel.raw"})"),
            "request field 'image' must be an absolute path");
  EXPECT_EQ(error_of(R"({"v":1,"op":"vm_add","vm":"a","image":"/x.raw"})"),
            "request field 'vdisk' is missing");
}

}  // namespace
}  // namespace v2p::agent
