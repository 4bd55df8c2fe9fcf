// The server in-process, driven by a raw NBD client: records, slots, errors on the wire,
// concurrency and clients that misbehave or vanish.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/error.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "test_server.hpp"
#include "v2p/tag.hpp"
#include "vfilter/nbd_wire.hpp"
#include "vfilter/slot_allocator.hpp"

namespace v2p::vfilter {
namespace {

using namespace nbd;
using namespace testing;

TEST(Server, DeclaresConfiguredVdiskAtStart) {
  TestServer s;
  const auto decls = s.sink.declarations();
  ASSERT_EQ(decls.size(), 1u);
  EXPECT_EQ(decls[0].vm_name, "vm1");
  EXPECT_EQ(decls[0].vdisk_name, "disk0");
  EXPECT_EQ(decls[0].image_path, std::filesystem::absolute(s.image).string());
  EXPECT_GE(decls[0].vm_id, 1u);
  EXPECT_GE(decls[0].vdisk_id, 1u);
}

TEST(Server, SocketIsPrivateByDefaultAndRemovedOnStop) {
  TestServer s;
  struct stat st {};
  ASSERT_EQ(::stat(s.socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  s.server.reset();
  EXPECT_FALSE(std::filesystem::exists(s.socket));
}

TEST(Server, DataRoundTripsAndMatchesTheImage) {
  TestServer s;
  NbdTestClient c(s.socket, "disk0");
  EXPECT_EQ(c.size(), 64u << 20);
  const auto data = pattern(256 * 1024, 1);
  ASSERT_EQ(c.write(1 << 20, data), 0u);
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(c.read(1 << 20, back), 0u);
  EXPECT_EQ(back, data);
  ASSERT_EQ(c.command(kCmdFlush, 0, 0, 0), 0u);
  EXPECT_EQ(read_file_range(s.image, 1 << 20, data.size()), data);
}

TEST(Server, RecordsDescribeEachHostIo) {
  TestServer s;
  NbdTestClient c(s.socket, "disk0");
  const auto decl = s.sink.declarations().at(0);
  s.sink.drain();
  ASSERT_EQ(c.write(4096, pattern(65536, 2)), 0u);
  std::vector<std::byte> buf(8192);
  ASSERT_EQ(c.read(8192, buf), 0u);
  ASSERT_EQ(c.command(kCmdTrim, 0, 1 << 20, 1 << 20), 0u);
  ASSERT_EQ(c.command(kCmdWriteZeroes, kCmdFlagNoHole, 2 << 20, 4096), 0u);
  ASSERT_EQ(c.command(kCmdFlush, 0, 0, 0), 0u);
  ASSERT_EQ(c.write(3 << 20, pattern(4096, 3), kCmdFlagFua), 0u);
  const auto recs = s.sink.drain();
  ASSERT_EQ(recs.size(), 7u);  // the FUA write is a write and a flush
  struct Want {
    IoOp op;
    std::uint64_t off;
    std::uint32_t len;
    bool tagged;
    std::uint8_t flags;
  };
  const Want want[] = {{IoOp::kWrite, 4096, 65536, true, 0},
                       {IoOp::kRead, 8192, 8192, true, 0},
                       {IoOp::kDiscard, 1 << 20, 1 << 20, false, 0},
                       {IoOp::kWriteZeroes, 2 << 20, 4096, false, kContextNoHole},
                       {IoOp::kFlush, 0, 0, false, 0},
                       {IoOp::kWrite, 3 << 20, 4096, true, kContextFua},
                       {IoOp::kFlush, 0, 0, false, kContextFua}};
  std::uint64_t last_seq = 0;
  for (std::size_t i = 0; i < recs.size(); ++i) {
    SCOPED_TRACE(i);
    const auto& r = recs[i];
    EXPECT_EQ(r.op, static_cast<std::uint8_t>(want[i].op));
    EXPECT_EQ(r.voffset, want[i].off);
    EXPECT_EQ(r.length, want[i].len);
    EXPECT_EQ(r.flags, want[i].flags);
    EXPECT_EQ(r.result, 0);
    EXPECT_EQ(r.tgid, static_cast<std::uint32_t>(::getpid()));
    EXPECT_EQ(r.vm_id, decl.vm_id);
    EXPECT_EQ(r.vdisk_id, decl.vdisk_id);
    EXPECT_LE(r.submit_ns, r.complete_ns);
    if (want[i].tagged) {
      EXPECT_GE(r.slot, 1);
      EXPECT_LE(r.slot, tag::kMaxSlot);
    } else {
      EXPECT_EQ(r.slot, 0);  // fsync/fallocate SQEs cannot carry an ioprio
    }
    if (i > 0) {
      EXPECT_GT(r.seq, last_seq);
    }
    last_seq = r.seq;
  }
}

TEST(Server, TaggingOffLeavesSlotsZero) {
  TestServer s(64ULL << 20, /*tagging=*/false);
  NbdTestClient c(s.socket, "disk0");
  ASSERT_EQ(c.write(0, pattern(4096, 4)), 0u);
  const auto recs = s.sink.drain();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].slot, 0);
}

// Pipelines many requests on several connections, then checks that no two host I/Os whose
// [submit, complete] windows overlap share a slot, and that every data I/O was tagged.
TEST(Server, InFlightSlotsAreDistinctAcrossConnections) {
  TestServer s;
  constexpr int kConns = 3;
  constexpr int kDepth = 64;
  std::vector<std::unique_ptr<NbdTestClient>> clients;
  for (int i = 0; i < kConns; ++i)
    clients.push_back(std::make_unique<NbdTestClient>(s.socket, "disk0"));
  s.sink.drain();
  const auto data = pattern(16384, 5);
  std::vector<std::thread> threads;
  for (int ci = 0; ci < kConns; ++ci) {
    threads.emplace_back([&, ci] {
      auto& c = *clients[ci];
      for (int i = 0; i < kDepth; ++i) {
        const std::uint64_t off = (std::uint64_t(ci) * kDepth + i) * data.size();
        c.send_request(kCmdWrite, 0, i + 1, off, static_cast<std::uint32_t>(data.size()),
                       data.data());
      }
      std::set<std::uint64_t> cookies;
      for (int i = 0; i < kDepth; ++i) {
        const auto r = c.read_reply();
        EXPECT_EQ(r.error, 0u);
        cookies.insert(r.cookie);
      }
      EXPECT_EQ(cookies.size(), static_cast<std::size_t>(kDepth));  // each answered exactly once
    });
  }
  for (auto& t : threads) t.join();
  const auto recs = s.sink.drain();
  ASSERT_EQ(recs.size(), static_cast<std::size_t>(kConns * kDepth));
  std::map<std::uint16_t, std::vector<const ContextRecord*>> by_slot;
  for (const auto& r : recs) {
    ASSERT_GE(r.slot, 1);
    ASSERT_EQ(tag::slot_from_ioprio(tag::ioprio_for_slot(r.slot)), r.slot);
    by_slot[r.slot].push_back(&r);
  }
  for (auto& [slot, rs] : by_slot) {
    std::sort(rs.begin(), rs.end(), [](auto* a, auto* b) { return a->submit_ns < b->submit_ns; });
    for (std::size_t i = 1; i < rs.size(); ++i) {
      EXPECT_LE(rs[i - 1]->complete_ns, rs[i]->submit_ns) << "slot " << slot << " reused in flight";
    }
  }
  EXPECT_EQ(SlotAllocator::instance().in_use(), 0u);
}

// With every slot of the process taken, a request waits; it is submitted with the first slot
// that comes free, never untagged.
TEST(Server, ExhaustedSlotsMakeRequestsWaitNotGoUntagged) {
  TestServer s;
  NbdTestClient c(s.socket, "disk0");
  s.sink.drain();
  auto& slots = SlotAllocator::instance();
  std::vector<std::uint16_t> held;
  while (const auto slot = slots.try_acquire()) held.push_back(slot);
  ASSERT_EQ(held.size(), tag::kMaxSlot);
  ASSERT_TRUE(c.send_request(kCmdWrite, 0, 42, 0, 4096, pattern(4096, 16).data()));
  const std::uint16_t freed = held.back();
  held.pop_back();
  slots.release(freed);
  const auto reply = c.read_reply();  // only possible once the server got the freed slot
  EXPECT_EQ(reply.error, 0u);
  EXPECT_EQ(reply.cookie, 42u);
  for (auto slot : held) slots.release(slot);
  const auto recs = s.sink.drain();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].slot, freed);
}

