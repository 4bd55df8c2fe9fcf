// Exports served by a BlockBackend stack instead of the io_uring image path: a FileBackend, a
// recording stage that checks what reaches it (names, tag on its own thread), a failing stage,
// and an upstream NBD server (qemu-nbd and qemu-storage-daemon serving a qcow2) through libnbd.
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>

#include <fmt/core.h>

#include "common/error.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "test_server.hpp"
#include "v2p/tag.hpp"
#include "vfilter/file_backend.hpp"
#include "vfilter/nbd_upstream_backend.hpp"

namespace v2p::vfilter {
namespace {

using namespace testing;

#define REQUIRE_TOOL(tool) V2P_REQUIRE_TOOLS(tool)

std::uint16_t thread_ioprio() {
  constexpr int kWhoProcess = 1;  // with who == 0: the calling thread
  return static_cast<std::uint16_t>(::syscall(SYS_ioprio_get, kWhoProcess, 0));
}

// Forwards to `next` and remembers what it saw; checks the worker runs under the request's tag.
class RecordingStage final : public BlockBackend {
 public:
  explicit RecordingStage(std::shared_ptr<BlockBackend> next) : next_(std::move(next)) {}
  std::uint64_t size() const override { return next_->size(); }
  std::string describe() const override { return next_->describe(); }
  int read(const IoTarget& who, std::span<std::byte> out, std::uint64_t off) override {
    note(who, 'r');
    return next_->read(who, out, off);
  }
  int write(const IoTarget& who, std::span<const std::byte> d, std::uint64_t off,
            Fua fua) override {
    note(who, fua == Fua::kYes ? 'W' : 'w');
    return next_->write(who, d, off, fua);
  }
  int write_zeroes(const IoTarget& who, std::uint64_t off, std::uint64_t len, MayPunch punch,
                   Fua fua) override {
    note(who, 'z');
    return next_->write_zeroes(who, off, len, punch, fua);
  }
  int trim(const IoTarget& who, std::uint64_t off, std::uint64_t len) override {
    note(who, 't');
    return next_->trim(who, off, len);
  }
  int flush(const IoTarget& who) override {
    note(who, 'f');
    return next_->flush(who);
  }

  std::mutex mu;
  std::string ops;
  std::set<std::string> targets;
  int tag_mismatches = 0;
  int tagged_data_calls = 0;

 private:
  void note(const IoTarget& who, char op) {
    const std::uint16_t actual = thread_ioprio();
    std::lock_guard lock(mu);
    ops.push_back(op);
    targets.insert(fmt::format("{}/{}", who.vm, who.vdisk));
    if (who.ioprio != 0) ++tagged_data_calls;
    // Untagged calls run with no priority set (the kernel reports the default, not 0).
    if (who.ioprio != 0 && actual != who.ioprio) ++tag_mismatches;
  }
  std::shared_ptr<BlockBackend> next_;
};

// Fails reads in [bad_begin, bad_end) with EIO; everything else forwards.
class FailingStage final : public BlockBackend {
 public:
  FailingStage(std::shared_ptr<BlockBackend> next, std::uint64_t b, std::uint64_t e)
      : next_(std::move(next)), bad_begin_(b), bad_end_(e) {}
  std::uint64_t size() const override { return next_->size(); }
  std::string describe() const override { return next_->describe(); }
  int read(const IoTarget& who, std::span<std::byte> out, std::uint64_t off) override {
    if (off < bad_end_ && off + out.size() > bad_begin_) return -EIO;
    return next_->read(who, out, off);
  }
  int write(const IoTarget& who, std::span<const std::byte> d, std::uint64_t off,
            Fua fua) override {
    return next_->write(who, d, off, fua);
  }
  int write_zeroes(const IoTarget& who, std::uint64_t off, std::uint64_t len, MayPunch punch,
                   Fua fua) override {
    return next_->write_zeroes(who, off, len, punch, fua);
  }
  int trim(const IoTarget& who, std::uint64_t off, std::uint64_t len) override {
    return next_->trim(who, off, len);
  }
  int flush(const IoTarget& who) override { return next_->flush(who); }

