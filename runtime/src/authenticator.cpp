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
                             std::vector<unsigned> allowed_gids,
                             std::vector<access_rule> rules)
  : own_uid_(own_uid),
    allowed_uids_(std::move(allowed_uids)),
    allowed_gids_(std::move(allowed_gids)),
    rules_(std::move(rules)) {
}

bool authenticator::names(const access_rule& rule,
                          const peer_identity& peer) {
  std::string_view who = rule.principal;
  if (who == "anonymous") // a plaintext network link: nothing vouches
    return !peer.kernel && !peer.certificate;
  auto colon = who.find(':');
  if (colon == std::string_view::npos)
    return false;
  auto kind = who.substr(0, colon);
  auto value = who.substr(colon + 1);
  if (kind == "uid" || kind == "gid") {
    if (!peer.kernel || value.empty() || value.size() > 10)
      return false;
    unsigned long long id = 0;
    for (char c : value) {
      if (c < '0' || c > '9')
        return false;
      id = id * 10 + static_cast<unsigned>(c - '0');
    }
    return id == (kind == "uid" ? peer.kernel->uid : peer.kernel->gid);
  }
  if (!peer.certificate)
    return false;
  if (kind == "cert")
    return glob_match(value, peer.certificate->subject);
  if (kind == "san")
    return std::any_of(peer.certificate->alt_names.begin(),
                       peer.certificate->alt_names.end(),
                       [&](const std::string& name) {
                         return glob_match(value, name);
                       });
  return false;
}

principal authenticator::identify(const peer_identity& peer) const {
  principal who;
  if (peer.kernel) {
    who.name = "uid:" + std::to_string(peer.kernel->uid);
    who.same_user = peer.kernel->uid == own_uid_;
  } else if (peer.certificate) {
    who.name = "cert:" + peer.certificate->subject;
  } else {
    who.name = "anonymous";
  }
  // allowed_uids and allowed_gids predate the rules: each stands for a
  // rule allowing everything (docs/security.md).
  bool unrestricted = who.same_user
                      || (peer.kernel
                          && (contains(allowed_uids_, peer.kernel->uid)
                              || contains(allowed_gids_, peer.kernel->gid)));
  std::vector<access_rule> mine;
  if (!unrestricted)
    for (const auto& rule : rules_)
      if (names(rule, peer))
        mine.push_back(rule);
  who.access = std::make_shared<const link_access>(who.name, std::move(mine),
                                                   unrestricted);
  return who;
}

expected<principal> authenticator::admit(const peer_identity& peer,
                                         std::string_view node_name) const {
  auto who = identify(peer);
  if (who.access->allows_anything())
    return who;
  // A certificate was checked by the tier that brought it, against the CAs
  // the node trusts (mutual TLS); a network peer with nothing else came over
  // a tier configured for plaintext. Either may link; what it may do there
  // is the rules' call, per name and verb: nothing unless a rule names
  // it. A local peer without credentials may not.
  if (peer.certificate || (!peer.kernel && !peer.address.empty()))
    return who;
  // Deny by default: a local user no rule names may not link.
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
