// Real NBD clients against an in-process server: qemu-img, qemu-io, nbdinfo, nbdcopy, nbdsh
// (libnbd's Python shell) and fio's nbd engine with verification.
#include <gtest/gtest.h>

#include <fstream>

#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "test_server.hpp"

namespace v2p::vfilter {
namespace {

using namespace testing;

#define REQUIRE_TOOL(tool) V2P_REQUIRE_TOOLS(tool)

void write_file(const std::filesystem::path& p, const std::vector<std::byte>& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

// nbdsh runs `python3 -m nbd`; the Debian python3 has the module, a pyenv one on PATH may not.
const std::vector<std::string> kNbdsh = {"env", "PATH=/usr/bin:/bin", "nbdsh"};

bool have_nbdsh() {
  return have_tool("nbdsh") &&
         run_command({"env", "PATH=/usr/bin:/bin", "python3", "-c", "import nbd"}).ok();
}

CommandResult nbdsh(const std::string& uri, const std::string& code) {
  auto argv = kNbdsh;
  argv.insert(argv.end(), {"-u", uri, "-c", code});
  return run_command(argv);
}

TEST(Clients, QemuImgInfoConvertCompare) {
  REQUIRE_TOOL("qemu-img");
  TestServer s(16 << 20);
  const auto info = run_command({"qemu-img", "info", "--output=json", s.uri()});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("\"virtual-size\": 16777216"), std::string::npos) << info.out;
  const auto src = s.dir.path() / "src.raw";
  write_file(src, pattern(16 << 20, 21));
  const auto conv =
      run_command({"qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src.string(), s.uri()});
  ASSERT_EQ(conv.exit_code, 0) << conv.err;
  const auto cmp =
      run_command({"qemu-img", "compare", "-f", "raw", "-F", "raw", src.string(), s.uri()});
  EXPECT_EQ(cmp.exit_code, 0) << cmp.out << cmp.err;
  EXPECT_EQ(read_file_range(s.image, 0, 16 << 20), pattern(16 << 20, 21));
  // Records: every data I/O tagged, no slot shared while in flight.
  const auto recs = s.sink.drain();
  EXPECT_FALSE(recs.empty());
  EXPECT_EQ(slot_reuse_in_flight(recs), 0);
}

TEST(Clients, QemuIoPatternWriteRead) {
  REQUIRE_TOOL("qemu-io");
  TestServer s(16 << 20);
  const auto w =
      run_command({"qemu-io", "-f", "raw", "-c", "write -P 0xab 0 1M", "-c", "write -P 0xcd 4M 64k",
                   "-c", "write -z 8M 1M", "-c", "flush", s.uri()});
  ASSERT_EQ(w.exit_code, 0) << w.err;
  EXPECT_EQ(w.out.find("failed"), std::string::npos) << w.out;
  const auto r = run_command({"qemu-io", "-f", "raw", "-c", "read -P 0xab 0 1M", "-c",
                              "read -P 0xcd 4M 64k", "-c", "read -P 0 8M 1M", s.uri()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("failed"), std::string::npos) << r.out;
  EXPECT_EQ(read_file_range(s.image, 4 << 20, 65536),
            std::vector<std::byte>(65536, std::byte{0xcd}));
}

TEST(Clients, NbdinfoSeesTheExport) {
  REQUIRE_TOOL("nbdinfo");
  TestServer s(8 << 20);
  const auto r = run_command({"nbdinfo", s.uri()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* want :
       {"export-size: 8388608", "can_multi_conn: true", "can_fua: true", "can_trim: true",
        "can_zero: true", "block_size_maximum: 33554432", "is_read_only: false"}) {
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  }
  const auto list = run_command({"nbdinfo", "--list", s.uri()});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("export=\"disk0\""), std::string::npos) << list.out;
}

TEST(Clients, NbdcopyInAndOut) {
  REQUIRE_TOOL("nbdcopy");
  TestServer s(32 << 20);
  const auto src = s.dir.path() / "src.raw";
  const auto out = s.dir.path() / "out.raw";
  write_file(src, pattern(32 << 20, 22));
  const auto in = run_command({"nbdcopy", "--flush", src.string(), s.uri()});
  ASSERT_EQ(in.exit_code, 0) << in.err;
  const auto back = run_command({"nbdcopy", s.uri(), out.string()});
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(read_file_range(out, 0, 32 << 20), pattern(32 << 20, 22));
  EXPECT_EQ(slot_reuse_in_flight(s.sink.drain()), 0);
}

TEST(Clients, NbdshCommandsAndErrors) {
  if (!have_nbdsh()) V2P_SKIP_MISSING_PACKAGE("nbdsh (python3-libnbd) not installed");
  TestServer s(4 << 20);
  const std::string code = R"(
import errno
assert h.can_fua() and h.can_flush() and h.can_trim() and h.can_zero() and h.can_multi_conn()
h.pwrite(b'\xcd' * 65536, 0, nbd.CMD_FLAG_FUA)
assert h.pread(65536, 0) == b'\xcd' * 65536
h.zero(4096, 0)
assert h.pread(4096, 0) == bytes(4096)
h.zero(4096, 8192, nbd.CMD_FLAG_NO_HOLE)
h.trim(65536, 1048576)
h.flush()
h.set_strict_mode(0)  # let the server, not libnbd, judge the bad requests
for call, want in ((lambda: h.pread(512, 4 << 20), errno.EINVAL),
                   (lambda: h.pwrite(bytes(1024), (4 << 20) - 512), errno.ENOSPC),
                   (lambda: h.pread(100, 1), errno.EINVAL)):
    try:
        call()
        raise SystemExit('expected an error')
    except nbd.Error as e:
        assert e.errno == errno.errorcode[want], (e.errno, want)  # libnbd gives the name
print('ok')
)";
  const auto r = nbdsh(s.uri(), code);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "ok\n");
  EXPECT_EQ(read_file_range(s.image, 4096, 4096), std::vector<std::byte>(4096, std::byte{0xcd}));
}

TEST(Clients, FioVerifyAtQueueDepth32) {
  REQUIRE_TOOL("fio");
  if (run_command({"fio", "--enghelp=nbd"}).exit_code != 0)
    V2P_SKIP_MISSING_PACKAGE("fio lacks the nbd engine");
  TestServer s(64 << 20);
  const auto r =
      run_command({"fio", "--name=verify", "--ioengine=nbd", "--uri=" + s.uri(), "--rw=randwrite",
                   "--bs=4k", "--iodepth=32", "--size=32M", "--verify=crc32c", "--do_verify=1",
                   "--verify_fatal=1", "--output-format=terse"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err.find("verify"), std::string::npos) << r.err;
  const auto recs = s.sink.drain();
  EXPECT_GE(recs.size(), 2u * 8192u);  // 8192 writes and their verifying reads
  EXPECT_EQ(slot_reuse_in_flight(recs), 0);
  std::size_t tagged = 0;
  for (const auto& rec : recs) tagged += rec.slot != 0;
  EXPECT_EQ(tagged, recs.size());
}

}  // namespace
}  // namespace v2p::vfilter
