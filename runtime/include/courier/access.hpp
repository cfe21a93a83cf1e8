#pragma once

// Authorization rules: which principal may use which verb on which actor
// names of this node (docs/security.md). A principal is who is at the other
// end of a link, as the kernel (uid, gid) or a certificate (subject, subject
// alternative names) says. Everything a rule does not allow is refused, for
// every principal but the node's own user.

#include <cstdint>
#include <string>
#include <string_view>

#include "courier/error.hpp"

namespace courier {

/// A set of verbs, as bits: `verbs::post | verbs::send`.
enum class verbs : std::uint8_t {
  none = 0,
  /// post: fire and forget.
  post = 1u << 0,
  /// send and request: a call that gets a reply.
  send = 1u << 1,
  /// find and names: learning that a name is held here.
  find = 1u << 2,
  /// Being asked by a broadcast (one request per matching name).
  broadcast = 1u << 3,
  /// monitor: a notice when the actor stops.
  monitor = 1u << 4,
  all = 0x1f,
};

constexpr verbs operator|(verbs x, verbs y) noexcept {
  return static_cast<verbs>(static_cast<std::uint8_t>(x)
                            | static_cast<std::uint8_t>(y));
}

constexpr verbs operator&(verbs x, verbs y) noexcept {
  return static_cast<verbs>(static_cast<std::uint8_t>(x)
                            & static_cast<std::uint8_t>(y));
}

constexpr verbs& operator|=(verbs& x, verbs y) noexcept {
  return x = x | y;
}

/// Whether `set` holds every verb of `wanted` (and `wanted` is not empty).
constexpr bool allows(verbs set, verbs wanted) noexcept {
  return wanted != verbs::none && (set & wanted) == wanted;
}

/// Parses a comma-separated list of verbs ("post,send"), or "all", or
/// "none"; blanks around the words are ignored. invalid_argument names the
/// word it does not know. For configuration files.
[[nodiscard]] expected<verbs> parse_verbs(std::string_view text);

/// "post,send", "all" or "none": what parse_verbs() reads back.
std::string to_string(verbs set);

/// One rule: `principal` may use the verbs `allowed` on the actors whose
/// names match `names`. Rules only allow; a request is allowed when any
/// rule allows it.
///
/// Principal syntax (docs/security.md):
/// - `uid:<number>`: a local process of that user (SO_PEERCRED);
/// - `gid:<number>`: a local process whose group, as SO_PEERCRED reports it
///   (the effective gid), is that one;
/// - `cert:<glob>`: a peer whose certificate subject matches the glob, as
///   the TLS tier reports the subject (e.g. `cert:CN=billing-*`);
/// - `san:<glob>`: a peer with a certificate subject alternative name that
///   matches the glob (e.g. `san:*.billing.example`);
/// - `anonymous`: a peer nothing vouches for, on a link of a tier that was
///   configured to accept plaintext (a trusted network).
/// Globs here and in `names` are Courier's name patterns: '*' any run of
/// characters, '?' one character, as in broadcast and `courier names`.
///
/// Thread safety: a value type.
struct access_rule {
  std::string principal;
  std::string names = "*";
  verbs allowed = verbs::none;
};

/// Whether `rule` is well formed; invalid_argument says what is wrong.
/// node::start() checks every rule of node_config::rules with it.
[[nodiscard]] expected<void> check_rule(const access_rule& rule);

} // namespace courier
