#pragma once

// The node's private state: the CAF actor system, the name registry and
// supervision (registry.cpp), the type registry and the dead-letter office
// (node_impl.cpp), its record (node_record.cpp); it owns the seams
// for other nodes (directory.hpp, peers.hpp, router.hpp, tier_policy.hpp,
// authenticator.hpp) and the links reach it through remote.hpp.
//
// Locks, in the only order in which two are ever held together:
//   mu_ (names) -> peers' mu_ (release_locked announces a released name).
// peers' mu_ -> the metrics registry's (peers::drop retires a link's counts).
// types_mu_, record_mu_, hook_mu_, the router's locks and the directory's
// are each taken alone (publish_record lets go of types_mu_ before it
// takes record_mu_).

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/response_promise.hpp>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>

#include "courier/durable_plugin.hpp"
#include "courier/node.hpp"
#include "courier/v1/control.pb.h"
#include "deadline_timer.hpp"
#include "binding.hpp"
#include "directory.hpp"
#include "letter.hpp"
#include "link_host.hpp"
#include "metrics_endpoint.hpp"
#include "metrics_registry.hpp"
#include "peers.hpp"
#include "remote.hpp"
#include "router.hpp"

namespace courier::detail {

/// Where the answer to a request goes: through CAF to a requester in this
/// process, or back over the link the request came by.
class reply_path {
public:
  explicit reply_path(caf::response_promise promise)
    : promise_(std::move(promise)) {
  }

  explicit reply_path(std::shared_ptr<reply_sink> sink)
    : sink_(std::move(sink)) {
  }

  void deliver(reply_msg reply) {
    if (sink_)
      sink_->deliver(std::move(reply));
    else
      promise_.deliver(std::move(reply));
  }

private:
  caf::response_promise promise_;
  std::shared_ptr<reply_sink> sink_;
};

/// The right to answer one request; see courier::responder. Whoever drops
/// the last reference without answering answers aborted: exactly one
/// outcome per request, by construction.
struct responder_state {
  explicit responder_state(reply_path path) : path(std::move(path)) {
  }

  responder_state(const responder_state&) = delete;
  responder_state& operator=(const responder_state&) = delete;

  ~responder_state();

  void deliver(reply_msg reply);

  reply_path path;
  bool done = false;
};

/// True for a Protobuf full name ("shop.PlaceOrder", "shop.Orders").
bool valid_type_name(std::string_view name) noexcept;

/// A metrics snapshot as the system actor sends it (MetricsQuery).
v1::MetricsReport to_report(const metrics_snapshot& snapshot);

class node_impl final : public link_host {
public:
  node_impl(node_config config, std::unique_ptr<directory> dir,
            std::vector<std::pair<std::string, std::unique_ptr<transport>>>
              transports);
  ~node_impl();

  /// Listens on every transport, publishes the node's record and starts its
  /// system actor. Called once, right after construction.
  expected<void> open();

  const node_config& config() const noexcept override {
    return config_;
  }

  node_impl(const node_impl&) = delete;
  node_impl& operator=(const node_impl&) = delete;

  const std::string& name() const noexcept override {
    return config_.name;
  }

  caf::actor_system& system() noexcept override {
    return *system_;
  }

  const std::shared_ptr<bulk_pool>& bulks() noexcept override {
    return bulks_;
  }

  // -- names ------------------------------------------------------------------

  expected<actor_ref> spawn(std::string_view name, actor_factory factory,
                            spawn_options options);

  expected<void> stop(destination name);

  // -- durable delivery (the plug-in, courier/durable_plugin.hpp) --------------

  /// Makes the plug-in of node_config::durable, lending it a public node
  /// over this one. Called once, after open(), before the node is handed
  /// to its user.
  expected<void> start_durable();

  /// Makes the plug-ins of node_config::plugins, in order, each lent the
  /// same public node; called once, after start_durable().
  expected<void> start_plugins();

  /// node::plugin_address.
  expected<std::string> plugin_address(std::string_view name) const;

  /// A durable post; failed_precondition without a plug-in.
  expected<std::uint64_t> post_durable(std::string_view to, const message& msg,
                                       const post_options& options,
                                       const trace_context& trace);

  void accept_durable(std::string_view target, message transfer,
                      std::function<void(expected<message>)> answer) override;

  /// Resolves a destination to a running actor. On failure the message is
  /// reported as a dead letter (no_such_name or restarting).
  expected<route> resolve(destination to, const message& msg,
                          const name_slot* sender);