TEST(Server, ErrorRepliesKeepTheConnectionUsable) {
  TestServer s(1 << 20);
  NbdTestClient c(s.socket, "disk0");
  std::vector<std::byte> buf(512);
  EXPECT_EQ(c.read(1 << 20, buf), kEinval);                        // past the end
  EXPECT_EQ(c.write((1 << 20) - 512, pattern(1024, 6)), kEnospc);  // write past the end
  EXPECT_EQ(c.command(kCmdRead, 0, ~0ULL - 10, 512), kEinval);     // offset + length overflows
  EXPECT_EQ(c.command(77, 0, 0, 0), kEinval);                      // unknown command
  EXPECT_EQ(c.command(kCmdFlush, kCmdFlagNoHole, 0, 0), kEinval);  // flag not for this command
  EXPECT_EQ(c.command(kCmdRead, 0, 0, kMaxPayload + 1), kEinval);  // over the maximum payload
  EXPECT_EQ(c.read(1, buf), kEinval);  // unaligned, after agreeing to the 512-byte minimum
  EXPECT_EQ(c.write(0, pattern(512, 7)), 0u);
  ASSERT_EQ(c.read(0, buf), 0u);
  EXPECT_EQ(buf, pattern(512, 7));
  EXPECT_GE(s.server->stats().errors, 7u);
}

