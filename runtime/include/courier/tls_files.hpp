#pragma once

// The PEM files of mutual TLS, as `courier cert` makes them: what every
// network tier (tcp, grpc) and the gateway take, so that one node's
// certificate serves them all without a tier including another.

#include <string>

namespace courier {

/// The files of mutual TLS, all PEM.
///
/// Thread safety: a value type.
struct tls_files {
  /// This node's certificate (its chain, leaf first); a peer checks that a
  /// subject alternative name equals the node's name (DNS:<node>).
  std::string certificate;
  /// Its private key.
  std::string private_key;
  /// The certificate authorities whose certificates this node accepts.
  std::string ca;
};

} // namespace courier
