#include "vfilter/config_file.hpp"

#include <gtest/gtest.h>

#include "common/error.hpp"

namespace v2p::vfilter {
namespace {

TEST(ServeConfig, FullExample) {
  const auto c = parse_serve_config(R"({
    "socket": "/run/v2p/vm1.sock", "socket_mode": "0660", "tcp": "0.0.0.0:10809",
    "tagging": false, "direct_io": false, "record": "rec.v2p",
    "vms": [ {"name": "vm1", "vdisks": [
        {"name": "disk0", "image": "/images/vm1.raw"},
        {"name": "data", "image": "data.raw", "export": "vm1-data", "read_only": true} ]} ],
    "vdisks": [ {"name": "scratch", "image": "/images/s.raw"} ] })",
                                    "/etc/v2p");
  EXPECT_EQ(c.server.unix_socket, "/run/v2p/vm1.sock");
  EXPECT_EQ(c.server.socket_mode, 0660u);
  EXPECT_EQ(c.server.tcp_host, "0.0.0.0");
  EXPECT_EQ(c.server.tcp_port, 10809);
  EXPECT_FALSE(c.server.tagging);
  EXPECT_FALSE(c.server.direct_io);
  EXPECT_EQ(c.record, "/etc/v2p/rec.v2p");
  ASSERT_EQ(c.server.vdisks.size(), 3u);
  EXPECT_EQ(c.server.vdisks[0].vm, "vm1");
  EXPECT_EQ(c.server.vdisks[0].export_name, "disk0");
  EXPECT_EQ(c.server.vdisks[1].image, "/etc/v2p/data.raw");
  EXPECT_EQ(c.server.vdisks[1].export_name, "vm1-data");
  EXPECT_TRUE(c.server.vdisks[1].read_only);
  EXPECT_EQ(c.server.vdisks[2].vm, "");  // identified from the peer
}

TEST(ServeConfig, UpstreamVdisks) {
  const auto c = parse_serve_config(R"({ "socket": "/s", "vms": [ {"name": "vm3", "vdisks": [
        {"name": "disk0", "upstream": "nbd+unix:///d?socket=/q.sock", "upstream_connections": 2},
        {"name": "disk1", "upstream": "nbd://127.0.0.1", "image": "vm3.qcow2"} ]} ] })",
                                    "/etc/v2p");
  ASSERT_EQ(c.server.vdisks.size(), 2u);
  EXPECT_EQ(c.server.vdisks[0].upstream, "nbd+unix:///d?socket=/q.sock");
  EXPECT_EQ(c.server.vdisks[0].upstream_connections, 2u);
  EXPECT_TRUE(c.server.vdisks[0].image.empty());
  EXPECT_EQ(c.server.vdisks[1].image, "/etc/v2p/vm3.qcow2");
  EXPECT_EQ(c.server.vdisks[1].upstream_connections, 4u);
  const auto message = [](const char* json) {
    try {
      parse_serve_config(json, "/");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(R"({"socket":"/s","vdisks":[{"name":"d"}]})").find("'image' or 'upstream'"),
            std::string::npos);
  EXPECT_NE(message(R"({"socket":"/s","vdisks":[{"name":"d","upstream":"nbd://x",
            "upstream_connections":0}]})")
                .find("between 1 and 64"),
            std::string::npos);
}

TEST(ServeConfig, ErrorsNameTheProblem) {
  const auto message = [](const char* json) {
    try {
      parse_serve_config(json, "/");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(message("[]").find("JSON object"), std::string::npos);
  EXPECT_NE(message(R"({"sockett": "x"})").find("unknown key 'sockett'"), std::string::npos);
  EXPECT_NE(message(R"({"vms": [{"name": "a", "vdisks": [{"name": "d"}]}]})").find("'image'"),
            std::string::npos);
  EXPECT_NE(message(R"({"tagging": "yes", "vdisks": []})").find("wrong type"), std::string::npos);
  EXPECT_NE(message(R"({"socket": "/s"})").find("no vdisks"), std::string::npos);
}

TEST(ServeConfig, Policies) {
  const auto c = parse_serve_config(R"({
    "vdisks": [ {"name": "d", "image": "/i.raw"} ], "policy_tick_ms": 250,
    "policies": [ {"file": "policies/heat.so", "args": {"every": 5, "top": "3", "on": true}},
                  {"file": "/opt/p.so"} ] })",
                                    "/etc/v2p");
  EXPECT_EQ(c.policy_tick_ms, 250u);
  ASSERT_EQ(c.policies.size(), 2u);
  EXPECT_EQ(c.policies[0].file, "/etc/v2p/policies/heat.so");
  using Args = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(c.policies[0].args, (Args{{"every", "5"}, {"on", "true"}, {"top", "3"}}));
  EXPECT_EQ(c.policies[1].file, "/opt/p.so");
  EXPECT_TRUE(c.policies[1].args.empty());
  const auto message = [](const char* json) {
    try {
      parse_serve_config(json, "/");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string d = R"("vdisks": [{"name": "d", "image": "/i"}])";
  EXPECT_NE(message(("{" + d + R"(, "policies": [{"args": {}}]})").c_str()).find("'file'"),
            std::string::npos);
  EXPECT_NE(message(("{" + d + R"(, "policies": [{"file": "p.so", "arg": {}}]})").c_str())
                .find("unknown key 'arg'"),
            std::string::npos);
  EXPECT_NE(message(("{" + d + R"(, "policies": [{"file": "p.so", "args": {"k": [1]}}]})").c_str())
                .find("arg 'k'"),
            std::string::npos);
  EXPECT_NE(message(("{" + d + R"(, "policy_tick_ms": 0})").c_str()).find("policy_tick_ms"),
            std::string::npos);
}

TEST(ServeConfig, TcpAddressAndMode) {
  std::string host;
  std::uint16_t port = 0;
  parse_tcp_address("10809", host, port);
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 10809);
  parse_tcp_address("[::1]:99", host, port);
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 99);
  EXPECT_THROW(parse_tcp_address("host:0", host, port), Error);
  EXPECT_THROW(parse_tcp_address("host:70000", host, port), Error);
  EXPECT_THROW(parse_tcp_address("host:x", host, port), Error);
  EXPECT_EQ(parse_socket_mode("0660"), 0660u);
  EXPECT_THROW(parse_socket_mode("0999"), Error);
  EXPECT_THROW(parse_socket_mode(""), Error);
}

}  // namespace
}  // namespace v2p::vfilter