TEST(Server, OversizedWritePayloadIsConsumedAndRefused) {
  TestServer s(64ULL << 20);
  NbdTestClient c(s.socket, "disk0");
  EXPECT_EQ(c.write(0, std::vector<std::byte>(kMaxPayload + 4096)), kEinval);
  EXPECT_EQ(c.write(0, pattern(4096, 8)), 0u);
}

TEST(Server, ReadOnlyExportRefusesWrites) {
  TestServer s(1 << 20, true, /*read_only=*/true);
  NbdTestClient c(s.socket, "disk0");
  EXPECT_TRUE(c.flags() & kTxReadOnly);
  EXPECT_EQ(c.write(0, pattern(512, 9)), kEperm);
  EXPECT_EQ(c.command(kCmdTrim, 0, 0, 512), kEperm);
  EXPECT_EQ(c.command(kCmdWriteZeroes, 0, 0, 512), kEperm);
  std::vector<std::byte> buf(512);
  EXPECT_EQ(c.read(0, buf), 0u);
}

TEST(Server, UnalignedRequestsTakeTheBufferedPathWhenNotAgreed) {
  TestServer s(1 << 20);
  NbdTestClient c(s.socket, "disk0", /*ask_block_size=*/false);
  const auto data = pattern(1000, 10);
  ASSERT_EQ(c.write(5000, data), 0u);
  std::vector<std::byte> back(1000);
  ASSERT_EQ(c.read(5000, back), 0u);
  EXPECT_EQ(back, data);
  // Direct and buffered descriptors see the same bytes: an aligned read covering it.
  std::vector<std::byte> page(8192);
  ASSERT_EQ(c.read(0, page), 0u);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), page.begin() + 5000));
}

TEST(Server, WriteZeroesAndTrimReadBackAsZeros) {
  TestServer s(4 << 20);
  NbdTestClient c(s.socket, "disk0");
  ASSERT_EQ(c.write(0, pattern(3 << 20, 11)), 0u);
  ASSERT_EQ(c.command(kCmdWriteZeroes, 0, 0, 1 << 20), 0u);
  ASSERT_EQ(c.command(kCmdWriteZeroes, kCmdFlagNoHole | kCmdFlagFua, 1 << 20, 1 << 20), 0u);
  ASSERT_EQ(c.command(kCmdTrim, 0, 2 << 20, 1 << 20), 0u);
  std::vector<std::byte> back(3 << 20);
  ASSERT_EQ(c.read(0, back), 0u);
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](std::byte b) { return b == std::byte{0}; }));
}

TEST(Server, MultiConnFlushMakesWritesVisibleEverywhere) {
  TestServer s;
  NbdTestClient a(s.socket, "disk0");
  NbdTestClient b(s.socket, "disk0");
  EXPECT_TRUE(a.flags() & kTxCanMultiConn);
  ASSERT_EQ(a.write(8192, pattern(4096, 12)), 0u);
  ASSERT_EQ(b.command(kCmdFlush, 0, 0, 0), 0u);
  std::vector<std::byte> back(4096);
  ASSERT_EQ(b.read(8192, back), 0u);
  EXPECT_EQ(back, pattern(4096, 12));
}

TEST(Server, MalformedHandshakesCloseOnlyThatConnection) {
  TestServer s;
  NbdTestClient good(s.socket, "disk0");
  // Garbage instead of client flags and options.
  {
    const int fd = connect_unix(s.socket);
    std::byte greet[18];
    ASSERT_TRUE(recv_all(fd, greet, sizeof greet));
    const char junk[] = "\xff\xff\xff\xff this is not NBD";
    send_all(fd, junk, sizeof junk);
    char byte;
    EXPECT_FALSE(recv_all(fd, &byte, 1));  // the server closed it
    ::close(fd);
  }
  // Truncated: half an option header, then gone.
  {
    const int fd = connect_unix(s.socket);
    std::vector<std::byte> b;
    put_be32(b, kClientFixedNewstyle);
    put_be64(b, kOptMagic);
    send_all(fd, b.data(), b.size());
    ::close(fd);
  }
  // Bad request magic after a good handshake.
  {
    NbdTestClient bad(s.socket, "disk0");
    const char junk[28] = {1, 2, 3};
    send_all(bad.fd(), junk, sizeof junk);
    EXPECT_THROW(bad.read_reply(), std::runtime_error);
  }
  ASSERT_EQ(good.write(0, pattern(4096, 13)), 0u);
  EXPECT_TRUE(eventually([&] { return s.server->open_connections() == 1; }));
}

