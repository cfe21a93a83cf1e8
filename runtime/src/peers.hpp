#pragma once

// The peers seam: the links of this node to other nodes. One route link
// per peer node (the first link made with it, either way), plus side links
// a route's proxy opens for messages that ask for another tier. Connecting
// goes through the tier policy; accepting and the hello go through the
// authenticator. The peers know nothing of message contents: each link is
// run by its proxy (remote.hpp).
//
// Lock order: node_impl::mu_ (the name registry) may be held while calling
// announce_release(), which takes mu_ here; nothing here calls out with
// mu_ held. connect_mu_ is taken before mu_.

#include <atomic>
#include <chrono>
#include <optional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>

#include "authenticator.hpp"
#include "binding.hpp"
#include "remote.hpp"
#include "tier_policy.hpp"

namespace courier::detail {

class directory;

/// A route's link to a peer node: its proxy and what routes() shows.
struct peer_link {
  caf::actor proxy;
  std::shared_ptr<link_info> info;
};

/// Thread safety: all member functions are thread-safe.
class peers {
public:
  peers(node_impl& owner, directory* dir, tier_policy policy,
        authenticator auth);

  peers(const peers&) = delete;
  peers& operator=(const peers&) = delete;

  const tier_policy& policy() const noexcept {
    return policy_;
  }

  const authenticator& auth() const noexcept {
    return auth_;
  }

  /// The route link to `node`, connecting if there is none yet.
  expected<peer_link> link_to(const std::string& node);

  /// Opens another link to `node` on `tier`, beside the route's own, for
  /// messages that ask for that tier. Not a route of its own: the route's
  /// proxy owns it and is the only one that writes to it.
  expected<caf::actor> open_side_link(const std::string& node,
                                      const std::string& tier);

  /// Takes a link a transport accepted (on its I/O thread): refused at
  /// once, with the reason told to the peer, unless the authenticator
  /// admits it; closed at once when max_half_open_links accepted links
  /// have not said hello yet; otherwise its proxy waits for the hello.
  void accept(std::unique_ptr<link> conn, const std::string& tier);

  /// An accepted link has said hello, or is gone before it did: one
  /// half-open link less (see accept).
  void end_half_open() noexcept {
    half_open_.fetch_sub(1, std::memory_order_relaxed);
  }

  /// Registers an accepted link whose hello named `node` as the route to
  /// it, unless there is one already.
  void adopt(const std::string& node, caf::actor proxy,
             std::shared_ptr<link_info> info);

  /// Forgets the route link to `node` if `proxy` runs it; true if it did.
  bool drop(const std::string& node, const caf::actor& proxy);

  /// Tells every peer that a local name was released.
  void announce_release(const std::string& name);

  /// Every link, for routes().
  std::vector<route_info> routes() const;

  /// Every link (route and side links), for metrics.
  std::vector<std::shared_ptr<link_info>> links() const;

  /// Refuses new links and hands back every proxy ever started, to drain.
  std::vector<caf::actor_addr> stop();

private:
  /// Reads `node`'s record into `peer` and connects to it through the tier
  /// policy (`only`: on `preferred` alone).
  expected<connected_link> connect(const std::string& node,
                                   std::string_view preferred, bool only,
                                   v1::NodeRecord& peer);

  /// Checks that `conn` is served by `peer` and starts its proxy: the route
  /// to the peer, or (`route` false) a side link of the route.
  expected<caf::actor> start_link(const v1::NodeRecord& peer,
                                  std::unique_ptr<link> conn,
                                  std::shared_ptr<link_info> info, bool route);

  /// A peer whose last dial failed: the next dial waits until `next`
  /// (capped exponential backoff with jitter), unless the peer is another
  /// incarnation by then (restarted: its record changed).
  struct redial {
    int failures = 0;
    std::chrono::steady_clock::time_point next;
    std::string why;
    std::string incarnation;
  };

  /// Fails fast while `node` is in its backoff; forgets it otherwise.
  std::optional<error> backing_off(const std::string& node);

  /// Notes a failed dial to `node` (whose record is `peer`, if it was read).
  void dial_failed(const std::string& node, const v1::NodeRecord& peer,
                   const std::string& why);

  struct entry {
    caf::actor proxy;
    std::shared_ptr<link_info> info;
    /// Links opened beside it for per-message tiers, shown in routes().
    std::vector<std::shared_ptr<link_info>> side;
  };

  node_impl& owner_;
  directory* dir_;
  const tier_policy policy_;
  const authenticator auth_;
  std::mutex connect_mu_; // one outbound connect at a time
  string_map<redial> redials_; // guarded by connect_mu_
  mutable std::shared_mutex mu_;
  string_map<entry> links_;              // guarded by mu_
  std::vector<caf::actor_addr> proxies_; // guarded by mu_; every one ever
  bool stopping_ = false;                // guarded by mu_
  // Accepted links that have not said hello yet (see accept).
  std::atomic<std::size_t> half_open_{0};
};

} // namespace courier::detail
