#include "raw_stream.hpp"

#include <cerrno>
#include <cstring>
#include <iostream>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

namespace courier::bench {

namespace {

constexpr std::size_t read_buffer = std::size_t{64} << 10;

void set_no_delay(int fd) {
  int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

/// The tier's TLS settings, on a context of our own.
SSL_CTX* make_context(const raw_tls_files& files) {
  auto* ctx = SSL_CTX_new(TLS_method());
  if (ctx == nullptr)
    return nullptr;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  bool ok
    = SSL_CTX_use_certificate_chain_file(ctx, files.certificate.c_str()) == 1
      && SSL_CTX_use_PrivateKey_file(ctx, files.private_key.c_str(),
                                     SSL_FILETYPE_PEM)
           == 1
      && SSL_CTX_load_verify_locations(ctx, files.ca.c_str(), nullptr) == 1;
  if (!ok) {
    SSL_CTX_free(ctx);
    return nullptr;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     nullptr);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  return ctx;
}

} // namespace

raw_stream::raw_stream(int fd, const raw_tls_files* tls, bool server)
  : fd_(fd), in_(read_buffer) {
  if (fd_ < 0)
    return;
  if (tls == nullptr) {
    ok_ = true;
    return;
  }
  ctx_ = make_context(*tls);
  if (ctx_ == nullptr)
    return;
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, fd_);
  auto rc = server ? SSL_accept(ssl_) : SSL_connect(ssl_);
  ok_ = rc == 1;
  if (!ok_) {
    char text[256];
    ERR_error_string_n(ERR_get_error(), text, sizeof text);
    std::cerr << "raw TLS handshake failed: " << text << "\n";
  }
}

raw_stream::~raw_stream() {
  if (ssl_ != nullptr)
    SSL_free(ssl_);
  if (ctx_ != nullptr)
    SSL_CTX_free(ctx_);
  if (fd_ >= 0)
    ::close(fd_);
}

std::string raw_stream::cipher() const {
  if (ssl_ == nullptr)
    return "plain";
  return std::string{SSL_get_version(ssl_)} + " " + SSL_get_cipher_name(ssl_);
}

bool raw_stream::write_all(std::string_view bytes) {
  while (!bytes.empty()) {
    long n;
    if (ssl_ != nullptr) {
      std::size_t sent = 0;
      n = SSL_write_ex(ssl_, bytes.data(), bytes.size(), &sent) == 1
            ? static_cast<long>(sent)
            : -1;
    } else {
      n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
    }
    if (n <= 0)
      return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

long raw_stream::read_some(char* into, std::size_t size) {
  if (ssl_ != nullptr) {
    std::size_t got = 0;
    return SSL_read_ex(ssl_, into, size, &got) == 1 ? static_cast<long>(got)
                                                    : -1;
  }
  for (;;) {
    auto n = ::recv(fd_, into, size, 0);
    if (n < 0 && errno == EINTR)
      continue;
    return n;
  }
}

bool raw_stream::next_frame(std::string_view& body) {
  auto have = [&] { return end_ - begin_; };
  // Whatever is left of the buffer moves to its front before a read, and
  // the buffer grows to hold a whole large frame: one copy of a few bytes.
  auto fill = [&](std::size_t need) {
    if (begin_ + need > in_.size()) {
      std::memmove(in_.data(), in_.data() + begin_, have());
      end_ -= begin_;
      begin_ = 0;
      if (need > in_.size())
        in_.resize(need);
    }
    while (have() < need) {
      auto n = read_some(in_.data() + end_, in_.size() - end_);
      if (n <= 0)
        return false;
      end_ += static_cast<std::size_t>(n);
    }
    return true;
  };
  std::uint32_t size = 0;
  if (!fill(sizeof size))
    return false;
  std::memcpy(&size, in_.data() + begin_, sizeof size);
  if (!fill(sizeof size + size))
    return false;
  body = std::string_view{in_.data() + begin_ + sizeof size, size};
  begin_ += sizeof size + size;
  return true;
}

std::string raw_frame(raw_mode mode, std::size_t body_size) {
  body_size = std::max<std::size_t>(body_size, 1);
  auto size = static_cast<std::uint32_t>(body_size);
  std::string out(sizeof size + body_size, 'x');
  std::memcpy(out.data(), &size, sizeof size);
  out[sizeof size] = static_cast<char>(mode);
  return out;
}

int raw_dial(const std::string& host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    return -1;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  set_no_delay(fd);
  return fd;
}

int raw_serve(const std::string& host, const raw_tls_files* tls) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    return 1;
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  socklen_t len = sizeof addr;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0
      || ::listen(listener, 1) != 0
      || ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return 1;
  std::cout << ntohs(addr.sin_port) << std::endl;
  int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(listener);
  if (fd < 0)
    return 1;
  set_no_delay(fd);
  raw_stream stream{fd, tls, true};
  if (!stream.ok())
    return 1;
  const auto ack = raw_frame(raw_mode::ack, 1);
  std::string echo;
  std::string_view body;
  while (stream.next_frame(body)) {
    auto mode = static_cast<raw_mode>(body.empty() ? 0 : body[0]);
    if (mode == raw_mode::echo) {
      // One write: the prefix and the body together.
      auto size = static_cast<std::uint32_t>(body.size());
      echo.assign(reinterpret_cast<const char*>(&size), sizeof size);
      echo.append(body);
      if (!stream.write_all(echo))
        return 0;
    } else if (mode == raw_mode::ack) {
      if (!stream.write_all(ack))
        return 0;
    }
  }
  return 0;
}

} // namespace courier::bench
