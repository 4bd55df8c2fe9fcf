// TLS for NBD over TCP (NBD_OPT_STARTTLS), with GnuTLS and x509 certificates laid out as
// qemu-nbd's and nbdkit's `--tls-creds DIR`: ca-cert.pem, server-cert.pem, server-key.pem.
// The handshake state machine decides when TLS starts; this wraps the socket once it does.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <memory>

namespace v2p::vfilter {

// The server's certificate and key (and the CA that signed clients, when one checks them).
// Loaded once at start; shared read-only by every session.
class TlsCredentials {
 public:
  // Throws v2p::Error naming the file that is missing or unreadable.
  explicit TlsCredentials(const std::filesystem::path& dir);
  ~TlsCredentials();
  TlsCredentials(const TlsCredentials&) = delete;
  TlsCredentials& operator=(const TlsCredentials&) = delete;
  [[nodiscard]] void* handle() const noexcept {
    return creds_;
  }  // gnutls_certificate_credentials_t

 private:
  void* creds_ = nullptr;
};

// One server-side TLS session over a connected socket. recv() and send() may run at the same
// time on two threads (GnuTLS allows one sender and one receiver); each alone is not reentrant.
class TlsSession {
 public:
  explicit TlsSession(const TlsCredentials& creds, int fd);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Runs the TLS handshake; false (with the reason on stderr) when the peer fails it.
  bool handshake();
  // Like recv(2): bytes received, 0 at the end of the stream, -1 on error.
  ssize_t recv(void* buf, std::size_t len);
  // Sends everything, as one record stream; false when the session broke.
  bool send_all(const void* buf, std::size_t len);
  // Holds records back until uncork(), so a reply header and its data leave together.
  void cork();
  bool uncork();
  // Sends the TLS close_notify (best effort) before the socket is closed.
  void bye();

 private:
  void* session_ = nullptr;  // gnutls_session_t
};

}  // namespace v2p::vfilter
