#pragma once

// The rules of node_config::rules (courier/access.hpp) for callers that do
// not come over a link: the gRPC gateway's callers. The same principals
// (`cert:`, `san:`, `uid:`, `gid:`, `anonymous`) and the same matching as
// a node's links; deny by default, and no caller is the node's own user.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "courier/access.hpp"
#include "courier/error.hpp"
#include "courier/transport.hpp"

namespace courier {

namespace detail {
class authenticator;
} // namespace detail

/// Thread safety: immutable; every member function may be called from any
/// thread.
class access_policy {
public:
  /// invalid_argument for a malformed rule (check_rule()).
  [[nodiscard]] static expected<access_policy>
  make(std::vector<access_rule> rules);

  /// The principal `caller` is authorized as: "cert:<subject>" for a
  /// certificate, "uid:<n>" for a local process, "anonymous" otherwise.
  std::string principal(const peer_identity& caller) const;

  /// The verbs `caller` may use on the actor `name` ("actor" or
  /// "actor@node": the actor's name counts).
  verbs allowed(const peer_identity& caller, std::string_view name) const;

  bool allows(const peer_identity& caller, std::string_view name,
              verbs verb) const {
    return courier::allows(allowed(caller, name), verb);
  }

private:
  explicit access_policy(std::shared_ptr<const detail::authenticator> rules);

  std::shared_ptr<const detail::authenticator> rules_;
};

} // namespace courier