  expected<actor_ref> find(std::string_view name) const;

  /// Changes whenever any binding changes (spawn, stop, exit, restart).
  /// A route resolved at generation g is valid while generation() == g.
  std::uint64_t generation() const noexcept {
    return generation_.load(std::memory_order_acquire);
  }

  std::vector<std::string> names(std::string_view pattern) const;

  /// The running and restarting actors whose names match, sorted by name;
  /// `handle` is null for a restarting one.
  std::vector<route> match(std::string_view pattern) const;

  expected<monitor_handle> monitor(destination name, monitor_fn on_down,
                                   caf::actor_addr watcher = {}) override;

  /// See node::demonitor.
  void demonitor(const monitor_handle& handle) override;

  /// The token inside a handle.
  static const std::shared_ptr<monitor_token>&
  token_of(const monitor_handle& handle) noexcept {
    return handle.token_;
  }

  static monitor_handle
  handle_of(std::shared_ptr<monitor_token> token) noexcept {
    return monitor_handle{std::move(token)};
  }

  /// Marks the slot failed with `reason`; the shell then quits.
  void mark_failed(name_slot& slot, std::string reason);

  // -- types ------------------------------------------------------------------

  expected<const google::protobuf::Descriptor*>
  register_type(std::string_view full_name);

  expected<const google::protobuf::Descriptor*>
  find_type(std::string_view full_name) const;

  /// The prototype of a type known here (registered, or linked into the
  /// program); not_found otherwise.
  expected<const google::protobuf::Message*> prototype(std::string_view type) override;

  void register_handled_types(const behavior& handlers);

  /// Makes the types another node published known here (for tools that
  /// encode messages they were not compiled with).
  expected<void> import_types(std::string_view node_name);
  expected<std::vector<std::string>>
  published_types(std::string_view node_name) const;
  /// The files of every type known here and of every service its actors
  /// serve, dependencies first.
  std::vector<const google::protobuf::FileDescriptor*> type_files() const;

  // -- services actors serve (served_services.cpp) -----------------------------

  /// The descriptors of the services `options` declares, from the
  /// program's generated pool: invalid_argument for a malformed name,
  /// not_found for a service the program does not know.
  static expected<std::vector<const google::protobuf::ServiceDescriptor*>>
  find_services(const spawn_options& options);

  /// Publishes that the actor of `slot` serves `services`, unless its name
  /// was released already (withdraw_services came first). Call without
  /// mu_.
  void
  declare_services(const std::shared_ptr<name_slot>& slot,
                   std::vector<const google::protobuf::ServiceDescriptor*>
                     services);

  /// Withdraws the services of a binding whose name is released for good.
  /// Call without mu_.
  void withdraw_services(name_slot& slot);

  /// See node::served_services.
  std::vector<service_info> served_services() const;

  // -- other nodes ------------------------------------------------------------

  /// This node's record as published.
  v1::NodeRecord record() const override;

  /// Resolves a name held by this node only (for inbound envelopes).
  expected<route> resolve_local(std::string_view name) override;

  expected<void> vouches_for(const peer_identity& peer,
                             const v1::NodeRecord& claimed) const override {
    return peers_->auth().vouches_for(peer, claimed);
  }

  /// The links to other nodes.
  detail::peers& peers() noexcept {
    return *peers_;
  }

  /// Where names held by other nodes resolve to.
  detail::router& router() noexcept {
    return *router_;
  }

  /// The binding that stands for a remote sender ("actor@node").
  std::shared_ptr<name_slot> remote_sender(std::string_view actor,
                                           const std::string& node) override {
    return router_->remote_sender(actor, node);
  }

  /// Registers an inbound link (the first link with a node serves outbound
  /// traffic to it; later ones only their own).
  void adopt_link(const std::string& node, caf::actor proxy,
                  std::shared_ptr<link_info> info) override;

  /// See peers::open_side_link.
  expected<caf::actor> open_side_link(const std::string& node,
                                      const std::string& tier) override;

  /// Refuses post options this node cannot honour (priority over 7, a tier
  /// it does not have).
  expected<void> check_post_options(const post_options& options) const;

