#pragma once

// The authenticator: who a peer is, and whether it may link to this node.
// Every check of a peer's identity happens here, once per link, whatever
// the tier: transports only report what they can vouch for (peer_identity).
//
// A link is checked twice:
// - when accepted, before a byte is read from it: is the principal allowed
//   to link at all (admit)?
// - at the hello (either side): does the identity the transport vouches for
//   match the node record the peer claims (vouches_for)?
//
// Authorization per actor name and verb (ARCHITECTURE.md, section 7) builds
// on the principal made here.

#include <string>
#include <vector>

#include "courier/error.hpp"
#include "courier/transport.hpp"
#include "courier/v1/control.pb.h"

namespace courier::detail {

/// The name under which a peer is authorized: "uid:1000" for a local
/// process, "cert:<subject>" for a certificate, "anonymous" otherwise.
struct principal {
  std::string name;
  /// A process of this node's own user (always allowed to link).
  bool same_user = false;
};

/// Thread safety: immutable after construction; all member functions are
/// const and may be called from any thread.
class authenticator {
public:
  /// `own_uid` is this node's user; `allowed_uids` and `allowed_gids` the
  /// other users (uid or primary gid) allowed to link (node_config).
  authenticator(unsigned own_uid, std::vector<unsigned> allowed_uids,
                std::vector<unsigned> allowed_gids);

  /// The principal of a peer.
  principal identify(const peer_identity& peer) const;

  /// Whether `peer` may link to this node: its principal, or
  /// permission_denied with the reason (told to the peer, and logged).
  expected<principal> admit(const peer_identity& peer,
                            std::string_view node_name) const;

  /// Whether the identity a transport vouches for is that of the node
  /// `claimed` (the record in a hello, or the directory's record of a node
  /// we connected to); permission_denied says why not.
  expected<void> vouches_for(const peer_identity& peer,
                             const v1::NodeRecord& claimed) const;

private:
  unsigned own_uid_;
  std::vector<unsigned> allowed_uids_;
  std::vector<unsigned> allowed_gids_;
};

} // namespace courier::detail
