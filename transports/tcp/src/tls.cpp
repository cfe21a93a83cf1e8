#include "tls.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include <poll.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace courier::tcp {

namespace {

/// OpenSSL's read buffer, with read ahead: what one recv may take.
constexpr long read_ahead_bytes = 64 * 1024;

/// Bytes gathered for one SSL_write: four full records.
constexpr std::size_t max_staged = std::size_t{64} << 10;

std::string name_of(X509_NAME* name) {
  BIO* out = BIO_new(BIO_s_mem());
  if (out == nullptr)
    return {};
  X509_NAME_print_ex(out, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  auto size = BIO_get_mem_data(out, &data);
  std::string text{data, static_cast<std::size_t>(std::max(size, 0L))};
  BIO_free(out);
  return text;
}

std::string ip_text(const ASN1_OCTET_STRING* ip) {
  const auto* bytes = ASN1_STRING_get0_data(ip);
  auto size = ASN1_STRING_length(ip);
  std::string out;
  if (size == 4) {
    for (int i = 0; i < 4; ++i)
      out += (i ? "." : "") + std::to_string(bytes[i]);
  } else if (size == 16) {
    static const char* hex = "0123456789abcdef";
    for (int i = 0; i < 16; i += 2) {
      if (i)
        out += ':';
      for (int j = i; j < i + 2; ++j) {
        out += hex[bytes[j] >> 4];
        out += hex[bytes[j] & 15];
      }
    }
  }
  return out;
}

// A socket BIO that sends with MSG_NOSIGNAL: OpenSSL's own writes with
// write(2), and a peer gone would raise SIGPIPE in the whole process.

int socket_of(BIO* bio) {
  return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio)));
}

int bio_write(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  for (;;) {
    auto n = ::send(socket_of(bio), data, static_cast<std::size_t>(size),
                    MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0)
      return static_cast<int>(n);
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      BIO_set_retry_write(bio);
    return -1;
  }
}

int bio_read(BIO* bio, char* data, int size) {
  BIO_clear_retry_flags(bio);
  for (;;) {
    auto n = ::recv(socket_of(bio), data, static_cast<std::size_t>(size),
                    MSG_DONTWAIT);
    if (n >= 0)
      return static_cast<int>(n);
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      BIO_set_retry_read(bio);
    return -1;
  }
}

long bio_ctrl(BIO*, int command, long, void*) {
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}

int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* socket_method() {
  static BIO_METHOD* method = [] {
    auto* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                           "courier socket");
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    return m;
  }();
  return method;
}

} // namespace

std::string last_ssl_error(std::string fallback) {
  std::string text;
  while (auto code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    text = buffer; // the last is the closest to the cause
  }
  return text.empty() ? fallback : text;
}

expected<std::shared_ptr<tls_context>>
tls_context::make(const tls_files& files) {
  ERR_clear_error();
  auto* ctx = SSL_CTX_new(TLS_method());
  if (ctx == nullptr)
    return error{errc::internal, last_ssl_error("cannot make a TLS context")};
  std::shared_ptr<tls_context> out{new tls_context(ctx)};
  auto refuse = [](std::string what, const std::string& file) {
    return error{errc::invalid_argument,
                 "TLS: " + what + " '" + file + "': "
                   + last_ssl_error("unreadable")};
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, files.certificate.c_str()) != 1)
    return refuse("the certificate", files.certificate);
  if (SSL_CTX_use_PrivateKey_file(ctx, files.private_key.c_str(),
                                  SSL_FILETYPE_PEM)
      != 1)
    return refuse("the private key", files.private_key);
  if (SSL_CTX_check_private_key(ctx) != 1)
    return refuse("the private key does not match the certificate in",
                  files.certificate);
  if (SSL_CTX_load_verify_locations(ctx, files.ca.c_str(), nullptr) != 1)
    return refuse("the CA bundle", files.ca);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     nullptr);
  // The staging buffer may move between retries; a write may end after a
  // record (the link counts what went out).
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                          | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // Read ahead: one recv takes a record's header and body together, and up
  // to read_ahead_bytes of the records behind it (without, every record
  // costs two, and a megabyte 128). tls_channel::receive keeps track of
  // what OpenSSL then holds.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, read_ahead_bytes);
  return out;
}

expected<ssl_ptr> tls_context::new_session(int fd, bool server) const {
  ERR_clear_error();
  ssl_ptr ssl{SSL_new(ctx_.get())};
  BIO* bio = ssl ? BIO_new(socket_method()) : nullptr;
  if (bio == nullptr)
    return error{errc::internal, last_ssl_error("cannot start a TLS session")};
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)));
  SSL_set_bio(ssl.get(), bio, bio); // one reference, owned by the session
  if (server)
    SSL_set_accept_state(ssl.get());
  else
    SSL_set_connect_state(ssl.get());
  return ssl;
}

handshake_state handshake_step(SSL* ssl, std::string& failure) {
  ERR_clear_error();
  auto done = SSL_do_handshake(ssl);
  if (done == 1)
    return handshake_state::done;
  auto code = SSL_get_error(ssl, done);
  if (code == SSL_ERROR_WANT_READ)
    return handshake_state::wants_read;
  if (code == SSL_ERROR_WANT_WRITE)
    return handshake_state::wants_write;
  auto verdict = SSL_get_verify_result(ssl);
  if (verdict != X509_V_OK)
    failure = std::string{"the peer's certificate: "}
              + X509_verify_cert_error_string(verdict);
  else if (code == SSL_ERROR_SYSCALL)
    failure = errno != 0 ? std::string{"TLS handshake: "} + std::strerror(errno)
                         : "TLS handshake: the peer closed the connection";
  else
    failure = "TLS handshake: " + last_ssl_error("refused");
  ERR_clear_error();
  return handshake_state::failed;
}

