// The filter SDK through the stack builder and a real Server: the call order through a chain of
// instrumented layers (as nbdkit's test-layers), ordering by filter class whatever the given
// order, capability hooks reaching the handshake, a broken filter failing only its own
// requests, and a wrong-ABI filter refused with one line.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "vfilter/stack_builder.hpp"
#include "vfilter/test_server.hpp"

namespace v2p::vfilter {
namespace {

using testing::NbdTestClient;
using testing::pattern;
using testing::TempDir;

std::vector<std::string> lines_of(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

FilterConfig layer(const std::string& name, const std::string& cls,
                   const std::filesystem::path& log, const std::string& trim = "yes") {
  return {V2P_TEST_LAYER_FILTER, {{"name", name}, {"class", cls}, {"log", log}, {"trim", trim}}};
}

// One image vdisk served through the filters given; the stack closes when this goes.
struct FilteredServer {
  explicit FilteredServer(std::vector<FilterConfig> filters) {
    image = dir.path() / "disk0.raw";
    socket = dir.path() / "nbd.sock";
    testing::make_image(image, 16 << 20);
    config.vdisks = {image_vdisk("vm1", "disk0", image)};
    config.unix_socket = socket;
    StackRequest r;
    r.filters = std::move(filters);
    r.log = [this](std::string_view l) { log.emplace_back(l); };
    built = build_stacks(config, r);
    server = Server::start(config, &sink);
  }
  void stop() {
    server.reset();
    config.vdisks.clear();  // the last reference to the stack: the filters close
  }
  TempDir dir;
  std::filesystem::path image, socket;
  std::vector<std::string> log;  // outlives the stages that write to it
  ServerConfig config;
  BuiltStacks built;
  QueueSink sink;
  std::unique_ptr<Server> server;
};

TEST(FilterStack, CallsGoDownAndBackUpInClassOrder) {
  TempDir logs;
  const auto log = logs.path() / "calls.log";
  // Given bottom-class first: the builder must still put inspection on top, cache at the bottom.
  auto bottom = layer("C", "cache", log);
  bottom.args.emplace_back("tagged", "yes");  // the deepest hook still runs under the tag
  FilteredServer s({bottom, layer("A", "inspection", log), layer("B", "replication", log)});
  EXPECT_EQ(s.built.filter_names, (std::vector<std::string>{"A", "B", "C"}));
  {
    NbdTestClient c(s.socket, "disk0");
    const auto data = pattern(4096, 7);
    ASSERT_EQ(c.write(8192, data), 0U);
    std::vector<std::byte> back(4096);
    ASSERT_EQ(c.read(8192, back), 0U);
    EXPECT_EQ(back, data);
    ASSERT_EQ(c.command(nbd::kCmdFlush, 0, 0, 0), 0U);
    c.close();
  }
  s.stop();
  const std::vector<std::string> want = {
      // Built from the bottom: each stage opens over a stage that is already open.
      "C.open", "C.can_trim", "B.open", "B.can_trim", "A.open", "A.can_trim", "A.write>",
      "B.write>", "C.write>", "C.write<", "B.write<", "A.write<", "A.read>", "B.read>", "C.read>",
      "C.read<", "B.read<", "A.read<", "A.flush>", "B.flush>", "C.flush>", "C.flush<", "B.flush<",
      "A.flush<",
      // Torn down from the top: a stage closes while the stages below still serve it.
      "A.close", "B.close", "C.close"};
  EXPECT_EQ(lines_of(log), want);
}

// The same chain with every layer asynchronous: the same order, every hook on the connection's
// own threads (no_workers: a hook on a tagged worker fails), and the host I/O below still tagged.
TEST(FilterStack, AsynchronousLayersKeepTheOrderWithoutAWorkerHandoff) {
  TempDir logs;
  const auto log = logs.path() / "calls.log";
  auto async = [&](const std::string& name, const std::string& cls) {
    auto f = layer(name, cls, log);
    f.args.insert(f.args.end(), {{"async", "yes"}, {"no_workers", "yes"}, {"tagged", "yes"}});
    return f;
  };
  FilteredServer s({async("C", "cache"), async("A", "inspection"), async("B", "replication")});
  {
    NbdTestClient c(s.socket, "disk0");
    const auto data = pattern(4096, 9);
    ASSERT_EQ(c.write(8192, data), 0U);
    std::vector<std::byte> back(4096);
    ASSERT_EQ(c.read(8192, back), 0U);
    EXPECT_EQ(back, data);
    ASSERT_EQ(c.command(nbd::kCmdFlush, 0, 0, 0), 0U);
    c.close();
  }
  s.stop();
  const std::vector<std::string> want = {
      "C.open",   "C.can_trim", "B.open",   "B.can_trim", "A.open",   "A.can_trim", "A.write>",
      "B.write>", "C.write>",   "C.write<", "B.write<",   "A.write<", "A.read>",    "B.read>",
      "C.read>",  "C.read<",    "B.read<",  "A.read<",    "A.flush>", "B.flush>",   "C.flush>",
      "C.flush<", "B.flush<",   "A.flush<", "A.close",    "B.close",  "C.close"};
  EXPECT_EQ(lines_of(log), want);
  int tagged_data = 0;
  for (const auto& r : s.sink.drain()) {
    if (r.op == static_cast<std::uint8_t>(IoOp::kRead) ||
        r.op == static_cast<std::uint8_t>(IoOp::kWrite)) {
      EXPECT_NE(r.slot, 0) << "a read or write below asynchronous layers lost its tag";
      EXPECT_EQ(r.voffset, 8192U);
      ++tagged_data;
    }
  }
  EXPECT_EQ(tagged_data, 2);
}

// Asynchronous over blocking over asynchronous: each model calls the other through `next`.
TEST(FilterStack, AsynchronousAndBlockingLayersMix) {
  TempDir logs;
  const auto log = logs.path() / "calls.log";
  auto top = layer("A", "inspection", log);
  top.args.emplace_back("async", "yes");
  auto middle = layer("B", "replication", log);
  middle.args.emplace_back("tagged", "yes");  // blocking: runs under the request's tag
  auto bottom = layer("C", "cache", log);
  bottom.args.insert(bottom.args.end(), {{"async", "yes"}, {"tagged", "yes"}});
  FilteredServer s({bottom, top, middle});
  {
    NbdTestClient c(s.socket, "disk0");
    const auto data = pattern(4096, 11);
    ASSERT_EQ(c.write(8192, data), 0U) << ::testing::PrintToString(lines_of(log));
    std::vector<std::byte> back(4096);
    ASSERT_EQ(c.read(8192, back), 0U);
    EXPECT_EQ(back, data);
    c.close();
  }
  s.stop();
  const std::vector<std::string> want = {
      "C.open",   "C.can_trim", "B.open",   "B.can_trim", "A.open",   "A.can_trim", "A.write>",
      "B.write>", "C.write>",   "C.write<", "B.write<",   "A.write<", "A.read>",    "B.read>",
      "C.read>",  "C.read<",    "B.read<",  "A.read<",    "A.close",  "B.close",    "C.close"};
  EXPECT_EQ(lines_of(log), want);
}

TEST(FilterStack, HandshakeAdvertisesWhatTheStackOffers) {
  TempDir logs;
  FilteredServer plain({layer("A", "inspection", logs.path() / "a.log")});
  NbdTestClient a(plain.socket, "disk0");
  EXPECT_NE(a.flags() & nbd::kTxSendTrim, 0);
  EXPECT_NE(a.flags() & nbd::kTxSendFua, 0);
  FilteredServer narrowed({layer("A", "inspection", logs.path() / "b.log"),
                           layer("N", "qos", logs.path() / "b.log", "no")});
  NbdTestClient b(narrowed.socket, "disk0");
  EXPECT_EQ(b.flags() & nbd::kTxSendTrim, 0) << "a filter below said can_trim = false";
  EXPECT_NE(b.flags() & nbd::kTxSendFua, 0) << "other capabilities still forward";
  EXPECT_NE(b.flags() & nbd::kTxSendWriteZeroes, 0);
}

void broken_filter_fails_its_requests_only(
    const std::vector<std::pair<std::string, std::string>>& args) {
  FilteredServer s(std::vector<FilterConfig>{{V2P_TEST_THROWING_FILTER, args}});
  NbdTestClient c(s.socket, "disk0");
  std::vector<std::byte> buf(4096);
  EXPECT_EQ(c.read(0, buf), nbd::kEio) << "a hook that throws gives the client EIO";
  EXPECT_EQ(c.write(0, pattern(4096, 1)), nbd::kEperm) << "a returned -errno reaches the client";
  // The same connection, and a new one, keep working everywhere else.
  const auto data = pattern(4096, 2);
  ASSERT_EQ(c.write(1 << 20, data), 0U);
  ASSERT_EQ(c.read(1 << 20, buf), 0U);
  EXPECT_EQ(buf, data);
  EXPECT_EQ(c.read(0, buf), nbd::kEio);
  NbdTestClient d(s.socket, "disk0");
  ASSERT_EQ(d.read(1 << 20, buf), 0U);
  EXPECT_EQ(buf, data);
  // One line for the filter's failures, not one per request.
  int lines = 0;
  for (const auto& l : s.log) lines += l.find("threw: poisoned block") != std::string::npos;
  EXPECT_EQ(lines, 1);
}

TEST(FilterStack, ABrokenFilterFailsItsRequestsOnly) {
  broken_filter_fails_its_requests_only({});
}

TEST(FilterStack, ABrokenAsynchronousFilterFailsItsRequestsOnly) {
  broken_filter_fails_its_requests_only({{"async", "yes"}});
}

TEST(FilterStack, WrongAbiIsRefusedWithOneLine) {
  TempDir dir;
  ServerConfig config;
  config.vdisks = {image_vdisk("vm1", "disk0", dir.path() / "none.raw")};
  StackRequest r;
  r.filters = {{V2P_TEST_WRONG_ABI_FILTER, {}}};
  try {
    build_stacks(config, r);
    FAIL() << "a filter built for another ABI was loaded";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("filter libtest_wrong_abi_filter.so was built for SDK ABI 3, this v2p "
                        "has ABI 2; rebuild it against v2p 0.1"),
              std::string::npos)
        << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  r.filters = {{V2P_TEST_LAYER_FILTER, {{"name", "x"}, {"colour", "red"}}}};
  EXPECT_THROW(build_stacks(config, r), Error) << "unknown args are refused";
}

}  // namespace
}  // namespace v2p::vfilter
