#pragma once

// What a link needs from its node, and nothing more: the link protocol
// (link_proxy.cpp: hello, monitor/down, barriers, name release) and the
// threads that read and write a link (link_core.hpp) reach the node only
// through this interface. node_impl implements it; a test can implement it
// to run the protocol over an in-memory link pair.
//
// Thread safety: every member function may be called from any thread
// (readers, answering actors, proxies), concurrently.

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/fwd.hpp>

#include "access.hpp"
#include "binding.hpp"
#include "courier/options.hpp"
#include "courier/transport.hpp"
#include "courier/v1/control.pb.h"
#include "letter.hpp"
#include "log_line.hpp"

namespace courier::detail {

class bulk_pool;
struct link_info;

class link_host {
public:
  virtual ~link_host() = default;

  // -- who we are ---------------------------------------------------------------

  /// The node's name.
  virtual const std::string& name() const noexcept = 0;

  /// The node's configuration (limits, timeouts).
  virtual const node_config& config() const noexcept = 0;

  /// The actor system the link's proxy runs in.
  virtual caf::actor_system& system() noexcept = 0;

  /// The node's record, as a hello carries it.
  virtual v1::NodeRecord record() const = 0;

  virtual void log(log_level level, std::string_view line) const = 0;

  /// A line with its fields (log_line.hpp), for the JSON format; by
  /// default the line alone.
  virtual void log_event(log_level level, std::string_view line,
                         const log_fields&) const {
    log(level, line);
  }

  /// A line a peer can cause at will (a refused or misbehaving new link):
  /// at most one a second for the node, which counts those held back; by
  /// default every line.
  virtual void log_peer_fault(std::string_view line,
                              const log_fields& fields) const {
    log_event(log_level::warning, line, fields);
  }

  // -- what arrives ---------------------------------------------------------------

  /// The spare receive buffers every link of the node reads large frames
  /// into (frame.hpp), within transport_limits::spare_buffers.
  virtual const std::shared_ptr<bulk_pool>& bulks() noexcept = 0;

  /// An actor of this node, for an envelope addressed to it.
  virtual expected<route> resolve_local(std::string_view name) = 0;

  /// The prototype of a message type known here; not_found otherwise.
  virtual expected<const google::protobuf::Message*>
  prototype(std::string_view type) = 0;

  /// The binding that stands for a sender on the peer ("actor@node").
  virtual std::shared_ptr<name_slot> remote_sender(std::string_view actor,
                                                   const std::string& node)
    = 0;

  /// A letter for an actor here, whose dead-letter office is the node.
  virtual letter make_letter(letter_kind kind, message msg, const route& to,
                             std::shared_ptr<name_slot> sender,
                             deadline expires)
    = 0;

  /// A durable transfer (courier.v1.DurableTransfer) for `target`, a name
  /// held here, authorized already: handed to the node's durable plug-in,
  /// which calls `answer` once (on any thread). Without one, unimplemented.
  virtual void accept_durable(std::string_view target, message transfer,
                              std::function<void(expected<message>)> answer) {
    (void)target;
    (void)transfer;
    answer(error{errc::unimplemented, "node '" + std::string{name()}
                                        + "' keeps no durable store"});
  }

  virtual void report_dead_letter(dead_letter_reason reason,
                                  std::string_view target, const message& msg,
                                  const name_slot* sender)
    = 0;

  /// Watches an actor here for the peer; see node::monitor.
  virtual expected<monitor_handle>
  monitor(destination name, std::function<void(const down_notice&)> on_down,
          caf::actor_addr watcher)
    = 0;

  virtual void demonitor(const monitor_handle& handle) = 0;

  /// The rules refused `verb` on `target` to the principal of a link from
  /// `peer_node` (access.hpp): counted for node::refusals, and logged at a
  /// bounded rate.
  virtual void report_refusal(const link_access& who,
                              std::string_view peer_node, verbs verb,
                              std::string_view target,
                              const trace_context& trace)
    = 0;

  /// The names held here that match `pattern` and that `who` may find,
  /// sorted (a peer's NamesQuery).
  virtual std::vector<std::string> visible_names(std::string_view pattern,
                                                 const link_access& who)
    = 0;

  // -- the link's place among the peers -------------------------------------------

  /// Whether `peer`, as the transport vouches for it, is node `claimed`.
  virtual expected<void> vouches_for(const peer_identity& peer,
                                     const v1::NodeRecord& claimed) const
    = 0;

  /// An accepted link said hello as `node`: the route to it, unless there
  /// is one.
  /// A node this one dialled answered its handshake with `record`.
  virtual void learned_peer(const v1::NodeRecord& record) = 0;

  virtual void adopt_link(const std::string& node, caf::actor proxy,
                          std::shared_ptr<link_info> info)
    = 0;

  /// An accepted link said hello, or went before it did.
  virtual void end_half_open() noexcept = 0;

  /// The link to `node` run by `proxy` is gone, with every route through it.
  virtual void drop_link(const std::string& node, const caf::actor& proxy) = 0;

  /// The peer released a name.
  virtual void forget_remote_name(const std::string& actor,
                                  const std::string& node)
    = 0;

  /// A link beside the route's, on another tier (see peers::open_side_link).
  virtual expected<caf::actor> open_side_link(const std::string& node,
                                              const std::string& tier)
    = 0;
};

} // namespace courier::detail
