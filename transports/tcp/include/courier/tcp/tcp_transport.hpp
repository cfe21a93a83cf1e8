#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include "courier/tls_files.hpp"
#include "courier/transport.hpp"

namespace courier::tcp {

/// The files of mutual TLS (courier/tls_files.hpp), shared with the other
/// network tiers.
using tls_files = courier::tls_files;

/// Settings of the TCP tier (node_config::transports, or [tiers.tcp] in a
/// node's configuration file).
struct options {
  /// host:port to listen on; port 0 lets the kernel pick one. A wildcard
  /// host (0.0.0.0, ::) listens everywhere.
  std::string listen = "127.0.0.1:0";
  /// host:port other nodes dial, published in the node's record; empty
  /// means the listen address with the port the kernel chose (for a
  /// wildcard, the first address of an interface that is up and not the
  /// loopback).
  std::string advertise;
  /// Mutual TLS. Without it, links are plaintext, which a node accepts and
  /// dials only on loopback addresses unless allow_plaintext is set.
  std::optional<tls_files> tls;
  /// Plaintext TCP to and from any address (a trusted network only).
  bool allow_plaintext = false;
  /// A link that has written nothing for this long writes a heartbeat.
  std::chrono::milliseconds heartbeat{1000};
  /// A link that has read nothing (no frame, no heartbeat) for this long is
  /// closed, and its peer reported unreachable: the detection bound.
  std::chrono::milliseconds unreachable_after{3000};
  /// Connections accepted whose TLS handshake is not done yet; more wait in
  /// the kernel's backlog.
  std::size_t max_handshaking = 64;
  /// Deadline of the TCP connect and the TLS handshake.
  std::chrono::milliseconds handshake_timeout{2000};
};

/// The TCP tier: Boost.Asio TCP sockets with TCP_NODELAY, optionally mutual
/// TLS (OpenSSL). Frames are those of the pipe (a 4-byte little-endian
/// length, then the envelope); a frame of length 0 is a heartbeat, never
/// delivered. Reaches nodes on other hosts (rank 10) and, as a last resort,
/// nodes of its own host (rank 2). The peer's identity is its certificate
/// (subject and subject alternative names), or nothing on plaintext links.
/// docs/wire-format.md describes the handshake and the heartbeats.
transport_factory factory(options settings = {});

/// Whether `host` is a loopback address (127.0.0.0/8, ::1, brackets
/// allowed) or "localhost": where plaintext stays on this machine.
bool is_loopback(const std::string& host);

} // namespace courier::tcp
