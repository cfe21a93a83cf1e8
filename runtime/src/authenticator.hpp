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
// on the principal made here: with it comes the link's access (access.hpp),
// the rules of node_config::rules that name the principal. All of the
// mapping from an identity to a principal and its rules is here.

#include <memory>
#include <string>
#include <vector>

#include "access.hpp"
#include "courier/access.hpp"
#include "courier/error.hpp"
#include "courier/transport.hpp"
#include "courier/v1/control.pb.h"

namespace courier::detail {

/// The name under which a peer is authorized: "uid:1000" for a local
/// process, "cert:<subject>" for a certificate, "anonymous" otherwise.
struct principal {
  std::string name;
  /// A process of this node's own user (always allowed everything).
  bool same_user = false;
  /// What it may do here; never null.
  std::shared_ptr<const link_access> access;
};

/// Thread safety: immutable after construction; all member functions are
/// const and may be called from any thread.
class authenticator {
public:
  /// `own_uid` is this node's user; `allowed_uids` and `allowed_gids` the
  /// other users (uid or primary gid) allowed to link, and to do anything
  /// (node_config); `rules` what other principals may do (node_config::
  /// rules, checked with check_rule() before).
  authenticator(unsigned own_uid, std::vector<unsigned> allowed_uids,
                std::vector<unsigned> allowed_gids,
                std::vector<access_rule> rules = {});

  /// The principal of a peer, with what it may do here: everything for
  /// this node's own user and the users of allowed_uids and allowed_gids,
  /// what the rules that name it allow for anyone else, and nothing for a
  /// peer nothing vouches for.
  principal identify(const peer_identity& peer) const;

  /// Whether `peer` may link to this node: its principal, or
  /// permission_denied with the reason (told to the peer, and logged).
  /// A local user may link if it may do something here; a certificate
  /// (checked by its tier) or a plaintext peer (its tier was configured to
  /// accept them) always may, and may then do what the rules allow.
  expected<principal> admit(const peer_identity& peer,
                            std::string_view node_name) const;

  /// Whether a rule's principal pattern names `peer`.
  static bool names(const access_rule& rule, const peer_identity& peer);

  /// Whether the identity a transport vouches for is that of the node
  /// `claimed` (the record in a hello, or the directory's record of a node
  /// we connected to); permission_denied says why not.
  expected<void> vouches_for(const peer_identity& peer,
                             const v1::NodeRecord& claimed) const;

private:
  unsigned own_uid_;
  std::vector<unsigned> allowed_uids_;
  std::vector<unsigned> allowed_gids_;
  std::vector<access_rule> rules_;
};

} // namespace courier::detail