 private:
  std::shared_ptr<BlockBackend> next_;
  std::uint64_t bad_begin_, bad_end_;
};

struct BackendServer {
  explicit BackendServer(const std::function<VdiskConfig(const std::filesystem::path&)>& make) {
    socket = dir.path() / "nbd.sock";
    ServerConfig c;
    c.vdisks = {make(dir.path())};
    c.unix_socket = socket;
    server = Server::start(c, &sink);
  }
  [[nodiscard]] std::string uri() const { return "nbd+unix:///disk0?socket=" + socket.string(); }
  TempDir dir;
  std::filesystem::path socket;
  QueueSink sink;
  std::unique_ptr<Server> server;
};

VdiskConfig backend_vdisk(std::shared_ptr<BlockBackend> backend) {
  VdiskConfig v;
  v.vm = "vm1";
  v.vdisk = "disk0";
  v.backend = std::move(backend);
  return v;
}

CommandResult qemu_io(const std::string& uri, const std::string& cmd) {
  return run_command({"qemu-io", "-f", "raw", "-c", cmd, uri});
}

TEST(Backend, FileBackendStackServesQemuIoWithEveryCallTagged) {
  REQUIRE_TOOL("qemu-io");
  std::shared_ptr<RecordingStage> stage;
  std::filesystem::path image;
  BackendServer s([&](const std::filesystem::path& dir) {
    image = dir / "disk0.raw";
    make_image(image, 16 << 20);
    stage = std::make_shared<RecordingStage>(std::make_shared<FileBackend>(image, false, true));
    return backend_vdisk(stage);
  });
  auto w = qemu_io(s.uri(), "write -P 0xab 1M 2M");
  ASSERT_EQ(w.exit_code, 0) << w.err;
  w = qemu_io(s.uri(), "write -z 4M 64k");
  ASSERT_EQ(w.exit_code, 0) << w.err;
  w = qemu_io(s.uri(), "discard 8M 64k");
  ASSERT_EQ(w.exit_code, 0) << w.err;
  auto r = qemu_io(s.uri(), "read -P 0xab 1M 2M");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;
  r = qemu_io(s.uri(), "read -P 0 4M 64k");
  EXPECT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;

  const auto on_disk = read_file_range(image, 1 << 20, 2 << 20);
  EXPECT_TRUE(std::all_of(on_disk.begin(), on_disk.end(),
                          [](std::byte b) { return b == std::byte{0xab}; }));
  std::lock_guard lock(stage->mu);
  EXPECT_NE(stage->ops.find_first_of("wW"), std::string::npos) << stage->ops;
  EXPECT_NE(stage->ops.find('r'), std::string::npos) << stage->ops;
  EXPECT_NE(stage->ops.find('z'), std::string::npos) << stage->ops;
  EXPECT_NE(stage->ops.find('t'), std::string::npos) << stage->ops;
  EXPECT_EQ(stage->targets, std::set<std::string>{"vm1/disk0"});
  EXPECT_GT(stage->tagged_data_calls, 0);
  EXPECT_EQ(stage->tag_mismatches, 0);

  // One record per request; data records carry a slot, and no slot is shared while in flight.
  const auto recs = s.sink.drain();
  int data = 0;
  for (const auto& rec : recs) {
    const auto op = static_cast<IoOp>(rec.op);
    if (op == IoOp::kRead || op == IoOp::kWrite) {
      ++data;
      EXPECT_NE(rec.slot, 0) << "untagged data record at " << rec.voffset;
      EXPECT_EQ(rec.result, 0);
    }
  }
  EXPECT_GE(data, 2);
  EXPECT_EQ(slot_reuse_in_flight(recs), 0);
}

TEST(Backend, AFailingStageGivesTheClientEioAndTheConnectionLives) {
  BackendServer s([&](const std::filesystem::path& dir) {
    const auto image = dir / "disk0.raw";
    make_image(image, 1 << 20);
    return backend_vdisk(std::make_shared<FailingStage>(
        std::make_shared<FileBackend>(image, false, true), 64 << 10, 128 << 10));
  });
  NbdTestClient c(s.socket, "disk0");
  std::vector<std::byte> buf(4096);
  EXPECT_EQ(c.read(64 << 10, buf), nbd::kEio);
  EXPECT_EQ(c.read(0, buf), 0U);  // the next request on the same connection still works
  EXPECT_EQ(s.server->stats().errors, 1U);
}

// An upstream NBD server serving a qcow2: the data the guest writes through v2p lands in the
// qcow2 (read back by qemu-io on the qcow2 itself, not through v2p).
void upstream_round_trip(const std::vector<std::string>& serve_argv_prefix,
                         const std::string& server_name) {
  TempDir dir;
  const auto qcow2 = dir.path() / "disk0.qcow2";
  const auto upstream_sock = dir.path() / "upstream.sock";
  auto made = run_command({"qemu-img", "create", "-q", "-f", "qcow2", qcow2.string(), "32M"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::vector<std::string> argv = serve_argv_prefix;
  for (auto& a : argv) {
    if (a.find("@SOCK@") != std::string::npos)
      a.replace(a.find("@SOCK@"), 6, upstream_sock.string());
    if (a.find("@IMG@") != std::string::npos) a.replace(a.find("@IMG@"), 5, qcow2.string());
  }
  ChildProcess upstream(argv);
  ASSERT_TRUE(eventually([&] {
    return std::filesystem::exists(upstream_sock) || upstream.exited();
  })) << server_name
      << " never created its socket";
  ASSERT_FALSE(upstream.exited()) << server_name << " exited early";
  {
    VdiskConfig v;
    v.vm = "vm1";
    v.vdisk = "disk0";
    v.image = qcow2;
    v.upstream = "nbd+unix:///disk0?socket=" + upstream_sock.string();
    v.upstream_connections = 2;
    const auto sock = dir.path() / "v2p.sock";
    ServerConfig c;
    c.vdisks = {v};
    c.unix_socket = sock;
    QueueSink sink;
    auto server = Server::start(c, &sink);
    const std::string uri = "nbd+unix:///disk0?socket=" + sock.string();
    auto w = qemu_io(uri, "write -P 0x5a 3M 1M");
    ASSERT_EQ(w.exit_code, 0) << w.err;
    w = qemu_io(uri, "flush");
    ASSERT_EQ(w.exit_code, 0) << w.err;
    auto r = qemu_io(uri, "read -P 0x5a 3M 1M");
    EXPECT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;
    const auto recs = sink.drain();
    EXPECT_FALSE(recs.empty());
    // The upstream's process is declared for the vdisk, and its records name it, untagged:
    // what the correlator's completion-window join needs (docs/correlator.md).
    const auto decls = sink.declarations();
    ASSERT_EQ(decls.size(), 1u);
    const auto backends = sink.drain_backends();
    ASSERT_EQ(backends.size(), 1u);
    EXPECT_EQ(backends[0].tgid, static_cast<std::uint32_t>(upstream.pid()));
    EXPECT_EQ(backends[0].vm_id, decls[0].vm_id);
    EXPECT_EQ(backends[0].vdisk_id, decls[0].vdisk_id);
    for (const auto& rec : recs) {
      EXPECT_EQ(rec.slot, 0) << "an upstream's host I/O carries no tag";
      EXPECT_EQ(rec.tgid, static_cast<std::uint32_t>(upstream.pid()));
    }
    server->stop();
  }
  upstream.terminate(SIGTERM);
  ASSERT_TRUE(eventually([&] { return upstream.exited(); }));
  // The qcow2 itself holds the data (and is a valid qcow2 with an allocated cluster there).
  const auto check = run_command({"qemu-img", "check", qcow2.string()});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  const auto r =
      run_command({"qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 3M 1M", qcow2.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;
}

TEST(Upstream, QemuNbdServingQcow2) {
  REQUIRE_TOOL("qemu-nbd");
  REQUIRE_TOOL("qemu-io");
  upstream_round_trip({"qemu-nbd", "--persistent", "--shared=4", "-f", "qcow2", "-x", "disk0", "-k",
                       "@SOCK@", "@IMG@"},
                      "qemu-nbd");
}

TEST(Upstream, QemuStorageDaemonServingQcow2) {
  REQUIRE_TOOL("qemu-storage-daemon");
  REQUIRE_TOOL("qemu-io");
  upstream_round_trip(
      {"qemu-storage-daemon", "--blockdev", "driver=file,node-name=file0,filename=@IMG@",
       "--blockdev", "driver=qcow2,node-name=fmt0,file=file0", "--nbd-server",
       "addr.type=unix,addr.path=@SOCK@", "--export",
       "type=nbd,id=e0,node-name=fmt0,name=disk0,writable=on"},
      "qemu-storage-daemon");
}

TEST(Upstream, NamesTheServingProcess) {
  REQUIRE_TOOL("qemu-nbd");
  TempDir dir;
  const auto img = dir.path() / "d.raw";
  make_image(img, 4 << 20);
  const auto sock = dir.path() / "u.sock";
  ChildProcess upstream(
      {"qemu-nbd", "--persistent", "--shared=4", "-f", "raw", "-k", sock.string(), img.string()});
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(sock) || upstream.exited(); }));
  NbdUpstreamBackend b("nbd+unix:///?socket=" + sock.string(), 2, false);
  EXPECT_EQ(b.size(), 4U << 20);
  EXPECT_EQ(b.upstream_pids(), std::vector<pid_t>{upstream.pid()});
}

TEST(Upstream, UnreachableUpstreamIsAClearError) {
  TempDir dir;
  VdiskConfig v;
  v.vm = "vm1";
  v.vdisk = "disk0";
  v.upstream = "nbd+unix:///?socket=" + (dir.path() / "nobody.sock").string();
  ServerConfig c;
  c.vdisks = {v};
  c.unix_socket = dir.path() / "v2p.sock";
  try {
    auto server = Server::start(c, nullptr);
    FAIL() << "started without its upstream";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect to the upstream"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(c.unix_socket));
}

}  // namespace
}  // namespace v2p::vfilter
