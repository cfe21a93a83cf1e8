#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "courier/actor_ref.hpp"
#include "courier/behavior.hpp"
#include "courier/context.hpp"
#include "courier/deadline.hpp"
#include "courier/error.hpp"
#include "courier/message.hpp"
#include "courier/metrics.hpp"
#include "courier/notices.hpp"
#include "courier/options.hpp"

namespace courier {

/// Builds an actor's behavior; called once per incarnation (again after each
/// restart), so state it captures by value starts fresh.
using actor_factory = std::function<behavior(context&)>;

/// One Courier node: a runtime hosting named actors. Destroying the node
/// stops its actors (monitors see node_down) and waits for them.
///
/// Verbs called from plain threads may block only where they say so (send,
/// broadcast). Calling them from inside a handler works but blocks a
/// scheduler thread: actors use context's non-blocking verbs instead.
///
/// Thread safety: all member functions are thread-safe, except that the node
/// must not be moved or destroyed while another thread uses it.
class node {
public:
  /// Starts a node. Fails with invalid_argument for a bad name.
  [[nodiscard]] static expected<node> start(node_config config = {});

  node(node&&) noexcept;
  node& operator=(node&&) noexcept;
  ~node();

  const std::string& name() const noexcept;

  /// Spawns an actor under `name`. Fails with already_exists if the name is
  /// held, invalid_argument if it is malformed. The name is released when
  /// the actor stops for good. Called from a plain thread, it returns once
  /// the actor's behavior is made and the types it handles are published
  /// (what the CLI needs to encode them); from inside an actor, at once.
  expected<actor_ref> spawn(std::string_view name, actor_factory factory,
                            spawn_options options = {});

  /// Stops the actor holding `name` (no restart). Fails with not_found.
  expected<void> stop(destination name);

  /// Fire and forget; returns once the message is queued for the actor.
  expected<void> post(destination to, message msg, post_options options = {});

  template <class T>
    requires is_payload_v<T>
  expected<void> post(destination to, T&& msg, post_options options = {}) {
    return post(to, make_message(std::forward<T>(msg)), options);
  }

  /// A durable post (post_options::durable is implied): returns the
  /// message's id in this node's store once it is on disk. Errors:
  /// failed_precondition (no node_config::durable), invalid_argument,
  /// resource_exhausted (a quota, or the disk is full), unavailable or
  /// data_loss (the store stopped; docs/operations.md).
  expected<std::uint64_t> post_durable(destination to, message msg,
                                       post_options options = {});

  template <class T>
    requires is_payload_v<T>
  expected<std::uint64_t> post_durable(destination to, T&& msg,
                                       post_options options = {}) {
    return post_durable(to, make_message(std::forward<T>(msg)),
                        std::move(options));
  }

  /// Calls `to` and blocks the calling thread until the reply, an error, or
  /// the deadline: exactly one outcome. Errors: not_found, unavailable,
  /// deadline_exceeded, unimplemented, aborted, internal (handler threw) or
  /// whatever error the handler returned.
  expected<message> send(destination to, message msg, deadline until);

  /// Typed send: `send<Reply>(name, msg, 500ms)`. A reply of another type
  /// yields errc::internal.
  template <class Reply = google::protobuf::Message, class T>
    requires is_payload_v<T>
  expected<std::shared_ptr<const Reply>> send(destination to, T&& msg,
                                              deadline until) {
    return detail::cast_reply<Reply>(
      send(to, make_message(std::forward<T>(msg)), until));
  }

  /// Calls `to`, an actor of this node, without waiting for the answer
  /// (the SendMessageCallback of the verbs): `on_outcome` gets exactly one
  /// outcome, the reply or an error as send's, on the thread that has it:
  /// the answering actor's while it handles the request, the node's timer
  /// (deadline_exceeded), or whichever drops the request unanswered
  /// (aborted). So it must be short, must not block and must not throw.
  /// Called from a plain thread, it lends that thread to the actor if the
  /// actor is idle: the actor handles this request on it before the call
  /// returns, as a scheduler thread would have (no thread is woken), so the
  /// call takes as long as that handler; the actor's other messages stay
  /// with the scheduler. From inside an actor nothing runs on its thread.
  /// Returns true once the request is on its way; false when the name is
  /// held on another node (nothing is sent and `on_outcome` is never
  /// called: ask from an actor, context::request); an error when nothing
  /// could be sent (invalid_argument, not_found, unavailable,
  /// deadline_exceeded; `on_outcome` is never called). Any thread may call
  /// it.
  [[nodiscard]] expected<bool>
  request_here(destination to, message msg, deadline until,
               std::function<void(expected<message>)> on_outcome);

  /// Resolves a name, or fails with not_found.
  expected<actor_ref> find(std::string_view name) const;

  /// The names bound on this node that match a glob pattern, sorted.
  std::vector<std::string> names(std::string_view pattern = "*") const;

