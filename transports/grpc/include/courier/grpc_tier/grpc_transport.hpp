#pragma once

// The gRPC tier: Courier links between nodes over one bidirectional gRPC
// stream each, where only HTTP/2 passes. gRPC's headers stay in this
// tier's .cpp files; this one is cheap to include. Link
// `courier::grpc_tier`.
//
//   courier::grpc_tier::options grpc;
//   grpc.tls = courier::tls_files{"node.pem", "node.key", "ca.pem"};
//   config.transports.emplace_back("grpc", courier::grpc_tier::factory(grpc));
//
// (The namespace is grpc_tier, not grpc: code inside namespace courier that
// names gRPC's own `grpc::` must keep finding it.)

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include "courier/tls_files.hpp"
#include "courier/transport.hpp"

namespace courier::grpc_tier {

/// The method every link's stream calls: one gRPC message is one frame.
inline constexpr const char* link_method = "/courier.v1.Link/Carry";

/// Settings of the gRPC tier (node_config::transports, or [tiers.grpc] in
/// a node's configuration file). The names are those of the TCP tier.
struct options {
  /// host:port to listen on; port 0 lets the kernel pick one. A wildcard
  /// host (0.0.0.0, [::]) needs `advertise`.
  std::string listen = "127.0.0.1:0";
  /// host:port other nodes dial, published in the node's record; empty
  /// means the listen address with the port the kernel chose (port 0 here
  /// too keeps that port).
  std::string advertise;
  /// Mutual TLS with the TCP tier's files. Without it, links are
  /// plaintext, which a node accepts and dials only on loopback addresses
  /// unless allow_plaintext is set.
  std::optional<tls_files> tls;
  /// Plaintext gRPC to and from any address (a trusted network only).
  bool allow_plaintext = false;
  /// A link that has written nothing for this long writes a heartbeat (an
  /// empty message).
  std::chrono::milliseconds heartbeat{1000};
  /// A link that has read nothing (no frame, no heartbeat) for this long is
  /// closed, and its peer reported unreachable: the detection bound. It is
  /// also gRPC's keepalive (HTTP/2 pings) for the connection under it.
  std::chrono::milliseconds unreachable_after{3000};
  /// Deadline of connecting: the TCP connect, the TLS handshake and the
  /// stream's first answer; an accepted connection gets as long for its
  /// handshake.
  std::chrono::milliseconds handshake_timeout{2000};
};

/// The gRPC tier: each link is one call of link_method on its own HTTP/2
/// connection, a gRPC message per frame (an empty one is a heartbeat,
/// never delivered), driven through one gRPC completion queue per tier (no
/// thread per link): pollable, so that a node's idle scheduler thread does
/// the tier's I/O and hands frames over without a thread woken; one thread
/// of the tier drains the queue while nobody polls.
/// Reaches nodes on other hosts (rank 5, below TCP's 10) and, as a last
/// resort, nodes of its own host (rank 1, below TCP's 2): it is chosen
/// when configured (node_config::preferred_tiers, post_options::tier) or
/// when it is the only tier both nodes have. The peer's identity is its
/// certificate (subject and subject alternative names), or nothing on
/// plaintext links. Addresses are grpc://host:port (plaintext) and
/// grpcs://host:port/<node> (TLS: the server's certificate must name
/// <node>). docs/wire-format.md describes the stream.
transport_factory factory(options settings = {});

} // namespace courier::grpc_tier
