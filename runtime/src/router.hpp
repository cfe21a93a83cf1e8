#pragma once

// The router: what a destination name resolves to when no actor of this
// node holds it. It asks the directory which node holds the name, gets the
// route link to that node from the peers, and caches the answer as a
// binding standing for the remote actor, until the name is released over
// there (NameReleased) or the link is lost. It also keeps the bindings that
// stand for remote senders. Local names are the node's own registry
// (node_impl), which asks the router only on a miss.
//
// Lock order: mu_ here is never held while calling out (directory, peers).

#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "binding.hpp"

namespace courier::detail {

class directory;
class peers;

/// Thread safety: all member functions are thread-safe.
class router {
public:
  router(node_impl& owner, directory* dir, peers& links);

  router(const router&) = delete;
  router& operator=(const router&) = delete;

  /// Resolves "actor" or "actor@node" held by another node: invalid_argument
  /// for a malformed name, not_found if nobody holds it, unavailable if its
  /// node cannot be reached.
  expected<route> resolve(std::string_view name);

  /// Forgets a remote name its node released.
  void forget_name(const std::string& actor, const std::string& node);

  /// Forgets every name routed through the link run by `proxy` to `node`.
  void forget_link(const std::string& node, const caf::actor& proxy);

  /// The binding that stands for a remote sender ("actor@node").
  std::shared_ptr<name_slot> remote_sender(std::string_view actor,
                                           const std::string& node);

  /// Releases every cached binding (the node stops).
  void clear();

private:
  node_impl& owner_;
  directory* dir_;
  peers& peers_;
  mutable std::shared_mutex mu_;
  // Guarded by mu_, as are the `current`, `backlog` and `link` fields of
  // the bindings in it.
  string_map<std::shared_ptr<name_slot>> names_;
  std::mutex senders_mu_;
  string_map<std::shared_ptr<name_slot>> senders_; // guarded by senders_mu_
};

} // namespace courier::detail
