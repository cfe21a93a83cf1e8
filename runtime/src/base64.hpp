#pragma once

// Base64 (RFC 4648, with padding), as JSON carries bytes fields (etcd's
// gateway: keys and values).

#include <optional>
#include <string>
#include <string_view>

namespace courier::detail {

/// `in` in base64, padded.
std::string to_base64(std::string_view in);

/// The bytes `in` encodes (padding optional; the URL-safe alphabet is
/// accepted too), or nothing if it is not base64.
std::optional<std::string> from_base64(std::string_view in);

} // namespace courier::detail
