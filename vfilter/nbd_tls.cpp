#include "vfilter/nbd_tls.hpp"

#include <gnutls/gnutls.h>

#include <fmt/core.h>

#include <cerrno>
#include <system_error>

#include "common/error.hpp"

namespace v2p::vfilter {

namespace {

gnutls_certificate_credentials_t creds_of(const TlsCredentials& c) {
  return static_cast<gnutls_certificate_credentials_t>(c.handle());
}

}  // namespace

TlsCredentials::TlsCredentials(const std::filesystem::path& dir) {
  const auto ca = dir / "ca-cert.pem";
  const auto cert = dir / "server-cert.pem";
  const auto key = dir / "server-key.pem";
  for (const auto& f : {cert, key}) {
    if (!std::filesystem::exists(f)) {
      throw Error(
          fmt::format("--tls-creds {}: {} is missing (expected ca-cert.pem, "
                      "server-cert.pem and server-key.pem, as qemu-nbd uses)",
                      dir.string(), f.filename().string()));
    }
  }
  gnutls_certificate_credentials_t c = nullptr;
  if (gnutls_certificate_allocate_credentials(&c) != GNUTLS_E_SUCCESS) {
    throw Error("cannot allocate TLS credentials");
  }
  creds_ = c;
  if (std::filesystem::exists(ca)) {
    const int n = gnutls_certificate_set_x509_trust_file(c, ca.c_str(), GNUTLS_X509_FMT_PEM);
    if (n < 0) {
      gnutls_certificate_free_credentials(c);
      throw Error(fmt::format("--tls-creds: cannot load {}: {}", ca.string(), gnutls_strerror(n)));
    }
  }
  const int rc =
      gnutls_certificate_set_x509_key_file(c, cert.c_str(), key.c_str(), GNUTLS_X509_FMT_PEM);
  if (rc < 0) {
    gnutls_certificate_free_credentials(c);
    throw Error(fmt::format("--tls-creds: cannot load {} with {}: {}", cert.string(), key.string(),
                            gnutls_strerror(rc)));
  }
}

TlsCredentials::~TlsCredentials() {
  gnutls_certificate_free_credentials(static_cast<gnutls_certificate_credentials_t>(creds_));
}

TlsSession::TlsSession(const TlsCredentials& creds, int fd) {
  gnutls_session_t s = nullptr;
  if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL) != GNUTLS_E_SUCCESS)
    throw Error("gnutls_init failed");
  session_ = s;
  gnutls_set_default_priority(s);
  gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, creds_of(creds));
  // Client certificates are not asked for: access is the network's and the listener's choice,
  // as with qemu-nbd's verify-peer=off.
  gnutls_certificate_server_set_request(s, GNUTLS_CERT_IGNORE);
  gnutls_transport_set_int(s, fd);
  gnutls_handshake_set_timeout(s, GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
}

TlsSession::~TlsSession() {
  gnutls_deinit(static_cast<gnutls_session_t>(session_));
}

bool TlsSession::handshake() {
  auto* s = static_cast<gnutls_session_t>(session_);
  int rc = 0;
  do {
    rc = gnutls_handshake(s);
  } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
  if (rc < 0) {
    fmt::print(stderr, "v2p vfilter: TLS handshake failed: {}\n", gnutls_strerror(rc));
    return false;
  }
  return true;
}

ssize_t TlsSession::recv(void* buf, std::size_t len) {
  auto* s = static_cast<gnutls_session_t>(session_);
  for (;;) {
    const ssize_t n = gnutls_record_recv(s, buf, len);
    if (n >= 0) return n;
    if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN) continue;
    // A peer that closed without close_notify is the end of the stream, not an error to report.
    if (n == GNUTLS_E_PREMATURE_TERMINATION) return 0;
    errno = EIO;
    return -1;
  }
}

bool TlsSession::send_all(const void* buf, std::size_t len) {
  auto* s = static_cast<gnutls_session_t>(session_);
  const auto* p = static_cast<const char*>(buf);
  while (len > 0) {
    const ssize_t n = gnutls_record_send(s, p, len);
    if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

void TlsSession::cork() {
  gnutls_record_cork(static_cast<gnutls_session_t>(session_));
}

bool TlsSession::uncork() {
  return gnutls_record_uncork(static_cast<gnutls_session_t>(session_), GNUTLS_RECORD_WAIT) >= 0;
}

void TlsSession::bye() {
  gnutls_bye(static_cast<gnutls_session_t>(session_), GNUTLS_SHUT_WR);
}

}  // namespace v2p::vfilter