TEST(Server, VanishingClientDoesNotDisturbAnother) {
  TestServer s;
  NbdTestClient steady(s.socket, "disk0");
  s.sink.drain();
  {
    // Many reads in flight, then gone before reading a single reply.
    NbdTestClient gone(s.socket, "disk0");
    for (int i = 0; i < 100; ++i) gone.send_request(kCmdRead, 0, i, i * 65536ULL, 65536);
    // And a write whose payload never arrives in full.
    NbdTestClient cut(s.socket, "disk0");
    cut.send_request(kCmdWrite, 0, 1, 0, 1 << 20);  // header only
    send_all(cut.fd(), pattern(1000, 14).data(), 1000);
  }  // both closed here
  for (int i = 0; i < 50; ++i) {
    const auto data = pattern(4096, 100 + i);
    ASSERT_EQ(steady.write(i * 4096ULL + (8 << 20), data), 0u);
    std::vector<std::byte> back(4096);
    ASSERT_EQ(steady.read(i * 4096ULL + (8 << 20), back), 0u);
    ASSERT_EQ(back, data);
  }
  EXPECT_TRUE(eventually([&] { return s.server->open_connections() == 1; }));
  // The vanished clients' requests complete and give their slots back.
  EXPECT_TRUE(eventually([] { return SlotAllocator::instance().in_use() == 0; }));
  // Nothing of the half-sent write reached the image.
  EXPECT_EQ(read_file_range(s.image, 0, 1000), std::vector<std::byte>(1000));
}

TEST(Server, StopWithClientsConnectedReturns) {
  TestServer s;
  NbdTestClient a(s.socket, "disk0");
  for (int i = 0; i < 16; ++i) a.send_request(kCmdRead, 0, i, 0, 65536);
  s.server->stop();
  s.server->stop();  // idempotent
  EXPECT_FALSE(std::filesystem::exists(s.socket));
}

TEST(Server, PeerIdentityNamesUnconfiguredVm) {
  TestServer s(1 << 20, true, false, /*vm=*/"");
  EXPECT_TRUE(s.sink.declarations().empty());  // declared on first connection
  NbdTestClient c(s.socket, "disk0");
  ASSERT_EQ(c.write(0, pattern(512, 15)), 0u);
  const auto decls = s.sink.declarations();
  ASSERT_EQ(decls.size(), 1u);
  // This test binary has no -name/-uuid, so its pid names it.
  EXPECT_EQ(decls[0].vm_name, "pid-" + std::to_string(::getpid()));
}

TEST(Server, StartErrorsSayWhatToDo) {
  TempDir dir;
  ServerConfig c;
  c.vdisks = {image_vdisk("vm", "d", dir.path() / "missing.raw")};
  c.unix_socket = dir.path() / "s.sock";
  try {
    Server::start(c, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("qemu-img create"), std::string::npos) << e.what();
  }
  make_image(dir.path() / "img.raw", 1 << 20);
  c.vdisks[0].image = dir.path() / "img.raw";
  c.unix_socket.clear();
  EXPECT_THROW(Server::start(c, nullptr), Error);  // no listener
  c.unix_socket = dir.path() / "s.sock";
  auto first = Server::start(c, nullptr);
  EXPECT_THROW(Server::start(c, nullptr), Error);  // socket in use
  c.vdisks.push_back(c.vdisks[0]);
  c.unix_socket = dir.path() / "t.sock";
  EXPECT_THROW(Server::start(c, nullptr), Error);  // duplicate export name
}

TEST(Server, ServesOverTcpToo) {
  TempDir dir;
  make_image(dir.path() / "img.raw", 1 << 20);
  ServerConfig c;
  c.vdisks = {image_vdisk("vm", "d", dir.path() / "img.raw")};
  c.tcp_port = 0;
  c.unix_socket = dir.path() / "s.sock";
  // Ports may be taken on a shared machine: try a few, the first free one is used.
  std::unique_ptr<Server> server;
  for (std::uint16_t port = 20809; port < 20909 && !server; ++port) {
    c.tcp_port = port;
    try {
      server = Server::start(c, nullptr);
    } catch (const Error&) {
    }
  }
  ASSERT_TRUE(server);
  EXPECT_EQ(server->tcp_port(), c.tcp_port);
  V2P_REQUIRE_TOOLS("nbdinfo");
  const auto r =
      run_command({"nbdinfo", "--size", "nbd://127.0.0.1:" + std::to_string(c.tcp_port) + "/d"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1048576\n");
}

}  // namespace
}  // namespace v2p::vfilter
