#pragma once

// The verbs, once for every caller: post, the start of send/request, and
// the planning of broadcast. A plain thread (courier::node) and an actor
// (shell, behind courier::context) both call these; each keeps only what
// truly differs: who it is (verb_caller), and how it waits for an answer
// (a caf::scoped_actor blocking, or a continuation inside the actor).
//
// What the verbs decide, in this order: the message and the options are
// valid; the destination resolves (router or name registry, through the
// caller's route cache); the node can honour the options
// (node_impl::check_post_options); the route's backlog or the actor's
// mailbox has room (node_impl::charge_backlog; requests are counted, never
// refused); the letter, with its sender, priority and tier. Then the
// delivery stage (delivery.hpp) hands it on. The verbs know nothing of
// tiers.
//
// Thread safety: each function runs on its caller's thread (a plain thread,
// or the actor's own while it handles a message) and is thread-safe as far
// as the node goes; a verb_caller and its route_cache belong to one caller
// and are not shared.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/duration.hpp>
#include <caf/fwd.hpp>
#include <caf/message_id.hpp>

#include "binding.hpp"
#include "letter.hpp"
#include "metrics_registry.hpp"
#include "tracing.hpp"

namespace courier::detail {

class node_impl;

/// Resolves destinations for one caller. An actor keeps one with room for
/// the names it talked to lately, each valid while the node's routing
/// generation is unchanged; a plain thread uses one with no room (each call
/// asks the node).
class route_cache {
public:
  explicit route_cache(std::size_t capacity) noexcept : capacity_(capacity) {}

  /// Resolves `to` for a message `msg` sent by `sender` (null: a plain
  /// thread); a failure is reported as a dead letter (node_impl::resolve).
  /// The pointer stays valid until the next call or clear().
  expected<const route*> resolve(node_impl& node, destination to,
                                 const message& msg, const name_slot* sender);

  /// Forgets every route (the actor stops).
  void clear() noexcept;

private:
  struct cached_route {
    std::string name;
    std::uint64_t generation;
    route target;
  };

  std::size_t capacity_;
  // Most recent first. Small: a linear scan beats hashing.
  std::vector<cached_route> routes_;
  route last_; // the last route not kept in routes_ (refs, no room)
};

/// Who calls a verb. Built for the call; refers to the caller's own state.
struct verb_caller {
  /// The calling actor's binding, the sender of its letters; null for a
  /// plain thread.
  const std::shared_ptr<name_slot>& binding;
  /// Resolves for this caller.
  route_cache& routes;
  /// The CAF actor letters come from and answers go to: the shell, or the
  /// plain thread's scoped_actor; null for a post from a plain thread (an
  /// anonymous message). Requests need one.
  caf::local_actor* self;
  /// The trace of the message the caller handles, continued by what it
  /// sends (tracing.hpp); null for a plain thread.
  const trace_context* trace = nullptr;
};

/// A binding that stands for no actor: the sender of a plain thread.
const std::shared_ptr<name_slot>& no_binding() noexcept;

/// Posts `msg` to `to`: returns once the letter is handed on. Errors:
/// invalid_argument (a null message, a priority over 7, a tier the node
/// does not have, a malformed name), not_found, unavailable (restarting,
/// or its node unreachable), resource_exhausted (the route's backlog or
/// the actor's mailbox is full).
expected<void> post(node_impl& node, const verb_caller& from, destination to,
                    message msg, post_options options);

/// A request on its way: its answer comes to the caller's actor as the
/// response to `id` (a reply_msg, or a caf::error).
struct started_request {
  /// The request id; the answer comes as id.response_id(), and CAF's
  /// deadline for it is armed with local_actor::request_response_timeout.
  caf::message_id id;
  /// Where it went (for the outcome's error text and kind).
  std::shared_ptr<name_slot> target;
  /// When it was handed to an actor here with metrics on (see
  /// answered()); the epoch otherwise.
  metrics_clock::time_point sent{};
};

/// Records the round trip of a request to `target` sent at `sent` and
/// answered now (the target's request_rtt), if it was timed.
inline void answered(const name_slot& target,
                     metrics_clock::time_point sent) noexcept {
  if (sent != metrics_clock::time_point{})
    target.stats->request_rtt.record(metrics_clock::now() - sent);
}

/// Starts a request to `to` for send (a plain thread) and request (an
/// actor). Errors, before anything is sent: invalid_argument (a null
/// message, a malformed name), not_found, unavailable, deadline_exceeded
/// (the deadline had passed already). The caller then keeps the deadline
/// and waits; `direct` lets a request to another node skip the link's
/// proxy (deliver_request).
expected<started_request> start_request(node_impl& node,
                                        const verb_caller& from, destination to,
                                        message msg, deadline until,
                                        bool direct);

/// The same for a route already resolved; `broadcast` for a broadcast's
/// target (another node authorizes it as the verb broadcast).
expected<started_request> start_request(node_impl& node,
                                        const verb_caller& from,
                                        const route& to, message msg,
                                        deadline until, bool direct,
                                        bool broadcast = false);

/// Starts a request from a plain thread whose answer goes to `sink`
/// (letter::reply_to) instead of a CAF actor: the answering actor delivers
/// it on its own thread, and if the letter dies unanswered the sink's
/// destructor answers. Only for an actor of this node: for a name held
/// elsewhere it returns false and sends nothing (a link's proxy answers
/// through CAF). With `lend_thread` (a plain thread only), an idle
/// target handles it on the calling thread before this returns
/// (deliver_here). Errors, before anything is sent: invalid_argument,
/// not_found, unavailable, deadline_exceeded. The caller keeps the
/// deadline.
expected<bool> request_to_sink(node_impl& node, const verb_caller& from,
                               destination to, message msg, deadline until,
                               std::shared_ptr<reply_sink> sink,
                               bool lend_thread);

/// The outcome an answer carries.
expected<message> outcome_of(reply_msg& reply);

/// The outcome of a request that CAF ended (timeout, receiver gone): for a
/// target on another node, a receiver that is gone is its link
/// (unavailable), not the actor (aborted).
error outcome_of(const caf::error& err, const name_slot& target);

/// A CAF request timeout for a deadline.
caf::duration to_caf(deadline until);

/// What a broadcast asks: the targets to request, and what is known
/// before asking (the dead, or every target refused).
struct broadcast_plan {
  broadcast_result known;
  std::vector<route> targets;
};

/// Every actor whose name matches `pattern`, but the caller itself: those
/// with nothing running (restarting) are dead at once; with a null message
/// every target fails with invalid_argument and none is asked.
broadcast_plan plan_broadcast(node_impl& node, const verb_caller& from,
                              std::string_view pattern, const message& msg);

/// Every target of `pattern` (but the caller) failed with `why`: a
/// broadcast refused as a whole.
broadcast_result refuse_broadcast(node_impl& node, const verb_caller& from,
                                  std::string_view pattern, const error& why);

/// Files one target's outcome into a broadcast result: a reply, timed out
/// (deadline_exceeded), dead (aborted, not_found, unavailable), or failed.
void classify(broadcast_result& result, std::string name,
              expected<message> outcome);

/// Sorts every list of a broadcast result by name.
void sort_result(broadcast_result& result);

} // namespace courier::detail