  /// For a post to another node: adds the payload's size (at least 1) to
  /// the route's backlog, or refuses (resource_exhausted) when the backlog
  /// would pass limits.max_queued (a lone message always goes: the frame
  /// limit judges it). Bounds what a fast poster can pile up for a slow
  /// link. For a post to an actor here: counts it into the actor's mailbox,
  /// or refuses when that holds its max_mailbox already.
  ///
  /// Requests to another node are counted too, never refused (their
  /// deadline bounds them): a route's backlog is zero only when nothing
  /// waits to be written to its link, which lets answers skip the proxy
  /// (link_core::answer).
  /// With `wait_for_room`, a full backlog blocks the caller (a plain
  /// thread) until it has drained to half, at most that long.
  expected<backlog_charge>
  charge_backlog(const route& dest, const message& payload,
                 std::chrono::nanoseconds wait_for_room = {}) const;

  /// Counts a request to another node into its route's backlog (see
  /// charge_backlog); nothing for an actor here.
  backlog_charge charge_request(const route& dest,
                                const message& payload) const;

  /// Forgets a link that closed, and every route through it.
  void drop_link(const std::string& node, const caf::actor& proxy) override;

  /// Forgets a remote name its node released.
  void forget_remote_name(const std::string& actor,
                          const std::string& node) override;

  /// Bumps the routing generation: a binding or a route changed.
  void routes_changed() noexcept {
    generation_.fetch_add(1, std::memory_order_release);
  }

  /// An accepted link has said hello, or is gone before it did: one
  /// half-open link less (see peers::accept).
  void learned_peer(const v1::NodeRecord& record) override {
    if (dir_)
      dir_->learn(record);
  }

  void end_half_open() noexcept override {
    peers_->end_half_open();
  }

  std::vector<node_info> nodes() const;

  /// The names held on this machine matching `pattern`: this node's, and
  /// those of nodes of its own user as the directory lists them; the nodes
  /// of other users are asked over a link which of theirs this node may
  /// find (docs/security.md), and those that do not answer are left out.
  /// Blocks while it asks.
  std::vector<name_info> machine_names(std::string_view pattern) const;

  std::vector<route_info> routes() const;

  // -- authorization (access.hpp) ---------------------------------------------

  void report_refusal(const link_access& who, std::string_view peer_node,
                      verbs verb, std::string_view target,
                      const trace_context& trace) override;

  std::vector<std::string> visible_names(std::string_view pattern,
                                         const link_access& who) override;

  /// Requests from other nodes refused by the rules since the node started.
  std::uint64_t refusals() const noexcept {
    return refusals_.total();
  }

  // -- dead letters -----------------------------------------------------------

  void report_dead_letter(dead_letter_reason reason, std::string_view target,
                          const message& msg, const name_slot* sender) override;

  void on_dead_letter(std::function<void(const dead_letter&)> hook);

  std::uint64_t dead_letters(dead_letter_reason reason) const noexcept {
    return dead_counts_[static_cast<std::size_t>(reason)].load(
      std::memory_order_relaxed);
  }

  // -- supervision --------------------------------------------------------------

  /// Called once per incarnation when its actor terminates.
  void on_exit(const std::shared_ptr<name_slot>& slot, const caf::error& why);

  /// Called by the supervisor when a restart's backoff has passed.
  /// `reason`: the failure, for the log line.
  void restart(const std::shared_ptr<name_slot>& slot, std::string_view reason);

  // -- metrics (metrics_registry.hpp, node_metrics.cpp) ---------------------------

  /// The counters per actor name, in-process and of links gone.
  metrics_registry& metrics() noexcept {
    return metrics_;
  }

  /// Everything the node counts, now (node::metrics).
  metrics_snapshot snapshot_metrics() const;

  /// Where GET /metrics is served; empty when it is not.
  std::string metrics_address() const {
    return endpoint_ ? endpoint_->address() : std::string{};
  }

  // -- misc -------------------------------------------------------------------

  /// Deadlines of requests to other nodes (see deadline_timer.hpp).
  deadline_timer& timer() noexcept {
    return timer_;
  }

  void log(log_level level, std::string_view line) const override;

  void log_event(log_level level, std::string_view line,
                 const log_fields& fields) const override;

  void log_peer_fault(std::string_view line,
                      const log_fields& fields) const override;

  /// Builds a letter for `msg`; the node is its dead-letter office.
  letter make_letter(letter_kind kind, message msg, const route& to,
                     std::shared_ptr<name_slot> sender, deadline expires) override {
    return letter{kind, std::move(msg), to.slot, std::move(sender), expires,
                  this};
  }

private:
  /// Spawns and publishes a new incarnation; requires mu_ held exclusively.
  /// The actor cannot run before it is published (CAF's spawn only
  /// schedules it), so nobody sees a bound name without an actor.
  caf::actor spawn_locked(const std::shared_ptr<name_slot>& slot);

