#pragma once

// A name binding and where a name resolves to: shared by the node's name
// registry, the router and the links. Private to the runtime.

#include <atomic>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/error.hpp>

#include "courier/node.hpp"
#include "letter.hpp"

namespace courier::detail {

class node_impl;
struct link_info;
struct actor_stats;

using monitor_fn = std::function<void(const down_notice&)>;

/// What a monitor_handle names: a flag that demonitor() sets, and where
/// the monitor is registered, to remove it from there.
struct monitor_token {
  std::atomic<bool> cancelled{false};
  /// Set for a monitor of an actor here.
  std::weak_ptr<name_slot> slot;
  /// Set for a monitor of an actor on another node: the link's proxy.
  caf::actor_addr proxy;
};

/// A monitor; `watcher` is set when an actor watches, so that entries of
/// watchers that are gone can be pruned.
struct monitor_entry {
  monitor_fn fn;
  caf::actor_addr watcher;
  std::shared_ptr<monitor_token> token;
};

enum class slot_state : std::uint8_t { running, restarting, released };

/// A name binding. It outlives the incarnations of its actor: a supervisor
/// restart puts a new actor into the same slot.
struct name_slot {
  name_slot(node_impl& owner, std::string name, actor_factory factory,
            spawn_options options)
    : owner(owner),
      name(std::move(name)),
      factory(std::move(factory)),
      options(std::move(options)) {
  }

  node_impl& owner;
  const std::string name;
  /// The node holding the actor when it lives elsewhere; empty when local.
  std::string node;
  /// Elsewhere: the bytes waiting for the route there (link_info::backlog);
  /// set under node_impl::mu_ with `current`. Here: the posts waiting in the
  /// actor's mailbox (counted, not weighed), set at spawn.
  std::shared_ptr<detail::backlog> backlog;
  /// Elsewhere: the link to that node (set with `backlog`).
  std::shared_ptr<link_info> link;
  const actor_factory factory;
  const spawn_options options;
  /// Here, with node_config::metrics on: the counters of this name (set
  /// before the first incarnation runs, then never changed); otherwise
  /// null.
  actor_stats* stats = nullptr;
  /// Set by a spawn from a plain thread, which waits for it: fulfilled once
  /// the first incarnation has made its behavior and published the types
  /// it handles (taken by that incarnation).
  std::shared_ptr<std::promise<void>> started;

  // Written under node_impl::mu_; read without it by actor_ref::bound(),
  // which must work even after the node is gone.
  std::atomic<slot_state> state{slot_state::running};

  // Guarded by node_impl::mu_.
  caf::actor current;
  bool stop_requested = false;
  bool failed = false;
  std::string failure;
  std::deque<deadline::clock::time_point> restarts;
  std::vector<monitor_entry> monitors;

  // Guarded by node_impl::types_mu_: the name was released for good, and
  // the services it declared (spawn_options::services) withdrawn.
  bool services_withdrawn = false;
};

/// Transparent hashing, so lookups by string_view do not allocate.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view x) const noexcept {
    return std::hash<std::string_view>{}(x);
  }
};

template <class T>
using string_map = std::unordered_map<std::string, T, string_hash,
                                      std::equal_to<>>;

/// Where a name resolves to: the binding and its current actor.
struct route {
  std::shared_ptr<name_slot> slot;
  caf::actor handle;
  /// See name_slot::backlog and node_impl::charge_backlog.
  std::shared_ptr<detail::backlog> backlog = {};
  /// Elsewhere: the link the route takes (name_slot::link).
  std::shared_ptr<link_info> link = {};
};

/// Matches `text` against a glob pattern with '*' (any run) and '?' (one
/// character).
bool glob_match(std::string_view pattern, std::string_view text) noexcept;

/// True for a well-formed actor or node name.
bool valid_name(std::string_view name) noexcept;

/// `name` in single quotes, for messages.
std::string quoted(std::string_view name);

/// Maps a CAF error seen by a requester to Courier's vocabulary. For a
/// remote target, a receiver that is gone is its link, not the actor. The
/// verbs decide `remote` from the target's binding (verbs.hpp outcome_of).
error from_caf(const caf::error& err, std::string_view target,
               bool remote = false);

} // namespace courier::detail
