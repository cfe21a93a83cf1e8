#pragma once

// A development certificate authority and node certificates for the TCP
// tier's mutual TLS (`courier cert`). Keys are EC P-256, signatures
// ECDSA with SHA-256: what every TLS 1.2 and 1.3 stack accepts.
//
// Not a production PKI: the CA's key sits in a file next to its
// certificate, and nothing revokes anything.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "courier/error.hpp"

namespace courier::cert {

/// What `courier cert ca` makes.
struct ca_request {
  /// Where ca.pem and ca.key go; created if missing.
  std::filesystem::path out;
  /// The CA's subject common name.
  std::string name = "Courier dev CA";
  /// Validity in days. It starts an hour ago, for peers whose clocks are a
  /// little behind.
  int days = 3650;
  /// Replace ca.pem and ca.key if they exist.
  bool force = false;
};

/// What `courier cert node` makes.
struct node_request {
  /// The node's name: the certificate's common name and its first subject
  /// alternative name, DNS:<name>.
  std::string name;
  /// The folder of the CA (ca.pem and ca.key) that signs it.
  std::filesystem::path ca;
  /// Where <name>.pem and <name>.key go; created if missing.
  std::filesystem::path out;
  /// More subject alternative names, each "DNS:<host>" or "IP:<address>".
  std::vector<std::string> sans;
  /// Validity in days from not_before, unless not_after is set.
  int days = 365;
  /// Start and end of validity, as offsets from now (negative: in the
  /// past). None: an hour ago (for clocks a little behind), and
  /// not_before + days.
  std::optional<std::chrono::seconds> not_before;
  std::optional<std::chrono::seconds> not_after;
  /// Replace <name>.pem and <name>.key if they exist.
  bool force = false;
};

/// The files one request wrote.
struct written_files {
  std::filesystem::path certificate;
  std::filesystem::path private_key;
};

/// Makes a self-signed CA: basicConstraints CA:TRUE (critical), keyUsage
/// keyCertSign and cRLSign, subject and authority key identifiers. The key
/// file is mode 0600.
///
/// Errors: invalid_argument for a bad name or day count, already_exists
/// when a file is there and force is off (then nothing is written),
/// permission_denied or internal when a file cannot be written.
///
/// Thread safety: thread-safe (OpenSSL 3 is).
[[nodiscard]] expected<written_files> make_ca(const ca_request& request);

/// Makes a node certificate signed by the CA in request.ca: CN and
/// DNS:<name> plus the extra SANs, basicConstraints CA:FALSE, keyUsage
/// digitalSignature, extendedKeyUsage serverAuth and clientAuth, subject
/// and authority key identifiers. The key file is mode 0600.
///
/// Errors: as make_ca, plus not_found when the CA's files are missing,
/// invalid_argument when they do not hold a CA and its key, or for a bad
/// SAN or a validity that ends before it starts.
///
/// Thread safety: thread-safe.
[[nodiscard]] expected<written_files>
make_node_certificate(const node_request& request);

/// Parses an offset from now: an optional sign, a whole number and a unit,
/// s (seconds), m (minutes), h (hours) or d (days): "-2d", "+1h", "90m".
/// "0" alone is now. invalid_argument otherwise.
[[nodiscard]] expected<std::chrono::seconds> parse_offset(std::string_view);

} // namespace courier::cert