  /// Makes a message type known by its Protobuf full name (the type must be
  /// linked into the program). Fails with invalid_argument for a malformed
  /// name and not_found for an unknown one.
  expected<const google::protobuf::Descriptor*>
  register_type(std::string_view full_name);

  template <class T>
    requires is_protobuf_message_v<T>
  const google::protobuf::Descriptor* register_type() {
    return *register_type(T::descriptor()->full_name());
  }

  /// Looks up a registered type; not_found if it was never registered.
  expected<const google::protobuf::Descriptor*>
  find_type(std::string_view full_name) const;

  /// Creates an empty message of a registered type, e.g. to parse JSON.
  expected<std::unique_ptr<google::protobuf::Message>>
  new_message(std::string_view full_name) const;

  /// Asks every actor whose name matches `pattern` (glob: '*', '?') and
  /// blocks until all have answered or the deadline has passed.
  broadcast_result broadcast(std::string_view pattern, message msg,
                             deadline until);

  template <class T>
    requires is_payload_v<T>
  broadcast_result broadcast(std::string_view pattern, T&& msg,
                             deadline until) {
    return broadcast(pattern, make_message(std::forward<T>(msg)), until);
  }

  /// Watches `name`: `on_down` runs once, on a runtime thread, when its
  /// actor stops, unless demonitor() cancels it first. Fails with not_found
  /// if nobody holds the name.
  expected<monitor_handle>
  monitor(destination name, std::function<void(const down_notice&)> on_down);

  /// Cancels a monitor: once this returns, its callback does not start
  /// (one already running finishes). Idempotent; an empty handle is
  /// ignored. A monitor of an actor on another node is also dropped there.
  void demonitor(const monitor_handle& handle);

  /// The live nodes of this machine's directory (this one included), sorted;
  /// empty when the node did not join a directory.
  std::vector<node_info> nodes() const;

  /// The names held on this machine, by any node, matching a glob pattern.
  /// Nodes of other users are asked over a link which of their names this
  /// node may find (their rules, docs/security.md): may block for up to
  /// twice handshake_timeout per such node; one that does not answer has
  /// its names left out.
  std::vector<name_info> machine_names(std::string_view pattern = "*") const;

  /// The gRPC services actors declared at spawn (spawn_options::services),
  /// here and on every live node the directory knows (a seed's, as far as
  /// its rules let this node find their actors), sorted. Reads every
  /// node's record: callers that ask often cache the answer.
  std::vector<service_info> served_services() const;

  /// This node's routes to other nodes, with their tiers.
  std::vector<route_info> routes() const;

  /// Makes the message types another node published known here, so that
  /// new_message() can build them (tools encoding JSON use this).
  expected<void> import_types(std::string_view node_name);

  /// The message types node `node_name` published, each a serialized
  /// google.protobuf.FileDescriptorProto, dependencies first (what
  /// import_types() reads; the gateway's Types hands them to clients).
  /// not_found for a node the directory does not know.
  expected<std::vector<std::string>>
  published_types(std::string_view node_name) const;

  /// Installs the dead-letter hook (replacing any previous one). It runs on
  /// the thread that found the message undeliverable; keep it short.
  void on_dead_letter(std::function<void(const dead_letter&)> hook);

  /// Messages that reached nobody, by reason, since the node started.
  std::uint64_t dead_letters(dead_letter_reason reason) const noexcept;

  /// All dead letters since the node started.
  std::uint64_t dead_letters() const noexcept;

  /// Messages, monitors and broadcasts from other nodes that the rules
  /// refused (node_config::rules) since the node started. Refused messages
  /// are not dead letters: they never reached an actor.
  std::uint64_t refusals() const noexcept;

  /// What the node counted and timed so far (docs/operations.md lists
  /// every metric). Takes the name registry's lock for reading.
  metrics_snapshot metrics() const;

  /// Writes a line to the node's log (node_config::log), as the runtime
  /// does: for plug-ins and tools that act for the node.
  void log(log_level level, std::string_view line) const;

  /// Where the metrics endpoint listens ("127.0.0.1:40123", the port
  /// chosen when node_config::metrics_listen said 0); empty when off.
  std::string metrics_address() const;

  /// Where the plug-in registered as `name` in node_config::plugins serves
  /// (node_plugin::address(): the gateway's "127.0.0.1:40123", its port
  /// chosen when the configuration said 0); not_found for no such plug-in.
  expected<std::string> plugin_address(std::string_view name) const;

private:
  friend class detail::node_impl;

  explicit node(std::unique_ptr<detail::node_impl> impl) noexcept;

  /// A node that does not own `impl` (lent to plug-ins).
  static node borrow(detail::node_impl& impl) noexcept;

  std::unique_ptr<detail::node_impl> impl_;
  bool borrowed_ = false;
};

} // namespace courier
