#include "cluster/credentials.hpp"

#include <fmt/core.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/subprocess.hpp"

namespace v2p::cluster {
namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw Error(fmt::format("cannot read {} (made by `v2p cluster init`)", p.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool valid_host_name(const std::string& h) {
  if (h.empty() || h.size() > 63) return false;
  for (char c : h) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return false;
  }
  return true;
}

}  // namespace

void init_credentials(const fs::path& dir, const std::vector<std::string>& hosts) {
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
  const auto ca_key = dir / "ca.key", ca_pem = dir / "ca.pem";
  if (!fs::exists(ca_pem)) {
    run_checked({"openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
                 ca_key.string()});
    run_checked({"openssl", "req", "-x509", "-new", "-key", ca_key.string(), "-sha256", "-days",
                 "3650", "-subj", "/CN=v2p cluster CA", "-out", ca_pem.string()});
  }
  for (const auto& host : hosts) {
    if (!valid_host_name(host)) {
      throw Error(fmt::format("'{}' is not a host name (letters, digits, '-', '.')", host));
    }
    const auto hd = dir / host;
    if (fs::exists(hd / "host.pem")) continue;
    fs::create_directories(hd);
    const auto key = hd / "host.key", csr = hd / "host.csr", pem = hd / "host.pem";
    const auto ext = hd / "ext.cnf";
    std::ofstream(ext) << "subjectAltName=DNS:" << host
                       << "\nextendedKeyUsage=serverAuth,clientAuth\n";
    run_checked(
        {"openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key.string()});
    run_checked({"openssl", "req", "-new", "-key", key.string(), "-subj", "/CN=" + host, "-out",
                 csr.string()});
    run_checked({"openssl", "x509", "-req", "-in", csr.string(), "-CA", ca_pem.string(), "-CAkey",
                 ca_key.string(), "-CAcreateserial", "-days", "3650", "-sha256", "-extfile",
                 ext.string(), "-out", pem.string()});
    fs::copy_file(ca_pem, hd / "ca.pem", fs::copy_options::overwrite_existing);
    fs::remove(csr);
    fs::remove(ext);
    fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  }
}

std::string credentials_host(const fs::path& host_dir) {
  auto out = run_checked({"openssl", "x509", "-in", (host_dir / "host.pem").string(), "-noout",
                          "-subject", "-nameopt", "RFC2253"});
  auto pos = out.find("CN=");
  if (pos == std::string::npos) throw Error("no CN in " + (host_dir / "host.pem").string());
  auto end = out.find_first_of(",\n", pos);
  return out.substr(pos + 3, end == std::string::npos ? std::string::npos : end - pos - 3);
}

std::shared_ptr<grpc::ServerCredentials> server_credentials(const fs::path& host_dir) {
  grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_root_certs = read_text(host_dir / "ca.pem");
  o.pem_key_cert_pairs.push_back(
      {read_text(host_dir / "host.key"), read_text(host_dir / "host.pem")});
  return grpc::SslServerCredentials(o);
}

std::shared_ptr<grpc::ChannelCredentials> channel_credentials(const fs::path& host_dir) {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = read_text(host_dir / "ca.pem");
  o.pem_private_key = read_text(host_dir / "host.key");
  o.pem_cert_chain = read_text(host_dir / "host.pem");
  return grpc::SslCredentials(o);
}

}  // namespace v2p::cluster