  /// Attaches the exit bookkeeping; call without mu_ (it runs at once if the
  /// actor is already gone).
  void watch_exit(const caf::actor& handle,
                  const std::shared_ptr<name_slot>& slot);

  /// Releases a name; requires mu_ held exclusively.
  void release_locked(const std::shared_ptr<name_slot>& slot);

  /// Runs monitors without letting their exceptions out.
  void notify(std::vector<monitor_entry>& monitors, const down_notice& notice);

  /// The binding a destination names, running or restarting.
  expected<std::shared_ptr<name_slot>> slot_locked(destination to) const;

  expected<route> resolve_locked(destination to) const;

  /// Rewrites this node's record in the directory.
  void publish_record();

  /// type_files(); requires types_mu_ held.
  std::vector<const google::protobuf::FileDescriptor*>
  type_files_locked() const;

  node_config config_;
  // Before anything that holds links (their cores share it).
  const std::shared_ptr<bulk_pool> bulks_;

  // Declared before the actor system: letters destroyed during its shutdown
  // still report here.
  std::array<std::atomic<std::uint64_t>, dead_letter_reason_count>
    dead_counts_{};
  // A line per dead letter, at most one a second per reason (a peer can
  // send to names nobody holds as fast as it likes).
  mutable std::array<log_gate, dead_letter_reason_count> dead_gates_;
  mutable log_gate peer_faults_; // log_peer_fault
  mutable std::mutex hook_mu_;
  std::shared_ptr<const std::function<void(const dead_letter&)>> hook_;

  refusal_log refusals_;
  metrics_registry metrics_{config_.metrics};

  mutable std::shared_mutex mu_;
  string_map<std::shared_ptr<name_slot>> names_;
  bool stopping_ = false;
  // Bumped under mu_ (exclusive) on every binding change; read lock-free.
  std::atomic<std::uint64_t> generation_{0};
  // Incarnations whose exit bookkeeping (on_exit) has not finished; the
  // destructor waits for zero, whatever order CAF runs its cleanup in.
  std::size_t live_incarnations_ = 0;
  std::condition_variable_any all_exited_;

  mutable std::shared_mutex types_mu_;
  string_map<const google::protobuf::Message*> types_; // prototypes
  /// A service an actor here serves (spawn_options::services).
  struct served_service {
    const name_slot* slot; // whose entry it is (compared, not followed)
    std::string actor;
    const google::protobuf::ServiceDescriptor* descriptor;
  };
  std::vector<served_service> served_; // guarded by types_mu_
  // Bumped under types_mu_ whenever types_ or served_ change, so that of
  // two records published at once the newer one wins (publish_record).
  std::uint64_t types_version_ = 0;     // guarded by types_mu_
  std::uint64_t published_version_ = 0; // guarded by record_mu_

  // Other nodes. The directory and the transports outlive the peers and
  // the router, which use them.
  std::unique_ptr<directory> dir_; // thread-safe itself
  std::vector<std::pair<std::string, std::unique_ptr<transport>>> transports_;
  std::unique_ptr<detail::peers> peers_;
  std::unique_ptr<detail::router> router_;

  mutable std::mutex record_mu_;
  v1::NodeRecord record_;                        // guarded by record_mu_
  std::vector<std::string> published_files_;     // guarded by record_mu_
  std::unique_ptr<google::protobuf::DescriptorPool> imported_pool_;
  std::unique_ptr<google::protobuf::MessageFactory> imported_factory_;

  caf::actor_system_config caf_config_;
  std::unique_ptr<caf::actor_system> system_;
  deadline_timer timer_; // stopped before the system goes (and declared after)
  caf::actor supervisor_;
  // Serves snapshot_metrics(); stopped first thing in the destructor.
  std::unique_ptr<metrics_endpoint> endpoint_;
  // Durable delivery: set once by start_durable, before any verb may reach
  // it, and stopped first thing in the destructor (then kept until the
  // actors it spawned are gone). The node it was lent.
  std::shared_ptr<durable_plugin> durable_;
  // The public node lent to the plug-ins (durable delivery and the others).
  std::unique_ptr<node> lent_;
  // node_config::plugins, started; stopped (in reverse) first thing in the
  // destructor, before durable delivery.
  std::vector<std::pair<std::string, std::unique_ptr<node_plugin>>> plugins_;
  // What links read: a transfer may arrive before start_durable is done.
  std::atomic<durable_plugin*> durable_ready_{nullptr};
};

} // namespace courier::detail
