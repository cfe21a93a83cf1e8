#pragma once

// Addresses of the TCP tier: "host:port" in settings, and "tls://host:port"
// or "tcp://host:port" in node records, so that a dialer knows before it
// connects whether the peer speaks TLS. IPv6 hosts are in brackets.

#include <cstdint>
#include <string>

#include "courier/error.hpp"

namespace courier::tcp {

struct address {
  /// Whether links to it are TLS; set for published addresses only.
  bool tls = false;
  std::string host;
  std::uint16_t port = 0;

  /// "tls://host:port" or "tcp://host:port".
  std::string published() const;

  /// "host:port" (brackets around an IPv6 host).
  std::string host_port() const;
};

/// Parses "host:port", "[v6]:port", or, with `published`, the same after
/// "tls://" or "tcp://"; invalid_argument says what is wrong.
expected<address> parse_address(const std::string& text, bool published);

// is_loopback(host): in courier/tcp/tcp_transport.hpp.

/// Whether `host` listens on every address (0.0.0.0, ::, or empty).
bool is_wildcard(const std::string& host);

/// The first address of an interface that is up and not the loopback, of
/// the family of `like` (IPv4 unless it is an IPv6 address); empty if none.
std::string first_interface_address(const std::string& like);

} // namespace courier::tcp
