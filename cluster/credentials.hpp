// The cluster's credentials: one CA made at `v2p cluster init`, one key and certificate per host
// (subject and DNS name = the host name) signed by it. Agents talk to each other only over TLS
// with both sides presenting a certificate of that CA: a peer without one is refused during the
// handshake, before any request is read.
//
// Layout of a host's credentials folder (what the agent is given): ca.pem, host.pem, host.key.
// `v2p cluster init --dir D --host h1 --host h2 …` writes D/ca.pem, D/ca.key (keep it off the
// hosts) and D/<host>/{ca.pem,host.pem,host.key} to copy to each host.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace grpc {
class ServerCredentials;
class ChannelCredentials;
}  // namespace grpc

namespace v2p::cluster {

// Makes the CA (unless dir/ca.pem exists) and a folder for every host not yet in `dir`. Uses the
// openssl tool (ECDSA P-256, 10 years). Throws v2p::Error.
void init_credentials(const std::filesystem::path& dir, const std::vector<std::string>& hosts);

// The host name a credentials folder was issued to (its certificate's subject CN).
std::string credentials_host(const std::filesystem::path& host_dir);

// Server side: requires and verifies a client certificate of the cluster CA.
std::shared_ptr<grpc::ServerCredentials> server_credentials(const std::filesystem::path& host_dir);
// Client side: presents the host's certificate, trusts only the cluster CA.
std::shared_ptr<grpc::ChannelCredentials> channel_credentials(
    const std::filesystem::path& host_dir);

}  // namespace v2p::cluster
