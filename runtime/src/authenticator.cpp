#include "authenticator.hpp"

#include <algorithm>

#include <sys/socket.h>

namespace courier {

std::string peer_identity::describe() const {
  if (kernel)
    return "uid " + std::to_string(kernel->uid) + " (pid "
           + std::to_string(kernel->pid) + ")";
  if (certificate)
    return "certificate " + certificate->subject;
  if (!address.empty())
    return "an unauthenticated peer at " + address;
  return "an unauthenticated peer";
}

peer_identity kernel_peer_of(int socket_fd) {
  peer_identity out;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(socket_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
    out.kernel = kernel_credentials{cred.pid, cred.uid, cred.gid};
  return out;
}

} // namespace courier

namespace courier::detail {

namespace {

bool contains(const std::vector<unsigned>& ids, unsigned id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

} // namespace

authenticator::authenticator(unsigned own_uid,
                             std::vector<unsigned> allowed_uids,
                             std::vector<unsigned> allowed_gids)
  : own_uid_(own_uid),
    allowed_uids_(std::move(allowed_uids)),
    allowed_gids_(std::move(allowed_gids)) {
}

principal authenticator::identify(const peer_identity& peer) const {
  if (peer.kernel)
    return {"uid:" + std::to_string(peer.kernel->uid),
            peer.kernel->uid == own_uid_};
  if (peer.certificate)
    return {"cert:" + peer.certificate->subject, false};
  return {"anonymous", false};
}

expected<principal> authenticator::admit(const peer_identity& peer,
                                         std::string_view node_name) const {
  auto who = identify(peer);
  if (who.same_user)
    return who;
  if (peer.kernel
      && (contains(allowed_uids_, peer.kernel->uid)
          || contains(allowed_gids_, peer.kernel->gid)))
    return who;
  // A certificate was checked by the tier that brought it, against the CAs
  // the node trusts (mutual TLS); a network peer with nothing else came over
  // a tier configured for plaintext. Either may link; what it may do there
  // is the rules' call, per name and verb. A local peer without
  // credentials may not.
  if (peer.certificate || (!peer.kernel && !peer.address.empty()))
    return who;
  return error{errc::permission_denied, peer.describe() + " may not link to node '"
                                          + std::string{node_name} + "'"};
}

expected<void> authenticator::vouches_for(const peer_identity& peer,
                                          const v1::NodeRecord& claimed) const {
  if (peer.kernel) {
    const auto& creds = *peer.kernel;
    if (static_cast<unsigned>(claimed.uid()) == creds.uid
        && claimed.pid() == creds.pid)
      return {};
    return error{errc::permission_denied,
                 "node '" + claimed.name() + "' claims uid "
                   + std::to_string(claimed.uid()) + " pid "
                   + std::to_string(claimed.pid()) + " but the kernel says "
                   + peer.describe()};
  }
  if (peer.certificate) {
    // A certificate vouches for the node names among its subject
    // alternative names.
    const auto& names = peer.certificate->alt_names;
    if (std::find(names.begin(), names.end(), claimed.name()) != names.end())
      return {};
    return error{errc::permission_denied,
                 "the certificate " + peer.certificate->subject
                   + " does not name node '" + claimed.name() + "'"};
  }
  // Plaintext network links carry no identity: their node takes the
  // peer's word, as its configuration asked (a trusted network).
  if (!peer.address.empty())
    return {};
  return error{errc::permission_denied,
               "nothing vouches for the identity of node '" + claimed.name()
                 + "'"};
}

} // namespace courier::detail