peer_identity identity_of(SSL* ssl) {
  peer_identity out;
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr)
    return out;
  certificate_identity id;
  id.subject = name_of(X509_get_subject_name(cert));
  auto* names = static_cast<GENERAL_NAMES*>(
    X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const auto* name = sk_GENERAL_NAME_value(names, i);
      auto text = [](const ASN1_STRING* s) {
        return std::string{reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                           static_cast<std::size_t>(ASN1_STRING_length(s))};
      };
      switch (name->type) {
        case GEN_DNS: id.alt_names.push_back(text(name->d.dNSName)); break;
        case GEN_URI:
          id.alt_names.push_back(text(name->d.uniformResourceIdentifier));
          break;
        case GEN_EMAIL: id.alt_names.push_back(text(name->d.rfc822Name)); break;
        case GEN_IPADD: id.alt_names.push_back(ip_text(name->d.iPAddress)); break;
        default: break;
      }
    }
    GENERAL_NAMES_free(names);
  }
  out.certificate = std::move(id);
  return out;
}

// -- tls_channel --------------------------------------------------------------------

tls_channel::tls_channel(ssl_ptr ssl)
  : fd_(socket_of(SSL_get_rbio(ssl.get()))), ssl_(std::move(ssl)) {
  // Read ahead during the handshake may have taken the peer's first frames.
  buffered_.store(SSL_has_pending(ssl_.get()) == 1, std::memory_order_release);
}

std::size_t tls_channel::receive(iovec* parts, std::size_t count,
                                 std::optional<error>& failure) {
  if (!buffered_.load(std::memory_order_acquire)) {
    // Nothing in OpenSSL's hands: only the socket can have input. An end
    // of stream or an error is input too (SSL_read reports it). poll()
    // reads the socket's state without its lock; a MSG_PEEK recv here made
    // TLS round trips 1.35 x raw instead of 0.91 x (docs/benchmarks.md).
    pollfd ready{fd_, POLLIN, 0};
    if (::poll(&ready, 1, 0) == 0)
      return 0;
  }
  std::lock_guard guard{mu_};
  // Whether OpenSSL may hold input when this returns (parts full, or a
  // failure that comes again); false once it has handed out all it had.
  bool held = true;
  struct note_buffered {
    tls_channel& self;
    const bool& held;
    ~note_buffered() {
      self.buffered_.store(held, std::memory_order_release);
    }
  } note{*this, held};
  std::size_t total = 0;
  for (std::size_t i = 0, used = 0; i < count;) {
    std::size_t got = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl_.get(), static_cast<char*>(parts[i].iov_base) + used,
                    parts[i].iov_len - used, &got)
        == 1) {
      total += got;
      used += got;
      if (used == parts[i].iov_len) {
        ++i;
        used = 0;
      }
      // A read hands out at most one record. Whatever OpenSSL read ahead
      // is asked for now (a part of a record then asks the socket), so
      // that, when this returns, it holds nothing unless the parts are full.
      if (!SSL_has_pending(ssl_.get())) {
        held = false;
        break;
      }
      continue;
    }
    auto code = SSL_get_error(ssl_.get(), 0);
    if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
      held = false;
      break;
    }
    if (total > 0)
      break; // hand over what came; the failure comes again next time
    if (code == SSL_ERROR_ZERO_RETURN
        || (code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
      failure = error{errc::unavailable, "the peer closed the link"};
    else
      failure = error{errc::unavailable,
                      "TLS: " + last_ssl_error("the link failed")};
    ERR_clear_error();
    break;
  }
  return total;
}

std::size_t tls_channel::send(const iovec* parts, std::size_t count,
                              std::optional<error>& failure) {
  std::lock_guard guard{mu_};
  // One SSL_write for many small frames: a record each would cost a
  // system call and 22 bytes each. After a write that wants to be retried,
  // OpenSSL wants the same bytes first and at least as many: the link
  // gathers from the first unsent byte of its queue, which only grows.
  staging_.clear();
  for (std::size_t i = 0; i < count && staging_.size() < max_staged; ++i) {
    auto take = std::min(parts[i].iov_len, max_staged - staging_.size());
    staging_.append(static_cast<const char*>(parts[i].iov_base), take);
  }
  if (staging_.empty())
    return 0;
  std::size_t sent = 0;
  ERR_clear_error();
  if (SSL_write_ex(ssl_.get(), staging_.data(), staging_.size(), &sent) == 1)
    return sent;
  auto code = SSL_get_error(ssl_.get(), 0);
  if (code == SSL_ERROR_WANT_WRITE || code == SSL_ERROR_WANT_READ)
    return 0;
  failure = code == SSL_ERROR_SYSCALL && (errno == EPIPE || errno == ECONNRESET)
              ? error{errc::unavailable, "the peer closed the link"}
              : error{errc::unavailable,
                      "TLS: " + last_ssl_error("cannot write")};
  ERR_clear_error();
  return 0;
}

bool tls_channel::holds_input() {
  return buffered_.load(std::memory_order_acquire);
}

} // namespace courier::tcp
