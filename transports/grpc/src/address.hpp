#pragma once

// Addresses of the gRPC tier: "host:port" in settings, and in node records
// "grpc://host:port" (plaintext) or "grpcs://host:port/<node>" (TLS, the
// node whose certificate the server must present), so that a dialer knows
// before it connects how to speak to the peer. IPv6 hosts are in brackets.

#include <cstdint>
#include <string>

#include "courier/error.hpp"

namespace courier::grpc_tier {

struct address {
  /// Whether links to it are TLS; set for published addresses only.
  bool tls = false;
  std::string host; // without brackets
  std::uint16_t port = 0;
  /// The node a TLS server's certificate names (grpcs:// only).
  std::string node;

  /// "host:port", brackets around an IPv6 host: gRPC's target and listen
  /// address alike.
  std::string host_port() const;

  /// "grpc://host:port" or "grpcs://host:port/node".
  std::string published() const;
};

/// Parses "host:port", "[v6]:port", or, with `published`, the forms of a
/// node record; invalid_argument says what is wrong.
expected<address> parse_address(const std::string& text, bool published);

/// Whether `host` is a loopback address (127.0.0.0/8, ::1) or "localhost".
bool is_loopback(const std::string& host);

/// Whether `host` listens on every address (0.0.0.0, ::, or empty).
bool is_wildcard(const std::string& host);

} // namespace courier::grpc_tier
