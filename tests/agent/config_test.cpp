#include "agent/agent_config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "common/error.hpp"

namespace v2p::agent {
namespace {

class AgentConfig : public ::testing::Test {
 protected:
  void TearDown() override { std::filesystem::remove(file_); }
  std::string error_of(const std::string& text) {
    std::ofstream(file_) << text;
    AgentOptions o;
    try {
      load_agent_config(file_, o);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  std::filesystem::path file_ = std::filesystem::temp_directory_path() /
                                ("v2p-agent-config-" + std::to_string(::getpid()) + ".json");
};

TEST_F(AgentConfig, AppliesEveryField) {
  std::ofstream(file_) << R"({"socket":"/tmp/a.sock","ingest_socket":"/tmp/i.sock","group":"kvm",
    "socket_mode":"0600","state_dir":"/tmp/st","snapshot_interval_ms":500,"probe":false,
    "max_query_clients":3,"queries_per_round":7,"http":"127.0.0.1:9999"})";
  AgentOptions o;
  load_agent_config(file_, o);
  EXPECT_EQ(o.query_socket, "/tmp/a.sock");
  EXPECT_EQ(o.ingest_socket, "/tmp/i.sock");
  EXPECT_EQ(o.group, "kvm");
  EXPECT_EQ(o.socket_mode, 0600u);
  EXPECT_EQ(o.state_dir, "/tmp/st");
  EXPECT_EQ(o.snapshot_interval_ms, 500u);
  EXPECT_FALSE(o.probe);
  EXPECT_EQ(o.max_query_clients, 3u);
  EXPECT_EQ(o.queries_per_round, 7u);
  EXPECT_EQ(o.http_listen, "127.0.0.1:9999");
  EXPECT_FALSE(o.http_optional);  // asked for: must be bound
}

TEST_F(AgentConfig, ErrorsNameFileFieldAndProblem) {
  const std::string f = file_.string();
  EXPECT_EQ(error_of("{"), f + ": not valid JSON");
  EXPECT_EQ(error_of("[]"), f + ": must be a JSON object");
  EXPECT_EQ(error_of(R"({"sokcet":"x"})"),
            f + ": field 'sokcet' is unknown (socket, ingest_socket, group, socket_mode, "
                "state_dir, snapshot_interval_ms, probe, every_bio, http, max_query_clients, "
                "queries_per_round, attach)");
  EXPECT_EQ(error_of(R"({"socket":5})"), f + ": field 'socket' must be a non-empty string");
  EXPECT_EQ(error_of(R"({"attach":"vm1"})"),
            f + ": field 'attach' must be a list of VM names (\"*\": every QEMU)");
  EXPECT_EQ(error_of(R"({"snapshot_interval_ms":5})"),
            f + ": field 'snapshot_interval_ms' must be an integer in 100..86400000");
  EXPECT_EQ(error_of(R"({"socket_mode":"0999"})"),
            f + ": field 'socket_mode' must be an octal mode such as \"0660\" that lets the owner "
                "read and write");
  EXPECT_EQ(error_of(R"({"probe":"yes"})"), f + ": field 'probe' must be true or false");
  std::filesystem::remove(file_);
  AgentOptions o;
  try {
    load_agent_config(file_, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), f + ": cannot be read");
  }
}

}  // namespace
}  // namespace v2p::agent
