// TLS on the TCP listener (`--tls-creds DIR`): certificates made here with certtool, real TLS
// clients (nbdinfo, qemu-img) get through, plain ones are refused, the unix socket stays plain.
#include <gtest/gtest.h>

#include <fstream>

#include "common/error.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "test_server.hpp"

namespace v2p::vfilter {
namespace {

using namespace testing;

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

// A CA and a server certificate for 127.0.0.1/localhost, as `certtool` makes them for qemu.
void make_pki(const std::filesystem::path& server_dir, const std::filesystem::path& client_dir) {
  std::filesystem::create_directories(server_dir);
  std::filesystem::create_directories(client_dir);
  const auto s = [&](const char* f) { return (server_dir / f).string(); };
  write_text(server_dir / "ca.info",
             "cn = v2p test CA\nca\ncert_signing_key\nexpiration_days = 2\n");
  write_text(server_dir / "server.info",
             "organization = v2p\ncn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\n"
             "tls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n");
  run_checked({"certtool", "--generate-privkey", "--outfile", s("ca-key.pem")});
  run_checked({"certtool", "--generate-self-signed", "--load-privkey", s("ca-key.pem"),
               "--template", s("ca.info"), "--outfile", s("ca-cert.pem")});
  run_checked({"certtool", "--generate-privkey", "--outfile", s("server-key.pem")});
  run_checked({"certtool", "--generate-certificate", "--load-privkey", s("server-key.pem"),
               "--load-ca-certificate", s("ca-cert.pem"), "--load-ca-privkey", s("ca-key.pem"),
               "--template", s("server.info"), "--outfile", s("server-cert.pem")});
  std::filesystem::copy_file(server_dir / "ca-cert.pem", client_dir / "ca-cert.pem");
}

struct TlsServer {
  TlsServer() {
    image = dir.path() / "disk0.raw";
    make_image(image, 8 << 20);
    make_pki(dir.path() / "pki-server", client_pki);
    ServerConfig c;
    c.vdisks = {image_vdisk("vm1", "disk0", image)};
    c.unix_socket = dir.path() / "nbd.sock";
    c.tls_creds = dir.path() / "pki-server";
    // Ports may be taken on a shared machine: the first free one is used.
    for (std::uint16_t p = 21809; p < 21909 && !server; ++p) {
      c.tcp_port = p;
      try {
        server = Server::start(c, &sink);
      } catch (const Error&) {
      }
    }
    EXPECT_TRUE(server);
    port = std::to_string(c.tcp_port);
  }
  TempDir dir;
  std::filesystem::path image;
  std::filesystem::path client_pki = dir.path() / "pki-client";
  QueueSink sink;
  std::unique_ptr<Server> server;
  std::string port;
};

TEST(NbdTls, NbdinfoOverTlsAndPlainRefused) {
  V2P_REQUIRE_TOOLS("certtool", "nbdinfo");
  TlsServer t;
  ASSERT_TRUE(t.server);
  const auto tls = run_command(
      {"nbdinfo", "--size",
       "nbds://127.0.0.1:" + t.port + "/disk0?tls-certificates=" + t.client_pki.string()});
  EXPECT_EQ(tls.exit_code, 0) << tls.err;
  EXPECT_EQ(tls.out, "8388608\n");
  const auto plain = run_command({"nbdinfo", "--size", "nbd://127.0.0.1:" + t.port + "/disk0"});
  EXPECT_NE(plain.exit_code, 0) << plain.out;
  // A client that trusts another CA does not get in either.
  TempDir other;
  make_pki(other.path() / "s", other.path() / "c");
  const auto wrong_ca = run_command(
      {"nbdinfo", "--size",
       "nbds://127.0.0.1:" + t.port + "/disk0?tls-certificates=" + (other.path() / "c").string()});
  EXPECT_NE(wrong_ca.exit_code, 0);
  // The unix socket is guarded by its permissions and stays plain.
  const auto local = run_command(
      {"nbdinfo", "--size", "nbd+unix:///disk0?socket=" + (t.dir.path() / "nbd.sock").string()});
  EXPECT_EQ(local.exit_code, 0) << local.err;
}

TEST(NbdTls, QemuImgWritesAndComparesOverTls) {
  V2P_REQUIRE_TOOLS("certtool", "qemu-img");
  TlsServer t;
  ASSERT_TRUE(t.server);
  const auto src = t.dir.path() / "src.raw";
  {
    std::ofstream out(src, std::ios::binary);
    const auto data = pattern(8 << 20, 3);
    out.write(reinterpret_cast<const char*>(data.data()),
              static_cast<std::streamsize>(data.size()));
  }
  const std::string object = "tls-creds-x509,id=tls0,endpoint=client,dir=" + t.client_pki.string();
  const std::string target =
      "driver=nbd,host=127.0.0.1,port=" + t.port + ",export=disk0,tls-creds=tls0";
  auto r = run_command({"qemu-img", "convert", "-n", "--object", object, "-f", "raw",
                        "--target-image-opts", src.string(), target});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_command({"qemu-img", "compare", "--object", object, "--image-opts",
                   "driver=file,filename=" + src.string(), target});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_FALSE(t.sink.drain().empty());  // tagged and recorded as on a plain connection
  // Without TLS the same export refuses qemu-img.
  r = run_command({"qemu-img", "info", "--image-opts",
                   "driver=nbd,host=127.0.0.1,port=" + t.port + ",export=disk0"});
  EXPECT_NE(r.exit_code, 0);
}

TEST(NbdTls, MissingCredentialsFailAtStart) {
  TempDir dir;
  make_image(dir.path() / "img.raw", 1 << 20);
  ServerConfig c;
  c.vdisks = {image_vdisk("vm", "d", dir.path() / "img.raw")};
  c.unix_socket = dir.path() / "s.sock";
  c.tls_creds = dir.path() / "nothing-here";
  EXPECT_THROW(Server::start(c, nullptr), Error);
}

}  // namespace
}  // namespace v2p::vfilter
